//! Results: the serialisable report (`--json FILE`) and the readable tables printed as each
//! case finishes. Latencies are kept in microseconds and printed in milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::case::{Case, Kind};
use crate::procfs::Machine;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `full` or `smoke`.
    pub mode: &'static str,
    pub machine: Machine,
    /// The gateway binary as `<profile dir>/<file>`, e.g. `release/switchyard`.
    pub gateway_bin: String,
    pub gateway_version: String,
    /// `nginx/1.22.1` when the nginx reference ran.
    pub nginx: Option<String>,
    /// Rounds per case: each target's measured part is split into this many runs, taken in
    /// turn with the other targets'.
    pub rounds: u32,
    pub notes: Vec<String>,
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// Failed requests over every case and target.
    pub fn errors(&self) -> u64 {
        self.cases
            .iter()
            .flat_map(|c| &c.targets)
            .map(|t| t.errors)
            .sum()
    }
}

/// One case: a row per target and the gateway's (and nginx's) latency over direct.
#[derive(Debug, Serialize)]
pub struct CaseReport {
    pub case: Case,
    pub prompt_bytes: usize,
    pub body_bytes: usize,
    pub targets: Vec<TargetReport>,
    pub added_over_direct: Vec<Added>,
    /// Feature set `otel`: what the harness's OTLP sink received during the gateway's run.
    pub otlp_sink: Option<SinkReport>,
    /// Rounds measured again under `--max-steal` (their figures are left out).
    pub rounds_measured_again: u32,
}

/// Trace exports the OTLP sink received.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SinkReport {
    pub exports: u64,
    pub bytes: u64,
}

/// One run of a case against one target.
#[derive(Debug, Serialize)]
pub struct TargetReport {
    /// `direct`, `nginx` or `gateway`.
    pub target: String,
    pub ok: u64,
    pub errors: u64,
    /// Failed requests by kind (`status 502`, `timeout`, `connect`, …).
    pub error_kinds: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub throughput_rps: f64,
    /// Connections the generator opened (keep-alive keeps this near the concurrency).
    pub connections: u64,
    pub latency_us: Percentiles,
    /// Each round's own p99 latency, in the order the rounds ran (rounds measured again under
    /// `--max-steal` left out).
    pub round_p99_us: Vec<u64>,
    /// Streams: time to the first event carrying text.
    pub ttft_us: Option<Percentiles>,
    /// Streams: time between consecutive events carrying text.
    pub gap_us: Option<Percentiles>,
    /// Open loop: how late requests left after their due time.
    pub send_lag_us: Option<Percentiles>,
    /// The target's own process (gateway, nginx); none for the in-process simulator.
    pub process: Option<ProcessReport>,
    /// Percentage of the machine's CPU time the hypervisor gave to other guests during this
    /// target's measured windows (Linux; `None` where `/proc/stat` has no steal figure). Every
    /// process of the run waits out a steal, so where it is high the tail is the host's.
    pub host_steal_pct: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// `None` for an empty histogram.
    pub fn of_nonempty(h: &Histogram<u64>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles::of(h))
    }
}

/// CPU and memory of a target process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcessReport {
    /// CPU time (user + system, all threads) during the measured window.
    pub cpu_ms: Option<f64>,
    pub cpu_ms_per_1k_requests: Option<f64>,
    /// Resident memory just before this run's warm-up.
    pub rss_idle_kib: Option<u64>,
    /// Peak resident memory sampled during the measured window.
    pub rss_load_kib: u64,
}

/// A target's latency minus direct's, percentile by percentile.
#[derive(Debug, Clone, Serialize)]
pub struct Added {
    pub target: String,
    pub p50_us: i64,
    pub p90_us: i64,
    pub p99_us: i64,
    pub p999_us: i64,
    /// The median over rounds of each round's added p99 (the target's p99 in a round minus
    /// direct's in the same round). A stall that spoils one round's tail moves the p99 of all
    /// rounds together, not this; `None` without rounds to pair.
    pub p99_median_of_rounds_us: Option<i64>,
}

impl Added {
    pub fn between(target: &TargetReport, direct: &TargetReport) -> Added {
        let d =
            |a: u64, b: u64| i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(0);
        let (t, b) = (&target.latency_us, &direct.latency_us);
        Added {
            target: target.target.clone(),
            p50_us: d(t.p50, b.p50),
            p90_us: d(t.p90, b.p90),
            p99_us: d(t.p99, b.p99),
            p999_us: d(t.p999, b.p999),
            p99_median_of_rounds_us: median(
                target
                    .round_p99_us
                    .iter()
                    .zip(&direct.round_p99_us)
                    .map(|(&t, &b)| d(t, b))
                    .collect(),
            ),
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count); `None` when empty.
fn median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]).div_euclid(2)),
    }
}

/// Microseconds as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn signed_ms(us: i64) -> String {
    format!("{:+.3}", us as f64 / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn pct(value: f64) -> String {
    format!("{value:.1}")
}

fn opt<T>(value: Option<T>, f: impl Fn(T) -> String) -> String {
    value.map(f).unwrap_or_else(|| "-".into())
}

/// The lines printed before the first case.
pub fn header(report: &Report) -> String {
    let m = &report.machine;
    let mut out = String::new();
    let mode = match report.mode {
        "smoke" => "smoke run (few requests; checks that every path works, figures mean little)",
        "soak" => "soak run (steady load on the gateway alone)",
        _ => "full run",
    };
    let _ = writeln!(out, "switchyard-bench: {mode}");
    let _ = writeln!(
        out,
        "machine: {}, {} CPUs (nproc), {:.1} GiB memory, Linux {}",
        m.cpu_model,
        m.cpus,
        m.memory_mib as f64 / 1024.0,
        m.kernel
    );
    let reference = match (&report.nginx, report.mode) {
        (_, "soak") => String::new(),
        (Some(v), _) => format!(
            "; reference: {v} reverse proxy (one worker, keep-alive upstream, proxy_buffering off)"
        ),
        (None, _) => "; reference: nginx not found, its rows are skipped".into(),
    };
    let _ = writeln!(
        out,
        "gateway: {} ({}){reference}",
        report.gateway_bin, report.gateway_version
    );
    if report.mode != "soak" {
        let _ = writeln!(
            out,
            "rounds: {} per case; the targets take turns, a round each, and each target's rounds \
             are reported together",
            report.rounds
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// The block printed when a case finishes.
pub fn case_block(c: &CaseReport) -> String {
    let mut out = String::new();
    let case = &c.case;
    let _ = writeln!(out, "\n== {}: {}", case.name, case.description);
    let _ = writeln!(
        out,
        "   {}, prompt {} B (body {} B), {}, features {}",
        case.kind.as_str(),
        c.prompt_bytes,
        c.body_bytes,
        case.load_summary(),
        case.features.as_str()
    );
    if c.rounds_measured_again > 0 {
        let _ = writeln!(
            out,
            "   {} round(s) measured again for the host's stolen CPU time (--max-steal)",
            c.rounds_measured_again
        );
    }
    let _ = writeln!(
        out,
        "   {:<8} {:>7} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}   latency, ms; \
         host CPU stolen, %",
        "target", "ok", "err", "req/s", "p50", "p90", "p99", "p99.9", "max", "lag p99", "steal"
    );
    for t in &c.targets {
        let l = &t.latency_us;
        let _ = writeln!(
            out,
            "   {:<8} {:>7} {:>5} {:>8.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            t.target,
            t.ok,
            t.errors,
            t.throughput_rps,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            opt(t.send_lag_us, |p| ms(p.p99)),
            opt(t.host_steal_pct, pct),
        );
    }
    if !c.added_over_direct.is_empty() {
        let _ = writeln!(
            out,
            "   {:<8} {:>9} {:>9} {:>9} {:>9} {:>9}   added over direct, ms; p99 rnd: median of \
             the rounds' added p99",
            "", "p50", "p90", "p99", "p99.9", "p99 rnd"
        );
        for a in &c.added_over_direct {
            let _ = writeln!(
                out,
                "   {:<8} {:>9} {:>9} {:>9} {:>9} {:>9}",
                a.target,
                signed_ms(a.p50_us),
                signed_ms(a.p90_us),
                signed_ms(a.p99_us),
                signed_ms(a.p999_us),
                opt(a.p99_median_of_rounds_us, signed_ms)
            );
        }
    }
    if case.kind == Kind::ChatStream {
        let _ = writeln!(
            out,
            "   {:<8} {:>9} {:>9} {:>9} {:>9}   stream: time to first token, gap between text events, ms",
            "", "ttft p50", "ttft p99", "gap p50", "gap p99"
        );
        for t in &c.targets {
            let _ = writeln!(
                out,
                "   {:<8} {:>9} {:>9} {:>9} {:>9}",
                t.target,
                opt(t.ttft_us, |p| ms(p.p50)),
                opt(t.ttft_us, |p| ms(p.p99)),
                opt(t.gap_us, |p| ms(p.p50)),
                opt(t.gap_us, |p| ms(p.p99)),
            );
        }
    }
    let processes: Vec<_> = c
        .targets
        .iter()
        .filter_map(|t| t.process.map(|p| (t, p)))
        .collect();
    if !processes.is_empty() {
        let _ = writeln!(
            out,
            "   {:<8} {:>13} {:>9} {:>9}   process: CPU ms per 1,000 requests, RSS MiB",
            "", "CPU ms/1k", "RSS idle", "RSS load"
        );
        for (t, p) in processes {
            let _ = writeln!(
                out,
                "   {:<8} {:>13} {:>9} {:>9}",
                t.target,
                opt(p.cpu_ms_per_1k_requests, |v| format!("{v:.1}")),
                opt(p.rss_idle_kib, mib),
                mib(p.rss_load_kib)
            );
        }
    }
    if let Some(sink) = c.otlp_sink {
        let _ = writeln!(
            out,
            "   otlp sink: {} trace exports received ({} KiB)",
            sink.exports,
            sink.bytes / 1024
        );
    }
    for t in c.targets.iter().filter(|t| t.errors > 0) {
        let kinds: Vec<String> = t
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "   ! {} errors on {} ({}); first: {}",
            t.errors,
            t.target,
            kinds.join(", "),
            t.first_error.as_deref().unwrap_or("-")
        );
    }
    out
}

/// The closing table: the gateway's figures for every case.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== summary: gateway latency added over direct (ms), throughput, CPU and memory"
    );
    let width = report
        .cases
        .iter()
        .map(|c| c.case.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9} {:>9} {:>7}",
        "case",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99 rnd",
        "req/s",
        "CPU ms/1k",
        "RSS idle",
        "RSS load",
        "steal"
    );
    for c in &report.cases {
        let Some(gw) = c.targets.iter().find(|t| t.target == "gateway") else {
            continue;
        };
        let added = c.added_over_direct.iter().find(|a| a.target == "gateway");
        let p = gw.process;
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.1} {:>10} {:>9} {:>9} {:>7}",
            c.case.name,
            opt(added, |a| signed_ms(a.p50_us)),
            opt(added, |a| signed_ms(a.p90_us)),
            opt(added, |a| signed_ms(a.p99_us)),
            opt(added, |a| signed_ms(a.p999_us)),
            opt(added.and_then(|a| a.p99_median_of_rounds_us), signed_ms),
            gw.throughput_rps,
            opt(p.and_then(|p| p.cpu_ms_per_1k_requests), |v| format!(
                "{v:.1}"
            )),
            opt(p.and_then(|p| p.rss_idle_kib), mib),
            opt(p.map(|p| p.rss_load_kib), mib),
            opt(gw.host_steal_pct, pct),
        );
    }
    let errors = report.errors();
    if errors > 0 {
        let _ = writeln!(
            out,
            "FAILED: {errors} requests failed (see the cases above)"
        );
    } else {
        let _ = writeln!(out, "all requests succeeded");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, p99: u64, round_p99_us: Vec<u64>) -> TargetReport {
        let latency_us = Percentiles {
            count: 1,
            mean: p99 as f64,
            p50: p99,
            p90: p99,
            p99,
            p999: p99,
            max: p99,
        };
        TargetReport {
            target: name.into(),
            ok: 1,
            errors: 0,
            error_kinds: BTreeMap::new(),
            first_error: None,
            elapsed_s: 1.0,
            throughput_rps: 1.0,
            connections: 1,
            latency_us,
            round_p99_us,
            ttft_us: None,
            gap_us: None,
            send_lag_us: None,
            process: None,
            host_steal_pct: None,
        }
    }

    #[test]
    fn the_rounds_added_p99_is_paired_by_round_and_ignores_one_stalled_round() {
        let direct = target("direct", 500, vec![400, 500, 450, 420, 480]);
        // The fourth round stalled: its p99 lifts the p99 of all rounds together.
        let gateway = target("gateway", 9_000, vec![600, 650, 640, 9_000, 660]);
        let added = Added::between(&gateway, &direct);
        assert_eq!(added.p99_us, 8_500);
        // Rounds' added p99s: 200, 150, 190, 8580, 180.
        assert_eq!(added.p99_median_of_rounds_us, Some(190));
        let even = Added::between(&target("g", 1, vec![300, 100]), &target("d", 1, vec![0, 0]));
        assert_eq!(even.p99_median_of_rounds_us, Some(200));
        let none = Added::between(&target("g", 1, vec![]), &target("d", 1, vec![]));
        assert_eq!(none.p99_median_of_rounds_us, None);
        // Negative added p99s (below direct's) stay negative.
        let below = Added::between(
            &target("g", 1, vec![100, 90, 80]),
            &target("d", 1, vec![150, 100, 60]),
        );
        assert_eq!(below.p99_median_of_rounds_us, Some(-10));
    }

    #[test]
    fn milliseconds_print_with_three_decimals() {
        assert_eq!(ms(1234), "1.234");
        assert_eq!(ms(5), "0.005");
        assert_eq!(signed_ms(-150), "-0.150");
        assert_eq!(signed_ms(2500), "+2.500");
        assert_eq!(mib(2048), "2.0");
        assert_eq!(opt(Some(4.25), pct), "4.2");
        assert_eq!(opt(None, pct), "-");
    }
}

//! Results: the serialisable report (`--json FILE`) and the readable tables printed as each
//! case finishes. Latencies are kept in microseconds and printed in milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::case::{Case, FeatureSet, Load, PromptSize};
use crate::cpu_idle::{self, CpuIdle};
use crate::host::HostProbe;
use crate::procfs::Machine;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `full` or `smoke`.
    pub mode: &'static str,
    pub machine: Machine,
    /// The CPUs' idle states during the run (`--cpu-idle`).
    pub cpu_idle: CpuIdle,
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
    /// The gateway against the nginx hop; `None` without nginx.
    pub against_nginx: Option<AgainstNginx>,
    /// The host's own speed just before the case (`None` when the probe could not run).
    pub host: Option<HostProbe>,
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
    /// `direct`, `nginx`, `gateway` or `nginx-2` (the nginx hop measured again, [`NGINX_AGAIN`]).
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
    /// Minor page faults during the measured window, per request: memory the process touched
    /// afresh (see `procfs::Counters`).
    pub minor_faults_per_request: Option<f64>,
    /// Resident memory just before this run's warm-up.
    pub rss_idle_kib: Option<u64>,
    /// Peak resident memory sampled during the measured window.
    pub rss_load_kib: u64,
    /// Resident memory once idle again after the case's last round (3 s later): what the load
    /// left behind.
    pub rss_after_kib: Option<u64>,
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

/// The targets the harness checks a run against: the gateway's added p99 within this multiple
/// of the nginx hop's (with keys, budgets and records on) ...
const P99_TIMES_NGINX: f64 = 1.5;
/// ... its requests per CPU-second at least this share of nginx's (closed loop, bare proxy) ...
const PER_CPU_SHARE_OF_NGINX: f64 = 0.5;
/// ... its idle RSS under 40 MB ...
const IDLE_RSS_MAX_KIB: u64 = 40_000_000 / 1024;
/// ... and its added time to first token under 200 µs at p50.
const TTFT_ADDED_MAX_US: i64 = 200;

/// The second measurement of the nginx hop in a case that measures it twice (see
/// [`AgainstNginx::nginx_against_itself`]).
pub const NGINX_AGAIN: &str = "nginx-2";

/// One target's added p99 against nginx's, pooled and by the rounds' median (named in JSON as
/// in `against_nginx`, where the gateway's are flattened).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct P99AgainstNginx {
    /// The target's added p99 over nginx's; `None` where either is at or below direct's.
    #[serde(rename = "p99_ratio")]
    pub ratio: Option<f64>,
    /// The same for the medians of the rounds' added p99s.
    #[serde(rename = "p99_rounds_ratio")]
    pub rounds_ratio: Option<f64>,
    /// Whether the target's added p99 is within 1.5 × nginx's (or at or below direct's).
    #[serde(rename = "p99_within")]
    pub within: bool,
    /// The same for the medians of the rounds' added p99s; `None` without rounds.
    #[serde(rename = "p99_rounds_within")]
    pub rounds_within: Option<bool>,
}

impl P99AgainstNginx {
    fn of(target: &Added, nginx: &Added) -> Self {
        let ratio = |t: i64, n: i64| (t > 0 && n > 0).then(|| t as f64 / n as f64);
        let within = |t: i64, n: i64| t as f64 <= (P99_TIMES_NGINX * n as f64).max(0.0);
        let rounds = nginx
            .p99_median_of_rounds_us
            .zip(target.p99_median_of_rounds_us);
        P99AgainstNginx {
            ratio: ratio(target.p99_us, nginx.p99_us),
            rounds_ratio: rounds.and_then(|(n, t)| ratio(t, n)),
            within: within(target.p99_us, nginx.p99_us),
            rounds_within: rounds.map(|(n, t)| within(t, n)),
        }
    }
}

/// The gateway against the nginx hop in one case: the ratios the targets compare.
#[derive(Debug, Clone, Serialize)]
pub struct AgainstNginx {
    /// The gateway's added p99 over nginx's.
    #[serde(flatten)]
    pub p99: P99AgainstNginx,
    /// The gateway's p50 and p99 over nginx's own (µs): no direct baseline between them, so
    /// none of its run-to-run spread either (the targets take turns through the same rounds).
    pub p50_over_nginx_us: i64,
    pub p99_over_nginx_us: i64,
    /// The nginx hop measured again in a turn of its own each round ([`NGINX_AGAIN`]) against
    /// its first measurement, as the gateway is compared: how far the ratio moves between two
    /// windows of one run for one hop against itself. `None` where the case measured the hop
    /// once (only the cases the added-p99 target is read from measure it twice).
    pub nginx_against_itself: Option<P99AgainstNginx>,
    /// The gateway's requests per second over nginx's.
    pub throughput_ratio: f64,
    /// Requests per CPU-second, the gateway's over nginx's (nginx's CPU per request over the
    /// gateway's); `None` without both processes' CPU time.
    pub throughput_per_cpu_ratio: Option<f64>,
}

impl AgainstNginx {
    /// `None` unless the case ran against both nginx and the gateway.
    pub fn of(targets: &[TargetReport], added: &[Added]) -> Option<Self> {
        let target = |name: &str| targets.iter().find(|t| t.target == name);
        let added_of = |name: &str| added.iter().find(|a| a.target == name);
        let (nginx, gateway) = (target("nginx")?, target("gateway")?);
        let (nginx_added, gateway_added) = (added_of("nginx")?, added_of("gateway")?);
        let cpu = |t: &TargetReport| t.process.and_then(|p| p.cpu_ms_per_1k_requests);
        let over_nginx = Added::between(gateway, nginx);
        Some(AgainstNginx {
            p99: P99AgainstNginx::of(gateway_added, nginx_added),
            p50_over_nginx_us: over_nginx.p50_us,
            p99_over_nginx_us: over_nginx.p99_us,
            nginx_against_itself: added_of(NGINX_AGAIN)
                .map(|again| P99AgainstNginx::of(again, nginx_added)),
            throughput_ratio: gateway.throughput_rps / nginx.throughput_rps,
            throughput_per_cpu_ratio: cpu(nginx)
                .zip(cpu(gateway))
                .filter(|&(_, g)| g > 0.0)
                .map(|(n, g)| n / g),
        })
    }
}

/// A stream's added time to first token at p50 (µs), the target's over direct's.
fn ttft_added_p50(c: &CaseReport, name: &str) -> Option<i64> {
    let ttft = |name: &str| {
        c.targets
            .iter()
            .find(|t| t.target == name)
            .and_then(|t| t.ttft_us)
            .map(|p| p.p50 as i64)
    };
    Some(ttft(name)? - ttft("direct")?)
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
    let _ = writeln!(out, "{}", cpu_idle::line(&report.cpu_idle));
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
    if let Some(h) = &c.host {
        let _ = writeln!(
            out,
            "   host before the case: arithmetic step {:.3} ns, JSON request read and written \
             {:.2} us, loopback round trip p50 {:.1} / p99 {:.1} us",
            h.cpu_step_ns, h.json_us, h.round_trip_p50_us, h.round_trip_p99_us
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
    if case.kind.streams() {
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
            "   {:<8} {:>13} {:>9} {:>9} {:>9} {:>10}   process: CPU ms per 1,000 requests, RSS \
             MiB (idle before, under load, idle after), minor page faults per request",
            "", "CPU ms/1k", "RSS idle", "RSS load", "RSS after", "faults/req"
        );
        for (t, p) in processes {
            let _ = writeln!(
                out,
                "   {:<8} {:>13} {:>9} {:>9} {:>9} {:>10}",
                t.target,
                opt(p.cpu_ms_per_1k_requests, |v| format!("{v:.1}")),
                opt(p.rss_idle_kib, mib),
                mib(p.rss_load_kib),
                opt(p.rss_after_kib, mib),
                opt(p.minor_faults_per_request, |v| format!("{v:.2}")),
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
    if let Some(line) = host_line(report) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The host's yardstick over the run's cases: its range and median, to set beside another
/// run's (a slower host lengthens every figure, direct's included).
fn host_line(report: &Report) -> Option<String> {
    let probes: Vec<&HostProbe> = report
        .cases
        .iter()
        .filter_map(|c| c.host.as_ref())
        .collect();
    let spread = |value: fn(&HostProbe) -> f64| {
        let mut values: Vec<f64> = probes.iter().map(|p| value(p)).collect();
        values.sort_by(f64::total_cmp);
        let (first, last) = (*values.first()?, *values.last()?);
        Some((first, values[values.len() / 2], last))
    };
    let (step_low, step_median, step_high) = spread(|p| p.cpu_step_ns)?;
    let (json_low, json_median, json_high) = spread(|p| p.json_us)?;
    let (p50_low, p50_median, p50_high) = spread(|p| p.round_trip_p50_us)?;
    let (p99_low, p99_median, p99_high) = spread(|p| p.round_trip_p99_us)?;
    Some(format!(
        "host before each case (low / median / high of {}): arithmetic step {step_low:.3} / \
         {step_median:.3} / {step_high:.3} ns, JSON request read and written {json_low:.2} / \
         {json_median:.2} / {json_high:.2} us, loopback round trip p50 {p50_low:.1} / \
         {p50_median:.1} / {p50_high:.1} us, p99 {p99_low:.1} / {p99_median:.1} / {p99_high:.1} us",
        probes.len()
    ))
}

/// The gateway against the nginx hop case by case, then each target of the run: what met it,
/// what did not, and the worst case.
pub fn targets(report: &Report) -> String {
    let mut out = String::new();
    let width = report
        .cases
        .iter()
        .map(|c| c.case.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let ratio = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"));
    if report.cases.iter().any(|c| c.against_nginx.is_some()) {
        let _ = writeln!(
            out,
            "\n== against the nginx hop: the gateway's figure over nginx's (n/a: an added p99 \
             at or below direct's, or no CPU time); \"over nginx\": the gateway's latency less \
             nginx's, ms, no direct baseline between them; \"nginx itself\": the same p99 ratios \
             for the nginx hop measured again in a turn of its own ({NGINX_AGAIN}), where a case \
             decides the added-p99 target"
        );
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>8} {:>8} {:>8} {:>27} {:>21} {:>22}",
            "case",
            "p99",
            "p99 rnd",
            "req/s",
            "per CPU",
            "TTFT added, nginx / gateway",
            "over nginx p50 / p99",
            "nginx itself p99 / rnd"
        );
        for c in &report.cases {
            let Some(a) = &c.against_nginx else { continue };
            let ttft = match (ttft_added_p50(c, "nginx"), ttft_added_p50(c, "gateway")) {
                (Some(n), Some(g)) => format!("{} / {}", signed_ms(n), signed_ms(g)),
                _ => "-".into(),
            };
            let itself = a.nginx_against_itself.map_or_else(
                || "-".into(),
                |n| format!("{} / {}", ratio(n.ratio), ratio(n.rounds_ratio)),
            );
            let _ = writeln!(
                out,
                "{:<width$} {:>8} {:>8} {:>8.2} {:>8} {:>27} {:>21} {:>22}",
                c.case.name,
                ratio(a.p99.ratio),
                ratio(a.p99.rounds_ratio),
                a.throughput_ratio,
                ratio(a.throughput_per_cpu_ratio),
                ttft,
                format!(
                    "{} / {}",
                    signed_ms(a.p50_over_nginx_us),
                    signed_ms(a.p99_over_nginx_us)
                ),
                itself
            );
        }
    }
    let _ = writeln!(
        out,
        "\n== targets{}",
        if report.mode == "smoke" {
            " (a smoke run: too few requests for the verdicts to mean anything)"
        } else {
            ""
        }
    );
    let verdict = |met: bool| if met { "met" } else { "NOT MET" };
    // Added p99 with keys, budgets and records on.
    let with_records: Vec<(&CaseReport, &AgainstNginx)> = report
        .cases
        .iter()
        .filter(|c| c.case.features.records())
        .filter_map(|c| Some((c, c.against_nginx.as_ref()?)))
        .collect();
    if with_records.is_empty() {
        let _ = writeln!(
            out,
            "added p99 within {P99_TIMES_NGINX} x nginx's, records on: not measured (needs nginx \
             and a case with records)"
        );
    } else {
        let pooled = with_records.iter().filter(|(_, a)| a.p99.within).count();
        let rounds = with_records
            .iter()
            .filter(|(_, a)| a.p99.rounds_within == Some(true))
            .count();
        let worst = with_records
            .iter()
            .filter_map(|(c, a)| Some((a.p99.rounds_ratio?, &c.case.name)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let _ = writeln!(
            out,
            "added p99 within {P99_TIMES_NGINX} x nginx's, keys, budgets and records on: {} \
             (within in {pooled} of {n} cases by the pooled p99, {rounds} by the rounds' median{})",
            verdict(pooled == with_records.len() || rounds == with_records.len()),
            worst.map_or(String::new(), |(r, name)| format!(
                "; highest rounds' ratio {r:.2}, {name}"
            )),
            n = with_records.len(),
        );
        // Not a target: the same reading for one hop against itself, so that a ratio can be
        // told from the spread between two windows of one run.
        let itself: Vec<P99AgainstNginx> = with_records
            .iter()
            .filter_map(|(_, a)| a.nginx_against_itself)
            .collect();
        if !itself.is_empty() {
            let pooled = itself.iter().filter(|n| n.within).count();
            let rounds = itself
                .iter()
                .filter(|n| n.rounds_within == Some(true))
                .count();
            // Both ways: a second measurement at half the first is as far from it as one at
            // twice, though only the second is outside the target's bound.
            let span = |ratios: Vec<f64>| {
                let low = ratios.iter().copied().min_by(f64::total_cmp);
                let high = ratios.iter().copied().max_by(f64::total_cmp);
                low.zip(high)
                    .map_or("n/a".to_owned(), |(l, h)| format!("{l:.2} to {h:.2}"))
            };
            let _ = writeln!(
                out,
                "  the nginx hop against itself in the same cases ({NGINX_AGAIN} over nginx): \
                 within {P99_TIMES_NGINX} x in {pooled} of {n} by the pooled p99, {rounds} by \
                 the rounds' median; its ratios ran {} pooled, {} by the rounds",
                span(itself.iter().filter_map(|n| n.ratio).collect()),
                span(itself.iter().filter_map(|n| n.rounds_ratio).collect()),
                n = itself.len(),
            );
        }
    }
    // Throughput per CPU at saturation, bare proxy.
    let lowest = report
        .cases
        .iter()
        .filter(|c| {
            c.case.features == FeatureSet::Bare && matches!(c.case.load, Load::Concurrency(_))
        })
        .filter_map(|c| {
            Some((
                c.against_nginx.as_ref()?.throughput_per_cpu_ratio?,
                &c.case.name,
            ))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let _ = match lowest {
        Some((r, name)) => writeln!(
            out,
            "throughput per CPU at least {PER_CPU_SHARE_OF_NGINX} x nginx's (bare, closed \
             loop): {} (lowest {r:.2}, {name})",
            verdict(r >= PER_CPU_SHARE_OF_NGINX)
        ),
        None => writeln!(
            out,
            "throughput per CPU at least {PER_CPU_SHARE_OF_NGINX} x nginx's: not measured (needs \
             nginx and a closed-loop bare case)"
        ),
    };
    // Idle RSS, every case: before the load, and once idle again after it (an idle gateway
    // is one that has served, too).
    let rss_of = |rss: fn(&ProcessReport) -> Option<u64>| {
        report
            .cases
            .iter()
            .filter_map(|c| {
                let gateway = c.targets.iter().find(|t| t.target == "gateway")?;
                Some((rss(gateway.process.as_ref()?)?, &c.case.name))
            })
            .max()
    };
    for (when, highest) in [
        ("", rss_of(|p| p.rss_idle_kib)),
        (" after a load", rss_of(|p| p.rss_after_kib)),
    ] {
        if let Some((kib, name)) = highest {
            let _ = writeln!(
                out,
                "idle RSS{when} under 40 MB: {} (highest {} MiB, {name})",
                verdict(kib < IDLE_RSS_MAX_KIB),
                mib(kib)
            );
        }
    }
    // Added time to first token, streams, by prompt size.
    for (long, label) in [(false, "short prompt"), (true, "long prompt")] {
        let highest = report
            .cases
            .iter()
            .filter(|c| (c.case.prompt != PromptSize::Small) == long)
            .filter_map(|c| Some((ttft_added_p50(c, "gateway")?, &c.case.name)))
            .max();
        if let Some((us, name)) = highest {
            let _ = writeln!(
                out,
                "added time to first token under {TTFT_ADDED_MAX_US} us at p50, streams, {label}: \
                 {} (highest {}, {name})",
                verdict(us < TTFT_ADDED_MAX_US),
                signed_ms(us)
            );
        }
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

    /// A target whose added latencies over a direct of 1 ms are `p99_added` (pooled and in
    /// each round), with its process's CPU per 1,000 requests and idle RSS.
    fn run(name: &str, p99_added: u64, rps: f64, cpu: f64, rss_idle_kib: u64) -> TargetReport {
        let mut t = target(name, 1_000 + p99_added, vec![1_000 + p99_added; 3]);
        t.throughput_rps = rps;
        t.process = Some(ProcessReport {
            cpu_ms: None,
            cpu_ms_per_1k_requests: Some(cpu),
            minor_faults_per_request: Some(0.5),
            rss_idle_kib: Some(rss_idle_kib),
            rss_load_kib: rss_idle_kib,
            rss_after_kib: Some(rss_idle_kib + 2_048),
        });
        t
    }

    fn case(
        name: &str,
        features: FeatureSet,
        load: Load,
        targets: Vec<TargetReport>,
    ) -> CaseReport {
        let direct = &targets[0];
        let added: Vec<Added> = targets[1..]
            .iter()
            .map(|t| Added::between(t, direct))
            .collect();
        CaseReport {
            case: Case {
                name: name.into(),
                description: String::new(),
                kind: crate::case::Kind::Chat,
                features,
                prompt: PromptSize::Small,
                model: "m".into(),
                load,
                stop: crate::case::Stop::Requests(1),
                warmup: std::time::Duration::ZERO,
                gateway_config: Default::default(),
            },
            prompt_bytes: 0,
            body_bytes: 0,
            against_nginx: AgainstNginx::of(&targets, &added),
            targets,
            added_over_direct: added,
            otlp_sink: None,
            rounds_measured_again: 0,
            host: None,
        }
    }

    #[test]
    fn the_gateway_is_compared_with_nginx_as_the_targets_ask() {
        let direct = || target("direct", 1_000, vec![1_000; 3]);
        let of = |nginx: TargetReport, gateway: TargetReport| {
            case(
                "c",
                FeatureSet::Bare,
                Load::Rate(1.0),
                vec![direct(), nginx, gateway],
            )
            .against_nginx
            .unwrap()
        };
        let a = of(
            run("nginx", 200, 1_000.0, 20.0, 8_000),
            run("gateway", 250, 800.0, 40.0, 20_000),
        );
        assert_eq!(a.p99.ratio, Some(1.25));
        assert_eq!(a.p99.rounds_ratio, Some(1.25));
        // Nginx at 1.2 ms, the gateway at 1.25, whatever direct's.
        assert_eq!((a.p50_over_nginx_us, a.p99_over_nginx_us), (50, 50));
        assert!(a.p99.within);
        assert_eq!(a.p99.rounds_within, Some(true));
        // Measured once, the hop is not compared with itself.
        assert!(a.nginx_against_itself.is_none());
        assert_eq!(a.throughput_ratio, 0.8);
        assert_eq!(a.throughput_per_cpu_ratio, Some(0.5));
        let a = of(
            run("nginx", 200, 1.0, 1.0, 1),
            run("gateway", 400, 1.0, 1.0, 1),
        );
        assert_eq!(a.p99.ratio, Some(2.0));
        assert!(!a.p99.within);
        // At or below direct's: no ratio. A gateway at or below direct's is within; above
        // direct's while nginx is not, it is not.
        let mut nginx_below = target("nginx", 950, vec![950; 3]);
        nginx_below.process = None;
        let a = of(nginx_below, target("gateway", 990, vec![990; 3]));
        assert_eq!((a.p99.ratio, a.p99.within), (None, true));
        assert_eq!(a.throughput_per_cpu_ratio, None);
        let a = of(
            target("nginx", 950, vec![950; 3]),
            target("gateway", 1_030, vec![1_030; 3]),
        );
        assert_eq!((a.p99.ratio, a.p99.within), (None, false));
        // No ratio there, but the gateway's tail over nginx's is still read.
        assert_eq!(a.p99_over_nginx_us, 80);
        // Measured twice, the second measurement is compared with the first as the gateway is.
        let twice = case(
            "c",
            FeatureSet::Records,
            Load::Rate(1.0),
            vec![
                direct(),
                run("nginx", 200, 1.0, 1.0, 1),
                run("gateway", 250, 1.0, 1.0, 1),
                target(NGINX_AGAIN, 1_400, vec![1_100, 1_400, 1_500]),
            ],
        );
        let itself = twice.against_nginx.unwrap().nginx_against_itself.unwrap();
        assert_eq!((itself.ratio, itself.within), (Some(2.0), false));
        // Rounds' added p99s 100, 400, 500 against nginx's 200: median 400.
        assert_eq!(itself.rounds_ratio, Some(2.0));
        assert_eq!(itself.rounds_within, Some(false));
        // Without nginx there is nothing to compare.
        let alone = vec![direct(), run("gateway", 250, 1.0, 1.0, 1)];
        assert!(
            case("c", FeatureSet::Bare, Load::Rate(1.0), alone)
                .against_nginx
                .is_none()
        );
    }

    #[test]
    fn each_target_is_reported_met_or_not_with_its_worst_case() {
        let direct = || target("direct", 1_000, vec![1_000; 3]);
        let report = |cases| Report {
            mode: "full",
            machine: Machine::default(),
            cpu_idle: CpuIdle::default(),
            gateway_bin: String::new(),
            gateway_version: String::new(),
            nginx: Some("nginx/1".into()),
            rounds: 3,
            notes: Vec::new(),
            cases,
        };
        let text = targets(&report(vec![
            case(
                "records-within",
                FeatureSet::Records,
                Load::Rate(500.0),
                vec![
                    direct(),
                    run("nginx", 200, 500.0, 70.0, 8_000),
                    run("gateway", 290, 500.0, 150.0, 24_000),
                    run(NGINX_AGAIN, 250, 500.0, 70.0, 8_000),
                ],
            ),
            case(
                "records-over",
                FeatureSet::Otel,
                Load::Rate(500.0),
                vec![
                    direct(),
                    run("nginx", 100, 500.0, 70.0, 8_000),
                    run("gateway", 390, 500.0, 150.0, 25_000),
                    run(NGINX_AGAIN, 160, 500.0, 70.0, 8_000),
                ],
            ),
            case(
                "nginx-at-direct",
                FeatureSet::Bare,
                Load::Rate(500.0),
                vec![
                    direct(),
                    run("nginx", 0, 500.0, 70.0, 8_000),
                    run("gateway", 150, 500.0, 140.0, 22_000),
                ],
            ),
            case(
                "saturation",
                FeatureSet::Bare,
                Load::Concurrency(16),
                vec![
                    direct(),
                    run("nginx", 100, 20_000.0, 20.0, 8_000),
                    run("gateway", 100, 18_000.0, 50.0, 22_000),
                ],
            ),
        ]));
        let row = |name: &str| {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default();
            line.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            row("records-over"),
            "3.90 3.90 1.00 0.47 - +0.290 / +0.290 1.60 / 1.60",
            "{text}"
        );
        assert_eq!(
            row("saturation"),
            "1.00 1.00 0.90 0.40 - +0.000 / +0.000 -",
            "{text}"
        );
        assert_eq!(
            row("nginx-at-direct"),
            "n/a n/a 1.00 0.50 - +0.150 / +0.150 -",
            "{text}"
        );
        assert!(
            text.contains(
                "added p99 within 1.5 x nginx's, keys, budgets and records on: NOT MET (within in \
                 1 of 2 cases by the pooled p99, 1 by the rounds' median; highest rounds' ratio \
                 3.90, records-over)"
            ),
            "{text}"
        );
        // The hop against itself is read beside the verdict, over the same cases.
        assert!(
            text.contains(
                "  the nginx hop against itself in the same cases (nginx-2 over nginx): within \
                 1.5 x in 1 of 2 by the pooled p99, 1 by the rounds' median; its ratios ran 1.25 \
                 to 1.60 pooled, 1.25 to 1.60 by the rounds"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "throughput per CPU at least 0.5 x nginx's (bare, closed loop): NOT MET (lowest \
                 0.40, saturation)"
            ),
            "{text}"
        );
        assert!(
            text.contains("idle RSS under 40 MB: met (highest 24.4 MiB, records-over)"),
            "{text}"
        );
        assert!(
            text.contains(
                "idle RSS after a load under 40 MB: met (highest 26.4 MiB, records-over)"
            ),
            "{text}"
        );
        // No stream, no time to first token; without nginx, no comparison.
        assert!(!text.contains("first token"), "{text}");
        let ttft = |mut t: TargetReport, p50: u64| {
            let mut p = t.latency_us;
            p.p50 = p50;
            t.ttft_us = Some(p);
            t
        };
        let streamed = targets(&report(vec![case(
            "stream",
            FeatureSet::Keys,
            Load::Rate(500.0),
            vec![
                ttft(direct(), 300),
                ttft(run("nginx", 100, 500.0, 70.0, 8_000), 360),
                ttft(run("gateway", 120, 500.0, 90.0, 22_000), 450),
            ],
        )]));
        assert!(streamed.contains("+0.060 / +0.150"), "{streamed}");
        assert!(
            streamed.contains(
                "added time to first token under 200 us at p50, streams, short prompt: met \
                 (highest +0.150, stream)"
            ),
            "{streamed}"
        );
        let alone = targets(&report(vec![case(
            "records-alone",
            FeatureSet::Records,
            Load::Rate(500.0),
            vec![direct(), run("gateway", 290, 500.0, 150.0, 41_000)],
        )]));
        assert!(!alone.contains("against the nginx hop"), "{alone}");
        assert!(alone.contains("records on: not measured"), "{alone}");
        assert!(
            alone.contains("idle RSS under 40 MB: NOT MET (highest 40.0 MiB, records-alone)"),
            "{alone}"
        );
        assert!(
            alone.contains(
                "idle RSS after a load under 40 MB: NOT MET (highest 42.0 MiB, records-alone)"
            ),
            "{alone}"
        );
    }

    #[test]
    fn the_hosts_yardstick_prints_per_case_and_over_the_run() {
        let direct = || target("direct", 1_000, vec![1_000; 3]);
        let probed = |name: &str, step: f64, json: f64, p50: f64, p99: f64| {
            let mut c = case(
                name,
                FeatureSet::Bare,
                Load::Rate(10.0),
                vec![direct(), target("gateway", 1_100, vec![1_100; 3])],
            );
            c.host = Some(HostProbe {
                cpu_step_ns: step,
                json_us: json,
                round_trip_p50_us: p50,
                round_trip_p99_us: p99,
            });
            c
        };
        let mut cases = vec![
            probed("a", 1.25, 6.5, 30.0, 61.5),
            probed("b", 0.9, 7.25, 21.0, 40.0),
            probed("c", 1.0, 5.0, 19.5, 90.3),
        ];
        assert!(case_block(&cases[0]).contains(
            "host before the case: arithmetic step 1.250 ns, JSON request read and written 6.50 \
             us, loopback round trip p50 30.0 / p99 61.5 us"
        ));
        // A case whose probe failed is left out of the run's line.
        cases.push(case(
            "d",
            FeatureSet::Bare,
            Load::Rate(10.0),
            vec![direct()],
        ));
        let report = Report {
            mode: "full",
            machine: Machine::default(),
            cpu_idle: CpuIdle::default(),
            gateway_bin: String::new(),
            gateway_version: String::new(),
            nginx: None,
            rounds: 3,
            notes: Vec::new(),
            cases,
        };
        let text = summary(&report);
        assert!(
            text.contains(
                "host before each case (low / median / high of 3): arithmetic step 0.900 / 1.000 \
                 / 1.250 ns, JSON request read and written 5.00 / 6.50 / 7.25 us, loopback round \
                 trip p50 19.5 / 21.0 / 30.0 us, p99 40.0 / 61.5 / 90.3 us"
            ),
            "{text}"
        );
        let unprobed = Report {
            cases: vec![case(
                "e",
                FeatureSet::Bare,
                Load::Rate(10.0),
                vec![direct()],
            )],
            ..report
        };
        assert!(!summary(&unprobed).contains("host before"));
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

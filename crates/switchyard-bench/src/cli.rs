//! The `switchyard-bench` command line and the run itself: start the simulator, nginx and, per
//! case, the gateway; drive each case against each target; print and save the report. Also the
//! `--soak` mode. This is a tool, so errors are `anyhow` throughout.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

use crate::case::{self, Case, Load, Stop};
use crate::client::{self, Pool};
use crate::cpu_idle::{self, IdleRequest};
use crate::host;
use crate::load::{self, Plan, ProcWatch, Recorder};
use crate::payload::{MASTER_KEY, Template};
use crate::procfs::{self, CpuTotals, Machine};
use crate::report::{
    self, Added, AgainstNginx, CaseReport, NGINX_AGAIN, Percentiles, ProcessReport, Report,
    SinkReport, TargetReport,
};
use crate::sink::OtlpSink;
use crate::targets::{Gateway, Nginx, SimThread};

/// The case `--soak` runs when none is named: every feature on, so that whatever could grow
/// (records, metrics, exporters) runs.
pub const DEFAULT_SOAK_CASE: &str = "chat-small-rate-otel";

/// Limits of the virtual key of feature sets `keys` and above: real limits, checked on every
/// request, but far above any load the harness offers, so they never refuse.
const KEY_RPM: u64 = 1_000_000_000;
const KEY_TPM: u64 = 1_000_000_000_000;
const KEY_BUDGET_USD: f64 = 1_000_000.0;
/// How long into a soak's load its memory sampling starts (at most half an interval).
const SOAK_SETTLE: Duration = Duration::from_secs(10);

/// Connections a soak at a fixed rate holds (one at concurrency N holds N).
const SOAK_RATE_CONNECTIONS: u64 = 8;

/// Longest `--soak`.
const MAX_SOAK: Duration = Duration::from_secs(24 * 3600);
/// Pause between two runs, so one run's tail does not overlap the next.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a case's processes are left idle after its last round before their memory is read
/// again: long enough for what a gateway keeps only while busy to go. Its spare record buffers
/// go after a second without records, and the serving threads that allocated them hand the
/// memory back at their next once-a-second heartbeat (docs/PERFORMANCE.md, forty-ninth round).
const IDLE_AFTER_LOAD: Duration = Duration::from_secs(3);
/// Default `--rounds`.
const DEFAULT_ROUNDS: u32 = 5;
/// Most `--rounds`.
const MAX_ROUNDS: u32 = 100;
/// Times a round is measured again under `--max-steal` before it is kept as it is.
const MAX_STEAL_RETRIES: u32 = 3;
/// Warm-up of every round after the first: enough to reopen connections and warm caches.
const ROUND_WARMUP: Duration = Duration::from_millis(500);

/// Load harness: the gateway's added latency, throughput, CPU and memory, measured against the
/// provider simulator (and an nginx hop when nginx is installed). Loopback only.
#[derive(Debug, Parser)]
#[command(name = "switchyard-bench", version)]
pub struct Args {
    /// Cases to run (directory names under the cases directory); all of them when none given.
    pub cases: Vec<String>,
    /// The cases directory.
    #[arg(long, value_name = "DIR")]
    pub cases_dir: Option<PathBuf>,
    /// The `switchyard` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub gateway_bin: Option<PathBuf>,
    /// A few hundred requests per case and target, short warm-ups: checks every path, for CI.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run one case's load against the gateway for DURATION (e.g. 10m) and print its memory
    /// every `--every`; the case is the first one named, else `chat-small-rate-otel`.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, conflicts_with_all = ["smoke", "json"])]
    pub soak: Option<Duration>,
    /// Soak: print interval.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "10s")]
    pub every: Duration,
    /// Measure each case for DURATION (e.g. 60s; at most 10m) instead of its own
    /// `load.duration`, shared by its rounds: a tail percentile read from more requests moves
    /// less from run to run.
    #[arg(long, value_name = "DURATION", value_parser = measured_duration_arg, conflicts_with_all = ["smoke", "soak"])]
    pub duration: Option<Duration>,
    /// Skip the nginx reference even when nginx is installed.
    #[arg(long)]
    pub no_nginx: bool,
    /// Split each case's measured part into N rounds and take the targets in turn, a round at a
    /// time (direct, nginx, gateway, then the next round starting one target later), so the
    /// machine's drift over a case falls on every target alike [default: 5, smoke runs 1].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS as i64))]
    pub rounds: Option<u32>,
    /// Measure a round again (every target's part of it, up to three times) when the host stole
    /// more than PCT percent of the CPU time during any target's part: on a shared virtual
    /// machine a stolen CPU stalls every process for milliseconds, which says nothing about the
    /// targets. Rounds with failed requests are always kept.
    #[arg(long, value_name = "PCT", value_parser = steal_limit_arg)]
    pub max_steal: Option<f64>,
    /// `poll`: hold idle CPUs at polling for the run (the CPU latency QoS device, root only), so
    /// that no target's latency includes waking a halted CPU: the targets' own work, without
    /// what a deployed hop also pays. `as-is`: leave them as the host has them.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = IdleRequest::AsIs)]
    pub cpu_idle: IdleRequest,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
}

fn steal_limit_arg(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(pct) if (0.0..100.0).contains(&pct) => Ok(pct),
        _ => Err("a percentage from 0 to below 100".into()),
    }
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    case::parse_duration(text).map_err(|e| format!("{e:#}"))
}

fn measured_duration_arg(text: &str) -> Result<Duration, String> {
    let d = duration_arg(text)?;
    if !case::measurable(d) {
        return Err(format!("a duration {}", case::measurable_range()));
    }
    Ok(d)
}

/// What a run needs, for callers other than the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub cases_dir: PathBuf,
    /// Case names; empty means all.
    pub cases: Vec<String>,
    pub gateway_bin: PathBuf,
    pub smoke: bool,
    /// Use nginx as a reference hop when it is installed.
    pub nginx: bool,
    /// Rounds per case (`--rounds`).
    pub rounds: u32,
    /// `--max-steal`: the most stolen CPU time, in percent, a kept round may have seen.
    pub max_steal: Option<f64>,
    /// `--duration`: every case's measured part, in place of its own.
    pub duration: Option<Duration>,
    /// `--cpu-idle`: what the run asks of the CPUs' idle states.
    pub cpu_idle: IdleRequest,
}

/// Entry point of the binary. Exit status 0 when every request succeeded, 1 when some failed,
/// 2 when the harness itself could not run.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match run_cli(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_cli(args: Args) -> anyhow::Result<bool> {
    crate::stop_signal::stop_children_on_signal()?;
    let cases_dir = args
        .cases_dir
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("cases"));
    if args.list {
        for c in case::load_all(&cases_dir, &[])? {
            println!("{:<32} {}", c.name, c.description);
        }
        return Ok(true);
    }
    let gateway_bin = match args.gateway_bin.clone() {
        Some(p) => p,
        None => default_gateway_bin()?,
    };
    let options = Options {
        cases_dir,
        cases: args.cases.clone(),
        gateway_bin,
        smoke: args.smoke,
        nginx: !args.no_nginx,
        rounds: args
            .rounds
            .unwrap_or(if args.smoke { 1 } else { DEFAULT_ROUNDS }),
        max_steal: args.max_steal,
        duration: args.duration,
        cpu_idle: args.cpu_idle,
    };
    if let Some(duration) = args.soak {
        return soak(&options, duration, args.every);
    }
    let report = run(&options)?;
    if let Some(path) = &args.json {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), &report)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(report.errors() == 0)
}

/// `switchyard` in the directory of this executable (where cargo puts both).
fn default_gateway_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    Ok(dir.join(format!("switchyard{}", std::env::consts::EXE_SUFFIX)))
}

/// `release/switchyard`: the binary's directory and name, without the machine's path.
fn short_path(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let dir = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match (dir, name) {
        (Some(d), Some(n)) => format!("{d}/{n}"),
        (None, Some(n)) => n,
        _ => path.display().to_string(),
    }
}

fn gateway_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "version unknown".into())
}

fn notes(machine: &Machine, gateway_bin: &Path) -> Vec<String> {
    let mut notes = vec![
        format!(
            "warning: the load generator, the simulator and the gateway share these {} CPUs; \
             every figure includes that contention (expected on this machine).",
            machine.cpus
        ),
        "features (cumulative): bare = master key, routing, translation, no request records; \
         keys = + virtual key with RPM/TPM limits and a budget; records = + request records \
         (SQLite, masked content) and metrics; otel = + OTLP trace export to a local sink."
            .to_owned(),
        "latency: open loop from each request's due time (coordinated omission corrected), \
         closed loop from its send time; \"added\" = target minus direct at the same percentile; \
         \"p99 rnd\" = the median over rounds of each round's added p99 (a stall in one round \
         does not move it); \"lag p99\" = how late open-loop requests left after their due time."
            .to_owned(),
    ];
    if cfg!(debug_assertions) {
        notes.push("warning: switchyard-bench is a debug build; use --release for figures.".into());
    }
    if gateway_bin
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "debug")
    {
        notes.push("warning: the gateway is a debug build; use --release for figures.".into());
    }
    notes
}

fn runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the load generator's runtime")
}

fn check_gateway_bin(bin: &Path) -> anyhow::Result<()> {
    if !bin.is_file() {
        bail!(
            "no gateway binary at {}; build it (cargo build --release -p switchyard) or pass \
             --gateway-bin",
            bin.display()
        );
    }
    Ok(())
}

/// Runs the selected cases against every target, printing each case as it finishes.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let mut cases = case::load_all(&options.cases_dir, &options.cases)?;
    if cases.is_empty() {
        bail!("no cases in {}", options.cases_dir.display());
    }
    if options.smoke {
        cases = cases.iter().map(Case::smoke).collect();
    } else if let Some(duration) = options.duration {
        cases = cases.iter().map(|c| c.measured_for(duration)).collect();
    }
    check_gateway_bin(&options.gateway_bin)?;
    let nginx_bin = if options.nginx { Nginx::find() } else { None };
    let machine = Machine::probe();
    // Held until the run returns: the host's yardstick, every case and every target are
    // measured with the CPUs' idle states alike.
    let (cpu_idle, _polling) = cpu_idle::prepare(options.cpu_idle)?;
    let mut report = Report {
        mode: if options.smoke { "smoke" } else { "full" },
        notes: notes(&machine, &options.gateway_bin),
        machine,
        cpu_idle,
        gateway_bin: short_path(&options.gateway_bin),
        gateway_version: gateway_version(&options.gateway_bin),
        nginx: nginx_bin.as_deref().map(Nginx::version),
        rounds: options.rounds,
        cases: Vec::new(),
    };
    print!("{}", report::header(&report));

    let sim = SimThread::start()?;
    let nginx = match &nginx_bin {
        Some(bin) => Some(Nginx::start(bin, sim.addr)?),
        None => None,
    };
    let rt = runtime()?;
    let ticks = procfs::clock_ticks();
    for case in &cases {
        let block = run_case(&rt, case, options, &sim, nginx.as_ref(), ticks)?;
        print!("{}", report::case_block(&block));
        report.cases.push(block);
    }
    print!("{}", report::summary(&report));
    print!("{}", report::targets(&report));
    if let Some(n) = nginx {
        n.stop();
    }
    Ok(report)
}

fn run_case(
    rt: &Runtime,
    case: &Case,
    options: &Options,
    sim: &SimThread,
    nginx: Option<&Nginx>,
    ticks: u64,
) -> anyhow::Result<CaseReport> {
    let host = match host::probe() {
        Ok(probe) => Some(probe),
        Err(e) => {
            eprintln!(
                "{}: the host's yardstick could not be taken: {e}",
                case.name
            );
            None
        }
    };
    eprintln!("{}: starting the gateway", case.name);
    let setup = GatewaySetup::start(rt, case, options, sim)?;
    let gateway = &setup.gateway;
    let template = Rc::new(Template::for_case(case, &setup.key)?);
    let mut targets = Vec::with_capacity(4);
    for name in target_names(case, nginx.is_some()) {
        let (addr, pid) = match name {
            "direct" => (sim.addr, None),
            "gateway" => (gateway.addr, Some(gateway.pid)),
            _ => match nginx {
                Some(n) => (n.addr, Some(n.pid)),
                None => continue,
            },
        };
        targets.push(TargetRun::new(name, addr, pid)?);
    }
    let rounds = options.rounds;
    let mut rounds_measured_again = 0;
    for round in 0..rounds {
        let plan = round_plan(case, round, rounds);
        // Each round starts one target later, so none is always first after a pause.
        let count = targets.len();
        let mut retries = 0;
        loop {
            let mut outcomes = Vec::with_capacity(count);
            for t in 0..count {
                let index = (t + round as usize) % count;
                let target = &targets[index];
                eprintln!(
                    "{}: {} ({}, round {}/{rounds})",
                    case.name,
                    target.name,
                    case.load_summary(),
                    round + 1
                );
                outcomes.push((index, target.run_round(rt, &template, &plan)?));
                std::thread::sleep(SETTLE);
            }
            let steals: Vec<(&'static str, Option<f64>)> = outcomes
                .iter()
                .map(|(i, o)| (targets[*i].name, o.steal_pct()))
                .collect();
            let failed = outcomes.iter().any(|(_, o)| o.failed());
            match steal_verdict(&steals, failed, options.max_steal, retries) {
                Some((name, pct)) => {
                    retries += 1;
                    rounds_measured_again += 1;
                    eprintln!(
                        "{}: round {}/{rounds} measured again: {pct:.1} % of the CPU stolen \
                         during {name}'s part (--max-steal {})",
                        case.name,
                        round + 1,
                        options.max_steal.unwrap_or_default()
                    );
                }
                None => {
                    for (index, outcome) in outcomes {
                        targets[index].keep(outcome);
                    }
                    break;
                }
            }
        }
    }
    if targets.iter().any(|t| t.pid.is_some()) {
        std::thread::sleep(IDLE_AFTER_LOAD);
        for t in &mut targets {
            t.rss_after = t.pid.and_then(procfs::rss_kib);
        }
    }
    let reports: Vec<TargetReport> = targets.iter().map(|t| t.report(ticks)).collect();
    if let Some(r) = reports
        .iter()
        .find(|r| r.target == "gateway" && r.errors > 0)
    {
        eprintln!(
            "{}: gateway failed {} requests; gateway stderr (end):\n{}",
            case.name,
            r.errors,
            gateway.stderr_tail()
        );
    }
    let otlp_sink = setup.sink.as_ref().map(|s| SinkReport {
        exports: s.exports(),
        bytes: s.bytes(),
    });
    drop(setup);
    let added_over_direct = match reports.first() {
        Some(direct) => reports
            .iter()
            .skip(1)
            .map(|t| Added::between(t, direct))
            .collect(),
        None => Vec::new(),
    };
    Ok(CaseReport {
        case: case.clone(),
        prompt_bytes: template.prompt_bytes,
        body_bytes: template.body.len(),
        against_nginx: AgainstNginx::of(&reports, &added_over_direct),
        targets: reports,
        added_over_direct,
        otlp_sink,
        rounds_measured_again,
        host,
    })
}

/// The targets one case measures, in the order each round takes them (from a later one each
/// round). A case with records on, which the added-p99 target is read from, measures the nginx
/// hop a second time in a turn of its own after the gateway's ([`NGINX_AGAIN`]): the ratio of
/// the hop to itself shows how far a ratio moves between two windows of one run with nothing
/// changed, beside the gateway's.
fn target_names(case: &Case, with_nginx: bool) -> Vec<&'static str> {
    let mut names = vec!["direct"];
    if with_nginx {
        names.push("nginx");
    }
    names.push("gateway");
    if with_nginx && case.features.records() {
        names.push(NGINX_AGAIN);
    }
    names
}

/// A running gateway for one case with what its feature set needs around it: the OTLP sink it
/// exports to and the key requests present.
struct GatewaySetup {
    gateway: Gateway,
    /// The master key, or the virtual key created for this run.
    key: String,
    sink: Option<OtlpSink>,
}

impl GatewaySetup {
    fn start(
        rt: &Runtime,
        case: &Case,
        options: &Options,
        sim: &SimThread,
    ) -> anyhow::Result<GatewaySetup> {
        let sink = if case.features.otlp() {
            Some(OtlpSink::start()?)
        } else {
            None
        };
        let endpoint = sink.as_ref().map(OtlpSink::endpoint);
        let gateway = Gateway::start(
            &options.gateway_bin,
            &case.gateway_config,
            &sim.base_url(),
            endpoint.as_deref(),
        )
        .with_context(|| format!("case {}", case.name))?;
        let key = if case.features.virtual_key() {
            create_virtual_key(rt, &gateway).with_context(|| format!("case {}", case.name))?
        } else {
            MASTER_KEY.to_owned()
        };
        Ok(GatewaySetup { gateway, key, sink })
    }
}

/// Creates the virtual key of feature sets `keys` and above through the admin API.
fn create_virtual_key(rt: &Runtime, gateway: &Gateway) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "name": "bench",
        "rpm": KEY_RPM,
        "tpm": KEY_TPM,
        "max_budget_usd": KEY_BUDGET_USD,
    })
    .to_string();
    let local = LocalSet::new();
    let (status, reply) = local.block_on(
        rt,
        client::post_json(gateway.addr, "/admin/keys", MASTER_KEY, body),
    )?;
    if status != 201 {
        bail!(
            "creating a virtual key answered {status}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let reply: serde_json::Value = serde_json::from_slice(&reply)?;
    reply["key"]
        .as_str()
        .map(str::to_owned)
        .context("the created key has no `key` field")
}

/// Round `round` of `rounds`: an equal share of the case's measured part (the first rounds take
/// one request more when a count does not divide), after the case's warm-up in the first round
/// and a short one in the others.
fn round_plan(case: &Case, round: u32, rounds: u32) -> Plan {
    let stop = match case.stop {
        Stop::Duration(d) => Stop::Duration(d / rounds),
        Stop::Requests(n) => {
            let share = n / u64::from(rounds) + u64::from(u64::from(round) < n % u64::from(rounds));
            Stop::Requests(share.max(1))
        }
    };
    let warmup = if round == 0 {
        case.warmup
    } else {
        case.warmup.min(ROUND_WARMUP)
    };
    let measure_limit = match stop {
        Stop::Duration(d) => d,
        Stop::Requests(_) => case.measure_limit(),
    };
    Plan {
        load: case.load,
        warmup,
        stop,
        measure_limit,
    }
}

/// One target's runs over a case's rounds: one recorder for all of them, and the process's
/// CPU time, peak memory and measured time summed (or maxed) across rounds.
struct TargetRun {
    name: &'static str,
    addr: SocketAddr,
    pid: Option<u32>,
    recorder: Recorder,
    /// Resident memory before the first round.
    rss_idle: Option<u64>,
    /// Resident memory once idle after the last round ([`IDLE_AFTER_LOAD`]).
    rss_after: Option<u64>,
    rss_peak: u64,
    cpu_ticks: Option<u64>,
    minor_faults: Option<u64>,
    /// The machine's CPU time over the measured windows; `None` once a round could not read it.
    host: Option<CpuTotals>,
    elapsed: Duration,
    connections: u64,
    /// Each kept round's own p99 latency, in the order the rounds ran.
    round_p99s: Vec<u64>,
}

impl TargetRun {
    fn new(name: &'static str, addr: SocketAddr, pid: Option<u32>) -> anyhow::Result<TargetRun> {
        Ok(TargetRun {
            name,
            addr,
            pid,
            recorder: Recorder::new()?,
            rss_idle: pid.and_then(procfs::rss_kib),
            rss_after: None,
            rss_peak: 0,
            cpu_ticks: Some(0),
            minor_faults: Some(0),
            host: Some(CpuTotals::default()),
            elapsed: Duration::ZERO,
            connections: 0,
            round_p99s: Vec::new(),
        })
    }

    /// One round against this target, measured apart from the rounds before it: [`Self::keep`]
    /// adds it to them.
    fn run_round(
        &self,
        rt: &Runtime,
        template: &Rc<Template>,
        plan: &Plan,
    ) -> anyhow::Result<RoundOutcome> {
        let pool = Rc::new(Pool::new(self.addr)?);
        let watch = self.pid.map(ProcWatch::new);
        let recorder = Rc::new(RefCell::new(Recorder::new()?));
        let local = LocalSet::new();
        let result = local.block_on(
            rt,
            load::run(pool, template.clone(), plan, watch, recorder.clone()),
        );
        // Cancels whatever a hard deadline left running, closing its connections.
        drop(local);
        Ok(RoundOutcome { recorder, result })
    }

    fn keep(&mut self, round: RoundOutcome) {
        let RoundOutcome { recorder, result } = round;
        let recorder = recorder.borrow();
        if !recorder.latency.is_empty() {
            self.round_p99s
                .push(recorder.latency.value_at_quantile(0.99));
        }
        self.recorder.merge(&recorder);
        self.elapsed += result.elapsed;
        self.connections += result.connections;
        if let Some(p) = result.process {
            self.rss_peak = self.rss_peak.max(p.rss_peak_kib);
            self.cpu_ticks = self.cpu_ticks.zip(p.cpu_ticks).map(|(a, b)| a + b);
            self.minor_faults = self.minor_faults.zip(p.minor_faults).map(|(a, b)| a + b);
        }
        self.host = self.host.zip(result.host).map(|(a, b)| a.add(b));
    }

    fn report(&self, ticks: u64) -> TargetReport {
        let rec = &self.recorder;
        let errors = rec.error_count();
        let done = rec.ok + errors;
        let elapsed = self.elapsed.as_secs_f64();
        let process = self.pid.map(|_| {
            let cpu_ms = self.cpu_ticks.map(|t| t as f64 * 1000.0 / ticks as f64);
            ProcessReport {
                cpu_ms,
                cpu_ms_per_1k_requests: cpu_ms
                    .filter(|_| done > 0)
                    .map(|ms| ms * 1000.0 / done as f64),
                minor_faults_per_request: self
                    .minor_faults
                    .filter(|_| done > 0)
                    .map(|f| f as f64 / done as f64),
                rss_idle_kib: self.rss_idle,
                rss_after_kib: self.rss_after,
                rss_load_kib: self.rss_peak,
            }
        });
        TargetReport {
            target: self.name.to_owned(),
            ok: rec.ok,
            errors,
            error_kinds: rec.errors.clone(),
            first_error: rec.first_error.clone(),
            elapsed_s: elapsed,
            throughput_rps: if elapsed > 0.0 {
                rec.ok as f64 / elapsed
            } else {
                0.0
            },
            connections: self.connections,
            latency_us: Percentiles::of(&rec.latency),
            round_p99_us: self.round_p99s.clone(),
            ttft_us: Percentiles::of_nonempty(&rec.ttft),
            gap_us: Percentiles::of_nonempty(&rec.gap),
            send_lag_us: Percentiles::of_nonempty(&rec.send_lag),
            process,
            host_steal_pct: self.host.and_then(CpuTotals::steal_pct),
        }
    }
}

/// One target's part of one round, not yet added to its figures.
struct RoundOutcome {
    recorder: Rc<RefCell<Recorder>>,
    result: load::RunResult,
}

impl RoundOutcome {
    fn steal_pct(&self) -> Option<f64> {
        self.result.host.and_then(CpuTotals::steal_pct)
    }

    fn failed(&self) -> bool {
        self.recorder.borrow().error_count() > 0
    }
}

/// Whether a round is to be measured again under `--max-steal`: the target whose part had the
/// most stolen time above `limit`, with that share, while retries are left. A round with a
/// failed request is kept whatever the steal, so that no failure goes unreported.
fn steal_verdict(
    steals: &[(&'static str, Option<f64>)],
    failed: bool,
    limit: Option<f64>,
    retries: u32,
) -> Option<(&'static str, f64)> {
    let limit = limit?;
    if failed || retries >= MAX_STEAL_RETRIES {
        return None;
    }
    steals
        .iter()
        .filter_map(|&(name, pct)| Some((name, pct?)))
        .filter(|&(_, pct)| pct > limit)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// `--soak`: steady load on the gateway alone, printing its memory every `every`.
fn soak(options: &Options, duration: Duration, every: Duration) -> anyhow::Result<bool> {
    if duration.is_zero() || duration > MAX_SOAK {
        bail!("--soak must be between 1 s and {MAX_SOAK:?}");
    }
    let every = every.max(Duration::from_secs(1));
    let name = options
        .cases
        .first()
        .cloned()
        .unwrap_or_else(|| DEFAULT_SOAK_CASE.to_owned());
    let cases = case::load_all(&options.cases_dir, std::slice::from_ref(&name))?;
    let case = cases.first().context("no case to soak")?;
    check_gateway_bin(&options.gateway_bin)?;
    let machine = Machine::probe();
    let (cpu_idle, _polling) = cpu_idle::prepare(options.cpu_idle)?;
    let report = Report {
        mode: "soak",
        notes: notes(&machine, &options.gateway_bin),
        machine,
        cpu_idle,
        gateway_bin: short_path(&options.gateway_bin),
        gateway_version: gateway_version(&options.gateway_bin),
        nginx: None,
        rounds: 1,
        cases: Vec::new(),
    };
    print!("{}", report::header(&report));
    let sim = SimThread::start()?;
    let rt = runtime()?;
    let setup = GatewaySetup::start(&rt, case, options, &sim)?;
    let gateway = &setup.gateway;
    let load_text = match case.load {
        Load::Rate(r) => format!("open loop {r} req/s"),
        Load::Concurrency(c) => format!("closed loop, concurrency {c}"),
    };
    // A fixed set of connections, opened before the load and used in turn: the gateway's
    // memory then follows the load alone, not the number of connections it serves.
    let connections = match case.load {
        Load::Concurrency(c) => u64::from(c),
        Load::Rate(_) => SOAK_RATE_CONNECTIONS,
    };
    let local = LocalSet::new();
    let pool = Rc::new(local.block_on(&rt, Pool::bounded(gateway.addr, connections))?);
    println!(
        "\n== soak: {} ({load_text} for {}, features {}), gateway memory every {}\n   \
         (RSS and its anonymous part sampled each second from {} into the load: interval mean \
         and range; the load holds {connections} connections, opened before it and used in \
         turn; conns = connections opened so far)",
        case.name,
        case::fmt_duration(duration),
        case.features.as_str(),
        case::fmt_duration(every),
        case::fmt_duration(SOAK_SETTLE.min(every / 2))
    );
    println!(
        "{:>9} {:>10} {:>7} {:>6} {:>9} {:>13} {:>9} {:>9} {:>13} {:>7}",
        "elapsed",
        "ok",
        "errors",
        "conns",
        "RSS MiB",
        "(min-max)",
        "anon MiB",
        "CPU s",
        "p99 ms (last)",
        "steal %"
    );
    let pid = gateway.pid;
    let ticks = procfs::clock_ticks() as f64;
    let cpu_at_start = procfs::counters(pid).map_or(0, |c| c.cpu_ticks);
    // The machine's CPU time at the last line, for the share of it stolen in each interval.
    let host_at_last = Cell::new(CpuTotals::now());
    let memory = Rc::new(RefCell::new(MemoryInterval::default()));
    let intervals = Rc::new(RefCell::new(Vec::<MemoryInterval>::new()));
    let line = {
        let memory = memory.clone();
        let intervals = intervals.clone();
        let pool = pool.clone();
        // `whole`: the interval ran its full length, so its means can stand for it in the
        // closing summary (the one the end of the load cuts short may hold a sample or two).
        move |start: Instant, rec: &mut Recorder, whole: bool| {
            let p99 = if rec.interval.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{:.3}",
                    rec.interval.value_at_quantile(0.99) as f64 / 1000.0
                )
            };
            rec.interval.reset();
            let cpu = procfs::counters(pid).map_or(0, |c| c.cpu_ticks.saturating_sub(cpu_at_start));
            let host_now = CpuTotals::now();
            let steal = host_now
                .zip(host_at_last.replace(host_now))
                .and_then(|(now, last)| now.since(last).steal_pct())
                .map_or("-".to_owned(), |p| format!("{p:.1}"));
            let mut taken = std::mem::take(&mut *memory.borrow_mut());
            taken.connections = pool.opened();
            let text = format!(
                "{:>8.0}s {:>10} {:>7} {:>6} {:>9} {:>13} {:>9} {:>9.2} {:>13} {:>7}",
                start.elapsed().as_secs_f64(),
                rec.ok,
                rec.error_count(),
                taken.connections,
                taken
                    .rss_mean_mib()
                    .map_or("-".into(), |m| format!("{m:.1}")),
                taken
                    .rss_range_mib()
                    .map_or("-".into(), |(lo, hi)| format!("{lo:.1}-{hi:.1}")),
                taken
                    .anon_mean_mib()
                    .map_or("-".into(), |m| format!("{m:.1}")),
                cpu as f64 / ticks,
                p99,
                steal
            );
            if whole && taken.samples > 0 {
                intervals.borrow_mut().push(taken);
            }
            text
        }
    };
    let plan = Plan {
        load: case.load,
        warmup: Duration::ZERO,
        stop: Stop::Duration(duration),
        measure_limit: duration,
    };
    let template = Rc::new(Template::for_case(case, &setup.key)?);
    let recorder = Rc::new(RefCell::new(Recorder::new()?));
    let start = Instant::now();
    let printer_rec = recorder.clone();
    let sampled = memory.clone();
    let printer = Rc::new(line);
    let last_line = printer.clone();
    local.block_on(&rt, async {
        // Memory is sampled every second and each printed line gives the interval's mean and
        // range: a single reading per interval moves by a few hundred KiB with whatever the
        // load holds at that instant, which reads as growth or shrinkage that is not there.
        // Sampling starts once the load has filled the gateway's buffers and pools from idle,
        // so the first interval is steady load too.
        tokio::task::spawn_local(async move {
            let settled = start + SOAK_SETTLE.min(every / 2);
            let mut tick = tokio::time::interval_at(settled.into(), Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some((rss, anon)) = procfs::rss_and_anon_kib(pid) {
                    sampled.borrow_mut().add(rss, anon);
                }
            }
        });
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval_at((start + every).into(), every);
            loop {
                tick.tick().await;
                println!("{}", printer(start, &mut printer_rec.borrow_mut(), true));
            }
        });
        load::run(pool, template, &plan, None, recorder.clone()).await
    });
    drop(local);
    // The interval cut short by the end of the load, if it holds any sample.
    if memory.borrow().samples > 0 {
        println!("{}", last_line(start, &mut recorder.borrow_mut(), false));
    }
    if let Some(summary) = memory_summary(&intervals.borrow()) {
        println!("{summary}");
    }
    if let Some(trend) = memory_trend(&intervals.borrow(), every) {
        println!("{trend}");
    }
    let rec = recorder.borrow();
    let errors = rec.error_count();
    if errors > 0 {
        println!(
            "FAILED: {errors} requests failed; first: {}",
            rec.first_error.as_deref().unwrap_or("-")
        );
        eprintln!("gateway stderr (end):\n{}", gateway.stderr_tail());
    }
    if let Some(sink) = &setup.sink {
        println!(
            "otlp sink: {} trace exports received ({} KiB)",
            sink.exports(),
            sink.bytes() / 1024
        );
    }
    drop(setup);
    Ok(errors == 0)
}

/// The gateway's memory over one interval of a soak, sampled every second (KiB).
#[derive(Debug, Default)]
struct MemoryInterval {
    samples: u64,
    rss_sum: u64,
    rss_min: u64,
    rss_max: u64,
    anon_sum: u64,
    /// Connections the load had opened by the interval's end (each one the gateway holds
    /// buffers for while it stays open).
    connections: u64,
}

impl MemoryInterval {
    fn add(&mut self, rss_kib: u64, anon_kib: u64) {
        self.rss_min = if self.samples == 0 {
            rss_kib
        } else {
            self.rss_min.min(rss_kib)
        };
        self.rss_max = self.rss_max.max(rss_kib);
        self.rss_sum += rss_kib;
        self.anon_sum += anon_kib;
        self.samples += 1;
    }

    fn rss_mean_mib(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.rss_sum as f64 / self.samples as f64 / 1024.0)
    }

    fn anon_mean_mib(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.anon_sum as f64 / self.samples as f64 / 1024.0)
    }

    fn rss_range_mib(&self) -> Option<(f64, f64)> {
        (self.samples > 0).then(|| (self.rss_min as f64 / 1024.0, self.rss_max as f64 / 1024.0))
    }
}

/// The soak's closing memory line over its whole intervals: the first one's means against the
/// last one's, and the highest sample among them.
fn memory_summary(intervals: &[MemoryInterval]) -> Option<String> {
    let first = intervals.first()?;
    let last = intervals.last()?;
    let rss = (first.rss_mean_mib()?, last.rss_mean_mib()?);
    let anon = (first.anon_mean_mib()?, last.anon_mean_mib()?);
    let peak = intervals.iter().map(|i| i.rss_max).max()? as f64 / 1024.0;
    Some(format!(
        "memory: RSS mean {:.1} MiB over the first interval, {:.1} over the last ({:+.1}); \
         anonymous {:.1} -> {:.1} ({:+.1}); highest sample {peak:.1}; connections opened by \
         the load {} -> {}",
        rss.0,
        rss.1,
        rss.1 - rss.0,
        anon.0,
        anon.1,
        anon.1 - anon.0,
        first.connections,
        last.connections
    ))
}

/// The soak's anonymous memory (heap and stacks, where a leak grows) over its whole intervals:
/// the range of their means and the least-squares slope through them, per 10 minutes. The
/// first and last intervals alone can differ by what the allocator happens to hold at either
/// end: pages it keeps free for reuse come and go by some hundreds of KiB, up as well as down,
/// while a leak climbs through every interval. `None` with fewer than three intervals.
fn memory_trend(intervals: &[MemoryInterval], every: Duration) -> Option<String> {
    let means: Vec<f64> = intervals
        .iter()
        .map(MemoryInterval::anon_mean_mib)
        .collect::<Option<_>>()?;
    if means.len() < 3 {
        return None;
    }
    let minutes = every.as_secs_f64() / 60.0;
    let n = means.len() as f64;
    let x_mean = (n - 1.0) / 2.0 * minutes;
    let y_mean = means.iter().sum::<f64>() / n;
    let (covariance, variance) = means.iter().enumerate().fold((0.0, 0.0), |(c, v), (i, y)| {
        let dx = i as f64 * minutes - x_mean;
        (c + dx * (y - y_mean), v + dx * dx)
    });
    let per_ten_minutes = covariance / variance * 10.0;
    let low = means.iter().copied().fold(f64::INFINITY, f64::min);
    let high = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(format!(
        "memory trend: anonymous {low:.1}-{high:.1} MiB over the {} intervals' means, \
         least-squares slope {per_ten_minutes:+.2} MiB per 10 minutes",
        means.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::FeatureSet;

    fn interval(anon_mib: f64) -> MemoryInterval {
        let mut interval = MemoryInterval::default();
        interval.add(30 * 1024, (anon_mib * 1024.0) as u64);
        interval
    }

    #[test]
    fn soak_memory_trend_is_the_slope_through_every_interval() {
        let every = Duration::from_secs(60);
        // A leak of 0.1 MiB a minute: 1 MiB per 10 minutes, whatever the level.
        let leak: Vec<_> = (0..10)
            .map(|i| interval(14.0 + 0.1 * f64::from(i)))
            .collect();
        assert_eq!(
            memory_trend(&leak, every).unwrap(),
            "memory trend: anonymous 14.0-14.9 MiB over the 10 intervals' means, least-squares \
             slope +1.00 MiB per 10 minutes"
        );
        // Memory that comes and goes ends higher than it began, yet does not climb.
        let wander: Vec<_> = [14.1, 14.5, 14.6, 14.5, 14.3, 14.2, 14.2, 14.2, 14.6, 14.6]
            .into_iter()
            .map(interval)
            .collect();
        let line = memory_trend(&wander, every).unwrap();
        assert!(line.contains("anonymous 14.1-14.6 MiB"), "{line}");
        let slope: f64 = line
            .split("slope ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(slope.abs() < 0.2, "{line}");
        // Intervals of 30 s: the same rise a minute is the same slope.
        let halves: Vec<_> = (0..10)
            .map(|i| interval(14.0 + 0.05 * f64::from(i)))
            .collect();
        assert!(
            memory_trend(&halves, Duration::from_secs(30))
                .unwrap()
                .ends_with("slope +1.00 MiB per 10 minutes")
        );
        // Too few intervals, or one without samples: no trend.
        assert_eq!(memory_trend(&leak[..2], every), None);
        let mut gap: Vec<_> = (0..4).map(|_| interval(14.0)).collect();
        gap.push(MemoryInterval::default());
        assert_eq!(memory_trend(&gap, every), None);
    }

    #[test]
    fn the_nginx_hop_is_measured_twice_where_a_case_decides_the_added_p99_target() {
        let cases = case::load_all(&crate::shipped_cases(), &["chat-small-rate".to_owned()]);
        let mut case = cases.unwrap().remove(0);
        for (features, with_nginx, names) in [
            (FeatureSet::Bare, true, vec!["direct", "nginx", "gateway"]),
            (FeatureSet::Keys, true, vec!["direct", "nginx", "gateway"]),
            (
                FeatureSet::Records,
                true,
                vec!["direct", "nginx", "gateway", NGINX_AGAIN],
            ),
            (
                FeatureSet::Otel,
                true,
                vec!["direct", "nginx", "gateway", NGINX_AGAIN],
            ),
            (FeatureSet::Otel, false, vec!["direct", "gateway"]),
        ] {
            case.features = features;
            assert_eq!(target_names(&case, with_nginx), names, "{features:?}");
        }
    }

    #[test]
    fn a_round_is_measured_again_only_for_steal_above_the_limit_and_never_for_ever() {
        let steals = [
            ("direct", Some(0.4)),
            ("nginx", Some(6.0)),
            ("gateway", Some(3.0)),
        ];
        // No limit, nothing measured again.
        assert_eq!(steal_verdict(&steals, false, None, 0), None);
        // The worst part names the round's steal.
        assert_eq!(
            steal_verdict(&steals, false, Some(2.0), 0),
            Some(("nginx", 6.0))
        );
        assert_eq!(steal_verdict(&steals, false, Some(6.0), 0), None);
        // A failed request keeps its round; retries run out.
        assert_eq!(steal_verdict(&steals, true, Some(2.0), 0), None);
        assert_eq!(
            steal_verdict(&steals, false, Some(2.0), MAX_STEAL_RETRIES),
            None
        );
        // A part without a reading (no /proc/stat) cannot ask for a retry.
        assert_eq!(
            steal_verdict(&[("direct", None)], false, Some(0.0), 0),
            None
        );
    }

    #[test]
    fn soak_memory_is_summarised_by_interval_means() {
        let mut first = MemoryInterval::default();
        first.add(30 * 1024, 10 * 1024);
        first.add(32 * 1024, 12 * 1024);
        assert_eq!(first.rss_mean_mib(), Some(31.0));
        assert_eq!(first.rss_range_mib(), Some((30.0, 32.0)));
        assert_eq!(first.anon_mean_mib(), Some(11.0));
        let mut last = MemoryInterval::default();
        last.add(31 * 1024, 11 * 1024);
        last.add(36 * 1024, 11 * 1024);
        first.connections = 3;
        last.connections = 5;
        assert_eq!(MemoryInterval::default().rss_mean_mib(), None);
        assert_eq!(memory_summary(&[]), None);
        assert_eq!(
            memory_summary(&[first, last]).unwrap(),
            "memory: RSS mean 31.0 MiB over the first interval, 33.5 over the last (+2.5); \
             anonymous 11.0 -> 11.0 (+0.0); highest sample 36.0; connections opened by the \
             load 3 -> 5"
        );
    }

    #[test]
    fn a_measured_duration_replaces_every_cases_own_stop() {
        let parse = |args: &[&str]| Args::try_parse_from([&["switchyard-bench"], args].concat());
        let args = parse(&["--duration", "60s", "chat-small-rate"]).unwrap();
        assert_eq!(args.duration, Some(Duration::from_secs(60)));
        assert!(parse(&["--duration", "0s"]).is_err());
        assert!(parse(&["--duration", "11m"]).is_err());
        assert!(parse(&["--duration", "60s", "--smoke"]).is_err());
        assert!(parse(&["--duration", "60s", "--soak", "1m"]).is_err());

        let dir = crate::shipped_cases();
        let cases = case::load_all(&dir, &["chat-small-rate".to_owned()]).unwrap();
        let by_requests = Case {
            stop: Stop::Requests(11),
            ..cases[0].clone()
        };
        for case in [&cases[0], &by_requests] {
            let longer = case.measured_for(Duration::from_secs(60));
            assert_eq!(longer.stop, Stop::Duration(Duration::from_secs(60)));
            assert_eq!(longer.load, case.load);
            assert_eq!(longer.warmup, case.warmup);
            assert!(longer.load_summary().contains("for 60 s"));
        }
    }

    #[test]
    fn idle_cpus_are_left_as_they_are_unless_polling_is_asked_for() {
        let parse = |args: &[&str]| Args::try_parse_from([&["switchyard-bench"], args].concat());
        assert_eq!(parse(&[]).unwrap().cpu_idle, IdleRequest::AsIs);
        assert_eq!(
            parse(&["--cpu-idle", "as-is"]).unwrap().cpu_idle,
            IdleRequest::AsIs
        );
        assert_eq!(
            parse(&["--cpu-idle", "poll"]).unwrap().cpu_idle,
            IdleRequest::Poll
        );
        assert!(parse(&["--cpu-idle", "halt"]).is_err());
    }

    #[test]
    fn short_path_keeps_profile_and_name() {
        assert_eq!(
            short_path(Path::new("/x/target/release/switchyard")),
            "release/switchyard"
        );
        assert_eq!(short_path(Path::new("switchyard")), "switchyard");
    }

    #[test]
    fn rounds_share_the_measured_part_and_only_the_first_has_the_full_warm_up() {
        let dir = crate::shipped_cases();
        let cases = case::load_all(&dir, &["chat-small-rate".to_owned()]).unwrap();
        let case = Case {
            stop: Stop::Requests(11),
            warmup: Duration::from_secs(2),
            ..cases[0].clone()
        };
        let plans: Vec<Plan> = (0..3).map(|r| round_plan(&case, r, 3)).collect();
        let shares: Vec<u64> = plans
            .iter()
            .map(|p| match p.stop {
                Stop::Requests(n) => n,
                Stop::Duration(_) => panic!("a count stays a count"),
            })
            .collect();
        assert_eq!(shares, [4, 4, 3]);
        assert_eq!(plans[0].warmup, Duration::from_secs(2));
        assert!(plans[1..].iter().all(|p| p.warmup == ROUND_WARMUP));

        let timed = Case {
            stop: Stop::Duration(Duration::from_secs(10)),
            ..case
        };
        let plan = round_plan(&timed, 4, 5);
        assert!(matches!(plan.stop, Stop::Duration(d) if d == Duration::from_secs(2)));
        assert_eq!(plan.measure_limit, Duration::from_secs(2));
    }

    #[test]
    fn shipped_cases_load() {
        let dir = crate::shipped_cases();
        let cases = case::load_all(&dir, &[]).unwrap();
        assert!(cases.len() >= 8);
        assert!(cases.iter().any(|c| c.name == DEFAULT_SOAK_CASE));
        // Every feature set has a small-prompt fixed-rate chat case and a stream case.
        for features in [
            FeatureSet::Bare,
            FeatureSet::Keys,
            FeatureSet::Records,
            FeatureSet::Otel,
        ] {
            for kind in [case::Kind::Chat, case::Kind::ChatStream] {
                assert!(
                    cases.iter().any(|c| c.features == features
                        && c.kind == kind
                        && c.prompt == case::PromptSize::Small
                        && matches!(c.load, Load::Rate(_))),
                    "no {kind:?} case for {features:?}"
                );
            }
        }
    }
}

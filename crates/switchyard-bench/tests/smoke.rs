//! End to end: smoke cases through the real `switchyard` binary covering every feature set (bare
//! stream and Anthropic-to-OpenAI translation, a virtual key, request records, OTLP export),
//! checking only that every request succeeded and the sink heard the exporter; never timing.
//!
//! Cargo does not build another package's binary for this package's tests. The bench finds the
//! gateway next to its own executable, as it does for users; `cargo test --workspace` (what CI
//! runs) has just built it there. When it is missing (this crate tested alone from a clean
//! target directory) the test builds it with `cargo build -p switchyard` into the same target
//! directory and profile. An existing binary is not rebuilt: a nested build resolves features
//! without the workspace's dev-dependencies and would recompile the gateway, so after changing
//! the gateway, test the workspace or build the gateway first.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// This package's directory as cargo names it when it runs the test: the binaries it runs may
/// have been built in a checkout at another path (one target directory shared by several), and
/// then carry that checkout's path.
fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
}

/// The harness's command, its gateway built if missing, reading the shipped cases.
fn harness_command() -> Result<Command, String> {
    let bench = Path::new(env!("CARGO_BIN_EXE_switchyard-bench"));
    build_gateway_if_missing(bench.parent().ok_or("the harness has no directory")?)?;
    let mut command = Command::new(bench);
    command.arg("--cases-dir").arg(package_dir().join("cases"));
    Ok(command)
}

fn build_gateway_if_missing(profile_dir: &Path) -> Result<(), String> {
    let gateway = profile_dir.join(format!("switchyard{}", std::env::consts::EXE_SUFFIX));
    if gateway.is_file() {
        return Ok(());
    }
    let target_dir = profile_dir
        .parent()
        .ok_or("the profile directory has no parent")?;
    let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cargo
        .current_dir(package_dir())
        .args(["build", "--quiet", "-p", "switchyard", "--target-dir"])
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p switchyard failed: {status}"));
    }
    Ok(())
}

/// One case of each feature set, plus translation.
const CASES: &[&str] = &[
    "chat-stream-small-rate",
    "anthropic-to-openai-small-rate",
    "chat-small-rate-keys",
    "chat-stream-small-rate-records",
    "chat-small-rate-otel",
];

#[test]
fn smoke_cases_complete_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = harness_command()
        .unwrap()
        // Two rounds: the targets take turns, and each target's rounds add up.
        .args(["--smoke", "--no-nginx", "--rounds", "2", "--json"])
        .arg(&json)
        .args(CASES)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all requests succeeded"), "{stdout}");
    // The run ends with each target's verdict; without nginx, those that compare with it say
    // they were not measured.
    assert!(stdout.contains("\n== targets (a smoke run"), "{stdout}");
    assert!(!stdout.contains("against the nginx hop"), "{stdout}");
    assert!(stdout.contains("records on: not measured"), "{stdout}");
    assert!(stdout.contains("idle RSS under 40 MB: "), "{stdout}");
    assert!(
        stdout.contains("idle RSS after a load under 40 MB: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("added time to first token under 200 us at p50, streams, short prompt: "),
        "{stdout}"
    );

    // The CPUs' idle states are left as they are unless polling is asked for, and the run says
    // so.
    assert!(
        stdout.contains("; left as the host has them: every figure includes"),
        "{stdout}"
    );

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["mode"], "smoke");
    assert_eq!(report["cpu_idle"]["polling_held"], false);
    assert_eq!(report["rounds"], 2);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), CASES.len());
    for case in cases {
        if case["case"]["features"] == "otel" {
            assert!(case["otlp_sink"]["exports"].as_u64().unwrap() > 0, "{case}");
        } else {
            assert!(case["otlp_sink"].is_null(), "{case}");
        }
        // Without nginx there is nothing to compare the gateway with.
        assert!(case["against_nginx"].is_null(), "{case}");
        // Without `--max-steal` every round is kept.
        assert_eq!(case["rounds_measured_again"], 0, "{case}");
        let targets = case["targets"].as_array().unwrap();
        let names: Vec<&str> = targets
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["direct", "gateway"]);
        // Both targets ran every round's share of the same request count, on fresh connections
        // each round.
        assert_eq!(targets[0]["ok"], targets[1]["ok"], "{case}");
        assert_eq!(
            targets[0]["ok"].as_u64(),
            case["case"]["stop"]["requests"].as_u64(),
            "{case}"
        );
        assert!(targets[1]["connections"].as_u64().unwrap() >= 2, "{case}");
        for t in targets {
            assert_eq!(t["errors"], 0, "{t}");
            // Linux reports how much of the machine's CPU time was stolen meanwhile.
            if cfg!(target_os = "linux") {
                assert!(t["host_steal_pct"].as_f64().is_some(), "{t}");
            }
            assert!(t["ok"].as_u64().unwrap() >= 50, "{t}");
            // Each round's own p99; the p99 of both together lies between them.
            let rounds: Vec<u64> = t["round_p99_us"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(rounds.len(), 2, "{t}");
            let p99 = t["latency_us"]["p99"].as_u64().unwrap();
            assert!(
                rounds[0].min(rounds[1]) <= p99 && p99 <= rounds[0].max(rounds[1]),
                "{t}"
            );
        }
        let added = &case["added_over_direct"][0];
        assert_eq!(added["target"], "gateway", "{case}");
        assert!(added["p99_median_of_rounds_us"].is_i64(), "{case}");
        let gateway = &targets[1];
        assert!(gateway["process"]["rss_load_kib"].as_u64().unwrap() > 0);
        assert!(gateway["process"]["rss_after_kib"].as_u64().unwrap() > 0);
        // Counted over the measured windows: a number (zero or more), not absent.
        assert!(
            gateway["process"]["minor_faults_per_request"]
                .as_f64()
                .unwrap()
                >= 0.0,
            "{gateway}"
        );
        if case["case"]["kind"] == "chat_stream" {
            // Every stream carried text and ended with [DONE].
            assert_eq!(gateway["ttft_us"]["count"], gateway["ok"], "{gateway}");
        }
    }
}

#[test]
fn a_soak_prints_its_memory_interval_by_interval_and_the_trend_through_them() {
    let out = harness_command()
        .unwrap()
        .args(["--soak", "9s", "--every", "2s", "chat-small-rate"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("== soak: chat-small-rate"), "{stdout}");
    // Whole intervals of 2 s (four, unless a slow machine's timer lets the end of the load cut
    // the fourth short): the first against the last, and the slope through them all.
    assert!(stdout.contains("\nmemory: RSS mean "), "{stdout}");
    let trend = stdout
        .lines()
        .find(|l| l.starts_with("memory trend: anonymous "))
        .unwrap_or_else(|| panic!("no trend line:\n{stdout}"));
    let intervals: usize = trend
        .split(" over the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no interval count: {trend}"));
    assert!((3..=4).contains(&intervals), "{trend}");
    assert!(
        trend.contains(" intervals' means, least-squares slope "),
        "{trend}"
    );
    assert!(trend.ends_with(" MiB per 10 minutes"), "{trend}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

/// The processes whose parent is `parent`, from `/proc`.
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent's id is the second field after the command name, which is in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` runs (a zombie has exited).
#[cfg(target_os = "linux")]
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[cfg(target_os = "linux")]
#[test]
fn a_harness_stopped_with_sigterm_stops_its_gateway_and_removes_its_scratch_directories() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let mut harness = harness_command()
        .unwrap()
        .args([
            "--no-nginx",
            "--rounds",
            "1",
            "--duration",
            "60s",
            "chat-small-rate-records",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = harness.id();
    // The gateway has started once the first target's load begins (progress goes to stderr).
    let mut lines = BufReader::new(harness.stderr.take().unwrap()).lines();
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("(open loop") {
            break;
        }
    }
    assert!(said.contains("(open loop"), "{said}");
    let gateways: Vec<u32> = children_of(pid)
        .into_iter()
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|&b| b == 0).any(|arg| arg == b"serve"))
        })
        .collect();
    assert_eq!(
        gateways.len(),
        1,
        "the gateway, the harness's child: {said}"
    );
    let ours = format!("-{pid}-");
    let scratch = || -> Vec<String> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with("switchyard-bench-") && n.contains(&ours))
            .collect()
    };
    assert!(!scratch().is_empty(), "the gateway's scratch directory");

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let stderr: String = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    let status = harness.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?} {stderr}");
    assert!(
        status.signal().is_none(),
        "it exited, not killed by the signal"
    );
    assert!(stderr.contains("SIGTERM: stopping the gateway"), "{stderr}");
    // Asked with SIGTERM, the gateway finished before the harness exited.
    assert!(!runs(gateways[0]), "the gateway outlived the harness");
    assert!(scratch().is_empty(), "{:?}", scratch());
}

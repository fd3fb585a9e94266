//! `switchyard-bench`: the load harness. It starts the provider simulator (zero latency, in
//! this process), the real `switchyard` gateway as a child process and, when installed, nginx
//! as a reverse-proxy reference; then it drives HTTP/1.1 keep-alive load at a fixed rate (open
//! loop) or a fixed concurrency (closed loop) against the simulator directly, through nginx and
//! through the gateway, and reports the gateway's added latency (p50 to p99.9), throughput, CPU
//! time per 1,000 requests and resident memory.
//!
//! Cases are data: `cases/<name>/case.yaml` (kind, prompt size, load profile, feature set) and
//! `cases/<name>/gateway.yaml` (the gateway configuration; `${SIM_URL}`, `${SIM_OPENAI_BASE}`,
//! `${BENCH_MASTER_KEY}`, `${BENCH_DATA_DIR}` and `${BENCH_OTLP_ENDPOINT}` come from the
//! environment the harness gives the gateway).
//!
//! Load only ever goes to 127.0.0.1, every run is bounded in requests and time, and no test
//! asserts on timing.
//!
//! Modules: `case` reads case files; `payload` builds the request bytes; `client` is the
//! keep-alive HTTP client; `load` drives load and records; `targets` starts the simulator,
//! the gateway and nginx; `sink` is the OTLP receiver of the `otel` feature set; `procfs` reads
//! `/proc`; `cpu_idle` reports the CPUs' idle states and, when asked, holds them at polling for
//! a run; `host` times the host's own speed before each case; `report` prints and serialises;
//! `stop_signal` stops the children when a signal (`kill`, a closed terminal, Ctrl-C) ends the
//! harness; `cli` runs.

pub mod case;
pub mod cli;
mod client;
pub mod cpu_idle;
pub mod host;
mod load;
mod payload;
mod procfs;
pub mod report;
mod sink;
mod stop_signal;
mod targets;

pub use cli::{Options, run};

/// The shipped cases, for tests: found through the package directory cargo names when it runs
/// the test, so that a test binary reused from a checkout at another path (one target directory
/// shared by several checkouts) still reads this checkout's cases.
#[cfg(test)]
fn shipped_cases() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
        .join("cases")
}

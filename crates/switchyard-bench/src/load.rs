//! The load generator: open-loop (fixed rate) and closed-loop (fixed concurrency) drivers, the
//! recorder of latencies and errors, and the watcher of a target process's CPU time and memory
//! during the measured window. Runs on one thread in a `LocalSet`; only the open loop's
//! schedule lives on a thread of its own, sleeping between sends.
//!
//! Open loop: request i is due at `start + i / rate`. Its latency counts from that due time,
//! not from when it was actually sent, so a stall (in the target or in the generator) shows up
//! as the queue it would cause for real clients instead of being omitted ("coordinated
//! omission"). A scheduler thread sleeps to each due time (OS sleep, ~0.1 ms precise, unlike
//! the runtime's 1 ms timer) and hands the request to the runtime; `send_lag` reports how late
//! sends left.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Notify, Semaphore};

use crate::case::{Load, Stop};
use crate::client::{self, Failure, Pool, Timings};
use crate::payload::Template;
use crate::procfs::{self, CpuTotals};

/// Longest a single request may take before it counts as a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Open loop: most requests in flight; later ones wait (their latency keeps counting).
const MAX_IN_FLIGHT: usize = 512;
/// How often the process watcher samples memory.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// Histograms hold microseconds, from 1 µs to 10 minutes, at 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Everything one run measured.
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gap: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// Latencies since the soak printer last took them.
    pub interval: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    /// When the last measured request ended.
    pub last_end: Option<Instant>,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Recorder> {
        Ok(Recorder {
            latency: histogram()?,
            ttft: histogram()?,
            gap: histogram()?,
            send_lag: histogram()?,
            interval: histogram()?,
            ok: 0,
            errors: BTreeMap::new(),
            first_error: None,
            last_end: None,
        })
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds a later run's figures to these (histograms of the same bounds always add).
    pub fn merge(&mut self, later: &Recorder) {
        for (into, from) in [
            (&mut self.latency, &later.latency),
            (&mut self.ttft, &later.ttft),
            (&mut self.gap, &later.gap),
            (&mut self.send_lag, &later.send_lag),
            (&mut self.interval, &later.interval),
        ] {
            let _ = into.add(from);
        }
        self.ok += later.ok;
        for (kind, n) in &later.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&later.first_error);
        }
        self.last_end = self.last_end.max(later.last_end);
    }

    /// Records one measured request that was due at `due`.
    fn record(&mut self, due: Instant, result: Result<Timings, Failure>) {
        match result {
            Ok(t) => {
                self.ok += 1;
                let latency = micros(t.end.saturating_duration_since(due));
                self.latency.saturating_record(latency);
                self.interval.saturating_record(latency);
                if let Some(first) = t.tokens.first() {
                    self.ttft
                        .saturating_record(micros(first.saturating_duration_since(due)));
                }
                for pair in t.tokens.windows(2) {
                    self.gap
                        .saturating_record(micros(pair[1].saturating_duration_since(pair[0])));
                }
                self.last_end = Some(t.end);
            }
            Err(f) => self.fail(f),
        }
    }

    fn fail(&mut self, failure: Failure) {
        *self.errors.entry(failure.label()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(failure.detail());
        }
        self.last_end = Some(Instant::now());
    }
}

/// CPU time, page faults and peak memory of a process over the measured window.
pub struct ProcWatch {
    pid: u32,
    start: Cell<Option<procfs::Counters>>,
    rss_peak: Cell<u64>,
    stopped: Cell<bool>,
}

/// What a [`ProcWatch`] saw.
#[derive(Debug, Clone, Copy)]
pub struct ProcUsage {
    /// CPU time in the window, in clock ticks.
    pub cpu_ticks: Option<u64>,
    /// Minor page faults in the window.
    pub minor_faults: Option<u64>,
    pub rss_peak_kib: u64,
}

impl ProcWatch {
    pub fn new(pid: u32) -> Rc<ProcWatch> {
        Rc::new(ProcWatch {
            pid,
            start: Cell::new(None),
            rss_peak: Cell::new(0),
            stopped: Cell::new(false),
        })
    }

    /// Starts watching at `from` (the start of the measured window).
    fn spawn(self: &Rc<Self>, from: Instant) {
        let watch = self.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(from.into()).await;
            watch.start.set(procfs::counters(watch.pid));
            while !watch.stopped.get() {
                watch.sample_rss();
                tokio::time::sleep(RSS_EVERY).await;
            }
        });
    }

    fn sample_rss(&self) {
        if let Some(rss) = procfs::rss_kib(self.pid) {
            self.rss_peak.set(self.rss_peak.get().max(rss));
        }
    }

    fn finish(&self) -> ProcUsage {
        self.stopped.set(true);
        self.sample_rss();
        let window = self
            .start
            .get()
            .zip(procfs::counters(self.pid))
            .map(|(start, end)| end.since(start));
        ProcUsage {
            cpu_ticks: window.map(|w| w.cpu_ticks),
            minor_faults: window.map(|w| w.minor_faults),
            rss_peak_kib: self.rss_peak.get(),
        }
    }
}

/// One run against one target.
pub struct Plan {
    pub load: Load,
    pub warmup: Duration,
    pub stop: Stop,
    /// Hard end of the measured part; requests still running then count as `unfinished`.
    pub measure_limit: Duration,
}

/// The outcome of a run; the latencies and errors are in the run's [`Recorder`].
pub struct RunResult {
    /// From the start of the measured window to the end of its last request.
    pub elapsed: Duration,
    pub connections: u64,
    pub process: Option<ProcUsage>,
    /// The machine's CPU time over the measured window, and the part of it stolen.
    pub host: Option<CpuTotals>,
}

/// Counts requests in flight and wakes a waiter when none are left.
#[derive(Default)]
struct InFlight {
    count: Cell<usize>,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) {
        self.count.set(self.count.get() + 1);
    }

    fn leave(&self) {
        let n = self.count.get().saturating_sub(1);
        self.count.set(n);
        if n == 0 {
            self.idle.notify_waiters();
        }
    }

    async fn drained(&self) {
        while self.count.get() > 0 {
            self.idle.notified().await;
        }
    }
}

/// Drives `plan` against `pool`, recording measured requests into `recorder` (which a soak
/// printer may read meanwhile); `watch` observes the target's process. Must run inside a
/// `LocalSet`, which the caller drops afterwards: that cancels requests a hard deadline cut.
pub async fn run(
    pool: Rc<Pool>,
    template: Rc<Template>,
    plan: &Plan,
    watch: Option<Rc<ProcWatch>>,
    recorder: Rc<RefCell<Recorder>>,
) -> RunResult {
    let in_flight = Rc::new(InFlight::default());
    // A short lead so the first due time is not already past when the loop starts.
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = match plan.load {
        Load::Rate(rate) => start + Duration::from_secs_f64(warmup_count(plan, rate) as f64 / rate),
        Load::Concurrency(_) => start + plan.warmup,
    };
    let hard_end = measure_start + plan.measure_limit + REQUEST_TIMEOUT + Duration::from_secs(5);
    if let Some(w) = &watch {
        w.spawn(measure_start);
    }
    let host_start = Rc::new(Cell::new(None));
    tokio::task::spawn_local({
        let host_start = host_start.clone();
        async move {
            tokio::time::sleep_until(measure_start.into()).await;
            host_start.set(CpuTotals::now());
        }
    });
    let driven = async {
        match plan.load {
            Load::Rate(rate) => {
                open_loop(&pool, &template, plan, rate, start, &in_flight, &recorder).await
            }
            Load::Concurrency(n) => {
                closed_loop(
                    &pool,
                    &template,
                    plan,
                    n,
                    measure_start,
                    &in_flight,
                    &recorder,
                )
                .await
            }
        }
        in_flight.drained().await;
    };
    if tokio::time::timeout_at(hard_end.into(), driven)
        .await
        .is_err()
    {
        let mut rec = recorder.borrow_mut();
        for _ in 0..in_flight.count.get() {
            rec.fail(Failure::Timeout);
        }
    }
    let process = watch.map(|w| w.finish());
    let host = host_start
        .get()
        .zip(CpuTotals::now())
        .map(|(start, end)| end.since(start));
    let elapsed = recorder
        .borrow()
        .last_end
        .map(|end| end.saturating_duration_since(measure_start))
        .unwrap_or_default();
    RunResult {
        elapsed,
        connections: pool.opened(),
        process,
        host,
    }
}

fn warmup_count(plan: &Plan, rate: f64) -> u64 {
    (plan.warmup.as_secs_f64() * rate).round() as u64
}

async fn open_loop(
    pool: &Rc<Pool>,
    template: &Rc<Template>,
    plan: &Plan,
    rate: f64,
    start: Instant,
    in_flight: &Rc<InFlight>,
    recorder: &Rc<RefCell<Recorder>>,
) {
    let warmup = warmup_count(plan, rate);
    let measured = match plan.stop {
        Stop::Requests(n) => n,
        Stop::Duration(d) => (d.as_secs_f64() * rate).round().max(1.0) as u64,
    };
    let total = warmup + measured;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    // The schedule: an OS thread that sleeps to each due time. It stops when the receiver is
    // gone (the run ended early) or after the last request.
    std::thread::spawn(move || {
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send((i, due)).is_err() {
                break;
            }
        }
    });
    let permits = Rc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some((i, due)) = rx.recv().await {
        let pool = pool.clone();
        let template = template.clone();
        let recorder = recorder.clone();
        let permits = permits.clone();
        let in_flight_task = in_flight.clone();
        in_flight.enter();
        tokio::task::spawn_local(async move {
            let _permit = permits.acquire().await;
            let sent = Instant::now();
            let result = send(&pool, &template).await;
            if i >= warmup {
                let mut rec = recorder.borrow_mut();
                rec.send_lag
                    .saturating_record(micros(sent.saturating_duration_since(due)));
                rec.record(due, result);
            }
            in_flight_task.leave();
        });
    }
}

async fn closed_loop(
    pool: &Rc<Pool>,
    template: &Rc<Template>,
    plan: &Plan,
    concurrency: u32,
    measure_start: Instant,
    in_flight: &Rc<InFlight>,
    recorder: &Rc<RefCell<Recorder>>,
) {
    let issued = Rc::new(Cell::new(0u64));
    let stop = plan.stop;
    for _ in 0..concurrency {
        let pool = pool.clone();
        let template = template.clone();
        let recorder = recorder.clone();
        let issued = issued.clone();
        let in_flight_task = in_flight.clone();
        in_flight.enter();
        tokio::task::spawn_local(async move {
            loop {
                let sent = Instant::now();
                let measured = sent >= measure_start;
                if measured {
                    let more = match stop {
                        Stop::Duration(d) => sent < measure_start + d,
                        Stop::Requests(n) => issued.get() < n,
                    };
                    if !more {
                        break;
                    }
                    issued.set(issued.get() + 1);
                }
                let result = send(&pool, &template).await;
                if measured {
                    recorder.borrow_mut().record(sent, result);
                }
            }
            in_flight_task.leave();
        });
    }
}

async fn send(pool: &Pool, template: &Template) -> Result<Timings, Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, client::exchange(pool, template)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_rounds_add_up_to_one_run() {
        let due = Instant::now();
        let done = |ms: u64| Timings {
            end: due + Duration::from_millis(ms),
            tokens: vec![
                due + Duration::from_millis(ms / 2),
                due + Duration::from_millis(ms),
            ],
        };
        let mut whole = Recorder::new().unwrap();
        let mut first = Recorder::new().unwrap();
        let mut second = Recorder::new().unwrap();
        for (ms, in_first) in [(1, true), (3, true), (5, false)] {
            whole.record(due, Ok(done(ms)));
            let part = if in_first { &mut first } else { &mut second };
            part.record(due, Ok(done(ms)));
        }
        whole.record(due, Err(Failure::Timeout));
        second.record(due, Err(Failure::Timeout));
        let last_end = first.last_end.max(second.last_end);
        first.merge(&second);
        assert_eq!(first.ok, 3);
        assert_eq!(first.error_count(), 1);
        assert_eq!(first.first_error, whole.first_error);
        assert_eq!(first.latency.len(), whole.latency.len());
        assert_eq!(first.latency.max(), whole.latency.max());
        assert_eq!(first.ttft.len(), 3);
        assert_eq!(first.gap.len(), 3);
        assert_eq!(first.last_end, last_end);
    }
}

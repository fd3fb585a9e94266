//! Lock-free health of one deployment: requests in flight, consecutive failures, cooldown,
//! a recent error rate, latency (EWMA and a coarse histogram for percentiles), usage in the
//! current minute and the provider's last reported rate-limit headroom. Every field is an atomic
//! so the hot path never takes a lock.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the process started (monotonic).
pub fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64
}

/// [`now_ms`] of an instant already taken (no clock read).
pub fn ms_at(at: Instant) -> u64 {
    at.saturating_duration_since(*start()).as_millis() as u64
}

fn start() -> &'static Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now)
}

/// The span of one latency histogram window: percentiles cover the last one or two.
const HISTOGRAM_WINDOW_MS: u64 = 5 * 60_000;

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is open-ended.
const BUCKETS_MS: [u64; 20] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    10_000,
    20_000,
    60_000,
    u64::MAX,
];

/// Weight of the newest sample in the moving averages.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug, Default)]
struct Ewma(AtomicU64);

impl Ewma {
    /// `None` until the first sample.
    fn get(&self) -> Option<f64> {
        let bits = self.0.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    fn add(&self, sample: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = if bits == 0 {
                    sample
                } else {
                    let old = f64::from_bits(bits);
                    old + EWMA_ALPHA * (sample - old)
                };
                // Zero is the "no sample" marker; keep a tiny positive value instead.
                Some(next.max(f64::MIN_POSITIVE).to_bits())
            });
    }
}

/// Counts over the last sixty seconds (by `now_ms`): this minute's count and the one before,
/// weighed by how much of it the last sixty seconds still cover. A count that dropped to
/// nothing at each minute's turn read as "in the last minute" a few requests where there were
/// hundreds.
#[derive(Debug, Default)]
struct MinuteCounter {
    minute: AtomicU64,
    count: AtomicU64,
    previous: AtomicU64,
}

impl MinuteCounter {
    fn add(&self, n: u64, now_ms: u64) {
        let m = now_ms / 60_000 + 1;
        let at = self.minute.load(Ordering::Relaxed);
        if at != m
            && self
                .minute
                .compare_exchange(at, m, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let last = self.count.swap(0, Ordering::Relaxed);
            self.previous
                .store(if m == at + 1 { last } else { 0 }, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, now_ms: u64) -> u64 {
        let m = now_ms / 60_000 + 1;
        let at = self.minute.load(Ordering::Relaxed);
        let (current, previous) = if at == m {
            (
                self.count.load(Ordering::Relaxed),
                self.previous.load(Ordering::Relaxed),
            )
        } else if at + 1 == m {
            (0, self.count.load(Ordering::Relaxed))
        } else {
            (0, 0)
        };
        let still_covered = 1.0 - (now_ms % 60_000) as f64 / 60_000.0;
        current + (previous as f64 * still_covered).round() as u64
    }
}

/// Hedge races lost in a row that cool a deployment: at a p95 hedge a healthy one loses eight
/// running about once in 10^10 runs.
const LOST_RACES_TO_COOL: u32 = 8;

#[derive(Debug, Default)]
pub struct Health {
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Hedge races lost in a row (the other attempt answered first, this one was dropped).
    lost_races: AtomicU32,
    /// Verdicts the cooldown does not show (a failure that left it as it was, a stream begun):
    /// a probe's claim notes the count, to tell whether any came of the probe before giving it
    /// back. An answer ends the cooldown, which says so itself.
    verdicts: AtomicU64,
    cooldown_until_ms: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    /// 1.0 for a failure, 0.0 for a success.
    error_rate: Ewma,
    /// Time to first byte (stream) or full latency (non-stream), ms.
    latency_ms: Ewma,
    /// Latencies of this histogram window and the one before (by `window % 2`), so the
    /// percentiles say how the deployment answers lately, not since the process started.
    histogram: [[AtomicU64; BUCKETS_MS.len()]; 2],
    /// The histogram window the newest latency fell in.
    histogram_window: AtomicU64,
    requests_this_minute: MinuteCounter,
    tokens_this_minute: MinuteCounter,
    /// Provider-reported remaining share of its limits, in per-mille (0 = unknown).
    remaining_permille: AtomicU32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSnapshot {
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub cooling: bool,
    /// Milliseconds left in cooldown.
    pub cooldown_left_ms: u64,
    pub successes: u64,
    pub failures: u64,
    pub error_rate: f64,
    /// `None` until measured.
    pub latency_ewma_ms: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub requests_this_minute: u64,
    pub tokens_this_minute: u64,
    /// Provider-reported headroom in [0, 1], when it sent rate-limit headers.
    pub provider_headroom: Option<f64>,
}

/// What [`Health::admit`] lets a request do with a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Healthy,
    /// Its cooldown ran out and this request is the one probe: it tries the deployment first.
    /// `claimed_until` is the cooldown re-armed for everyone else, `was` the one that ran out,
    /// `verdicts` the deployment's count of answers and failures when claimed.
    Probe {
        claimed_until: u64,
        was: u64,
        verdicts: u64,
    },
    /// Cooling down (or another request holds the probe): a last resort.
    Cooling,
}

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Health);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    pub fn start(&self, now_ms: u64) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests_this_minute.add(1, now_ms);
        InFlight(self)
    }

    pub fn add_tokens(&self, tokens: u64, now_ms: u64) {
        self.tokens_this_minute.add(tokens, now_ms);
    }

    pub fn success(&self, latency: Duration, now_ms: u64) {
        self.succeeded();
        self.answered_at(latency, now_ms);
    }

    /// Counts a success: the run of failures ends and a cooldown (a half-open probe's
    /// included) is over.
    pub fn succeeded(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        // Written only when set: every answer passes here, and a store dirties the line
        // for the other workers.
        if self.lost_races.load(Ordering::Relaxed) != 0 {
            self.lost_races.store(0, Ordering::Relaxed);
        }
        // Ending the cooldown is itself a probe's verdict (its give-back then finds the
        // cooldown moved).
        self.cooldown_until_ms.store(0, Ordering::Relaxed);
        self.error_rate.add(0.0);
    }

    /// The deployment began an answer (a stream's first event): a probe's verdict, though
    /// whether the answer ends well is known only at its end.
    pub fn answering(&self) {
        // Only a cooling deployment can have a probe out: no write on the common path.
        if self.cooldown_until_ms.load(Ordering::Relaxed) != 0 {
            self.verdicts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The deployment answered, though it refused the request for the request's own sake (a
    /// 400, a context limit, a content filter): it is up, so a cooldown still standing (a
    /// probe's, re-armed when it was claimed) ends. The run of failures stands.
    pub fn answered(&self) {
        if self.cooldown_until_ms.load(Ordering::Relaxed) != 0 {
            self.cooldown_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Records how long an answer took to start (a stream's, whose success or failure is only
    /// known at its end), in the histogram window of `now_ms`.
    pub fn answered_at(&self, latency: Duration, now_ms: u64) {
        let ms = latency.as_secs_f64() * 1000.0;
        self.latency_ms.add(ms);
        let bucket = BUCKETS_MS
            .iter()
            .position(|&b| (ms as u64) < b)
            .unwrap_or(BUCKETS_MS.len() - 1);
        let window = now_ms / HISTOGRAM_WINDOW_MS;
        let at = self.histogram_window.load(Ordering::Relaxed);
        if at != window
            && self
                .histogram_window
                .compare_exchange(at, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // The slot this window takes held the one two windows ago; the other slot is the
            // window before only if that came straight before.
            let stale: &[usize] = if window == at + 1 {
                &[(window % 2) as usize]
            } else {
                &[0, 1]
            };
            for slot in stale {
                for count in &self.histogram[*slot] {
                    count.store(0, Ordering::Relaxed);
                }
            }
        }
        self.histogram[(window % 2) as usize][bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure; cools the deployment after `allowed_fails` in a row, at once when
    /// `immediate` (hangs and refused connections), or for as long as a `retry-after` asks.
    /// Returns the end of the cooldown when this failure started or lengthened one.
    pub fn failure(
        &self,
        allowed_fails: u32,
        cooldown: Duration,
        retry_after: Option<Duration>,
        immediate: bool,
        now_ms: u64,
    ) -> Option<u64> {
        self.verdicts.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.error_rate.add(1.0);
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut until = 0;
        if immediate || n >= allowed_fails.max(1) {
            until = now_ms + cooldown.as_millis() as u64;
        }
        if let Some(ra) = retry_after {
            until = until.max(now_ms + ra.as_millis() as u64);
        }
        (until > 0 && self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed) < until)
            .then_some(until)
    }

    /// Counts a hedge race this deployment lost: dropped unanswered because the hedge answered
    /// first. One says nothing (a hedge at p95 wins one race in twenty), but a run of them with
    /// no answer between is a deployment that has stopped answering, hidden from every other
    /// count by the hedge; it cools as a failure would. Returns the cooldown's end if it started
    /// one.
    pub fn lost_race(&self, cooldown: Duration, now_ms: u64) -> Option<u64> {
        let n = self.lost_races.fetch_add(1, Ordering::Relaxed) + 1;
        if n < LOST_RACES_TO_COOL {
            return None;
        }
        self.lost_races.store(0, Ordering::Relaxed);
        self.failure(1, cooldown, None, true, now_ms)
    }

    /// Cools the deployment until `until_ms` (another replica saw it fail), unless it is cooling
    /// longer already.
    pub fn cool_until(&self, until_ms: u64) {
        self.cooldown_until_ms
            .fetch_max(until_ms, Ordering::Relaxed);
    }

    /// Half-open probing: once a cooldown has run out, the first request to ask becomes the one
    /// probe (the cooldown is re-armed for everyone else until it answers); a success closes the
    /// breaker, a failure re-arms it. The request given the probe must try the deployment
    /// first: a probe it never sends would leave the re-armed cooldown standing with nothing
    /// learnt, and a recovered deployment out for cooldown after cooldown.
    pub fn admit(&self, now_ms: u64, cooldown: Duration) -> Admitted {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return Admitted::Healthy;
        }
        if until > now_ms {
            return Admitted::Cooling;
        }
        let claimed_until = now_ms + cooldown.as_millis() as u64;
        let verdicts = self.verdicts.load(Ordering::Relaxed);
        let claimed = self
            .cooldown_until_ms
            .compare_exchange(until, claimed_until, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if claimed {
            Admitted::Probe {
                claimed_until,
                was: until,
                verdicts,
            }
        } else {
            Admitted::Cooling
        }
    }

    /// Gives back a probe no verdict came of (its request refused after routing, its client
    /// gone before it answered): the next request probes instead. Nothing changes if an answer
    /// or a failure came since, or another change moved the cooldown.
    pub fn release_probe(&self, claimed_until: u64, was: u64, verdicts: u64) {
        if self.verdicts.load(Ordering::Relaxed) != verdicts {
            return;
        }
        let _ = self.cooldown_until_ms.compare_exchange(
            claimed_until,
            was,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Records the provider's `x-ratelimit-remaining-*` / `x-ratelimit-limit-*` headroom.
    pub fn provider_headroom(&self, fraction: f64) {
        let permille = (fraction.clamp(0.0, 1.0) * 1000.0) as u32;
        self.remaining_permille
            .store(permille + 1, Ordering::Relaxed);
    }

    /// The p50, p95 and p99 latencies of this histogram window and the one before, from one
    /// read (no allocation), each interpolated within its bucket as Prometheus does.
    fn percentiles(&self, now_ms: u64) -> [Option<u64>; 3] {
        let window = now_ms / HISTOGRAM_WINDOW_MS;
        let at = self.histogram_window.load(Ordering::Relaxed);
        // The windows still recent: the newest one's and, if that is this window, the one
        // before.
        let slots: &[u64] = match window.checked_sub(at) {
            Some(0) => &[at, at.wrapping_sub(1)],
            Some(1) => &[at],
            _ => &[],
        };
        let counts: [u64; BUCKETS_MS.len()] = std::array::from_fn(|i| {
            slots
                .iter()
                .map(|w| self.histogram[(w % 2) as usize][i].load(Ordering::Relaxed))
                .sum()
        });
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return [None; 3];
        }
        [0.50, 0.95, 0.99].map(|q| {
            let rank = ((total as f64) * q).ceil().max(1.0);
            let mut seen = 0.0;
            let mut lower = 0u64;
            for (c, bound) in counts.iter().zip(BUCKETS_MS) {
                let upper = bound.min(120_000);
                let c = *c as f64;
                if c > 0.0 && seen + c >= rank {
                    let within = (rank - seen) / c;
                    return Some(lower + ((upper - lower) as f64 * within).round() as u64);
                }
                seen += c;
                lower = upper;
            }
            Some(lower)
        })
    }

    pub fn snapshot(&self, now_ms: u64) -> HealthSnapshot {
        let [p50_ms, p95_ms, p99_ms] = self.percentiles(now_ms);
        HealthSnapshot {
            p50_ms,
            p95_ms,
            p99_ms,
            ..self.snapshot_for_routing(now_ms)
        }
    }

    /// A snapshot without the latency percentiles (left `None`), which no strategy reads:
    /// taking them walks the whole histogram, a cost every request's route plan paid.
    pub fn snapshot_for_routing(&self, now_ms: u64) -> HealthSnapshot {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        let remaining = self.remaining_permille.load(Ordering::Relaxed);
        HealthSnapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            cooling: until > now_ms,
            cooldown_left_ms: until.saturating_sub(now_ms),
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            error_rate: self.error_rate.get().unwrap_or(0.0),
            latency_ewma_ms: self.latency_ms.get(),
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            requests_this_minute: self.requests_this_minute.get(now_ms),
            tokens_this_minute: self.tokens_this_minute.get(now_ms),
            provider_headroom: (remaining > 0).then(|| f64::from(remaining - 1) / 1000.0),
        }
    }
}

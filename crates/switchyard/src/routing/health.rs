//! Lock-free health of one deployment: requests in flight, consecutive failures and a cooldown
//! deadline. Every field is an atomic so the hot path never takes a lock.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the process started (monotonic).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug, Default)]
pub struct Health {
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    cooldown_until_ms: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub cooling: bool,
    /// Milliseconds left in cooldown.
    pub cooldown_left_ms: u64,
    pub successes: u64,
    pub failures: u64,
}

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Health);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub fn success(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.cooldown_until_ms.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; cools the deployment after `allowed_fails` in a row, or at once for as
    /// long as the provider's `retry-after` asks.
    pub fn failure(
        &self,
        allowed_fails: u32,
        cooldown: Duration,
        retry_after: Option<Duration>,
        now_ms: u64,
    ) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut until = 0;
        if n >= allowed_fails.max(1) {
            until = now_ms + cooldown.as_millis() as u64;
        }
        if let Some(ra) = retry_after {
            until = until.max(now_ms + ra.as_millis() as u64);
        }
        if until > 0 {
            self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, now_ms: u64) -> HealthSnapshot {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        HealthSnapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            cooling: until > now_ms,
            cooldown_left_ms: until.saturating_sub(now_ms),
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

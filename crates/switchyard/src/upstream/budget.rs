//! The retry budget: retries (same-deployment re-tries and hedges) may only spend what requests
//! deposit, plus a small floor per second, so a failing provider cannot multiply the load on it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::config::RetryBudgetFile;
use crate::routing::now_ms;

/// One retry costs this many units; a request deposits `ratio × UNIT`.
const UNIT: i64 = 1_000;

#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    last_refill_ms: AtomicU64,
    deposit: i64,
    per_sec: i64,
    cap: i64,
}

impl RetryBudget {
    pub fn new(config: RetryBudgetFile) -> Self {
        let per_sec = i64::from(config.min_per_sec) * UNIT;
        let cap = (per_sec * 10).max(100 * UNIT);
        Self {
            balance: AtomicI64::new(per_sec),
            last_refill_ms: AtomicU64::new(now_ms()),
            deposit: (config.ratio * UNIT as f64) as i64,
            per_sec,
            cap,
        }
    }

    fn add(&self, amount: i64) {
        let cap = self.cap;
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + amount).min(cap))
            });
    }

    /// Every request deposits its share.
    pub fn deposit(&self) {
        self.add(self.deposit);
    }

    fn refill(&self) {
        let now = now_ms();
        let last = self.last_refill_ms.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(last);
        if elapsed >= 100
            && self
                .last_refill_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.add(self.per_sec * elapsed as i64 / 1000);
        }
    }

    /// Takes one retry if the budget allows it.
    pub fn try_withdraw(&self) -> bool {
        self.refill();
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_deposits_and_the_floor() {
        let b = RetryBudget::new(RetryBudgetFile {
            ratio: 0.5,
            min_per_sec: 0,
        });
        assert!(!b.try_withdraw(), "nothing deposited yet");
        for _ in 0..10 {
            b.deposit();
        }
        let allowed = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(allowed, 5, "half a retry per request");
        let b = RetryBudget::new(RetryBudgetFile {
            ratio: 0.0,
            min_per_sec: 3,
        });
        let allowed = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(allowed, 3, "the floor allows a few retries per second");
    }
}

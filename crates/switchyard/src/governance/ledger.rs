//! Budgets by reservation and rate limits, per entity. A request reserves its worst-case cost at
//! every level (key, team, org, customer) in one step: each level's small mutex is taken in a
//! fixed order, all levels are checked, and only then are all reserved. Settling releases the
//! reservation and adds the true cost the moment usage is known. No global lock: levels are
//! independent, and the critical sections do arithmetic only.

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::model::{Limits, OverBudget, Period};

/// Which entity a ledger belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Org(String),
    Team(String),
    Key(String),
    Customer(String),
}

impl Level {
    pub fn describe(&self) -> String {
        match self {
            Level::Org(id) => format!("organisation '{id}'"),
            Level::Team(id) => format!("team '{id}'"),
            Level::Key(id) => format!("key '{id}'"),
            Level::Customer(id) => format!("customer '{id}'"),
        }
    }
}

/// What a window's float estimate may be off by: less than any whole request or token.
const SLACK: f64 = 1e-6;

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: i64,
    current: u64,
    previous: u64,
}

impl Window {
    fn roll(&mut self, now_ms: i64) {
        let minute = now_ms.div_euclid(60_000);
        if minute != self.minute {
            self.previous = if minute == self.minute + 1 {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.minute = minute;
        }
    }

    /// Sliding-window estimate of the last 60 s.
    fn used(&self, now_ms: i64) -> f64 {
        let into = now_ms.rem_euclid(60_000) as f64 / 60_000.0;
        self.previous as f64 * (1.0 - into) + self.current as f64
    }

    fn retry_after_secs(&self, now_ms: i64, weight: u64, limit: u64) -> u64 {
        sliding_retry_after_secs(self.previous, self.current, now_ms, weight, limit)
    }
}

/// Whole seconds until `weight` more fits under `limit` in a sliding window that counted
/// `previous` in the last minute and `current` in this one, if nothing else is admitted
/// meanwhile: the last minute's share of the estimate shrinks as the window slides, this
/// minute's becomes the last minute's at the turn. (The replicas' shared windows in Redis
/// follow the same rule with the counts their script reads.)
pub fn sliding_retry_after_secs(
    previous: u64,
    current: u64,
    now_ms: i64,
    weight: u64,
    limit: u64,
) -> u64 {
    let into = now_ms.rem_euclid(60_000) as f64 / 60_000.0;
    let (previous, current, weight, limit) =
        (previous as f64, current as f64, weight as f64, limit as f64);
    // The share of a minute at which `previous * (1 - share) + current + weight` fits.
    let fits_at = |previous: f64, current: f64| {
        let room = limit - current - weight;
        if room < 0.0 {
            None
        } else if previous <= 0.0 {
            Some(0.0)
        } else {
            Some((1.0 - room / previous).max(0.0))
        }
    };
    let minutes = match fits_at(previous, current) {
        Some(share) => (share - into).max(0.0),
        // Not this minute: in the next, this minute's count is the last minute's.
        None => match fits_at(current, 0.0) {
            Some(share) => 1.0 - into + share,
            None => 1.0,
        },
    };
    // The float's last bits do not add a second (admission allows the same slack).
    ((minutes * 60.0 - SLACK).ceil() as u64).max(1)
}

#[derive(Debug, Default)]
struct State {
    period_start_ms: i64,
    spent: i64,
    reserved: i64,
    in_flight: u32,
    requests: Window,
    tokens: Window,
}

pub struct Ledger {
    pub level: Level,
    /// Changed in place when the entity's limits change (`update`): requests in flight hold
    /// this ledger, so what they reserved and will settle stays in the one that is read.
    limits: ArcSwap<Limits>,
    state: Mutex<State>,
}

/// Why a reservation did not go through.
#[derive(Debug, Clone, PartialEq)]
pub enum Shortfall {
    /// The budget is spent (for this period).
    Exhausted(Level),
    /// What is left cannot pay for the request's worst case (its `max_tokens`, or a level that
    /// refuses rather than caps), though a smaller request may still fit.
    BeyondBudget(Level),
    /// It would fit once in-flight reservations settle: worth waiting for.
    InFlight(Level),
    /// RPM, TPM or parallel limit; `retry_after_secs` says when to try again.
    RateLimited {
        level: Level,
        what: &'static str,
        limit: u64,
        /// What is left of the limit now (less than this request needs).
        remaining: u64,
        retry_after_secs: u64,
    },
}

/// What a request wants to reserve.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Worst-case cost with the request's own (or the default) output cap.
    pub worst: i64,
    /// Cost of the prompt plus one output token: the least any answer costs.
    pub least: i64,
    /// Estimated prompt tokens, for TPM.
    pub tokens: u64,
    /// The caller gave no `max_tokens`, so the gateway may lower the cap.
    pub may_cap: bool,
}

/// A reservation that went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub reserved: i64,
    /// `Some(budget left for output)` when the output cap had to be lowered to fit.
    pub capped_to: Option<i64>,
    /// Some level has a money budget, so the answer must stay within the reserved cap.
    pub budgeted: bool,
}

pub fn period_start(period: Period, now_ms: i64) -> i64 {
    let day = 86_400_000;
    match period {
        Period::None => 0,
        Period::Daily => now_ms - now_ms.rem_euclid(day),
        // Weeks start on Monday (1970-01-01 was a Thursday).
        Period::Weekly => {
            let days = now_ms.div_euclid(day);
            (days - (days + 3).rem_euclid(7)) * day
        }
        Period::Monthly => {
            // Civil-from-days (Howard Hinnant's algorithm), then back to the 1st.
            let days = now_ms.div_euclid(day);
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            (days - (d - 1)) * day
        }
    }
}

/// When the period after the one containing `now_ms` starts; `None` for budgets without one.
pub fn next_period_start(period: Period, now_ms: i64) -> Option<i64> {
    let day = 86_400_000;
    let start = period_start(period, now_ms);
    match period {
        Period::None => None,
        Period::Daily => Some(start + day),
        Period::Weekly => Some(start + 7 * day),
        // The first day of the next month: 32 days on is always in it.
        Period::Monthly => Some(period_start(period, start + 32 * day)),
    }
}

impl Ledger {
    pub fn new(level: Level, limits: Limits, spent: i64, now_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                period_start_ms: period_start(limits.budget_period, now_ms),
                spent,
                ..State::default()
            }),
            level,
            limits: ArcSwap::from_pointee(limits),
        })
    }

    /// The entity's limits now.
    pub fn limits(&self) -> arc_swap::Guard<Arc<Limits>> {
        self.limits.load()
    }

    /// The entity's new limits. What is reserved, in flight and counted in the minute's
    /// windows carries over; so does what was spent, unless the budget period changed, when
    /// the spend is `respent`, the new period's as the records have it.
    pub fn update(&self, limits: Limits, respent: Option<i64>, now_ms: i64) {
        let mut s = self.state.lock();
        if let Some(spent) = respent {
            s.period_start_ms = period_start(limits.budget_period, now_ms);
            s.spent = spent;
        }
        self.limits.store(Arc::new(limits));
        self.roll(&mut s, now_ms);
    }

    fn roll(&self, s: &mut State, now_ms: i64) {
        let start = period_start(self.limits.load().budget_period, now_ms);
        if start != s.period_start_ms {
            // A new period: what was spent belongs to the old one.
            s.period_start_ms = start;
            s.spent = 0;
        }
        s.requests.roll(now_ms);
        s.tokens.roll(now_ms);
    }

    /// When the budget period containing `now_ms` started.
    pub fn period_start(&self, now_ms: i64) -> i64 {
        period_start(self.limits.load().budget_period, now_ms)
    }

    /// Takes the spent and reserved figures kept elsewhere (the replicas' shared ledger), for
    /// what the admin API and the budget alerts read.
    pub fn mirror(&self, spent: i64, reserved: i64, now_ms: i64) {
        let mut s = self.state.lock();
        self.roll(&mut s, now_ms);
        s.spent = spent;
        s.reserved = reserved;
    }

    /// Spent, reserved and the budget, for the admin API.
    pub fn usage(&self, now_ms: i64) -> (i64, i64, Option<i64>, i64) {
        let mut s = self.state.lock();
        self.roll(&mut s, now_ms);
        (
            s.spent,
            s.reserved,
            self.limits.load().max_budget_nanos,
            s.period_start_ms,
        )
    }
}

/// What is left of a per-minute limit, rounded down.
fn left(limit: u64, used: f64) -> u64 {
    (limit as f64 - used).max(0.0).floor() as u64
}

/// What a request the gateway may cap (it set no `max_tokens`) reserves when its worst case
/// does not fit in what is `free`: half of it, so that requests at once share what is left
/// instead of queueing behind the first, which would take it all; never less than a sixteenth
/// of the request's own output room (256 tokens of the default 4,096: an answer cut shorter
/// would be of little use). `None` when less than that is free only because of reservations
/// in flight (`free_settled` is what is left once they settle): worth waiting for. At the
/// budget's very end, what is left.
pub fn capped_share(ask: Ask, free: i64, free_settled: i64) -> Option<i64> {
    let floor = ask.least + (ask.worst - ask.least) / 16;
    let share = (free / 2).max(floor);
    if share <= free {
        Some(share)
    } else if floor <= free_settled {
        None
    } else {
        Some(free)
    }
}

/// Tries to reserve `ask` at every level at once.
pub fn reserve(levels: &[Arc<Ledger>], ask: Ask, now_ms: i64) -> Result<Granted, Shortfall> {
    let mut ordered: Vec<&Arc<Ledger>> = levels.iter().collect();
    ordered.sort_by(|a, b| a.level.cmp(&b.level));
    let mut guards: Vec<_> = ordered.iter().map(|l| l.state.lock()).collect();
    for (l, s) in ordered.iter().zip(guards.iter_mut()) {
        l.roll(s, now_ms);
    }
    // Limits are read under the locks: a change of limits takes them too.
    // Rate limits first: they say nothing about money.
    for (l, s) in ordered.iter().zip(guards.iter()) {
        let limits = l.limits.load();
        if let Some(max) = limits.max_parallel
            && s.in_flight >= max
        {
            return Err(Shortfall::RateLimited {
                level: l.level.clone(),
                what: "parallel requests",
                limit: u64::from(max),
                remaining: 0,
                retry_after_secs: 1,
            });
        }
        if let Some(rpm) = limits.rpm
            && s.requests.used(now_ms) + 1.0 > rpm as f64 + SLACK
        {
            return Err(Shortfall::RateLimited {
                level: l.level.clone(),
                what: "requests per minute",
                limit: rpm,
                remaining: left(rpm, s.requests.used(now_ms)),
                retry_after_secs: s.requests.retry_after_secs(now_ms, 1, rpm),
            });
        }
        if let Some(tpm) = limits.tpm
            && s.tokens.used(now_ms) + ask.tokens as f64 > tpm as f64 + SLACK
        {
            return Err(Shortfall::RateLimited {
                level: l.level.clone(),
                what: "tokens per minute",
                limit: tpm,
                remaining: left(tpm, s.tokens.used(now_ms)),
                retry_after_secs: s.tokens.retry_after_secs(now_ms, ask.tokens, tpm),
            });
        }
    }
    // Money: the tightest level decides.
    let mut free = i64::MAX;
    let mut free_settled = i64::MAX;
    let mut tightest: Option<&Level> = None;
    let mut refuse_cap = false;
    for (l, s) in ordered.iter().zip(guards.iter()) {
        let limits = l.limits.load();
        if let Some(max) = limits.max_budget_nanos {
            let f = max - s.spent - s.reserved;
            if f < free {
                free = f;
                tightest = Some(&l.level);
            }
            free_settled = free_settled.min(max - s.spent);
            refuse_cap |= limits.over_budget == OverBudget::Refuse;
        }
    }
    let level = || tightest.cloned().unwrap_or(Level::Key(String::new()));
    let may_cap = ask.may_cap && !refuse_cap;
    let amount = if ask.worst <= free {
        Granted {
            reserved: ask.worst,
            capped_to: None,
            budgeted: tightest.is_some(),
        }
    } else if ask.least > free_settled {
        return Err(Shortfall::Exhausted(level()));
    } else if may_cap && ask.least <= free {
        let Some(share) = capped_share(ask, free, free_settled) else {
            return Err(Shortfall::InFlight(level()));
        };
        Granted {
            reserved: share,
            capped_to: Some(share),
            budgeted: true,
        }
    } else if ask.worst <= free_settled || may_cap {
        return Err(Shortfall::InFlight(level()));
    } else {
        return Err(Shortfall::BeyondBudget(level()));
    };
    for s in guards.iter_mut() {
        s.reserved += amount.reserved;
        s.in_flight += 1;
        s.requests.current += 1;
        s.tokens.current += ask.tokens;
    }
    Ok(amount)
}

/// Releases a reservation and books what was really spent.
/// Settles a reservation made at `admitted_ms` with its true cost: booked in the budget period
/// it was admitted in, so a request that ends after its period turned costs the old period
/// (gone from the live ledger), not the new one, as its record is dated.
pub fn settle(
    levels: &[Arc<Ledger>],
    reserved: i64,
    cost: i64,
    extra_tokens: u64,
    now_ms: i64,
    admitted_ms: i64,
) {
    let mut ordered: Vec<&Arc<Ledger>> = levels.iter().collect();
    ordered.sort_by(|a, b| a.level.cmp(&b.level));
    for l in ordered {
        let mut s = l.state.lock();
        l.roll(&mut s, now_ms);
        s.reserved -= reserved;
        if l.period_start(admitted_ms) == s.period_start_ms {
            s.spent += cost;
        }
        s.in_flight = s.in_flight.saturating_sub(1);
        s.tokens.current += extra_tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_when_the_sliding_window_lets_one_more_in() {
        // 20 a minute, all 20 taken at :55 of the last minute: at :00 the window still holds
        // 20, and one more fits once a twentieth of the last minute has slid out (3 s).
        let minute = 1_000 * 60_000;
        let mut w = Window {
            minute: minute / 60_000 - 1,
            current: 20,
            previous: 0,
        };
        w.roll(minute);
        assert_eq!(w.retry_after_secs(minute, 1, 20), 3);
        // At :55 with all 20 taken this minute: past the turn, then the same 3 s.
        let w = Window {
            minute: minute / 60_000,
            current: 20,
            previous: 0,
        };
        assert_eq!(w.retry_after_secs(minute + 55_000, 1, 20), 5 + 3);
        // Room this minute once enough of the last minute has slid out: 10 then, 5 now, limit
        // 12 at :30: 10 * (1 - s) + 5 + 1 <= 12 from s = 0.4, 6 s from now.
        let w = Window {
            minute: minute / 60_000,
            current: 5,
            previous: 10,
        };
        assert_eq!(w.retry_after_secs(minute + 18_000, 1, 12), 6);
        // More than the limit can ever take: a minute.
        assert_eq!(w.retry_after_secs(minute, 50, 12), 60);
    }

    fn budget(nanos: i64) -> Limits {
        Limits {
            max_budget_nanos: Some(nanos),
            ..Limits::default()
        }
    }

    #[test]
    fn reserves_at_every_level_or_none() {
        let key = Ledger::new(Level::Key("k".into()), budget(1_000), 0, 0);
        let team = Ledger::new(Level::Team("t".into()), budget(500), 0, 0);
        let levels = [key.clone(), team.clone()];
        let ask = Ask {
            worst: 400,
            least: 10,
            tokens: 1,
            may_cap: false,
        };
        assert!(reserve(&levels, ask, 0).is_ok());
        // The team has 100 left free, 500 once settled: wait, do not refuse.
        assert_eq!(
            reserve(&levels, ask, 0),
            Err(Shortfall::InFlight(Level::Team("t".into())))
        );
        assert_eq!(
            key.usage(0).1,
            400,
            "nothing reserved at the key for the refused request"
        );
        settle(&levels, 400, 300, 0, 0, 0);
        assert_eq!(key.usage(0).0, 300);
        assert!(reserve(&levels, Ask { worst: 200, ..ask }, 0).is_ok());
        settle(&levels, 200, 200, 0, 0, 0);
        assert_eq!(
            reserve(&levels, ask, 0),
            Err(Shortfall::Exhausted(Level::Team("t".into())))
        );
    }

    #[test]
    fn caps_when_the_caller_set_no_limit() {
        let key = Ledger::new(Level::Key("k".into()), budget(1_000), 0, 0);
        let ask = Ask {
            worst: 5_000,
            least: 50,
            tokens: 1,
            may_cap: true,
        };
        // Half of what is free, but at least a sixteenth of the output room (50 + 4950 / 16):
        // a second request at once gets that sixteenth; a third, for which less is free only
        // because of the two in flight, waits rather than be cut shorter.
        let g = reserve(std::slice::from_ref(&key), ask, 0).unwrap();
        assert_eq!(
            g,
            Granted {
                reserved: 500,
                capped_to: Some(500),
                budgeted: true,
            }
        );
        let g = reserve(std::slice::from_ref(&key), ask, 0).unwrap();
        assert_eq!((g.reserved, g.capped_to), (359, Some(359)));
        assert_eq!(
            reserve(std::slice::from_ref(&key), ask, 0),
            Err(Shortfall::InFlight(Level::Key("k".into())))
        );
        settle(std::slice::from_ref(&key), 500, 500, 0, 0, 0);
        settle(std::slice::from_ref(&key), 359, 359, 0, 0, 0);
        // The budget's very end (141 left, below the sixteenth): what is left.
        let g = reserve(std::slice::from_ref(&key), ask, 0).unwrap();
        assert_eq!((g.reserved, g.capped_to), (141, Some(141)));
        settle(std::slice::from_ref(&key), 141, 101, 0, 0, 0);
        // With a roomy budget the first takes half of it, not all.
        let roomy = Ledger::new(Level::Key("r".into()), budget(100_000), 0, 0);
        let ask = Ask {
            worst: 150_000,
            ..ask
        };
        let g = reserve(std::slice::from_ref(&roomy), ask, 0).unwrap();
        assert_eq!(g.reserved, 50_000);
        // Less than a sixteenth free because of reservations in flight: wait for them; at the
        // budget's very end, what is left.
        assert_eq!(capped_share(ask, 10, 100_000), None);
        assert_eq!(capped_share(ask, 10, 10), Some(10));
        assert_eq!(
            reserve(std::slice::from_ref(&key), ask, 0),
            Err(Shortfall::Exhausted(Level::Key("k".into())))
        );
        let refuse = Ledger::new(
            Level::Key("r".into()),
            Limits {
                over_budget: OverBudget::Refuse,
                ..budget(1_000)
            },
            0,
            0,
        );
        assert!(matches!(
            reserve(std::slice::from_ref(&refuse), ask, 0),
            Err(Shortfall::BeyondBudget(_))
        ));
    }

    #[test]
    fn rate_limits() {
        let l = Ledger::new(
            Level::Key("k".into()),
            Limits {
                rpm: Some(2),
                max_parallel: Some(5),
                ..Limits::default()
            },
            0,
            0,
        );
        let ask = Ask {
            worst: 0,
            least: 0,
            tokens: 0,
            may_cap: false,
        };
        assert!(reserve(std::slice::from_ref(&l), ask, 1_000).is_ok());
        assert!(reserve(std::slice::from_ref(&l), ask, 2_000).is_ok());
        assert!(matches!(
            reserve(std::slice::from_ref(&l), ask, 3_000),
            Err(Shortfall::RateLimited {
                what: "requests per minute",
                ..
            })
        ));
        // Two minutes later the window is empty again.
        assert!(reserve(std::slice::from_ref(&l), ask, 121_000).is_ok());
    }

    #[test]
    fn an_exhausted_budget_admits_again_when_its_period_starts_over() {
        // 2026-11-29T23:59:00Z.
        let now = 1_795_996_740_000;
        let key = Ledger::new(
            Level::Key("k".into()),
            Limits {
                budget_period: Period::Daily,
                ..budget(100)
            },
            0,
            now,
        );
        let levels = std::slice::from_ref(&key);
        let ask = Ask {
            worst: 60,
            least: 10,
            tokens: 1,
            may_cap: false,
        };
        assert!(reserve(levels, ask, now).is_ok());
        settle(levels, 60, 60, 0, now, now);
        assert_eq!(
            reserve(levels, ask, now + 1_000),
            Err(Shortfall::BeyondBudget(Level::Key("k".into())))
        );
        // One minute later it is the next day.
        assert!(reserve(levels, ask, now + 60_000).is_ok());
        assert_eq!(key.usage(now + 60_000).0, 0);
        // A request admitted on the last day and ended on this one cost the last day (as its
        // record is dated): nothing of it is spent on this one.
        settle(levels, 0, 30, 0, now + 61_000, now + 59_000);
        assert_eq!(key.usage(now + 61_000).0, 0);
        // One admitted on this day is.
        settle(levels, 60, 30, 0, now + 62_000, now + 60_000);
        assert_eq!(key.usage(now + 62_000).0, 30);
    }

    #[test]
    fn periods_start_where_they_should() {
        // 2026-11-29T12:00:00Z, a Sunday.
        let now = 1_795_953_600_000;
        assert_eq!(period_start(Period::Daily, now), 1_795_910_400_000);
        assert_eq!(
            period_start(Period::Weekly, now),
            1_795_392_000_000,
            "Monday 2026-11-23"
        );
        assert_eq!(
            period_start(Period::Monthly, now),
            1_793_491_200_000,
            "2026-11-01"
        );
        let l = Ledger::new(
            Level::Key("k".into()),
            Limits {
                budget_period: Period::Daily,
                ..budget(100)
            },
            90,
            now,
        );
        assert_eq!(l.usage(now).0, 90);
        assert_eq!(l.usage(now + 86_400_000).0, 0, "a new day starts from zero");
        assert_eq!(
            next_period_start(Period::Monthly, now),
            Some(1_796_083_200_000),
            "2026-12-01"
        );
        assert_eq!(next_period_start(Period::None, now), None);
    }
}

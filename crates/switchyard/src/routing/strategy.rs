//! Selection strategies: how an alias's usable deployments are ordered for one request. Each is
//! a pure function of the candidates (with their health snapshots), the request's size and a
//! random source, so every strategy is unit-tested without a clock or a network.

use crate::config::StrategyFile;

use super::health::HealthSnapshot;

/// One deployment as a strategy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index into the caller's deployment list.
    pub index: usize,
    pub weight: u32,
    pub priority: u32,
    /// US dollars per million input / output tokens, when configured.
    pub price: Option<(f64, f64)>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub health: HealthSnapshot,
}

/// What a strategy may know about the request and the route.
#[derive(Debug, Clone, Copy)]
pub struct OrderInput {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Monotonic counter of the route, for round robin.
    pub tick: u64,
    /// Share of `lowest_latency` requests that explore a random deployment.
    pub exploration: f64,
}

pub fn name(strategy: StrategyFile) -> &'static str {
    match strategy {
        StrategyFile::Weighted => "weighted",
        StrategyFile::RoundRobin => "round_robin",
        StrategyFile::LeastBusy => "least_busy",
        StrategyFile::LowestLatency => "lowest_latency",
        StrategyFile::LowestCost => "lowest_cost",
        StrategyFile::UsageAware => "usage_aware",
        StrategyFile::Priority => "priority",
    }
}

/// Estimated cost of the request on a deployment, in US dollars.
pub fn estimated_cost(price: Option<(f64, f64)>, input: u64, output: u64) -> Option<f64> {
    price.map(|(i, o)| (input as f64 * i + output as f64 * o) / 1_000_000.0)
}

/// Remaining share of the tightest limit: configured RPM/TPM and the provider's own headers.
pub fn headroom(c: &Candidate, input_tokens: u64) -> f64 {
    let mut h: f64 = 1.0;
    if let Some(rpm) = c.rpm {
        h = h.min(1.0 - (c.health.requests_this_minute + 1) as f64 / rpm as f64);
    }
    if let Some(tpm) = c.tpm {
        h = h.min(1.0 - (c.health.tokens_this_minute + input_tokens) as f64 / tpm as f64);
    }
    if let Some(p) = c.health.provider_headroom {
        h = h.min(p);
    }
    h
}

/// Orders candidates best first; each comes with the score the strategy used (for the route
/// decision record), where it has one.
pub fn order(
    strategy: StrategyFile,
    candidates: Vec<Candidate>,
    input: &OrderInput,
    rng: &mut dyn FnMut(u32) -> u32,
) -> Vec<(Candidate, Option<f64>)> {
    match strategy {
        StrategyFile::Weighted => weighted(candidates, rng)
            .into_iter()
            .map(|c| {
                let w = f64::from(c.weight);
                (c, Some(w))
            })
            .collect(),
        StrategyFile::RoundRobin => {
            let n = candidates.len().max(1);
            let start = (input.tick % n as u64) as usize;
            let mut v = candidates;
            let len = v.len();
            v.rotate_left(start.min(len));
            v.into_iter().map(|c| (c, None)).collect()
        }
        StrategyFile::LeastBusy => {
            // Shuffle first so ties are broken at random, then a stable sort.
            let mut v = shuffled(candidates, rng);
            v.sort_by_key(|c| c.health.in_flight);
            v.into_iter()
                .map(|c| {
                    let s = f64::from(c.health.in_flight);
                    (c, Some(s))
                })
                .collect()
        }
        StrategyFile::LowestLatency => {
            let explore =
                input.exploration > 0.0 && f64::from(rng(10_000)) < input.exploration * 10_000.0;
            let mut v = shuffled(candidates, rng);
            if !explore {
                // Unmeasured deployments score 0 so they get measured.
                v.sort_by(|a, b| {
                    let la = a.health.latency_ewma_ms.unwrap_or(0.0);
                    let lb = b.health.latency_ewma_ms.unwrap_or(0.0);
                    la.total_cmp(&lb)
                });
            }
            v.into_iter()
                .map(|c| {
                    let s = c.health.latency_ewma_ms;
                    (c, s)
                })
                .collect()
        }
        StrategyFile::LowestCost => {
            let mut v: Vec<(Candidate, Option<f64>)> = shuffled(candidates, rng)
                .into_iter()
                .map(|c| {
                    let s = estimated_cost(c.price, input.input_tokens, input.output_tokens);
                    (c, s)
                })
                .collect();
            // Deployments without a price go last.
            v.sort_by(|a, b| {
                a.1.unwrap_or(f64::INFINITY)
                    .total_cmp(&b.1.unwrap_or(f64::INFINITY))
            });
            v
        }
        StrategyFile::UsageAware => {
            let mut v: Vec<(Candidate, Option<f64>)> = shuffled(candidates, rng)
                .into_iter()
                .map(|c| {
                    let h = headroom(&c, input.input_tokens);
                    (c, Some(h))
                })
                .collect();
            v.sort_by(|a, b| b.1.unwrap_or(0.0).total_cmp(&a.1.unwrap_or(0.0)));
            v
        }
        StrategyFile::Priority => {
            let mut tiers: Vec<u32> = candidates.iter().map(|c| c.priority).collect();
            tiers.sort_unstable();
            tiers.dedup();
            let mut out = Vec::with_capacity(candidates.len());
            let mut rest = candidates;
            for tier in tiers {
                let (this, others): (Vec<_>, Vec<_>) =
                    rest.into_iter().partition(|c| c.priority == tier);
                rest = others;
                out.extend(weighted(this, rng).into_iter().map(|c| {
                    let p = f64::from(c.priority);
                    (c, Some(p))
                }));
            }
            out
        }
    }
}

/// Weighted random order without replacement: each pick is proportional to remaining weights.
pub fn weighted(mut items: Vec<Candidate>, rng: &mut dyn FnMut(u32) -> u32) -> Vec<Candidate> {
    // In place: the one drawn for each position moves there, the rest keep their order behind
    // it. The last one left is not drawn for.
    for next in 0..items.len().saturating_sub(1) {
        let rest = &items[next..];
        let total: u32 = rest.iter().map(|c| c.weight.max(1)).sum();
        let mut pick = rng(total);
        let mut idx = rest.len() - 1;
        for (i, c) in rest.iter().enumerate() {
            let w = c.weight.max(1);
            if pick < w {
                idx = i;
                break;
            }
            pick -= w;
        }
        items[next..=next + idx].rotate_right(1);
    }
    items
}

fn shuffled(mut items: Vec<Candidate>, rng: &mut dyn FnMut(u32) -> u32) -> Vec<Candidate> {
    // Fisher–Yates.
    for i in (1..items.len()).rev() {
        let j = rng(i as u32 + 1) as usize;
        items.swap(i, j.min(i));
    }
    items
}

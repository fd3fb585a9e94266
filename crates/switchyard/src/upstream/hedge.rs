//! Hedged requests: when the first attempt has produced no first byte after a delay, a second
//! attempt starts on the next deployment of the plan; the first to answer wins and the other is
//! cancelled (dropped, which closes its connection). Both are recorded.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::{Either, select};
use switchyard_protocol::canonical::UpstreamErrorInfo;

use super::{RetryBudget, Tried};
use crate::routing::{PlannedAttempt, Planner, now_ms};

/// One plain attempt.
pub(super) async fn single<T, F, Fut>(
    planned: PlannedAttempt,
    call: &F,
    retry: bool,
    input_tokens: u64,
    started: Instant,
) -> Tried<T>
where
    F: Fn(PlannedAttempt) -> Fut,
    Fut: Future<Output = Result<T, UpstreamErrorInfo>>,
{
    let result = {
        let now = now_ms();
        let _in_flight = planned.deployment.health.start(now);
        planned.deployment.health.add_tokens(input_tokens, now);
        call(planned.clone()).await
    };
    Tried {
        planned,
        result,
        started,
        latency: started.elapsed(),
        retry,
        hedged: false,
        cancelled: false,
    }
}

/// The first attempt, hedged after `delay` when the share and the retry budget allow.
pub(super) async fn race<T, F, Fut>(
    planner: &mut Planner<'_>,
    primary: PlannedAttempt,
    delay: Duration,
    max_share: f64,
    budget: &RetryBudget,
    call: &F,
    input_tokens: u64,
) -> Vec<Tried<T>>
where
    F: Fn(PlannedAttempt) -> Fut,
    Fut: Future<Output = Result<T, UpstreamErrorInfo>>,
{
    let started = Instant::now();
    let first = single(primary.clone(), call, false, input_tokens, started);
    let mut first = Box::pin(first);
    if let Ok(done) = tokio::time::timeout(delay, &mut first).await {
        return vec![done];
    }
    let mut rng = |n: u32| if n == 0 { 0 } else { rand::random_range(0..n) };
    let Some(second_plan) = planner.next(None, &mut rng) else {
        return vec![first.await];
    };
    if !primary.route.try_hedge(max_share) || !budget.try_withdraw() {
        planner.push_front(second_plan);
        return vec![first.await];
    }
    let hedge_started = Instant::now();
    let second = Box::pin(single(
        second_plan.clone(),
        call,
        false,
        input_tokens,
        hedge_started,
    ));
    match select(first, second).await {
        Either::Left((a, second)) => {
            if a.result.is_ok() {
                let cancelled = cancelled(second_plan, hedge_started, true);
                return vec![a, cancelled];
            }
            let mut b = second.await;
            b.hedged = true;
            vec![a, b]
        }
        Either::Right((mut b, first)) => {
            b.hedged = true;
            if b.result.is_ok() {
                return vec![cancelled(primary, started, false), b];
            }
            let a = first.await;
            vec![a, b]
        }
    }
}

fn cancelled<T>(planned: PlannedAttempt, started: Instant, hedged: bool) -> Tried<T> {
    Tried {
        planned,
        result: Err(UpstreamErrorInfo {
            class: switchyard_protocol::canonical::ErrorClass::Timeout,
            status: None,
            message: "cancelled: the competing hedged attempt answered first".into(),
            provider_code: None,
            retry_after_secs: None,
            param: None,
        }),
        started,
        latency: started.elapsed(),
        retry: false,
        hedged,
        cancelled: true,
    }
}

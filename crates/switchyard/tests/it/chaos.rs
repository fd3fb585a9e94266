//! Chaos drills through the real binary: two deployments behind an alias, the primary failing
//! in each way the simulator can fail, 1,000 client requests per fault. Non-stream requests and
//! streams failing before commit must succeed (≥ 99.9 %), cooldown must keep the failing primary
//! out of the way, and the primary must come back once it recovers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::harness::{Env, chat, env_with};

const CHAOS_MODELS: &str = r#"
  - alias: chaos
    strategy: priority
    deployments:
      - {provider: p-fast, model: chaos-primary, priority: 0}
      - {provider: p-anthropic, model: chaos-secondary, priority: 1}
"#;

const REQUESTS: usize = 1000;
const CONCURRENCY: usize = 16;

/// Sends `REQUESTS` requests (every other one streamed); returns how many succeeded and the
/// median latency in milliseconds (printed for the record, never asserted).
async fn drive(env: &Env) -> (u32, f64) {
    let ok = AtomicU32::new(0);
    let latencies = std::sync::Mutex::new(Vec::with_capacity(REQUESTS));
    futures::stream::iter(0..REQUESTS)
        .for_each_concurrent(CONCURRENCY, |i| {
            let ok = &ok;
            let latencies = &latencies;
            async move {
                let started = std::time::Instant::now();
                let mut body = chat("chaos", "hello chaos");
                let stream = i % 2 == 1;
                if stream {
                    body["stream"] = json!(true);
                }
                let r = env.post("/v1/chat/completions", &body).await;
                let good = r.status == 200
                    && if stream {
                        r.sse_data().last().is_some_and(|d| d == "[DONE]")
                    } else {
                        r.json()["choices"][0]["message"]["content"].is_string()
                    };
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                latencies
                    .lock()
                    .unwrap()
                    .push(started.elapsed().as_secs_f64() * 1000.0);
            }
        })
        .await;
    let mut l = latencies.into_inner().unwrap();
    l.sort_by(f64::total_cmp);
    (ok.load(Ordering::Relaxed), l[l.len() / 2])
}

fn primary_calls(stats: &serde_json::Value) -> u64 {
    stats["by_model"]["chaos-primary"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn failover_under_every_fault() {
    let env = env_with(CHAOS_MODELS).await;
    let faults = [
        "status=500",
        "status=503",
        "status=429;retry_after=1",
        "reset",
        "hang",
        "ttft_ms=2000",
        "cut_after=0",
        "premature_end_after=0",
        "malformed_after=0",
    ];
    env.clear_faults().await;
    let (_, healthy_p50) = drive(&env).await;
    eprintln!("chaos: healthy p50 {healthy_p50:.2} ms");
    for fault in faults {
        env.clear_faults().await;
        let before = primary_calls(&env.sim_stats().await);
        env.fault("chaos-primary", fault, None).await;
        let (ok, p50) = drive(&env).await;
        eprintln!(
            "chaos: {fault:<28} {ok}/{REQUESTS} ok, p50 {p50:.2} ms ({:+.2} ms over healthy)",
            p50 - healthy_p50
        );
        let calls = primary_calls(&env.sim_stats().await) - before;
        assert!(
            ok as usize * 1000 >= REQUESTS * 999,
            "{fault}: only {ok} of {REQUESTS} requests succeeded"
        );
        // Cooldown keeps a broken primary out of the way: far fewer calls than requests. Stream
        // faults leave non-stream requests working, and each success resets the failure count,
        // so there the half-broken primary keeps its traffic (and streams fall back).
        let stream_only = ["cut_after", "premature_end", "malformed"]
            .iter()
            .any(|f| fault.starts_with(f));
        if !stream_only {
            assert!(
                calls < 150,
                "{fault}: the failing primary was called {calls} times"
            );
        }

        // Health is visible to operators.
        let deployments = env.get("/admin/deployments").await.json();
        let primary = deployments["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deployment"] == "p-fast/chaos-primary")
            .unwrap()
            .clone();
        assert!(
            primary["failures"].as_u64().unwrap() > 0,
            "{fault}: {primary}"
        );

        // Recovery: fault cleared, cooldown over, the primary gets traffic again.
        env.clear_faults().await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let mut recovered = false;
        for _ in 0..5 {
            let r = env.post("/v1/chat/completions", &chat("chaos", "hi")).await;
            assert_eq!(r.status, 200);
            if r.headers["x-switchyard-route"]
                .to_str()
                .unwrap()
                .contains("deployment=p-fast/chaos-primary")
            {
                recovered = true;
                break;
            }
        }
        assert!(
            recovered,
            "{fault}: the primary did not come back after recovering"
        );
    }
}

#[tokio::test]
async fn streams_failing_after_commit_never_look_complete() {
    let env = env_with(CHAOS_MODELS).await;
    for fault in ["cut_after=2", "premature_end_after=2", "malformed_after=2"] {
        env.fault("chaos-primary", fault, Some(20)).await;
        for _ in 0..20 {
            let mut body = chat("chaos", "a story");
            body["stream"] = json!(true);
            let r = env.post("/v1/chat/completions", &body).await;
            let data = r.sse_data();
            let complete = data.last().is_some_and(|d| d == "[DONE]");
            let errored = data
                .last()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .is_some_and(|v| v["error"].is_object());
            assert!(complete ^ errored, "{fault}: {data:?}");
            if r.headers["x-switchyard-route"]
                .to_str()
                .unwrap()
                .contains("chaos-primary")
            {
                assert!(
                    errored,
                    "{fault}: a truncated stream was delivered as complete"
                );
            }
        }
        env.clear_faults().await;
    }
}

#[tokio::test]
async fn hedged_requests_win_over_a_slow_primary() {
    let env = env_with(
        r#"
  - alias: hedged
    strategy: priority
    hedge: {after: 100ms, max_share: 1.0}
    deployments:
      - {provider: p-openai, model: slow-primary, priority: 0}
      - {provider: p-compat, model: quick-secondary, priority: 1}
"#,
    )
    .await;
    env.fault("slow-primary", "ttft_ms=3000", None).await;
    let started = std::time::Instant::now();
    let r = env
        .post("/v1/chat/completions", &chat("hedged", "hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-compat/quick-secondary") && route.contains("attempts=2"),
        "{route}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the hedge did not win"
    );
    // A primary that stops answering altogether is not hidden by its hedge for ever: a run of
    // lost races cools it, operators see it, and requests stop paying the hedge's delay.
    env.fault("slow-primary", "hang", None).await;
    for _ in 0..8 {
        let r = env
            .post("/v1/chat/completions", &chat("hedged", "hi"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let deployments = env.get("/admin/deployments").await.json();
    let primary = deployments["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "p-openai/slow-primary")
        .unwrap()
        .clone();
    assert_eq!(primary["state"], "cooling", "{primary}");
    let r = env
        .post("/v1/chat/completions", &chat("hedged", "hi"))
        .await;
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(route.contains("attempts=1"), "{route}");
}

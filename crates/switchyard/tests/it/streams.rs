//! Stream safety: failures before commit fall back; failures after commit end the client's
//! stream with an in-band error event and never with the terminal success frame.

use serde_json::json;

use crate::harness::{chat, env_with, env_with_routing, record};

const FALLBACK_MODELS: &str = r#"
  - alias: primary
    deployments: [{provider: p-openai, model: primary-model}]
    fallbacks: [secondary]
  - alias: secondary
    deployments: [{provider: p-anthropic, model: secondary-model}]
"#;

fn stream(model: &str) -> serde_json::Value {
    let mut b = chat(model, "Tell me a long story about trains");
    b["stream"] = json!(true);
    b
}

#[tokio::test]
async fn failures_before_commit_fall_back() {
    // Cooldown is exercised below; here every failure must reach the primary.
    let env = env_with_routing(FALLBACK_MODELS, "allowed_fails: 1000").await;
    for fault in [
        "status=500",
        "reset",
        "malformed_after=0",
        "premature_end_after=0",
        "cut_after=0",
        // Too large for this provider: another may take it.
        "status=413",
        // Last: it cools the primary for a second.
        "status=429;retry_after=1",
    ] {
        // A reset on a kept connection is sent once more on a new one (it may be the
        // provider's idle timeout): the reset there too is what falls back.
        let times = if fault == "reset" { 2 } else { 1 };
        env.clear_faults().await;
        env.fault("primary-model", fault, Some(times)).await;
        let r = env.post("/v1/chat/completions", &stream("primary")).await;
        assert_eq!(r.status, 200, "{fault}: {}", r.text);
        let data = r.sse_data();
        assert_eq!(data.last().unwrap(), "[DONE]", "{fault}: {data:?}");
        let route = r.headers["x-switchyard-route"].to_str().unwrap();
        assert!(
            route.contains("deployment=p-anthropic/secondary-model")
                && route.contains("attempts=2"),
            "{fault}: {route}"
        );
        // Non-stream too.
        env.clear_faults().await;
        env.fault("primary-model", fault, Some(times)).await;
        let r = env
            .post("/v1/chat/completions", &chat("primary", "hi"))
            .await;
        assert_eq!(r.status, 200, "{fault}: {}", r.text);
    }
}

#[tokio::test]
async fn failures_after_commit_end_with_an_error_event() {
    // Cooldown is exercised below; here every failure must reach the primary.
    let env = env_with_routing(FALLBACK_MODELS, "allowed_fails: 1000").await;
    for fault in ["cut_after=3", "premature_end_after=3", "malformed_after=3"] {
        env.fault("primary-model", fault, Some(1)).await;
        let r = env.post("/v1/chat/completions", &stream("primary")).await;
        assert_eq!(r.status, 200, "{fault}");
        let data = r.sse_data();
        assert_ne!(
            data.last().unwrap(),
            "[DONE]",
            "{fault}: a truncated stream must not look complete"
        );
        assert!(!data.iter().any(|d| d == "[DONE]"), "{fault}");
        let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert!(last["error"]["code"].is_string(), "{fault}: {last}");

        // Anthropic ingress: `event: error`, no `message_stop`.
        env.fault("primary-model", fault, Some(1)).await;
        let r = env
            .post_anthropic(
                &json!({"model": "primary", "max_tokens": 500, "stream": true,
                "messages": [{"role": "user", "content": "Tell me a long story about trains"}]}),
            )
            .await;
        let events = r.sse_events();
        assert_eq!(
            events.last().map(String::as_str),
            Some("error"),
            "{fault}: {events:?}"
        );
        assert!(!events.contains(&"message_stop".to_owned()), "{fault}");

        // Responses API: an `error` event, then `response.failed`; never `response.completed`.
        env.fault("primary-model", fault, Some(1)).await;
        let r = env
            .post(
                "/v1/responses",
                &json!({"model": "primary", "stream": true, "input": "Tell me a long story about trains"}),
            )
            .await;
        let events = r.sse_events();
        assert_eq!(
            events.last().map(String::as_str),
            Some("response.failed"),
            "{fault}: {events:?}"
        );
        assert!(events.contains(&"error".to_owned()), "{fault}: {events:?}");
        assert!(
            !events.contains(&"response.completed".to_owned()),
            "{fault}"
        );
        let failed: serde_json::Value = serde_json::from_str(r.sse_data().last().unwrap()).unwrap();
        assert_eq!(failed["response"]["status"], "failed", "{fault}: {failed}");
        assert!(
            failed["response"]["error"]["message"].is_string(),
            "{fault}: {failed}"
        );
    }
}

#[tokio::test]
async fn streams_that_fail_after_commit_count_against_their_deployment() {
    let env = env_with_routing(FALLBACK_MODELS, "allowed_fails: 2\n  cooldown: 60s").await;
    env.fault("primary-model", "cut_after=3", None).await;
    let mut ids = Vec::new();
    // `allowed_fails: 2`: two streams cut part-way cool it.
    for _ in 0..2 {
        let r = env.post("/v1/chat/completions", &stream("primary")).await;
        assert_eq!(r.status, 200);
        let route = r.headers["x-switchyard-route"].to_str().unwrap();
        assert!(
            route.contains("deployment=p-openai/primary-model"),
            "{route}"
        );
        assert!(!r.sse_data().iter().any(|d| d == "[DONE]"));
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    // The primary's streams die part-way: it cools down, and the next stream is the
    // fallback's from the start, whole.
    let deployments = env.get("/admin/deployments").await.json();
    let primary = deployments["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "p-openai/primary-model")
        .unwrap();
    assert_eq!(primary["state"], "cooling", "{primary}");
    let r = env.post("/v1/chat/completions", &stream("primary")).await;
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-anthropic/secondary-model") && route.contains("attempts=1"),
        "{route}"
    );
    assert_eq!(r.sse_data().last().unwrap(), "[DONE]");
    // Each failed stream's record names its attempt's failure.
    for id in ids {
        let record = record(&env, &id).await;
        assert_eq!(record["outcome"], "stream_error", "{record}");
        assert_eq!(
            record["attempts"][0]["error_class"], "stream_interrupted",
            "{record}"
        );
    }
}

/// `p-fast` waits 500 ms for a first byte and 500 ms between pieces, 5 s in all.
const QUIET_MODELS: &str = r#"
  - alias: quiet
    deployments: [{provider: p-fast, model: quiet-model}]
    fallbacks: [secondary]
  - alias: quiet-alone
    deployments: [{provider: p-fast, model: quiet-model}]
  - alias: secondary
    deployments: [{provider: p-anthropic, model: secondary-model}]
"#;

#[tokio::test]
async fn providers_that_fall_silent_mid_answer_are_cut_by_the_stall_timeout() {
    let env = env_with_routing(QUIET_MODELS, "allowed_fails: 1000").await;
    let code = |r: &crate::harness::Reply| r.json()["error"]["code"].clone();

    // A whole answer whose body stops half-way: cut, not held to the 5 s total.
    env.fault("quiet-model", "stall_body", None).await;
    let started = std::time::Instant::now();
    let r = env
        .post("/v1/chat/completions", &chat("quiet-alone", "hi"))
        .await;
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(code(&r), "upstream_timeout", "{}", r.text);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped sending"),
        "{}",
        r.text
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    // Nothing was sent to the client yet, so an alias with a fallback answers from it.
    let r = env.post("/v1/chat/completions", &chat("quiet", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-anthropic/secondary-model") && route.contains("attempts=2"),
        "{route}"
    );

    // A stream that falls silent after two words: those reach the client, then an error
    // event, never the terminal frame.
    env.clear_faults().await;
    env.fault("quiet-model", "stall_after=2", None).await;
    let started = std::time::Instant::now();
    let r = env
        .post("/v1/chat/completions", &stream("quiet-alone"))
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let words: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(words, "Simulated reply");
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{last}");
    // The attempt lasted until the stall cut it (500 ms of silence), not until it began.
    let id = r.headers["x-request-id"].to_str().unwrap();
    let rec = crate::harness::record(&env, id).await;
    let latency = rec["attempts"][0]["latency_ms"].as_f64().unwrap();
    assert!(latency >= 500.0, "{rec}");
}

#[tokio::test]
async fn keep_alive_events_are_no_answer_and_a_break_after_the_end_loses_nothing() {
    let env = env_with_routing(QUIET_MODELS, "allowed_fails: 1000").await;
    let error_of = |data: &[String]| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(data.last().unwrap()).unwrap()["error"].clone()
    };

    // The opening event, then only keep-alive events: the first-byte timeout (500 ms) still
    // applies, so the fallback answers instead of the request being held.
    env.fault("quiet-model", "ping_after=0", None).await;
    let started = std::time::Instant::now();
    let r = env.post("/v1/chat/completions", &stream("quiet")).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.sse_data().last().unwrap(), "[DONE]");
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-anthropic/secondary-model") && route.contains("attempts=2"),
        "{route}"
    );
    let r = env
        .post("/v1/chat/completions", &stream("quiet-alone"))
        .await;
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "upstream_timeout", "{}", r.text);

    // Keep-alive events after content are not a silence; the total timeout (5 s) ends them,
    // and says so.
    env.clear_faults().await;
    env.fault("quiet-model", "ping_after=2", None).await;
    let r = env
        .post("/v1/chat/completions", &stream("quiet-alone"))
        .await;
    let data = r.sse_data();
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let error = error_of(&data);
    assert_eq!(error["code"], "upstream_timeout", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("total timeout"),
        "{error}"
    );

    // A connection that breaks after the terminal event lost nothing: the answer is whole.
    env.clear_faults().await;
    env.fault("quiet-model", "cut_at_end", None).await;
    for alias in ["quiet-alone", "quiet"] {
        let r = env.post("/v1/chat/completions", &stream(alias)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let data = r.sse_data();
        assert_eq!(data.last().unwrap(), "[DONE]", "{data:?}");
        let route = r.headers["x-switchyard-route"].to_str().unwrap();
        assert!(route.contains("attempts=1"), "{route}");
    }
}

#[tokio::test]
async fn cooldown_skips_a_failing_deployment_then_recovers() {
    let env = env_with(FALLBACK_MODELS).await;
    env.fault("primary-model", "status=500", Some(3)).await;
    for _ in 0..3 {
        let r = env
            .post("/v1/chat/completions", &chat("primary", "hi"))
            .await;
        assert!(
            r.headers["x-switchyard-route"]
                .to_str()
                .unwrap()
                .contains("attempts=2")
        );
    }
    // Three failures in a row: cooled, so the next request goes straight to the fallback.
    let before = env.sim_stats().await["requests"].as_u64().unwrap();
    let r = env
        .post("/v1/chat/completions", &chat("primary", "hi"))
        .await;
    let route = r.headers["x-switchyard-route"].to_str().unwrap().to_owned();
    let after = env.sim_stats().await["requests"].as_u64().unwrap();
    assert!(
        route.contains("deployment=p-anthropic/secondary-model") && route.contains("attempts=1"),
        "{route}"
    );
    assert_eq!(after - before, 1, "the cooled deployment was not called");
    // After the cooldown (2 s) the healthy primary is probed and used again.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let r = env
        .post("/v1/chat/completions", &chat("primary", "hi"))
        .await;
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-openai/primary-model"),
        "{route}"
    );
}

#[tokio::test]
async fn a_stream_ends_at_its_terminal_event_though_the_provider_holds_the_connection() {
    let env = crate::harness::env().await;
    // Every provider format with a terminal event (`[DONE]`, `message_stop`, Bedrock's
    // `metadata`, Gemini's chunk with its finish reason and usage), the whole stream sent and
    // the connection then held open: the client's stream ends at once, whole.
    for (alias, model) in [
        ("openai", "gpt-4o-mini"),
        ("compat", "llama-3-8b"),
        ("azure", "gpt-4o-deploy"),
        ("anthropic", "claude-sonnet-4-5"),
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("gemini", "gemini-2.5-flash"),
    ] {
        env.fault(model, "hold_open", None).await;
        for (path, body) in [
            ("/v1/chat/completions", stream(alias)),
            (
                "/v1/messages",
                json!({"model": alias, "max_tokens": 100, "stream": true,
                    "messages": [{"role": "user", "content": "Tell me a story"}]}),
            ),
        ] {
            let r = tokio::time::timeout(std::time::Duration::from_secs(10), env.post(path, &body))
                .await
                .unwrap_or_else(|_| panic!("{alias} {path}: the stream was held open"));
            assert_eq!(r.status, 200, "{}", r.text);
            if path == "/v1/messages" {
                assert_eq!(
                    r.sse_events().last().map(String::as_str),
                    Some("message_stop"),
                    "{alias}: {}",
                    r.text
                );
            } else {
                assert_eq!(
                    r.sse_data().last().unwrap(),
                    "[DONE]",
                    "{alias}: {}",
                    r.text
                );
            }
            let id = r.headers["x-request-id"].to_str().unwrap();
            let rec = record(&env, id).await;
            assert_eq!(rec["outcome"], "success", "{alias} {path}: {rec}");
        }
    }
}

#[tokio::test]
async fn a_timeout_that_cools_its_deployment_moves_on_rather_than_retry_there() {
    let env = env_with(
        r#"
  - alias: retried
    strategy: priority
    num_retries: 2
    deployments:
      - {provider: p-fast, model: retried-primary, priority: 0}
      - {provider: p-anthropic, model: retried-secondary, priority: 1}
"#,
    )
    .await;
    env.fault("retried-primary", "hang", Some(3)).await;
    let r = env
        .post("/v1/chat/completions", &chat("retried", "hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // One wait for the first byte (500 ms) on the primary, not three: the timeout cooled it.
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-anthropic/retried-secondary") && route.contains("attempts=2"),
        "{route}"
    );
}

#[tokio::test]
async fn a_stream_that_falls_silent_inside_its_buffer_falls_back() {
    let env = env_with(
        r#"
  - alias: buffered
    strategy: priority
    stream_buffer: {max_bytes: 65536, max_delay: 3s}
    deployments:
      - {provider: p-fast, model: buffered-primary, priority: 0}
      - {provider: p-anthropic, model: buffered-secondary, priority: 1}
"#,
    )
    .await;
    // Three words, then silence longer than the stall timeout (500 ms) but inside the buffer's
    // three seconds: nothing reached the client yet, so the secondary answers.
    env.fault("buffered-primary", "stall_after=3", Some(1))
        .await;
    let r = env.post("/v1/chat/completions", &stream("buffered")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.sse_data().last().unwrap(), "[DONE]", "{}", r.text);
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("deployment=p-anthropic/buffered-secondary"),
        "{route}"
    );
}

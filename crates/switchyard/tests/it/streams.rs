//! Stream safety: failures before commit fall back; failures after commit end the client's
//! stream with an in-band error event and never with the terminal success frame.

use serde_json::json;

use crate::harness::{chat, env_with, env_with_routing};

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
        "status=429;retry_after=1",
    ] {
        env.fault("primary-model", fault, Some(1)).await;
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
        env.fault("primary-model", fault, Some(1)).await;
        let r = env
            .post("/v1/chat/completions", &chat("primary", "hi"))
            .await;
        assert_eq!(r.status, 200, "{fault}: {}", r.text);
    }
}

#[tokio::test]
async fn failures_after_commit_end_with_an_error_event() {
    let env = env_with(FALLBACK_MODELS).await;
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

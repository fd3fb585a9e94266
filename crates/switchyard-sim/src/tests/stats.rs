use serde_json::json;

use super::{anthropic, client, gemini, openai, send, start, start_default};
use crate::{SimConfig, StatsSnapshot};

#[tokio::test]
async fn stats_count_what_reached_the_simulator() {
    let sim = start_default().await;
    let chat =
        json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "12345678" }] });
    let ok = send(openai(&sim, &chat)).await.json();
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    send(openai(&sim, &stream)).await;
    send(openai(&sim, &chat).header("x-sim-fault", "status=500")).await;
    let claude = json!({
        "model": "claude-x", "max_tokens": 3,
        "messages": [{ "role": "user", "content": "abcd" }]
    });
    send(anthropic(&sim, &claude)).await;
    let gem = json!({ "contents": [{ "parts": [{ "text": "hi" }] }] });
    send(gemini(&sim, "gemini-y", "streamGenerateContent", &gem)).await;

    let stats: StatsSnapshot = send(client().get(format!("{}/_sim/stats", sim.base_url())))
        .await
        .json()
        .as_object()
        .map(|o| serde_json::from_value(serde_json::Value::Object(o.clone())).unwrap())
        .unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.by_endpoint["openai_chat"], 3);
    assert_eq!(stats.by_endpoint["anthropic_chat"], 1);
    assert_eq!(stats.by_endpoint["gemini_chat"], 1);
    assert_eq!(stats.by_model["gpt-4o-mini"], 3);
    assert_eq!(stats.by_model["gemini-y"], 1);
    assert_eq!(stats.faults_injected, 1);
    assert_eq!(stats.log.len(), 5);
    let first = &stats.log[0];
    assert_eq!(first.provider_kind, "openai");
    assert_eq!(first.endpoint, "chat");
    assert!(!first.stream);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.input_tokens,
        ok["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(first.output_tokens, 12);
    assert!(stats.log[1].stream);
    assert_eq!(stats.log[2].status, 500);
    assert_eq!(stats.log[2].output_tokens, 0);
    assert_eq!(stats.log[2].fault.as_deref(), Some("status=500"));
    assert_eq!(stats.log[3].output_tokens, 3);
    assert_eq!(stats.log[4].provider_kind, "gemini");
    // Input tokens of the four 200s: 2 + 2 + 1 + 1; output 12 + 12 + 3 + 12.
    assert_eq!(stats.input_tokens, 6);
    assert_eq!(stats.output_tokens, 39);

    let reply = send(client().delete(format!("{}/_sim/stats", sim.base_url()))).await;
    assert_eq!(reply.status, 204);
    assert_eq!(sim.stats(), StatsSnapshot::default());
}

#[tokio::test]
async fn the_log_is_bounded() {
    let sim = start(SimConfig {
        log_capacity: 2,
        ..SimConfig::default()
    })
    .await;
    for model in ["a", "b", "c"] {
        let chat = json!({ "model": model, "messages": [{ "role": "user", "content": "x" }] });
        send(openai(&sim, &chat)).await;
    }
    let stats = sim.stats();
    assert_eq!(stats.requests, 3);
    let models: Vec<&str> = stats.log.iter().map(|e| e.model.as_str()).collect();
    assert_eq!(models, ["b", "c"]);
    assert_eq!(stats.by_model.len(), 3);
}

#[tokio::test]
async fn auth_failures_are_logged_and_shutdown_stops_serving() {
    let sim = start_default().await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let body = json!({ "model": "m", "messages": [{ "role": "user", "content": "x" }] });
    let reply = send(super::with_json(client().post(&url), &body)).await;
    assert_eq!(reply.status, 401);
    let log = sim.stats().log;
    assert_eq!((log[0].status, log[0].model.as_str()), (401, "m"));
    assert_eq!(sim.stats().input_tokens, 0);
    sim.shutdown().await;
    assert!(client().get(url).send().await.is_err());
}

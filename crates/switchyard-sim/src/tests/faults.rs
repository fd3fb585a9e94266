use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    anthropic, client, gemini, openai, parse_sse, read_until_error, send, start, start_default,
    with_json,
};
use crate::{FaultRule, FaultSpec, SimConfig, StreamFault, glob_match};

fn openai_hello(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{ "role": "user", "content": "Hello there" }]
    })
}

fn anthropic_hello(stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "stream": stream,
        "messages": [{ "role": "user", "content": "Hello there" }]
    })
}

fn gemini_hello() -> Value {
    json!({ "contents": [{ "parts": [{ "text": "Hello there" }] }] })
}

#[test]
fn spec_grammar() {
    let spec: FaultSpec = "ttft_ms=200, status=500".parse().unwrap();
    assert_eq!(spec.ttft_ms, Some(200));
    assert_eq!(spec.status, Some(500));
    let spec: FaultSpec = "status=429;retry_after=2".parse().unwrap();
    assert_eq!((spec.status, spec.retry_after), (Some(429), Some(2)));
    let spec: FaultSpec = "retry_after=7".parse().unwrap();
    assert_eq!(spec.status, Some(429));
    let spec: FaultSpec = "cut_after=3".parse().unwrap();
    assert_eq!(spec.stream, Some(StreamFault::CutAfter(3)));
    assert!("hang".parse::<FaultSpec>().unwrap().hang);
    assert!("reset".parse::<FaultSpec>().unwrap().reset);
    assert!(
        "context_length"
            .parse::<FaultSpec>()
            .unwrap()
            .context_length
    );
    for spec in [
        "ttft_ms=5,status=503,retry_after=1",
        "premature_end_after=3",
        "malformed_after=2",
        "error_after=1",
        "stall_after=2",
        "ping_after=0",
        "cut_at_end",
        "stall_body",
        "error_body",
        "ttft_ms=10,hang",
    ] {
        let parsed: FaultSpec = spec.parse().unwrap();
        assert_eq!(parsed.to_string(), spec);
        assert_eq!(parsed.to_string().parse::<FaultSpec>().unwrap(), parsed);
    }
    for bad in [
        "",
        "status=200",
        "status=abc",
        "explode",
        "hang=1",
        "hang,reset",
        "cut_after=1,malformed_after=2",
        "status=500,context_length",
        "hang,stall_body",
        "stall_after=1,cut_after=2",
        "cut_at_end=1",
    ] {
        assert!(
            bad.parse::<FaultSpec>().is_err(),
            "{bad:?} should not parse"
        );
    }
}

#[test]
fn globs() {
    assert!(glob_match("*", "anything"));
    assert!(glob_match("*", ""));
    assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
    assert!(!glob_match("gpt-4o*", "gpt-4.1"));
    assert!(glob_match("claude-?-*", "claude-3-haiku"));
    assert!(glob_match("*mini", "gpt-4o-mini"));
    assert!(glob_match("a*b*c", "aXXbYYbc"));
    assert!(!glob_match("a*b*c", "aXXbYY"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exactly"));
}

#[tokio::test]
async fn status_faults_use_each_dialect_error_shape() {
    let sim = start_default().await;
    let reply = send(openai(&sim, &openai_hello(false)).header("x-sim-fault", "status=500")).await;
    assert_eq!(reply.status, 500);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "server_error");
    assert!(error["message"].is_string());
    assert!(error.get("param").is_some() && error.get("code").is_some());

    let reply =
        send(openai(&sim, &openai_hello(false)).header("x-sim-fault", "status=429;retry_after=2"))
            .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");

    let reply =
        send(anthropic(&sim, &anthropic_hello(false)).header("x-sim-fault", "status=529")).await;
    assert_eq!(reply.status, 529);
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(body["error"]["message"], "Overloaded");

    let reply = send(
        gemini(&sim, "gemini-2.5-pro", "generateContent", &gemini_hello())
            .header("x-sim-fault", "status=429,retry_after=3"),
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("3"));
    let error = &reply.json()["error"];
    assert_eq!(error["code"], 429);
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(error["details"][0]["retryDelay"], "3s");

    let reply =
        send(super::azure(&sim, "dep", &openai_hello(false)).header("x-sim-fault", "status=429"))
            .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"]["code"], "429");

    let reply = send(openai(&sim, &openai_hello(false)).header("x-sim-fault", "bogus")).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-sim-fault")
    );
}

#[tokio::test]
async fn context_length_faults() {
    let sim = start_default().await;
    let fault = ("x-sim-fault", "context_length");
    let reply = send(openai(&sim, &openai_hello(false)).header(fault.0, fault.1)).await;
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "context_length_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length")
    );

    let reply = send(anthropic(&sim, &anthropic_hello(false)).header(fault.0, fault.1)).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("prompt is too long")
    );

    let reply = send(
        gemini(&sim, "gemini-2.5-pro", "generateContent", &gemini_hello()).header(fault.0, fault.1),
    )
    .await;
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["status"], "INVALID_ARGUMENT");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("input token count")
    );
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_response() {
    let sim = start_default().await;
    let result = openai(&sim, &openai_hello(false))
        .header("x-sim-fault", "reset")
        .send()
        .await;
    let err = result.expect_err("a reset connection gives no response");
    assert!(!err.is_timeout(), "{err}");
    // The server keeps serving other connections.
    assert_eq!(send(openai(&sim, &openai_hello(false))).await.status, 200);
    assert_eq!(sim.stats().log[0].status, 0);
}

#[tokio::test]
async fn hang_times_out_on_the_client() {
    let sim = start_default().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = with_json(
        impatient
            .post(format!("{}/v1/chat/completions", sim.base_url()))
            .bearer_auth("k")
            .header("x-sim-fault", "hang"),
        &openai_hello(false),
    )
    .send()
    .await;
    assert!(result.expect_err("hang never answers").is_timeout());
    sim.shutdown().await;
}

#[tokio::test]
async fn ttft_delays_the_response() {
    let sim = start_default().await;
    let started = Instant::now();
    let reply = send(openai(&sim, &openai_hello(true)).header("x-sim-fault", "ttft_ms=300")).await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    let reply =
        send(openai(&sim, &openai_hello(false)).header("x-sim-fault", "ttft_ms=100,status=503"))
            .await;
    assert_eq!(reply.status, 503);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn cut_stream_drops_the_connection_before_the_end() {
    let sim = start_default().await;
    let response = openai(&sim, &openai_hello(true))
        .header("x-sim-fault", "cut_after=3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (body, errored) = read_until_error(response).await;
    assert!(errored, "the body must end in an error");
    let events = parse_sse(&body);
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    let chunks: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let content: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(content, ["Simulated", " reply", " from"]);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(sim.stats().log[0].output_tokens, 3);

    let response = anthropic(&sim, &anthropic_hello(true))
        .header("x-sim-fault", "cut_after=2")
        .send()
        .await
        .unwrap();
    let (body, errored) = read_until_error(response).await;
    assert!(errored);
    let names: Vec<String> = parse_sse(&body)
        .into_iter()
        .filter_map(|e| e.event)
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta"
        ]
    );
}

/// Reads a body until it has been silent for `quiet`: what came, and whether it ended.
async fn read_until_quiet(mut response: reqwest::Response, quiet: Duration) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(quiet, response.chunk()).await {
            Err(_) => return (body, false),
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            Ok(_) => return (body, true),
        }
    }
}

#[tokio::test]
async fn stall_after_falls_silent_with_the_connection_open() {
    let sim = start_default().await;
    let response = openai(&sim, &openai_hello(true))
        .header("x-sim-fault", "stall_after=2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (body, ended) = read_until_quiet(response, Duration::from_millis(300)).await;
    assert!(!ended, "a stalled stream neither ends nor breaks");
    let content: Vec<String> = parse_sse(&body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(content, ["Simulated", " reply"]);
}

#[tokio::test]
async fn cut_at_end_breaks_the_connection_after_the_terminal_event() {
    let sim = start_default().await;
    let response = openai(&sim, &openai_hello(true))
        .header("x-sim-fault", "cut_at_end")
        .send()
        .await
        .unwrap();
    let (body, errored) = read_until_error(response).await;
    assert!(errored, "the body must end in an error");
    let events = parse_sse(&body);
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

/// Reads a body that stays open while `more` says so of what came; each read within 5 s.
async fn read_while(mut response: reqwest::Response, more: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut body = Vec::new();
    while more(&body) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("events keep coming")
            .unwrap()
            .expect("the stream stays open");
        body.extend_from_slice(&chunk);
    }
    body
}

#[tokio::test]
async fn ping_after_keeps_a_stream_alive_without_content() {
    let sim = start_default().await;
    // The opening events come before the pings, even with no content chunk.
    let response = anthropic(&sim, &anthropic_hello(true))
        .header("x-sim-fault", "ping_after=0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = read_while(response, |body| {
        parse_sse(body)
            .iter()
            .filter(|e| e.event.as_deref() == Some("ping"))
            .count()
            < 3
    })
    .await;
    let events: Vec<Option<String>> = parse_sse(&body).into_iter().map(|e| e.event).collect();
    assert_eq!(events[0].as_deref(), Some("message_start"));
    assert!(
        events.iter().all(|e| !matches!(
            e.as_deref(),
            Some("content_block_delta" | "message_delta" | "message_stop")
        )),
        "{events:?}"
    );

    let response = openai(&sim, &openai_hello(true))
        .header("x-sim-fault", "ping_after=1")
        .send()
        .await
        .unwrap();
    let body = read_while(response, |body| {
        body.windows(12).filter(|w| w == b": keep-alive").count() < 2
    })
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("\"Simulated\""), "{text}");
    assert!(
        !text.contains("finish_reason\":\"") && !text.contains("[DONE]"),
        "{text}"
    );
}

#[tokio::test]
async fn stall_body_sends_half_a_whole_answer() {
    let sim = start_default().await;
    let whole = send(openai(&sim, &openai_hello(false))).await.body;
    let response = openai(&sim, &openai_hello(false))
        .header("x-sim-fault", "stall_body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (body, ended) = read_until_quiet(response, Duration::from_millis(300)).await;
    assert!(!ended, "a stalled body never ends");
    assert!(
        !body.is_empty() && body.len() < whole.len(),
        "{}",
        body.len()
    );
    assert!(serde_json::from_slice::<Value>(&body).is_err());
}

#[tokio::test]
async fn premature_end_closes_cleanly_without_terminal_events() {
    let sim = start_default().await;
    let response = openai(&sim, &openai_hello(true))
        .header("x-sim-fault", "premature_end_after=3")
        .send()
        .await
        .unwrap();
    let (body, errored) = read_until_error(response).await;
    assert!(!errored, "the body ends cleanly");
    let events = parse_sse(&body);
    assert_eq!(events.len(), 4, "role chunk and three words");
    assert!(events.iter().all(|e| e.data != "[DONE]"));

    let response = anthropic(&sim, &anthropic_hello(true))
        .header("x-sim-fault", "premature_end_after=3")
        .send()
        .await
        .unwrap();
    let (body, errored) = read_until_error(response).await;
    assert!(!errored);
    let names: Vec<String> = parse_sse(&body)
        .into_iter()
        .filter_map(|e| e.event)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "message_delta" || n == "message_stop")
    );
    assert_eq!(
        names.iter().filter(|n| *n == "content_block_delta").count(),
        3
    );

    let response = gemini(
        &sim,
        "gemini-2.5-flash",
        "streamGenerateContent",
        &gemini_hello(),
    )
    .header("x-sim-fault", "premature_end_after=3")
    .send()
    .await
    .unwrap();
    let (body, errored) = read_until_error(response).await;
    assert!(!errored);
    let events = parse_sse(&body);
    assert_eq!(events.len(), 3);
    assert!(!String::from_utf8(body).unwrap().contains("finishReason"));

    // A limit beyond the content still withholds the terminal events.
    let response = anthropic(&sim, &anthropic_hello(true))
        .header("x-sim-fault", "premature_end_after=1000")
        .send()
        .await
        .unwrap();
    let (body, _) = read_until_error(response).await;
    let names: Vec<String> = parse_sse(&body)
        .into_iter()
        .filter_map(|e| e.event)
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("content_block_stop"));
}

#[tokio::test]
async fn malformed_chunk_follows_the_good_ones() {
    let sim = start_default().await;
    let reply =
        send(openai(&sim, &openai_hello(true)).header("x-sim-fault", "malformed_after=2")).await;
    assert_eq!(reply.status, 200);
    let events = reply.events();
    // Role chunk, two words, then the broken line.
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].data, "{not json");
    for event in &events[..3] {
        serde_json::from_str::<Value>(&event.data).unwrap();
    }
}

#[tokio::test]
async fn error_after_sends_the_in_band_error() {
    let sim = start_default().await;
    let reply =
        send(anthropic(&sim, &anthropic_hello(true)).header("x-sim-fault", "error_after=1")).await;
    let events = reply.events();
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["error"]["type"], "overloaded_error");

    let reply =
        send(openai(&sim, &openai_hello(true)).header("x-sim-fault", "error_after=1")).await;
    let last: Value = serde_json::from_str(&reply.events().last().unwrap().data).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
}

#[tokio::test]
async fn runtime_rules_expire_after_times() {
    let sim = start_default().await;
    let url = format!("{}/_sim/faults", sim.base_url());
    let rules = json!([
        { "model": "gpt-4o*", "fault": "status=503", "times": 2 },
        { "model": "other", "fault": "hang" }
    ]);
    let reply = send(with_json(client().post(&url), &rules)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().as_array().unwrap().len(), 2);

    let statuses = {
        let mut s = Vec::new();
        for _ in 0..3 {
            s.push(send(openai(&sim, &openai_hello(false))).await.status);
        }
        s
    };
    assert_eq!(statuses, [503, 503, 200]);
    let listed = send(client().get(&url)).await.json();
    assert_eq!(listed[0]["times"], 0);
    assert_eq!(listed[0]["fault"], "status=503");

    let reply = send(with_json(
        client().post(&url),
        &json!({ "model": "*", "fault": "nope" }),
    ))
    .await;
    assert_eq!(reply.status, 400);

    assert_eq!(send(client().delete(&url)).await.status, 204);
    assert_eq!(send(client().get(&url)).await.json(), json!([]));
}

#[tokio::test]
async fn configured_rules_match_model_globs() {
    let sim = start(SimConfig {
        faults: vec![FaultRule::new("claude-*", "status=529".parse().unwrap())],
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        send(anthropic(&sim, &anthropic_hello(false))).await.status,
        529
    );
    assert_eq!(send(openai(&sim, &openai_hello(false))).await.status, 200);
    // The header wins over the rules.
    let reply =
        send(anthropic(&sim, &anthropic_hello(false)).header("x-sim-fault", "ttft_ms=0")).await;
    assert_eq!(reply.status, 200);

    sim.clear_faults();
    sim.add_faults([FaultRule::new("gpt-*", "status=500".parse().unwrap()).times(1)]);
    assert_eq!(send(openai(&sim, &openai_hello(false))).await.status, 500);
    assert_eq!(send(openai(&sim, &openai_hello(false))).await.status, 200);
    assert_eq!(sim.faults()[0].times, Some(0));
}

#[tokio::test]
async fn config_file_rules_parse_from_yaml() {
    let yaml = r#"
ttft_ms: 0
reply_words: 5
faults:
  - model: "gemini-*"
    fault: "status=429;retry_after=1"
    times: 3
"#;
    let config: SimConfig = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(config.reply_words, 5);
    assert_eq!(config.faults[0].fault.status, Some(429));
    assert_eq!(config.faults[0].times, Some(3));
    assert!(serde_saphyr::from_str::<SimConfig>("faults: [{model: x, fault: boom}]").is_err());
    assert!(serde_saphyr::from_str::<SimConfig>("unknown_key: 1").is_err());
}

//! OpenAI-compatible servers that differ from OpenAI's API, and Azure's dated API versions,
//! each played by a strict stand-in that refuses what the real one refuses (as its API
//! reference documents it) and answers in its own forms: Mistral (no `stream_options`, `user`
//! or `seed`, tool call ids of 9 letters and digits, reasoning models' content as a list of
//! parts, errors without an `error` wrapper), DeepSeek (a tool loop's reasoning wanted back)
//! and Azure at `api-version` 2024-06-01 (no `max_completion_tokens`, `stream_options` or
//! `developer` role; streams that open with an anonymous filter chunk); and a server that
//! answers a stream's failure with 200, the stream's content type and a JSON error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::{Gateway, KEY, client, get_from, post_to, send_to};

type Seen = Arc<Mutex<Vec<Value>>>;

/// Members Mistral's chat completions take; it refuses any other (`extra_forbidden`).
const MISTRAL_MEMBERS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "parallel_tool_calls",
    "prompt_mode",
    "safe_prompt",
    "reasoning_effort",
];

fn json_reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn sse_reply(chunks: &[Value]) -> Response {
    let mut text = String::new();
    for chunk in chunks {
        text.push_str(&format!("data: {chunk}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], text).into_response()
}

fn chunk(id: &str, model: &str, delta: Value, finish: Value, usage: Option<Value>) -> Value {
    let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    if let Some(u) = usage {
        c["usage"] = u;
    }
    c
}

fn tool_ids(body: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        for call in m["tool_calls"].as_array().into_iter().flatten() {
            ids.push(call["id"].as_str().unwrap_or_default().to_owned());
        }
        if let Some(id) = m["tool_call_id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    ids
}

async fn mistral(State(seen): State<Seen>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    seen.lock().unwrap().push(body.clone());
    let extra: Vec<&String> = body
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !MISTRAL_MEMBERS.contains(&k.as_str()))
        .collect();
    if let Some(key) = extra.first() {
        return json_reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"object": "error", "message": {"detail": [{"type": "extra_forbidden",
                "loc": ["body", key], "msg": "Extra inputs are not permitted"}]},
                "type": "invalid_request_error", "param": null, "code": null}),
        );
    }
    if let Some(bad) = tool_ids(&body)
        .into_iter()
        .find(|id| id.len() != 9 || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"object": "error", "message": format!("Tool call id was {bad} but must be a-z, A-Z, 0-9, with a length of 9."),
                "type": "invalid_request_message_order", "param": null, "code": "3230"}),
        );
    }
    if body["model"] == "mistral-refusing" {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"object": "error", "message": "Prompt contains 40000 tokens, too large for model with 32768 maximum context length",
                "type": "invalid_request_error", "param": null, "code": null}),
        );
    }
    let usage = json!({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19});
    let thinking =
        json!({"type": "thinking", "thinking": [{"type": "text", "text": "Two and two."}]});
    if body["stream"] == true {
        let id = "cmpl-m";
        sse_reply(&[
            chunk(
                id,
                "magistral-small",
                json!({"role": "assistant", "content": ""}),
                Value::Null,
                None,
            ),
            chunk(
                id,
                "magistral-small",
                json!({"content": [thinking]}),
                Value::Null,
                None,
            ),
            chunk(
                id,
                "magistral-small",
                json!({"content": [{"type": "text", "text": "Four"}]}),
                Value::Null,
                None,
            ),
            chunk(
                id,
                "magistral-small",
                json!({"content": "."}),
                json!("stop"),
                Some(usage),
            ),
        ])
    } else {
        json_reply(
            StatusCode::OK,
            json!({"id": "cmpl-m", "object": "chat.completion", "created": 1, "model": "magistral-small",
                "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": null,
                    "content": [thinking, {"type": "text", "text": "Four."}]}, "finish_reason": "stop"}],
                "usage": usage}),
        )
    }
}

async fn deepseek(State(seen): State<Seen>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    seen.lock().unwrap().push(body.clone());
    let unthought = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["tool_calls"].is_array() && !m["reasoning_content"].is_string());
    if unthought {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "The `reasoning_content` in the thinking mode must be passed back to the API.",
                "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}}),
        );
    }
    json_reply(
        StatusCode::OK,
        json!({"id": "ds-1", "object": "chat.completion", "created": 1, "model": "deepseek-v4-flash",
            "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "Done.",
                "content": "Sunny."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}}),
    )
}

async fn azure_2024_06_01(
    State(seen): State<Seen>,
    Path(_deployment): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    seen.lock().unwrap().push(body.clone());
    let refuse = |what: &str| {
        json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": what, "type": "invalid_request_error", "param": null, "code": null}}),
        )
    };
    for field in ["max_completion_tokens", "stream_options"] {
        if body.get(field).is_some() {
            return refuse(&format!("Unrecognized request argument supplied: {field}"));
        }
    }
    if body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "developer")
    {
        return refuse(
            "Invalid value: 'developer'. Supported values are: 'system', 'assistant', 'user', 'function', and 'tool'.",
        );
    }
    let model = "gpt-4o-mini-2024-07-18";
    if body["stream"] == true {
        sse_reply(&[
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}),
            chunk(
                "chatcmpl-az",
                model,
                json!({"role": "assistant", "content": "Hello"}),
                Value::Null,
                None,
            ),
            chunk("chatcmpl-az", model, json!({}), json!("stop"), None),
        ])
    } else {
        json_reply(
            StatusCode::OK,
            json!({"id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}),
        )
    }
}

/// A server that answers a stream request's failure with 200, the stream's content type, and
/// a JSON error body instead of events.
async fn error_as_a_stream(State(seen): State<Seen>, body: Bytes) -> Response {
    seen.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    (
        [("content-type", "text/event-stream")],
        json!({"error": {"message": "The engine is currently overloaded, please try again later",
            "type": "server_error", "code": null}})
        .to_string(),
    )
        .into_response()
}

async fn start_servers() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/mistral/v1/chat/completions", post(mistral))
        .route("/deepseek/v1/chat/completions", post(deepseek))
        .route("/sse-error/v1/chat/completions", post(error_as_a_stream))
        .route(
            "/azure/openai/deployments/{deployment}/chat/completions",
            post(azure_2024_06_01),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn gateway(url: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
server: {{listen: 127.0.0.1:0, master_key: {KEY}, data_dir: "${{SWITCHYARD_DATA_DIR}}"}}
providers:
  - name: mistral
    kind: openai_compatible
    base_url: "{url}/mistral/v1"
    api_key: mistral-secret
    quirks: {{seed_field: random_seed, stream_usage: false, unsupported_fields: [user], short_tool_call_ids: true}}
  - name: deepseek
    kind: openai_compatible
    base_url: "{url}/deepseek/v1"
    api_key: deepseek-secret
    quirks: {{reasoning_history: true}}
  - {{name: azure-old, kind: azure, base_url: "{url}/azure", api_key: azure-secret, api_version: "2024-06-01"}}
  - {{name: sse-error, kind: openai_compatible, base_url: "{url}/sse-error/v1"}}
models:
  - {{alias: mistral, deployments: [{{provider: mistral, model: magistral-small}}]}}
  - {{alias: mistral-refusing, deployments: [{{provider: mistral, model: mistral-refusing}}]}}
  - {{alias: deepseek, deployments: [{{provider: deepseek, model: deepseek-v4-flash}}]}}
  - {{alias: azure-old, deployments: [{{provider: azure-old, model: mini}}]}}
  - {{alias: sse-error, deployments: [{{provider: sse-error, model: m}}]}}
"#
    ))
    .await
}

/// An Anthropic client's streamed tool loop begun on Claude (its ids), with its user id.
fn claude_tool_loop(stream: bool) -> Value {
    json!({
        "model": "mistral", "max_tokens": 50, "stream": stream,
        "metadata": {"user_id": "u-1"},
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "w", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "sunny"}
            ]}
        ],
        "tools": [{"name": "w", "input_schema": {"type": "object"}}]
    })
}

async fn sse_text(gw: &Gateway, path: &str, body: &Value, headers: &[(&str, &str)]) -> String {
    let mut r = client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(KEY)
        .json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn mistral_takes_every_clients_requests_and_its_thinking_comes_back() {
    let (url, seen) = start_servers().await;
    let gw = gateway(&url).await;
    let http = client();
    // An Anthropic client, whole and streamed: Claude's tool ids, its user id, and the usage
    // an Anthropic stream always wants.
    let (status, body) = post_to(&http, &gw, "/v1/messages", KEY, &claude_tool_loop(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["type"], "thinking");
    assert_eq!(body["content"][0]["thinking"], "Two and two.");
    assert_eq!(body["content"][1]["text"], "Four.");
    let text = sse_text(&gw, "/v1/messages", &claude_tool_loop(true), &[]).await;
    assert!(text.contains("\"thinking\":\"Two and two.\""), "{text}");
    assert!(text.contains("\"text\":\"Four\""), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    assert!(text.contains("\"output_tokens\":7"), "{text}");
    // An OpenAI client with a seed, a user and a request for the stream's usage.
    let openai = json!({"model": "mistral", "seed": 7, "user": "u-2", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "2+2?"}]});
    let text = sse_text(&gw, "/v1/chat/completions", &openai, &[]).await;
    assert!(
        text.contains("\"reasoning_content\":\"Two and two.\""),
        "{text}"
    );
    assert!(text.contains("\"completion_tokens\":7"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let sent = seen.lock().unwrap().clone();
    assert!(sent.iter().all(|b| b.get("stream_options").is_none()));
    assert_eq!(sent.last().unwrap()["random_seed"], 7);
    // The call's id was made Mistral's form, the same in the call and in its result.
    let ids = tool_ids(&sent[0]);
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    // A refusal written without an `error` wrapper reaches the client with its words, and a
    // context-length refusal is one.
    let (status, body) = post_to(
        &http,
        &gw,
        "/v1/chat/completions",
        KEY,
        &json!({"model": "mistral-refusing", "messages": [{"role": "user", "content": "long"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_window_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("32768 maximum context length"),
        "{body}"
    );
}

#[tokio::test]
async fn deepseek_gets_a_tool_loops_reasoning_back() {
    let (url, seen) = start_servers().await;
    let gw = gateway(&url).await;
    let body = json!({"model": "deepseek", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "reasoning_content": "I should call the tool.", "content": null,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ], "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]});
    let (status, answer) = post_to(&client(), &gw, "/v1/chat/completions", KEY, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Sunny.");
    let sent = seen.lock().unwrap().clone();
    assert_eq!(
        sent[0]["messages"][1]["reasoning_content"],
        "I should call the tool."
    );
}

#[tokio::test]
async fn azure_at_an_older_api_version_gets_what_that_version_takes() {
    let (url, _seen) = start_servers().await;
    let gw = gateway(&url).await;
    let http = client();
    let body = json!({"model": "azure-old", "max_tokens": 20,
        "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]});
    let (status, answer) = post_to(&http, &gw, "/v1/chat/completions", KEY, &body).await;
    assert_eq!(status, 200, "{answer}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (_, _, headers) = send_to(
        &http,
        &gw,
        reqwest::Method::POST,
        "/v1/chat/completions",
        KEY,
        Some(&streamed),
        &[],
    )
    .await;
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    // The stream's record names the model Azure answered with, not its filter chunk's blank.
    let mut record = Value::Null;
    for _ in 0..100 {
        let (status, body) = get_from(&http, &gw, &format!("/admin/requests/{id}")).await;
        if status == 200 {
            record = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(record["outcome"], "success", "{record}");
    assert_eq!(
        record["response_model"], "gpt-4o-mini-2024-07-18",
        "{record}"
    );
}

#[tokio::test]
async fn an_error_written_where_a_stream_was_expected_keeps_its_words() {
    let (url, _seen) = start_servers().await;
    let gw = gateway(&url).await;
    let body = json!({"model": "sse-error", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) = post_to(&client(), &gw, "/v1/chat/completions", KEY, &body).await;
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("currently overloaded"),
        "{answer}"
    );
}

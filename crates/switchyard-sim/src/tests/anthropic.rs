use serde_json::{Value, json};

use super::{anthropic, client, send, start_default, with_json};

fn hello() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{ "role": "user", "content": "Hello Claude, tell me something" }]
    })
}

fn weather_tools() -> Value {
    json!([
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": { "city": { "type": "string" }, "days": { "type": "number" } },
                "required": ["city", "days"]
            }
        },
        {
            "name": "get_time",
            "input_schema": {
                "type": "object",
                "properties": { "zone": { "type": "string" } },
                "required": ["zone"]
            }
        }
    ])
}

#[tokio::test]
async fn message_has_the_documented_shape() {
    let sim = start_default().await;
    let reply = send(anthropic(&sim, &hello())).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["stop_sequence"].is_null());
    assert_eq!(body["content"][0]["type"], "text");
    assert!(
        body["content"][0]["text"].as_str().unwrap().starts_with(
            "Simulated reply from claude-sonnet-4-5 to: Hello Claude, tell me something"
        )
    );
    let usage = &body["usage"];
    let chars = "Be brief.".len() + "Hello Claude, tell me something".len();
    assert_eq!(usage["input_tokens"], chars.div_ceil(4) as u64);
    assert_eq!(usage["output_tokens"], 12);
    assert_eq!(usage["cache_creation_input_tokens"], 0);
    assert_eq!(usage["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn system_messages_among_the_messages_where_the_api_places_them() {
    let sim = start_default().await;
    let with = |messages: Value| json!({"model": "claude-opus-4-8", "max_tokens": 100, "messages": messages});
    let user = |text: &str| json!({"role": "user", "content": text});
    let system = |text: &str| json!({"role": "system", "content": text});
    let assistant = |text: &str| json!({"role": "assistant", "content": text});
    // Last, after a user message; and between a user and an assistant message.
    for messages in [
        json!([user("Hello there"), system("Answer in French.")]),
        json!([
            user("Hi"),
            system("Be brief."),
            assistant("Ok."),
            user("Hello there")
        ]),
    ] {
        let reply = send(anthropic(&sim, &with(messages.clone()))).await;
        assert_eq!(reply.status, 200, "{messages}: {:?}", reply.json());
        let text = reply.json()["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("to: Hello there"), "{text}");
    }
    // Its characters count as input.
    let plain = send(anthropic(&sim, &with(json!([user("Hello there")])))).await;
    let told = send(anthropic(
        &sim,
        &with(json!([user("Hello there"), system(&"x".repeat(400))])),
    ))
    .await;
    assert_eq!(
        told.json()["usage"]["input_tokens"].as_u64().unwrap(),
        plain.json()["usage"]["input_tokens"].as_u64().unwrap() + 100
    );
    // Placed where the API refuses it: first, after an assistant message, before a user one;
    // or with a block that is not text.
    for messages in [
        json!([system("Rules."), user("Hi")]),
        json!([user("Hi"), assistant("Ok."), system("Rules.")]),
        json!([user("Hi"), system("Rules."), user("Again")]),
        json!([user("Hi"), {"role": "system", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
        ]}]),
    ] {
        let reply = send(anthropic(&sim, &with(messages.clone()))).await;
        assert_eq!(reply.status, 400, "{messages}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn headers_and_max_tokens_are_required() {
    let sim = start_default().await;
    let url = format!("{}/v1/messages", sim.base_url());
    let reply = send(with_json(
        client()
            .post(&url)
            .header("anthropic-version", "2023-06-01"),
        &hello(),
    ))
    .await;
    assert_eq!(reply.status, 401);
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));

    let reply = send(with_json(
        client().post(&url).header("x-api-key", "k"),
        &hello(),
    ))
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let mut no_max = hello();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let reply = send(anthropic(&sim, &no_max)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"]["message"],
        "max_tokens: Field required"
    );

    let mut system_role = hello();
    system_role["messages"] = json!([{ "role": "system", "content": "x" }]);
    assert_eq!(send(anthropic(&sim, &system_role)).await.status, 400);
}

#[tokio::test]
async fn stream_has_the_full_event_sequence() {
    let sim = start_default().await;
    let full = send(anthropic(&sim, &hello())).await.json();
    let mut request = hello();
    request["stream"] = json!(true);
    let reply = send(anthropic(&sim, &request)).await;
    assert_eq!(reply.status, 200);
    let events = reply.events();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names[3..names.len() - 3]
            .iter()
            .all(|n| *n == "content_block_delta")
    );
    let data = reply.data();
    for (event, data) in events.iter().zip(&data) {
        assert_eq!(event.event.as_deref(), data["type"].as_str());
    }
    let start = &data[0]["message"];
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(
        start["usage"]["input_tokens"],
        full["usage"]["input_tokens"]
    );
    let text: String = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, full["content"][0]["text"].as_str().unwrap());
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 12);
}

#[tokio::test]
async fn limits_report_max_tokens_and_stop_sequence() {
    let sim = start_default().await;
    let mut request = hello();
    request["max_tokens"] = json!(4);
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 4);

    let mut request = hello();
    request["stop_sequences"] = json!(["claude"]);
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["stop_reason"], "stop_sequence");
    assert_eq!(body["stop_sequence"], "claude");
    assert_eq!(body["content"][0]["text"], "Simulated reply from");

    request["stream"] = json!(true);
    let data = send(anthropic(&sim, &request)).await.data();
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta["delta"]["stop_sequence"], "claude");
}

#[tokio::test]
async fn tool_use_round_trip() {
    let sim = start_default().await;
    let mut request = hello();
    request["tools"] = weather_tools();
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({ "city": "sample", "days": 1 }));

    let id = block["id"].clone();
    request["messages"] = json!([
        { "role": "user", "content": "Hello Claude, tell me something" },
        { "role": "assistant", "content": body["content"] },
        { "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": id, "content": [{ "type": "text", "text": "It is 22C" }] }
        ] }
    ]);
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(
        body["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"It is 22C\"")
    );

    // A result for an unknown id, and a tool_use left unanswered, are rejected.
    request["messages"][2]["content"][0]["tool_use_id"] = json!("toolu_other");
    let reply = send(anthropic(&sim, &request)).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tool_use_id")
    );
    request["messages"][2]["content"] = json!("no result here");
    let reply = send(anthropic(&sim, &request)).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tool_result")
    );

    // tool_choice and disable_parallel_tool_use.
    let mut request = hello();
    request["tools"] = weather_tools();
    request["messages"][0]["content"] = json!("both in parallel");
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["content"].as_array().unwrap().len(), 2);
    request["tool_choice"] = json!({ "type": "auto", "disable_parallel_tool_use": true });
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["content"].as_array().unwrap().len(), 1);
    request["tool_choice"] = json!({ "type": "tool", "name": "get_time" });
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["content"][0]["name"], "get_time");
    request["tool_choice"] = json!({ "type": "none" });
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["content"][0]["type"], "text");
}

/// The API writes an event's `type` first and the members after it in a fixed order (a client
/// may read that order faster than any other), where a `serde_json::Value` would sort them.
#[tokio::test]
async fn stream_events_are_written_in_the_apis_member_order() {
    let sim = start_default().await;
    let mut request = hello();
    request["stream"] = json!(true);
    let events = send(anthropic(&sim, &request)).await.events();
    for event in &events {
        let name = event.event.as_deref().unwrap();
        assert!(
            event.data.starts_with(&format!(r#"{{"type":"{name}""#)),
            "{}",
            event.data
        );
    }
    let start = &events[0].data;
    assert!(
        start.starts_with(r#"{"type":"message_start","message":{"id":"msg_01"#),
        "{start}"
    );
    let members = [
        "\"type\":\"message\",\"role\":\"assistant\",\"model\":",
        "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":",
    ];
    assert!(members.iter().all(|m| start.contains(m)), "{start}");
    assert!(
        start.contains(r#""cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#),
        "{start}"
    );
    assert_eq!(
        events[1].data,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"","citations":null}}"#
    );
    assert!(
        events[3].data.starts_with(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"#
        ),
        "{}",
        events[3].data
    );
    let n = events.len();
    assert_eq!(
        events[n - 3].data,
        r#"{"type":"content_block_stop","index":0}"#
    );
    assert_eq!(
        events[n - 2].data,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}"#
    );
    assert_eq!(events[n - 1].data, r#"{"type":"message_stop"}"#);
}

#[tokio::test]
async fn streamed_tool_use_splits_input_json() {
    let sim = start_default().await;
    let mut request = hello();
    request["tools"] = weather_tools();
    request["stream"] = json!(true);
    let reply = send(anthropic(&sim, &request)).await;
    let opening = reply
        .events()
        .into_iter()
        .find(|e| e.event.as_deref() == Some("content_block_start"))
        .unwrap();
    assert!(
        opening.data.starts_with(
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01"#
        ) && opening.data.ends_with(r#","name":"get_weather","input":{}}}"#),
        "{}",
        opening.data
    );
    let data = reply.data();
    let start = data
        .iter()
        .find(|d| d["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["input"], json!({}));
    let fragments: Vec<&str> = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert!(fragments.len() > 2);
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({ "city": "sample", "days": 1 }));
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let full = {
        let mut r = request.clone();
        r["stream"] = json!(false);
        send(anthropic(&sim, &r)).await.json()
    };
    assert_eq!(
        delta["usage"]["output_tokens"],
        full["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn structured_output_is_json() {
    let sim = start_default().await;
    let mut request = hello();
    request["output_config"] = json!({
        "format": {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "properties": { "answer": { "type": "string" }, "score": { "type": "number" } },
                "required": ["answer"],
                "additionalProperties": false
            }
        }
    });
    let body = send(anthropic(&sim, &request)).await.json();
    let document: Value =
        serde_json::from_str(body["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(document, json!({ "answer": "sample", "score": 1 }));
}

#[tokio::test]
async fn count_tokens_needs_no_max_tokens() {
    let sim = start_default().await;
    let mut request = hello();
    request.as_object_mut().unwrap().remove("max_tokens");
    let reply = send(with_json(
        client()
            .post(format!("{}/v1/messages/count_tokens", sim.base_url()))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01"),
        &request,
    ))
    .await;
    assert_eq!(reply.status, 200);
    let chars = "Be brief.".len() + "Hello Claude, tell me something".len();
    assert_eq!(reply.json(), json!({ "input_tokens": chars.div_ceil(4) }));
}

/// A request whose system prompt (long enough to cache) ends with a breakpoint.
fn cached_system(ttl: Option<&str>, question: &str) -> Value {
    let mut control = json!({ "type": "ephemeral" });
    if let Some(ttl) = ttl {
        control["ttl"] = json!(ttl);
    }
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": [{ "type": "text", "text": "policy ".repeat(700), "cache_control": control }],
        "messages": [{ "role": "user", "content": question }]
    })
}

#[tokio::test]
async fn a_breakpoint_writes_the_prefix_once_then_reads_it() {
    let sim = start_default().await;
    let prefix = ("policy ".len() * 700).div_ceil(4) as u64;
    let total = |question: &str| ("policy ".len() * 700 + question.len()).div_ceil(4) as u64;
    let usage = |body: Value| body["usage"].clone();

    let first = usage(
        send(anthropic(&sim, &cached_system(None, "First question")))
            .await
            .json(),
    );
    assert_eq!(first["cache_creation_input_tokens"], prefix);
    assert_eq!(first["cache_creation"]["ephemeral_5m_input_tokens"], prefix);
    assert_eq!(first["cache_creation"]["ephemeral_1h_input_tokens"], 0);
    assert_eq!(first["cache_read_input_tokens"], 0);
    assert_eq!(first["input_tokens"], total("First question") - prefix);

    // The same prefix with another question after it is read, streamed or not.
    let second = usage(
        send(anthropic(&sim, &cached_system(None, "Second one")))
            .await
            .json(),
    );
    assert_eq!(second["cache_read_input_tokens"], prefix);
    assert_eq!(second["cache_creation_input_tokens"], 0);
    assert_eq!(second["input_tokens"], total("Second one") - prefix);
    let mut streamed = cached_system(None, "Third");
    streamed["stream"] = json!(true);
    let data = send(anthropic(&sim, &streamed)).await.data();
    assert_eq!(
        data[0]["message"]["usage"]["cache_read_input_tokens"],
        prefix
    );

    // An hour-long breakpoint on another prefix is written as such.
    let mut hour = cached_system(Some("1h"), "First question");
    hour["system"][0]["text"] = json!("rules ".repeat(800));
    let written = usage(send(anthropic(&sim, &hour)).await.json());
    let hour_prefix = ("rules ".len() * 800).div_ceil(4) as u64;
    assert_eq!(
        written["cache_creation"]["ephemeral_1h_input_tokens"],
        hour_prefix
    );
    assert_eq!(written["cache_creation"]["ephemeral_5m_input_tokens"], 0);

    // Another model has its own cache; a prefix under the minimum is never cached.
    let mut other = cached_system(None, "First question");
    other["model"] = json!("claude-haiku-4-5");
    assert_eq!(
        usage(send(anthropic(&sim, &other)).await.json())["cache_creation_input_tokens"],
        prefix
    );
    let mut short = cached_system(None, "First question");
    short["system"][0]["text"] = json!("Be brief.");
    let short = usage(send(anthropic(&sim, &short)).await.json());
    assert_eq!(short["cache_creation_input_tokens"], 0);
    assert_eq!(short["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn a_breakpoint_in_the_messages_caches_the_conversation_up_to_it() {
    let sim = start_default().await;
    let turn = |last: &str| {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "messages": [
                { "role": "user", "content": [
                    { "type": "text", "text": "context ".repeat(600), "cache_control": { "type": "ephemeral" } }
                ] },
                { "role": "assistant", "content": "Noted." },
                { "role": "user", "content": last }
            ]
        })
    };
    let prefix = ("context ".len() * 600).div_ceil(4) as u64;
    let first = send(anthropic(&sim, &turn("a"))).await.json();
    assert_eq!(first["usage"]["cache_creation_input_tokens"], prefix);
    let second = send(anthropic(&sim, &turn("b"))).await.json();
    assert_eq!(second["usage"]["cache_read_input_tokens"], prefix);
}

/// With `thinking` enabled the answer opens with a signed thinking block, whole or streamed
/// (opened empty, its text in `thinking_delta`s, then a `signature_delta`), and its tokens count
/// as output; the settings thinking rules out are refused, as is a tool loop that leaves the
/// turn's thinking out.
#[tokio::test]
async fn thinking_opens_the_answer_and_goes_back_with_a_tool_loop() {
    let sim = start_default().await;
    let plain = send(anthropic(&sim, &hello())).await.json();
    let mut request = hello();
    request["max_tokens"] = json!(2048);
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let whole = send(anthropic(&sim, &request)).await.json();
    let blocks = whole["content"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "thinking");
    let thinking = blocks[0]["thinking"].as_str().unwrap();
    assert!(thinking.contains("Hello Claude"), "{thinking}");
    assert!(!blocks[0]["signature"].as_str().unwrap().is_empty());
    assert_eq!(blocks[1], plain["content"][0]);
    let thought = thinking.split_whitespace().count() as u64;
    assert_eq!(
        whole["usage"]["output_tokens"].as_u64().unwrap(),
        plain["usage"]["output_tokens"].as_u64().unwrap() + thought
    );

    request["stream"] = json!(true);
    let reply = send(anthropic(&sim, &request)).await;
    let data = reply.data();
    assert_eq!(
        data[1],
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    );
    assert_eq!(data[2]["type"], "ping");
    let of_block = |index: u64, kind: &str| -> Vec<Value> {
        data.iter()
            .filter(|d| d["index"] == index && d["delta"]["type"] == kind)
            .map(|d| d["delta"].clone())
            .collect()
    };
    let streamed: String = of_block(0, "thinking_delta")
        .iter()
        .map(|d| d["thinking"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(streamed, thinking);
    assert_eq!(of_block(0, "signature_delta").len(), 1);
    let text: String = of_block(1, "text_delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, plain["content"][0]["text"].as_str().unwrap());
    assert_eq!(
        data[data.len() - 2]["usage"]["output_tokens"],
        whole["usage"]["output_tokens"]
    );

    for (change, needle) in [
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 1000}}),
            "greater than or equal to 1024",
        ),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
            "`max_tokens` must be greater",
        ),
        (
            json!({"thinking": {"type": "enabled"}}),
            "budget_tokens: Field required",
        ),
        (json!({"thinking": {"type": "sometimes"}}), "does not match"),
        (json!({"temperature": 0.5}), "`temperature`"),
        (json!({"top_k": 5}), "`top_k`"),
        (
            json!({"tools": weather_tools(), "tool_choice": {"type": "any"}}),
            "forces tool use",
        ),
    ] {
        let mut bad = hello();
        bad["max_tokens"] = json!(2048);
        bad["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
        for (key, value) in change.as_object().unwrap() {
            bad[key] = value.clone();
        }
        let reply = send(anthropic(&sim, &bad)).await;
        assert_eq!(reply.status, 400, "{change}");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(needle), "{change}: {message}");
    }

    // A tool loop: the turn goes back with its thinking first, signed.
    let mut first = hello();
    first["max_tokens"] = json!(2048);
    first["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    first["tools"] = weather_tools();
    let turn = send(anthropic(&sim, &first)).await.json();
    assert_eq!(turn["stop_reason"], "tool_use");
    assert_eq!(turn["content"][0]["type"], "thinking");
    let call = &turn["content"][1];
    let result = json!({"role": "user", "content": [{"type": "tool_result",
        "tool_use_id": call["id"], "content": "Sunny"}]});
    let next = |content: Value| {
        let mut next = first.clone();
        next["messages"] = json!([first["messages"][0],
            {"role": "assistant", "content": content}, result]);
        next
    };
    let reply = send(anthropic(&sim, &next(turn["content"].clone()))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["content"][0]["type"], "thinking");
    let reply = send(anthropic(&sim, &next(json!([call])))).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must start with")
    );
    let mut unsigned = turn["content"].clone();
    unsigned[0]["signature"] = json!("");
    let reply = send(anthropic(&sim, &next(unsigned))).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    // Without thinking enabled, the same history needs none.
    let mut plain_loop = next(json!([call]));
    plain_loop.as_object_mut().unwrap().remove("thinking");
    assert_eq!(send(anthropic(&sim, &plain_loop)).await.status, 200);
}

/// Adaptive thinking (Claude 4.6 and later, `thinking: {"type": "adaptive"}` with an effort)
/// opens the answer with thinking too, takes no budget, and, since the model may skip thinking
/// on a turn, does not need a tool turn's thinking back.
#[tokio::test]
async fn adaptive_thinking_takes_no_budget() {
    let sim = start_default().await;
    let mut request = hello();
    request["thinking"] = json!({"type": "adaptive"});
    request["output_config"] = json!({"effort": "medium"});
    let body = send(anthropic(&sim, &request)).await.json();
    assert_eq!(body["content"][0]["type"], "thinking", "{body}");
    request["tools"] = weather_tools();
    let turn = send(anthropic(&sim, &request)).await.json();
    let call = turn["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    request["messages"] = json!([hello()["messages"][0], {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny"}]}]);
    assert_eq!(send(anthropic(&sim, &request)).await.status, 200);
    request["thinking"] = json!({"type": "sometimes"});
    assert_eq!(send(anthropic(&sim, &request)).await.status, 400);
    // Claude 4.7 and later think only adaptively: a budget is refused.
    let mut budgeted = hello();
    budgeted["model"] = json!("claude-opus-4-7");
    budgeted["max_tokens"] = json!(4096);
    budgeted["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let reply = send(anthropic(&sim, &budgeted)).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("adaptive")
    );
    budgeted["thinking"] = json!({"type": "adaptive"});
    assert_eq!(send(anthropic(&sim, &budgeted)).await.status, 200);
}

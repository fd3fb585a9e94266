use base64::Engine;
use serde_json::{Value, json};

use super::{client, openai, openai_tools, send, start, start_default, with_json};
use crate::SimConfig;

fn hello() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Hello there, how are you today my friend?" }
        ]
    })
}

/// Characters of all message text in `hello()`, rounded up to tokens.
fn hello_input_tokens() -> u64 {
    let chars = "Be brief.".len() + "Hello there, how are you today my friend?".len();
    chars.div_ceil(4) as u64
}

#[tokio::test]
async fn chat_completion_has_the_documented_shape() {
    let sim = start_default().await;
    let reply = send(openai(&sim, &hello())).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = reply.json();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["refusal"].is_null());
    let content = choice["message"]["content"].as_str().unwrap();
    assert_eq!(
        content,
        "Simulated reply from gpt-4o-mini to: Hello there, how are you today lorem"
    );
    assert_eq!(content.split_whitespace().count(), 12);
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], hello_input_tokens());
    assert_eq!(usage["completion_tokens"], 12);
    assert_eq!(usage["total_tokens"], hello_input_tokens() + 12);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    assert!(
        body["system_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("fp_")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn replies_are_deterministic() {
    let sim = start_default().await;
    let a = send(openai(&sim, &hello())).await.json();
    let b = send(openai(&sim, &hello())).await.json();
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn missing_bearer_is_401_unless_auth_is_off() {
    let sim = start_default().await;
    let request = with_json(
        client().post(format!("{}/v1/chat/completions", sim.base_url())),
        &hello(),
    );
    let reply = send(request).await;
    assert_eq!(reply.status, 401);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("API key"));
    assert!(error.get("param").is_some() && error.get("code").is_some());

    let open = start(SimConfig {
        require_auth: false,
        ..SimConfig::default()
    })
    .await;
    let request = with_json(
        client().post(format!("{}/v1/chat/completions", open.base_url())),
        &hello(),
    );
    assert_eq!(send(request).await.status, 200);
}

#[tokio::test]
async fn invalid_requests_get_openai_errors() {
    let sim = start_default().await;
    let bad_json = openai(&sim, &json!(null)).body("{oops");
    let reply = send(bad_json).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let reply = send(openai(&sim, &json!({ "model": "gpt-4o" }))).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["param"], "messages");

    let bad_role = json!({ "model": "m", "messages": [{ "role": "robot", "content": "hi" }] });
    let reply = send(openai(&sim, &bad_role)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "invalid_value");

    let orphan_tool = json!({
        "model": "m",
        "messages": [
            { "role": "user", "content": "hi" },
            { "role": "tool", "tool_call_id": "call_x", "content": "42" }
        ]
    });
    let reply = send(openai(&sim, &orphan_tool)).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("role 'tool'")
    );

    let unanswered = json!({
        "model": "m",
        "messages": [
            { "role": "user", "content": "hi" },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_a", "type": "function", "function": { "name": "f", "arguments": "{}" } }
            ] },
            { "role": "user", "content": "again" }
        ]
    });
    let reply = send(openai(&sim, &unanswered)).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("call_a")
    );
}

#[tokio::test]
async fn stream_matches_the_full_reply_and_ends_with_done() {
    let sim = start_default().await;
    let full = send(openai(&sim, &hello())).await.json();
    let mut request = hello();
    request["stream"] = json!(true);
    let reply = send(openai(&sim, &request)).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = reply.events();
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks = reply.data();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = chunks[0]["id"].clone();
    let mut text = String::new();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id);
        assert!(
            chunk["usage"].is_null(),
            "usage must be null without include_usage"
        );
        if let Some(content) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(content);
        }
    }
    assert_eq!(
        text,
        full["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    // Role chunk, 12 words, finish chunk.
    assert_eq!(chunks.len(), 14);
}

/// OpenAI writes a chunk's members in a fixed order and, unless asked not to, ends every chunk
/// with an `obfuscation` of varying length: a client's reader meets both.
#[tokio::test]
async fn stream_chunks_are_written_in_the_apis_member_order_with_obfuscation() {
    let sim = start_default().await;
    let mut request = hello();
    request["stream"] = json!(true);
    request["stream_options"] = json!({ "include_usage": true });
    let events = send(openai(&sim, &request)).await.events();
    let chunks = &events[..events.len() - 1];
    let mut lengths = std::collections::BTreeSet::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let data = &chunk.data;
        assert!(data.starts_with(r#"{"id":"chatcmpl-"#), "{data}");
        let head = r#","object":"chat.completion.chunk","created":"#;
        let middle =
            r#","service_tier":"default","system_fingerprint":"fp_5f3c1d2e7a","choices":["#;
        assert!(data.contains(head) && data.contains(middle), "{data}");
        let (body, obfuscation) = data.rsplit_once(r#","obfuscation":""#).unwrap();
        let obfuscation = obfuscation.strip_suffix("\"}").unwrap();
        assert!(
            (1..=16).contains(&obfuscation.len())
                && obfuscation.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{data}"
        );
        lengths.insert(obfuscation.len());
        if i + 1 < chunks.len() {
            assert!(body.ends_with(r#"}],"usage":null"#), "{data}");
        }
    }
    assert!(lengths.len() > 1, "{lengths:?}");
    assert!(
        chunks[1]
            .data
            .contains(r#""choices":[{"index":0,"delta":{"content":"#)
    );
    assert!(
        chunks[0]
            .data
            .contains(r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#),
        "{}",
        chunks[0].data
    );

    request["stream_options"] = json!({ "include_obfuscation": false });
    let events = send(openai(&sim, &request)).await.events();
    for chunk in &events[..events.len() - 1] {
        assert!(!chunk.data.contains("obfuscation"), "{}", chunk.data);
        assert!(chunk.data.ends_with("}]}"), "{}", chunk.data);
    }
}

#[tokio::test]
async fn include_usage_adds_a_final_usage_chunk() {
    let sim = start_default().await;
    let mut request = hello();
    request["stream"] = json!(true);
    request["stream_options"] = json!({ "include_usage": true });
    let chunks = send(openai(&sim, &request)).await.data();
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 12);
    assert_eq!(last["usage"]["prompt_tokens"], hello_input_tokens());
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    for chunk in &chunks[..chunks.len() - 1] {
        assert!(chunk["usage"].is_null());
    }
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_cut_the_reply() {
    let sim = start_default().await;
    let mut request = hello();
    request["max_completion_tokens"] = json!(3);
    let body = send(openai(&sim, &request)).await.json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Simulated reply from"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let mut request = hello();
    request["max_tokens"] = json!(2);
    request["stream"] = json!(true);
    let chunks = send(openai(&sim, &request)).await.data();
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    let mut request = hello();
    request["stop"] = json!(["from", "zzz"]);
    let body = send(openai(&sim, &request)).await.json();
    assert_eq!(body["choices"][0]["message"]["content"], "Simulated reply");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

/// A model told to call a tool (`required`) calls one after tool results too, choosing one it
/// has not called yet (an agent framework's final-answer tool), as a real model would; left
/// to choose (`auto`), it answers from the results. An object schema requiring nothing is
/// still filled.
#[tokio::test]
async fn a_forced_tool_choice_calls_a_tool_after_results_too() {
    let sim = start_default().await;
    let mut tools = openai_tools();
    tools.as_array_mut().unwrap().push(json!({"type": "function", "function": {
        "name": "final_result",
        "parameters": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": []}}}));
    let request = |choice: &str| {
        json!({
            "model": "gpt-4o",
            "tools": tools,
            "tool_choice": choice,
            "messages": [
                { "role": "user", "content": "Weather in Paris?" },
                { "role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"}}]},
                { "role": "tool", "tool_call_id": "call_1", "content": "18 degrees" },
            ],
        })
    };
    let body = send(openai(&sim, &request("required"))).await.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_time", "{body}");
    let body = send(openai(&sim, &request("auto"))).await.json();
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");

    let mut named = request("required");
    named["tool_choice"] = json!({"type": "function", "function": {"name": "final_result"}});
    let body = send(openai(&sim, &named)).await.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "final_result", "{body}");
    assert_eq!(call["arguments"], r#"{"answer":"sample"}"#, "{body}");
}

/// JSON asked for in words, with the schema written into the instructions (as clients such as
/// instructor do), or by `json_object` with the schema in the prompt, gets an object of that
/// schema; a system prompt that only mentions JSON gets text.
#[tokio::test]
async fn json_asked_for_in_words_follows_the_schema_written_out() {
    let sim = start_default().await;
    let schema = r#"{"properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"], "type": "object"}"#;
    let ask = |system: String, format: Option<Value>| {
        let mut request = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Extract: Ada is 36."}]});
        if let Some(format) = format {
            request["response_format"] = format;
        }
        request
    };
    for (system, format) in [
        (
            format!("Answer in JSON matching this json_schema:\n\n{schema}\n\nReturn an instance."),
            None,
        ),
        (
            format!("Use the schema {schema}."),
            Some(json!({"type": "json_object"})),
        ),
    ] {
        let body = send(openai(&sim, &ask(system, format))).await.json();
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        let answer: Value = serde_json::from_str(text).unwrap();
        assert_eq!(answer, json!({"name": "sample", "age": 1}), "{text}");
    }
    let body = send(openai(&sim, &ask("Answer in JSON.".into(), None)))
        .await
        .json();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("Simulated reply"), "{text}");
}

#[tokio::test]
async fn tools_are_called_with_schema_arguments() {
    let sim = start_default().await;
    let request = json!({
        "model": "gpt-4o",
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": openai_tools(),
    });
    let body = send(openai(&sim, &request)).await.json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({ "city": "sample", "days": 1, "unit": "celsius" })
    );

    // A named choice picks that tool.
    let mut named = request.clone();
    named["tool_choice"] = json!({ "type": "function", "function": { "name": "get_time" } });
    let body = send(openai(&sim, &named)).await.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_time");
    assert_eq!(call["arguments"], r#"{"exact":true,"zone":"sample"}"#);

    // "none" answers with text.
    let mut none = request.clone();
    none["tool_choice"] = json!("none");
    let body = send(openai(&sim, &none)).await.json();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    // "parallel" in the prompt calls the first two tools, unless parallel calls are off.
    let mut parallel = request.clone();
    parallel["messages"][0]["content"] = json!("Run these in parallel please");
    let body = send(openai(&sim, &parallel)).await.json();
    let calls = body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    parallel["parallel_tool_calls"] = json!(false);
    let body = send(openai(&sim, &parallel)).await.json();
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn tool_round_trip_quotes_the_result() {
    let sim = start_default().await;
    let first = json!({
        "model": "gpt-4o",
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": openai_tools(),
    });
    let body = send(openai(&sim, &first)).await.json();
    let message = body["choices"][0]["message"].clone();
    let call_id = message["tool_calls"][0]["id"].clone();
    let second = json!({
        "model": "gpt-4o",
        "messages": [
            { "role": "user", "content": "Weather in Paris?" },
            message,
            { "role": "tool", "tool_call_id": call_id, "content": "22 degrees and sunny" }
        ],
        "tools": openai_tools(),
    });
    let body = send(openai(&sim, &second)).await.json();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("\"22 degrees and sunny\""), "{text}");
}

#[tokio::test]
async fn streamed_tool_calls_rebuild_valid_arguments() {
    let sim = start_default().await;
    let request = json!({
        "model": "gpt-4o",
        "messages": [{ "role": "user", "content": "do both in parallel" }],
        "tools": openai_tools(),
        "stream": true,
    });
    let chunks = send(openai(&sim, &request)).await.data();
    let mut args = [String::new(), String::new()];
    let mut names = [None, None];
    let mut fragments = 0;
    for chunk in &chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if let Some(name) = call["function"]["name"].as_str() {
                assert!(call["id"].as_str().unwrap().starts_with("call_"));
                names[index] = Some(name.to_owned());
            }
            if let Some(a) = call["function"]["arguments"].as_str() {
                args[index].push_str(a);
                fragments += 1;
            }
        }
    }
    assert_eq!(names, [Some("get_weather".into()), Some("get_time".into())]);
    assert!(
        fragments > 4,
        "arguments should arrive in several fragments"
    );
    let weather: Value = serde_json::from_str(&args[0]).unwrap();
    assert_eq!(weather["city"], "sample");
    let time: Value = serde_json::from_str(&args[1]).unwrap();
    assert_eq!(time["exact"], true);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn json_mode_returns_a_document() {
    let sim = start_default().await;
    let mut request = hello();
    request["response_format"] = json!({
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {
                    "name": { "type": "string" },
                    "age": { "type": "integer" },
                    "tags": { "type": "array", "items": { "type": "string" } },
                    "kind": { "$ref": "#/$defs/kind" }
                },
                "required": ["name", "age", "tags", "kind"],
                "additionalProperties": false,
                "$defs": { "kind": { "type": "string", "enum": ["a", "b"] } }
            }
        }
    });
    let body = send(openai(&sim, &request)).await.json();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    let document: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        document,
        json!({ "name": "sample", "age": 1, "tags": ["sample"], "kind": "a" })
    );
    assert_eq!(
        body["usage"]["completion_tokens"].as_u64().unwrap(),
        crate::model::fragments(text)
            .iter()
            .map(|p| u64::from(p.tokens))
            .sum::<u64>()
    );

    let mut request = hello();
    request["response_format"] = json!({ "type": "json_object" });
    request["stream"] = json!(true);
    let chunks = send(openai(&sim, &request)).await.data();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let document: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(document["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn embeddings_in_float_and_base64() {
    let sim = start_default().await;
    let url = format!("{}/v1/embeddings", sim.base_url());
    let request = json!({
        "model": "text-embedding-3-small",
        "input": ["alpha", "beta gamma"],
        "dimensions": 8,
    });
    let reply = send(with_json(client().post(&url).bearer_auth("k"), &request)).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    let floats: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 8);
    // "alpha" is 2 tokens, "beta gamma" 3.
    assert_eq!(
        body["usage"],
        json!({ "prompt_tokens": 5, "total_tokens": 5 })
    );

    let mut encoded = request.clone();
    encoded["encoding_format"] = json!("base64");
    let body = send(with_json(client().post(&url).bearer_auth("k"), &encoded))
        .await
        .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded, floats);

    let default_size = json!({ "model": "m", "input": "x" });
    let body = send(with_json(
        client().post(&url).bearer_auth("k"),
        &default_size,
    ))
    .await
    .json();
    assert_eq!(
        body["data"][0]["embedding"].as_array().unwrap().len(),
        crate::DEFAULT_EMBEDDING_DIMENSIONS as usize
    );

    let tokens = json!({ "model": "m", "input": [[1, 2, 3], [4]] });
    let body = send(with_json(client().post(&url).bearer_auth("k"), &tokens))
        .await
        .json();
    assert_eq!(body["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn models_are_listed_in_both_shapes() {
    let sim = start_default().await;
    let url = format!("{}/v1/models", sim.base_url());
    let body = send(client().get(&url).bearer_auth("k")).await.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["id"], "gpt-4o-mini");
    assert!(body["data"][0]["owned_by"].is_string());

    let body = send(
        client()
            .get(&url)
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01"),
    )
    .await
    .json();
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["has_more"], false);
}

#[tokio::test]
async fn paced_streams_carry_the_same_events() {
    let fast = start_default().await;
    let paced = start(SimConfig {
        token_ms: 1,
        ..SimConfig::default()
    })
    .await;
    let mut request = hello();
    request["stream"] = json!(true);
    let strip = |chunks: Vec<Value>| -> Vec<Value> {
        chunks
            .into_iter()
            .map(|mut c| {
                c["id"] = Value::Null;
                c["created"] = Value::Null;
                c
            })
            .collect()
    };
    let a = strip(send(openai(&fast, &request)).await.data());
    let b = strip(send(openai(&paced, &request)).await.data());
    assert_eq!(a, b);
}

#[tokio::test]
async fn scripted_reply_from_the_configuration() {
    let sim = start(SimConfig {
        replies: vec![
            crate::ReplyRule::new("gpt-4o*", "{\"answer\": 42}").when_prompt_contains("Hello"),
        ],
        ..SimConfig::default()
    })
    .await;
    let body = send(openai(&sim, &hello())).await.json();
    assert_eq!(body["choices"][0]["message"]["content"], "{\"answer\": 42}");
    assert_eq!(body["usage"]["completion_tokens"], 2);
    let mut other = hello();
    other["messages"][1]["content"] = json!("Something else");
    let body = send(openai(&sim, &other)).await.json();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("Simulated reply"), "{text}");
}

/// `logprobs: true` puts each token of a text answer in the choice's `logprobs.content`, with
/// `top_logprobs` likeliest tokens beside it (the chosen one first); a streamed answer carries
/// each chunk's tokens in that chunk. Not asked for, they are `null`; asked for wrongly, a 400.
#[tokio::test]
async fn log_probabilities_come_with_each_token_when_asked_for() {
    let sim = start_default().await;
    let full = send(openai(&sim, &hello())).await.json();
    assert!(full["choices"][0]["logprobs"].is_null());
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut request = hello();
    request["logprobs"] = json!(true);
    request["top_logprobs"] = json!(3);
    let body = send(openai(&sim, &request)).await.json();
    let logprobs = &body["choices"][0]["logprobs"];
    assert!(logprobs["refusal"].is_null());
    let tokens = logprobs["content"].as_array().unwrap();
    assert_eq!(tokens.len() as u64, body["usage"]["completion_tokens"]);
    let mut joined = String::new();
    for entry in tokens {
        let token = entry["token"].as_str().unwrap();
        joined.push_str(token);
        let bytes: Vec<u8> = serde_json::from_value(entry["bytes"].clone()).unwrap();
        assert_eq!(bytes, token.as_bytes());
        let logprob = entry["logprob"].as_f64().unwrap();
        assert!(logprob < 0.0, "{entry}");
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{entry}");
        assert_eq!(
            (&top[0]["token"], &top[0]["logprob"]),
            (&entry["token"], &entry["logprob"])
        );
        assert!(
            top.windows(2)
                .all(|w| w[0]["logprob"].as_f64() > w[1]["logprob"].as_f64())
        );
        assert!(top[1..].iter().all(|t| t["token"] != entry["token"]));
    }
    assert_eq!(joined, text);

    request["stream"] = json!(true);
    request["top_logprobs"] = json!(20);
    let chunks = send(openai(&sim, &request)).await.data();
    let mut streamed = String::new();
    for chunk in &chunks {
        let choice = &chunk["choices"][0];
        match choice["delta"]["content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            Some(content) => {
                let entries = choice["logprobs"]["content"].as_array().unwrap();
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0]["token"], content);
                assert_eq!(entries[0]["top_logprobs"].as_array().unwrap().len(), 20);
                streamed.push_str(content);
            }
            None => assert!(choice["logprobs"].is_null(), "{chunk}"),
        }
    }
    assert_eq!(streamed, text);

    for (logprobs, top, param) in [
        (json!(false), json!(2), "top_logprobs"),
        (json!(true), json!(21), "top_logprobs"),
        (json!(true), json!("2"), "top_logprobs"),
        (json!("yes"), Value::Null, "logprobs"),
    ] {
        let mut request = hello();
        request["logprobs"] = logprobs;
        request["top_logprobs"] = top;
        let reply = send(openai(&sim, &request)).await;
        assert_eq!(reply.status, 400);
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], param);
    }
}

/// `n` asks for several answers: each a choice of its own with its index, told apart by their
/// filler, the usage counting all; more than the API's most is refused, as is `n` above 1 on a
/// stream (the simulator streams one answer).
#[tokio::test]
async fn several_choices_are_answered_each() {
    let sim = start_default().await;
    let mut request = hello();
    request["n"] = json!(3);
    let body = send(openai(&sim, &request)).await.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    let texts: Vec<&str> = choices
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    assert!(
        texts[0] != texts[1] && texts[1] != texts[2] && texts[0] != texts[2],
        "{texts:?}"
    );
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    assert_eq!(body["usage"]["completion_tokens"], 36);
    for (n, stream) in [(json!(0), false), (json!(129), false), (json!(2), true)] {
        let mut bad = hello();
        bad["n"] = n;
        bad["stream"] = json!(stream);
        let reply = send(openai(&sim, &bad)).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["error"]["param"], "n");
    }
}

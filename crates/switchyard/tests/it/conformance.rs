//! The provider conformance matrix: every provider kind through every capability, from every
//! ingress dialect (Chat Completions, the Responses API, Messages), against the simulator.

use serde_json::{Value, json};
use switchyard_sim::{ReplyRule, SimConfig};

use crate::harness::{Env, Gateway, KEY, KINDS, chat, env, record, standard_config, start_sim};

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[tokio::test]
async fn openai_ingress_matrix() {
    let env = env().await;
    for kind in KINDS {
        // Plain.
        let r = env
            .post("/v1/chat/completions", &chat(kind, "Hello there"))
            .await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        assert_eq!(b["object"], "chat.completion");
        assert_eq!(b["model"], *kind);
        assert!(b["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(
            !b["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .is_empty(),
            "{kind}"
        );
        assert_eq!(b["choices"][0]["finish_reason"], "stop", "{kind}");
        assert!(b["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{kind}");
        assert!(
            b["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{kind}"
        );
        let route = r.headers["x-switchyard-route"].to_str().unwrap();
        assert!(
            route.contains(&format!("alias={kind}")) && route.contains("attempts=1"),
            "{route}"
        );

        // Stream with usage.
        let mut body = chat(kind, "Tell me a story");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}");
        assert_eq!(r.headers["content-type"], "text/event-stream");
        let data = r.sse_data();
        assert_eq!(data.last().unwrap(), "[DONE]", "{kind}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty(), "{kind}");
        let finish: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, vec![&json!("stop")], "{kind}");
        let usage = &chunks.last().unwrap()["usage"];
        assert!(
            chunks.last().unwrap()["choices"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(
            usage["completion_tokens"].as_u64().unwrap() > 0,
            "{kind}: {usage}"
        );

        // Stream without include_usage: no usage chunk, no usage field.
        let mut body = chat(kind, "Tell me a story");
        body["stream"] = json!(true);
        let r = env.post("/v1/chat/completions", &body).await;
        let data = r.sse_data();
        assert_eq!(data.last().unwrap(), "[DONE]");
        assert!(
            data[..data.len() - 1]
                .iter()
                .all(|d| !d.contains("\"usage\"")),
            "{kind}: {data:?}"
        );

        // Tools, then the tool result.
        let mut body = chat(kind, "What is the weather in Paris?");
        body["tools"] = json!([weather_tool()]);
        let r = env.post("/v1/chat/completions", &body).await;
        let b = r.json();
        assert_eq!(
            b["choices"][0]["finish_reason"], "tool_calls",
            "{kind}: {b}"
        );
        let call = &b["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{kind}: {args}");
        let mut messages = body["messages"].as_array().unwrap().clone();
        messages.push(b["choices"][0]["message"].clone());
        messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"}));
        body["messages"] = json!(messages);
        let r = env.post("/v1/chat/completions", &body).await;
        let b = r.json();
        assert_eq!(b["choices"][0]["finish_reason"], "stop", "{kind}: {b}");
        assert!(
            b["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("18 degrees"),
            "{kind}: {b}"
        );

        // Streamed parallel tool calls.
        let mut body = chat(kind, "Use parallel tools please");
        body["tools"] = json!([weather_tool(), {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}]);
        body["stream"] = json!(true);
        let r = env.post("/v1/chat/completions", &body).await;
        let data = r.sse_data();
        assert_eq!(data.last().unwrap(), "[DONE]", "{kind}");
        let mut names = std::collections::BTreeMap::new();
        let mut args = std::collections::BTreeMap::<u64, String>::new();
        for d in &data[..data.len() - 1] {
            let c: Value = serde_json::from_str(d).unwrap();
            for tc in c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = tc["index"].as_u64().unwrap();
                if let Some(n) = tc["function"]["name"].as_str() {
                    names.insert(i, n.to_owned());
                }
                args.entry(i)
                    .or_default()
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        assert_eq!(
            names.values().collect::<Vec<_>>(),
            ["get_weather", "get_time"],
            "{kind}: {data:?}"
        );
        for a in args.values() {
            serde_json::from_str::<Value>(a)
                .unwrap_or_else(|e| panic!("{kind}: bad args {a}: {e}"));
        }
        // Told not to call tools in parallel, every provider's answer has one call, whole or
        // streamed (Gemini and Bedrock cannot be told: the gateway keeps the first).
        body["parallel_tool_calls"] = json!(false);
        let r = env.post("/v1/chat/completions", &body).await;
        let calls: Vec<Value> = r
            .sse_data()
            .iter()
            .filter(|d| d.as_str() != "[DONE]")
            .flat_map(|d| {
                let c: Value = serde_json::from_str(d).unwrap();
                c["choices"][0]["delta"]["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        assert!(!calls.is_empty(), "{kind}: {}", r.text);
        assert!(calls.iter().all(|c| c["index"] == 0), "{kind}: {calls:?}");
        body["stream"] = json!(false);
        let b = env.post("/v1/chat/completions", &body).await.json();
        let whole = b["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(whole.len(), 1, "{kind}: {b}");
        assert_eq!(whole[0]["function"]["name"], "get_weather", "{kind}: {b}");

        // JSON schema output, with the bounds pydantic writes (which Claude's structured
        // outputs do not take: they reach it in the descriptions).
        let mut body = chat(kind, "Answer in JSON");
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": {"type": "object",
            "properties": {"answer": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
            "required": ["answer", "age"], "additionalProperties": false}}});
        let b = env.post("/v1/chat/completions", &body).await.json();
        let content: Value =
            serde_json::from_str(b["choices"][0]["message"]["content"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{kind}: {e}: {b}"));
        assert!(content["answer"].is_string(), "{kind}: {content}");
        // Cut at its output limit, the JSON says so (the SDKs' parse helpers raise on it).
        body["max_tokens"] = json!(2);
        let b = env.post("/v1/chat/completions", &body).await.json();
        assert_eq!(b["choices"][0]["finish_reason"], "length", "{kind}: {b}");
        assert!(
            b["usage"]["completion_tokens"].as_u64() <= Some(2),
            "{kind}: {b}"
        );
        // A strict tool's schema likewise.
        let mut body = chat(kind, "Look it up");
        body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "strict": true,
            "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
                "required": ["n"], "additionalProperties": false}}}]);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        assert_eq!(
            r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "lookup",
            "{kind}: {}",
            r.text
        );

        // max_tokens → length.
        let mut body = chat(kind, "Write a long essay");
        body["max_tokens"] = json!(2);
        let b = env.post("/v1/chat/completions", &body).await.json();
        assert_eq!(b["choices"][0]["finish_reason"], "length", "{kind}: {b}");

        // Image parts by URL and base64 (for Bedrock, which takes images inline only, the
        // gateway fetches a URL: this one's host never resolves, so it is refused naming the
        // part).
        let body = json!({"model": kind, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://cat.invalid/cat.png"}}
        ]}]});
        let r = env.post("/v1/chat/completions", &body).await;
        if *kind == "bedrock" {
            assert_eq!(r.status, 400, "{kind}: {}", r.text);
            assert!(
                r.text.contains("messages[0].content[2]"),
                "{kind}: {}",
                r.text
            );
        } else {
            assert_eq!(r.status, 200, "{kind}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn anthropic_ingress_matrix() {
    let env = env().await;
    for kind in KINDS {
        let body = json!({"model": kind, "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello there"}]});
        let r = env.post_anthropic(&body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        assert_eq!(b["type"], "message");
        assert_eq!(b["role"], "assistant");
        assert_eq!(b["model"], *kind);
        assert!(b["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(b["content"][0]["type"], "text");
        assert_eq!(b["stop_reason"], "end_turn", "{kind}: {b}");
        assert!(
            b["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{kind}: {b}"
        );
        assert!(b["usage"]["output_tokens"].as_u64().unwrap() > 0);

        // The full event sequence.
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let r = env.post_anthropic(&sbody).await;
        assert_eq!(r.status, 200);
        let events = r.sse_events();
        assert_eq!(
            events.first().map(String::as_str),
            Some("message_start"),
            "{kind}: {events:?}"
        );
        assert_eq!(
            events.last().map(String::as_str),
            Some("message_stop"),
            "{kind}: {events:?}"
        );
        assert!(events.contains(&"content_block_start".to_owned()));
        assert!(events.contains(&"content_block_delta".to_owned()));
        assert!(events.contains(&"content_block_stop".to_owned()));
        let delta: Value = r
            .sse_data()
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .find(|v| v["type"] == "message_delta")
            .unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{kind}");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
        // The stream opens with a prompt count, whichever provider answers (the admitted
        // estimate where the provider counts only at the end), and ends with the provider's.
        let start: Value = serde_json::from_str(&r.sse_data()[0]).unwrap();
        assert!(
            start["message"]["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{kind}: {start}"
        );
        assert_eq!(
            delta["usage"]["input_tokens"], b["usage"]["input_tokens"],
            "{kind}: {delta}"
        );

        // Tool use round trip.
        let tool = json!({"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}});
        let body = json!({"model": kind, "max_tokens": 100, "tools": [tool],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]});
        let b = env.post_anthropic(&body).await.json();
        assert_eq!(b["stop_reason"], "tool_use", "{kind}: {b}");
        let tu = b["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "tool_use")
            .unwrap()
            .clone();
        assert!(tu["input"]["city"].is_string(), "{kind}: {tu}");
        let body = json!({"model": kind, "max_tokens": 100, "tools": [tool], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": b["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu["id"], "content": "18 degrees"}]}
        ]});
        let b = env.post_anthropic(&body).await.json();
        assert_eq!(b["stop_reason"], "end_turn", "{kind}: {b}");
        assert!(
            b["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("18 degrees"),
            "{kind}: {b}"
        );
    }
}

/// The Responses API's events of a stream, checked as a client rebuilds them: numbered from 0
/// without gaps, items opened before their deltas and closed before the terminal event, which
/// holds every item as the deltas built it.
fn responses_stream(reply: &crate::harness::Reply) -> (Vec<String>, Value) {
    let events: Vec<Value> = reply
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let names = reply.sse_events();
    assert_eq!(names.len(), events.len(), "{}", reply.text);
    let mut built: Vec<Value> = Vec::new();
    for (n, (name, event)) in names.iter().zip(&events).enumerate() {
        assert_eq!(event["type"], name.as_str(), "{event}");
        assert_eq!(event["sequence_number"], n, "{event}");
        let index = event["output_index"].as_u64().map(|i| i as usize);
        match name.as_str() {
            "response.output_item.added" => {
                assert_eq!(index, Some(built.len()), "{event}");
                built.push(event["item"].clone());
            }
            // Each delta adds to its item's field: text, arguments or input.
            "response.output_text.delta"
            | "response.function_call_arguments.delta"
            | "response.custom_tool_call_input.delta" => {
                let item = &mut built[index.unwrap()];
                let field = match name.as_str() {
                    "response.output_text.delta" => "text",
                    "response.function_call_arguments.delta" => "arguments",
                    _ => "input",
                };
                let joined = format!(
                    "{}{}",
                    item[field].as_str().unwrap_or(""),
                    event["delta"].as_str().unwrap()
                );
                item[field] = json!(joined);
            }
            "response.output_item.done" => {
                let item = &built[index.unwrap()];
                let done = &event["item"];
                assert_eq!(done["id"], item["id"], "{event}");
                if done["type"] == "message" {
                    assert_eq!(done["content"][0]["text"], item["text"], "{event}");
                }
                if done["type"] == "function_call" {
                    assert_eq!(done["arguments"], item["arguments"], "{event}");
                }
                if done["type"] == "custom_tool_call" {
                    assert_eq!(done["input"], item["input"], "{event}");
                }
            }
            _ => {}
        }
    }
    let last = events.last().unwrap()["response"].clone();
    assert_eq!(
        last["output"].as_array().unwrap().len(),
        built.len(),
        "{last}"
    );
    (names, last)
}

/// The first output item of `kind` in a `response`.
fn output_item(response: &Value, kind: &str) -> Value {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} item in {response}"))
        .clone()
}

fn responses_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "weather", "strict": false,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

/// Claude Code's turns carry a system message among the messages (the Messages API's
/// mid-conversation system messages) with its beta header: every provider answers them.
#[tokio::test]
async fn system_messages_among_an_anthropic_clients_messages_reach_every_provider() {
    let env = env().await;
    let headers = [
        ("x-api-key", KEY),
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,mid-conversation-system-2026-04-07",
        ),
    ];
    for kind in KINDS {
        for stream in [false, true] {
            let body = json!({"model": kind, "max_tokens": 200, "stream": stream,
            "system": [{"type": "text", "text": "You are a coding agent.",
                "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
                {"role": "system", "content": "Available agent types: Explore, Plan."},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "List the files"},
                {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]}
            ]});
            let r = env.post_with("/v1/messages", &body, &headers).await;
            assert_eq!(r.status, 200, "{kind} stream={stream}: {}", r.text);
            if stream {
                assert_eq!(
                    r.sse_events().last().map(String::as_str),
                    Some("message_stop")
                );
                continue;
            }
            let answer = r.json();
            assert!(
                answer["content"][0]["text"]
                    .as_str()
                    .unwrap()
                    .contains("List the files"),
                "{kind}: {answer}"
            );
            // The record keeps each where the client put it.
            let record = record(&env, r.headers["x-request-id"].to_str().unwrap()).await;
            let roles: Vec<&str> = record["prompt"]
                .as_array()
                .unwrap_or_else(|| panic!("{kind}: {record}"))
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(
                roles,
                ["system", "user", "system", "assistant", "user", "system"],
                "{kind}"
            );
        }
    }
}

/// Codex sends a namespace of tools (its sub-agent tools): every provider gets them as
/// functions named after it, and the calls come back named as the client named them.
#[tokio::test]
async fn a_namespace_of_tools_reaches_every_provider_and_its_calls_come_back_in_it() {
    let env = env().await;
    let tools = json!([
        {"type": "namespace", "name": "multi_agent_v1",
            "description": "Tools for spawning and managing sub-agents.",
            "tools": [{"type": "function", "name": "spawn_agent", "description": "Start an agent.",
                "strict": false, "parameters": {"type": "object",
                    "properties": {"task": {"type": "string"}}, "required": ["task"]}}]},
        {"type": "function", "name": "exec_command", "parameters": {"type": "object",
            "properties": {"cmd": {"type": "string"}}}}
    ]);
    // The answer's first function call.
    let call_in = |answer: &Value| {
        answer["output"]
            .as_array()
            .and_then(|output| output.iter().find(|i| i["type"] == "function_call"))
            .unwrap_or_else(|| panic!("no function call: {answer}"))
            .clone()
    };
    for kind in KINDS {
        let body = json!({"model": kind, "input": "Start a helper", "tools": tools,
            "parallel_tool_calls": false, "store": false});
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let answer = r.json();
        let call = call_in(&answer);
        assert_eq!(call["name"], "spawn_agent", "{kind}: {call}");
        assert_eq!(call["namespace"], "multi_agent_v1", "{kind}: {call}");
        assert_eq!(answer["tools"], tools, "{kind}");

        // Streamed, the same.
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let r = env.post("/v1/responses", &streamed).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let added = r
            .sse_data()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|e| {
                e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call"
            })
            .unwrap_or_else(|| panic!("{kind}: {}", r.text));
        assert_eq!(
            added["item"]["namespace"], "multi_agent_v1",
            "{kind}: {added}"
        );

        // The call sent back with its output: the tool loop goes on.
        let mut next = body.clone();
        next["input"] = json!([
            {"role": "user", "content": "Start a helper"},
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "agent-7 started"}
        ]);
        let r = env.post("/v1/responses", &next).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let text = r.json()["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "message")
            .map(|m| m["content"][0]["text"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{kind}: {}", r.text));
        assert!(text.contains("agent-7 started"), "{kind}: {text}");

        // The newest Codex models get the tools as an `additional_tools` input item instead.
        let body = json!({"model": kind, "parallel_tool_calls": false, "store": false,
        "input": [
            {"type": "additional_tools", "role": "developer", "tools": tools},
            {"role": "user", "content": "Start a helper"}
        ]});
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let call = call_in(&r.json());
        assert_eq!(
            (&call["name"], &call["namespace"]),
            (&json!("spawn_agent"), &json!("multi_agent_v1")),
            "{kind}: {call}"
        );
    }
}

#[tokio::test]
async fn responses_api_matrix() {
    let env = env().await;
    // Answers longer than the least output cap the API takes (16 tokens), to hit it.
    let wordy = crate::harness::env_with_sim(
        switchyard_sim::SimConfig {
            reply_words: 60,
            ..switchyard_sim::SimConfig::default()
        },
        "",
        "allowed_fails: 3",
        "",
    )
    .await;
    for kind in KINDS {
        // Plain, with instructions.
        let body = json!({"model": kind, "instructions": "Be brief.", "input": "Hello there"});
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        assert_eq!(b["object"], "response");
        assert_eq!(b["status"], "completed", "{kind}: {b}");
        assert_eq!(b["model"], *kind);
        assert_eq!(b["instructions"], "Be brief.");
        assert!(b["id"].as_str().unwrap().starts_with("resp_"));
        let message = &b["output"][0];
        assert_eq!(message["type"], "message", "{kind}: {b}");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["content"][0]["type"], "output_text");
        let text = message["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("Hello there"), "{kind}: {text}");
        let usage = &b["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{kind}: {b}");
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
        );

        // The same streamed: the events rebuild the answer, which ends complete with usage.
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let r = env.post("/v1/responses", &sbody).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let (names, last) = responses_stream(&r);
        assert_eq!(
            &names[..2],
            ["response.created", "response.in_progress"],
            "{kind}"
        );
        assert_eq!(
            names.last().unwrap(),
            "response.completed",
            "{kind}: {names:?}"
        );
        assert!(
            names.contains(&"response.output_text.done".to_owned()),
            "{kind}"
        );
        assert_eq!(last["status"], "completed");
        assert!(
            last["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{kind}: {last}"
        );

        // A length stop is an incomplete response, streamed or not.
        let short = json!({"model": kind, "input": "Write a long essay", "max_output_tokens": 16});
        let b = wordy.post("/v1/responses", &short).await.json();
        assert_eq!(b["status"], "incomplete", "{kind}: {b}");
        assert_eq!(b["incomplete_details"]["reason"], "max_output_tokens");
        let mut sshort = short.clone();
        sshort["stream"] = json!(true);
        let (names, last) = responses_stream(&wordy.post("/v1/responses", &sshort).await);
        assert_eq!(
            names.last().unwrap(),
            "response.incomplete",
            "{kind}: {names:?}"
        );
        assert_eq!(last["incomplete_details"]["reason"], "max_output_tokens");

        // A function call and its output, sent back as items with the call.
        let history = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
        let body = json!({"model": kind, "input": history, "tools": [responses_tool()]});
        let b = env.post("/v1/responses", &body).await.json();
        let call = output_item(&b, "function_call");
        assert_eq!(call["name"], "get_weather");
        assert_eq!(
            b["tools"][0]["name"], "get_weather",
            "the tools are repeated"
        );
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{kind}: {call}");
        let mut input = history.as_array().unwrap().clone();
        input.extend(b["output"].as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18 degrees"}));
        let body = json!({"model": kind, "input": input, "tools": [responses_tool()]});
        let b = env.post("/v1/responses", &body).await.json();
        assert_eq!(b["status"], "completed", "{kind}: {b}");
        let text = b["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("18 degrees"), "{kind}: {b}");

        // The call streamed: its arguments arrive as deltas of one item.
        let body = json!({"model": kind, "input": "Weather in Oslo?", "tools": [responses_tool()],
            "tool_choice": "required", "stream": true});
        let (names, last) = responses_stream(&env.post("/v1/responses", &body).await);
        assert!(
            names.contains(&"response.function_call_arguments.done".to_owned()),
            "{kind}"
        );
        let call = &last["output"][0];
        assert_eq!(call["type"], "function_call", "{kind}: {last}");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{kind}: {call}");

        // A custom tool (free-form input, as Codex's `apply_patch`): called as a custom tool
        // call whose input is text, its output sent back, streamed alike.
        let patch_tool = json!({"type": "custom", "name": "apply_patch",
            "description": "Edit files with a patch.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}});
        let choice = json!({"type": "custom", "name": "apply_patch"});
        let history = json!([{"role": "user", "content": "Create hello.txt"}]);
        let body = json!({"model": kind, "input": history, "tools": [responses_tool(), patch_tool],
            "tool_choice": choice});
        let b = env.post("/v1/responses", &body).await.json();
        let call = output_item(&b, "custom_tool_call");
        assert_eq!(call["name"], "apply_patch", "{kind}: {call}");
        let patch = call["input"].as_str().unwrap();
        assert!(
            !patch.is_empty() && !patch.starts_with('{'),
            "{kind}: {call}"
        );
        assert_eq!(
            b["tools"][1], patch_tool,
            "{kind}: the custom tool is repeated"
        );
        assert_eq!(b["tool_choice"], choice);
        let mut input = history.as_array().unwrap().clone();
        input.extend(b["output"].as_array().unwrap().iter().cloned());
        input.push(
            json!({"type": "custom_tool_call_output", "call_id": call["call_id"],
            "output": "Patch applied"}),
        );
        let body = json!({"model": kind, "input": input, "tools": [responses_tool(), patch_tool]});
        let b = env.post("/v1/responses", &body).await.json();
        assert_eq!(b["status"], "completed", "{kind}: {b}");
        let text = b["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("Patch applied"), "{kind}: {b}");
        let body = json!({"model": kind, "input": "Create hello.txt", "stream": true,
            "tools": [patch_tool], "tool_choice": choice});
        let r = env.post("/v1/responses", &body).await;
        let (names, last) = responses_stream(&r);
        let done = names
            .iter()
            .position(|n| n == "response.custom_tool_call_input.done")
            .unwrap_or_else(|| panic!("{kind}: {names:?}"));
        assert_eq!(names[done - 1], "response.custom_tool_call_input.delta");
        let call = &last["output"][0];
        assert_eq!(call["type"], "custom_tool_call", "{kind}: {last}");
        assert!(
            !call["input"].as_str().unwrap().is_empty(),
            "{kind}: {call}"
        );

        // The hosted web search: Claude runs Anthropic's own search, and its call is a
        // `web_search_call` item, streamed or not; the others answer without searching.
        let tools = json!([{"type": "web_search", "external_web_access": false,
            "user_location": {"type": "approximate", "country": "NO"}}]);
        let body = json!({"model": kind, "input": "Latest Rust release", "tools": tools});
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        assert_eq!(b["tools"], tools, "{kind}");
        let searches: Vec<&Value> = b["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["type"] == "web_search_call")
            .collect();
        if *kind == "anthropic" {
            assert_eq!(searches.len(), 1, "{kind}: {b}");
            assert_eq!(searches[0]["status"], "completed");
            assert_eq!(searches[0]["action"]["query"], "Latest Rust release");
            assert!(
                searches[0]["action"]["sources"][0]["url"].is_string(),
                "{b}"
            );
            // Sent back with the history, the search's item is taken.
            let mut input = vec![json!({"role": "user", "content": "Latest Rust release"})];
            input.extend(b["output"].as_array().unwrap().iter().cloned());
            input.push(json!({"role": "user", "content": "Thanks"}));
            let again = json!({"model": kind, "input": input, "tools": tools});
            let r = env.post("/v1/responses", &again).await;
            assert_eq!(r.status, 200, "{kind}: {}", r.text);
        } else {
            assert!(searches.is_empty(), "{kind}: {b}");
        }
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let (names, last) = responses_stream(&env.post("/v1/responses", &sbody).await);
        assert_eq!(names.last().unwrap(), "response.completed", "{kind}");
        let searched = names.contains(&"response.web_search_call.completed".to_owned());
        assert_eq!(searched, *kind == "anthropic", "{kind}: {names:?}");
        if searched {
            assert_eq!(last["output"][0]["type"], "web_search_call", "{last}");
        }
    }

    // A reasoning summary asked for is repeated (the simulator thinks aloud nowhere, so the
    // summary form of reasoning items is held by the encoder's unit tests).
    let body = json!({"model": "openai", "input": "Hi", "reasoning": {"summary": "auto"}});
    let b = env.post("/v1/responses", &body).await.json();
    assert_eq!(
        b["reasoning"],
        json!({"effort": null, "summary": "auto"}),
        "{b}"
    );

    // What a stateless gateway cannot answer, and malformed input, are 400s naming the member.
    for (body, param) in [
        (json!({"model": "openai"}), "input"),
        (json!({"model": "openai", "input": []}), "input"),
        (
            json!({"model": "openai", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "openai", "input": "hi", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"model": "openai", "input": "hi", "tools": [{"type": "file_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "openai", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].id",
        ),
        (
            json!({"model": "openai", "input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "openai", "input": "hi", "temperature": 3}),
            "temperature",
        ),
    ] {
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let b = r.json();
        assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
        assert_eq!(b["error"]["param"], param, "{body}: {b}");
    }
    let r = env
        .post("/v1/responses", &json!({"model": "nope", "input": "hi"}))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn embeddings_and_models() {
    let env = crate::harness::env_with(
        "  - {alias: gemini-embed, deployments: [{provider: p-gemini, model: gemini-embedding-001}]}\n",
    )
    .await;
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["object"], "list");
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(b["data"][1]["index"], 1);
    let floats = b["data"][0]["embedding"].as_array().unwrap().len();
    assert!(floats > 0);
    let b64 = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": "a", "encoding_format": "base64"}),
        )
        .await
        .json();
    assert_eq!(
        b64["data"][0]["embedding"].as_str().unwrap().len(),
        (4 * floats).div_ceil(3) * 4
    );

    // Gemini takes at most 100 texts a batch: 150 go out in two, and come back as one answer
    // in order.
    let many: Vec<String> = (0..150).map(|i| format!("document number {i}")).collect();
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "gemini-embed", "input": many}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 150);
    let alone = env
        .post(
            "/v1/embeddings",
            &json!({"model": "gemini-embed", "input": "document number 120"}),
        )
        .await
        .json();
    assert_eq!(alone["data"][0]["embedding"], data[120]["embedding"]);

    let models = env.get("/v1/models").await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for kind in crate::harness::KINDS {
        assert!(ids.contains(kind));
    }
    assert_eq!(env.get("/health/live").await.status, 200);
    assert_eq!(env.get("/health/ready").await.status, 200);
}

/// Bedrock's embedding models through InvokeModel, each family in its own body: Titan embeds
/// one text a call (a list goes out in pieces and comes back as one answer, in order), Cohere up
/// to 96 (a longer list in two calls), its tokens counted from the answer's header; both signed.
#[tokio::test]
async fn bedrock_embeds_with_titan_and_cohere() {
    let env = crate::harness::env_with(
        r#"
  - {alias: embed-titan, deployments: [{provider: p-bedrock, model: "amazon.titan-embed-text-v2:0"}]}
  - {alias: embed-cohere, deployments: [{provider: p-bedrock, model: "cohere.embed-english-v3"}]}
"#,
    )
    .await;
    let calls = |stats: &Value| {
        stats["by_endpoint"]["bedrock_embeddings"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = calls(&env.sim_stats().await);

    let texts = ["first text", "second", "the third text of all"];
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed-titan", "input": texts, "dimensions": 256}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    let data = b["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"].as_array().unwrap().len(), 256);
    }
    // The same text embeds the same alone as in the list: the pieces came back in order.
    let alone = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed-titan", "input": texts[1], "dimensions": 256}),
        )
        .await
        .json();
    assert_eq!(alone["data"][0]["embedding"], data[1]["embedding"]);
    // The simulator counts ceil(characters / 4) tokens a text.
    let tokens: u64 = texts.iter().map(|t| t.len().div_ceil(4) as u64).sum();
    assert_eq!(b["usage"]["prompt_tokens"], tokens, "{b}");
    assert_eq!(calls(&env.sim_stats().await) - before, 4);

    let many: Vec<String> = (0..100).map(|i| format!("document number {i}")).collect();
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed-cohere", "input": many, "input_type": "search_query"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["data"].as_array().unwrap().len(), 100);
    assert_eq!(b["data"][99]["index"], 99);
    let tokens: u64 = many.iter().map(|t| t.len().div_ceil(4) as u64).sum();
    assert_eq!(
        b["usage"]["prompt_tokens"], tokens,
        "counted from the header: {}",
        r.text
    );
    assert_eq!(calls(&env.sim_stats().await) - before, 6);

    // A chat model has no embeddings here; Cohere v3 has one size.
    let r = env
        .post("/v1/embeddings", &json!({"model": "bedrock", "input": "x"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("(at 'model')"), "{}", r.text);
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed-cohere", "input": "x", "dimensions": 256}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("(at 'dimensions')"), "{}", r.text);
}

/// The models list and a single model come in the shape of the client that asks: Anthropic's
/// (`ModelInfo`s in pages) when it sends `anthropic-version`, as its SDKs and Claude Code do,
/// else OpenAI's; errors likewise.
#[tokio::test]
async fn models_are_listed_in_the_shape_the_client_speaks() {
    let env = env().await;
    let anthropic = |path: &str, key: &str| {
        env.http
            .get(format!("{}{path}", env.gw.url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let read = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };

    let (status, all) = read(anthropic("/v1/models", KEY).await.unwrap()).await;
    assert_eq!(status, 200, "{all}");
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "model", "{m}");
            assert_eq!(m["display_name"], m["id"], "{m}");
            assert!(m["created_at"].is_string(), "{m}");
            m["id"].as_str().unwrap()
        })
        .collect();
    for kind in KINDS {
        assert!(ids.contains(kind), "{all}");
    }
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], ids[0]);
    assert_eq!(all["last_id"], *ids.last().unwrap());

    // Pages of two, forwards from the first.
    let (_, first) = read(anthropic("/v1/models?limit=2", KEY).await.unwrap()).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let after = first["last_id"].as_str().unwrap();
    let (_, next) = read(
        anthropic(&format!("/v1/models?limit=2&after_id={after}"), KEY)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(next["first_id"], ids[2], "{next}");

    let (status, one) = read(anthropic("/v1/models/anthropic", KEY).await.unwrap()).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], "anthropic");
    assert_eq!(one["type"], "model");
    for (path, key, status, kind) in [
        ("/v1/models/nope", KEY, 404, "not_found_error"),
        ("/v1/models?limit=0", KEY, 400, "invalid_request_error"),
        ("/v1/models", "sk-wrong", 401, "authentication_error"),
    ] {
        let (got, body) = read(anthropic(path, key).await.unwrap()).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert_eq!(body["error"]["type"], kind, "{path}: {body}");
    }

    let one = env.get("/v1/models/openai").await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(
        one.json(),
        json!({"id": "openai", "object": "model", "created": 0, "owned_by": "switchyard"})
    );
    let missing = env.get("/v1/models/nope").await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert!(
        missing.json()["error"]["message"].is_string(),
        "{}",
        missing.text
    );
}

/// A model name the routing rules send to an alias is one a client may look up, as tools that
/// check a model before using it do, and count a prompt's tokens for (Claude Code does before
/// its requests); a name nothing routes is not.
#[tokio::test]
async fn a_model_the_rules_route_can_be_looked_up() {
    let env = crate::harness::env_with_sections(
        "",
        "rules:\n    - {name: gpt5, match: {model: 'gpt-5*'}, route: {alias: openai}}\n    - {name: claude, match: {model: 'claude-opus-*'}, route: {alias: anthropic}}",
        "",
    )
    .await;
    let count = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "How many tokens is this?"}]});
    for model in ["claude-opus-4-8", "gpt-5-mini"] {
        let r = env.post("/v1/messages/count_tokens", &count(model)).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        assert!(r.json()["input_tokens"].as_u64().unwrap() > 0, "{}", r.text);
    }
    let r = env
        .post("/v1/messages/count_tokens", &count("claude-haiku-9"))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let one = env.get("/v1/models/gpt-5-mini").await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.json()["id"], "gpt-5-mini");
    let r = env
        .post("/v1/chat/completions", &chat("gpt-5-mini", "hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(env.get("/v1/models/gpt-4-turbo").await.status, 404);
}

/// A long prompt reaches every kind of provider exactly as the client wrote it, whether it is
/// shared with the client's body (no escapes) or unescaped into a copy that keeps the client's
/// string (both spliced into the provider's request as they are), from a compact or a
/// pretty-printed body, alone or after an agent's tool call and long result, in either ingress.
#[tokio::test]
async fn a_long_prompt_reaches_every_provider_unchanged() {
    let env = echoing("{prompt}").await;
    let plain = "Plain words, <tags> & ünïcödé ✓ 漢字 ".repeat(2_000);
    let escaped = format!("{plain}\n\t\"quoted\" \\ {plain}");
    let bearer = format!("Bearer {KEY}");
    for prompt in [&plain, &escaped] {
        for kind in KINDS {
            // Room for the whole echo (an Anthropic provider needs a limit; the gateway's default
            // would cut it).
            let body = json!({"model": kind, "max_tokens": 100_000,
                "messages": [{"role": "user", "content": prompt}]});
            // An agent's turn: tools, a call and its long result before the prompt (the
            // simulator echoes the last user message; the tool choice keeps it from calling,
            // and the assistant's answer in between from quoting the result instead).
            let agent = json!({"model": kind, "max_tokens": 100_000,
                "messages": [
                    {"role": "user", "content": "Read notes.txt."},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": "{\"path\":\"notes.txt\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": prompt},
                    {"role": "assistant", "content": "Read it."},
                    {"role": "user", "content": prompt}],
                "tools": [{"type": "function", "function": {"name": "read_file",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
                "tool_choice": "none"});
            for raw in [
                serde_json::to_vec(&body).unwrap(),
                serde_json::to_vec_pretty(&body).unwrap(),
                serde_json::to_vec(&agent).unwrap(),
            ] {
                let r = env
                    .post_raw("/v1/chat/completions", raw, &[("authorization", &bearer)])
                    .await;
                assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
                let echoed = &r.json()["choices"][0]["message"]["content"];
                assert!(
                    echoed == prompt.as_str(),
                    "{kind}: the prompt changed ({} characters back of {})",
                    echoed.as_str().map_or(0, |e| e.chars().count()),
                    prompt.chars().count()
                );
            }
        }
        let r = env
            .post_anthropic(&json!({
                "model": "openai",
                "max_tokens": 100_000,
                "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
            }))
            .await;
        assert_eq!(r.status, 200, "{:.300}", r.text);
        assert!(r.json()["content"][0]["text"] == prompt.as_str());
        // An agent's turn in Messages form, to every provider kind.
        for kind in KINDS {
            let r = env
                .post_anthropic(&json!({
                    "model": kind,
                    "max_tokens": 100_000,
                    "tools": [{"name": "read_file", "input_schema": {"type": "object",
                        "properties": {"path": {"type": "string"}}}}],
                    "tool_choice": {"type": "none"},
                    "messages": [
                        {"role": "user", "content": "Read notes.txt."},
                        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                            "name": "read_file", "input": {"path": "notes.txt"}}]},
                        {"role": "user", "content": [{"type": "tool_result",
                            "tool_use_id": "toolu_1", "content": prompt}]},
                        {"role": "assistant", "content": "Read it."},
                        {"role": "user", "content": prompt}],
                }))
                .await;
            assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
            assert!(
                r.json()["content"][0]["text"] == prompt.as_str(),
                "{kind}: the prompt changed"
            );
        }
    }
}

/// A long inline image (and one by URL) reaches every provider kind as the client sent it,
/// from both ingresses: the simulator echoes the images of the last user message.
#[tokio::test]
async fn a_long_inline_image_reaches_every_provider_unchanged() {
    let env = echoing("{images}").await;
    // About 300 KB of base64, every character of its alphabet in it.
    let data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ+/09xyzw".repeat(6_000) + "AA==";
    let url = "https://upload.example.org/photos/cat.png";
    let bearer = format!("Bearer {KEY}");
    for kind in KINDS {
        // Bedrock takes images inline only, and the gateway fetches a URL's image for it
        // (`media.rs`): the URL is left out of what it is sent here.
        let url = if *kind == "bedrock" { None } else { Some(url) };
        let expected = match url {
            Some(url) => format!("data:image/png;base64,{data} {url}"),
            None => format!("data:image/png;base64,{data}"),
        };
        let by_url = |part: Value| url.map(|_| part);
        let mut content = vec![
            json!({"type": "text", "text": "What differs?"}),
            json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}"), "detail": "high"}}),
        ];
        content.extend(by_url(
            json!({"type": "image_url", "image_url": {"url": url}}),
        ));
        let body = json!({"model": kind, "max_tokens": 100_000,
            "messages": [{"role": "user", "content": content}]});
        let compact = serde_json::to_string(&body).unwrap();
        // Also as an encoder that escapes `/` writes it (PHP's does by default).
        let slashes_escaped = compact.replace(&data, &data.replace('/', "\\/"));
        for raw in [compact, slashes_escaped] {
            let r = env
                .post_raw(
                    "/v1/chat/completions",
                    raw.into_bytes(),
                    &[("authorization", &bearer)],
                )
                .await;
            assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
            let echoed = &r.json()["choices"][0]["message"]["content"];
            assert!(
                echoed == expected.as_str(),
                "{kind}: the images changed ({} characters back of {})",
                echoed.as_str().map_or(0, str::len),
                expected.len()
            );
        }
        let mut content = vec![
            json!({"type": "text", "text": "What differs?"}),
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}),
        ];
        content.extend(by_url(
            json!({"type": "image", "source": {"type": "url", "url": url}}),
        ));
        let r = env
            .post_anthropic(&json!({"model": kind, "max_tokens": 100_000,
                "messages": [{"role": "user", "content": content}]}))
            .await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert!(
            r.json()["content"][0]["text"] == expected.as_str(),
            "{kind}: the images changed on the way from the Messages form"
        );
    }
}

/// An agent's tool result holding a screenshot (a computer-use turn from an Anthropic client)
/// reaches the model: as it is for Anthropic, in a user message after the `tool` messages for
/// OpenAI-style providers (whose `tool` messages hold text only), and in the function
/// response's own parts for Gemini. A screenshot by URL has no place in a Gemini function
/// response: the gateway fetches it (see `media.rs`), and one it cannot fetch is refused
/// naming the part, not sent without it.
#[tokio::test]
async fn a_tool_results_screenshot_reaches_the_model() {
    let env = echoing("{images}").await;
    // About 100 KB of base64: long enough to be shared with the client's body.
    let data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ+/09xyzw".repeat(2_000) + "AA==";
    let turn = |image: Value| {
        json!({"model": "", "max_tokens": 1000,
            "tools": [{"name": "screenshot", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "none"},
            "messages": [
                {"role": "user", "content": "What is on my screen?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                        {"type": "text", "text": "1280x800"}, image]}]}]})
    };
    let inline = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}});
    for kind in KINDS {
        let mut body = turn(inline.clone());
        body["model"] = json!(kind);
        let r = env.post_anthropic(&body).await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        let echoed = &r.json()["content"][0]["text"];
        assert!(
            echoed.as_str() == Some(&format!("data:image/png;base64,{data}")),
            "{kind}: the screenshot did not arrive ({} characters back)",
            echoed.as_str().map_or(0, str::len)
        );
    }
    let mut by_url =
        turn(json!({"type": "image", "source": {"type": "url", "url": "https://x.invalid/s.png"}}));
    by_url["model"] = json!("gemini");
    let r = env.post_anthropic(&by_url).await;
    assert_eq!(r.status, 400, "{:.300}", r.text);
    let error = &r.json()["error"];
    assert_eq!(error["type"], "invalid_request_error", "{}", r.text);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("could not fetch")
            && message.contains("messages[2].content[0].content[1]"),
        "{}",
        r.text
    );
}

/// A PDF sent inline reaches every provider kind from both ingresses (an OpenAI `file` part, an
/// Anthropic `document` block): the simulator echoes the documents the model received, with
/// their decoded size. A form a provider has no place for (an OpenAI file id for Anthropic or
/// Gemini, a document by URL for OpenAI) is refused with a 400 naming the part, never sent
/// without it.
#[tokio::test]
async fn a_pdf_reaches_every_provider_from_both_ingresses() {
    let env = echoing("{documents}").await;
    // About 60 KB of PDF: long enough for its base64 to be shared with the client's body.
    let (pdf, data) = pdf_and_base64(1_600);
    let expected = format!("application/pdf:{}", pdf.len());
    for kind in KINDS {
        let r = env
            .post(
                "/v1/chat/completions",
                &json!({"model": kind, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "Summarize the report."},
                    {"type": "file", "file": {"filename": "report.pdf",
                        "file_data": format!("data:application/pdf;base64,{data}")}}]}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            expected.as_str(),
            "{kind}: the PDF did not arrive from the OpenAI form"
        );
        let r = env
            .post_anthropic(&json!({"model": kind, "max_tokens": 1000,
                "messages": [{"role": "user", "content": [
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data},
                        "title": "Report"},
                    {"type": "text", "text": "Summarize the report."}]}]}))
            .await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert_eq!(
            r.json()["content"][0]["text"],
            expected.as_str(),
            "{kind}: the PDF did not arrive from the Messages form"
        );
    }

    // An uploaded file's id means something to OpenAI-style providers only.
    let by_id = |kind: &str| {
        json!({"model": kind, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Summarize the report."},
            {"type": "file", "file": {"file_id": "file-abc123"}}]}]})
    };
    for kind in ["openai", "compat", "azure"] {
        let r = env.post("/v1/chat/completions", &by_id(kind)).await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            "file_id:file-abc123"
        );
    }
    for kind in ["anthropic", "gemini"] {
        let r = env.post("/v1/chat/completions", &by_id(kind)).await;
        assert_eq!(r.status, 400, "{kind}: {:.300}", r.text);
        let error = &r.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{}", r.text);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("file id") && message.contains("messages[0].content[1]"),
            "{kind}: {message}"
        );
    }
    // Chat Completions takes no document by URL.
    let r = env
        .post_anthropic(&json!({"model": "openai", "max_tokens": 1000,
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://x.example/report.pdf"}},
                {"type": "text", "text": "Summarize the report."}]}]}))
        .await;
    assert_eq!(r.status, 400, "{:.300}", r.text);
    assert_eq!(r.json()["type"], "error", "{}", r.text);
    let error = &r.json()["error"];
    assert_eq!(error["type"], "invalid_request_error", "{}", r.text);
    assert!(
        error["message"].as_str().unwrap().contains("by URL"),
        "{}",
        r.text
    );
}

/// An answer that cites a text document reaches an Anthropic client as Anthropic wrote it: an
/// uncited lead-in and the cited claim in blocks of their own, the claim's citations on it,
/// alike whole and streamed; and the answer, citations included, goes back as history.
#[tokio::test]
async fn a_cited_answer_reaches_an_anthropic_client_block_for_block() {
    let env = env().await;
    let question = json!({"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
            "data": "The grass is green. The sky is blue."}, "title": "Facts",
            "citations": {"enabled": true}},
        {"type": "text", "text": "What colour is the grass?"}]});
    let body = json!({"model": "anthropic", "max_tokens": 200, "messages": [question]});
    let r = env.post_anthropic(&body).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let whole = r.json()["content"].clone();
    let blocks = whole.as_array().unwrap();
    assert_eq!(blocks.len(), 2, "a lead-in and a claim: {whole}");
    assert!(blocks[0].get("citations").is_none(), "{whole}");
    assert_eq!(
        blocks[1]["citations"],
        json!([{"type": "char_location", "cited_text": "The grass is green. ", "document_index": 0,
            "document_title": "Facts", "start_char_index": 0, "end_char_index": 20}])
    );

    // Streamed: the same blocks, built as an SDK builds them from the events.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = env.post_anthropic(&streamed).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(streamed_blocks(&r), whole, "{}", r.text);

    // The cited answer sent back as history, citations and all, and the next turn answered.
    let next = json!({"model": "anthropic", "max_tokens": 200, "messages": [
        question, {"role": "assistant", "content": whole},
        {"role": "user", "content": "And the sky?"}]});
    let r = env.post_anthropic(&next).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert!(
        r.json()["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("sky"),
        "{}",
        r.text
    );

    // Claude on Bedrock cites too: asked for the document's citations (Converse's
    // `citations: {enabled: true}`), its `citationsContent` block is the claim's, whole and
    // streamed (citation deltas).
    let mut on_bedrock = body.clone();
    on_bedrock["model"] = json!("bedrock");
    let r = env.post_anthropic(&on_bedrock).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let whole = r.json()["content"].clone();
    let blocks = whole.as_array().unwrap();
    assert_eq!(blocks.len(), 2, "{whole}");
    assert_eq!(
        blocks[1]["citations"],
        json!([{"type": "char_location", "cited_text": "The grass is green. ", "document_index": 0,
            "document_title": "Facts", "start_char_index": 0, "end_char_index": 20}]),
        "{whole}"
    );
    on_bedrock["stream"] = json!(true);
    let r = env.post_anthropic(&on_bedrock).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(streamed_blocks(&r), whole, "{}", r.text);
}

/// An Anthropic stream's content blocks as an SDK builds them from the events: texts joined,
/// citations gathered, a tool call's input fragments joined and read.
fn streamed_blocks(reply: &crate::harness::Reply) -> Value {
    let mut built: Vec<Value> = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    for data in reply.sse_data() {
        let event: Value = serde_json::from_str(&data).unwrap();
        let index = event["index"].as_u64().unwrap_or(0) as usize;
        let delta = &event["delta"];
        match (event["type"].as_str().unwrap(), delta["type"].as_str()) {
            ("content_block_start", _) => {
                assert_eq!(index, built.len(), "{}", reply.text);
                built.push(event["content_block"].clone());
                inputs.push(String::new());
            }
            ("content_block_delta", Some("text_delta")) => {
                let text = format!(
                    "{}{}",
                    built[index]["text"].as_str().unwrap(),
                    delta["text"].as_str().unwrap()
                );
                built[index]["text"] = json!(text);
            }
            ("content_block_delta", Some("citations_delta")) => {
                let block = built[index].as_object_mut().unwrap();
                let list = block.entry("citations").or_insert_with(|| json!([]));
                list.as_array_mut().unwrap().push(delta["citation"].clone());
            }
            ("content_block_delta", Some("input_json_delta")) => {
                inputs[index].push_str(delta["partial_json"].as_str().unwrap());
            }
            ("content_block_delta", Some("thinking_delta")) => {
                let thinking = format!(
                    "{}{}",
                    built[index]["thinking"].as_str().unwrap(),
                    delta["thinking"].as_str().unwrap()
                );
                built[index]["thinking"] = json!(thinking);
            }
            ("content_block_delta", Some("signature_delta")) => {
                built[index]["signature"] = delta["signature"].clone();
            }
            _ => {}
        }
    }
    for (block, input) in built.iter_mut().zip(inputs) {
        if !input.is_empty() {
            block["input"] = serde_json::from_str(&input).unwrap();
        }
    }
    Value::Array(built)
}

/// A server tool (Anthropic's web search) ran at the provider: its call and result blocks reach
/// an Anthropic client whole, streamed alike, and go back to Anthropic as history, where they
/// count as input; other providers get the history without them.
#[tokio::test]
async fn a_server_tools_blocks_reach_an_anthropic_client_and_go_back_as_history() {
    let env = env().await;
    let tools = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]);
    let question = json!({"role": "user", "content": "Latest news on trains"});
    let body =
        json!({"model": "anthropic", "max_tokens": 200, "tools": tools, "messages": [question]});
    let r = env.post_anthropic(&body).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let whole = r.json()["content"].clone();
    let kinds: Vec<&str> = whole
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["server_tool_use", "web_search_tool_result", "text", "text"],
        "{whole}"
    );
    assert_eq!(whole[0]["input"], json!({"query": "Latest news on trains"}));
    assert_eq!(whole[1]["tool_use_id"], whole[0]["id"]);
    assert_eq!(
        whole[3]["citations"][0]["type"],
        "web_search_result_location"
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = env.post_anthropic(&streamed).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let built = streamed_blocks(&r);
    // Ids differ between the two answers; everything else is the same.
    let without_ids = |blocks: &Value| {
        let mut blocks = blocks.clone();
        for block in blocks.as_array_mut().unwrap() {
            block.as_object_mut().unwrap().remove("id");
            block.as_object_mut().unwrap().remove("tool_use_id");
        }
        blocks
    };
    assert_eq!(without_ids(&built), without_ids(&whole), "{}", r.text);

    // The next turn: Anthropic reads the blocks again (the search results are input).
    let history = |with_blocks: bool| {
        let mut answer = whole.as_array().unwrap().clone();
        if !with_blocks {
            answer.drain(..2);
        }
        json!({"model": "anthropic", "max_tokens": 200, "tools": tools, "messages": [
            question, {"role": "assistant", "content": answer},
            {"role": "user", "content": "And buses?"}]})
    };
    let r = env.post_anthropic(&history(true)).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let with_blocks = r.json()["usage"]["input_tokens"].as_u64().unwrap();
    let r = env.post_anthropic(&history(false)).await;
    let without = r.json()["usage"]["input_tokens"].as_u64().unwrap();
    assert!(with_blocks > without, "{with_blocks} <= {without}");
    // A result that answers no call of its turn is the provider's 400, not the gateway's guess.
    let mut orphan = history(true);
    orphan["messages"][1]["content"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let r = env.post_anthropic(&orphan).await;
    assert_eq!(r.status, 400, "{:.300}", r.text);

    // Another provider gets the history without them.
    let mut other = history(true);
    other["model"] = json!("openai");
    let r = env.post_anthropic(&other).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
}

/// Search results (an Anthropic client's RAG results, in its message and in a tool's result)
/// reach an Anthropic provider as the blocks they are, so that its answer cites them by source
/// and title, and every other provider as text the model reads.
#[tokio::test]
async fn search_results_reach_anthropic_as_blocks_and_other_providers_as_text() {
    let env = echoing("{prompt}").await;
    let result = |source: &str, title: &str, text: &str| {
        json!({"type": "search_result", "source": source, "title": title,
            "content": [{"type": "text", "text": text}], "citations": {"enabled": true}})
    };
    let body = |kind: &str| {
        json!({"model": kind, "max_tokens": 300, "messages": [
            {"role": "user", "content": "Search the knowledge base for the sky."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "sky"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                    "content": [result("kb://sky", "Sky", "The sky is blue.")]},
                result("https://kb.example/grass", "Grass", "The grass is green."),
                {"type": "text", "text": "What colours are they?"}]}]})
    };
    let r = env.post_anthropic(&body("anthropic")).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let content = r.json()["content"].clone();
    let text: String = content
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "What colours are they?", "{content}");
    assert_eq!(
        first_citations(&content),
        json!([
            {"type": "search_result_location", "cited_text": "The sky is blue.",
                "search_result_index": 0, "source": "kb://sky", "title": "Sky",
                "start_block_index": 0, "end_block_index": 1},
            {"type": "search_result_location", "cited_text": "The grass is green.",
                "search_result_index": 1, "source": "https://kb.example/grass", "title": "Grass",
                "start_block_index": 0, "end_block_index": 1}
        ])
    );

    others_read(
        &env,
        body,
        "Grass\nhttps://kb.example/grass\n\nThe grass is green.",
    )
    .await;
}

/// A document of the client's own chunks (a `content` source) reaches an Anthropic provider
/// as it is, so that its answer cites a chunk by index, and every other provider as a
/// plain-text document of its chunks.
#[tokio::test]
async fn a_custom_content_document_reaches_every_provider() {
    let env = echoing("{prompt}").await;
    let body = |kind: &str| {
        json!({"model": kind, "max_tokens": 300, "messages": [{"role": "user", "content": [
            {"type": "document", "title": "Facts", "citations": {"enabled": true},
                "source": {"type": "content", "content": [
                    {"type": "text", "text": "The grass is green."},
                    {"type": "text", "text": "The sky is blue."}]}},
            {"type": "text", "text": "What colours are they?"}]}]})
    };
    let r = env.post_anthropic(&body("anthropic")).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(
        first_citations(&r.json()["content"]),
        json!([{"type": "content_block_location", "cited_text": "The grass is green.",
            "document_index": 0, "document_title": "Facts", "start_block_index": 0,
            "end_block_index": 1}])
    );
    others_read(&env, body, "The grass is green.\nThe sky is blue.").await;
}

/// An Anthropic client's `anthropic-beta` and `anthropic-version` headers reach an Anthropic
/// provider unchanged (Claude Code turns features on with them, and a body field of a beta
/// feature is refused without its header); the gateway's own version goes when the client
/// speaks OpenAI.
#[tokio::test]
async fn an_anthropic_clients_beta_and_version_headers_reach_anthropic() {
    let env = env().await;
    let body = json!({"model": "anthropic", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}]});
    let r = env
        .post_with(
            "/v1/messages",
            &body,
            &[
                ("x-api-key", KEY),
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "interleaved-thinking-2025-05-14"),
                ("anthropic-beta", "context-management-2025-06-27"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = env
        .post_with(
            "/v1/messages",
            &streamed,
            &[
                ("x-api-key", KEY),
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "files-api-2025-04-14"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let r = env
        .post("/v1/chat/completions", &chat("anthropic", "hello"))
        .await;
    assert_eq!(r.status, 200, "{:.300}", r.text);

    let stats = env.sim_stats().await;
    let log: Vec<&Value> = stats["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["provider_kind"] == "anthropic" && e["endpoint"] == "chat")
        .collect();
    assert_eq!(log.len(), 3, "{stats}");
    assert_eq!(
        log[0]["anthropic_beta"],
        "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    );
    assert_eq!(log[0]["anthropic_version"], "2023-06-01");
    assert_eq!(log[1]["anthropic_beta"], "files-api-2025-04-14");
    assert!(log[2].get("anthropic_beta").is_none(), "{}", log[2]);
    assert_eq!(log[2]["anthropic_version"], "2023-06-01");
}

/// The citations of an answer's first cited block.
fn first_citations(content: &Value) -> Value {
    content
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b.get("citations"))
        .cloned()
        .unwrap_or_else(|| panic!("no citations: {content}"))
}

/// Every provider kind but Anthropic answers `body` (the simulator echoing the prompt) with
/// `text` in its answer: the model read it.
async fn others_read(env: &Env, body: impl Fn(&str) -> Value, text: &str) {
    for kind in ["openai", "compat", "azure", "gemini"] {
        let r = env.post_anthropic(&body(kind)).await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        let answer = r.json()["content"][0]["text"].as_str().unwrap().to_owned();
        assert!(answer.contains(text), "{kind}: {answer}");
    }
}

/// `count_tokens` answers what an Anthropic provider counts for the prompt (the same figure
/// its answer then reports as input), the client's beta headers included, and the gateway's
/// own estimate where the provider has no counting endpoint; errors come in Anthropic's shape.
#[tokio::test]
async fn count_tokens_asks_anthropic_and_bedrock_and_estimates_for_other_providers() {
    let env = env().await;
    let prompt = |model: &str| {
        json!({"model": model, "system": "Be brief.",
            "messages": [{"role": "user", "content": "How many tokens is this question, roughly?"}]})
    };
    let count = |body: Value, key: &'static str| {
        let env = &env;
        async move {
            env.post_with(
                "/v1/messages/count_tokens",
                &body,
                &[
                    ("x-api-key", key),
                    ("anthropic-version", "2023-06-01"),
                    ("anthropic-beta", "token-counting-2024-11-01"),
                ],
            )
            .await
        }
    };
    let r = count(prompt("anthropic"), KEY).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let counted = r.json()["input_tokens"].as_u64().unwrap();
    let mut answered = prompt("anthropic");
    answered["max_tokens"] = json!(20);
    let r = env.post_anthropic(&answered).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(r.json()["usage"]["input_tokens"].as_u64(), Some(counted));
    let stats = env.sim_stats().await;
    let asked = stats["log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "count_tokens")
        .unwrap_or_else(|| panic!("the provider was not asked: {stats}"));
    assert_eq!(asked["anthropic_beta"], "token-counting-2024-11-01");

    // Bedrock counts too (its CountTokens, signed like its answers), and its count is the
    // answer's.
    let r = count(prompt("bedrock"), KEY).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    let counted = r.json()["input_tokens"].as_u64().unwrap();
    let mut answered = prompt("bedrock");
    answered["max_tokens"] = json!(20);
    let r = env.post_anthropic(&answered).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(r.json()["usage"]["input_tokens"].as_u64(), Some(counted));
    let stats = env.sim_stats().await;
    assert!(
        stats["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["endpoint"] == "count_tokens"
                && e["model"] == "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "Bedrock was not asked for the profile's foundation model: {stats}"
    );

    for kind in ["openai", "gemini"] {
        let r = count(prompt(kind), KEY).await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert!(
            r.json()["input_tokens"].as_u64().unwrap() > 5,
            "{kind}: {}",
            r.text
        );
    }

    for (body, key, status, kind) in [
        (prompt("no-such-model"), KEY, 404, "not_found_error"),
        (
            json!({"model": "anthropic"}),
            KEY,
            400,
            "invalid_request_error",
        ),
        (json!([1, 2]), KEY, 400, "invalid_request_error"),
        (prompt("anthropic"), "sk-wrong", 401, "authentication_error"),
    ] {
        let r = count(body.clone(), key).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.json()["type"], "error", "{}", r.text);
        assert_eq!(r.json()["error"]["type"], kind, "{}", r.text);
    }

    // A provider that fails to count leaves the gateway's estimate, not an error.
    env.fault("claude-sonnet-4-5", "status=500", Some(1)).await;
    let r = count(prompt("anthropic"), KEY).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 5, "{}", r.text);
}

/// `POST /v1/responses/input_tokens` (the SDK's `responses.input_tokens.count`) counts as the
/// Messages endpoint does: Anthropic's count for a Claude deployment, the same figure its answer
/// then reports, and the gateway's estimate for others. Stored responses are not kept, and
/// asking for one says so.
#[tokio::test]
async fn responses_input_tokens_are_counted_and_unknown_responses_are_not_found() {
    let env = env().await;
    let prompt = |model: &str| {
        json!({"model": model, "instructions": "Be brief.",
            "input": "How many tokens is this question, roughly?"})
    };
    let r = env
        .post("/v1/responses/input_tokens", &prompt("anthropic"))
        .await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(r.json()["object"], "response.input_tokens");
    let counted = r.json()["input_tokens"].as_u64().unwrap();
    let r = env.post("/v1/responses", &prompt("anthropic")).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(r.json()["usage"]["input_tokens"].as_u64(), Some(counted));
    let r = env
        .post("/v1/responses/input_tokens", &prompt("openai"))
        .await;
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 5, "{}", r.text);
    let r = env
        .post(
            "/v1/responses/input_tokens",
            &json!({"model": "openai", "input": 5}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "input", "{}", r.text);

    for path in [
        "/v1/responses/resp_123",
        "/v1/responses/resp_123/input_items",
    ] {
        let r = env.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "not_found", "{}", r.text);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("No response found"), "{message}");
    }
}

/// An agent's tool fetched a PDF: the document in the Anthropic tool result reaches every
/// provider (in the result for Anthropic, in a user message after the `tool` message for
/// OpenAI-style providers, in the function response's parts for Gemini), and a URL, which only
/// Anthropic fetches, is refused by the others naming the part.
#[tokio::test]
async fn a_tool_results_pdf_reaches_every_provider() {
    let env = echoing("{documents}").await;
    let (pdf, data) = pdf_and_base64(400);
    let body = |kind: &str, source: Value| {
        json!({"model": kind, "max_tokens": 1000, "messages": [
            {"role": "user", "content": "Summarize this quarter's report."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "fetch_report", "input": {"quarter": 3}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "Q3 report attached."},
                {"type": "document", "source": source, "title": "q3.pdf"}]}]}]})
    };
    let inline = json!({"type": "base64", "media_type": "application/pdf", "data": data});
    for kind in KINDS {
        let r = env.post_anthropic(&body(kind, inline.clone())).await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert_eq!(
            r.json()["content"][0]["text"],
            format!("application/pdf:{}", pdf.len()),
            "{kind}: the tool result's PDF did not arrive"
        );
    }
    let url = json!({"type": "url", "url": "https://x.example/q3.pdf"});
    let r = env.post_anthropic(&body("anthropic", url.clone())).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    assert_eq!(r.json()["content"][0]["text"], "https://x.example/q3.pdf");
    for kind in ["openai", "gemini"] {
        let r = env.post_anthropic(&body(kind, url.clone())).await;
        assert_eq!(r.status, 400, "{kind}: {:.300}", r.text);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("messages[2].content[0].content[1]"),
            "{kind}: {message}"
        );
    }
}

/// A PDF of `objects` catalog lines (36 bytes each) and its base64 text.
fn pdf_and_base64(objects: usize) -> (Vec<u8>, String) {
    use base64::Engine;
    let pdf = [
        &b"%PDF-1.4\n"[..],
        &b"1 0 obj << /Type /Catalog >> endobj\n".repeat(objects),
        b"%%EOF\n",
    ]
    .concat();
    let data = base64::engine::general_purpose::STANDARD.encode(&pdf);
    (pdf, data)
}

/// The gateway in front of a simulator whose every reply is `reply` (a scripted reply, such as
/// `{prompt}`, which echoes what the provider received).
async fn echoing(reply: &str) -> Env {
    let sim = start_sim(SimConfig {
        replies: vec![ReplyRule::new("*", reply)],
        ..SimConfig::default()
    })
    .await;
    let gw = Gateway::start(&standard_config(&sim.base_url(), "")).await;
    Env {
        sim,
        gw,
        http: reqwest::Client::new(),
    }
}

/// A thinking model's history (OpenAI-style `reasoning_content`; Anthropic thinking and
/// redacted thinking blocks before a tool call) goes to every provider kind, and the turn after
/// it is answered.
#[tokio::test]
async fn a_thinking_models_history_reaches_every_provider() {
    let env = echoing("{prompt}").await;
    let bearer = format!("Bearer {KEY}");
    for kind in KINDS {
        let body = json!({"model": kind, "messages": [
            {"role": "user", "content": "How many primes below 30?"},
            {"role": "assistant", "content": "Ten.",
                "reasoning_content": "2, 3, 5, 7, 11, 13, 17, 19, 23, 29: \"ten\" of them."},
            {"role": "user", "content": "And below 50?"}]});
        let r = env
            .post_raw(
                "/v1/chat/completions",
                serde_json::to_vec(&body).unwrap(),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            "And below 50?",
            "{kind}"
        );
        let r = env
            .post_anthropic(&json!({"model": kind, "max_tokens": 1000,
                "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                    "properties": {"city": {"type": "string"}}}}],
                "tool_choice": {"type": "none"},
                "messages": [
                    {"role": "user", "content": "Umbrella in Paris?"},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "I need the forecast.", "signature": "EqQBCgIYAhIM"},
                        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Rain after 3pm."}]},
                    {"role": "assistant", "content": "Take one."},
                    {"role": "user", "content": "Thanks, and tomorrow?"}]}))
            .await;
        assert_eq!(r.status, 200, "{kind}: {:.300}", r.text);
        assert_eq!(
            r.json()["content"][0]["text"],
            "Thanks, and tomorrow?",
            "{kind}"
        );
    }
}

/// Gemini 3 signs its function calls and refuses a next step whose calls come back unsigned
/// (the simulator does as the API does, and takes the value Google documents for calls Gemini
/// did not make). The signature survives a tool loop from every client:
/// in the call's `extra_content` on Chat Completions, in a reasoning item before the call on
/// the Responses API, in a redacted thinking block before the call on Messages, whole or
/// streamed.
#[tokio::test]
async fn gemini_3_signatures_survive_a_tool_loop_from_every_client() {
    let env = crate::harness::env_with(
        "  - {alias: gemini3, deployments: [{provider: p-gemini, model: gemini-3-flash-preview}]}",
    )
    .await;
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});

    // Chat Completions.
    let body = json!({"model": "gemini3", "messages": [question], "tools": [weather_tool()]});
    let b = env.post("/v1/chat/completions", &body).await.json();
    let message = b["choices"][0]["message"].clone();
    let call = &message["tool_calls"][0];
    assert!(
        call["extra_content"]["google"]["thought_signature"].is_string(),
        "{b}"
    );
    let next = json!({"model": "gemini3", "tools": [weather_tool()], "messages": [question, message,
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"}]});
    let r = env.post("/v1/chat/completions", &next).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);
    // A client that dropped the signature (or a turn another provider answered) still goes
    // on: the call gets the value Google documents for calls Gemini did not make, where Gemini
    // 3 would refuse it unsigned.
    let mut unsigned = next.clone();
    unsigned["messages"][1]["tool_calls"][0]
        .as_object_mut()
        .unwrap()
        .remove("extra_content");
    let r = env.post("/v1/chat/completions", &unsigned).await;
    assert_eq!(r.status, 200, "{:.300}", r.text);

    // The Responses API, whole and streamed.
    for stream in [false, true] {
        let body = json!({"model": "gemini3", "input": [question], "tools": [responses_tool()],
            "stream": stream});
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{:.300}", r.text);
        let output = if stream {
            responses_stream(&r).1["output"].clone()
        } else {
            r.json()["output"].clone()
        };
        assert_eq!(output[0]["type"], "reasoning", "{output}");
        let call = output
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["type"] == "function_call")
            .unwrap()
            .clone();
        let mut input = vec![question.clone()];
        input.extend(output.as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18 degrees"}));
        let next = json!({"model": "gemini3", "input": input, "tools": [responses_tool()]});
        let r = env.post("/v1/responses", &next).await;
        assert_eq!(r.status, 200, "stream={stream}: {:.300}", r.text);
        assert!(r.text.contains("18 degrees"), "{:.300}", r.text);

        // Messages.
        let tool = json!({"name": "get_weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}});
        let body = json!({"model": "gemini3", "max_tokens": 100, "tools": [tool],
            "stream": stream, "messages": [question]});
        let r = env.post_anthropic(&body).await;
        assert_eq!(r.status, 200, "{:.300}", r.text);
        let content = if stream {
            streamed_blocks(&r)
        } else {
            r.json()["content"].clone()
        };
        assert_eq!(content[0]["type"], "redacted_thinking", "{content}");
        let call = content[1].clone();
        assert_eq!(call["type"], "tool_use", "{content}");
        let next = json!({"model": "gemini3", "max_tokens": 100, "tools": [tool], "messages": [
            question, {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 degrees"}]}]});
        let r = env.post_anthropic(&next).await;
        assert_eq!(r.status, 200, "stream={stream}: {:.300}", r.text);
        assert!(r.text.contains("18 degrees"), "{:.300}", r.text);
    }
}

#[tokio::test]
async fn responses_are_kept_for_previous_response_id_item_references_and_reading() {
    let env = env().await;
    for kind in KINDS {
        // A call, then only its output with `previous_response_id`: the call and the question
        // come back from the kept response (Anthropic and Gemini refuse an output without them).
        let body = json!({"model": kind, "input": "What is the weather in Paris?",
            "tools": [responses_tool()], "tool_choice": "required"});
        let first = env.post("/v1/responses", &body).await.json();
        assert_eq!(first["store"], true, "{kind}: {first}");
        let id = first["id"].as_str().unwrap().to_owned();
        let call = output_item(&first, "function_call");
        let next = json!({"model": kind, "previous_response_id": id, "tools": [responses_tool()],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "18 degrees"}]});
        let r = env.post("/v1/responses", &next).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let second = r.json();
        let text = second["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("18 degrees"), "{kind}: {second}");
        // It says which response it continued; one that continued none says null.
        assert_eq!(second["previous_response_id"], id, "{kind}: {second}");
        assert_eq!(first["previous_response_id"], Value::Null, "{kind}");
        assert!(
            second["usage"]["input_tokens"].as_u64() > first["usage"]["input_tokens"].as_u64(),
            "{kind}: the history was sent: {second}"
        );
        // The same with the call named by an item reference instead, streamed.
        let by_reference = json!({"model": kind, "stream": true, "tools": [responses_tool()],
        "input": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "item_reference", "id": call["id"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "19 degrees"}
        ]});
        let (names, last) = responses_stream(&env.post("/v1/responses", &by_reference).await);
        assert_eq!(
            names.last().unwrap(),
            "response.completed",
            "{kind}: {names:?}"
        );
        let text = last["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("19 degrees"), "{kind}: {last}");
        // A streamed answer is kept too, and chains on.
        let third = json!({"model": kind, "previous_response_id": last["id"], "input": "Thanks",
            "stream": true});
        let (names, third) = responses_stream(&env.post("/v1/responses", &third).await);
        assert_eq!(
            names.last().unwrap(),
            "response.completed",
            "{kind}: {names:?}"
        );
        assert_eq!(third["previous_response_id"], last["id"], "{kind}: {third}");
        let kept = env
            .get(&format!("/v1/responses/{}", third["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            kept.json()["previous_response_id"],
            last["id"],
            "{kind}: {}",
            kept.text
        );
    }

    // The kept answers show in the metrics.
    let metrics = env.get("/metrics").await.text;
    let kept = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(kept("switchyard_kept_responses") >= 15);
    assert!(kept("switchyard_kept_responses_bytes") > 0);

    // Reading a kept response, its input items, and deleting it.
    let body = json!({"model": "openai", "instructions": "Be brief.", "input": "Hello there"});
    let made = env.post("/v1/responses", &body).await.json();
    let id = made["id"].as_str().unwrap();
    let got = env.get(&format!("/v1/responses/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json(), made);
    // Without the version too, as a client whose base URL has none asks.
    let got = env.get(&format!("/responses/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json(), made);
    assert_eq!(
        env.get(&format!("/responses/{id}/input_items"))
            .await
            .status,
        200
    );
    let items = env
        .get(&format!("/v1/responses/{id}/input_items"))
        .await
        .json();
    assert_eq!(items["object"], "list");
    assert_eq!(
        items["data"][0],
        json!({"type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": "Hello there"}],
            "id": format!("in_{}_0", id.strip_prefix("resp_").unwrap())}),
        "{items}"
    );
    assert_eq!(items["first_id"], items["data"][0]["id"]);
    // Paged as OpenAI pages it: newest first unless asked, 20 at a time, after an id.
    let three = env
        .post(
            "/v1/responses",
            &json!({"model": "openai", "input": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {"role": "user", "content": "three"}]}),
        )
        .await
        .json();
    let three = three["id"].as_str().unwrap();
    let page = |query: &str| {
        let env = &env;
        let path = format!("/v1/responses/{three}/input_items?{query}");
        async move { env.get(&path).await }
    };
    let texts = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["content"][0]["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest = page("").await.json();
    assert_eq!(texts(&newest), ["three", "two", "one"], "{newest}");
    assert_eq!(newest["data"][1]["content"][0]["annotations"], json!([]));
    let first = page("order=asc&limit=2").await.json();
    assert_eq!(texts(&first), ["one", "two"]);
    assert_eq!(first["has_more"], true);
    let rest = page(&format!(
        "order=asc&after={}",
        first["last_id"].as_str().unwrap()
    ))
    .await
    .json();
    assert_eq!(texts(&rest), ["three"]);
    assert_eq!(rest["has_more"], false);
    assert_eq!(page("limit=0").await.status, 400);
    // A finished response cannot be cancelled (only background ones can), and a path that is
    // no kept response's is not served, said as such.
    let cancel = env
        .post(&format!("/v1/responses/{three}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.status, 400, "{}", cancel.text);
    assert!(cancel.text.contains("background"), "{}", cancel.text);
    let compact = env
        .post("/v1/responses/compact", &json!({"model": "openai"}))
        .await;
    assert_eq!(compact.status, 404, "{}", compact.text);
    assert!(
        !compact.text.contains("No response found"),
        "{}",
        compact.text
    );
    // Counted input tokens include the kept conversation too.
    let count = |body: Value| {
        let env = &env;
        async move {
            let r = env.post("/v1/responses/input_tokens", &body).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["input_tokens"].as_u64().unwrap()
        }
    };
    let alone = count(json!({"model": "openai", "input": "Go on"})).await;
    let after =
        count(json!({"model": "openai", "input": "Go on", "previous_response_id": id})).await;
    assert!(after > alone, "{after} > {alone}");
    // Another caller sees none of it.
    let key = env
        .post("/admin/keys", &json!({"name": "other"}))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        env.get_key(&format!("/v1/responses/{id}"), &key)
            .await
            .status,
        404
    );
    let r = env
        .post_key(
            "/v1/responses",
            &json!({"model": "openai", "previous_response_id": id, "input": "Go on"}),
            &key,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "previous_response_id");
    // OpenAI's own code, on which clients send the whole conversation instead.
    assert_eq!(
        r.json()["error"]["code"],
        "previous_response_not_found",
        "{}",
        r.text
    );
    let deleted = env
        .http
        .delete(format!("{}/v1/responses/{id}", env.gw.url))
        .header("authorization", format!("Bearer {}", crate::harness::KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(
        deleted,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    let r = env.get(&format!("/v1/responses/{id}")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");

    // `store: false` keeps nothing, and says so.
    let body = json!({"model": "openai", "input": "Hello", "store": false});
    let made = env.post("/v1/responses", &body).await.json();
    assert_eq!(made["store"], false);
    let id = made["id"].as_str().unwrap();
    assert_eq!(env.get(&format!("/v1/responses/{id}")).await.status, 404);
    for (body, param) in [
        (
            json!({"model": "openai", "previous_response_id": id, "input": "Go on"}),
            "previous_response_id",
        ),
        (
            json!({"model": "openai", "input": [{"type": "item_reference", "id": "msg_nothing_0"}]}),
            "input[0].id",
        ),
        (
            json!({"model": "openai", "previous_response_id": 7, "input": "Go on"}),
            "previous_response_id",
        ),
    ] {
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.json()["error"]["param"], param, "{body}: {}", r.text);
    }
}

/// Log probabilities an OpenAI client asks for come back from every provider that speaks
/// OpenAI's format (OpenAI, a compatible server, Azure), whole and chunk by chunk, as the
/// provider wrote them; the other providers' formats have none, and their answers say `null`.
#[tokio::test]
async fn log_probabilities_reach_an_openai_client_from_openai_form_providers() {
    let env = env().await;
    for kind in KINDS {
        let openai_form = matches!(*kind, "openai" | "compat" | "azure");
        let mut body = chat(kind, "Hello there");
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(2);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        let text = b["choices"][0]["message"]["content"].as_str().unwrap();
        let logprobs = &b["choices"][0]["logprobs"];
        if openai_form {
            let tokens = logprobs["content"].as_array().unwrap();
            let joined: String = tokens
                .iter()
                .map(|t| t["token"].as_str().unwrap())
                .collect();
            assert_eq!(joined, text, "{kind}");
            for token in tokens {
                let top = token["top_logprobs"].as_array().unwrap();
                assert_eq!(top.len(), 2, "{kind}: {token}");
                assert_eq!(top[0]["logprob"], token["logprob"], "{kind}");
            }
            assert!(b.get("logprobs").is_none(), "{kind}: only in the choice");
        } else {
            assert!(logprobs.is_null(), "{kind}: {logprobs}");
        }

        body["stream"] = json!(true);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}");
        let data = r.sse_data();
        let (mut streamed, mut tokens) = (String::new(), String::new());
        for chunk in &data[..data.len() - 1] {
            let chunk: Value = serde_json::from_str(chunk).unwrap();
            let choice = &chunk["choices"][0];
            let content = choice["delta"]["content"].as_str().unwrap_or_default();
            streamed.push_str(content);
            match choice["logprobs"]["content"].as_array() {
                Some(entries) => {
                    assert!(openai_form && !content.is_empty(), "{kind}: {chunk}");
                    let chunk_tokens: String = entries
                        .iter()
                        .map(|t| t["token"].as_str().unwrap())
                        .collect();
                    assert_eq!(chunk_tokens, content, "{kind}");
                    tokens.push_str(&chunk_tokens);
                }
                None => assert!(choice["logprobs"].is_null(), "{kind}: {chunk}"),
            }
        }
        assert_eq!(streamed, text, "{kind}");
        assert_eq!(tokens, if openai_form { text } else { "" }, "{kind}");
    }
}

/// OpenAI's `allowed_tools` choice, from Chat Completions and the Responses API, reaches every
/// provider as the tools it allows: the model calls one of those (the simulator calls the first
/// tool it is offered, so without the cut it would call `get_time`), and allowing none leaves
/// it none to call.
#[tokio::test]
async fn allowed_tools_reach_every_provider_as_the_tools_they_allow() {
    let env = env().await;
    let function = |name: &str| {
        json!({"type": "function", "function": {"name": name, "description": name,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    };
    let chat_allowed = |names: &[&str]| {
        let tools: Vec<Value> = names
            .iter()
            .map(|n| json!({"type": "function", "function": {"name": n}}))
            .collect();
        json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": tools}})
    };
    for kind in KINDS {
        for (allowed, called) in [(vec!["get_weather"], Some("get_weather")), (vec![], None)] {
            let mut body = chat(kind, "Weather in Oslo?");
            body["tools"] = json!([function("get_time"), function("get_weather")]);
            body["tool_choice"] = chat_allowed(&allowed);
            let r = env.post("/v1/chat/completions", &body).await;
            assert_eq!(r.status, 200, "{kind}: {}", r.text);
            let b = r.json();
            let calls = &b["choices"][0]["message"]["tool_calls"];
            match called {
                Some(name) => {
                    assert_eq!(
                        b["choices"][0]["finish_reason"], "tool_calls",
                        "{kind}: {b}"
                    );
                    assert_eq!(calls[0]["function"]["name"], name, "{kind}");
                    assert_eq!(calls.as_array().unwrap().len(), 1, "{kind}");
                }
                None => {
                    assert_eq!(b["choices"][0]["finish_reason"], "stop", "{kind}: {b}");
                    assert!(calls.is_null(), "{kind}: {b}");
                }
            }

            let tools: Vec<Value> = ["get_time", "get_weather"]
                .iter()
                .map(|n| json!({"type": "function", "name": n, "parameters": {"type": "object"}}))
                .collect();
            let allowed_items: Vec<Value> = allowed
                .iter()
                .map(|n| json!({"type": "function", "name": n}))
                .collect();
            let body = json!({"model": kind, "input": "Weather in Oslo?", "tools": tools,
                "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": allowed_items}});
            let r = env.post("/v1/responses", &body).await;
            assert_eq!(r.status, 200, "{kind}: {}", r.text);
            let output = r.json()["output"].clone();
            let names: Vec<&str> = output
                .as_array()
                .unwrap()
                .iter()
                .filter(|item| item["type"] == "function_call")
                .map(|item| item["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                called.into_iter().collect::<Vec<_>>(),
                "{kind}: {output}"
            );
        }
    }
    // A tool that is not offered is named in the error.
    let mut body = chat("openai", "hi");
    body["tools"] = json!([function("get_time")]);
    body["tool_choice"] = chat_allowed(&["launch"]);
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["error"]["param"],
        "tool_choice.allowed_tools.tools[0].function.name"
    );
}

/// An OpenAI client's temperature goes up to 2; Anthropic's and Bedrock's Converse take at most
/// 1 (the simulator refuses more, as Bedrock does): every provider answers the highest.
#[tokio::test]
async fn the_highest_temperature_an_openai_client_may_ask_reaches_every_provider() {
    let env = env().await;
    for kind in KINDS {
        let mut body = chat(kind, "Hello there");
        body["temperature"] = json!(2.0);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
    }
}

/// Claude's thinking, on Anthropic's API and on Bedrock, reaches every client: an Anthropic
/// client's thinking block with its signature (whole and streamed, and sent back in a tool
/// loop), an OpenAI client's
/// `reasoning_content`, a Responses client's reasoning item. An OpenAI client's tool loop with
/// a reasoning effort goes on after the tools (it cannot send Claude's signed thinking back,
/// so the effort's thinking is left off there, where Claude would refuse it); so does an
/// Anthropic client's turn that comes back without its signed thinking.
#[tokio::test]
async fn claudes_thinking_reaches_every_client_and_tool_loops_go_on() {
    let env = env().await;
    // Claude on Anthropic's API and on Bedrock's Converse.
    for kind in ["anthropic", "bedrock"] {
        let weather = json!({"name": "get_weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}});
        let thinking = json!({"type": "enabled", "budget_tokens": 1024});
        let ask = json!({"model": kind, "max_tokens": 2000, "thinking": thinking,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]});

        let r = env.post_anthropic(&ask).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        assert_eq!(b["content"][0]["type"], "thinking", "{b}");
        assert!(
            b["content"][0]["thinking"]
                .as_str()
                .unwrap()
                .contains("sky"),
            "{b}"
        );
        let signature = b["content"][0]["signature"].as_str().unwrap();
        assert!(!signature.is_empty());
        assert_eq!(b["content"][1]["type"], "text", "{b}");

        let mut streamed = ask.clone();
        streamed["stream"] = json!(true);
        let r = env.post_anthropic(&streamed).await;
        let blocks = streamed_blocks(&r);
        assert_eq!(blocks[0]["type"], "thinking", "{blocks}");
        assert_eq!(
            blocks[0]["thinking"], b["content"][0]["thinking"],
            "{blocks}"
        );
        assert!(
            !blocks[0]["signature"].as_str().unwrap().is_empty(),
            "{blocks}"
        );
        assert_eq!(blocks[1]["type"], "text", "{blocks}");

        // A tool loop: the turn's thinking goes back with it, or Claude refuses.
        let mut first = ask.clone();
        first["tools"] = json!([weather]);
        first["messages"] = json!([{"role": "user", "content": "Weather in Oslo?"}]);
        let turn = env.post_anthropic(&first).await.json();
        assert_eq!(turn["stop_reason"], "tool_use", "{turn}");
        let call = turn["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap();
        let result = json!({"role": "user", "content": [{"type": "tool_result",
            "tool_use_id": call["id"], "content": "5 degrees"}]});
        let mut next = first.clone();
        next["messages"] = json!([first["messages"][0], {"role": "assistant", "content": turn["content"]}, result]);
        let r = env.post_anthropic(&next).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        assert_eq!(r.json()["content"][0]["type"], "thinking");
        let without: Vec<Value> = turn["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] != "thinking")
            .cloned()
            .collect();
        // A turn that comes back without its signed thinking (another provider answered it, a
        // fallback, a client that dropped it) goes on without thinking: Claude would refuse
        // it with thinking on, and the conversation could never go on.
        next["messages"][1]["content"] = json!(without);
        let r = env.post_anthropic(&next).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        assert_ne!(
            r.json()["content"][0]["type"],
            "thinking",
            "{kind}: {}",
            r.text
        );

        // An OpenAI client: the thinking as `reasoning_content`, whole and streamed.
        let mut body = chat(kind, "Why is the sky blue?");
        body["reasoning_effort"] = json!("low");
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let reasoning = r.json()["choices"][0]["message"]["reasoning_content"].clone();
        assert_eq!(reasoning, b["content"][0]["thinking"], "{kind}: {}", r.text);
        body["stream"] = json!(true);
        let r = env.post("/v1/chat/completions", &body).await;
        let streamed_reasoning: String = r.sse_data()[..r.sse_data().len() - 1]
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter_map(|c| {
                c["choices"][0]["delta"]["reasoning_content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(Value::String(streamed_reasoning), reasoning);

        // Its tool loop with the effort on: the call, then the answer from the tool's result.
        let function = json!({"type": "function", "function": {"name": "get_weather",
            "parameters": weather["input_schema"]}});
        let mut body = chat(kind, "Weather in Oslo?");
        body["reasoning_effort"] = json!("low");
        body["tools"] = json!([function]);
        let turn = env.post("/v1/chat/completions", &body).await.json();
        let message = turn["choices"][0]["message"].clone();
        assert_eq!(turn["choices"][0]["finish_reason"], "tool_calls", "{turn}");
        body["messages"] = json!([body["messages"][0],
            {"role": "assistant", "content": null, "tool_calls": message["tool_calls"]},
            {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "5 degrees"}]);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        assert!(
            r.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("5 degrees"),
            "{}",
            r.text
        );

        // A Responses client asking for a summary gets the thinking as its reasoning item.
        let body = json!({"model": kind, "input": "Why is the sky blue?",
            "reasoning": {"effort": "low", "summary": "auto"}});
        let r = env.post("/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let output = r.json()["output"].clone();
        assert_eq!(output[0]["type"], "reasoning", "{output}");
        assert_eq!(
            output[0]["summary"][0]["text"], b["content"][0]["thinking"],
            "{output}"
        );
        assert_eq!(output[1]["type"], "message", "{output}");
    }
}

/// `n` answers, whole: every provider whose format has several (OpenAI's `n`, Gemini's
/// `candidateCount`) returns that many choices, each its own, with usage for all; the others'
/// deployments are not chosen for such a request, and the error says why. Streams carry one.
#[tokio::test]
async fn several_choices_come_back_from_providers_that_have_them() {
    let env = env().await;
    for kind in KINDS {
        let mut body = chat(kind, "Hello there");
        body["n"] = json!(3);
        body["max_tokens"] = json!(9);
        let r = env.post("/v1/chat/completions", &body).await;
        if matches!(*kind, "anthropic" | "bedrock") {
            assert_eq!(r.status, 400, "{kind}: {}", r.text);
            let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains("several choices"), "{kind}: {message}");
            continue;
        }
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        let choices = b["choices"].as_array().unwrap();
        let texts: Vec<&str> = choices
            .iter()
            .map(|c| c["message"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(texts.len(), 3, "{kind}: {b}");
        for (i, choice) in choices.iter().enumerate() {
            assert_eq!(choice["index"], i, "{kind}");
            assert_eq!(choice["finish_reason"], "length", "{kind}");
        }
        assert!(
            texts[0] != texts[1] && texts[1] != texts[2],
            "{kind}: {texts:?}"
        );
        assert_eq!(b["usage"]["completion_tokens"], 27, "{kind}: {b}");
    }
    let mut body = chat("openai", "Hello there");
    body["n"] = json!(2);
    body["stream"] = json!(true);
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "n");
}

/// Gemini's thought summaries, asked for whenever a client asks for reasoning, reach every
/// client: an OpenAI client's `reasoning_content` (whole and streamed) with the thinking's
/// tokens in its usage, an Anthropic client's thinking block, a Responses client's reasoning
/// item.
#[tokio::test]
async fn geminis_thoughts_reach_every_client() {
    let env = env().await;
    let mut body = chat("gemini", "Why is the sky blue?");
    body["reasoning_effort"] = json!("low");
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    let thought = b["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(thought.contains("sky blue"), "{b}");
    let thought_tokens = thought.split_whitespace().count() as u64;
    assert_eq!(
        b["usage"]["completion_tokens_details"]["reasoning_tokens"], thought_tokens,
        "{b}"
    );
    assert!(
        !b["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("user asks"),
        "{b}"
    );

    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = env.post("/v1/chat/completions", &body).await;
    let data = r.sse_data();
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(streamed, thought);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"], thought_tokens,
        "{usage}"
    );

    let ask = json!({"model": "gemini", "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
    let r = env.post_anthropic(&ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let content = r.json()["content"].clone();
    assert_eq!(content[0]["type"], "thinking", "{content}");
    assert_eq!(content[0]["thinking"], thought.as_str(), "{content}");
    assert_eq!(content[1]["type"], "text", "{content}");

    let body = json!({"model": "gemini", "input": "Why is the sky blue?",
        "reasoning": {"effort": "low", "summary": "auto"}});
    let r = env.post("/v1/responses", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let output = r.json()["output"].clone();
    assert_eq!(output[0]["type"], "reasoning", "{output}");
    assert_eq!(
        output[0]["summary"][0]["text"],
        thought.as_str(),
        "{output}"
    );
}

/// A request an OpenAI-form provider refuses comes back with the field it named (`param`), as
/// the provider's own error object would; a request the gateway cannot write for a provider
/// names the field too.
#[tokio::test]
async fn a_refused_requests_field_reaches_the_client() {
    let env = env().await;
    for kind in ["openai", "compat", "azure"] {
        let mut body = chat(kind, "Hello there");
        body["top_logprobs"] = json!(2);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 400, "{kind}: {}", r.text);
        let error = &r.json()["error"];
        assert_eq!(error["code"], "upstream_invalid_request", "{kind}: {error}");
        assert_eq!(error["param"], "top_logprobs", "{kind}: {error}");
    }
    // Bedrock takes images inline only, and an image the gateway cannot fetch for it (its
    // host never resolves) is refused naming the part.
    let body = json!({"model": "bedrock", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://cat.invalid/cat.png"}}]}]});
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["error"]["param"],
        "messages[0].content[1]",
        "{}",
        r.text
    );
}

/// An OpenAI client's `input_audio` reaches the providers that hear audio (OpenAI's format as
/// `input_audio` again, Gemini's as inline audio data), in both of OpenAI's formats; the others
/// refuse it naming the part, and a format OpenAI does not take is refused at the gateway.
#[tokio::test]
async fn audio_reaches_the_providers_that_hear_it() {
    let env = echoing("{documents}").await;
    let wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00";
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, wav);
    let ask = |kind: &str, format: &str| {
        json!({"model": kind, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is said?"},
            {"type": "input_audio", "input_audio": {"data": data, "format": format}}]}]})
    };
    for kind in KINDS {
        for format in ["wav", "mp3"] {
            let r = env.post("/v1/chat/completions", &ask(kind, format)).await;
            if matches!(*kind, "anthropic" | "bedrock") {
                assert_eq!(r.status, 400, "{kind}: {}", r.text);
                let error = &r.json()["error"];
                assert_eq!(error["param"], "messages[0].content[1]", "{kind}: {error}");
                assert!(
                    error["message"].as_str().unwrap().contains("audio/"),
                    "{kind}: {error}"
                );
                continue;
            }
            assert_eq!(r.status, 200, "{kind}: {}", r.text);
            assert_eq!(
                r.json()["choices"][0]["message"]["content"],
                format!("audio/{format}:{}", wav.len()),
                "{kind}"
            );
        }
    }
    let r = env
        .post("/v1/chat/completions", &ask("openai", "flac"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["error"]["param"],
        "messages[0].content[1].input_audio.format"
    );
    // Audio is a user's: elsewhere it is refused by its type.
    let body = json!({"model": "openai", "messages": [{"role": "system", "content": [
        {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]},
        {"role": "user", "content": "hi"}]});
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "messages[0].content[0].type");
}

/// Claude Code on Claude 4.6 and later asks for adaptive thinking with an effort: the request
/// reaches Claude as it was written, and the thinking comes back to it.
#[tokio::test]
async fn adaptive_thinking_reaches_claude_as_asked() {
    let env = env().await;
    let ask = json!({"model": "anthropic", "max_tokens": 2000, "stream": true,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
    let r = env.post_anthropic(&ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let blocks = streamed_blocks(&r);
    assert_eq!(blocks[0]["type"], "thinking", "{blocks}");
    assert!(
        !blocks[0]["signature"].as_str().unwrap().is_empty(),
        "{blocks}"
    );
}

/// Claude 4.7 and later think only adaptively: an OpenAI client's reasoning effort reaches them
/// as adaptive thinking at that effort, on Anthropic's API and on Bedrock, and the thinking
/// comes back, also through a tool loop; Claude 4.5 still gets a budget.
#[tokio::test]
async fn an_effort_reaches_the_latest_claude_as_adaptive_thinking() {
    let env = crate::harness::env_with(
        r#"
  - {alias: opus-latest, deployments: [{provider: p-anthropic, model: claude-opus-4-7}]}
  - {alias: opus-latest-bedrock, deployments: [{provider: p-bedrock, model: "us.anthropic.claude-opus-4-7"}]}
"#,
    )
    .await;
    for alias in ["opus-latest", "opus-latest-bedrock", "anthropic", "bedrock"] {
        let mut body = chat(alias, "Why is the sky blue?");
        body["reasoning_effort"] = json!("high");
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{alias}: {}", r.text);
        let reasoning = &r.json()["choices"][0]["message"]["reasoning_content"];
        assert!(
            reasoning.as_str().unwrap().contains("sky blue"),
            "{alias}: {}",
            r.text
        );

        let function = json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
        let mut body = chat(alias, "Weather in Oslo?");
        body["reasoning_effort"] = json!("low");
        body["tools"] = json!([function]);
        let turn = env.post("/v1/chat/completions", &body).await.json();
        let message = turn["choices"][0]["message"].clone();
        assert_eq!(
            turn["choices"][0]["finish_reason"], "tool_calls",
            "{alias}: {turn}"
        );
        body["messages"] = json!([body["messages"][0],
            {"role": "assistant", "content": null, "tool_calls": message["tool_calls"]},
            {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "5 degrees"}]);
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{alias}: {}", r.text);
    }
}

/// Claude Code's adaptive thinking (Claude 4.6 and later) routed to another provider still
/// thinks there, up to its effort's budget: Gemini's thoughts and Claude's own on Bedrock (4.5
/// with a budget, 4.7 adaptively) come back to it as thinking blocks.
#[tokio::test]
async fn adaptive_thinking_thinks_on_every_provider_that_can() {
    let env = crate::harness::env_with(
        r#"
  - {alias: opus-latest-bedrock, deployments: [{provider: p-bedrock, model: "us.anthropic.claude-opus-4-7"}]}
"#,
    )
    .await;
    // The default effort (high) with a `max_tokens` below its budget (as LangChain's default
    // of 4096) thinks within `max_tokens`.
    for effort in [json!({"effort": "low"}), json!({})] {
        for alias in ["gemini", "bedrock", "opus-latest-bedrock", "anthropic"] {
            let ask = json!({"model": alias, "max_tokens": 4000,
                "thinking": {"type": "adaptive"}, "output_config": effort,
                "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
            let r = env.post_anthropic(&ask).await;
            assert_eq!(r.status, 200, "{alias} {effort}: {}", r.text);
            let content = r.json()["content"].clone();
            assert_eq!(content[0]["type"], "thinking", "{alias}: {content}");
            assert!(
                content[0]["thinking"]
                    .as_str()
                    .unwrap()
                    .contains("sky blue"),
                "{alias}: {content}"
            );
        }
    }
    // Too little room to think (Claude's least budget is 1024): an answer without thinking.
    let ask = json!({"model": "bedrock", "max_tokens": 1000,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"},
        "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
    let r = env.post_anthropic(&ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["content"][0]["type"], "text", "{}", r.text);
}

/// OpenAI's legacy Completions API (`/v1/completions`, which LlamaIndex's `OpenAILike` and
/// LangChain's `OpenAI` model call) reaches every provider kind as a chat of one user message,
/// whole and streamed, its answer a `text_completion`; `echo` puts the prompt first; what only a
/// raw completion model can do is refused naming the member.
#[tokio::test]
async fn the_completions_api_reaches_every_provider_as_a_chat() {
    let env = echoing("{prompt}").await;
    for kind in KINDS {
        let r = env
            .post(
                "/v1/completions",
                &json!({"model": kind, "prompt": "Once upon a time", "max_tokens": 50}),
            )
            .await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let b = r.json();
        assert_eq!(b["object"], "text_completion", "{kind}: {b}");
        assert!(b["id"].as_str().unwrap().starts_with("cmpl-"), "{b}");
        assert_eq!(b["model"], *kind);
        assert_eq!(b["choices"][0]["text"], "Once upon a time", "{kind}: {b}");
        assert_eq!(b["choices"][0]["finish_reason"], "stop", "{kind}: {b}");
        assert!(
            b["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{kind}: {b}"
        );

        let r = env
            .post(
                "/v1/completions",
                &json!({"model": kind, "prompt": "Once upon a time", "echo": true,
                    "stream": true, "stream_options": {"include_usage": true}}),
            )
            .await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let data = r.sse_data();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{kind}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(text, "Once upon a timeOnce upon a time", "{kind}");
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "stop"),
            "{kind}: {chunks:?}"
        );
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]), "{kind}: {usage}");
        assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }
    let r = env
        .post(
            "/v1/completions",
            &json!({"model": "openai", "prompt": "def f(", "suffix": "return x"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "suffix", "{}", r.text);
}

/// An OpenAI client's deprecated `functions` reach OpenAI-style providers as written; another
/// provider's format has no `function_call` answer, so the request is refused naming the
/// member rather than answered as if no function had been offered.
#[tokio::test]
async fn deprecated_functions_are_refused_where_they_cannot_be_kept() {
    let env = env().await;
    let body = |kind: &str| {
        json!({"model": kind, "messages": [{"role": "user", "content": "Weather in Oslo?"}],
            "functions": [weather_tool()["function"].clone()], "function_call": "auto"})
    };
    for kind in KINDS {
        let r = env.post("/v1/chat/completions", &body(kind)).await;
        if matches!(*kind, "openai" | "compat" | "azure") {
            assert_eq!(r.status, 200, "{kind}: {}", r.text);
        } else {
            assert_eq!(r.status, 400, "{kind}: {}", r.text);
            let error = &r.json()["error"];
            assert_eq!(error["param"], "functions", "{kind}: {error}");
            assert!(
                error["message"].as_str().unwrap().contains("'tools'"),
                "{kind}: {error}"
            );
        }
    }
}

/// The stop sequence that stopped an answer reaches an Anthropic client (`stop_sequence`),
/// whole and streamed, from Claude and from Claude on Bedrock (whose Converse answer says which
/// only in Claude's own response fields, asked for with the stop sequences).
#[tokio::test]
async fn the_stop_sequence_that_stopped_an_answer_is_named() {
    let env = env().await;
    for kind in ["anthropic", "bedrock"] {
        let body = json!({"model": kind, "max_tokens": 200, "stop_sequences": ["lorem"],
            "messages": [{"role": "user", "content": "Tell me a story"}]});
        let r = env.post_anthropic(&body).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        assert_eq!(
            r.json()["stop_reason"],
            "stop_sequence",
            "{kind}: {}",
            r.text
        );
        assert_eq!(r.json()["stop_sequence"], "lorem", "{kind}: {}", r.text);
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let r = env.post_anthropic(&streamed).await;
        let delta = r
            .sse_data()
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .find(|e| e["type"] == "message_delta")
            .unwrap();
        assert_eq!(
            delta["delta"]["stop_reason"], "stop_sequence",
            "{kind}: {delta}"
        );
        assert_eq!(delta["delta"]["stop_sequence"], "lorem", "{kind}: {delta}");
    }
}

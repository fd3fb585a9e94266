//! Tests of the Anthropic dialect: ingress decode/encode, provider request goldens, response
//! and error parsing, and the stream codecs (every split point, round trips, failures).

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use super::{
    AnthropicIngress, AnthropicProvider, AnthropicStreamDecoder, JSON_OBJECT_INSTRUCTION, common,
    ingress,
};
use crate::DialectId;
use crate::canonical::{
    CacheTtl, ChatRequest, ChatResponse, ContentPart, ErrorClass, Extras, FinishReason,
    ImageSource, Message, Reasoning, ResponseFormat, Role, StreamEvent, Text, Tool, ToolChoice,
    Usage,
};
use crate::dialect::{EncodeCtx, IngressDialect, ProviderDialect, StreamDecoder, Target};
use crate::error::{ClientError, DecodeError, ErrorKind};
use crate::provider_body::ProviderBody;
use crate::sse::SseParser;

const MODEL: &str = "claude-sonnet-4-5";

fn target() -> Target<'static> {
    Target {
        base_url: "https://api.anthropic.com",
        model: "claude-target",
        api_key: Some("sk-ant-test"),
        api_version: None,
    }
}

fn ctx(id: &str, model: &str) -> EncodeCtx {
    EncodeCtx {
        prompt_estimate: 0,
        id: id.into(),
        model: model.into(),
        created: 1_700_000_000,
        include_usage: true,
        echo: None,
        keep: None,
    }
}

fn decode(body: &Value) -> Result<ChatRequest, DecodeError> {
    AnthropicIngress.decode_chat(&Bytes::from(serde_json::to_vec(body).unwrap()))
}

fn decode_err(body: Value) -> DecodeError {
    decode(&body).unwrap_err()
}

fn build(request: &ChatRequest) -> (http::Request<Vec<u8>>, Value) {
    let built = AnthropicProvider.build_chat(request, &target()).unwrap();
    let built = built.map(ProviderBody::into_vec);
    let body = serde_json::from_slice(built.body()).unwrap();
    (built, body)
}

/// An OpenAI provider, for what other dialects make of an Anthropic client's request.
fn openai_provider() -> crate::openai::OpenAiProvider {
    crate::openai::OpenAiProvider::new(crate::dialect::OpenAiQuirks::default())
}

fn message(role: Role, content: Vec<ContentPart>) -> Message {
    Message {
        role,
        content,
        name: None,
        extras: Extras::default(),
    }
}

fn tool_call(id: &str, name: &str, arguments: &str) -> ContentPart {
    ContentPart::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        extras: Extras::default(),
    }
}

fn tool_result(id: &str, text: &str, is_error: bool) -> ContentPart {
    ContentPart::ToolResult {
        tool_call_id: id.into(),
        name: None,
        content: vec![ContentPart::text(text)],
        is_error,
    }
}

// ---------------------------------------------------------------- ingress: decode

/// A request as Claude Code-style clients send it, in the shape the provider side writes back
/// (strings for lone text blocks), so decode → build must reproduce it exactly.
fn full_request() -> Value {
    json!({
        "model": MODEL,
        "max_tokens": 8192,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in English."}
        ],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, sunny",
                 "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "timeout", "is_error": true},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather by city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
             "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nEND"],
        "top_p": 0.95,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "user-42"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
        "stream": true,
        "service_tier": "auto",
        "context_management": {"edits": []}
    })
}

#[test]
fn decodes_every_modelled_field() {
    let request = decode(&full_request()).unwrap();
    assert_eq!(request.model, MODEL);
    assert_eq!(request.max_tokens, Some(8192));
    assert!(request.stream && request.include_usage);
    assert_eq!(request.stop, vec!["\n\nEND".to_owned()]);
    assert_eq!(request.top_p, Some(0.95));
    assert_eq!(request.user.as_deref(), Some("user-42"));
    assert_eq!(request.tool_choice, Some(ToolChoice::Auto));
    assert_eq!(request.parallel_tool_calls, Some(false));
    assert_eq!(
        request.reasoning,
        Some(Reasoning {
            effort: None,
            budget_tokens: Some(2048)
        })
    );
    assert!(matches!(
        &request.response_format,
        Some(ResponseFormat::JsonSchema { schema, .. }) if schema == &json!({"type": "object"})
    ));

    let [system, user, assistant, results] = request.messages.as_slice() else {
        panic!("expected four messages, got {:?}", request.messages);
    };
    assert_eq!(system.role, Role::System);
    assert_eq!(
        system.content[0],
        ContentPart::Text {
            text: "You are terse.".into(),
            cache_control: Some(json!({"type": "ephemeral"})),
            citations: None,
        }
    );
    assert_eq!(
        user.content,
        vec![ContentPart::text("What's the weather in Paris?")]
    );
    assert_eq!(
        assistant.content,
        vec![
            ContentPart::Reasoning {
                text: "Need the tool.".into(),
                signature: Some("sig-1".into())
            },
            ContentPart::RedactedReasoning {
                data: "opaque".into()
            },
            ContentPart::text("Checking."),
            tool_call("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
        ]
    );
    // Tool results stay in the user message, in order, beside the user's own content.
    assert_eq!(results.role, Role::User);
    assert_eq!(
        results.content[0],
        tool_result("toolu_1", "18°C, sunny", false)
    );
    assert_eq!(results.content[1], tool_result("toolu_2", "timeout", true));
    assert_eq!(
        results.content[2],
        ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            },
            detail: None
        }
    );

    assert_eq!(request.tools.len(), 1);
    assert_eq!(request.tools[0].name, "get_weather");
    assert_eq!(
        request.tools[0].cache_control,
        Some(json!({"type": "ephemeral"}))
    );

    // Unknown fields, and what the canonical model cannot hold, wait in the extras.
    let extras = request.extras.for_dialect(DialectId::Anthropic).unwrap();
    assert_eq!(extras["service_tier"], json!("auto"));
    assert_eq!(extras["context_management"], json!({"edits": []}));
    assert_eq!(extras["tools"][0]["name"], json!("web_search"));
    assert_eq!(extras["output_config"], json!({"effort": "high"}));
    assert_eq!(request.extras.for_dialect(DialectId::OpenAi), None);
}

#[test]
fn same_dialect_round_trip_is_lossless() {
    let original = full_request();
    let request = decode(&original).unwrap();
    let (_, body) = build(&request);
    let mut expected = original;
    expected["model"] = json!("claude-target");
    assert_eq!(body, expected);
}

#[test]
fn decodes_minimal_request_and_content_shapes() {
    let request = decode(&json!({
        "model": MODEL,
        "max_tokens": 20000,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1",
             "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"type": "tool_result", "tool_use_id": "t2"}
        ]}],
        "tool_choice": {"type": "tool", "name": "lookup"},
        "thinking": {"type": "adaptive"}
    }))
    .unwrap();
    assert!(!request.stream);
    assert_eq!(
        request.messages[0],
        message(Role::System, vec![ContentPart::text("Be brief.")])
    );
    assert_eq!(
        request.messages[1].content,
        vec![
            ContentPart::ToolResult {
                tool_call_id: "t1".into(),
                name: None,
                content: vec![ContentPart::text("a"), ContentPart::text("b")],
                is_error: false
            },
            ContentPart::ToolResult {
                tool_call_id: "t2".into(),
                name: None,
                content: vec![],
                is_error: false
            },
        ]
    );
    assert_eq!(
        request.tool_choice,
        Some(ToolChoice::Function("lookup".into()))
    );
    assert_eq!(request.parallel_tool_calls, None);
    // Adaptive thinking is, for other providers, thinking up to its effort's budget (`high`,
    // the default); Claude gets the client's own `thinking`.
    assert_eq!(
        request.reasoning,
        Some(Reasoning {
            effort: None,
            budget_tokens: Some(16384)
        })
    );
    let extras = request.extras.for_dialect(DialectId::Anthropic).unwrap();
    assert_eq!(extras["thinking"], json!({"type": "adaptive"}));
    // Both survive the way back out.
    let (_, body) = build(&request);
    assert_eq!(body["thinking"], json!({"type": "adaptive"}));
    assert_eq!(body["system"], json!("Be brief."));
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "t1",
             "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"type": "tool_result", "tool_use_id": "t2"}
        ])
    );

    let none = decode(&json!({
        "model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "q"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": false}
    }))
    .unwrap();
    assert_eq!(none.tool_choice, Some(ToolChoice::Required));
    assert_eq!(none.parallel_tool_calls, Some(true));
    assert!(none.extras.is_empty());
}

#[test]
fn decode_errors_name_the_offending_field() {
    let base = || json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };

    let mut no_max = base();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(decode_err(no_max).param.as_deref(), Some("max_tokens"));
    let mut no_messages = base();
    no_messages.as_object_mut().unwrap().remove("messages");
    assert_eq!(decode_err(no_messages).param.as_deref(), Some("messages"));

    assert_eq!(
        decode_err(with("max_tokens", json!("lots")))
            .param
            .as_deref(),
        Some("max_tokens")
    );
    let role = decode_err(with(
        "messages",
        json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "tool", "content": "c"}]),
    ));
    assert_eq!(role.param.as_deref(), Some("messages[2].role"));
    assert!(role.message.contains("\"system\""), "{}", role.message);

    let content = decode_err(with("messages", json!([{"role": "user", "content": 42}])));
    assert_eq!(content.param.as_deref(), Some("messages[0].content"));

    let block = decode_err(with(
        "messages",
        json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "web_search_tool_result", "tool_use_id": "s"}]}]),
    ));
    assert_eq!(block.param.as_deref(), Some("messages[0].content[1].type"));
    assert!(
        block.message.contains("web_search_tool_result"),
        "{}",
        block.message
    );

    let nested = decode_err(with(
        "messages",
        json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "tool_use", "id": "x", "name": "y", "input": {}}]}]}]),
    ));
    assert_eq!(
        nested.param.as_deref(),
        Some("messages[0].content[0].content[0].type")
    );

    assert_eq!(
        decode_err(with("tool_choice", json!({"type": "tool"})))
            .param
            .as_deref(),
        Some("tool_choice")
    );
    assert_eq!(
        decode_err(with("thinking", json!({"type": "enabled"})))
            .param
            .as_deref(),
        Some("thinking")
    );
    assert_eq!(
        decode_err(with(
            "tools",
            json!([{"name": "t", "input_schema": {}}, {"name": "no_schema"}])
        ))
        .param
        .as_deref(),
        Some("tools[1]")
    );
    assert_eq!(
        decode_err(with(
            "system",
            json!([{"type": "image", "source": {"type": "url", "url": "u"}}])
        ))
        .param
        .as_deref(),
        Some("system[0].type")
    );

    let syntax = AnthropicIngress
        .decode_chat(&Bytes::from_static(b"{\"model\": "))
        .unwrap_err();
    assert!(
        syntax.message.contains("invalid JSON"),
        "{}",
        syntax.message
    );
}

// ---------------------------------------------------------------- ingress: encode

fn sample_response() -> ChatResponse {
    ChatResponse {
        id: "upstream-id".into(),
        model: "gpt-upstream".into(),
        created: 0,
        content: vec![
            ContentPart::Reasoning {
                text: "Think.".into(),
                signature: None,
            },
            ContentPart::RedactedReasoning { data: "xyz".into() },
            ContentPart::text("Here you go."),
            tool_call("call_1", "lookup", r#"{"q":"rust"}"#),
            tool_call("call_2", "broken", "{\"q\": "),
        ],
        finish_reason: FinishReason::StopSequence(Some("END".into())),
        usage: Some(Usage {
            input_tokens: 1000,
            output_tokens: 50,
            cache_read_tokens: 600,
            cache_write_tokens: 100,
            cache_write_1h_tokens: 40,
            reasoning_tokens: 10,
            ..Default::default()
        }),
        extras: Extras::default(),
        more_choices: Vec::new(),
    }
}

/// The hand-written `Message` is what serde writes from the wire struct, byte for byte: every
/// kind of block, every finish reason, usage with and without cache writes and server tools,
/// no usage at all, members kept for Anthropic clients, escapes in every string.
#[test]
fn the_written_message_is_what_serde_writes_byte_for_byte() {
    let searched = AnthropicProvider
        .parse_chat(SEARCHED_MESSAGE.as_bytes())
        .unwrap();
    let mut signed_call = tool_call("call_9", "weather", r#"{"city":"Paris","days":[1,2]}"#);
    if let ContentPart::ToolCall { extras, .. } = &mut signed_call {
        extras.insert(
            DialectId::Gemini,
            crate::gemini::THOUGHT_SIGNATURE,
            json!("c2lnbmF0dXJl"),
        );
    }
    let mut kept = Extras::default();
    kept.insert(
        DialectId::Anthropic,
        "container",
        json!({"id": "c1", "expires_at": "soon"}),
    );
    kept.insert(DialectId::Anthropic, "context_management", json!(null));
    let mut other_dialect = Extras::default();
    other_dialect.insert(DialectId::OpenAi, "service_tier", json!("default"));
    let mut responses = vec![sample_response(), searched];
    responses.push(ChatResponse {
        content: vec![
            ContentPart::text("Line 1\nLine \"2\"\t\u{1}\u{7f} café 日本 😀 \\ </script>"),
            ContentPart::Text {
                text: "cited".into(),
                cache_control: None,
                citations: Some(
                    json!([{"type": "char_location", "cited_text": "a\"b", "start_char_index": 0}]),
                ),
            },
            ContentPart::Reasoning {
                text: "Weigh \"both\".".into(),
                signature: Some("sig+/=".into()),
            },
            signed_call,
            tool_call("call_10", "none", ""),
            tool_call("call_11", "list", "[1,2]"),
            ContentPart::text(""),
        ],
        finish_reason: FinishReason::ToolCalls,
        usage: Some(Usage {
            input_tokens: u64::MAX,
            output_tokens: 0,
            web_fetch_requests: 3,
            ..Default::default()
        }),
        extras: kept,
        ..sample_response()
    });
    let reasons = [
        FinishReason::Stop,
        FinishReason::StopSequence(None),
        FinishReason::StopSequence(Some("\n\nHuman:".into())),
        FinishReason::Length,
        FinishReason::ContentFilter,
        FinishReason::Other("pause_turn".into()),
    ];
    for (i, finish_reason) in reasons.into_iter().enumerate() {
        responses.push(ChatResponse {
            content: vec![ContentPart::text(format!("answer {i}"))],
            finish_reason,
            usage: (i % 2 == 0).then(Usage::default),
            extras: if i == 0 {
                other_dialect.clone()
            } else {
                Extras::default()
            },
            ..sample_response()
        });
    }
    responses.push(ChatResponse {
        content: Vec::new(),
        usage: None,
        ..sample_response()
    });
    let contexts = [
        ctx("gw-1", "my-alias"),
        ctx("msg_already", "al\"ias\u{7f}é\\"),
        ctx("", ""),
    ];
    for response in &responses {
        for ctx in &contexts {
            let ours = AnthropicIngress.encode_chat(response, ctx);
            let serde = super::ingress::encode_chat_with_serde(response, ctx);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}

#[test]
fn encodes_a_complete_message() {
    let body: Value = serde_json::from_slice(
        &AnthropicIngress.encode_chat(&sample_response(), &ctx("gw-1", "my-alias")),
    )
    .unwrap();
    assert_eq!(
        body,
        json!({
            "id": "msg_gw-1",
            "type": "message",
            "role": "assistant",
            "model": "my-alias",
            "content": [
                {"type": "thinking", "thinking": "Think.", "signature": ""},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Here you go."},
                {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "rust"}},
                // Arguments that are not a JSON object become an empty input.
                {"type": "tool_use", "id": "call_2", "name": "broken", "input": {}}
            ],
            "stop_reason": "stop_sequence",
            "stop_sequence": "END",
            "usage": {
                "input_tokens": 300,
                "output_tokens": 50,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 600,
                "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40}
            }
        })
    );
}

#[test]
fn maps_every_finish_reason_and_keeps_msg_ids() {
    let cases = [
        // The sample answer calls tools: a turn OpenAI ended with `stop` after a forced call
        // is Claude's `tool_use`.
        (FinishReason::Stop, "tool_use"),
        (FinishReason::StopSequence(None), "stop_sequence"),
        (FinishReason::Length, "max_tokens"),
        (FinishReason::ToolCalls, "tool_use"),
        (FinishReason::ContentFilter, "refusal"),
        (FinishReason::Other("pause_turn".into()), "pause_turn"),
    ];
    for (reason, expected) in cases {
        let response = ChatResponse {
            finish_reason: reason,
            usage: None,
            ..sample_response()
        };
        let body: Value =
            serde_json::from_slice(&AnthropicIngress.encode_chat(&response, &ctx("msg_abc", "m")))
                .unwrap();
        assert_eq!(body["stop_reason"], json!(expected));
        assert_eq!(body["id"], json!("msg_abc"));
        assert_eq!(body["usage"]["input_tokens"], json!(0));
    }
    let text_only = ChatResponse {
        content: vec![ContentPart::text("Done.")],
        finish_reason: FinishReason::Stop,
        ..sample_response()
    };
    let body: Value =
        serde_json::from_slice(&AnthropicIngress.encode_chat(&text_only, &ctx("msg_abc", "m")))
            .unwrap();
    assert_eq!(body["stop_reason"], json!("end_turn"));
    // Streamed alike.
    for (events, expected) in [
        (
            vec![
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "lookup".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{}".into(),
                },
            ],
            "tool_use",
        ),
        (vec![StreamEvent::TextDelta("Done.".into())], "end_turn"),
    ] {
        let mut encoder = AnthropicIngress.stream_encoder(ctx("e", "m"));
        let mut out = Vec::new();
        for event in &events {
            encoder.event(event, &mut out);
        }
        encoder.event(&StreamEvent::Finish(FinishReason::Stop), &mut out);
        encoder.finish(&mut out);
        let frames = frames(&out);
        assert_eq!(
            frames[frames.len() - 2].1["delta"]["stop_reason"],
            json!(expected)
        );
    }
}

#[test]
fn encodes_error_bodies() {
    let error = |kind, param: Option<&str>| ClientError {
        status: 400,
        kind,
        code: "test",
        message: "field required".into(),
        param: param.map(str::to_owned),
    };
    let body = |e: &ClientError| -> Value {
        serde_json::from_slice(&AnthropicIngress.encode_error(e)).unwrap()
    };
    assert_eq!(
        body(&error(ErrorKind::InvalidRequest, Some("max_tokens"))),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: field required"}})
    );
    let expected = [
        (ErrorKind::Authentication, "authentication_error"),
        (ErrorKind::Permission, "permission_error"),
        (ErrorKind::NotFound, "not_found_error"),
        (ErrorKind::RequestTooLarge, "request_too_large"),
        (ErrorKind::RateLimit, "rate_limit_error"),
        (ErrorKind::InsufficientQuota, "billing_error"),
        (ErrorKind::Upstream, "api_error"),
        (ErrorKind::Internal, "api_error"),
        (ErrorKind::Overloaded, "overloaded_error"),
        (ErrorKind::Timeout, "timeout_error"),
    ];
    for (kind, name) in expected {
        let b = body(&error(kind, None));
        assert_eq!(b["error"]["type"], json!(name));
        assert_eq!(b["error"]["message"], json!("field required"));
    }
}

// ---------------------------------------------------------------- provider: build

fn canonical_request() -> ChatRequest {
    ChatRequest {
        model: "alias".into(),
        messages: vec![
            message(Role::System, vec![ContentPart::text("You are terse.")]),
            message(
                Role::Developer,
                vec![ContentPart::text("Use metric units.")],
            ),
            message(
                Role::User,
                vec![
                    ContentPart::text("Describe this"),
                    ContentPart::Image {
                        source: ImageSource::from_url("data:image/png;base64,AAAA"),
                        detail: Some("high".into()),
                    },
                    ContentPart::Image {
                        source: ImageSource::Url("https://example.com/a.jpg".into()),
                        detail: None,
                    },
                ],
            ),
            message(
                Role::Assistant,
                vec![
                    ContentPart::text(""),
                    ContentPart::Reasoning {
                        text: "unsigned thoughts from another provider".into(),
                        signature: None,
                    },
                    tool_call("call_1", "get_weather", r#"{"city": "Paris"}"#),
                    tool_call("call_2", "get_time", ""),
                ],
            ),
            message(Role::Tool, vec![tool_result("call_1", "18C", false)]),
            message(Role::Tool, vec![tool_result("call_2", "noon", true)]),
            message(Role::User, vec![ContentPart::text("Thanks")]),
        ],
        tools: vec![
            Tool {
                name: "get_weather".into(),
                description: Some("Weather by city".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                strict: None,
                cache_control: None,
            },
            Tool {
                name: "get_time".into(),
                description: None,
                parameters: Value::Null,
                strict: Some(true),
                cache_control: None,
            },
        ],
        tool_choice: Some(ToolChoice::Required),
        parallel_tool_calls: Some(false),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            description: None,
            schema: json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            strict: Some(true),
        }),
        temperature: Some(1.4),
        top_p: Some(0.8),
        stop: vec!["END".into()],
        seed: Some(7),
        presence_penalty: Some(0.5),
        // A forced tool rules out thinking, so the effort is not used.
        reasoning: Some(Reasoning {
            effort: Some("high".into()),
            budget_tokens: None,
        }),
        user: Some("u-1".into()),
        stream: true,
        n: Some(1),
        extras: Extras::new(
            DialectId::OpenAi,
            [("logprobs".to_owned(), json!(true))].into_iter().collect(),
        ),
        ..ChatRequest::default()
    }
}

#[test]
fn builds_the_provider_request() {
    let (request, body) = build(&canonical_request());
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri(), "https://api.anthropic.com/v1/messages");
    let headers = request.headers();
    assert_eq!(headers["x-api-key"], "sk-ant-test");
    assert!(headers["x-api-key"].is_sensitive());
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        json!({
            "model": "claude-target",
            "max_tokens": 4096,
            "system": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Use metric units."}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Describe this"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "noon", "is_error": true},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "tools": [
                {"name": "get_weather", "description": "Weather by city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}, "strict": true}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
            "temperature": 1.0,
            "top_p": 0.8,
            "metadata": {"user_id": "u-1"},
            "output_config": {"format": {"type": "json_schema",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "stream": true
        })
    );
}

#[test]
fn maps_reasoning_effort_to_a_thinking_budget() {
    let request = |max_tokens| ChatRequest {
        model: "m".into(),
        messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
        max_tokens,
        temperature: Some(0.3),
        top_k: Some(5),
        reasoning: Some(Reasoning {
            effort: Some("medium".into()),
            budget_tokens: None,
        }),
        ..ChatRequest::default()
    };

    let (_, body) = build(&request(None));
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(body["max_tokens"], json!(8192));
    assert!(body.get("temperature").is_none() && body.get("top_k").is_none());

    let (_, body) = build(&request(Some(2000)));
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 1999})
    );
    assert_eq!(body["max_tokens"], json!(2000));

    // No room for the minimum budget: no thinking, sampling untouched.
    let (_, body) = build(&request(Some(1000)));
    assert!(body.get("thinking").is_none());
    assert_eq!(body["temperature"], json!(0.3));
    assert_eq!(body["top_k"], json!(5));

    let explicit = ChatRequest {
        reasoning: Some(Reasoning {
            effort: None,
            budget_tokens: Some(10_000),
        }),
        ..request(None)
    };
    let (_, body) = build(&explicit);
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 10000})
    );
    assert_eq!(body["max_tokens"], json!(14096));
    assert_eq!(body["temperature"], json!(0.3));

    assert_eq!(super::effort_budget("low"), Some(1024));
    assert_eq!(super::effort_budget("high"), Some(16384));
    assert_eq!(super::effort_budget("none"), None);
}

#[test]
fn json_object_mode_becomes_a_system_instruction() {
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![message(
            Role::User,
            vec![ContentPart::text("list three colours")],
        )],
        response_format: Some(ResponseFormat::JsonObject),
        parallel_tool_calls: Some(false),
        tool_choice: Some(ToolChoice::None),
        ..ChatRequest::default()
    };
    let (_, body) = build(&request);
    assert_eq!(body["system"], json!(JSON_OBJECT_INSTRUCTION));
    assert!(body.get("output_config").is_none());
    assert_eq!(body["tool_choice"], json!({"type": "none"}));
    assert!(body.get("stream").is_none());
}

#[test]
fn build_refuses_what_it_cannot_translate() {
    let mut request = canonical_request();
    request.messages[3].content[2] = tool_call("call_1", "get_weather", "{\"city\": ");
    let error = AnthropicProvider
        .build_chat(&request, &target())
        .unwrap_err();
    assert_eq!(
        error.param.as_deref(),
        Some("messages[3].tool_calls[0].function.arguments")
    );

    request.messages[3].content[2] = tool_call("call_1", "get_weather", "[1, 2]");
    let error = AnthropicProvider
        .build_chat(&request, &target())
        .unwrap_err();
    assert!(error.message.contains("JSON object"), "{}", error.message);

    let many = ChatRequest {
        n: Some(2),
        ..canonical_request()
    };
    assert_eq!(
        AnthropicProvider
            .build_chat(&many, &target())
            .unwrap_err()
            .param
            .as_deref(),
        Some("n")
    );
}

#[test]
fn base_url_forms_and_missing_key() {
    for base in [
        "https://proxy.example/anthropic/",
        "https://proxy.example/anthropic/v1",
    ] {
        let target = Target {
            base_url: base,
            api_key: None,
            ..target()
        };
        let built = AnthropicProvider
            .build_chat(&canonical_request(), &target)
            .unwrap();
        assert_eq!(built.uri(), "https://proxy.example/anthropic/v1/messages");
        assert!(built.headers().get("x-api-key").is_none());
    }
    let bad_key = Target {
        api_key: Some("bad\nkey"),
        ..target()
    };
    let error = AnthropicProvider
        .build_chat(&canonical_request(), &bad_key)
        .unwrap_err();
    assert!(!error.message.contains("bad"), "{}", error.message);
}

#[test]
fn capabilities() {
    let caps = AnthropicProvider.capabilities();
    assert!(caps.tools && caps.images && caps.json_schema && !caps.embeddings);
    assert_eq!(AnthropicProvider.id(), DialectId::Anthropic);
    assert_eq!(AnthropicIngress.id(), DialectId::Anthropic);
}

// ---------------------------------------------------------------- provider: parse

const RECORDED_MESSAGE: &str = r#"{
  "id": "msg_01Aq9w938a90dw8q",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [
    {"type": "thinking", "thinking": "The user asks for the weather; call the tool.", "signature": "ErUBCkYIBxgCIkB3mP"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
    {"type": "text", "text": "I'll look that up.", "citations": null},
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "weather"}},
    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
     "input": {"location": "San Francisco, CA", "unit": "celsius"}}
  ],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 50,
    "cache_creation_input_tokens": 1000,
    "cache_read_input_tokens": 2000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
    "output_tokens": 120,
    "service_tier": "standard"
  },
  "container": null
}"#;

#[test]
fn parses_a_recorded_message() {
    let response = AnthropicProvider
        .parse_chat(RECORDED_MESSAGE.as_bytes())
        .unwrap();
    assert_eq!(response.id, "msg_01Aq9w938a90dw8q");
    assert_eq!(response.model, "claude-sonnet-4-5-20250929");
    assert_eq!(
        response.content,
        vec![
            ContentPart::Reasoning {
                text: "The user asks for the weather; call the tool.".into(),
                signature: Some("ErUBCkYIBxgCIkB3mP".into())
            },
            ContentPart::RedactedReasoning {
                data: "EmwKAhgBEgy3va3pzix".into()
            },
            ContentPart::text("I'll look that up."),
            ContentPart::ServerTool {
                block: json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                    "input": {"query": "weather"}})
            },
            tool_call(
                "toolu_01A09q90qw90lq917835lq9",
                "get_weather",
                r#"{"location":"San Francisco, CA","unit":"celsius"}"#
            ),
        ]
    );
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.usage,
        Some(Usage {
            input_tokens: 3050,
            output_tokens: 120,
            cache_read_tokens: 2000,
            cache_write_tokens: 1000,
            cache_write_1h_tokens: 600,
            reasoning_tokens: 0,
            ..Default::default()
        })
    );
    let extras = response.extras.for_dialect(DialectId::Anthropic).unwrap();
    assert_eq!(extras.get("container"), Some(&Value::Null));

    let no_usage = AnthropicProvider
        .parse_chat(
            br#"{"id":"msg_1","content":[{"type":"text","text":"hi"}],"stop_reason":"max_tokens"}"#,
        )
        .unwrap();
    assert_eq!(no_usage.usage, None);
    assert_eq!(no_usage.finish_reason, FinishReason::Length);

    let error = AnthropicProvider.parse_chat(b"<html>").unwrap_err();
    assert_eq!(error.class, ErrorClass::MalformedResponse);
    let error = AnthropicProvider
        .parse_chat(br#"{"content": []}"#)
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::MalformedResponse);
}

#[test]
fn encoded_message_parses_back_to_the_same_answer() {
    let original = AnthropicProvider
        .parse_chat(RECORDED_MESSAGE.as_bytes())
        .unwrap();
    let encoded = AnthropicIngress.encode_chat(&original, &ctx("gw-9", "alias"));
    let parsed = AnthropicProvider.parse_chat(&encoded).unwrap();
    assert_eq!(parsed.id, "msg_gw-9");
    assert_eq!(parsed.model, "alias");
    assert_eq!(parsed.content, original.content);
    assert_eq!(parsed.finish_reason, original.finish_reason);
    assert_eq!(parsed.usage, original.usage);
    assert_eq!(parsed.extras, original.extras);
}

// ---------------------------------------------------------------- provider: errors

fn classify(
    status: u16,
    retry_after: Option<&str>,
    body: &str,
) -> crate::canonical::UpstreamErrorInfo {
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after {
        headers.insert("retry-after", value.parse().unwrap());
    }
    AnthropicProvider.classify_error(status, &headers, body.as_bytes())
}

#[test]
fn classifies_error_bodies() {
    let limited = classify(
        429,
        Some("30"),
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
    );
    assert_eq!(limited.class, ErrorClass::RateLimited);
    assert_eq!(limited.status, Some(429));
    assert_eq!(limited.retry_after_secs, Some(30.0));
    assert_eq!(limited.provider_code.as_deref(), Some("rate_limit_error"));
    assert!(limited.message.starts_with("Number of request tokens"));

    let overloaded = classify(
        529,
        None,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!(overloaded.class, ErrorClass::Overloaded);
    assert_eq!(overloaded.message, "Overloaded");
    assert!(overloaded.class.is_retryable());

    let too_long = classify(
        400,
        None,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
    );
    assert_eq!(too_long.class, ErrorClass::ContextTooLong);
    let bad = classify(
        400,
        None,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0.content: Field required"}}"#,
    );
    assert_eq!(bad.class, ErrorClass::InvalidRequest);

    let gateway = classify(502, Some("5"), "<html><body>502 Bad Gateway</body></html>");
    assert_eq!(gateway.class, ErrorClass::ServerError);
    assert_eq!(gateway.status, Some(502));
    assert_eq!(gateway.provider_code, None);
    assert_eq!(gateway.retry_after_secs, Some(5.0));
    assert!(
        gateway.message.contains("502") && !gateway.message.contains("html"),
        "{}",
        gateway.message
    );

    let expected = [
        (401, "authentication_error", ErrorClass::AuthFailed),
        (402, "billing_error", ErrorClass::AuthFailed),
        (403, "permission_error", ErrorClass::AuthFailed),
        (404, "not_found_error", ErrorClass::NotFound),
        // Too large for this provider: another may take it.
        (413, "request_too_large", ErrorClass::ContextTooLong),
        (500, "api_error", ErrorClass::ServerError),
        (504, "timeout_error", ErrorClass::Timeout),
        // A type this code does not know falls back to the status.
        (503, "brand_new_error", ErrorClass::Overloaded),
    ];
    for (status, kind, class) in expected {
        let body = json!({"type": "error", "error": {"type": kind, "message": "m"}}).to_string();
        assert_eq!(classify(status, None, &body).class, class, "{kind}");
    }
}

// ---------------------------------------------------------------- streams: decoder

/// A streamed answer with thinking, text and a tool call, in the shape of the streaming docs
/// (including a ping, an empty `input_json_delta` and multi-byte text).
const RECORDED_STREAM: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_01WBeG2NaYQ8w99747S3n8MZ","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":423,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"cache_creation":{"ephemeral_5m_input_tokens":40,"ephemeral_1h_input_tokens":60},"output_tokens":6,"service_tier":"standard"}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather"}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" in Paris."}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check — ☀️ "}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"maybe."}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":1}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"Par"}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"is\"}"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":2}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

fn recorded_events() -> Vec<StreamEvent> {
    let input = Usage {
        input_tokens: 2523,
        output_tokens: 6,
        cache_read_tokens: 2000,
        cache_write_tokens: 100,
        cache_write_1h_tokens: 60,
        reasoning_tokens: 0,
        ..Default::default()
    };
    vec![
        StreamEvent::Start {
            id: "msg_01WBeG2NaYQ8w99747S3n8MZ".into(),
            model: "claude-sonnet-4-5-20250929".into(),
        },
        StreamEvent::Usage(input),
        StreamEvent::ReasoningDelta("The user wants the weather".into()),
        StreamEvent::ReasoningDelta(" in Paris.".into()),
        StreamEvent::ReasoningSignature("EqQBCgIYAhIM1gbcDa9GJwZA2b3h".into()),
        StreamEvent::TextBlockStart,
        StreamEvent::TextDelta("Let me check — ☀️ ".into()),
        StreamEvent::TextDelta("maybe.".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
            name: "get_weather".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"location\": \"Par".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "is\"}".into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage {
            output_tokens: 89,
            ..input
        }),
    ]
}

fn decode_chunks(
    chunks: &[&[u8]],
) -> Result<Vec<StreamEvent>, crate::canonical::UpstreamErrorInfo> {
    let mut decoder = AnthropicStreamDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk, &mut out)?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

#[test]
fn decodes_a_recorded_stream() {
    assert_eq!(
        decode_chunks(&[RECORDED_STREAM.as_bytes()]).unwrap(),
        recorded_events()
    );
    // The provider hands out the same decoder.
    let mut decoder = AnthropicProvider.stream_decoder();
    let mut out = Vec::new();
    decoder.push(RECORDED_STREAM.as_bytes(), &mut out).unwrap();
    decoder.finish(&mut out).unwrap();
    assert_eq!(out, recorded_events());
}

/// A tool without parameters streams no arguments, or one empty piece: its arguments are `{}`,
/// which an OpenAI client parses as JSON.
#[test]
fn a_tool_call_without_arguments_streams_the_empty_object() {
    let stream = [
        r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}"#,
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        r#"data: {"type":"content_block_stop","index":0}"#,
        r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_2","name":"at","input":{}}}"#,
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"x\":1}"}}"#,
        r#"data: {"type":"content_block_stop","index":1}"#,
        r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}"#,
        r#"data: {"type":"message_stop"}"#,
    ]
    .map(|line| format!("{line}\n\n"))
    .concat();
    let events = decode_chunks(&[stream.as_bytes()]).unwrap();
    let arguments: Vec<(u32, &str)> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta { index, arguments } => Some((*index, arguments.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(arguments, [(0, "{}"), (1, "{\"x\":1}")]);
}

#[test]
fn stream_decodes_identically_at_every_split() {
    let bytes = RECORDED_STREAM.as_bytes();
    let expected = recorded_events();
    for i in 0..=bytes.len() {
        let events = decode_chunks(&[&bytes[..i], &bytes[i..]]).unwrap();
        assert_eq!(events, expected, "split at byte {i}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_chunks(&singles).unwrap(), expected);
    let crlf = RECORDED_STREAM.replace('\n', "\r\n");
    assert_eq!(decode_chunks(&[crlf.as_bytes()]).unwrap(), expected);
}

/// Text deltas shaped like the one before are read through its frame (their text alone
/// parsed), with exactly the events parsing each event whole gives: escapes, texts that look like
/// the event's own JSON, empty texts, another block's index, other delta kinds in between.
#[test]
fn framed_text_deltas_read_as_whole_ones() {
    let delta = |index: u32, text: &serde_json::Value| {
        format!(
            r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":{text}}}}}"#
        )
    };
    let mut events = vec![
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#.to_owned(),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_owned(),
    ];
    for text in [
        json!("Hello"),
        json!(" world"),
        json!("quote \" backslash \\ newline \n é 🎉"),
        json!("\"}},{\"type\":\"message_stop\"}"),
        json!(""),
        json!("more"),
    ] {
        events.push(delta(0, &text));
    }
    events.push(delta(0, &json!("x")).replace(r#""x""#, r#""\u00e9\ud83c\udf89""#));
    events.push(r#"{"type":"content_block_stop","index":0}"#.to_owned());
    events.push(r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}"#.to_owned());
    events.push(r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#.to_owned());
    events.push(r#"{"type":"content_block_stop","index":1}"#.to_owned());
    events.push(
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}"#
            .to_owned(),
    );
    events.push(delta(2, &json!("after")));
    events.push(delta(2, &json!("the tool")));
    events.push(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#.to_owned());
    events.push(r#"{"type":"message_stop"}"#.to_owned());
    let run = |forget: bool| {
        let mut decoder = AnthropicStreamDecoder::new();
        let mut out = Vec::new();
        for e in &events {
            if forget {
                decoder.forget_text_frame();
            }
            let frame = format!("event: x\ndata: {e}\n\n");
            if let Err(err) = decoder.push(frame.as_bytes(), &mut out) {
                return (Err(err), decoder.framed_texts());
            }
        }
        (
            decoder.finish(&mut out).map(|()| out),
            decoder.framed_texts(),
        )
    };
    let (framed, hits) = run(false);
    let (whole, none) = run(true);
    let framed = framed.unwrap();
    assert_eq!(framed, whole.unwrap());
    assert_eq!(none, 0);
    // " world" to "more", the `\u`-escaped text and "the tool": seven.
    assert_eq!(hits, 7);
    let texts: Vec<&str> = framed
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert!(texts.contains(&"\"}},{\"type\":\"message_stop\"}"));
    assert!(texts.contains(&"é🎉"));
}

#[test]
fn premature_end_is_an_error() {
    let cut = RECORDED_STREAM.find("event: message_stop").unwrap();
    let error = decode_chunks(&[&RECORDED_STREAM.as_bytes()[..cut]]).unwrap_err();
    assert_eq!(error.class, ErrorClass::StreamInterrupted);
    assert_eq!(
        decode_chunks(&[]).unwrap_err().class,
        ErrorClass::StreamInterrupted
    );
}

#[test]
fn in_stream_error_event_is_reported() {
    let stream = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Hel"}}"#,
        "\n\n",
        "event: error\n",
        r#"data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );
    let events = decode_chunks(&[stream.as_bytes()]).unwrap();
    assert_eq!(events[2], StreamEvent::TextBlockStart);
    assert_eq!(events[3], StreamEvent::TextDelta("Hel".into()));
    let [.., StreamEvent::Error(error)] = events.as_slice() else {
        panic!("expected a final error event, got {events:?}");
    };
    assert_eq!(events.len(), 5);
    assert_eq!(error.class, ErrorClass::Overloaded);
    assert_eq!(error.provider_code.as_deref(), Some("overloaded_error"));
    assert_eq!(error.message, "Overloaded");
    assert_eq!(error.status, None);
}

#[test]
fn malformed_streams_are_errors() {
    let bad_json = b"event: message_start\ndata: {not json}\n\n";
    assert_eq!(
        decode_chunks(&[bad_json]).unwrap_err().class,
        ErrorClass::MalformedResponse
    );
    let no_start = concat!(
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
        "\n\n"
    );
    assert_eq!(
        decode_chunks(&[no_start.as_bytes()]).unwrap_err().class,
        ErrorClass::MalformedResponse
    );
}

#[test]
fn decoder_skips_what_it_cannot_carry_keeps_whole_blocks_and_counts_tool_calls() {
    let stream = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":1}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"abc"}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"query\":\"x\"}"}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_a","name":"a","input":{}}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_b","name":"b","input":{}}}"#,
        "\n\n",
        "event: some_future_event\n",
        r#"data: {"type":"some_future_event","detail":1}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"pause_turn","stop_sequence":null},"usage":{"input_tokens":9,"output_tokens":30,"cache_read_input_tokens":4}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );
    let events = decode_chunks(&[stream.as_bytes()]).unwrap();
    assert_eq!(
        events[2..],
        [
            // Redacted thinking passes whole; the server tool's call too, its input with it;
            // tool calls are still counted among client tools only.
            StreamEvent::RedactedReasoning("abc".into()),
            StreamEvent::ServerToolStart(
                json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}})
            ),
            StreamEvent::ServerToolInputDelta("{\"query\":\"x\"}".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_a".into(),
                name: "a".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "toolu_b".into(),
                name: "b".into()
            },
            StreamEvent::Finish(FinishReason::Other("pause_turn".into())),
            // Newer APIs repeat the input side in `message_delta`; it replaces the start's.
            StreamEvent::Usage(Usage {
                input_tokens: 13,
                output_tokens: 30,
                cache_read_tokens: 4,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
                ..Default::default()
            }),
        ]
    );
}

// ---------------------------------------------------------------- streams: encoder

fn encode_events(events: &[StreamEvent], ctx: EncodeCtx) -> Vec<u8> {
    let mut encoder = AnthropicIngress.stream_encoder(ctx);
    let mut out = Vec::new();
    for event in events {
        encoder.event(event, &mut out);
    }
    encoder.finish(&mut out);
    out
}

/// (event name, data) of every frame.
fn frames(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    parser.push(bytes, &mut out).unwrap();
    out.into_iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            // The event name always repeats the data's type.
            assert_eq!(Some(data["type"].as_str().unwrap()), e.event.as_deref());
            (e.event.unwrap(), data)
        })
        .collect()
}

/// A provider that said no usage: an Anthropic client, whose format always says its counts,
/// gets the estimate the request was admitted with and the output at four characters a token,
/// whole and streamed, not zeros.
#[test]
fn unsaid_usage_reaches_anthropic_clients_as_an_estimate() {
    let estimated = EncodeCtx {
        prompt_estimate: 42,
        ..ctx("r1", "alias")
    };
    let response = ChatResponse {
        usage: None,
        content: vec![ContentPart::text("Twelve chars")],
        ..sample_response()
    };
    let whole: Value =
        serde_json::from_slice(&AnthropicIngress.encode_chat(&response, &estimated)).unwrap();
    assert_eq!(whole["usage"]["input_tokens"], 42, "{whole}");
    assert_eq!(whole["usage"]["output_tokens"], 3, "{whole}");

    let events = [
        StreamEvent::Start {
            id: "u".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("Twelve chars".into()),
        StreamEvent::Finish(FinishReason::Stop),
    ];
    let streamed = frames(&encode_events(&events, estimated.clone()));
    let (_, delta) = streamed
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 3, "{delta}");
    assert_eq!(delta["usage"]["input_tokens"], 42, "{delta}");
    // A provider's own counts stand.
    let mut said = events.to_vec();
    said.push(StreamEvent::Usage(Usage {
        input_tokens: 7,
        output_tokens: 9,
        ..Usage::default()
    }));
    let streamed = frames(&encode_events(&said, estimated));
    let (_, delta) = streamed
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 9, "{delta}");
}

#[test]
fn stream_encoder_round_trips_through_the_decoder() {
    let events = recorded_events();
    let bytes = encode_events(
        &events,
        ctx("msg_01WBeG2NaYQ8w99747S3n8MZ", "claude-sonnet-4-5-20250929"),
    );
    assert_eq!(decode_chunks(&[&bytes]).unwrap(), events);

    let names: Vec<String> = frames(&bytes).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(
        names.iter().filter(|n| *n == "content_block_start").count(),
        3
    );
    assert_eq!(
        names.iter().filter(|n| *n == "content_block_stop").count(),
        3
    );
}

#[test]
fn stream_encoder_writes_the_documented_sequence() {
    // OpenAI-style upstream: usage arrives after the finish reason.
    let events = [
        StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "gpt-x".into(),
        },
        StreamEvent::TextDelta("Hi".into()),
        StreamEvent::TextDelta("".into()),
        StreamEvent::TextDelta(" there".into()),
        StreamEvent::Finish(FinishReason::Length),
        StreamEvent::Usage(Usage {
            input_tokens: 12,
            output_tokens: 5,
            cache_read_tokens: 2,
            ..Usage::default()
        }),
    ];
    let frames = frames(&encode_events(&events, ctx("gw-7", "alias")));
    let expected = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "msg_gw-7", "type": "message", "role": "assistant", "content": [], "model": "alias",
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let expected: Vec<(String, Value)> = expected
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    assert_eq!(frames, expected);
}

#[test]
fn stream_encoder_blocks_follow_kind_changes_and_tool_calls() {
    let events = [
        StreamEvent::Start {
            id: "x".into(),
            model: "y".into(),
        },
        StreamEvent::ReasoningDelta("a".into()),
        StreamEvent::ReasoningSignature("s1".into()),
        // A second reasoning run after a signature is a new thinking block.
        StreamEvent::ReasoningDelta("b".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "fa".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"x\":".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "fb".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{}".into(),
        },
        // A late fragment of the first call keeps that call's block index.
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "1}".into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
    ];
    let frames = frames(&encode_events(&events, ctx("x", "y")));
    let starts: Vec<(u64, String)> = frames
        .iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, d)| {
            (
                d["index"].as_u64().unwrap(),
                d["content_block"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        starts,
        vec![
            (0, "thinking".to_owned()),
            (1, "thinking".to_owned()),
            (2, "tool_use".to_owned()),
            (3, "tool_use".to_owned())
        ]
    );
    let tool_deltas: Vec<(u64, String)> = frames
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| {
            (
                d["index"].as_u64().unwrap(),
                d["delta"]["partial_json"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        tool_deltas,
        vec![
            (2, "{\"x\":".to_owned()),
            (3, "{}".to_owned()),
            (2, "1}".to_owned())
        ]
    );
    let tool_start = &frames
        .iter()
        .find(|(_, d)| d["index"] == 3 && d["content_block"].is_object())
        .unwrap()
        .1;
    assert_eq!(
        tool_start["content_block"],
        json!({"type": "tool_use", "id": "call_b", "name": "fb", "input": {}})
    );
    assert_eq!(
        frames[frames.len() - 2].1["delta"]["stop_reason"],
        json!("tool_use")
    );
}

#[test]
fn stream_encoder_error_ends_the_stream() {
    let mut encoder = AnthropicIngress.stream_encoder(ctx("e", "m"));
    let mut out = Vec::new();
    encoder.event(&StreamEvent::TextDelta("partial".into()), &mut out);
    encoder.error(
        &ClientError {
            status: 529,
            kind: ErrorKind::Overloaded,
            code: "upstream_overloaded",
            message: "Overloaded".into(),
            param: None,
        },
        &mut out,
    );
    encoder.event(&StreamEvent::TextDelta("more".into()), &mut out);
    encoder.finish(&mut out);
    let frames = frames(&out);
    assert_eq!(
        frames.last().unwrap(),
        &(
            "error".to_owned(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        )
    );
    assert!(
        frames
            .iter()
            .all(|(name, _)| name != "message_stop" && name != "message_delta")
    );

    // An upstream in-stream error relayed as an event ends the stream the same way.
    let relayed = encode_events(
        &[StreamEvent::Error(crate::dialect::interrupted(
            "upstream went away",
        ))],
        ctx("e", "m"),
    );
    let relayed = self::frames(&relayed);
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].1["error"]["type"], json!("api_error"));
}

#[test]
fn empty_stream_still_has_a_complete_envelope() {
    let frames = frames(&encode_events(&[], ctx("msg_e", "m")));
    let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    assert_eq!(frames[1].1["delta"]["stop_reason"], json!("end_turn"));
    assert_eq!(frames[1].1["usage"], json!({"output_tokens": 0}));
}

/// Request bodies the one-pass reader of common requests must read exactly as the full
/// decoder does: the first ones in its common form, the rest for the full decoder (each
/// variation of the common form that needs it).
const COMMON_FORM: &[&str] = &[
    include_str!("../../tests/fixtures/requests/anthropic/plain.json"),
    include_str!("../../tests/fixtures/requests/anthropic/sampling.json"),
    include_str!("../../tests/fixtures/requests/anthropic/system_multi_turn.json"),
    r#"{"messages": [{"content": "hi", "role": "user"}], "max_tokens": 1, "model": "m"}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "caf\u00e9 \"quoted\" \n line"}], "stop_sequences": []}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": []}, {"role": "user", "content": ""}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"text": "t", "type": "text", "cache_control": null}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": "t", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": "", "stream": null, "metadata": null}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": [], "metadata": {"user_id": null, "x": 1}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": null, "temperature": null, "top_p": 1, "top_k": 0}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": "be brief", "service_tier": "auto", "x": {"y": [1, 2.5, null, -3, 1e300]}}"#,
    r#" {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "a"}], "temperature": 0.7, "stream": false} "#,
    include_str!("../../tests/fixtures/requests/anthropic/json_schema.json"),
    include_str!("../../tests/fixtures/requests/anthropic/parallel_tools.json"),
    include_str!("../../tests/fixtures/requests/anthropic/tools.json"),
    include_str!("../../tests/fixtures/requests/anthropic/unknown_fields.json"),
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "a"}], "tool_choice": {"type": "auto"}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "thinking": {"type": "disabled"}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "output_config": {"effort": "low"}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"input": null, "name": "f", "type": "tool_use", "id": "t1", "cache_control": {"type": "ephemeral"}}]}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "tool_result", "tool_use_id": "t1", "content": null, "is_error": null, "cache_control": {"type": "ephemeral"}}, {"type": "tool_result", "tool_use_id": "t2", "content": "4\n2", "is_error": true}, {"type": "tool_result", "tool_use_id": "t3", "content": [{"type": "text", "text": "x", "cache_control": null}]}, {"type": "tool_result", "tool_use_id": "t4", "content": ""}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "tools": null, "tool_choice": null, "thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": null}"#,
    include_str!("../../tests/fixtures/requests/anthropic/images.json"),
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"source": {"data": "/9j/4A==", "media_type": "image/jpeg", "type": "base64"}, "type": "image", "cache_control": null}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "\/9j\u002f4A=="}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}, "cache_control": {"type": "ephemeral"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "screen:", "cache_control": {"type": "ephemeral"}}, {"source": {"data": "iVBORw0KGgo=", "media_type": "image/png", "type": "base64"}, "type": "image", "cache_control": {"type": "ephemeral"}}], "is_error": false}, {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "\/9j\/4A=="}, "cache_control": null}], "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "next?"}]}]}"#,
    include_str!("../../tests/fixtures/requests/anthropic/thinking.json"),
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"signature": "", "thinking": "t \"q\"", "type": "thinking"}, {"type": "thinking", "thinking": ""}, {"type": "text", "text": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}, "title": "t", "context": "c", "citations": {"enabled": true}, "cache_control": {"type": "ephemeral"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}, {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"content": [{"citations": null, "title": null, "context": "c \"q\"", "source": {"data": "\/9j\u002f4A==", "media_type": "application/pdf", "type": "base64"}, "type": "document", "cache_control": null}, {"type": "text", "text": "sum"}], "role": "user"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a"}}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "the report"}, {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}, "title": "r.pdf", "cache_control": {"type": "ephemeral"}}]}]}]}"#,
    // An earlier cited answer sent back: its blocks' citations, none, null and an empty list.
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "text", "text": "According to it, ", "citations": null}, {"type": "text", "text": "the grass is green", "citations": [{"type": "char_location", "cited_text": "The grass is green. ", "document_index": 0, "document_title": "Facts", "start_char_index": 0, "end_char_index": 20}]}, {"type": "text", "text": ".", "citations": []}]}]}"#,
];

const FULL_FORM: &[&str] = &[
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}, "x": 1}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf", "x": 1}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}, "title": "a", "title": "b"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "data": "JVBERi0xLjQK"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "title": "t"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}, "text": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "text", "media_type": "text/plain", "data": "a"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}, "title": "t"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "system": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}], "messages": [{"role": "user", "content": "q"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "f"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "cache_control": {"type": "ephemeral"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "thinking", "signature": "s"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": null}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "text": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "redacted_thinking", "data": "d", "signature": "s"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "redacted_thinking"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "thinking": "t"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x", "x": 1}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "QQ=="}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QQ==", "url": "https://x"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": 5}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}, "text": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "source": {"type": "url", "url": "https://x"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "text": "b"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"text": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}, "text": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_use", "id": "x", "name": "y", "input": {}}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_result", "tool_use_id": "u", "content": "a"}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": {"type": "text", "text": "a"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "a"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "no"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "tool_use_id": "u"}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "tools": {"name": "f"}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "tool_choice": {"type": "sometimes"}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "tools": [], "tools": []}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "a", "name": "n"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "system", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "robot", "content": "a"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": null}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": 7}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"content": "a"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": 3}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "model": "n"}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "x": 1, "x": 2}"#,
    r#"{"model": "m", "max_tokens": -1, "messages": [{"role": "user", "content": "q"}]}"#,
    r#"{"model": "m", "max_tokens": null, "messages": [{"role": "user", "content": "q"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "stream": "yes"}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "stop_sequences": "END"}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "metadata": {"user_id": 5}}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": null}"#,
    r#"{"model": null, "max_tokens": 9, "messages": [{"role": "user", "content": "q"}]}"#,
    r#"{"max_tokens": 9, "messages": [{"role": "user", "content": "q"}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "q"}]}"#,
    r#"{"model": "m", "max_tokens": 9}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}]} trailing"#,
    "{\"model\": \"m\", \"max_tokens\": 9, \"messages\": [{\"role\": \"user\", \"content\": \"a\tb\"}]}",
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "lone \ud800 surrogate"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "system": [{"type": "text", "text": "\udc00"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": null}]}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "bad \x escape"}]}"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}], "x": 1e400}"#,
    r#"[1, 2]"#,
    r#"{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "a"}"#,
];

#[test]
fn common_requests_are_read_in_one_pass_exactly_as_the_full_decoder_reads_them() {
    // Long texts with escapes across the whole of them.
    let long = format!(
        r#"{{"model": "m", "max_tokens": 9, "system": [{{"type": "text", "text": "{}"}}], "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "line\\n \\\"q\\\" café \\u00e9 ".repeat(500),
        "x".repeat(70_000)
    );
    // A long document's data, read as a text of the body (raw, past the body's UTF-8 check).
    let pdf = format!(
        r#"{{"model": "m", "max_tokens": 9, "messages": [{{"role": "user", "content": [{{"type": "document", "source": {{"type": "base64", "media_type": "application/pdf", "data": "{}"}}, "title": "long.pdf"}}, {{"type": "text", "text": "Summarise."}}]}}]}}"#,
        "JVBERi0xLjQK".repeat(8_000)
    );
    crate::one_pass::assert_reads_as_the_full_decoder(
        common::decode,
        ingress::decode_chat_full,
        &AnthropicIngress,
        COMMON_FORM,
        &[&long, &pdf],
        FULL_FORM,
    );
}

#[test]
fn text_deltas_are_byte_for_byte_what_serde_writes() {
    use super::stream::AnthropicStreamEncoder;
    use super::wire::{ContentBlockDelta, MessageStreamEvent};
    for index in [0, 7, 4_000_000_000] {
        for text in [
            "Hel",
            "lo é",
            "\"quoted\" \\ \n\t\u{1}",
            "🚀</script>",
            " ",
            "\u{7f}\u{2028}",
        ] {
            let (mut ours, mut serde) = (Vec::new(), Vec::new());
            AnthropicStreamEncoder::text_delta(index, text, &mut ours);
            AnthropicStreamEncoder::write(
                &MessageStreamEvent::ContentBlockDelta {
                    index,
                    delta: ContentBlockDelta::TextDelta { text: text.into() },
                },
                &mut serde,
            );
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}

/// A thinking delta and a tool call's input fragment written by hand are what serde writes for
/// the wire events.
#[test]
fn thinking_and_input_deltas_are_byte_for_byte_what_serde_writes() {
    use super::stream::AnthropicStreamEncoder;
    use super::wire::{ContentBlockDelta, MessageStreamEvent};
    for index in [0, 7, u32::MAX] {
        for thinking in [
            "Let me think",
            " about \"this\"\n\tstep",
            "caf\u{e9} \u{65e5}\u{672c} \u{1f600}",
            "\u{7f}\u{1}<>&'\\",
        ] {
            let (mut ours, mut serde) = (Vec::new(), Vec::new());
            AnthropicStreamEncoder::thinking_delta(index, thinking, &mut ours);
            AnthropicStreamEncoder::input_json_delta(index, thinking, &mut ours);
            for delta in [
                ContentBlockDelta::ThinkingDelta {
                    thinking: thinking.into(),
                },
                ContentBlockDelta::InputJsonDelta {
                    partial_json: thinking.into(),
                },
            ] {
                AnthropicStreamEncoder::write(
                    &MessageStreamEvent::ContentBlockDelta { index, delta },
                    &mut serde,
                );
            }
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}

/// The events every streamed answer has (its start, a text block's start and stop, its end)
/// are written by hand, byte for byte as serde writes the wire events.
#[test]
fn a_streams_fixed_events_are_byte_for_byte_what_serde_writes() {
    use super::stream::AnthropicStreamEncoder as E;
    use super::wire::{self, ContentBlock, MessageDelta, MessageStreamEvent};
    let serde = |event: MessageStreamEvent| {
        let mut out = Vec::new();
        E::write(&event, &mut out);
        String::from_utf8(out).unwrap()
    };
    let text = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    };
    let usages = [
        Usage::default(),
        Usage {
            input_tokens: 1000,
            output_tokens: 50,
            cache_read_tokens: 600,
            cache_write_tokens: 100,
            cache_write_1h_tokens: 40,
            web_search_requests: 2,
            ..Default::default()
        },
        Usage {
            output_tokens: u64::MAX,
            web_fetch_requests: 1,
            ..Default::default()
        },
    ];
    for (id, model) in [
        ("msg_1", "my-alias"),
        ("msg_\"é\u{1}", "al\\ias 日本"),
        ("", ""),
    ] {
        for usage in &usages {
            let message = wire::Message {
                id: id.into(),
                kind: "message".into(),
                role: "assistant".into(),
                content: Vec::new(),
                model: model.into(),
                stop_reason: None,
                stop_sequence: None,
                usage: Some(wire::Usage::full(usage)),
                rest: serde_json::Map::new(),
            };
            assert_eq!(
                text(&|out| E::message_start(id, model, usage, out)),
                serde(MessageStreamEvent::MessageStart { message })
            );
        }
    }
    for index in [0, 7, u32::MAX] {
        assert_eq!(
            text(&|out| E::text_block_start(index, out)),
            serde(MessageStreamEvent::ContentBlockStart {
                index,
                content_block: ContentBlock::Text {
                    text: String::new(),
                    citations: None,
                },
            })
        );
        assert_eq!(
            text(&|out| E::block_stop(index, out)),
            serde(MessageStreamEvent::ContentBlockStop { index })
        );
        for (id, name) in [
            ("toolu_01A09q90qw90lq917835lq9", "get_weather"),
            ("call_\"é\u{1}", "na\\me 日本"),
            ("", ""),
        ] {
            assert_eq!(
                text(&|out| E::tool_block_start(index, id, name, out)),
                serde(MessageStreamEvent::ContentBlockStart {
                    index,
                    content_block: ContentBlock::ToolUse {
                        id: id.into(),
                        name: name.into(),
                        input: serde_json::Value::Object(serde_json::Map::new()),
                    },
                })
            );
        }
    }
    for reason in [
        FinishReason::Stop,
        FinishReason::StopSequence(Some("\n\nHuman:\"".into())),
        FinishReason::StopSequence(None),
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::Other("pause_turn".into()),
    ] {
        for usage in &usages {
            let (stop_reason, stop_sequence) = wire::stop_reason(&reason);
            let expected = serde(MessageStreamEvent::MessageDelta {
                delta: MessageDelta {
                    stop_reason: Some(stop_reason.to_owned()),
                    stop_sequence: stop_sequence.map(str::to_owned),
                },
                usage: Some(E::delta_usage(usage)),
            }) + &serde(MessageStreamEvent::MessageStop);
            assert_eq!(
                text(&|out| E::message_end(stop_reason, stop_sequence, usage, out)),
                expected
            );
        }
    }
}

/// The Anthropic reader shares unescaped texts with the body too: a system prompt and a
/// message, as a string and as blocks.
#[test]
fn texts_without_escapes_share_the_body() {
    let long = "a long system prompt ".repeat(500);
    let body = Bytes::from(
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "system": long,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": long}]},
                {"role": "assistant", "content": "line one\nline two"}
            ]
        })
        .to_string(),
    );
    let request = AnthropicIngress.decode_chat(&body).unwrap();
    let texts: Vec<&Text> = request
        .messages
        .iter()
        .map(|m| match &m.content[0] {
            ContentPart::Text { text, .. } => text,
            other => panic!("a text part, not {other:?}"),
        })
        .collect();
    let inside = |t: &Text| body.as_ptr_range().contains(&t.as_ptr());
    assert!(inside(texts[0]) && texts[0].is_json_plain() && *texts[0] == long);
    assert!(inside(texts[1]) && texts[1].is_json_plain() && *texts[1] == long);
    assert!(!inside(texts[2]) && !texts[2].is_json_plain());
    assert_eq!(*texts[2], "line one\nline two");
}

/// A long prompt without escapes goes into the Anthropic request as a slice of the client's
/// body (system prompt, message text, tool result), and the body is byte for byte what the
/// same request with copied texts gives.
#[test]
fn long_texts_without_escapes_are_spliced_into_the_request() {
    use crate::openai::OpenAiIngress;

    let long = "words and more words, <tags> & ünïcödé ✓ ".repeat(1000);
    let openai = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": long},
            {"role": "user", "content": [{"type": "text", "text": long}, {"type": "text", "text": "short"}]},
            {"role": "assistant", "content": "a \"quoted\" line\n"}
        ]
    });
    let anthropic = json!({
        "model": MODEL,
        "max_tokens": 10,
        "system": long,
        "messages": [{"role": "user", "content": [{"type": "text", "text": long,
            "cache_control": {"type": "ephemeral"}}]}]
    });
    let decoders: [(&dyn IngressDialect, Value, usize); 2] = [
        (&OpenAiIngress, openai, 3),
        (&AnthropicIngress, anthropic, 3),
    ];
    for (ingress, request, shared) in decoders {
        let body = Bytes::from(request.to_string());
        let mut request = ingress.decode_chat(&body).unwrap();
        let ContentPart::Text { text: system, .. } = &request.messages[0].content[0] else {
            panic!("a text part");
        };
        // A tool's long result, as an agent sends a file it read (shared with the body too).
        let result = ContentPart::ToolResult {
            tool_call_id: "call_1".into(),
            content: vec![ContentPart::Text {
                text: system.clone(),
                cache_control: None,
                citations: None,
            }],
            name: None,
            is_error: false,
        };
        request.messages.extend([
            message(
                Role::Assistant,
                vec![tool_call("call_1", "read_file", "{}")],
            ),
            message(Role::Tool, vec![result]),
        ]);
        let mut copied = request.clone();
        for message in &mut copied.messages {
            for part in &mut message.content {
                if let ContentPart::Text { text, .. } = part {
                    *text = Text::from(text.as_str());
                }
                if let ContentPart::ToolResult { content, .. } = part {
                    for part in content {
                        if let ContentPart::Text { text, .. } = part {
                            *text = Text::from(text.as_str());
                        }
                    }
                }
            }
        }
        let written = AnthropicProvider.build_chat(&request, &target()).unwrap();
        let expected = AnthropicProvider.build_chat(&copied, &target()).unwrap();
        assert!(!expected.body().is_spliced());
        assert_eq!(written.body().to_vec(), expected.body().to_vec());
        let pieces = written.body().clone().into_pieces();
        let inside = |piece: &Bytes| body.as_ptr_range().contains(&piece.as_ptr());
        assert_eq!(pieces.iter().filter(|p| inside(p)).count(), shared);
        assert_eq!(pieces.len(), 2 * shared + 1, "no empty piece");
        let sent: Value = serde_json::from_slice(&written.body().to_vec()).unwrap();
        assert_eq!(sent["system"], long.as_str());
    }
}

// ---------------------------------------------------------------- citations

/// An answer that cites a text document, as the Messages API splits one: an uncited lead-in,
/// then each cited claim in a text block of its own.
const CITED_MESSAGE: &str = r#"{"id":"msg_01C","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"According to the document, ","citations":null},{"type":"text","text":"the grass is green","citations":[{"type":"char_location","cited_text":"The grass is green. ","document_index":0,"document_title":"Facts","start_char_index":0,"end_char_index":20}]},{"type":"text","text":" and ","citations":null},{"type":"text","text":"the sky is blue","citations":[{"type":"char_location","cited_text":"The sky is blue.","document_index":0,"document_title":"Facts","start_char_index":20,"end_char_index":36},{"type":"page_location","cited_text":"Blue sky.","document_index":1,"document_title":null,"start_page_number":2,"end_page_number":3}]}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":610,"output_tokens":31}}"#;

/// The same answer streamed: each block's citations come as `citations_delta` events.
fn cited_stream() -> String {
    let message: Value = serde_json::from_str(CITED_MESSAGE).unwrap();
    let mut out = String::new();
    let mut event = |data: Value| {
        out.push_str(&format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        ));
    };
    event(
        json!({"type": "message_start", "message": {"id": "msg_01C", "type": "message",
        "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 610, "output_tokens": 1}}}),
    );
    for (index, block) in message["content"].as_array().unwrap().iter().enumerate() {
        event(json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "text", "text": "", "citations": null}}));
        for citation in block["citations"].as_array().into_iter().flatten() {
            event(json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "citations_delta", "citation": citation}}));
        }
        event(json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "text_delta", "text": block["text"]}}));
        event(json!({"type": "content_block_stop", "index": index}));
    }
    event(
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn",
        "stop_sequence": null}, "usage": {"output_tokens": 31}}),
    );
    event(json!({"type": "message_stop"}));
    out
}

/// The answer's text blocks as `(text, citations)`, citations absent when none.
fn text_blocks(content: &Value) -> Vec<(String, Option<Value>)> {
    content
        .as_array()
        .unwrap()
        .iter()
        .map(|block| {
            assert_eq!(block["type"], "text", "{block}");
            let citations = block.get("citations").filter(|c| !c.is_null()).cloned();
            (block["text"].as_str().unwrap().to_owned(), citations)
        })
        .collect()
}

/// The content blocks an SDK builds from a stream's frames: a block per start, its text
/// deltas appended, each citation added to the block's list.
fn accumulated_blocks(bytes: &[u8]) -> Value {
    let mut blocks: Vec<Value> = Vec::new();
    for (name, data) in frames(bytes) {
        let index = data["index"].as_u64().map(|i| i as usize);
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(index, Some(blocks.len()), "blocks are numbered in order");
                blocks.push(data["content_block"].clone());
            }
            "content_block_delta" => {
                let block = &mut blocks[index.unwrap()];
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        );
                        block["text"] = Value::String(text);
                    }
                    "citations_delta" => {
                        if !block["citations"].is_array() {
                            block["citations"] = json!([]);
                        }
                        block["citations"]
                            .as_array_mut()
                            .unwrap()
                            .push(delta["citation"].clone());
                    }
                    "input_json_delta" => {
                        let input = format!(
                            "{}{}",
                            block["partial_input"].as_str().unwrap_or(""),
                            delta["partial_json"].as_str().unwrap()
                        );
                        block["partial_input"] = Value::String(input);
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            _ => {}
        }
    }
    // A call's input is whole once its fragments are joined, as SDKs join them.
    for block in &mut blocks {
        if let Some(input) = block
            .as_object_mut()
            .and_then(|b| b.remove("partial_input"))
        {
            block["input"] = serde_json::from_str(input.as_str().unwrap()).unwrap();
        }
    }
    Value::Array(blocks)
}

#[test]
fn a_cited_answer_reaches_an_anthropic_client_block_for_block() {
    let original: Value = serde_json::from_str(CITED_MESSAGE).unwrap();
    let response = AnthropicProvider
        .parse_chat(CITED_MESSAGE.as_bytes())
        .unwrap();
    assert_eq!(response.content.len(), 4);
    let ContentPart::Text { citations, .. } = &response.content[1] else {
        panic!("expected text, got {:?}", response.content[1]);
    };
    assert_eq!(
        citations.as_ref(),
        Some(&original["content"][1]["citations"])
    );
    assert_eq!(
        response.text(),
        "According to the document, the grass is green and the sky is blue"
    );

    let encoded = AnthropicIngress.encode_chat(&response, &ctx("gw-1", "alias"));
    let encoded: Value = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(
        text_blocks(&encoded["content"]),
        text_blocks(&original["content"])
    );

    // An OpenAI client gets the text whole, without Anthropic's citations.
    let openai = crate::openai::OpenAiIngress.encode_chat(&response, &ctx("gw-1", "alias"));
    let openai: Value = serde_json::from_slice(&openai).unwrap();
    assert_eq!(
        openai["choices"][0]["message"]["content"],
        "According to the document, the grass is green and the sky is blue"
    );
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&openai).unwrap()).contains("cited_text"));
}

#[test]
fn a_cited_stream_reaches_an_anthropic_client_block_for_block() {
    let original: Value = serde_json::from_str(CITED_MESSAGE).unwrap();
    let stream = cited_stream();
    let events = decode_chunks(&[stream.as_bytes()]).unwrap();
    let citations: Vec<&Value> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Citation(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(citations.len(), 3);
    assert_eq!(citations[0], &original["content"][1]["citations"][0]);
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == StreamEvent::TextBlockStart)
            .count(),
        4
    );
    // The same events whatever the chunking.
    let bytes = stream.as_bytes();
    for i in 0..=bytes.len() {
        assert_eq!(
            decode_chunks(&[&bytes[..i], &bytes[i..]]).unwrap(),
            events,
            "split at {i}"
        );
    }

    let encoded = encode_events(&events, ctx("gw-2", "alias"));
    assert_eq!(
        text_blocks(&accumulated_blocks(&encoded)),
        text_blocks(&original["content"])
    );
    assert_eq!(decode_chunks(&[&encoded]).unwrap()[2..], events[2..]);

    // An OpenAI client's chunks carry the text alone.
    let mut encoder = crate::openai::OpenAiIngress.stream_encoder(ctx("gw-2", "alias"));
    let mut out = Vec::new();
    for event in &events {
        encoder.event(event, &mut out);
    }
    encoder.finish(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("cited_text"), "{out}");
    let mut text = String::new();
    for line in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if let Ok(chunk) = serde_json::from_str::<Value>(line)
            && let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str()
        {
            text.push_str(delta);
        }
    }
    assert_eq!(
        text,
        "According to the document, the grass is green and the sky is blue"
    );
}

#[test]
fn an_earlier_cited_answer_goes_back_to_anthropic_with_its_citations() {
    let citation = json!({"type": "char_location", "cited_text": "The grass is green. ",
        "document_index": 0, "document_title": "Facts", "start_char_index": 0, "end_char_index": 20});
    let body = json!({"model": MODEL, "max_tokens": 64, "messages": [
        {"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                "data": "The grass is green. The sky is blue."}, "title": "Facts",
                "citations": {"enabled": true}},
            {"type": "text", "text": "What colour is the grass?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "According to the document, ", "citations": null},
            {"type": "text", "text": "the grass is green", "citations": [citation]}]},
        {"role": "user", "content": "And the sky?"}]});
    let request = decode(&body).unwrap();
    let (_, sent) = build(&request);
    assert_eq!(
        sent["messages"][1]["content"],
        json!([
            {"type": "text", "text": "According to the document, "},
            {"type": "text", "text": "the grass is green", "citations": [citation]}
        ])
    );
    assert_eq!(
        sent["messages"][0]["content"][0]["citations"],
        json!({"enabled": true})
    );
}

// ---------------------------------------------------------------- search results

fn search_result(source: &str, title: &str, texts: &[&str]) -> Value {
    let content: Vec<Value> = texts
        .iter()
        .map(|t| json!({"type": "text", "text": t}))
        .collect();
    json!({"type": "search_result", "source": source, "title": title, "content": content,
        "citations": {"enabled": true}})
}

#[test]
fn search_results_go_to_anthropic_whole_and_to_other_providers_as_text() {
    let top = search_result(
        "https://kb.example/grass",
        "Grass",
        &["The grass is green.", "It grows."],
    );
    let mut marked = search_result("kb://sky", "Sky", &["The sky is blue."]);
    marked["cache_control"] = json!({"type": "ephemeral"});
    let body = json!({"model": MODEL, "max_tokens": 64, "messages": [
        {"role": "user", "content": [top.clone(), {"type": "text", "text": "What colour is the grass?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "sky"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "One hit."}, marked.clone()]}]}]});
    let request = decode(&body).unwrap();
    assert_eq!(
        request.messages[0].content[0],
        ContentPart::text("Grass\nhttps://kb.example/grass\n\nThe grass is green.\n\nIt grows.")
    );

    let (_, sent) = build(&request);
    assert_eq!(sent["messages"][0]["content"][0], top);
    assert_eq!(sent["messages"][2]["content"][0]["content"][1], marked);
    assert_eq!(
        sent["messages"][2]["content"][0]["content"][0],
        json!({"type": "text", "text": "One hit."})
    );

    // An OpenAI-style provider reads the results as text.
    let built = openai_provider()
        .build_chat(&request, &target())
        .unwrap()
        .map(ProviderBody::into_vec);
    let sent: Value = serde_json::from_slice(built.body()).unwrap();
    let text = sent.to_string();
    assert!(
        text.contains(r"Grass\nhttps://kb.example/grass\n\nThe grass is green."),
        "{text}"
    );
    assert!(
        text.contains(r"Sky\nkb://sky\n\nThe sky is blue."),
        "{text}"
    );
    assert!(!text.contains("search_result"), "{text}");
}

#[test]
fn search_results_out_of_place_are_refused_naming_the_block() {
    let with_image = json!({"type": "search_result", "source": "s", "title": "t", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]});
    let error = decode_err(json!({"model": MODEL, "max_tokens": 9, "messages": [
        {"role": "user", "content": [with_image]}]}));
    assert_eq!(
        error.param.as_deref(),
        Some("messages[0].content[0].content[0].type")
    );
    assert!(error.message.contains("text blocks"), "{}", error.message);

    let error = decode_err(json!({"model": MODEL, "max_tokens": 9, "messages": [
        {"role": "assistant", "content": [search_result("s", "t", &["x"])]}]}));
    assert_eq!(error.param.as_deref(), Some("messages[0].content[0].type"));
    assert!(error.message.contains("user messages"), "{}", error.message);

    let error = decode_err(json!({"model": MODEL, "max_tokens": 9, "messages": [
        {"role": "user", "content": [{"type": "search_result", "source": "s", "content": []}]}]}));
    assert!(error.message.contains("title"), "{}", error.message);
}

#[test]
fn a_custom_content_document_goes_to_anthropic_whole_and_to_others_as_plain_text() {
    let document = json!({"type": "document", "source": {"type": "content", "content": [
        {"type": "text", "text": "The grass is green."},
        {"type": "text", "text": "The sky is blue."}]},
        "title": "Facts", "context": "Field notes", "citations": {"enabled": true}});
    let in_result =
        json!({"type": "document", "source": {"type": "content", "content": "One chunk."}});
    let body = json!({"model": MODEL, "max_tokens": 64, "messages": [
        {"role": "user", "content": [document.clone(), {"type": "text", "text": "Colours?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
            "content": [in_result.clone()]}]}]});
    let request = decode(&body).unwrap();
    let ContentPart::Document { source, title, .. } = &request.messages[0].content[0] else {
        panic!(
            "expected a document, got {:?}",
            request.messages[0].content[0]
        );
    };
    assert_eq!(
        source,
        &crate::canonical::DocumentSource::Text {
            media_type: "text/plain".into(),
            data: "The grass is green.\nThe sky is blue.".into()
        }
    );
    assert_eq!(title.as_deref(), Some("Facts"));

    let (_, sent) = build(&request);
    assert_eq!(sent["messages"][0]["content"][0], document);
    assert_eq!(sent["messages"][2]["content"][0]["content"][0], in_result);

    let built = openai_provider()
        .build_chat(&request, &target())
        .unwrap()
        .map(ProviderBody::into_vec);
    let text = String::from_utf8(built.into_body()).unwrap();
    assert!(
        text.contains(r"The grass is green.\nThe sky is blue."),
        "{text}"
    );
    assert!(text.contains("One chunk."), "{text}");
    assert!(!text.contains(r#""type":"content""#), "{text}");
}

#[test]
fn an_anthropic_clients_beta_and_version_headers_go_on_as_headers_only() {
    let mut headers = HeaderMap::new();
    headers.append(
        "anthropic-beta",
        "interleaved-thinking-2025-05-14".parse().unwrap(),
    );
    headers.append("anthropic-beta", " context-1m-2025-08-07 ".parse().unwrap());
    headers.append("anthropic-version", "2023-06-01".parse().unwrap());
    let body = json!({"model": MODEL, "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
        "context_management": {"edits": []}});
    let mut request = decode(&body).unwrap();
    AnthropicIngress.keep_headers(&headers, &mut request);
    let (built, sent) = build(&request);
    assert_eq!(
        built.headers()["anthropic-beta"],
        "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    );
    assert_eq!(built.headers()["anthropic-version"], "2023-06-01");
    // The version the gateway sends anyway is not kept; another one is.
    assert!(!request.extras.fields.contains_key("anthropic-version"));
    let mut other_version = HeaderMap::new();
    other_version.append("anthropic-version", "2024-01-01".parse().unwrap());
    let mut versioned = decode(&body).unwrap();
    AnthropicIngress.keep_headers(&other_version, &mut versioned);
    assert_eq!(
        build(&versioned).0.headers()["anthropic-version"],
        "2024-01-01"
    );
    // The beta feature's body field goes too; the headers never go into the body.
    assert_eq!(sent["context_management"], json!({"edits": []}));
    assert!(sent.get("anthropic-beta").is_none() && sent.get("anthropic-version").is_none());

    // Without them (or from another dialect): the gateway's version, no beta.
    let plain = decode(&body).unwrap();
    let (built, _) = build(&plain);
    assert!(built.headers().get("anthropic-beta").is_none());
    assert_eq!(built.headers()["anthropic-version"], "2023-06-01");
    // Another dialect's provider never sees them.
    let built = openai_provider()
        .build_chat(&request, &target())
        .unwrap()
        .map(ProviderBody::into_vec);
    assert!(built.headers().get("anthropic-beta").is_none());
    let text = String::from_utf8(built.into_body()).unwrap();
    assert!(!text.contains("anthropic-"), "{text}");
}

#[test]
fn a_token_count_goes_to_count_tokens_with_only_the_members_it_takes() {
    let mut headers = HeaderMap::new();
    headers.append(
        "anthropic-beta",
        "context-management-2025-06-27".parse().unwrap(),
    );
    let body = json!({"model": MODEL, "max_tokens": 9, "temperature": 0.5, "stream": true,
        "stop_sequences": ["x"], "metadata": {"user_id": "u"},
        "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "context_management": {"edits": []}});
    let mut request = decode(&body).unwrap();
    AnthropicIngress.keep_headers(&headers, &mut request);
    let built = AnthropicProvider
        .build_count_tokens(&request, &target())
        .expect("Anthropic counts tokens")
        .unwrap();
    assert_eq!(
        built.uri().to_string(),
        "https://api.anthropic.com/v1/messages/count_tokens"
    );
    assert_eq!(
        built.headers()["anthropic-beta"],
        "context-management-2025-06-27"
    );
    assert_eq!(built.headers()["x-api-key"], "sk-ant-test");
    let sent: Value = serde_json::from_slice(built.body()).unwrap();
    let mut members: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        ["context_management", "messages", "model", "system", "tools"]
    );
    assert_eq!(sent["model"], "claude-target");

    assert_eq!(
        AnthropicProvider.parse_count_tokens(br#"{"input_tokens": 2095}"#),
        Ok(2095)
    );
    let error = AnthropicProvider.parse_count_tokens(b"{}").unwrap_err();
    assert_eq!(error.class, ErrorClass::MalformedResponse);
    // Providers without a counting endpoint say so.
    let openai = openai_provider();
    assert!(openai.build_count_tokens(&request, &target()).is_none());
}

/// An answer that searched the web, as the API writes it: the server tool's call, its
/// result, then text citing the page.
const SEARCHED_MESSAGE: &str = r#"{"id":"msg_ws","type":"message","role":"assistant","model":"claude",
  "content":[
    {"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"trains"}},
    {"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[{"type":"web_search_result",
      "url":"https://example.com/t","title":"Trains","encrypted_content":"RW5j","page_age":null}]},
    {"type":"text","text":"Trains run on time.","citations":[{"type":"web_search_result_location",
      "url":"https://example.com/t","title":"Trains","encrypted_index":"SW5k","cited_text":"On time."}]}],
  "stop_reason":"end_turn","stop_sequence":null,
  "usage":{"input_tokens":10,"output_tokens":5,"server_tool_use":{"web_search_requests":1}}}"#;

/// Claude's web search citations reach an OpenAI client's whole answer as `url_citation`
/// annotations spanning the cited text.
#[test]
fn web_search_citations_reach_openai_clients_as_url_citations() {
    let response = AnthropicProvider
        .parse_chat(SEARCHED_MESSAGE.as_bytes())
        .unwrap();
    let encoded: Value = serde_json::from_slice(
        &crate::openai::OpenAiIngress.encode_chat(&response, &ctx("gw-1", "alias")),
    )
    .unwrap();
    let message = &encoded["choices"][0]["message"];
    assert_eq!(message["content"], "Trains run on time.");
    assert_eq!(
        message["annotations"],
        json!([{"type": "url_citation", "url_citation": {
            "end_index": 19, "start_index": 0, "title": "Trains", "url": "https://example.com/t"}}])
    );
}

#[test]
fn a_server_tools_blocks_reach_an_anthropic_client_whole_and_others_get_the_text() {
    let original: Value = serde_json::from_str(SEARCHED_MESSAGE).unwrap();
    let response = AnthropicProvider
        .parse_chat(SEARCHED_MESSAGE.as_bytes())
        .unwrap();
    assert_eq!(
        response.content[..2],
        [
            ContentPart::ServerTool {
                block: original["content"][0].clone()
            },
            ContentPart::ServerTool {
                block: original["content"][1].clone()
            },
        ]
    );
    assert_eq!(response.usage.unwrap().web_search_requests, 1);
    let encoded: Value =
        serde_json::from_slice(&AnthropicIngress.encode_chat(&response, &ctx("gw-1", "alias")))
            .unwrap();
    assert_eq!(encoded["content"], original["content"]);
    assert_eq!(
        encoded["usage"]["server_tool_use"],
        json!({"web_search_requests": 1, "web_fetch_requests": 0})
    );

    // Streamed: the call opens with an empty input that its fragments fill, the result comes
    // whole, and a client rebuilds the provider's blocks.
    let provider_frames: Vec<Value> = vec![
        json!({"type": "message_start", "message": {"id": "msg_ws", "type": "message", "role": "assistant",
            "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use",
            "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"query\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"trains\"}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": original["content"][1]}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": "", "citations": []}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta",
            "citation": original["content"][2]["citations"][0]}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Trains run on time."}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}}),
        json!({"type": "message_stop"}),
    ];
    let stream: String = provider_frames
        .iter()
        .map(|f| format!("event: {}\ndata: {f}\n\n", f["type"].as_str().unwrap()))
        .collect();
    let events = decode_chunks(&[stream.as_bytes()]).unwrap();
    let encoded = encode_events(&events, ctx("gw-2", "alias"));
    assert_eq!(accumulated_blocks(&encoded), original["content"]);
    let (_, last_delta) = frames(&encoded)
        .into_iter()
        .rfind(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(
        last_delta["usage"]["server_tool_use"]["web_search_requests"],
        1
    );

    // OpenAI clients get the text alone, whole or streamed.
    let body: Value = serde_json::from_slice(
        &crate::openai::OpenAiIngress.encode_chat(&response, &ctx("gw-3", "alias")),
    )
    .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Trains run on time."
    );
    let mut encoder = crate::openai::OpenAiIngress.stream_encoder(ctx("gw-4", "alias"));
    let mut out = Vec::new();
    for event in &events {
        encoder.event(event, &mut out);
    }
    encoder.finish(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(
        !out.contains("srvtoolu_1") && !out.contains("encrypted"),
        "{out}"
    );
}

#[test]
fn a_server_tools_blocks_in_history_go_back_to_anthropic_only() {
    let original: Value = serde_json::from_str(SEARCHED_MESSAGE).unwrap();
    let body = json!({"model": MODEL, "max_tokens": 64, "messages": [
        {"role": "user", "content": "News on trains?"},
        {"role": "assistant", "content": original["content"]},
        {"role": "user", "content": "And buses?"}]});
    let request = decode(&body).unwrap();
    assert!(matches!(
        &request.messages[1].content[0],
        ContentPart::ServerTool { block } if *block == original["content"][0]
    ));
    let (_, sent) = build(&request);
    assert_eq!(sent["messages"][1]["content"], original["content"]);

    let built = openai_provider()
        .build_chat(&request, &target())
        .unwrap()
        .map(ProviderBody::into_vec);
    let sent: Value = serde_json::from_slice(built.body()).unwrap();
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": "Trains run on time."})
    );

    // The provider wrote them: a user message cannot hold them.
    let error = decode_err(json!({"model": MODEL, "max_tokens": 9, "messages": [
        {"role": "user", "content": [original["content"][0].clone()]}]}));
    assert_eq!(error.param.as_deref(), Some("messages[0].content[0].type"));
    assert!(
        error.message.contains("server_tool_use"),
        "{}",
        error.message
    );
}

#[test]
fn a_streamed_redacted_thinking_block_reaches_clients_whole() {
    let events = vec![
        StreamEvent::Start {
            id: "msg_r".into(),
            model: "claude".into(),
        },
        StreamEvent::ReasoningDelta("Let me think.".into()),
        StreamEvent::ReasoningSignature("sig".into()),
        StreamEvent::RedactedReasoning("EmwKAhgB".into()),
        StreamEvent::TextDelta("Done.".into()),
        StreamEvent::Finish(FinishReason::Stop),
    ];
    let encoded = encode_events(&events, ctx("gw-r", "alias"));
    let kinds: Vec<Value> = frames(&encoded)
        .into_iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| data["content_block"].clone())
        .collect();
    assert_eq!(kinds[0]["type"], "thinking");
    assert_eq!(
        kinds[1],
        json!({"type": "redacted_thinking", "data": "EmwKAhgB"})
    );
    assert_eq!(kinds[2]["type"], "text");
    // Read back, the same events (with the start, the usage and where text blocks start).
    let read: Vec<StreamEvent> = decode_chunks(&[&encoded])
        .unwrap()
        .into_iter()
        .filter(|e| {
            !matches!(
                e,
                StreamEvent::Start { .. } | StreamEvent::Usage(_) | StreamEvent::TextBlockStart
            )
        })
        .collect();
    assert_eq!(read, events[1..]);

    // A Responses client gets it as a reasoning item's encrypted content.
    let mut encoder = crate::openai::ResponsesIngress.stream_encoder(ctx("gw-r", "alias"));
    let mut out = Vec::new();
    for event in &events {
        encoder.event(event, &mut out);
    }
    encoder.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""encrypted_content":"EmwKAhgB""#), "{text}");
}

#[test]
fn cache_markers_anywhere_say_how_long_the_written_cache_lives() {
    let with = |extra: Value| {
        let mut body = json!({
            "model": "m",
            "max_tokens": 9,
            "messages": [{"role": "user", "content": "hi"}],
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        decode(&body).unwrap().cache_writes()
    };
    assert_eq!(with(json!({})), None);
    let system =
        json!({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]});
    assert_eq!(with(system), Some(CacheTtl::FiveMinutes));
    let tool = json!({"tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]});
    assert_eq!(with(tool), Some(CacheTtl::Hour));
    // A marker on an image is kept in the message's extras.
    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "what is it?", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
    ]}]});
    assert_eq!(with(image), Some(CacheTtl::Hour));
    // Inside a tool's result.
    let result = json!({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [
            {"type": "text", "text": "sunny", "cache_control": {"type": "ephemeral"}},
        ]}]},
    ]});
    assert_eq!(with(result), Some(CacheTtl::FiveMinutes));
    // Automatic caching, for the whole request.
    let automatic = json!({"cache_control": {"type": "ephemeral", "ttl": "1h"}});
    assert_eq!(with(automatic), Some(CacheTtl::Hour));
}

/// An effort's thinking is left off for a request that goes on after a tool turn that did not
/// think (a client of another dialect cannot send Claude's signed thinking back, and Claude
/// refuses thinking there); a turn that opens with signed or redacted thinking, a new user
/// turn, or an Anthropic client's own budget keep it.
#[test]
fn effort_thinking_is_left_off_after_a_tool_turn_that_did_not_think() {
    let user = |text: &str| message(Role::User, vec![ContentPart::text(text)]);
    let call = || tool_call("toolu_1", "get_weather", r#"{"city":"Oslo"}"#);
    let result = || {
        message(
            Role::Tool,
            vec![ContentPart::ToolResult {
                tool_call_id: "toolu_1".into(),
                name: None,
                content: vec![ContentPart::text("5 degrees")],
                is_error: false,
            }],
        )
    };
    let signed = || ContentPart::Reasoning {
        text: "I need the weather.".into(),
        signature: Some("EqQBCgIYAhIM".into()),
    };
    let unsigned = || ContentPart::Reasoning {
        text: "I need the weather.".into(),
        signature: None,
    };
    let cases = [
        (
            vec![
                user("Oslo?"),
                message(Role::Assistant, vec![call()]),
                result(),
            ],
            true,
        ),
        (
            vec![
                user("Oslo?"),
                message(
                    Role::Assistant,
                    vec![ContentPart::text(""), unsigned(), call()],
                ),
                result(),
            ],
            true,
        ),
        // Two assistant messages in a row are one turn, which opens with the first.
        (
            vec![
                user("Oslo?"),
                message(Role::Assistant, vec![ContentPart::text("Checking.")]),
                message(Role::Assistant, vec![signed(), call()]),
                result(),
            ],
            true,
        ),
        (
            vec![
                user("Oslo?"),
                message(Role::Assistant, vec![call()]),
                result(),
                message(Role::Developer, vec![ContentPart::text("Be brief.")]),
            ],
            true,
        ),
        (
            vec![
                user("Oslo?"),
                message(Role::Assistant, vec![signed(), call()]),
                result(),
            ],
            false,
        ),
        (
            vec![
                user("Oslo?"),
                message(
                    Role::Assistant,
                    vec![
                        ContentPart::RedactedReasoning {
                            data: "EmwK".into(),
                        },
                        call(),
                    ],
                ),
                result(),
            ],
            false,
        ),
        (
            vec![
                user("Oslo?"),
                message(Role::Assistant, vec![call()]),
                result(),
                message(Role::Assistant, vec![ContentPart::text("5 degrees.")]),
                user("Bergen?"),
            ],
            false,
        ),
        (vec![user("Oslo?")], false),
    ];
    for (messages, left_off) in cases {
        assert_eq!(
            super::continues_unthought_tool_turn(&messages),
            left_off,
            "{messages:?}"
        );
        let effort = ChatRequest {
            model: "m".into(),
            messages: messages.clone(),
            temperature: Some(0.3),
            reasoning: Some(Reasoning {
                effort: Some("low".into()),
                budget_tokens: None,
            }),
            ..ChatRequest::default()
        };
        let (_, body) = build(&effort);
        assert_eq!(body.get("thinking").is_none(), left_off, "{body}");
        assert_eq!(body.get("temperature").is_some(), left_off, "{body}");
        let budget = ChatRequest {
            reasoning: Some(Reasoning {
                effort: None,
                budget_tokens: Some(2048),
            }),
            ..effort
        };
        // A budget the client set too: Claude refuses thinking there, whoever asked.
        let (_, body) = build(&budget);
        assert_eq!(body.get("thinking").is_none(), left_off, "{body}");
        if !left_off {
            assert_eq!(body["thinking"]["budget_tokens"], json!(2048), "{body}");
        }
        // An Anthropic client's own thinking likewise.
        let own = ChatRequest {
            reasoning: None,
            extras: Extras::new(
                DialectId::Anthropic,
                serde_json::Map::from_iter([(
                    "thinking".to_owned(),
                    json!({"type": "enabled", "budget_tokens": 2048}),
                )]),
            ),
            ..budget
        };
        let (_, body) = build(&own);
        assert_eq!(body.get("thinking").is_none(), left_off, "{body}");
    }
}

/// Adaptive thinking's budget, for providers that take a budget, stays below `max_tokens`
/// (Claude on Bedrock refuses a budget at or above it), and is none below Claude's least.
#[test]
fn adaptive_thinking_budgets_fit_under_max_tokens() {
    let budget = |max_tokens: u32, effort: Option<&str>| {
        let mut body = json!({"model": MODEL, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}],
            "thinking": {"type": "adaptive"}});
        if let Some(effort) = effort {
            body["output_config"] = json!({"effort": effort});
        }
        decode(&body)
            .unwrap()
            .reasoning
            .and_then(|r| r.budget_tokens)
    };
    assert_eq!(budget(4096, None), Some(4095));
    assert_eq!(budget(32000, None), Some(16384));
    assert_eq!(budget(3000, Some("medium")), Some(2999));
    assert_eq!(budget(1000, Some("low")), None);
    assert_eq!(budget(1025, Some("low")), Some(1024));
}

/// Claude 4.6 and later get an OpenAI-style effort as adaptive thinking at the Messages API's
/// effort (no budget; sampling dropped as for any thinking); earlier Claude a budget. A
/// client's own `output_config.effort` is kept.
#[test]
fn an_effort_is_adaptive_thinking_on_claude_4_6_and_later() {
    for (model, adaptive) in [
        ("claude-opus-4-6", true),
        ("claude-sonnet-4-6", true),
        ("claude-opus-4-7", true),
        ("claude-opus-5", true),
        ("us.anthropic.claude-opus-4-7", true),
        ("anthropic.claude-opus-4-6-v1", true),
        ("claude-sonnet-4-5", false),
        ("claude-sonnet-4-5-20250929", false),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", false),
        ("claude-3-7-sonnet-20250219", false),
        ("claude-opus-4-1", false),
        ("gpt-4o", false),
    ] {
        assert_eq!(super::thinks_adaptively(model), adaptive, "{model}");
    }
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
        temperature: Some(0.3),
        reasoning: Some(Reasoning {
            effort: Some("xhigh".into()),
            budget_tokens: None,
        }),
        ..ChatRequest::default()
    };
    let built = |model: &str, request: &ChatRequest| {
        let target = Target { model, ..target() };
        let built = AnthropicProvider.build_chat(request, &target).unwrap();
        serde_json::from_slice::<Value>(&built.map(ProviderBody::into_vec).into_body()).unwrap()
    };
    let body = built("claude-opus-4-7", &request);
    assert_eq!(body["thinking"], json!({"type": "adaptive"}), "{body}");
    assert_eq!(body["output_config"], json!({"effort": "max"}), "{body}");
    assert!(body.get("temperature").is_none(), "{body}");
    let body = built("claude-sonnet-4-5", &request);
    assert_eq!(body["thinking"]["type"], "enabled", "{body}");
    assert!(body.get("output_config").is_none(), "{body}");
    let mut own = request.clone();
    own.extras = Extras::new(
        DialectId::Anthropic,
        serde_json::Map::from_iter([("output_config".to_owned(), json!({"effort": "low"}))]),
    );
    assert_eq!(
        built("claude-opus-4-6", &own)["output_config"],
        json!({"effort": "low"})
    );
}

#[test]
fn system_messages_among_the_messages_stay_where_the_client_put_them() {
    let body = json!({
        "model": "m",
        "max_tokens": 10,
        "system": "top rules",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Agent types: Explore, Plan."},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "go"}]},
            {"role": "system", "content": [
                {"type": "text", "text": "Write Go.", "cache_control": {"type": "ephemeral"}}
            ]}
        ]
    });
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
    // The fast reader takes a plain one; the full decoder agrees with it.
    let fast = common::decode(&bytes).expect("the fast reader takes system messages");
    let full = ingress::decode_chat_full(&bytes).unwrap();
    for request in [&fast, &full] {
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::System,
                Role::Assistant,
                Role::User,
                Role::System
            ]
        );
    }
    let request = decode(&body).unwrap();
    let (_, out) = build(&request);
    assert_eq!(out["system"], json!("top rules"));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Agent types: Explore, Plan."},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "go"},
            {"role": "system", "content": [
                {"type": "text", "text": "Write Go.", "cache_control": {"type": "ephemeral"}}
            ]}
        ])
    );

    // An OpenAI deployment keeps them where they stand, as its format allows.
    let built = openai_provider()
        .build_chat(&request, &target())
        .unwrap()
        .map(ProviderBody::into_vec);
    let sent: Value = serde_json::from_slice(built.body()).unwrap();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "system", "assistant", "user", "system"]
    );

    // One from an OpenAI client, or one ahead of the conversation, is hoisted as before.
    let mut hoisted = request.clone();
    hoisted.messages[2].extras = Extras::default();
    let (_, out) = build(&hoisted);
    assert_eq!(
        out["system"],
        json!([
            {"type": "text", "text": "top rules"},
            {"type": "text", "text": "Agent types: Explore, Plan."}
        ])
    );
    let first = decode(&json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "system", "content": "first"}, {"role": "user", "content": "hi"}
    ]}))
    .unwrap();
    let (_, out) = build(&first);
    assert_eq!(out["system"], json!("first"));
    assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));

    // Text only, each refusal at its path.
    let error = decode(&json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
    ]}))
    .unwrap_err();
    assert_eq!(error.param.as_deref(), Some("messages[1].content[0].type"));
    let error = decode(&json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "bot", "content": "hi"}
    ]}))
    .unwrap_err();
    assert_eq!(error.param.as_deref(), Some("messages[0].role"));
}

#[test]
fn a_messages_client_only_ever_gets_a_stop_reason_it_knows() {
    use crate::anthropic::wire::{finish_reason, stop_reason};
    // Another provider's reason is an ended turn.
    for other in [
        "MALFORMED_FUNCTION_CALL",
        "OTHER",
        "eos",
        "malformed_tool_use",
    ] {
        assert_eq!(
            stop_reason(&FinishReason::Other(other.into())).0,
            "end_turn"
        );
    }
    // Anthropic's own pass, the context window's too, which other clients read as a length
    // stop.
    for own in ["pause_turn", "refusal", "model_context_window_exceeded"] {
        let reason = finish_reason(Some(own), None);
        assert_eq!(stop_reason(&reason).0, own);
    }
    assert_eq!(
        finish_reason(Some("model_context_window_exceeded"), None).as_openai(),
        "length"
    );
}

#[test]
fn a_temperature_the_messages_api_refuses_is_refused_whatever_the_provider() {
    for (body, param) in [
        (
            json!({"model": "m", "max_tokens": 9, "temperature": 1.5,
                "messages": [{"role": "user", "content": "q"}]}),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "temperature": -1,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
            "temperature",
        ),
    ] {
        let err = AnthropicIngress
            .decode_chat(&Bytes::from(body.to_string()))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {err:?}");
    }
}

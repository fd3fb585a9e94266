// Tests may fail loudly; the workspace denies these lints only for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::HeaderMap;
use serde_json::{Value, json};

use super::event_stream::encode;
use super::*;
use crate::canonical::{
    ChatRequest, ContentPart, DocumentSource, ErrorClass, Extras, FinishReason, ImageSource,
    Message, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use crate::dialect::{ProviderDialect, Target};
use crate::provider_body::ProviderBody;

const BASE: &str = "https://bedrock-runtime.us-east-1.amazonaws.com";
const CLAUDE: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn message(role: Role, content: Vec<ContentPart>) -> Message {
    Message {
        role,
        content,
        name: None,
        extras: Extras::default(),
    }
}

fn build_for(request: &ChatRequest, model: &str, key: Option<&str>) -> (String, Value) {
    let target = Target {
        base_url: BASE,
        model,
        api_key: key,
        api_version: None,
    };
    let built = BedrockProvider
        .build_chat(request, &target)
        .unwrap()
        .map(ProviderBody::into_vec);
    if let Some(key) = key {
        assert_eq!(
            built.headers()["authorization"],
            format!("Bearer {key}").as_str()
        );
    } else {
        assert!(built.headers().get("authorization").is_none());
    }
    (
        built.uri().to_string(),
        serde_json::from_slice(built.body()).unwrap(),
    )
}

fn build(request: &ChatRequest) -> Value {
    build_for(request, CLAUDE, Some("bedrock-api-key")).1
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

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}),
        strict: None,
        cache_control: None,
    }
}

#[test]
fn a_conversation_becomes_a_converse_request() {
    let request = ChatRequest {
        model: CLAUDE.into(),
        messages: vec![
            message(Role::System, vec![ContentPart::text("Be brief.")]),
            message(
                Role::User,
                vec![
                    ContentPart::text("Weather in Oslo and Bergen?"),
                    ContentPart::Image {
                        source: ImageSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                        detail: None,
                    },
                ],
            ),
            message(
                Role::Assistant,
                vec![
                    ContentPart::text("Let me look."),
                    tool_call("call_1", "get_weather", r#"{"city":"Oslo"}"#),
                    tool_call("call.2", "get_weather", r#"{"city":"Bergen"}"#),
                ],
            ),
            message(Role::Tool, vec![tool_result("call_1", "Snow, -3 C", false)]),
            message(Role::Tool, vec![tool_result("call.2", "timeout", true)]),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Auto),
        max_tokens: Some(300),
        temperature: Some(0.2),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        ..ChatRequest::default()
    };
    let (url, body) = build_for(&request, CLAUDE, Some("bedrock-api-key"));
    assert_eq!(
        url,
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    );
    assert_eq!(
        body,
        json!({
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [
                    {"text": "Weather in Oslo and Bergen?"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
                ]},
                {"role": "assistant", "content": [
                    {"text": "Let me look."},
                    {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Bergen"}}}
                ]},
                // Two tool messages become one user turn, ids mapped as in the calls.
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "Snow, -3 C"}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "timeout"}], "status": "error"}}
                ]}
            ],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
            "additionalModelRequestFields": {"top_k": 40},
            "additionalModelResponseFieldPaths": ["/stop_sequence"],
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"]}}}}],
                "toolChoice": {"auto": {}}
            }
        })
    );
}

#[test]
fn streams_go_to_converse_stream_and_other_models_get_no_claude_fields() {
    let request = ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("Hi")])],
        stream: true,
        top_k: Some(5),
        reasoning: Some(Reasoning {
            effort: Some("high".into()),
            budget_tokens: None,
        }),
        ..ChatRequest::default()
    };
    let (url, body) = build_for(&request, "amazon.nova-pro-v1:0", None);
    assert!(
        url.ends_with("/model/amazon.nova-pro-v1%3A0/converse-stream"),
        "{url}"
    );
    assert!(body.get("additionalModelRequestFields").is_none(), "{body}");
    assert_eq!(body["inferenceConfig"], json!({"maxTokens": 4096}));
    // An OpenAI client's temperature above Converse's most is sent as that most.
    let hot = ChatRequest {
        temperature: Some(1.7),
        ..request.clone()
    };
    let (_, body) = build_for(&hot, "amazon.nova-pro-v1:0", None);
    assert_eq!(body["inferenceConfig"]["temperature"], json!(1.0));
    // An ARN is one path segment.
    let (url, _) = build_for(
        &request,
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-v1:0",
        None,
    );
    assert!(
        url.contains("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-haiku-4-5-v1%3A0/converse-stream"),
        "{url}"
    );
}

#[test]
fn claude_reasoning_becomes_thinking_and_drops_sampling() {
    let request = ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("Think.")])],
        temperature: Some(0.5),
        reasoning: Some(Reasoning {
            effort: None,
            budget_tokens: Some(2048),
        }),
        ..ChatRequest::default()
    };
    let body = build(&request);
    assert_eq!(
        body["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
    );
    assert_eq!(body["inferenceConfig"], json!({"maxTokens": 2048 + 4096}));

    // An effort's thinking is left off after a tool turn that did not think (Claude refuses
    // it there), and kept for a new user turn.
    let after_tools = |last: Vec<Message>| ChatRequest {
        messages: [
            vec![
                message(Role::User, vec![ContentPart::text("Oslo?")]),
                message(
                    Role::Assistant,
                    vec![tool_call("call_1", "get_weather", "{}")],
                ),
                message(Role::Tool, vec![tool_result("call_1", "5 degrees", false)]),
            ],
            last,
        ]
        .concat(),
        reasoning: Some(Reasoning {
            effort: Some("low".into()),
            budget_tokens: None,
        }),
        ..ChatRequest::default()
    };
    let body = build(&after_tools(vec![]));
    assert!(body.get("additionalModelRequestFields").is_none(), "{body}");
    let body = build(&after_tools(vec![
        message(Role::Assistant, vec![ContentPart::text("5 degrees.")]),
        message(Role::User, vec![ContentPart::text("Bergen?")]),
    ]));
    assert_eq!(
        body["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        json!(1024)
    );
}

#[test]
fn forms_and_markers_converse_has_its_own_way_for() {
    let request = ChatRequest {
        messages: vec![
            message(
                Role::System,
                vec![ContentPart::Text {
                    text: "Long policy.".into(),
                    cache_control: Some(json!({"type": "ephemeral", "ttl": "1h"})),
                    citations: None,
                }],
            ),
            message(
                Role::User,
                vec![
                    ContentPart::Document {
                        source: DocumentSource::Base64 {
                            media_type: "application/pdf".into(),
                            data: "JVBERi0=".into(),
                        },
                        title: Some("report_2026.final.pdf".into()),
                        context: None,
                        extras: Extras::default(),
                    },
                    ContentPart::text("Summarise."),
                ],
            ),
            message(
                Role::Assistant,
                vec![ContentPart::Reasoning {
                    text: "Hmm.".into(),
                    signature: Some("sig".into()),
                }],
            ),
            message(Role::User, vec![ContentPart::text("Go on.")]),
        ],
        tools: vec![Tool {
            cache_control: Some(json!({"type": "ephemeral"})),
            ..weather_tool()
        }],
        tool_choice: Some(ToolChoice::Required),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "summary".into(),
            description: None,
            schema: json!({"type": "object"}),
            strict: Some(true),
        }),
        ..ChatRequest::default()
    };
    let body = build(&request);
    assert_eq!(
        body["system"],
        json!([{"text": "Long policy."}, {"cachePoint": {"type": "default", "ttl": "1h"}}])
    );
    assert_eq!(
        body["messages"][0]["content"][0],
        json!({"document": {"format": "pdf", "name": "report 2026 final pdf", "source": {"bytes": "JVBERi0="}}})
    );
    assert_eq!(
        body["messages"][1]["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "sig"}}})
    );
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [
            {"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                "inputSchema": {"json": weather_tool().parameters}}},
            {"cachePoint": {"type": "default"}}
        ], "toolChoice": {"any": {}}})
    );
    assert_eq!(
        body["outputConfig"],
        json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema":
            {"schema": "{\"type\":\"object\"}", "name": "summary"}}}})
    );
}

#[test]
fn without_tools_or_with_a_choice_of_none_the_tool_history_goes_as_text() {
    let history = vec![
        message(Role::User, vec![ContentPart::text("Umbrella?")]),
        message(
            Role::Assistant,
            vec![tool_call("toolu_1", "get_weather", r#"{"city":"Paris"}"#)],
        ),
        message(
            Role::User,
            vec![ContentPart::ToolResult {
                tool_call_id: "toolu_1".into(),
                name: None,
                content: vec![
                    ContentPart::text("Rain"),
                    ContentPart::Image {
                        source: ImageSource::from_url("data:image/jpeg;base64,/9j/"),
                        detail: None,
                    },
                ],
                is_error: false,
            }],
        ),
        message(Role::User, vec![ContentPart::text("Tomorrow?")]),
    ];
    for (tools, choice) in [
        (vec![], None),
        (vec![weather_tool()], Some(ToolChoice::None)),
    ] {
        let body = build(&ChatRequest {
            messages: history.clone(),
            tools,
            tool_choice: choice,
            ..ChatRequest::default()
        });
        assert!(body.get("toolConfig").is_none(), "{body}");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"text": "Umbrella?"}]},
                {"role": "assistant", "content": [
                    {"text": "[Called tool get_weather (call toolu_1) with {\"city\":\"Paris\"}]"}]},
                {"role": "user", "content": [
                    {"text": "[Result of tool call toolu_1: Rain]"},
                    {"image": {"format": "jpeg", "source": {"bytes": "/9j/"}}},
                    {"text": "Tomorrow?"}]}
            ])
        );
    }
}

#[test]
fn what_converse_cannot_take_is_refused_naming_the_part() {
    let with = |part: ContentPart| ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("Look."), part])],
        ..ChatRequest::default()
    };
    let refusal = |request: &ChatRequest| {
        BedrockProvider
            .build_chat(
                request,
                &Target {
                    base_url: BASE,
                    model: CLAUDE,
                    api_key: None,
                    api_version: None,
                },
            )
            .unwrap_err()
    };
    let url_image = refusal(&with(ContentPart::Image {
        source: ImageSource::Url("https://example.com/cat.png".into()),
        detail: None,
    }));
    assert_eq!(url_image.param.as_deref(), Some("messages[0].content[1]"));
    assert!(
        url_image.message.contains("inline"),
        "{}",
        url_image.message
    );
    let tiff = refusal(&with(ContentPart::Image {
        source: ImageSource::from_url("data:image/tiff;base64,AAAA"),
        detail: None,
    }));
    assert!(tiff.message.contains("image/tiff"), "{}", tiff.message);
    let url_document = refusal(&with(ContentPart::Document {
        source: DocumentSource::Url("https://example.com/a.pdf".into()),
        title: None,
        context: None,
        extras: Extras::default(),
    }));
    assert!(
        url_document.message.contains("URL"),
        "{}",
        url_document.message
    );
    let many = ChatRequest {
        n: Some(2),
        ..with(ContentPart::text("x"))
    };
    assert_eq!(refusal(&many).param.as_deref(), Some("n"));
}

#[test]
fn s3_images_and_documents_are_sent_as_s3_locations() {
    let body = build(&ChatRequest {
        messages: vec![message(
            Role::User,
            vec![
                ContentPart::Image {
                    source: ImageSource::Url("s3://shots/2026/Cat.JPG".into()),
                    detail: None,
                },
                ContentPart::Document {
                    source: DocumentSource::Url("s3://docs/reports/q3.docx".into()),
                    title: Some("Q3".into()),
                    context: None,
                    extras: Extras::default(),
                },
                ContentPart::Document {
                    source: DocumentSource::Url("s3://docs/scan".into()),
                    title: None,
                    context: None,
                    extras: Extras::default(),
                },
            ],
        )],
        ..ChatRequest::default()
    });
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://shots/2026/Cat.JPG"}}}},
            {"document": {"format": "docx", "name": "Q3",
                "source": {"s3Location": {"uri": "s3://docs/reports/q3.docx"}}}},
            {"document": {"format": "pdf", "name": "document 3",
                "source": {"s3Location": {"uri": "s3://docs/scan"}}}},
        ])
    );
}

/// A Converse answer in the shape of the API reference's response syntax.
const ANSWER: &str = r#"{
  "output": {"message": {"role": "assistant", "content": [
    {"reasoningContent": {"reasoningText": {"text": "The user wants weather.", "signature": "EqoB"}}},
    {"text": "Checking."},
    {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Oslo"}}}
  ]}},
  "stopReason": "tool_use",
  "usage": {"inputTokens": 30, "outputTokens": 42, "totalTokens": 1072, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 0},
  "metrics": {"latencyMs": 812}
}"#;

#[test]
fn parses_an_answer() {
    let response = BedrockProvider.parse_chat(ANSWER.as_bytes()).unwrap();
    assert_eq!(
        response.content,
        vec![
            ContentPart::Reasoning {
                text: "The user wants weather.".into(),
                signature: Some("EqoB".into())
            },
            ContentPart::text("Checking."),
            tool_call(
                "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                "get_weather",
                r#"{"city":"Oslo"}"#
            ),
        ]
    );
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.usage,
        Some(Usage {
            input_tokens: 1030,
            output_tokens: 42,
            cache_read_tokens: 1000,
            ..Usage::default()
        })
    );
    let stopped: Value = json!({"output": {"message": {"role": "assistant", "content": [{"text": "a"}]}},
        "stopReason": "max_tokens", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}});
    let stopped = BedrockProvider
        .parse_chat(stopped.to_string().as_bytes())
        .unwrap();
    assert_eq!(stopped.finish_reason, FinishReason::Length);
    let err = BedrockProvider.parse_chat(b"{\"output\": 1}").unwrap_err();
    assert_eq!(err.class, ErrorClass::MalformedResponse);
}

fn event(kind: &str, payload: Value) -> Vec<u8> {
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// A streamed answer with text and a tool call, as ConverseStream frames it (with the `p`
/// padding its events carry).
fn recorded_stream() -> Vec<u8> {
    [
        event("messageStart", json!({"role": "assistant", "p": "abcd"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Checking "}, "p": "ab"}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "now."}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Oslo\"}"}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 2021,
                "cacheWriteInputTokens": 2000, "cacheDetails": [{"ttl": "1h", "inputTokens": 1500},
                {"ttl": "5m", "inputTokens": 500}]}, "metrics": {"latencyMs": 300}}),
        ),
    ]
    .concat()
}

fn decode(
    bytes: &[u8],
    piece: usize,
) -> Result<Vec<StreamEvent>, crate::canonical::UpstreamErrorInfo> {
    let mut decoder = BedrockProvider.stream_decoder();
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece) {
        decoder.push(chunk, &mut out)?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

/// A tool without parameters streams no arguments, or an empty piece: they are `{}`.
#[test]
fn a_tool_call_without_arguments_streams_the_empty_object() {
    let bytes = [
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "now"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": ""}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event("metadata", json!({"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}})),
    ]
    .concat();
    let arguments: Vec<String> = decode(&bytes, bytes.len())
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta { arguments, .. } => Some(arguments),
            _ => None,
        })
        .collect();
    assert_eq!(arguments, ["{}"]);
}

#[test]
fn a_stream_decodes_whatever_the_reads() {
    let expected = vec![
        StreamEvent::Start {
            id: String::new(),
            model: String::new(),
        },
        StreamEvent::TextDelta("Checking ".into()),
        StreamEvent::TextDelta("now.".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "tooluse_1".into(),
            name: "get_weather".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"city\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"Oslo\"}".into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage {
            input_tokens: 2012,
            output_tokens: 9,
            cache_write_tokens: 2000,
            cache_write_1h_tokens: 1500,
            ..Usage::default()
        }),
    ];
    let bytes = recorded_stream();
    for piece in [1, 7, 100, bytes.len()] {
        assert_eq!(
            decode(&bytes, piece).unwrap(),
            expected,
            "pieces of {piece}"
        );
    }
}

#[test]
fn a_stream_cut_short_or_failing_is_never_complete() {
    let bytes = recorded_stream();
    // Cut before messageStop, and inside a message.
    let stop_at = bytes.len()
        - event(
            "metadata",
            json!({"usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 2021,
                "cacheWriteInputTokens": 2000, "cacheDetails": [{"ttl": "1h", "inputTokens": 1500},
                {"ttl": "5m", "inputTokens": 500}]}, "metrics": {"latencyMs": 300}}),
        )
        .len()
        - event("messageStop", json!({"stopReason": "tool_use"})).len();
    let cut = decode(&bytes[..stop_at], 50).unwrap_err();
    assert_eq!(cut.class, ErrorClass::StreamInterrupted);
    let cut = decode(&bytes[..stop_at + 5], 50).unwrap_err();
    assert!(cut.message.contains("inside a message"), "{}", cut.message);
    // Cut after messageStop, before the metadata that carries the usage.
    let before_metadata = stop_at + event("messageStop", json!({"stopReason": "tool_use"})).len();
    let cut = decode(&bytes[..before_metadata], 50).unwrap_err();
    assert_eq!(cut.class, ErrorClass::StreamInterrupted);
    // The metadata ends the stream, whether or not the body ends with it.
    let mut decoder = BedrockProvider.stream_decoder();
    decoder
        .push(&bytes[..before_metadata], &mut Vec::new())
        .unwrap();
    assert!(!decoder.terminated());
    decoder
        .push(&bytes[before_metadata..], &mut Vec::new())
        .unwrap();
    assert!(decoder.terminated());
    // An exception frame mid-stream is an error event, and ends the stream.
    let mut failing = bytes[..stop_at].to_vec();
    failing.extend(encode(
        &[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"Too many tokens, please wait before trying again."}"#,
    ));
    let events = decode(&failing, 13).unwrap();
    let StreamEvent::Error(error) = events.last().unwrap() else {
        panic!("{events:?}");
    };
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.provider_code.as_deref(), Some("throttlingException"));
    // A corrupted frame is a malformed answer.
    let mut corrupt = bytes.clone();
    corrupt[40] ^= 0xff;
    assert_eq!(
        decode(&corrupt, 64).unwrap_err().class,
        ErrorClass::MalformedResponse
    );
}

#[test]
fn errors_are_classified_by_their_aws_type() {
    let classify = |status: u16, kind: Option<&str>, body: &str| {
        let mut headers = HeaderMap::new();
        if let Some(kind) = kind {
            headers.insert("x-amzn-errortype", kind.parse().unwrap());
        }
        BedrockProvider.classify_error(status, &headers, body.as_bytes())
    };
    let throttled = classify(
        429,
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        r#"{"message":"Too many requests, please wait before trying again."}"#,
    );
    assert_eq!(throttled.class, ErrorClass::RateLimited);
    assert_eq!(
        throttled.provider_code.as_deref(),
        Some("ThrottlingException")
    );
    assert_eq!(
        throttled.message,
        "Too many requests, please wait before trying again."
    );
    let long = classify(
        400,
        Some("ValidationException"),
        r#"{"message":"Input is too long for requested model."}"#,
    );
    assert_eq!(long.class, ErrorClass::ContextTooLong);
    // Claude's own words, relayed.
    let relayed = classify(
        400,
        Some("ValidationException"),
        r#"{"message":"The model returned the following errors: input length and `max_tokens` exceed context limit: 195000 + 8192 > 200000, decrease input length or `max_tokens` and try again"}"#,
    );
    assert_eq!(relayed.class, ErrorClass::ContextTooLong);
    let invalid = classify(
        400,
        None,
        r#"{"__type":"com.amazon.bedrock#ValidationException","message":"messages: bad"}"#,
    );
    assert_eq!(invalid.class, ErrorClass::InvalidRequest);
    assert_eq!(
        invalid.provider_code.as_deref(),
        Some("ValidationException")
    );
    let denied = classify(403, Some("AccessDeniedException"), r#"{"Message":"no"}"#);
    assert_eq!(
        (denied.class, denied.message.as_str()),
        (ErrorClass::AuthFailed, "no")
    );
    assert_eq!(
        classify(503, None, "upstream connect error").class,
        ErrorClass::Overloaded
    );
}

#[test]
fn a_count_asks_count_tokens_with_the_conversation() {
    let request = ChatRequest {
        messages: vec![
            message(Role::System, vec![ContentPart::text("Be brief.")]),
            message(Role::User, vec![ContentPart::text("How many?")]),
        ],
        tools: vec![weather_tool()],
        max_tokens: Some(10),
        ..ChatRequest::default()
    };
    let target = Target {
        base_url: BASE,
        model: CLAUDE,
        api_key: Some("k"),
        api_version: None,
    };
    let built = BedrockProvider
        .build_count_tokens(&request, &target)
        .unwrap()
        .unwrap();
    assert!(
        built
            .uri()
            .to_string()
            .ends_with("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens"),
        "{}",
        built.uri()
    );
    assert_eq!(built.headers()["authorization"], "Bearer k");
    let body: Value = serde_json::from_slice(built.body()).unwrap();
    assert_eq!(
        body,
        json!({"input": {"converse": {
            "messages": [{"role": "user", "content": [{"text": "How many?"}]}],
            "system": [{"text": "Be brief."}]
        }}})
    );
    assert_eq!(
        BedrockProvider
            .parse_count_tokens(br#"{"inputTokens": 17}"#)
            .unwrap(),
        17
    );
    assert_eq!(
        BedrockProvider.parse_count_tokens(b"{}").unwrap_err().class,
        ErrorClass::MalformedResponse
    );
}

fn embed(texts: &[&str], dimensions: Option<u32>) -> crate::canonical::EmbeddingRequest {
    crate::canonical::EmbeddingRequest {
        model: "embed".into(),
        input: crate::canonical::EmbeddingInput::Texts(
            texts.iter().map(|t| (*t).to_owned()).collect(),
        ),
        single: texts.len() == 1,
        dimensions,
        encoding_format: Default::default(),
        user: None,
        extras: Extras::default(),
    }
}

fn embed_body(
    request: &crate::canonical::EmbeddingRequest,
    model: &str,
) -> Result<(String, Value), crate::error::DecodeError> {
    let target = Target {
        base_url: BASE,
        model,
        api_key: None,
        api_version: None,
    };
    let built = BedrockProvider.build_embeddings(request, &target)?;
    Ok((
        built.uri().to_string(),
        serde_json::from_slice(built.body()).unwrap(),
    ))
}

#[test]
fn embeddings_go_through_invoke_model_in_each_family_s_body() {
    let titan = "amazon.titan-embed-text-v2:0";
    let (url, body) = embed_body(&embed(&["hello"], Some(256)), titan).unwrap();
    assert_eq!(
        url,
        format!("{BASE}/model/amazon.titan-embed-text-v2%3A0/invoke")
    );
    assert_eq!(body, json!({"inputText": "hello", "dimensions": 256}));
    assert_eq!(
        embed_body(&embed(&["hello"], None), "amazon.titan-embed-text-v1")
            .unwrap()
            .1,
        json!({"inputText": "hello"})
    );
    let refused =
        embed_body(&embed(&["hello"], Some(256)), "amazon.titan-embed-text-v1").unwrap_err();
    assert_eq!(refused.param.as_deref(), Some("dimensions"));
    // Titan takes one text a call; the gateway splits by this figure.
    assert_eq!(BedrockProvider.embedding_inputs_per_request(titan), Some(1));
    assert!(embed_body(&embed(&["a", "b"], None), titan).is_err());

    let cohere = "cohere.embed-english-v3";
    let (_, body) = embed_body(&embed(&["a", "b"], None), cohere).unwrap();
    assert_eq!(
        body,
        json!({"texts": ["a", "b"], "input_type": "search_document", "embedding_types": ["float"]})
    );
    assert_eq!(
        BedrockProvider.embedding_inputs_per_request(cohere),
        Some(96)
    );
    assert!(embed_body(&embed(&["a"], Some(512)), cohere).is_err());
    // Cohere's own input type, from an OpenAI client's extra field; v4's output dimension.
    let mut query = embed(&["q"], Some(512));
    query.extras.insert(
        crate::DialectId::OpenAi,
        "input_type",
        json!("search_query"),
    );
    let (_, body) = embed_body(&query, "cohere.embed-v4:0").unwrap();
    assert_eq!(body["input_type"], "search_query");
    assert_eq!(body["output_dimension"], 512);

    let other = embed_body(&embed(&["a"], None), CLAUDE).unwrap_err();
    assert_eq!(other.param.as_deref(), Some("model"));
    assert_eq!(BedrockProvider.embedding_inputs_per_request(CLAUDE), None);
}

#[test]
fn embeddings_answers_of_both_families_are_read() {
    let titan = BedrockProvider
        .parse_embeddings(
            br#"{"embedding": [0.5, -0.25], "inputTextTokenCount": 3, "embeddingsByType": {"float": [0.5, -0.25]}}"#,
        )
        .unwrap();
    assert_eq!(titan.vectors, vec![vec![0.5, -0.25]]);
    assert_eq!(titan.usage.unwrap().input_tokens, 3);
    let floats = BedrockProvider
        .parse_embeddings(
            br#"{"id": "e1", "response_type": "embeddings_floats", "embeddings": [[1.0], [2.0]], "texts": ["a", "b"]}"#,
        )
        .unwrap();
    assert_eq!(floats.vectors, vec![vec![1.0], vec![2.0]]);
    assert!(floats.usage.is_none());
    let by_type = BedrockProvider
        .parse_embeddings(
            br#"{"id": "e2", "response_type": "embeddings_by_type", "embeddings": {"float": [[3.0]]}, "texts": ["c"]}"#,
        )
        .unwrap();
    assert_eq!(by_type.vectors, vec![vec![3.0]]);
    assert!(BedrockProvider.parse_embeddings(br#"{"id": "x"}"#).is_err());
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-bedrock-input-token-count", "42".parse().unwrap());
    assert_eq!(
        BedrockProvider.embedding_tokens_in_headers(&headers),
        Some(42)
    );
    assert_eq!(
        BedrockProvider.embedding_tokens_in_headers(&HeaderMap::new()),
        None
    );
}

/// Reasoning goes back to Converse only as the model signed it: another provider's turn, or an
/// OpenAI client's echo of `reasoning_content`, has none, and Claude refuses the turn for it.
#[test]
fn unsigned_reasoning_is_not_sent_back() {
    let request = ChatRequest {
        model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
        messages: vec![
            message(Role::User, vec![ContentPart::text("Weather?")]),
            message(
                Role::Assistant,
                vec![
                    ContentPart::Reasoning {
                        text: "I should call the tool.".into(),
                        signature: None,
                    },
                    ContentPart::text("Looking."),
                ],
            ),
            message(Role::User, vec![ContentPart::text("Go on.")]),
        ],
        ..ChatRequest::default()
    };
    let body = build(&request);
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"text": "Looking."}]),
        "{body}"
    );
}

// Tests may fail loudly; the workspace denies these lints only for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::HeaderMap;
use serde_json::{Value, json};

use super::*;
use crate::canonical::{
    ChatRequest, ContentPart, EmbeddingInput, EmbeddingRequest, EncodingFormat, ErrorClass, Extras,
    FinishReason, ImageSource, Message, Reasoning, ResponseFormat, Role, StreamEvent, Text, Tool,
    ToolChoice, Usage,
};
use crate::dialect::{DialectId, ProviderDialect, Target};
use crate::provider_body::ProviderBody;

const BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

fn target(key: Option<&'static str>) -> Target<'static> {
    Target {
        base_url: BASE,
        model: "gemini-2.5-flash",
        api_key: key,
        api_version: None,
    }
}

fn message(role: Role, content: Vec<ContentPart>) -> Message {
    Message {
        role,
        content,
        name: None,
        extras: Extras::default(),
    }
}

fn body_json(request: &http::Request<Vec<u8>>) -> Value {
    serde_json::from_slice(request.body()).unwrap()
}

fn build(request: &ChatRequest) -> http::Request<Vec<u8>> {
    let target = target(Some("test-key"));
    let built = GeminiProvider
        .build_chat(request, &target)
        .unwrap()
        .map(ProviderBody::into_vec);
    // Without extras the body is written field by field: byte for byte what serde writes.
    if request.extras.for_dialect(DialectId::Gemini).is_none() {
        let body = super::provider::build_body(request, target.model).unwrap();
        assert_eq!(
            String::from_utf8_lossy(built.body()),
            serde_json::to_string(&body).unwrap()
        );
    }
    built
}

fn tool_call(id: &str, name: &str, arguments: &str, extras: Extras) -> ContentPart {
    ContentPart::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
        extras,
    }
}

fn tool_result(id: &str, name: Option<&str>, text: &str) -> ContentPart {
    ContentPart::ToolResult {
        tool_call_id: id.into(),
        name: name.map(str::to_owned),
        content: vec![ContentPart::text(text)],
        is_error: false,
    }
}

fn signature(sig: &str) -> Extras {
    let mut fields = serde_json::Map::new();
    fields.insert(THOUGHT_SIGNATURE.into(), json!(sig));
    Extras::new(DialectId::Gemini, fields)
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather for a city".into()),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": false
        }),
        strict: Some(true),
        cache_control: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

#[test]
fn request_golden_with_system_tools_history_image_and_schema() {
    let request = ChatRequest {
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
                    ContentPart::text("Weather in Paris and Rome? And what is this?"),
                    ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        },
                        detail: None,
                    },
                    ContentPart::Image {
                        source: ImageSource::Url("https://example.com/cat.JPG?size=2".into()),
                        detail: Some("high".into()),
                    },
                    ContentPart::Image {
                        source: ImageSource::Url("https://example.com/render".into()),
                        detail: None,
                    },
                ],
            ),
            message(
                Role::Assistant,
                vec![
                    ContentPart::Reasoning {
                        text: "Two cities, two calls.".into(),
                        signature: Some("sig-thought".into()),
                    },
                    ContentPart::Reasoning {
                        text: "unsigned summary".into(),
                        signature: None,
                    },
                    tool_call(
                        "call_a",
                        "get_weather",
                        r#"{"city":"Paris"}"#,
                        signature("sig-call"),
                    ),
                    tool_call(
                        "call_b",
                        "get_weather",
                        r#"{"city":"Rome"}"#,
                        Extras::default(),
                    ),
                ],
            ),
            message(
                Role::Tool,
                vec![tool_result("call_a", None, r#"{"temp_c":21}"#)],
            ),
            message(
                Role::Tool,
                vec![tool_result("call_b", Some("get_weather"), "sunny, 25C")],
            ),
            message(
                Role::User,
                vec![ContentPart::text("Thanks. Answer as JSON.")],
            ),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Auto),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "report".into(),
            description: None,
            schema: json!({"type": "object", "properties": {"summary": {"type": "string"}}}),
            strict: Some(true),
        }),
        max_tokens: Some(512),
        temperature: Some(0.2),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        seed: Some(7),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.3),
        n: Some(1),
        user: Some("u-1".into()),
        ..ChatRequest::default()
    };
    let http_request = build(&request);
    assert_eq!(http_request.method(), http::Method::POST);
    assert_eq!(
        http_request.uri().to_string(),
        format!("{BASE}/models/gemini-2.5-flash:generateContent")
    );
    assert_eq!(http_request.headers()["x-goog-api-key"], "test-key");
    assert_eq!(http_request.headers()["content-type"], "application/json");
    let expected = json!({
        "contents": [
            {"role": "user", "parts": [
                {"text": "Weather in Paris and Rome? And what is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2"}},
                {"fileData": {"fileUri": "https://example.com/render"}}
            ]},
            {"role": "model", "parts": [
                {"text": "Two cities, two calls.", "thought": true, "thoughtSignature": "sig-thought"},
                {"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": "sig-call"},
                {"functionCall": {"id": "call_b", "name": "get_weather", "args": {"city": "Rome"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "call_a", "name": "get_weather", "response": {"temp_c": 21}}},
                {"functionResponse": {"id": "call_b", "name": "get_weather", "response": {"result": "sunny, 25C"}}},
                {"text": "Thanks. Answer as JSON."}
            ]}
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Use metric units."}]},
        "tools": [{"functionDeclarations": [{
            "name": "get_weather",
            "description": "Current weather for a city",
            "parametersJsonSchema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": false
            }
        }]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"summary": {"type": "string"}}},
            "candidateCount": 1,
            "maxOutputTokens": 512,
            "temperature": 0.2,
            "topP": 0.9,
            "topK": 40,
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.3
        }
    });
    assert_eq!(body_json(&http_request), expected);
}

#[test]
fn stream_request_uses_sse_endpoint_and_omits_missing_key() {
    let request = ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
        stream: true,
        ..ChatRequest::default()
    };
    let http_request = GeminiProvider
        .build_chat(
            &request,
            &Target {
                base_url: "https://generativelanguage.googleapis.com/v1beta/",
                model: "models/gemini-2.5-pro",
                api_key: None,
                api_version: None,
            },
        )
        .unwrap()
        .map(ProviderBody::into_vec);
    assert_eq!(
        http_request.uri().to_string(),
        format!("{BASE}/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    );
    assert!(http_request.headers().get("x-goog-api-key").is_none());
    assert_eq!(
        body_json(&http_request),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
}

#[test]
fn tool_choice_modes() {
    let cases = [
        (ToolChoice::None, json!({"mode": "NONE"})),
        (ToolChoice::Required, json!({"mode": "ANY"})),
        (
            ToolChoice::Function("get_weather".into()),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        ),
    ];
    for (choice, expected) in cases {
        let request = ChatRequest {
            messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
            tools: vec![weather_tool()],
            tool_choice: Some(choice),
            ..ChatRequest::default()
        };
        let body = body_json(&build(&request));
        assert_eq!(body["toolConfig"]["functionCallingConfig"], expected);
    }
    let without_tools = ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
        tool_choice: Some(ToolChoice::None),
        ..ChatRequest::default()
    };
    assert!(
        body_json(&build(&without_tools))
            .get("toolConfig")
            .is_none()
    );
}

#[test]
fn json_object_and_reasoning_settings() {
    let base = ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
        response_format: Some(ResponseFormat::JsonObject),
        ..ChatRequest::default()
    };
    let body = body_json(&build(&base));
    assert_eq!(
        body["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );

    let with = |reasoning: Reasoning| {
        let request = ChatRequest {
            reasoning: Some(reasoning),
            response_format: None,
            ..base.clone()
        };
        body_json(&build(&request))["generationConfig"]["thinkingConfig"].clone()
    };
    assert_eq!(
        with(Reasoning {
            effort: Some("high".into()),
            budget_tokens: Some(2048),
        }),
        json!({"includeThoughts": true, "thinkingBudget": 2048})
    );
    // Gemini 2.5 has budgets only; Gemini 3 takes the level.
    assert_eq!(
        with(Reasoning {
            effort: Some("low".into()),
            budget_tokens: None,
        }),
        json!({"includeThoughts": true, "thinkingBudget": 1024})
    );
    let gemini3 = Target {
        model: "models/gemini-3-pro-preview",
        ..target(None)
    };
    let request = ChatRequest {
        reasoning: Some(Reasoning {
            effort: Some("low".into()),
            budget_tokens: None,
        }),
        response_format: None,
        ..base.clone()
    };
    let built = GeminiProvider
        .build_chat(&request, &gemini3)
        .unwrap()
        .map(ProviderBody::into_vec);
    assert_eq!(
        body_json(&built)["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingLevel": "LOW"})
    );
    assert_eq!(
        with(Reasoning {
            effort: Some("none".into()),
            budget_tokens: None,
        }),
        json!({"thinkingBudget": 0})
    );
    assert_eq!(with(Reasoning::default()), Value::Null);

    let bad = ChatRequest {
        reasoning: Some(Reasoning {
            effort: Some("extreme".into()),
            budget_tokens: None,
        }),
        ..base.clone()
    };
    let err = GeminiProvider.build_chat(&bad, &target(None)).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn invalid_tool_arguments_name_the_field() {
    let request = ChatRequest {
        messages: vec![
            message(Role::User, vec![ContentPart::text("hi")]),
            message(
                Role::Assistant,
                vec![
                    ContentPart::text("calling"),
                    tool_call("c1", "f", "{not json", Extras::default()),
                ],
            ),
        ],
        ..ChatRequest::default()
    };
    let err = GeminiProvider
        .build_chat(&request, &target(None))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[1].content[1].arguments")
    );

    let request = ChatRequest {
        messages: vec![message(
            Role::Assistant,
            vec![tool_call("c1", "f", "[1,2]", Extras::default())],
        )],
        ..ChatRequest::default()
    };
    let err = GeminiProvider
        .build_chat(&request, &target(None))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[0].content[0].arguments")
    );
}

#[test]
fn tool_result_without_a_known_call_is_an_error() {
    let request = ChatRequest {
        messages: vec![message(Role::Tool, vec![tool_result("ghost", None, "x")])],
        ..ChatRequest::default()
    };
    let err = GeminiProvider
        .build_chat(&request, &target(None))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[0].content[0].tool_call_id")
    );
}

/// A tool result's inline image (an agent's screenshot) goes in the function response's own
/// `parts`; one by URL has no form there and is refused with the part's path.
#[test]
fn a_tool_results_inline_image_goes_in_the_function_responses_parts() {
    let screenshot = ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
        detail: None,
    };
    let turn = |image: ContentPart| ChatRequest {
        messages: vec![
            message(Role::User, vec![ContentPart::text("what is on screen?")]),
            message(
                Role::Assistant,
                vec![tool_call("c1", "screenshot", "{}", Extras::default())],
            ),
            message(
                Role::Tool,
                vec![ContentPart::ToolResult {
                    tool_call_id: "c1".into(),
                    name: None,
                    content: vec![ContentPart::text("1280x800"), image],
                    is_error: false,
                }],
            ),
        ],
        ..ChatRequest::default()
    };
    let body = body_json(&build(&turn(screenshot)));
    assert_eq!(
        body["contents"][2]["parts"],
        json!([{"functionResponse": {"id": "c1", "name": "screenshot",
            "response": {"result": "1280x800"},
            "parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}}])
    );
    let by_url = ContentPart::Image {
        source: ImageSource::Url("https://x.example/s.png".into()),
        detail: None,
    };
    let err = GeminiProvider
        .build_chat(&turn(by_url), &target(None))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[2].content[0].content[1]")
    );
}

#[test]
fn failed_tool_results_and_empty_arguments() {
    let request = ChatRequest {
        messages: vec![
            message(Role::User, vec![ContentPart::text("go")]),
            message(
                Role::Assistant,
                vec![tool_call("c1", "ping", "", Extras::default())],
            ),
            message(
                Role::Tool,
                vec![ContentPart::ToolResult {
                    tool_call_id: "c1".into(),
                    name: None,
                    content: vec![ContentPart::text("host unreachable")],
                    is_error: true,
                }],
            ),
        ],
        ..ChatRequest::default()
    };
    let body = body_json(&build(&request));
    assert_eq!(
        body["contents"][1]["parts"][0],
        json!({"functionCall": {"id": "c1", "name": "ping"}})
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["response"],
        json!({"error": "host unreachable"})
    );
}

#[test]
fn gemini_extras_pass_through_without_replacing_our_fields() {
    let mut fields = serde_json::Map::new();
    fields.insert("cachedContent".into(), json!("cachedContents/abc"));
    fields.insert(
        "generationConfig".into(),
        json!({"responseModalities": ["TEXT"], "temperature": 1.5}),
    );
    fields.insert("tools".into(), json!([{"googleSearch": {}}]));
    let request = ChatRequest {
        messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
        tools: vec![weather_tool()],
        temperature: Some(0.5),
        extras: Extras::new(DialectId::Gemini, fields.clone()),
        ..ChatRequest::default()
    };
    let body = body_json(&build(&request));
    assert_eq!(body["cachedContent"], "cachedContents/abc");
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 0.5, "responseModalities": ["TEXT"]})
    );
    assert_eq!(body["tools"][1], json!({"googleSearch": {}}));

    // Another dialect's extras never reach Gemini.
    let foreign = ChatRequest {
        extras: Extras::new(DialectId::OpenAi, fields),
        ..request
    };
    assert!(body_json(&build(&foreign)).get("cachedContent").is_none());
}

// ---------------------------------------------------------------------------------------------
// Responses

const RECORDED_RESPONSE: &str = r#"{
  "candidates": [
    {
      "content": {
        "parts": [
          {"text": "**Planning the lookup**\nThe user wants Paris weather; ", "thought": true},
          {"text": "I should call the tool.", "thought": true, "thoughtSignature": "CikB0e2Kb7thought"},
          {"text": "Let me check."},
          {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}},
           "thoughtSignature": "CiQB0e2Kb6call"},
          {"functionCall": {"id": "fc-given", "name": "get_time"}}
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0,
      "safetyRatings": []
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 120,
    "candidatesTokenCount": 30,
    "totalTokenCount": 195,
    "cachedContentTokenCount": 64,
    "thoughtsTokenCount": 45,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}]
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "k3mSaP6rEI2ZnvgPxJDR6AU"
}"#;

#[test]
fn parses_recorded_response_with_thoughts_calls_and_usage() {
    let response = GeminiProvider
        .parse_chat(RECORDED_RESPONSE.as_bytes())
        .unwrap();
    assert_eq!(response.id, "k3mSaP6rEI2ZnvgPxJDR6AU");
    assert_eq!(response.model, "gemini-2.5-flash");
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.content,
        vec![
            ContentPart::Reasoning {
                text:
                    "**Planning the lookup**\nThe user wants Paris weather; I should call the tool."
                        .into(),
                signature: Some("CikB0e2Kb7thought".into()),
            },
            ContentPart::text("Let me check."),
            tool_call(
                "call_k3mSaP6rEI2ZnvgPxJDR6AU_0",
                "get_weather",
                r#"{"city":"Paris","unit":"celsius"}"#,
                signature("CiQB0e2Kb6call"),
            ),
            tool_call("fc-given", "get_time", "{}", Extras::default()),
        ]
    );
    let usage = response.usage.unwrap();
    assert_eq!(
        usage,
        Usage {
            input_tokens: 120,
            output_tokens: 75,
            cache_read_tokens: 64,
            cache_write_tokens: 0,
            reasoning_tokens: 45,
            ..Default::default()
        }
    );
    assert_eq!(usage.total(), 195);
}

#[test]
fn signatures_survive_a_round_trip() {
    let response = GeminiProvider
        .parse_chat(
            br#"{"candidates":[{"content":{"role":"model","parts":[
                {"text":"Done.","thoughtSignature":"sig-text"}]},"finishReason":"STOP"}]}"#,
        )
        .unwrap();
    assert_eq!(
        response.content,
        vec![
            ContentPart::Reasoning {
                text: String::new(),
                signature: Some("sig-text".into()),
            },
            ContentPart::text("Done."),
        ]
    );
    assert_eq!(response.id, "");
    assert_eq!(response.usage, None);

    let recorded = GeminiProvider
        .parse_chat(RECORDED_RESPONSE.as_bytes())
        .unwrap();
    let request = ChatRequest {
        messages: vec![
            message(Role::User, vec![ContentPart::text("weather?")]),
            message(Role::Assistant, recorded.content),
            message(Role::Assistant, response.content),
        ],
        ..ChatRequest::default()
    };
    let body = body_json(&build(&request));
    assert_eq!(
        body["contents"][1]["parts"],
        json!([
            {"text": "**Planning the lookup**\nThe user wants Paris weather; I should call the tool.",
             "thought": true, "thoughtSignature": "CikB0e2Kb7thought"},
            {"text": "Let me check."},
            {"functionCall": {"id": "call_k3mSaP6rEI2ZnvgPxJDR6AU_0", "name": "get_weather",
                              "args": {"city": "Paris", "unit": "celsius"}},
             "thoughtSignature": "CiQB0e2Kb6call"},
            {"functionCall": {"id": "fc-given", "name": "get_time", "args": {}}},
            {"text": "Done.", "thoughtSignature": "sig-text"}
        ])
    );
}

#[test]
fn finish_reasons_and_blocked_prompts() {
    let finish = |reason: &str| {
        let body = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"x"}}]}},"finishReason":"{reason}"}}]}}"#
        );
        GeminiProvider
            .parse_chat(body.as_bytes())
            .unwrap()
            .finish_reason
    };
    assert_eq!(finish("STOP"), FinishReason::Stop);
    assert_eq!(finish("MAX_TOKENS"), FinishReason::Length);
    for filtered in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
    ] {
        assert_eq!(finish(filtered), FinishReason::ContentFilter, "{filtered}");
    }
    assert_eq!(
        finish("MALFORMED_FUNCTION_CALL"),
        FinishReason::Other("MALFORMED_FUNCTION_CALL".into())
    );

    let blocked = GeminiProvider
        .parse_chat(
            br#"{"promptFeedback":{"blockReason":"SAFETY"},
                 "usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},
                 "modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
        )
        .unwrap();
    assert_eq!(blocked.finish_reason, FinishReason::ContentFilter);
    assert!(blocked.content.is_empty());
    assert_eq!(blocked.usage.unwrap().input_tokens, 8);

    let err = GeminiProvider
        .parse_chat(br#"{"candidates":[]}"#)
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::MalformedResponse);
    let err = GeminiProvider.parse_chat(b"<html>").unwrap_err();
    assert_eq!(err.class, ErrorClass::MalformedResponse);
}

// ---------------------------------------------------------------------------------------------
// Streams

/// A transcript in Gemini's own framing (`\r\n\r\n` between events), with a thought, text with
/// multi-byte characters, a function call carrying a signature, and usage on every chunk.
const TRANSCRIPT: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Checking the forecast\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 52,\"totalTokenCount\": 52,\"thoughtsTokenCount\": 12},",
    "\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"k3mSaP6rEI2ZnvgPxJDR6AU\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Il fait beau à Paris ☀️, \"}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 52,\"candidatesTokenCount\": 9,\"totalTokenCount\": 73,\"thoughtsTokenCount\": 12},",
    "\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"k3mSaP6rEI2ZnvgPxJDR6AU\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"get_weather\",\"args\": {\"city\": \"Paris\"}},\"thoughtSignature\": \"CiQB0e2Kb6\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 52,\"candidatesTokenCount\": 20,\"totalTokenCount\": 84,\"cachedContentTokenCount\": 32,\"thoughtsTokenCount\": 12},",
    "\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"k3mSaP6rEI2ZnvgPxJDR6AU\"}\r\n\r\n",
);

fn decode(chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, crate::canonical::UpstreamErrorInfo> {
    let mut decoder = GeminiProvider.stream_decoder();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk, &mut out)?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

#[test]
fn stream_transcript_decodes_to_canonical_events() {
    let events = decode(&[TRANSCRIPT.as_bytes()]).unwrap();
    let usage = |input, output, cache_read| {
        StreamEvent::Usage(Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: 0,
            reasoning_tokens: 12,
            ..Default::default()
        })
    };
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "k3mSaP6rEI2ZnvgPxJDR6AU".into(),
                model: "gemini-2.5-flash".into(),
            },
            StreamEvent::ReasoningDelta("Checking the forecast".into()),
            usage(52, 12, 0),
            StreamEvent::TextDelta("Il fait beau à Paris ☀️, ".into()),
            usage(52, 21, 0),
            StreamEvent::ToolCallSignature {
                index: 0,
                signature: "CiQB0e2Kb6".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_k3mSaP6rEI2ZnvgPxJDR6AU_0".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"city":"Paris"}"#.into(),
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            usage(52, 32, 32),
        ]
    );
}

#[test]
fn stream_events_do_not_depend_on_chunking() {
    let input = TRANSCRIPT.as_bytes();
    let whole = decode(&[input]).unwrap();
    for i in 0..=input.len() {
        let split = decode(&[&input[..i], &input[i..]]).unwrap();
        assert_eq!(split, whole, "split at {i}");
    }
    let mut bytes = Vec::new();
    for b in input {
        bytes.push(std::slice::from_ref(b));
    }
    assert_eq!(decode(&bytes).unwrap(), whole);
}

#[test]
fn stream_without_finish_reason_is_interrupted() {
    let cut = TRANSCRIPT
        .split_inclusive("\r\n\r\n")
        .take(2)
        .collect::<String>();
    let err = decode(&[cut.as_bytes()]).unwrap_err();
    assert_eq!(err.class, ErrorClass::StreamInterrupted);

    // The last event lacks its blank line: per SSE it was never dispatched.
    let unterminated = TRANSCRIPT.trim_end();
    let err = decode(&[unterminated.as_bytes()]).unwrap_err();
    assert_eq!(err.class, ErrorClass::StreamInterrupted);

    let err = decode(&[]).unwrap_err();
    assert_eq!(err.class, ErrorClass::StreamInterrupted);
}

#[test]
fn malformed_stream_chunk_is_an_error() {
    let mut decoder = GeminiProvider.stream_decoder();
    let mut out = Vec::new();
    let err = decoder
        .push(b"data: {\"candidates\": [\r\n\r\n", &mut out)
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::MalformedResponse);
    assert!(out.is_empty());
}

#[test]
fn in_stream_error_is_reported_and_ends_the_stream() {
    let first = TRANSCRIPT.split_inclusive("\r\n\r\n").next().unwrap();
    let input = format!(
        "{first}data: {{\"error\": {{\"code\": 503, \"message\": \"The model is overloaded. Please try again later.\", \"status\": \"UNAVAILABLE\"}}}}\r\n\r\n"
    );
    let events = decode(&[input.as_bytes()]).unwrap();
    let Some(StreamEvent::Error(info)) = events.last() else {
        panic!("expected an error event, got {events:?}");
    };
    assert_eq!(info.class, ErrorClass::Overloaded);
    assert_eq!(info.status, None);
    assert_eq!(info.provider_code.as_deref(), Some("UNAVAILABLE"));
    assert!(matches!(events[0], StreamEvent::Start { .. }));
}

#[test]
fn blocked_prompt_in_stream_finishes_with_content_filter() {
    let input = b"data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"},\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 9},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"b1\"}\r\n\r\n";
    let events = decode(&[input]).unwrap();
    assert_eq!(events[1], StreamEvent::Finish(FinishReason::ContentFilter));
}

// ---------------------------------------------------------------------------------------------
// Errors

fn classify(status: u16, headers: &HeaderMap, body: &str) -> crate::canonical::UpstreamErrorInfo {
    GeminiProvider.classify_error(status, headers, body.as_bytes())
}

#[test]
fn classifies_google_error_bodies() {
    let rate_limited = classify(
        429,
        &HeaderMap::new(),
        r#"{"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31s"}]}}"#,
    );
    assert_eq!(rate_limited.class, ErrorClass::RateLimited);
    assert_eq!(rate_limited.status, Some(429));
    assert_eq!(rate_limited.message, "You exceeded your current quota.");
    assert_eq!(
        rate_limited.provider_code.as_deref(),
        Some("RESOURCE_EXHAUSTED")
    );
    assert_eq!(rate_limited.retry_after_secs, Some(31.0));

    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, "5".parse().unwrap());
    let overloaded = classify(
        503,
        &headers,
        r#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#,
    );
    assert_eq!(overloaded.class, ErrorClass::Overloaded);
    assert_eq!(overloaded.retry_after_secs, Some(5.0));

    let too_long = classify(
        400,
        &HeaderMap::new(),
        r#"{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(too_long.class, ErrorClass::ContextTooLong);

    let invalid = classify(
        400,
        &HeaderMap::new(),
        r#"{"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(invalid.class, ErrorClass::InvalidRequest);
    let bad_key = classify(
        400,
        &HeaderMap::new(),
        r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#,
    );
    assert_eq!(bad_key.class, ErrorClass::AuthFailed);

    for (status, name, class) in [
        (403, "PERMISSION_DENIED", ErrorClass::AuthFailed),
        (401, "UNAUTHENTICATED", ErrorClass::AuthFailed),
        (404, "NOT_FOUND", ErrorClass::NotFound),
        (504, "DEADLINE_EXCEEDED", ErrorClass::Timeout),
        (500, "INTERNAL", ErrorClass::ServerError),
        (400, "FAILED_PRECONDITION", ErrorClass::InvalidRequest),
    ] {
        let body =
            format!(r#"{{"error": {{"code": {status}, "message": "m", "status": "{name}"}}}}"#);
        assert_eq!(
            classify(status, &HeaderMap::new(), &body).class,
            class,
            "{name}"
        );
    }

    // The non-SSE stream endpoint wraps the envelope in an array.
    let wrapped = classify(
        429,
        &HeaderMap::new(),
        r#"[{"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}]"#,
    );
    assert_eq!(wrapped.message, "slow down");
}

#[test]
fn unparseable_error_bodies_fall_back_to_the_status() {
    let info = classify(
        502,
        &HeaderMap::new(),
        "<html>\n<b>Bad   gateway</b>\n</html>",
    );
    assert_eq!(info.class, ErrorClass::ServerError);
    assert_eq!(info.status, Some(502));
    assert_eq!(info.provider_code, None);
    assert_eq!(
        info.message,
        "Gemini returned HTTP 502: <html> <b>Bad gateway</b> </html>"
    );
    let info = classify(429, &HeaderMap::new(), "");
    assert_eq!(info.class, ErrorClass::RateLimited);
    assert_eq!(info.message, "Gemini returned HTTP 429");
}

// ---------------------------------------------------------------------------------------------
// Embeddings

fn embedding_request(input: EmbeddingInput) -> EmbeddingRequest {
    EmbeddingRequest {
        model: "alias".into(),
        input,
        single: false,
        dimensions: Some(256),
        encoding_format: EncodingFormat::Float,
        user: None,
        extras: Extras::default(),
    }
}

#[test]
fn embeddings_request_and_response() {
    let mut request = embedding_request(EmbeddingInput::Texts(vec!["alpha".into(), "beta".into()]));
    let mut fields = serde_json::Map::new();
    fields.insert("taskType".into(), json!("RETRIEVAL_DOCUMENT"));
    request.extras = Extras::new(DialectId::Gemini, fields);
    let http_request = GeminiProvider
        .build_embeddings(
            &request,
            &Target {
                model: "gemini-embedding-001",
                ..target(Some("k"))
            },
        )
        .unwrap();
    assert_eq!(
        http_request.uri().to_string(),
        format!("{BASE}/models/gemini-embedding-001:batchEmbedContents")
    );
    assert_eq!(http_request.headers()["x-goog-api-key"], "k");
    assert_eq!(
        body_json(&http_request),
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "alpha"}]},
             "outputDimensionality": 256, "taskType": "RETRIEVAL_DOCUMENT"},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "beta"}]},
             "outputDimensionality": 256, "taskType": "RETRIEVAL_DOCUMENT"}
        ]})
    );

    let response = GeminiProvider
        .parse_embeddings(br#"{"embeddings": [{"values": [0.25, -0.5]}, {"values": [1.0, 0.0]}]}"#)
        .unwrap();
    assert_eq!(response.vectors, vec![vec![0.25, -0.5], vec![1.0, 0.0]]);
    assert_eq!(response.usage, None);

    let response = GeminiProvider
        .parse_embeddings(
            br#"{"embeddings": [{"values": [0.5]}], "usageMetadata": {"promptTokenCount": 4}}"#,
        )
        .unwrap();
    assert_eq!(response.usage.unwrap().input_tokens, 4);

    let err = GeminiProvider
        .parse_embeddings(b"{\"embeddings\": 3}")
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::MalformedResponse);
}

#[test]
fn token_inputs_are_rejected_for_embeddings() {
    let request = embedding_request(EmbeddingInput::Tokens(vec![vec![1, 2, 3]]));
    let err = GeminiProvider
        .build_embeddings(&request, &target(None))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("input"));
}

#[test]
fn capabilities_are_all_on() {
    let caps = GeminiProvider.capabilities();
    assert!(caps.tools && caps.images && caps.json_schema && caps.embeddings);
    assert_eq!(GeminiProvider.id(), DialectId::Gemini);
}

/// A long prompt without escapes goes into the Gemini request as a slice of the client's body
/// (system instruction and user text), and the body is byte for byte what the same request
/// with copied texts gives.
#[test]
fn long_texts_without_escapes_are_spliced_into_the_request() {
    use crate::dialect::IngressDialect;
    use crate::openai::OpenAiIngress;

    let long = "words and more words, <tags> & ünïcödé ✓ ".repeat(1000);
    let body = bytes::Bytes::from(
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": long},
                {"role": "user", "content": [{"type": "text", "text": long}, {"type": "text", "text": "short"}]},
                {"role": "assistant", "content": "a \"quoted\" line\n"}
            ]
        })
        .to_string(),
    );
    let request = OpenAiIngress.decode_chat(&body).unwrap();
    let mut copied = request.clone();
    for message in &mut copied.messages {
        for part in &mut message.content {
            if let ContentPart::Text { text, .. } = part {
                *text = Text::from(text.as_str());
            }
        }
    }
    let written = GeminiProvider.build_chat(&request, &target(None)).unwrap();
    let expected = build(&copied);
    assert_eq!(&written.body().to_vec(), expected.body());
    let pieces = written.body().clone().into_pieces();
    let inside = |piece: &bytes::Bytes| body.as_ptr_range().contains(&piece.as_ptr());
    assert_eq!(pieces.iter().filter(|p| inside(p)).count(), 2);
    assert_eq!(pieces.len(), 5, "no empty piece");
    let sent: Value = serde_json::from_slice(expected.body()).unwrap();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], long.as_str());
}

#[test]
fn a_botched_function_call_and_nothing_else_is_a_failure_whole_and_streamed() {
    let body = br#"{"candidates":[{"content":{"role":"model","parts":[]},"finishReason":"MALFORMED_FUNCTION_CALL"}],"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5}}"#;
    let e = GeminiProvider.parse_chat(body).unwrap_err();
    assert_eq!(e.class, ErrorClass::MalformedResponse);
    assert!(e.class.is_retryable());
    let stream = b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[]},\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}],\"responseId\":\"r\"}\r\n\r\n";
    let events = decode(&[stream]).unwrap();
    assert!(
        events.iter().any(
            |e| matches!(e, StreamEvent::Error(e) if e.class == ErrorClass::MalformedResponse)
        ),
        "{events:?}"
    );
    // After some text, the answer stands as given.
    let stream = b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Let me\"}]}}],\"responseId\":\"r\"}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[]},\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}],\"responseId\":\"r\"}\r\n\r\n";
    let events = decode(&[stream]).unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, StreamEvent::Error(_))),
        "{events:?}"
    );
}

#[test]
fn thinking_settings_stay_within_what_each_gemini_model_takes() {
    let sent = |model: &str, reasoning: Reasoning| {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![message(Role::User, vec![ContentPart::text("hi")])],
            reasoning: Some(reasoning),
            ..ChatRequest::default()
        };
        let target = Target {
            base_url: "https://g",
            model,
            api_key: Some("k"),
            api_version: None,
        };
        let built = GeminiProvider.build_chat(&request, &target).unwrap();
        let body: Value = serde_json::from_slice(&built.body().to_vec()).unwrap();
        body["generationConfig"]["thinkingConfig"].clone()
    };
    let budget = |b: u32| Reasoning {
        budget_tokens: Some(b),
        ..Reasoning::default()
    };
    let effort = |e: &str| Reasoning {
        effort: Some(e.into()),
        ..Reasoning::default()
    };
    assert_eq!(
        sent("gemini-2.5-flash", budget(31_999))["thinkingBudget"],
        24_576
    );
    assert_eq!(
        sent("gemini-2.5-pro", budget(31_999))["thinkingBudget"],
        31_999
    );
    assert_eq!(
        sent("gemini-2.5-pro", budget(60_000))["thinkingBudget"],
        32_768
    );
    // Pro cannot be turned off: `none` is its least.
    assert_eq!(
        sent("gemini-2.5-pro", effort("none"))["thinkingBudget"],
        128
    );
    assert_eq!(
        sent("gemini-2.5-flash", effort("none"))["thinkingBudget"],
        0
    );
    assert_eq!(
        sent("gemini-2.5-flash-lite", budget(100))["thinkingBudget"],
        512
    );
    // Gemini 3 Pro has two levels and no off.
    for (asked, level) in [
        ("none", "LOW"),
        ("minimal", "LOW"),
        ("medium", "HIGH"),
        ("high", "HIGH"),
    ] {
        assert_eq!(
            sent("gemini-3-pro-preview", effort(asked))["thinkingLevel"],
            level,
            "{asked}"
        );
    }
    assert_eq!(
        sent("gemini-3-flash", effort("medium"))["thinkingLevel"],
        "MEDIUM"
    );
    assert_eq!(
        sent("gemini-3-flash", effort("none"))["thinkingLevel"],
        "MINIMAL"
    );
}

#[test]
fn gemini_3_gets_a_signature_on_calls_it_did_not_make() {
    let history = || ChatRequest {
        model: "m".into(),
        messages: vec![
            message(
                Role::User,
                vec![ContentPart::text("weather in two places?")],
            ),
            message(
                Role::Assistant,
                vec![
                    ContentPart::ToolCall {
                        id: "call_1".into(),
                        name: "w".into(),
                        arguments: "{}".into(),
                        extras: Extras::default(),
                    },
                    ContentPart::ToolCall {
                        id: "call_2".into(),
                        name: "w".into(),
                        arguments: "{}".into(),
                        extras: Extras::default(),
                    },
                ],
            ),
        ],
        ..ChatRequest::default()
    };
    let calls = |model: &str, request: &ChatRequest| {
        let target = Target {
            base_url: "https://g",
            model,
            api_key: Some("k"),
            api_version: None,
        };
        let built = GeminiProvider.build_chat(request, &target).unwrap();
        let body: Value = serde_json::from_slice(&built.body().to_vec()).unwrap();
        body["contents"][1]["parts"].as_array().unwrap().clone()
    };
    let parts = calls("gemini-3-pro-preview", &history());
    assert_eq!(
        parts[0]["thoughtSignature"],
        "skip_thought_signature_validator"
    );
    // Only a turn's first call carries one.
    assert!(parts[1].get("thoughtSignature").is_none());
    // Gemini 2.5 does not ask for them.
    let parts = calls("gemini-2.5-flash", &history());
    assert!(parts[0].get("thoughtSignature").is_none());
}

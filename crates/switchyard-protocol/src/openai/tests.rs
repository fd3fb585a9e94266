use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::canonical::*;
use crate::dialect::{
    EncodeCtx, IngressDialect, OpenAiQuirks, ProviderDialect, StreamDecoder, StreamEncoder, Target,
};
use crate::provider_body::ProviderBody;

fn target() -> Target<'static> {
    Target {
        base_url: "https://api.example.com/v1",
        model: "gpt-4o-2024-08-06",
        api_key: Some("sk-test"),
        api_version: None,
    }
}

fn body_of(req: &http::Request<ProviderBody>) -> Value {
    serde_json::from_slice(&req.body().to_vec()).unwrap()
}

#[test]
fn decodes_a_full_request_and_keeps_unknown_fields() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": true}},
        "max_completion_tokens": 50,
        "stop": "END",
        "seed": 7,
        "stream": true,
        "stream_options": {"include_usage": true},
        "reasoning_effort": "low",
        "logit_bias": {"1": 2}
    });
    let req = OpenAiIngress
        .decode_chat(&Bytes::from(body.to_string()))
        .unwrap();
    assert_eq!(req.model, "gpt-4o");
    assert_eq!(req.messages.len(), 4);
    assert_eq!(req.messages[0].role, Role::System);
    assert!(matches!(
        &req.messages[1].content[1],
        ContentPart::Image { source: ImageSource::Base64 { media_type, .. }, detail: Some(d) } if media_type == "image/png" && d == "low"
    ));
    assert!(
        matches!(&req.messages[2].content[0], ContentPart::ToolCall { name, .. } if name == "lookup")
    );
    assert!(
        matches!(&req.messages[3].content[0], ContentPart::ToolResult { tool_call_id, .. } if tool_call_id == "call_1")
    );
    assert_eq!(req.tool_choice, Some(ToolChoice::Function("lookup".into())));
    assert_eq!(req.max_tokens, Some(50));
    assert_eq!(req.stop, vec!["END".to_string()]);
    assert!(req.stream && req.include_usage);
    assert!(req.extras.fields.contains_key("logit_bias"));

    // Same dialect: unknown fields pass through to the provider.
    let out = OpenAiProvider::new(OpenAiQuirks::default())
        .build_chat(&req, &target())
        .unwrap();
    assert_eq!(out.uri(), "https://api.example.com/v1/chat/completions");
    assert_eq!(out.headers()["authorization"], "Bearer sk-test");
    let b = body_of(&out);
    assert_eq!(b["model"], "gpt-4o-2024-08-06");
    assert_eq!(b["logit_bias"], json!({"1": 2}));
    assert_eq!(b["max_completion_tokens"], 50);
    assert_eq!(
        b["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "42"})
    );
    assert_eq!(
        b["messages"][1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,AAAA"
    );
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert_eq!(b["reasoning_effort"], "low");
}

/// The messages of the OpenAI provider's request for `body`, read by `ingress`.
fn provider_messages(ingress: &dyn IngressDialect, body: &Value) -> Value {
    let req = ingress.decode_chat(&Bytes::from(body.to_string())).unwrap();
    let out = OpenAiProvider::new(OpenAiQuirks::default())
        .build_chat(&req, &target())
        .unwrap();
    body_of(&out)["messages"].clone()
}

#[test]
fn a_tool_results_images_follow_the_tool_messages_in_a_user_message() {
    // An agent's turn from an Anthropic client: two tool results with screenshots, then text.
    let body = json!({
        "model": "m", "max_tokens": 9,
        "messages": [
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}},
                {"type": "tool_use", "id": "t2", "name": "zoom", "input": {"x": 1}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "the screen:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
                ]},
                {"type": "tool_result", "tool_use_id": "t2", "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/zoom.png"}}
                ]},
                {"type": "text", "text": "what next?"}
            ]}
        ]
    });
    let messages = provider_messages(&crate::anthropic::AnthropicIngress, &body);
    assert_eq!(messages[0]["tool_calls"].as_array().unwrap().len(), 2);
    // Every call is answered by a `tool` message right after the assistant's, then the images.
    assert_eq!(
        messages[1],
        json!({"role": "tool", "tool_call_id": "t1", "content": "the screen:"})
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "t2", "content": ""})
    );
    assert_eq!(
        messages[3],
        json!({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://x/zoom.png"}},
            {"type": "text", "text": "what next?"}
        ]})
    );
    assert_eq!(messages.as_array().unwrap().len(), 4);

    // From an OpenAI client, a `tool` message with an image part: the user message after it
    // carries the image, and not the function's name as a participant's.
    let body = json!({"model": "m", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "screenshot", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "screenshot", "content": [
            {"type": "text", "text": "ok"},
            {"type": "image_url", "image_url": {"url": "https://x/s.png"}}]}]});
    let messages = provider_messages(&OpenAiIngress, &body);
    assert_eq!(
        messages[1],
        json!({"role": "tool", "tool_call_id": "c1", "content": "ok"})
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/s.png"}}]})
    );
}

#[test]
fn decode_errors_name_the_field() {
    let cases = [
        (json!({"messages": []}), "model"),
        (json!({"model": "m"}), "messages"),
        (
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            "n",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3, "stream": true}),
            "n",
        ),
    ];
    for (body, param) in cases {
        let err = OpenAiIngress
            .decode_chat(&Bytes::from(body.to_string()))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
    }
    let err = OpenAiIngress
        .decode_chat(&Bytes::from_static(b"{not json"))
        .unwrap_err();
    assert!(err.message.contains("invalid JSON"));
    let err = OpenAiIngress
        .decode_chat(&Bytes::from_static(b"[1]"))
        .unwrap_err();
    assert!(err.message.contains("JSON object"));
}

/// xAI counts reasoning beside the completion (its total says so) and bills it as output; OpenAI
/// counts it within. Output tokens are what is billed either way.
#[test]
fn reasoning_counted_beside_the_completion_is_output() {
    let usage = |total: u64| {
        let reply = json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "grok-4",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": total,
                "completion_tokens_details": {"reasoning_tokens": 300}}
        });
        let r = OpenAiProvider::new(OpenAiQuirks::compatible())
            .parse_chat(reply.to_string().as_bytes())
            .unwrap()
            .usage
            .unwrap();
        (r.output_tokens, r.reasoning_tokens)
    };
    assert_eq!(usage(317), (305, 300));
    assert_eq!(usage(17), (5, 300));
}

#[test]
fn parses_reply_with_tool_calls_and_usage() {
    let reply = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 5}},
        "service_tier": "default"
    });
    let r = OpenAiProvider::new(OpenAiQuirks::default())
        .parse_chat(reply.to_string().as_bytes())
        .unwrap();
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 60,
            cache_write_tokens: 0,
            reasoning_tokens: 5,
            ..Default::default()
        })
    );
    let ctx = EncodeCtx {
        prompt_estimate: 0,
        id: "abc".into(),
        model: "alias".into(),
        created: 5,
        include_usage: false,
        echo: None,
        keep: None,
    };
    let out: Value = serde_json::from_slice(&OpenAiIngress.encode_chat(&r, &ctx)).unwrap();
    assert_eq!(out["id"], "chatcmpl-abc");
    assert_eq!(out["model"], "alias");
    assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["id"],
        "call_9"
    );
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 60);
    assert_eq!(out["service_tier"], "default");
}

const STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
: keep-alive\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n\
data: [DONE]\n\n";

fn decode(parts: &[&[u8]]) -> Result<Vec<StreamEvent>, UpstreamErrorInfo> {
    let mut d = OpenAiStreamDecoder::default();
    let mut out = Vec::new();
    for p in parts {
        d.push(p, &mut out)?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

#[test]
fn stream_decodes_identically_at_every_split() {
    let bytes = STREAM.as_bytes();
    let whole = decode(&[bytes]).unwrap();
    assert_eq!(
        whole,
        vec![
            StreamEvent::Start {
                id: "c1".into(),
                model: "m".into()
            },
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo é".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\":1}".into()
            },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                input_tokens: 9,
                output_tokens: 4,
                ..Usage::default()
            }),
        ]
    );
    for i in 0..=bytes.len() {
        assert_eq!(
            decode(&[&bytes[..i], &bytes[i..]]).unwrap(),
            whole,
            "split at {i}"
        );
    }
}

type Decoded = Result<Vec<StreamEvent>, UpstreamErrorInfo>;

/// Decodes `chunks` (each one SSE event's data) twice: as the gateway does, and with the text
/// chunk frame forgotten before every chunk, so that every chunk is parsed whole. Returns both
/// results and how many chunks the first read through the frame.
fn decode_framed_and_whole(chunks: &[String]) -> (Decoded, Decoded, usize) {
    let run = |forget: bool| {
        let mut d = OpenAiStreamDecoder::default();
        let mut out = Vec::new();
        let mut result = Ok(());
        for c in chunks {
            if forget {
                d.forget_frame();
            }
            result = d.push(format!("data: {c}\n\n").as_bytes(), &mut out);
            if result.is_err() {
                break;
            }
        }
        let framed = d.framed_chunks();
        (result.map(|()| out), framed)
    };
    let (framed, count) = run(false);
    let (whole, none) = run(true);
    assert_eq!(none, 0);
    (framed, whole, count)
}

/// A stream's plain text chunks are read through the frame of the one before (only their text
/// parsed), and that gives exactly the events parsing each chunk whole gives: texts with every
/// kind of escape, texts that look like the frame's own JSON, empty and null texts, chunks with
/// a field more or less, a changing field on every chunk, finish and usage chunks, and chunks
/// that are not well-formed at all.
#[test]
fn framed_text_chunks_read_as_whole_ones() {
    // Keys in the simulator's order (sorted), and in OpenAI's.
    let sorted = |content: &Value, extra: &str| {
        format!(
            r#"{{"choices":[{{"delta":{{"content":{content}}},"finish_reason":null,"index":0,"logprobs":null}}],"created":1741569952,"id":"chatcmpl-abc","model":"gpt-4o-mini","object":"chat.completion.chunk"{extra},"service_tier":"default","system_fingerprint":"fp_1","usage":null}}"#
        )
    };
    let openai = |content: &Value, obfuscation: &str| {
        format!(
            r#"{{"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1,"model":"gpt-4o","service_tier":"default","system_fingerprint":"fp_1","choices":[{{"index":0,"delta":{{"content":{content}}},"logprobs":null,"finish_reason":null}}],"usage":null,"obfuscation":"{obfuscation}"}}"#
        )
    };
    let texts = [
        json!("Hello"),
        json!(" world"),
        json!("quote \" backslash \\ slash / newline \n tab \t nul \u{0} é 日本 🎉"),
        json!("\"},\"finish_reason\":\"stop\",\"x\":{\"content\":\""),
        json!(""),
        Value::Null,
        json!("after null"),
        json!("\u{1f}\u{7f}"),
    ];
    let first = r#"{"choices":[{"delta":{"content":"","role":"assistant","refusal":null},"finish_reason":null,"index":0,"logprobs":null}],"created":1741569952,"id":"chatcmpl-abc","model":"gpt-4o-mini","object":"chat.completion.chunk","service_tier":"default","system_fingerprint":"fp_1","usage":null}"#;
    let mut stream = vec![first.to_owned()];
    stream.extend(texts.iter().map(|t| sorted(t, "")));
    // Escaped forms the writer above never makes: `\u` escapes and a surrogate pair.
    stream.push(sorted(&json!("x"), "").replace(r#""x""#, r#""\u00e9\ud83c\udf89\/""#));
    // A field more, then the frame's shape again.
    stream.push(sorted(&json!("with more"), r#","extra":1"#));
    stream.push(sorted(&json!("back"), ""));
    // Not one string where the text was: parsed whole, whatever it is.
    stream.push(sorted(&json!("x"), "").replace(r#""x""#, r#""a","refusal":"b""#));
    stream.push(sorted(&json!("x"), "").replace(r#""x""#, r#" "spaced" "#));
    stream.push(sorted(&json!("x"), "").replace(r#""x""#, r#""a"  "#));
    stream.push(sorted(&json!("tail"), ""));
    stream.push(
        sorted(&Value::Null, "").replace(r#""finish_reason":null"#, r#""finish_reason":"stop""#),
    );
    stream.push(
        r#"{"choices":[],"created":1,"id":"chatcmpl-abc","model":"gpt-4o-mini","object":"chat.completion.chunk","usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#
            .to_owned(),
    );
    stream.push("[DONE]".to_owned());
    let (framed, whole, count) = decode_framed_and_whole(&stream);
    let events = framed.unwrap();
    assert_eq!(events, whole.unwrap());
    // Framed: each text after "Hello" but the null one (a null text is not a string), the
    // `\u`-escaped one included: seven. After a changed shape, chunks are parsed whole until
    // one of them frames the next.
    assert_eq!(count, 7);
    let decoded: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert!(decoded.contains(&"\"},\"finish_reason\":\"stop\",\"x\":{\"content\":\""));
    assert!(decoded.contains(&"é🎉/"));
    assert!(decoded.contains(&"a") && decoded.contains(&"spaced"));
    assert!(matches!(events.last(), Some(StreamEvent::Usage(_))));

    // OpenAI's own chunks carry a different `obfuscation` on every chunk, of varying length:
    // framed around it (every text after the first, the null one aside), same events.
    let mut stream: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| openai(t, &"x".repeat(i % 5 + 1)))
        .collect();
    // An escaped text and an escaped obfuscation; one that is empty.
    stream.push(openai(&json!("x"), "").replace(r#""x""#, r#""\u00e9\"\\""#));
    stream.push(openai(&json!("esc"), r#"a\"b\\"#));
    stream.push(openai(&json!("empty"), ""));
    let (framed, whole, count) = decode_framed_and_whole(&stream);
    assert_eq!(framed.unwrap(), whole.unwrap());
    assert_eq!(count, texts.len() - 2 + 3);
    // Not a string where the obfuscation was, the obfuscation named twice, another member
    // slipped in after the text or after the obfuscation, whitespace around either: parsed
    // whole. Without any obfuscation the chunk is another shape.
    let base = openai(&json!("x"), "abc");
    let mut stream = vec![openai(&json!("first"), "q")];
    for changed in [
        base.replace(r#""obfuscation":"abc""#, r#""obfuscation":12"#),
        base.replace(
            r#""obfuscation":"abc""#,
            r#""obfuscation":"a","obfuscation":"b""#,
        ),
        base.replace(r#""obfuscation":"abc""#, r#""obfuscation":"a","extra":"b""#),
        base.replace(r#""content":"x""#, r#""content":"x","refusal":"r""#),
        base.replace(r#""content":"x""#, r#""content":"x" "#),
        base.replace(r#""obfuscation":"abc""#, r#""obfuscation": "abc""#),
        base.replace(r#","obfuscation":"abc""#, ""),
        openai(&json!("again"), "zz"),
        openai(&json!("last"), "y"),
    ] {
        stream.push(changed);
    }
    let (framed, whole, count) = decode_framed_and_whole(&stream);
    assert_eq!(framed.unwrap(), whole.unwrap());
    // Each changed chunk reads unlike the frame before it; the last reads like "again".
    assert_eq!(count, 1);
    // An obfuscation before the text frames nothing around it.
    let before = |t: &str, o: &str| {
        format!(
            r#"{{"id":"c","obfuscation":"{o}","choices":[{{"index":0,"delta":{{"content":"{t}"}}}}]}}"#
        )
    };
    let stream = vec![before("a", "1"), before("b", "22"), before("c", "22")];
    let (framed, whole, count) = decode_framed_and_whole(&stream);
    assert_eq!(framed.unwrap(), whole.unwrap());
    // Not even the third, which repeats the second's obfuscation.
    assert_eq!(count, 0);

    // A framed chunk whose text is not text is an error either way.
    let stream = vec![
        sorted(&json!("ok"), ""),
        sorted(&json!("x"), "").replace(r#""x""#, "42"),
    ];
    let (framed, whole, _) = decode_framed_and_whole(&stream);
    assert_eq!(framed.unwrap_err().class, ErrorClass::MalformedResponse);
    assert_eq!(whole.unwrap_err().class, ErrorClass::MalformedResponse);
}

#[test]
fn premature_end_and_malformed_chunks_fail() {
    let bytes = STREAM.as_bytes();
    let cut = STREAM.find("data: [DONE]").unwrap();
    let err = decode(&[&bytes[..cut]]).unwrap_err();
    assert_eq!(err.class, ErrorClass::StreamInterrupted);
    let err = decode(&[&bytes[..200]]).unwrap_err();
    assert_eq!(err.class, ErrorClass::StreamInterrupted);
    let err = decode(&[b"data: {not json\n\n"]).unwrap_err();
    assert_eq!(err.class, ErrorClass::MalformedResponse);
    let events = decode(&[
        b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n",
    ])
    .unwrap();
    assert!(matches!(&events[0], StreamEvent::Error(e) if e.message == "boom"));
}

#[test]
fn done_without_a_finish_reason_is_a_cut_stream_from_openai_only() {
    let no_finish = STREAM.replace(
        ",\"finish_reason\":\"tool_calls\"",
        ",\"finish_reason\":null",
    );
    let run = |quirks: OpenAiQuirks, body: &str| {
        let mut d = OpenAiProvider::new(quirks).stream_decoder();
        let mut out = Vec::new();
        d.push(body.as_bytes(), &mut out)?;
        d.finish(&mut out)
    };
    let err = run(OpenAiQuirks::default(), &no_finish).unwrap_err();
    assert_eq!(err.class, ErrorClass::StreamInterrupted);
    assert!(err.message.contains("finish_reason"), "{}", err.message);
    run(OpenAiQuirks::compatible(), &no_finish).unwrap();
    run(OpenAiQuirks::default(), STREAM).unwrap();
    // An error in the stream says why it ended.
    run(
        OpenAiQuirks::default(),
        "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n",
    )
    .unwrap();
}

#[test]
fn encoder_output_decodes_back_to_the_same_events() {
    let events = decode(&[STREAM.as_bytes()]).unwrap();
    let ctx = EncodeCtx {
        prompt_estimate: 0,
        id: "x".into(),
        model: "alias".into(),
        created: 1,
        include_usage: true,
        echo: None,
        keep: None,
    };
    let mut enc = OpenAiStreamEncoder::new(ctx);
    let mut out = Vec::new();
    for e in &events {
        enc.event(e, &mut out);
    }
    enc.finish(&mut out);
    let again = decode(&[&out]).unwrap();
    assert_eq!(&again[1..], &events[1..]);
    assert!(matches!(&again[0], StreamEvent::Start { model, .. } if model == "alias"));
}

#[test]
fn error_bodies_are_classified() {
    let p = OpenAiProvider::new(OpenAiQuirks::default());
    let mut h = http::HeaderMap::new();
    h.insert("retry-after", "3".parse().unwrap());
    let e = p.classify_error(
        429,
        &h,
        br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
    );
    assert_eq!(
        (e.class, e.retry_after_secs, e.message.as_str()),
        (ErrorClass::RateLimited, Some(3.0), "slow down")
    );
    let e = p.classify_error(400, &http::HeaderMap::new(), br#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#);
    assert_eq!(e.class, ErrorClass::ContextTooLong);
    let e = p.classify_error(502, &http::HeaderMap::new(), b"<html>bad gateway</html>");
    assert_eq!(e.class, ErrorClass::ServerError);
    assert!(e.message.contains("502"));
    assert_eq!(e.param, None);
    // The field a refusal names is kept for the client's error.
    let e = p.classify_error(400, &http::HeaderMap::new(), br#"{"error":{"message":"Invalid 'top_logprobs'","type":"invalid_request_error","param":"top_logprobs","code":null}}"#);
    assert_eq!(
        (e.class, e.param.as_deref()),
        (ErrorClass::InvalidRequest, Some("top_logprobs"))
    );

    // OpenAI-compatible servers' own words: xAI's context limit (its error a string) and its
    // bad key (a 400), OpenRouter's moderation refusal (a 403).
    let none = http::HeaderMap::new();
    for (status, body, class) in [
        (
            400,
            &br#"{"code":"Client specified an invalid argument","error":"This model's maximum prompt length is 131072 but the request contains 136973 tokens."}"#[..],
            ErrorClass::ContextTooLong,
        ),
        (
            400,
            br#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***23. You can obtain an API key from https://console.x.ai."}"#,
            ErrorClass::AuthFailed,
        ),
        (
            403,
            br#"{"error":{"code":403,"message":"meta-llama/llama-guard requires moderation on OpenRouter. Your input was flagged for harassment. No credits were charged.","metadata":{"reasons":["harassment"],"flagged_input":"...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"#,
            ErrorClass::ContentFiltered,
        ),
        (403, br#"{"error":{"message":"Forbidden"}}"#, ErrorClass::AuthFailed),
    ] {
        assert_eq!(
            p.classify_error(status, &none, body).class,
            class,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn azure_uses_deployment_urls_and_api_key() {
    let req = OpenAiIngress
        .decode_chat(&Bytes::from_static(
            br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap();
    let t = Target {
        base_url: "https://r.openai.azure.com",
        model: "dep1",
        api_key: Some("k"),
        api_version: Some("2024-10-21"),
    };
    let out = OpenAiProvider::azure().build_chat(&req, &t).unwrap();
    assert_eq!(
        out.uri(),
        "https://r.openai.azure.com/openai/deployments/dep1/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(out.headers()["api-key"], "k");
    assert!(body_of(&out).get("model").is_none());
}

#[test]
fn the_request_head_a_provider_keeps_follows_the_target() {
    let req = OpenAiIngress
        .decode_chat(&Bytes::from_static(
            br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap();
    let azure = OpenAiProvider::azure();
    let deployment = |model, api_key| Target {
        base_url: "https://r.openai.azure.com",
        model,
        api_key: Some(api_key),
        api_version: Some("2024-10-21"),
    };
    let url = |model: &str| {
        format!(
            "https://r.openai.azure.com/openai/deployments/{model}/chat/completions?api-version=2024-10-21"
        )
    };
    // The first target's head is kept; another deployment, a rotated key, and the first again
    // each get their own URL and key.
    for (model, key) in [
        ("dep1", "k1"),
        ("dep1", "k1"),
        ("dep2", "k1"),
        ("dep1", "k2"),
        ("dep1", "k1"),
    ] {
        let out = azure.build_chat(&req, &deployment(model, key)).unwrap();
        assert_eq!(out.uri(), url(model).as_str());
        assert_eq!(out.headers()["api-key"], key);
        assert!(out.headers()["api-key"].is_sensitive());
    }
    // Where the model goes in the body, one head serves every model of the provider.
    let openai = OpenAiProvider::new(OpenAiQuirks::default());
    for model in ["gpt-4o", "gpt-4o-mini"] {
        let out = openai
            .build_chat(&req, &Target { model, ..target() })
            .unwrap();
        assert_eq!(out.uri(), "https://api.example.com/v1/chat/completions");
        assert_eq!(body_of(&out)["model"], model);
        assert_eq!(out.headers()["authorization"], "Bearer sk-test");
    }
    let moved = Target {
        base_url: "https://other.example/v1",
        ..target()
    };
    let out = openai.build_chat(&req, &moved).unwrap();
    assert_eq!(out.uri(), "https://other.example/v1/chat/completions");
    // A key that cannot be a header, or a URL that cannot be one, is an error, not a request.
    let bad_key = Target {
        api_key: Some("bad\nkey"),
        ..target()
    };
    let error = OpenAiProvider::new(OpenAiQuirks::default())
        .build_chat(&req, &bad_key)
        .unwrap_err();
    assert!(!error.message.contains("bad"), "{}", error.message);
    let bad_url = Target {
        base_url: "not a url",
        ..target()
    };
    assert!(
        OpenAiProvider::new(OpenAiQuirks::default())
            .build_chat(&req, &bad_url)
            .is_err()
    );
}

#[test]
fn embeddings_round_trip_in_both_encodings() {
    let req = decode_embeddings(br#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#)
        .unwrap();
    assert_eq!(
        req.input,
        EmbeddingInput::Texts(vec!["a".into(), "b".into()])
    );
    let reply = json!({"object":"list","model":"e","data":[{"index":1,"embedding":[0.5,1.0]},{"index":0,"embedding":[0.25,-1.0]}],"usage":{"prompt_tokens":2,"total_tokens":2}});
    let parsed = OpenAiProvider::new(OpenAiQuirks::default())
        .parse_embeddings(reply.to_string().as_bytes())
        .unwrap();
    assert_eq!(parsed.vectors, vec![vec![0.25, -1.0], vec![0.5, 1.0]]);
    let b64: Value =
        serde_json::from_slice(&encode_embeddings(&parsed, "alias", EncodingFormat::Base64))
            .unwrap();
    let again = OpenAiProvider::new(OpenAiQuirks::default())
        .parse_embeddings(b64.to_string().as_bytes())
        .unwrap();
    assert_eq!(again.vectors, parsed.vectors);
    assert!(
        decode_embeddings(br#"{"model":"e","input":{}}"#)
            .unwrap_err()
            .param
            .as_deref()
            == Some("input")
    );
}

/// A Gemini 3 reply with two parallel calls; only the first carries a thought signature, as
/// the thought signatures guide describes.
const GEMINI_PARALLEL_CALLS: &str = r#"{
  "candidates": [{
    "content": {"role": "model", "parts": [
      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "Q2lRQjBlMkti"},
      {"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}}
    ]},
    "finishReason": "STOP",
    "index": 0
  }],
  "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 18, "totalTokenCount": 58},
  "modelVersion": "gemini-3-pro-preview",
  "responseId": "resp-1"
}"#;

fn ctx() -> EncodeCtx {
    EncodeCtx {
        prompt_estimate: 0,
        id: "x".into(),
        model: "alias".into(),
        created: 1,
        include_usage: false,
        echo: None,
        keep: None,
    }
}

/// The next turn as an OpenAI SDK sends it: the assistant message echoed back with its
/// `tool_calls` (including `extra_content`), then one tool result per call.
fn next_turn(tool_calls: &Value) -> Vec<u8> {
    let calls = tool_calls.as_array().unwrap();
    let mut messages = vec![
        json!({"role": "user", "content": "Weather in Paris and Lyon?"}),
        json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
    ];
    for call in calls {
        messages
            .push(json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"temp\": 21}"}));
    }
    json!({"model": "alias", "messages": messages})
        .to_string()
        .into_bytes()
}

/// The `functionCall` parts of the model turn Gemini would receive for `body`.
fn gemini_call_parts(body: &[u8]) -> Vec<Value> {
    let request = OpenAiIngress
        .decode_chat(&Bytes::copy_from_slice(body))
        .unwrap();
    let target = Target {
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        model: "gemini-3-pro-preview",
        api_key: None,
        api_version: None,
    };
    let built = crate::gemini::GeminiProvider
        .build_chat(&request, &target)
        .unwrap();
    let body = body_of(&built);
    let model_turn = body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "model")
        .unwrap()
        .clone();
    model_turn["parts"].as_array().unwrap().clone()
}

#[test]
fn gemini_signatures_round_trip_through_an_openai_client() {
    let reply = crate::gemini::GeminiProvider
        .parse_chat(GEMINI_PARALLEL_CALLS.as_bytes())
        .unwrap();
    let out: Value = serde_json::from_slice(&OpenAiIngress.encode_chat(&reply, &ctx())).unwrap();
    let calls = &out["choices"][0]["message"]["tool_calls"];
    assert_eq!(
        calls[0]["extra_content"],
        json!({"google": {"thought_signature": "Q2lRQjBlMkti"}})
    );
    assert!(calls[1].get("extra_content").is_none());

    let parts = gemini_call_parts(&next_turn(calls));
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["functionCall"]["args"], json!({"city": "Paris"}));
    assert_eq!(parts[0]["thoughtSignature"], "Q2lRQjBlMkti");
    assert!(parts[1].get("thoughtSignature").is_none());

    // An Anthropic client gets it in a redacted thinking block of its own, before the call.
    let anthropic = crate::anthropic::AnthropicIngress.encode_chat(&reply, &ctx());
    let message: Value = serde_json::from_slice(&anthropic).unwrap();
    assert_eq!(
        message["content"][0],
        json!({"type": "redacted_thinking", "data": "gemini-thought-signature:Q2lRQjBlMkti"})
    );
    assert_eq!(message["content"][1]["type"], "tool_use");
    assert_anthropic_client_returns_the_signature(&message["content"]);
}

/// An Anthropic client that sends back `content` (a Gemini call's answer) gives the call its
/// signature again, for Gemini; a Claude deployment never sees the carrier block.
fn assert_anthropic_client_returns_the_signature(content: &Value) {
    let next = json!({"model": "m", "max_tokens": 50, "messages": [
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": content[1]["id"], "content": "sunny"},
            {"type": "tool_result", "tool_use_id": content[2]["id"], "content": "rain"}]}]});
    let request = crate::anthropic::AnthropicIngress
        .decode_chat(&Bytes::from(next.to_string()))
        .unwrap();
    let turn = &request.messages[1].content;
    assert_eq!(
        turn.len(),
        2,
        "the carrier is not a part of its own: {turn:?}"
    );
    let ContentPart::ToolCall { extras, .. } = &turn[0] else {
        panic!("{turn:?}");
    };
    assert_eq!(
        crate::gemini::tool_call_signature(extras),
        Some("Q2lRQjBlMkti")
    );
    let target = Target {
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        model: "gemini-3-pro-preview",
        api_key: None,
        api_version: None,
    };
    let body = body_of(
        &crate::gemini::GeminiProvider
            .build_chat(&request, &target)
            .unwrap(),
    );
    assert_eq!(
        body["contents"][1]["parts"][0]["thoughtSignature"], "Q2lRQjBlMkti",
        "{body}"
    );
    let claude = Target {
        base_url: "https://api.anthropic.com/v1",
        model: "claude-sonnet-4-5",
        api_key: None,
        api_version: None,
    };
    let body = body_of(
        &crate::anthropic::AnthropicProvider
            .build_chat(&request, &claude)
            .unwrap(),
    );
    assert!(!body.to_string().contains("Q2lRQjBlMkti"), "{body}");
}

#[test]
fn gemini_signatures_round_trip_through_an_openai_stream() {
    let sse: String = GEMINI_PARALLEL_CALLS
        .split('\n')
        .map(str::trim)
        .collect::<String>();
    let sse = format!("data: {sse}\r\n\r\n");
    let mut decoder = crate::gemini::GeminiProvider.stream_decoder();
    let mut events = Vec::new();
    decoder.push(sse.as_bytes(), &mut events).unwrap();
    decoder.finish(&mut events).unwrap();
    assert!(events.contains(&StreamEvent::ToolCallSignature {
        index: 0,
        signature: "Q2lRQjBlMkti".into()
    }));

    let mut encoder = OpenAiStreamEncoder::new(ctx());
    let mut wire = Vec::new();
    for event in &events {
        encoder.event(event, &mut wire);
    }
    encoder.finish(&mut wire);

    // Accumulate the deltas as the SDKs do: by tool call index, the first delta naming the call.
    let mut calls: Vec<Value> = Vec::new();
    let mut first_deltas = Vec::new();
    for line in String::from_utf8(wire).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        for delta in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = delta["index"].as_u64().unwrap() as usize;
            if index == calls.len() {
                first_deltas.push(delta.clone());
                calls.push(json!({
                    "id": delta["id"],
                    "type": "function",
                    "function": {"name": delta["function"]["name"], "arguments": ""},
                }));
                if let Some(extra) = delta.get("extra_content") {
                    calls[index]["extra_content"] = extra.clone();
                }
            }
            if let Some(fragment) = delta["function"]["arguments"].as_str() {
                let so_far = calls[index]["function"]["arguments"].as_str().unwrap();
                calls[index]["function"]["arguments"] = format!("{so_far}{fragment}").into();
            }
        }
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(
        first_deltas[0]["extra_content"]["google"]["thought_signature"],
        "Q2lRQjBlMkti"
    );
    assert!(first_deltas[1].get("extra_content").is_none());

    let parts = gemini_call_parts(&next_turn(&Value::Array(calls)));
    assert_eq!(parts[0]["thoughtSignature"], "Q2lRQjBlMkti");
    assert_eq!(parts[1]["functionCall"]["args"], json!({"city": "Lyon"}));
    assert!(parts[1].get("thoughtSignature").is_none());

    // The Anthropic stream encoder writes the signature's redacted thinking block before the
    // call's block, which a client sends back as it got it.
    let mut encoder = crate::anthropic::AnthropicStreamEncoder::new(ctx());
    let mut wire = Vec::new();
    for event in &events {
        encoder.event(event, &mut wire);
    }
    encoder.finish(&mut wire);
    let text = String::from_utf8(wire).unwrap();
    let mut blocks: Vec<Value> = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["type"] == "content_block_start" {
            blocks.push(event["content_block"].clone());
            inputs.push(String::new());
        } else if event["delta"]["type"] == "input_json_delta" {
            inputs[event["index"].as_u64().unwrap() as usize]
                .push_str(event["delta"]["partial_json"].as_str().unwrap());
        }
    }
    for (block, input) in blocks.iter_mut().zip(inputs) {
        if !input.is_empty() {
            block["input"] = serde_json::from_str(&input).unwrap();
        }
    }
    assert_eq!(
        blocks[0],
        json!({"type": "redacted_thinking", "data": "gemini-thought-signature:Q2lRQjBlMkti"})
    );
    assert_anthropic_client_returns_the_signature(&Value::Array(blocks));
}

#[test]
fn late_tool_call_signature_gets_its_own_delta_and_bad_ones_are_refused() {
    let mut encoder = OpenAiStreamEncoder::new(ctx());
    let mut wire = Vec::new();
    for event in [
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallSignature {
            index: 0,
            signature: "sig".into(),
        },
    ] {
        encoder.event(&event, &mut wire);
    }
    let text = String::from_utf8(wire).unwrap();
    let last: Value = serde_json::from_str(
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        last["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "extra_content": {"google": {"thought_signature": "sig"}}})
    );

    let body = json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": 7}}}]}
    ]});
    let err = OpenAiIngress
        .decode_chat(&Bytes::from(body.to_string()))
        .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[0].tool_calls[0].extra_content.google.thought_signature")
    );
}

#[test]
fn a_refusal_comes_back_as_a_refusal_to_openai_clients() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
            "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]
    });
    let p = OpenAiProvider::new(OpenAiQuirks::default());
    let reply = p.parse_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(reply.text(), "I can't help with that.");
    let out: Value = serde_json::from_slice(&OpenAiIngress.encode_chat(&reply, &ctx())).unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["refusal"], "I can't help with that.");
    assert!(out.get("refusal").is_none());
}

#[test]
fn cache_markers_reach_openai_upstreams_only_from_openai_clients() {
    let p = OpenAiProvider::new(OpenAiQuirks::compatible());
    let openai_client = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
    ]}]});
    let request = OpenAiIngress
        .decode_chat(&Bytes::from(openai_client.to_string()))
        .unwrap();
    let b = body_of(&p.build_chat(&request, &target()).unwrap());
    assert_eq!(
        b["messages"][0]["content"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );

    let anthropic_client = json!({"model": "m", "max_tokens": 10,
    "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
    ]}]});
    let request = crate::anthropic::AnthropicIngress
        .decode_chat(&Bytes::from(anthropic_client.to_string()))
        .unwrap();
    let b = body_of(&p.build_chat(&request, &target()).unwrap());
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "a\nb"})
    );
    assert_eq!(b["messages"][1], json!({"role": "user", "content": "hi"}));
}

#[test]
fn retry_after_is_always_a_usable_delay() {
    let p = OpenAiProvider::new(OpenAiQuirks::default());
    let wait = |name: &str, value: &str| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        p.classify_error(429, &h, b"{}").retry_after_secs
    };
    assert_eq!(wait("retry-after-ms", "1500"), Some(1.5));
    assert_eq!(wait("retry-after-ms", "-5"), None);
    assert_eq!(wait("retry-after-ms", "NaN"), None);
    assert_eq!(wait("retry-after", "inf"), None);
    assert_eq!(wait("retry-after", "1e300"), Some(86_400.0));
    // An HTTP date: the wait until then, none once it has passed.
    let soon =
        httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(30));
    let secs = wait("retry-after", &soon).unwrap();
    assert!((27.0..=30.0).contains(&secs), "{secs}");
    assert_eq!(
        wait("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(0.0)
    );
    assert_eq!(wait("retry-after", "soon"), None);
}

/// Request bodies the one-pass reader of common requests must read exactly as the full
/// decoder does: the first ones in its common form, the rest for the full decoder (each
/// variation of the common form that needs it).
const COMMON_FORM: &[&str] = &[
    include_str!("../../tests/fixtures/requests/openai/plain.json"),
    include_str!("../../tests/fixtures/requests/openai/sampling.json"),
    include_str!("../../tests/fixtures/requests/openai/system_multi_turn.json"),
    include_str!("../../tests/fixtures/requests/openai/unknown_fields.json"),
    r#"{"messages": [{"content": "hi", "role": "user"}], "model": "m"}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "caf\u00e9 \"quoted\" \n line"}], "stop": "END"}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "content": null}, {"role": "user", "content": []}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"text": "t", "type": "text", "cache_control": null}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user"}], "stream": null, "stream_options": {"include_usage": null, "x": 1}}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 5, "max_completion_tokens": 7, "n": 1}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": null, "stop": null, "metadata": null}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "temperature": 2, "seed": -3, "user": "u"}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "reasoning_effort": "low", "parallel_tool_calls": false}"#,
    r#"{"model": "m", "model": "n", "messages": [{"role": "user", "content": "a"}], "functions": [], "x": {"y": [1, 2.5, null]}}"#,
    r#" {"model": "m", "messages": [{"role": "developer", "content": "a", "name": null}]} "#,
    include_str!("../../tests/fixtures/requests/openai/json_object.json"),
    include_str!("../../tests/fixtures/requests/openai/json_schema.json"),
    include_str!("../../tests/fixtures/requests/openai/parallel_tools.json"),
    include_str!("../../tests/fixtures/requests/openai/thought_signatures.json"),
    include_str!("../../tests/fixtures/requests/openai/tools.json"),
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tool_choice": "none"}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g"}}], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "g"}}]}}}"#,
    r#"{"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": "42"}]}"#,
    r#"{"model": "m", "messages": [{"role": "tool", "name": "f", "tool_call_id": "c", "content": [{"type": "text", "text": "4\n2"}], "x": 1}]}"#,
    r#"{"model": "m", "messages": [{"tool_calls": null, "role": "assistant", "content": "a"}, {"role": "tool", "tool_call_id": "c"}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a", "tool_calls": 5, "tool_call_id": "c"}], "tools": null, "tool_choice": null}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tools": [], "response_format": {"type": "text"}}"#,
    include_str!("../../tests/fixtures/requests/openai/images.json"),
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"image_url": {"detail": null, "url": "data:image/jpeg;base64,/9j/4A=="}, "type": "image_url"}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,\/9j\u002f4A=="}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain,hello"}}, {"type": "image_url", "image_url": {"url": "data:;base64,QQ=="}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}"#,
    include_str!("../../tests/fixtures/requests/openai/reasoning.json"),
    r#"{"model": "m", "messages": [{"role": "user", "content": "a", "reasoning_content": "r"}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "reasoning": "first", "content": null, "reasoning_content": "second \"q\"", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c", "content": "1"}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "content": "a", "reasoning_content": null, "reasoning": null}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}}, {"type": "file", "file": {"file_id": "file-1"}}]}]}"#,
    r#"{"model": "m", "messages": [{"content": [{"file": {"file_data": "data:text/plain;base64,aGk=", "filename": null}, "type": "file"}, {"type": "text", "text": "sum"}], "role": "user"}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,\/9j\u002f4A==", "filename": "caf\u00e9.pdf"}}]}]}"#,
];

const FULL_FORM: &[&str] = &[
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "ogg"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "system", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1", "x": 1}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1", "filename": "a", "filename": "b"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}, "cache_control": {"type": "ephemeral"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "text": "a", "file": {"file_id": "file-1"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "file": {"file_id": "file-1"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": null, "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file"}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "JVBERi0xLjQK"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "content": "a", "reasoning_content": 5}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "content": "a", "reasoning": ["r"]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "tool", "content": "42"}]}"#,
    r#"{"model": "m", "messages": [{"role": "tool", "tool_call_id": 7, "content": "42"}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "tool_calls": {"id": "c"}}]}"#,
    r#"{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tools": [{"type": "retrieval"}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tools": {"type": "function"}}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tool_choice": "maybe"}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "h"}}]}}}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "response_format": {"type": "yaml"}}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x", "x": 1}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}, "cache_control": {"type": "ephemeral"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x"}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "text": "a", "image_url": {"url": "https://x"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "image_url": {"url": "https://x"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x", "url": "https://y"}}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "temperature": 2.5}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "n": 2}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": -1}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "stream": "yes"}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "stream_options": true}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": 7}]}"#,
    r#"{"model": "m", "messages": [{"role": "robot", "content": "a"}]}"#,
    r#"{"model": "m", "messages": [{"content": "a"}]}"#,
    r#"{"model": "m", "messages": []}"#,
    r#"{"model": null, "messages": [{"role": "user", "content": "a"}]}"#,
    r#"{"messages": [{"role": "user", "content": "a"}]}"#,
    r#"{"model": "m"}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}]} trailing"#,
    "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"a\tb\"}]}",
    r#"{"model": "m", "messages": [{"role": "user", "content": "lone \ud800 surrogate"}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": null}]}]}"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "bad \x escape"}]}"#,
    r#"[1, 2]"#,
    r#"{"model": "m", "messages": [{"role": "user", "content": "a"}"#,
];

#[test]
fn common_requests_are_read_in_one_pass_exactly_as_the_full_decoder_reads_them() {
    // A long text with escapes across the whole of it.
    let long = format!(
        r#"{{"model": "m", "messages": [{{"role": "user", "content": [{{"type": "text", "text": "{}"}}]}}, {{"role": "user", "content": "{}"}}]}}"#,
        "line\\n \\\"q\\\" café \\u00e9 ".repeat(500),
        "x".repeat(70_000)
    );
    // A long document's data, read as a text of the body (raw, past the body's UTF-8 check).
    let pdf = format!(
        r#"{{"model": "m", "messages": [{{"role": "user", "content": [{{"type": "file", "file": {{"filename": "long.pdf", "file_data": "data:application/pdf;base64,{}"}}}}]}}]}}"#,
        "JVBERi0xLjQK".repeat(8_000)
    );
    crate::one_pass::assert_reads_as_the_full_decoder(
        common_chat::decode,
        ingress::decode_chat_full,
        &OpenAiIngress,
        COMMON_FORM,
        &[&long, &pdf],
        FULL_FORM,
    );
}

#[test]
fn fields_the_gateway_writes_win_over_extras_of_the_same_name_and_each_key_is_written_once() {
    let body = json!({"model": "alias", "messages": [{"role": "user", "content": "hi", "x-tag": 1}],
        "stream": true, "temperature": 0.5, "top_k": 3});
    let mut request = OpenAiIngress
        .decode_chat(&Bytes::from(body.to_string()))
        .unwrap();
    // Extras that name fields the builder writes (a caller's hook or an older decoder could
    // leave them there) must not produce a second key nor replace the gateway's value.
    request.extras.fields.insert("model".into(), json!("other"));
    request.extras.fields.insert("stream".into(), json!(false));
    request.extras.fields.insert("messages".into(), json!([]));
    request.messages[0]
        .extras
        .fields
        .insert("role".into(), json!("system"));
    let built = OpenAiProvider::new(OpenAiQuirks::default())
        .build_chat(&request, &target())
        .unwrap();
    let text = String::from_utf8(built.body().to_vec()).unwrap();
    for key in [
        "\"model\":",
        "\"stream\":",
        "\"messages\":",
        "\"role\":",
        "\"top_k\":",
        "\"x-tag\":",
    ] {
        assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
    }
    let b = body_of(&built);
    assert_eq!(b["model"], "gpt-4o-2024-08-06");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert_eq!(b["top_k"], 3);
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": "hi", "x-tag": 1}])
    );
    assert_eq!(b["temperature"], 0.5);

    // A number JSON cannot carry is left out rather than written as something else.
    request.temperature = Some(f64::NAN);
    let b = body_of(
        &OpenAiProvider::new(OpenAiQuirks::default())
            .build_chat(&request, &target())
            .unwrap(),
    );
    assert!(b.get("temperature").is_none(), "{b}");
}

#[test]
fn every_choice_of_a_chunk_is_read_in_order() {
    let stream = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},{\"index\":1,\"delta\":{\"content\":\"b\"}},{\"index\":2,\"delta\":{\"content\":\"c\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[]}\n\n\
data: [DONE]\n\n";
    assert_eq!(
        decode(&[stream.as_bytes()]).unwrap(),
        vec![
            StreamEvent::Start {
                id: "c".into(),
                model: "m".into()
            },
            StreamEvent::TextDelta("a".into()),
            StreamEvent::TextDelta("b".into()),
            StreamEvent::TextDelta("c".into()),
            StreamEvent::Finish(FinishReason::Stop),
        ]
    );
    // A reply answers with its first choice; one without any is malformed.
    let p = OpenAiProvider::new(OpenAiQuirks::default());
    let reply = json!({"id": "r", "model": "m", "created": 1, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "first"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"}
    ]});
    let parsed = p.parse_chat(reply.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.text(), "first");
    let empty = json!({"id": "r", "model": "m", "created": 1, "choices": []});
    assert!(p.parse_chat(empty.to_string().as_bytes()).is_err());
}

#[test]
fn the_written_completion_is_byte_for_byte_what_serde_wrote() {
    let openai = OpenAiProvider::new(OpenAiQuirks::default());
    let text = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
            "message": {"role": "assistant", "content": "Hé \"quoted\" \\ \n\t\u{1} 🚀 </script>",
                "refusal": null, "annotations": []}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2}},
        "system_fingerprint": "fp_1", "service_tier": "default",
        "odd \"key\"": {"nested": [1, 2.5, null, "x"], "n": -3}
    });
    let tools = json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 2, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":\"\\n\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}}]
    });
    let refusal = json!({
        "id": "chatcmpl-3", "object": "chat.completion", "created": 3, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": null, "refusal": "No."}}]
    });
    let reasoning = json!({
        "id": "c4", "object": "chat.completion", "created": 4, "model": "deepseek-reasoner",
        "choices": [{"index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": "", "reasoning_content": "Think…"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    });
    let other = json!({
        "id": "c5", "object": "chat.completion", "created": 5, "model": "m",
        "choices": [{"index": 0, "finish_reason": "something_new",
            "message": {"role": "assistant", "content": "text and a call",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "h", "arguments": "[]"}}]}}]
    });
    // Several choices (`n`): a refusal and log probabilities of their own.
    let several = json!({
        "id": "c6", "object": "chat.completion", "created": 6, "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Red."}},
            {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "No."}},
            {"index": 2, "finish_reason": "length", "logprobs": {"content": [{"token": "Bl", "logprob": -0.5, "bytes": [66, 108], "top_logprobs": []}], "refusal": null},
                "message": {"role": "assistant", "content": "Bl", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    });
    let mut replies: Vec<ChatResponse> = [text, tools, refusal, reasoning, other, several]
        .iter()
        .map(|body| openai.parse_chat(body.to_string().as_bytes()).unwrap())
        .collect();
    replies.push(
        crate::gemini::GeminiProvider
            .parse_chat(GEMINI_PARALLEL_CALLS.as_bytes())
            .unwrap(),
    );
    // Claude's text citing two web pages, in two parts: `url_citation` annotations.
    let cited = |text: &str, url: &str| ContentPart::Text {
        text: text.into(),
        citations: Some(json!([{"type": "web_search_result_location", "url": url,
            "title": "T \"q\"", "encrypted_index": "x", "cited_text": "c"},
            {"type": "char_location", "cited_text": "c", "document_index": 0}])),
        cache_control: None,
    };
    replies.push(ChatResponse {
        content: vec![
            cited("Ünïcode ", "https://a.example/"),
            cited("then more.", "https://b.example/"),
        ],
        ..replies[0].clone()
    });
    let contexts = [
        ctx(),
        EncodeCtx {
            prompt_estimate: 0,
            id: "chatcmpl-already".into(),
            model: "al\"ias\u{7f}é".into(),
            created: -7,
            include_usage: true,
            echo: None,
            keep: None,
        },
    ];
    for reply in &replies {
        for ctx in &contexts {
            let ours = OpenAiIngress.encode_chat(reply, ctx);
            let serde = super::ingress::encode_chat_with_serde(reply, ctx);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}

/// A reasoning chunk, a tool call's opening and a fragment of its arguments written by hand are
/// the chunks the encoder writes from the deltas' trees.
#[test]
fn reasoning_and_argument_chunks_are_byte_for_byte_what_the_tree_writes() {
    for text in [
        "Let me think",
        " about \"this\"\n\tstep",
        "caf\u{e9} \u{65e5}\u{672c} \u{1f600}",
        "\u{7f}\u{1}<>&'\\",
    ] {
        let (mut hand, mut tree) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (
            OpenAiStreamEncoder::new(ctx()),
            OpenAiStreamEncoder::new(ctx()),
        );
        a.reasoning_chunk(text, &mut hand);
        b.delta(json!({"reasoning_content": text}), &mut tree);
        for index in [0, 3, u32::MAX] {
            a.tool_call_start_chunk(index, text, &format!("{text}_fn"), &mut hand);
            b.delta(
                json!({"tool_calls": [{"index": index, "id": text, "type": "function",
                    "function": {"name": format!("{text}_fn"), "arguments": ""}}]}),
                &mut tree,
            );
            a.arguments_chunk(index, text, &mut hand);
            b.delta(
                json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]}),
                &mut tree,
            );
        }
        assert_eq!(
            String::from_utf8(hand).unwrap(),
            String::from_utf8(tree).unwrap()
        );
    }
}

/// A chunk as serde writes it from a `Value` (keys in alphabetical order): what the encoder's
/// hand-written frames must equal byte for byte.
fn serde_chunk(ctx: &EncodeCtx, choices: Value, usage: Option<Value>) -> String {
    let id = if ctx.id.starts_with("chatcmpl-") {
        ctx.id.clone()
    } else {
        format!("chatcmpl-{}", ctx.id)
    };
    let mut frame = json!({
        "choices": choices,
        "created": ctx.created,
        "id": id,
        "model": ctx.model,
        "object": "chat.completion.chunk",
        "system_fingerprint": null,
    });
    if ctx.include_usage {
        frame["usage"] = usage.unwrap_or(Value::Null);
    }
    format!("data: {}\n\n", serde_json::to_string(&frame).unwrap())
}

fn serde_delta_chunk(ctx: &EncodeCtx, delta: Value, finish_reason: Value) -> String {
    serde_chunk(
        ctx,
        json!([{"delta": delta, "finish_reason": finish_reason, "index": 0, "logprobs": null}]),
        None,
    )
}

#[test]
fn stream_chunks_are_byte_for_byte_what_serde_writes() {
    let texts = ["Hel", "lo é", "\"quoted\" \\ \n\t\u{1}", "🚀</script>", " "];
    let usage = Usage {
        input_tokens: 12,
        output_tokens: 5,
        cache_read_tokens: 3,
        cache_write_tokens: 0,
        reasoning_tokens: 2,
        ..Default::default()
    };
    for include_usage in [false, true] {
        for (id, model) in [("x", "alias"), ("chatcmpl-1", "al\"ias\u{7f}é")] {
            let ctx = EncodeCtx {
                prompt_estimate: 0,
                id: id.into(),
                model: model.into(),
                created: 1_700_000_000,
                include_usage,
                echo: None,
                keep: None,
            };
            let mut encoder = OpenAiStreamEncoder::new(ctx.clone());
            let mut events = vec![StreamEvent::Start {
                id: "up-1".into(),
                model: "up-model".into(),
            }];
            events.extend(texts.iter().map(|t| StreamEvent::TextDelta((*t).into())));
            events.extend([
                StreamEvent::ReasoningDelta("thinking \"aloud\"".into()),
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "get_weather".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\":\"Par".into(),
                },
                StreamEvent::Usage(usage),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]);
            let mut ours = Vec::new();
            for event in &events {
                encoder.event(event, &mut ours);
            }
            encoder.finish(&mut ours);

            let mut expected = serde_delta_chunk(
                &ctx,
                json!({"content": "", "refusal": null, "role": "assistant"}),
                Value::Null,
            );
            for text in texts {
                expected += &serde_delta_chunk(&ctx, json!({"content": text}), Value::Null);
            }
            expected += &serde_delta_chunk(
                &ctx,
                json!({"reasoning_content": "thinking \"aloud\""}),
                Value::Null,
            );
            expected += &serde_delta_chunk(
                &ctx,
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null,
            );
            expected += &serde_delta_chunk(
                &ctx,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Par"}}]}),
                Value::Null,
            );
            expected += &serde_delta_chunk(&ctx, json!({}), json!("tool_calls"));
            if include_usage {
                expected += &serde_chunk(&ctx, json!([]), Some(super::ingress::usage_json(&usage)));
            }
            expected += "data: [DONE]\n\n";
            assert_eq!(String::from_utf8(ours).unwrap(), expected);
        }
    }
}

/// A text read from a string without escapes is a slice of the client's body, not a copy, and
/// the provider's request carries it exactly as a copied text would be written.
#[test]
fn a_prompt_without_escapes_shares_the_body_and_is_written_unchanged() {
    let long = "words and more words, <tags> & ünïcödé ✓ ".repeat(3000);
    for (content, shared) in [
        (json!(long), true),
        (json!([{"type": "text", "text": long}]), true),
        (json!("a \"quoted\" line\nand a tab\t"), false),
    ] {
        let compact =
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]});
        for body in [
            compact.to_string(),
            serde_json::to_string_pretty(&compact).unwrap(),
        ] {
            let body = Bytes::from(body);
            let request = OpenAiIngress.decode_chat(&body).unwrap();
            let ContentPart::Text { text, .. } = &request.messages[0].content[0] else {
                panic!("a text part");
            };
            let inside = body.as_ptr_range().contains(&text.as_ptr());
            assert_eq!(inside, shared, "{content}");
            assert_eq!(text.is_json_plain(), shared);

            let mut copied = request.clone();
            copied.messages[0].content[0] = ContentPart::text(text.as_str());
            let provider = OpenAiProvider::new(OpenAiQuirks::default());
            let written = provider.build_chat(&request, &target()).unwrap();
            let expected = provider.build_chat(&copied, &target()).unwrap();
            assert_eq!(written.body().to_vec(), expected.body().to_vec());
            // A long shared text is spliced in from the client's body, between what was
            // written before and after it; a copied one is written with the rest.
            let pieces = written.body().clone().into_pieces();
            assert_eq!(pieces.len(), if shared { 3 } else { 1 });
            if shared {
                assert_eq!(pieces[1].as_ptr(), text.as_ptr(), "not copied");
            }
            // Text parts without markers go as one string.
            assert_eq!(body_of(&written)["messages"][0]["content"], text.as_str());
        }
    }
}

#[test]
fn web_search_options_ask_for_the_providers_own_search_and_stay_for_openai() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "news"}],
        "web_search_options": {"search_context_size": "low", "user_location":
            {"type": "approximate", "approximate": {"city": "Oslo", "country": "NO"}}}});
    for body in [
        body.to_string(),
        serde_json::to_string_pretty(&body).unwrap(),
    ] {
        let r = OpenAiIngress.decode_chat(&Bytes::from(body)).unwrap();
        let search = r.web_search.as_ref().unwrap();
        assert!(search.allowed_domains.is_empty());
        assert_eq!(
            search.user_location,
            Some(json!({"type": "approximate", "city": "Oslo", "country": "NO"}))
        );
        assert!(r.extras.fields.contains_key("web_search_options"));
    }
    let r = OpenAiIngress
        .decode_chat(&Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        ))
        .unwrap();
    assert!(r.web_search.is_none());
}

/// One token's log probability entry as OpenAI writes it, with one likelier alternative.
fn token_logprob(token: &str, logprob: f64) -> Value {
    json!({"token": token, "logprob": logprob, "bytes": token.as_bytes(),
        "top_logprobs": [{"token": token, "logprob": logprob, "bytes": token.as_bytes()},
            {"token": " of", "logprob": logprob - 2.0, "bytes": b" of"}]})
}

/// Log probabilities asked for by an OpenAI client come back in its choice as the upstream
/// wrote them, in a whole answer and chunk by chunk; other clients' answers have no place for
/// them and carry none.
#[test]
fn log_probabilities_reach_openai_clients_whole_and_streamed() {
    let logprobs = json!({"content": [token_logprob("Hi", -0.03), token_logprob(" there", -1.25)],
        "refusal": null});
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
            "message": {"role": "assistant", "content": "Hi there", "refusal": null}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "service_tier": "default"
    });
    let p = OpenAiProvider::new(OpenAiQuirks::default());
    let reply = p.parse_chat(body.to_string().as_bytes()).unwrap();
    let ours = OpenAiIngress.encode_chat(&reply, &ctx());
    assert_eq!(
        String::from_utf8(ours.clone()).unwrap(),
        String::from_utf8(super::ingress::encode_chat_with_serde(&reply, &ctx())).unwrap()
    );
    let out: Value = serde_json::from_slice(&ours).unwrap();
    assert_eq!(out["choices"][0]["logprobs"], logprobs);
    assert!(
        out.get("logprobs").is_none(),
        "not among the top-level fields"
    );
    assert_eq!(out["service_tier"], "default");
    let anthropic = crate::anthropic::AnthropicIngress.encode_chat(&reply, &ctx());
    assert!(!String::from_utf8(anthropic).unwrap().contains("logprob"));

    // Streamed: each text chunk's log probabilities, one of them sent on several data lines.
    let chunk = |content: &str, logprobs: &Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": content}, "logprobs": logprobs,
                "finish_reason": null}], "obfuscation": "ab"})
    };
    let first = json!({"content": [token_logprob("Hi", -0.03)], "refusal": null});
    let second = json!({"content": [token_logprob(" there", -1.25)], "refusal": null});
    let third = json!({"content": [token_logprob("!", -0.5)], "refusal": null});
    let pretty = serde_json::to_string_pretty(&chunk(" there", &second)).unwrap();
    let stream = format!(
        "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk("", &json!({"content": [], "refusal": null})),
        chunk("Hi", &first),
        pretty.replace('\n', "\ndata: "),
        chunk("!", &third),
        chunk(" more", &Value::Null),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "logprobs": null,
            "finish_reason": "stop"}]}),
    );
    let events = decode(&[stream.as_bytes()]).unwrap();
    let compact = |v: &Value| StreamEvent::Logprobs(v.to_string());
    assert_eq!(
        events[1..],
        [
            compact(&first),
            StreamEvent::TextDelta("Hi".into()),
            compact(&second),
            StreamEvent::TextDelta(" there".into()),
            compact(&third),
            StreamEvent::TextDelta("!".into()),
            StreamEvent::TextDelta(" more".into()),
            StreamEvent::Finish(FinishReason::Stop),
        ]
    );
    // A chunk with log probabilities frames none after it: the next one, which has the same
    // members around another text and the same log probabilities, is read whole.
    let same = [
        chunk("Hi", &first).to_string(),
        chunk("Ho", &first).to_string(),
    ];
    let (framed, whole, count) = decode_framed_and_whole(&same);
    assert_eq!((framed.as_ref().ok(), count), (whole.as_ref().ok(), 0));
    assert_eq!(
        framed
            .unwrap()
            .iter()
            .filter(|e| matches!(e, StreamEvent::Logprobs(_)))
            .count(),
        2
    );

    let mut enc = OpenAiStreamEncoder::new(ctx());
    let mut out = Vec::new();
    for e in &events {
        enc.event(e, &mut out);
    }
    enc.finish(&mut out);
    let chunks: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let written: Vec<(Value, Value)> = chunks
        .iter()
        .map(|c| {
            let choice = &c["choices"][0];
            (
                choice["delta"]["content"].clone(),
                choice["logprobs"].clone(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            (json!(""), Value::Null),
            (json!("Hi"), first),
            (json!(" there"), second),
            (json!("!"), third),
            (json!(" more"), Value::Null),
            (Value::Null, Value::Null),
        ]
    );
}

/// `allowed_tools` leaves the request with the tools it names, in the request's order, to be
/// called as the model likes or at least one; what it names wrongly is refused at its path.
#[test]
fn allowed_tools_cut_the_tools_down_to_those_named() {
    let tool = |name: &str| json!({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}});
    let request = |choice: Value| {
        json!({"model": "m", "messages": [{"role": "user", "content": "a"}],
            "tools": [tool("get_time"), tool("get_weather"), tool("get_news")], "tool_choice": choice})
    };
    let allowed = |mode: &str, names: &[&str]| {
        let tools: Vec<Value> = names
            .iter()
            .map(|n| json!({"type": "function", "function": {"name": n}}))
            .collect();
        json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}})
    };
    let decode = |body: &Value| OpenAiIngress.decode_chat(&Bytes::from(body.to_string()));
    for (choice, names, expected) in [
        (
            allowed("required", &["get_news", "get_time"]),
            vec!["get_time", "get_news"],
            ToolChoice::Required,
        ),
        (
            allowed("auto", &["get_weather"]),
            vec!["get_weather"],
            ToolChoice::Auto,
        ),
        (allowed("auto", &[]), vec![], ToolChoice::None),
    ] {
        let req = decode(&request(choice)).unwrap();
        let kept: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!((kept, req.tool_choice), (names, Some(expected)));
    }
    for (choice, param) in [
        (
            allowed("sometimes", &["get_time"]),
            "tool_choice.allowed_tools.mode",
        ),
        (allowed("required", &[]), "tool_choice.allowed_tools.mode"),
        (
            allowed("auto", &["get_time", "launch"]),
            "tool_choice.allowed_tools.tools[1].function.name",
        ),
        (
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "custom", "custom": {"name": "x"}}]}}),
            "tool_choice.allowed_tools.tools[0].type",
        ),
        (
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}),
            "tool_choice.allowed_tools.tools",
        ),
        (
            json!({"type": "allowed_tools"}),
            "tool_choice.allowed_tools",
        ),
        (
            json!({"type": "custom", "custom": {"name": "x"}}),
            "tool_choice.type",
        ),
        (json!({"type": "function"}), "tool_choice.function"),
    ] {
        let err = decode(&request(choice.clone())).unwrap_err();
        assert_eq!(
            err.param.as_deref(),
            Some(param),
            "{choice}: {}",
            err.message
        );
    }
}

/// An answer with several choices comes back to an OpenAI client choice for choice, each with
/// its own refusal, tool calls, log probabilities and finish reason, from OpenAI's `n` and
/// Gemini's candidates alike; other clients get the first.
#[test]
fn several_choices_come_back_choice_for_choice() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Red."}},
            {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "No."}},
            {"index": 2, "finish_reason": "tool_calls", "logprobs": {"content": [], "refusal": null},
                "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    });
    let reply = OpenAiProvider::new(OpenAiQuirks::default())
        .parse_chat(body.to_string().as_bytes())
        .unwrap();
    assert_eq!(reply.text(), "Red.");
    assert_eq!(reply.more_choices.len(), 2);
    let out: Value = serde_json::from_slice(&OpenAiIngress.encode_chat(&reply, &ctx())).unwrap();
    let choices = out["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(choices[0]["message"]["content"], "Red.");
    assert_eq!(
        (
            &choices[1]["message"]["content"],
            &choices[1]["message"]["refusal"]
        ),
        (&Value::Null, &json!("No."))
    );
    assert_eq!(choices[2]["message"]["tool_calls"][0]["id"], "call_9");
    assert_eq!(choices[2]["finish_reason"], "tool_calls");
    assert_eq!(choices[2]["logprobs"], body["choices"][2]["logprobs"]);
    assert!(choices[0]["logprobs"].is_null() && choices[1]["logprobs"].is_null());
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    let anthropic: Value =
        serde_json::from_slice(&crate::anthropic::AnthropicIngress.encode_chat(&reply, &ctx()))
            .unwrap();
    assert_eq!(
        anthropic["content"],
        json!([{"type": "text", "text": "Red."}])
    );

    // Gemini's candidates, whatever their order, each with tool call ids of its own.
    let gemini = json!({"candidates": [
            {"index": 1, "finishReason": "STOP", "content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}},
            {"index": 0, "finishReason": "MAX_TOKENS", "content": {"role": "model", "parts": [{"text": "Red"}]}},
            {"index": 2, "finishReason": "STOP", "content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 6, "totalTokenCount": 9},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"});
    let reply = crate::gemini::GeminiProvider
        .parse_chat(gemini.to_string().as_bytes())
        .unwrap();
    assert_eq!(
        (reply.text(), &reply.finish_reason),
        ("Red".into(), &FinishReason::Length)
    );
    let ids: Vec<&str> = reply
        .more_choices
        .iter()
        .map(|c| match &c.content[..] {
            [ContentPart::ToolCall { id, .. }] => id.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(
        reply
            .more_choices
            .iter()
            .all(|c| c.finish_reason == FinishReason::ToolCalls)
    );
}

/// An `input_audio` part is a document of its audio type, written back to an OpenAI-form
/// provider as `input_audio` (an MP3 sent as `audio/mpeg` too) and to Gemini as inline data;
/// a format OpenAI does not take is refused at its path.
#[test]
fn input_audio_is_an_audio_document_each_provider_writes_its_way() {
    let body = |format: &str| {
        Bytes::from(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is said?"},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": format}}]}]})
            .to_string(),
        )
    };
    for (format, media_type) in [("wav", "audio/wav"), ("mp3", "audio/mp3")] {
        let request = OpenAiIngress.decode_chat(&body(format)).unwrap();
        let ContentPart::Document { source, .. } = &request.messages[0].content[1] else {
            panic!("{:?}", request.messages[0]);
        };
        assert_eq!(
            source,
            &DocumentSource::Base64 {
                media_type: media_type.into(),
                data: "UklGRg==".into()
            }
        );
        let built = OpenAiProvider::new(OpenAiQuirks::default())
            .build_chat(&request, &target())
            .unwrap();
        assert_eq!(
            body_of(&built)["messages"][0]["content"][1],
            json!({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": format}})
        );
        let built = crate::gemini::GeminiProvider
            .build_chat(&request, &target())
            .unwrap();
        assert_eq!(
            body_of(&built)["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": media_type, "data": "UklGRg=="}})
        );
    }
    let mut request = OpenAiIngress.decode_chat(&body("mp3")).unwrap();
    if let ContentPart::Document {
        source: DocumentSource::Base64 { media_type, .. },
        ..
    } = &mut request.messages[0].content[1]
    {
        *media_type = "audio/mpeg".into();
    }
    let built = OpenAiProvider::new(OpenAiQuirks::default())
        .build_chat(&request, &target())
        .unwrap();
    assert_eq!(
        body_of(&built)["messages"][0]["content"][1]["input_audio"]["format"],
        "mp3"
    );
    let err = OpenAiIngress.decode_chat(&body("flac")).unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[0].content[1].input_audio.format")
    );
}

/// The body an OpenAI-form provider with `quirks` is sent for a client's `body` read by
/// `ingress`, at `target`.
fn sent_with(
    provider: &OpenAiProvider,
    ingress: &dyn IngressDialect,
    body: &Value,
    target: &Target<'_>,
) -> Value {
    let req = ingress.decode_chat(&Bytes::from(body.to_string())).unwrap();
    body_of(&provider.build_chat(&req, target).unwrap())
}

/// Groq refuses a message's `name`: its address leaves it out; other servers get it.
#[test]
fn groqs_address_leaves_out_message_names() {
    let body =
        json!({"model": "m", "messages": [{"role": "user", "name": "alice", "content": "hi"}]});
    for (url, named) in [
        ("https://api.groq.com/openai/v1", false),
        ("http://localhost:8000/v1", true),
    ] {
        let provider = OpenAiProvider::new(OpenAiQuirks::compatible_for(url));
        let sent = sent_with(&provider, &OpenAiIngress, &body, &target());
        assert_eq!(
            sent["messages"][0].get("name").is_some(),
            named,
            "{url}: {sent}"
        );
    }
}

#[test]
fn mistrals_address_brings_its_quirks_and_each_holds() {
    let mistral = OpenAiProvider::new(OpenAiQuirks::compatible_for("https://api.mistral.ai/v1"));
    let plain = OpenAiProvider::new(OpenAiQuirks::compatible_for("http://localhost:8000/v1"));
    // An Anthropic client's stream (which always asks for usage) with its user id and seedless
    // sampling, continuing a tool loop whose ids came from Claude.
    let anthropic = json!({
        "model": "m", "max_tokens": 50, "stream": true,
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
    });
    let sent = sent_with(
        &mistral,
        &crate::anthropic::AnthropicIngress,
        &anthropic,
        &target(),
    );
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert!(sent.get("user").is_none(), "{sent}");
    let id = sent["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 9);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(sent["messages"][2]["tool_call_id"], id);
    // Mistral's own ids go back unchanged, and the seed has Mistral's name.
    let openai = json!({
        "model": "m", "seed": 7, "user": "u-2",
        "stream": true, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "D681PevKs", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "D681PevKs", "content": "sunny"}
        ]
    });
    let sent = sent_with(&mistral, &OpenAiIngress, &openai, &target());
    assert_eq!(sent["messages"][0]["tool_calls"][0]["id"], "D681PevKs");
    assert_eq!(sent["random_seed"], 7);
    assert!(sent.get("seed").is_none() && sent.get("user").is_none());
    assert!(sent.get("stream_options").is_none(), "{sent}");
    // Any other server keeps all of it.
    let sent = sent_with(
        &plain,
        &crate::anthropic::AnthropicIngress,
        &anthropic,
        &target(),
    );
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent["user"], "u-1");
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["id"],
        "toolu_01A09q90qw90lq917835lq9"
    );
    // A field a configuration names as refused is left out, a client's unknown ones too.
    let quirks = OpenAiQuirks {
        unsupported_fields: vec!["parallel_tool_calls".into(), "logit_bias".into()],
        ..OpenAiQuirks::compatible()
    };
    let body = json!({
        "model": "m", "parallel_tool_calls": false, "logit_bias": {"1": 2}, "top_k": 3,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]
    });
    let sent = sent_with(
        &OpenAiProvider::new(quirks),
        &OpenAiIngress,
        &body,
        &target(),
    );
    assert!(sent.get("parallel_tool_calls").is_none() && sent.get("logit_bias").is_none());
    assert_eq!(sent["top_k"], 3);
}

#[test]
fn a_tool_loops_reasoning_goes_back_to_deepseek_only() {
    let body = json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "reasoning_content": "I should call the tool.", "content": null,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "reasoning_content": "No tool here.", "content": "Sunny."},
            {"role": "user", "content": "thanks"}
        ]
    });
    let deepseek = OpenAiProvider::new(OpenAiQuirks::compatible_for("https://api.deepseek.com"));
    let sent = sent_with(&deepseek, &OpenAiIngress, &body, &target());
    assert_eq!(
        sent["messages"][1]["reasoning_content"],
        "I should call the tool."
    );
    // A turn without tool calls never needs it (DeepSeek ignores it there; its older reasoner
    // refused it).
    assert!(sent["messages"][3].get("reasoning_content").is_none());
    let openai = OpenAiProvider::new(OpenAiQuirks::default());
    let sent = sent_with(&openai, &OpenAiIngress, &body, &target());
    assert!(sent["messages"][1].get("reasoning_content").is_none());
    // A server that reads it as `reasoning` (Ollama's) gets it there.
    let ollama = OpenAiProvider::new(OpenAiQuirks {
        reasoning_history: true,
        reasoning_field: "reasoning".into(),
        ..OpenAiQuirks::compatible()
    });
    let sent = sent_with(&ollama, &OpenAiIngress, &body, &target());
    assert_eq!(sent["messages"][1]["reasoning"], "I should call the tool.");
    assert!(sent["messages"][1].get("reasoning_content").is_none());
}

#[test]
fn azure_gets_only_what_its_api_version_documents() {
    let body = json!({
        "model": "m", "max_tokens": 20, "stream": true,
        "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]
    });
    let azure = OpenAiProvider::azure();
    let at = |version| Target {
        base_url: "https://r.openai.azure.com",
        model: "dep1",
        api_key: Some("k"),
        api_version: version,
    };
    let sent = sent_with(&azure, &OpenAiIngress, &body, &at(Some("2024-06-01")));
    assert_eq!(sent["max_tokens"], 20);
    assert!(sent.get("max_completion_tokens").is_none());
    assert!(sent.get("stream_options").is_none());
    assert_eq!(sent["messages"][0]["role"], "system");
    let sent = sent_with(&azure, &OpenAiIngress, &body, &at(Some("2024-10-21")));
    assert_eq!(sent["max_completion_tokens"], 20);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent["messages"][0]["role"], "system");
    for recent in [Some("2025-04-01-preview"), Some("preview"), None] {
        let sent = sent_with(&azure, &OpenAiIngress, &body, &at(recent));
        assert_eq!(sent["max_completion_tokens"], 20);
        assert_eq!(sent["messages"][0]["role"], "developer");
    }
}

#[test]
fn errors_written_without_an_error_wrapper_keep_their_message_and_class() {
    let p = OpenAiProvider::new(OpenAiQuirks::compatible());
    let none = http::HeaderMap::new();
    let e = p.classify_error(400, &none, br#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}"#);
    assert_eq!(e.class, ErrorClass::ContextTooLong);
    assert!(e.message.starts_with("This model's maximum context length"));
    let e = p.classify_error(400, &none, br#"{"object":"error","message":"Tool call id was call_abc123def456 but must be a-z, A-Z, 0-9, with a length of 9.","type":"invalid_request_message_order","param":null,"code":"3230"}"#);
    assert_eq!(e.class, ErrorClass::InvalidRequest);
    assert!(e.message.starts_with("Tool call id was"), "{}", e.message);
    assert_eq!(e.provider_code.as_deref(), Some("3230"));
    let e = p.classify_error(422, &none, br#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"],"msg":"Extra inputs are not permitted","input":{"include_usage":true}}]},"type":"invalid_request_error","param":null,"code":null}"#);
    assert!(
        e.message.contains("Extra inputs are not permitted"),
        "{}",
        e.message
    );
    let e = p.classify_error(
        422,
        &none,
        br#"{"detail":[{"loc":["body","user"],"msg":"Extra inputs are not permitted"}]}"#,
    );
    assert!(e.message.contains("user"), "{}", e.message);
}

#[test]
fn a_content_given_as_parts_brings_its_thinking_whole_and_streamed() {
    let whole = br#"{"id":"a1","object":"chat.completion","created":1,"model":"magistral-medium-2509","choices":[{"index":0,"message":{"role":"assistant","tool_calls":null,"content":[{"type":"thinking","thinking":[{"type":"text","text":"Two and "},{"type":"text","text":"two."}]},{"type":"text","text":"4"}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":8,"total_tokens":18}}"#;
    let r = OpenAiProvider::new(OpenAiQuirks::compatible())
        .parse_chat(whole)
        .unwrap();
    assert_eq!(
        r.content,
        vec![
            ContentPart::Reasoning {
                text: "Two and two.".into(),
                signature: None
            },
            ContentPart::text("4")
        ]
    );
    let stream = "data: {\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"magistral\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"magistral\",\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"thinking\",\"thinking\":[{\"type\":\"text\",\"text\":\"Hmm\"}]}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"magistral\",\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"4\"}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"magistral\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":3,\"total_tokens\":13}}\n\n\
data: [DONE]\n\n";
    let events = decode(&[stream.as_bytes()]).unwrap();
    let read: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ReasoningDelta(r) => Some(format!("thinking:{r}")),
            StreamEvent::TextDelta(t) => Some(format!("text:{t}")),
            _ => None,
        })
        .collect();
    assert_eq!(read, ["thinking:Hmm", "text:4", "text:!"]);
}

#[test]
fn azures_opening_filter_chunk_does_not_start_the_stream() {
    let stream = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Hi\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"created\":1,\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-mini-2024-07-18\",\"object\":\"chat.completion.chunk\"}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"created\":1,\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-mini-2024-07-18\",\"object\":\"chat.completion.chunk\"}\n\n\
data: [DONE]\n\n";
    let events = decode(&[stream.as_bytes()]).unwrap();
    assert!(
        matches!(&events[0], StreamEvent::Start { id, model } if id == "chatcmpl-9" && model == "gpt-4o-mini-2024-07-18"),
        "{events:?}"
    );
}

#[test]
fn chat_completions_gets_metadata_only_with_store_and_a_tool_choice_only_with_tools() {
    let openai = OpenAiProvider::new(OpenAiQuirks::default());
    let chat = json!({"model": "m", "metadata": {"team": "a"}, "tool_choice": "auto",
        "messages": [{"role": "user", "content": "hi"}]});
    let sent = sent_with(&openai, &OpenAiIngress, &chat, &target());
    assert!(sent.get("metadata").is_none(), "{sent}");
    assert!(sent.get("tool_choice").is_none(), "{sent}");
    let stored = json!({"model": "m", "metadata": {"team": "a"}, "store": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let sent = sent_with(&openai, &OpenAiIngress, &stored, &target());
    assert_eq!(sent["metadata"], json!({"team": "a"}));
    assert_eq!(sent["store"], true);
    // A Responses client's metadata (that API keeps responses by default) stays behind.
    let responses = json!({"model": "m", "input": "hi", "metadata": {"team": "a"},
        "tool_choice": "required"});
    let sent = sent_with(&openai, &ResponsesIngress, &responses, &target());
    assert!(
        sent.get("metadata").is_none() && sent.get("tool_choice").is_none(),
        "{sent}"
    );
}

/// A streamed refusal stays a refusal for an OpenAI client (its SDK reads `delta.refusal` and
/// does not parse it as the structured output it asked for), and is text for other dialects.
#[test]
fn a_streamed_refusal_stays_a_refusal() {
    let stream = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I can't\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";
    let events = decode(&[stream.as_bytes()]).unwrap();
    assert!(
        events.contains(&StreamEvent::RefusalDelta("I can't".into())),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StreamEvent::TextDelta(_)))
    );
    let mut encoder = OpenAiIngress.stream_encoder(ctx());
    let mut out = Vec::new();
    for e in &events {
        encoder.event(e, &mut out);
    }
    encoder.finish(&mut out);
    let chunks: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let refusal: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["refusal"].as_str())
        .collect();
    assert_eq!(refusal, "I can't");
    assert!(chunks.iter().all(|c| {
        c["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    }));
}

/// A server's refused members are left out of its embeddings requests too.
#[test]
fn embeddings_leave_out_what_the_server_refuses() {
    let request = crate::canonical::EmbeddingRequest {
        model: "alias".into(),
        input: crate::canonical::EmbeddingInput::Texts(vec!["hi".into()]),
        single: false,
        dimensions: Some(256),
        encoding_format: Default::default(),
        user: Some("u1".into()),
        extras: Extras::default(),
    };
    let target = Target {
        base_url: "https://api.cohere.ai/compatibility/v1",
        model: "embed-v4.0",
        api_key: Some("k"),
        api_version: None,
    };
    let built = |quirks: OpenAiQuirks| {
        let out = OpenAiProvider::new(quirks)
            .build_embeddings(&request, &target)
            .unwrap();
        serde_json::from_slice::<Value>(out.body()).unwrap()
    };
    let all = built(OpenAiQuirks::compatible());
    assert_eq!(all["dimensions"], 256);
    assert_eq!(all["user"], "u1");
    let strict = built(OpenAiQuirks {
        unsupported_fields: vec!["dimensions".into(), "user".into(), "encoding_format".into()],
        ..OpenAiQuirks::compatible()
    });
    assert_eq!(strict, json!({"model": "embed-v4.0", "input": ["hi"]}));
}

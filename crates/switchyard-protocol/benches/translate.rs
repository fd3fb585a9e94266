//! Micro-benchmarks of the translation hot path, with allocation counts: request decode and
//! encode per dialect, one stream chunk decoded and re-encoded, an answer and whole streams
//! (text, reasoning, a tool call) written for each ingress's client, and the UTF-8 check of a
//! long body. Run with `cargo bench -p switchyard-protocol --bench translate`.

use bytes::Bytes;
use divan::{AllocProfiler, Bencher, black_box};
use serde_json::json;
use switchyard_protocol::anthropic::{AnthropicIngress, AnthropicProvider, AnthropicStreamEncoder};
use switchyard_protocol::canonical::{FinishReason, StreamEvent, Usage};
use switchyard_protocol::dialect::{
    EncodeCtx, IngressDialect, OpenAiQuirks, ProviderDialect, StreamEncoder, Target,
};
use switchyard_protocol::gemini::GeminiProvider;
use switchyard_protocol::openai::{
    OpenAiIngress, OpenAiProvider, OpenAiStreamEncoder, ResponsesIngress, ResponsesStreamEncoder,
};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// Prompt sizes: one sentence, the load harness's 200 KB prompt, and the same 200 KB in lines
/// of about sixty characters with a quoted word in every fifth (`lines`: a line break or quote
/// to escape in most 64-byte blocks, as in code or a document).
const SIZES: &[&str] = &["small", "large", "lines"];

fn prompt(size: &str) -> String {
    let sentence = "Write one short sentence about keep-alive connections.";
    if size == "small" {
        return sentence.to_owned();
    }
    let mut text = String::from(sentence);
    while text.len() < 200_000 {
        text.push_str(" the gateway forwards each request to a provider");
    }
    if size == "lines" {
        text = text
            .split(' ')
            .enumerate()
            .map(|(i, word)| match i % 50 {
                0 | 10 | 20 | 30 | 40 => format!("{word}\n"),
                25 => format!("\"{word}\""),
                _ => word.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    text
}

fn openai_body(size: &str) -> Bytes {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": prompt(size)},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "metadata": {"team": "bench"},
    })
    .to_string()
    .into_bytes()
    .into()
}

fn anthropic_body(size: &str) -> Bytes {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt(size)}]}],
    })
    .to_string()
    .into_bytes()
    .into()
}

fn responses_body(size: &str) -> Bytes {
    json!({
        "model": "gpt-4o-mini",
        "instructions": "You are terse.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": prompt(size)}]}],
        "max_output_tokens": 64,
        "temperature": 0.2,
        "metadata": {"team": "bench"},
    })
    .to_string()
    .into_bytes()
    .into()
}

fn target() -> Target<'static> {
    Target {
        base_url: "http://127.0.0.1:1/v1",
        model: "gpt-4o-mini",
        api_key: Some("sk-upstream"),
        api_version: None,
    }
}

fn ctx() -> EncodeCtx {
    EncodeCtx {
        prompt_estimate: 0,
        id: "0192c0ffee".into(),
        model: "gpt-4o-mini".into(),
        created: 1_700_000_000,
        include_usage: true,
        echo: None,
        keep: None,
    }
}

/// OpenAI client body → canonical request.
#[divan::bench(args = SIZES)]
fn openai_decode(bencher: Bencher, size: &str) {
    let body = openai_body(size);
    bencher.bench(|| OpenAiIngress.decode_chat(black_box(&body)));
}

/// The UTF-8 check of the large body: the one the readers use (vector instructions) and the
/// standard library's, which it replaced.
#[divan::bench(args = ["vector", "standard"])]
fn utf8_check_large(bencher: Bencher, how: &str) {
    let body = openai_body("large");
    if how == "vector" {
        bencher.bench(|| switchyard_protocol::json::utf8(black_box(&body)).is_some());
    } else {
        bencher.bench(|| std::str::from_utf8(black_box(&body)).is_ok());
    }
}

/// The test for control bytes of the large body (which lets its texts be read as raw strings):
/// each stretch's least byte (the one the readers use), against testing each byte.
#[divan::bench(args = ["least", "each"])]
fn control_bytes_large(bencher: Bencher, how: &str) {
    let body = openai_body("large");
    if how == "least" {
        bencher.bench(|| switchyard_protocol::json::has_control_bytes(black_box(&body)));
    } else {
        bencher.bench(|| black_box(&body).iter().any(|&b| b < 0x20));
    }
}

/// A long text written as a JSON string: the large prompt (nothing to escape) and its `lines`
/// form (see [`SIZES`]).
#[divan::bench(args = ["large", "lines"])]
fn escape_large(bencher: Bencher, size: &str) {
    let prompt = prompt(size);
    let mut out = Vec::with_capacity(2 * prompt.len());
    bencher.bench_local(|| {
        out.clear();
        switchyard_protocol::json::write_str(&mut out, black_box(&prompt));
        out.len()
    });
}

/// Anthropic client body → canonical request.
#[divan::bench(args = SIZES)]
fn anthropic_decode(bencher: Bencher, size: &str) {
    let body = anthropic_body(size);
    bencher.bench(|| AnthropicIngress.decode_chat(black_box(&body)));
}

/// Canonical request (from an OpenAI client body) → Anthropic provider request.
#[divan::bench(args = SIZES)]
fn anthropic_encode(bencher: Bencher, size: &str) {
    let Ok(request) = OpenAiIngress.decode_chat(&openai_body(size)) else {
        return;
    };
    let target = target();
    bencher.bench(|| AnthropicProvider.build_chat(black_box(&request), &target));
}

/// Canonical request → OpenAI provider request (body and headers).
#[divan::bench(args = SIZES)]
fn openai_encode(bencher: Bencher, size: &str) {
    let Ok(request) = OpenAiIngress.decode_chat(&openai_body(size)) else {
        return;
    };
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let target = target();
    bencher.bench(|| provider.build_chat(black_box(&request), &target));
}

/// The whole same-dialect request path: OpenAI in, OpenAI out.
#[divan::bench(args = SIZES)]
fn openai_to_openai(bencher: Bencher, size: &str) {
    same_dialect(bencher, openai_body(size));
}

/// `body` decoded as an OpenAI request and built for an OpenAI provider.
fn same_dialect(bencher: Bencher, body: Bytes) {
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let target = target();
    bencher.bench(|| {
        OpenAiIngress
            .decode_chat(black_box(&body))
            .map(|r| provider.build_chat(&r, &target))
    });
}

/// An agent's turn: a tool, the assistant's call of it, and the tool's result carrying the
/// prompt (a file the agent read).
fn openai_agent_body(size: &str) -> Bytes {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Summarise notes.txt."},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function",
                "function": {"name": "read_file", "arguments": "{\"path\":\"notes.txt\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": prompt(size)},
        ],
        "tools": [{"type": "function", "function": {"name": "read_file",
            "description": "Reads a file of the workspace.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                "required": ["path"]}}}],
        "max_tokens": 64,
    })
    .to_string()
    .into_bytes()
    .into()
}

/// An agent's turn through the same-dialect path: OpenAI in, OpenAI out.
#[divan::bench(args = SIZES)]
fn openai_agent_to_openai(bencher: Bencher, size: &str) {
    same_dialect(bencher, openai_agent_body(size));
}

/// Translation: Anthropic Messages in, OpenAI provider request out.
#[divan::bench(args = SIZES)]
fn anthropic_to_openai(bencher: Bencher, size: &str) {
    let body = anthropic_body(size);
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let target = target();
    bencher.bench(|| {
        AnthropicIngress
            .decode_chat(black_box(&body))
            .map(|r| provider.build_chat(&r, &target))
    });
}

/// Translation: the Responses API in, OpenAI provider request out.
#[divan::bench(args = SIZES)]
fn responses_to_openai(bencher: Bencher, size: &str) {
    let body = responses_body(size);
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let target = target();
    bencher.bench(|| {
        ResponsesIngress
            .decode_chat(black_box(&body))
            .map(|r| provider.build_chat(&r, &target))
    });
}

/// Translation: OpenAI in, Anthropic provider request out.
#[divan::bench(args = SIZES)]
fn openai_to_anthropic(bencher: Bencher, size: &str) {
    let body = openai_body(size);
    let target = target();
    bencher.bench(|| {
        OpenAiIngress
            .decode_chat(black_box(&body))
            .map(|r| AnthropicProvider.build_chat(&r, &target))
    });
}

/// Translation: OpenAI in, Gemini provider request out.
#[divan::bench(args = SIZES)]
fn openai_to_gemini(bencher: Bencher, size: &str) {
    let body = openai_body(size);
    let target = target();
    bencher.bench(|| {
        OpenAiIngress
            .decode_chat(black_box(&body))
            .map(|r| GeminiProvider.build_chat(&r, &target))
    });
}

/// A question about a PDF of about 750 KB (1 MB of base64), as each ingress's SDK sends it: an
/// OpenAI `file` part or an Anthropic `document` block.
fn pdf_body(ingress: &str) -> Bytes {
    let data = "JVBERi0xLjcKJeLjz9MK+/".repeat(1 << 20 >> 5);
    let question = json!({"type": "text", "text": "Summarise this report in three bullets."});
    let body = if ingress == "openai" {
        json!({"model": "gpt-4o-mini", "max_tokens": 256, "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "report.pdf",
                "file_data": format!("data:application/pdf;base64,{data}")}},
            question]}]})
    } else {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                "data": data}, "title": "report.pdf"},
            question]}]})
    };
    body.to_string().into_bytes().into()
}

/// The PDF question decoded and built for a provider of its own dialect (`openai`: OpenAI in
/// and out; `anthropic`: Anthropic in and out).
#[divan::bench(args = ["openai", "anthropic"])]
fn pdf_to_provider(bencher: Bencher, ingress: &str) {
    let body = pdf_body(ingress);
    let target = target();
    let openai = OpenAiProvider::new(OpenAiQuirks::default());
    bencher.bench(|| {
        if ingress == "openai" {
            OpenAiIngress
                .decode_chat(black_box(&body))
                .map(|r| openai.build_chat(&r, &target))
        } else {
            AnthropicIngress
                .decode_chat(black_box(&body))
                .map(|r| AnthropicProvider.build_chat(&r, &target))
        }
    });
}

/// A provider's whole answer as OpenAI writes it (the fields of a real reply, usage details
/// included).
fn openai_reply() -> Vec<u8> {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Keep-alive lets one connection carry many requests.",
                "refusal": null,
                "annotations": [],
            },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    })
    .to_string()
    .into_bytes()
}

/// A provider's OpenAI answer → canonical response: read by hand (`common`), and the same
/// answer with one key's underscore escaped (`service\u005ftier`), which the hand reader leaves
/// to the serde decoder that read every answer before it (`serde`).
#[divan::bench(args = ["common", "serde"])]
fn openai_reply_parse(bencher: Bencher, how: &str) {
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    reply_parse(
        bencher,
        &provider,
        openai_reply(),
        (how == "serde").then_some("service"),
    );
}

/// A provider's answer parsed; with `escaped`, the same answer with the underscore after
/// `escaped` in its keys written as `\u005f` (the same answer to serde, left to it by the hand
/// readers).
fn reply_parse(
    bencher: Bencher,
    provider: &dyn ProviderDialect,
    reply: Vec<u8>,
    escaped: Option<&str>,
) {
    let body = match escaped {
        Some(key) => String::from_utf8_lossy(&reply)
            .replace(&format!("{key}_"), &format!("{key}\\u005f"))
            .into_bytes(),
        None => reply.clone(),
    };
    let Ok(expected) = provider.parse_chat(&reply) else {
        return;
    };
    assert_eq!(provider.parse_chat(&body).ok(), Some(expected));
    bencher.bench(|| provider.parse_chat(black_box(&body)));
}

/// An Anthropic answer as the Messages API writes it (a thinking block, a text block, the
/// usage members it reports).
fn anthropic_reply() -> Vec<u8> {
    json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "The user asks about keep-alive.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
            {"type": "text", "text": "Keep-alive lets one connection carry many requests."},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": 2095,
            "output_tokens": 503,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard",
        },
    })
    .to_string()
    .into_bytes()
}

/// A provider's Anthropic answer → canonical response: read by hand (`common`), and the same
/// answer with the `stop_` keys' underscores escaped (`stop\u005freason`, …), which the hand
/// reader leaves to the serde decoder that read every answer before it (`serde`).
#[divan::bench(args = ["common", "serde"])]
fn anthropic_reply_parse(bencher: Bencher, how: &str) {
    reply_parse(
        bencher,
        &AnthropicProvider,
        anthropic_reply(),
        (how == "serde").then_some("stop"),
    );
}

/// Canonical response → the client's answer, per ingress: the same answer as an OpenAI
/// `chat.completion` (this bench was `openai_reply_encode` until the sixtieth round), an
/// Anthropic `Message` and a Responses API `response`.
#[divan::bench(args = ["openai", "anthropic", "responses"])]
fn reply_encode(bencher: Bencher, ingress: &str) {
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let Ok(response) = provider.parse_chat(&openai_reply()) else {
        return;
    };
    let ingress: &dyn IngressDialect = match ingress {
        "openai" => &OpenAiIngress,
        "anthropic" => &AnthropicIngress,
        _ => &ResponsesIngress,
    };
    let ctx = ctx();
    bencher.bench(|| ingress.encode_chat(black_box(&response), &ctx));
}

/// A reasoning model's short stream written for the client, per ingress: its start, twelve
/// reasoning deltas, one text delta, its finish and usage, its end.
#[divan::bench(args = ["openai", "anthropic", "responses"])]
fn stream_reasoning_encode(bencher: Bencher, ingress: &str) {
    let mut events = vec![StreamEvent::Start {
        id: "chatcmpl-1".into(),
        model: "o4-mini".into(),
    }];
    for word in "First I weigh what keep-alive saves: one handshake per request, then the pool"
        .split_inclusive(' ')
        .take(12)
    {
        events.push(StreamEvent::ReasoningDelta(word.into()));
    }
    events.push(StreamEvent::TextDelta("It saves a handshake.".into()));
    encode_stream(bencher, ingress, &events);
}

/// An agent's turn streamed to the client, per ingress: its start, a tool call opened, its
/// arguments in twelve fragments, its finish, usage and end.
#[divan::bench(args = ["openai", "anthropic", "responses"])]
fn stream_tool_call_encode(bencher: Bencher, ingress: &str) {
    let mut events = vec![
        StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "gpt-4o-mini".into(),
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_read_1".into(),
            name: "read_file".into(),
        },
    ];
    let arguments =
        r#"{"path": "src/main.rs", "start_line": 120, "end_line": 180, "why": "the handler"}"#;
    for piece in arguments.as_bytes().chunks(arguments.len().div_ceil(12)) {
        events.push(StreamEvent::ToolCallDelta {
            index: 0,
            arguments: String::from_utf8_lossy(piece).into_owned(),
        });
    }
    encode_stream(bencher, ingress, &events);
}

/// A whole short streamed answer written for the client, per ingress: the stream's start,
/// twelve text deltas, its finish and usage, its end (what a client's stream holds besides the
/// text is written once a stream, and this counts it).
#[divan::bench(args = ["openai", "anthropic", "responses"])]
fn stream_answer_encode(bencher: Bencher, ingress: &str) {
    let mut events = vec![StreamEvent::Start {
        id: "chatcmpl-1".into(),
        model: "gpt-4o-mini".into(),
    }];
    for word in "Keep-alive lets one connection carry many requests, one after another, over the same socket"
        .split_inclusive(' ')
        .take(12)
    {
        events.push(StreamEvent::TextDelta(word.into()));
    }
    encode_stream(bencher, ingress, &events);
}

/// Writes `events` for a client of `ingress`, then the stream's finish, usage and end.
fn encode_stream(bencher: Bencher, ingress: &str, events: &[StreamEvent]) {
    let mut events = events.to_vec();
    events.push(StreamEvent::Finish(FinishReason::Stop));
    events.push(StreamEvent::Usage(Usage {
        input_tokens: 19,
        output_tokens: 12,
        ..Default::default()
    }));
    let encoder = || -> Box<dyn StreamEncoder> {
        match ingress {
            "openai" => Box::new(OpenAiStreamEncoder::new(ctx())),
            "anthropic" => Box::new(AnthropicStreamEncoder::new(ctx())),
            _ => Box::new(ResponsesStreamEncoder::new(ctx())),
        }
    };
    let mut out = Vec::new();
    bencher.bench_local(|| {
        out.clear();
        let mut encoder = encoder();
        for e in &events {
            encoder.event(black_box(e), &mut out);
        }
        encoder.finish(&mut out);
        out.len()
    });
}

fn openai_chunk(text: &str) -> Vec<u8> {
    openai_chunk_created(text, 1)
}

fn openai_chunk_created(text: &str, created: u64) -> Vec<u8> {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": created,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
    });
    format!("data: {chunk}\n\n").into_bytes()
}

/// A text chunk as OpenAI writes it (its members in the API's order, `usage` null as with
/// `include_usage`, and an `obfuscation` whose length and characters change on every chunk),
/// decoded and re-encoded after the stream started; the chunks alternate between two
/// obfuscations.
#[divan::bench]
fn stream_chunk_openai_obfuscated_to_openai(bencher: Bencher) {
    let chunk = |text: &str, obfuscation: &str| {
        format!(
            concat!(
                r#"data: {{"id":"chatcmpl-C4xZbJ1Jx1IvWxgk3ZKDRXwkMqUJt","object":"#,
                r#""chat.completion.chunk","created":1754928000,"model":"gpt-4o-mini-2024-07-18","#,
                r#""service_tier":"default","system_fingerprint":"fp_560af6e559","choices":"#,
                r#"[{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,"finish_reason":null}}],"#,
                r#""usage":null,"obfuscation":"{}"}}"#,
                "\n\n"
            ),
            text, obfuscation
        )
        .into_bytes()
    };
    let chunks = [
        chunk(" world, and a few more words", "Xr7kq"),
        chunk(" world, and a few more words", "b2"),
    ];
    alternating_chunks(bencher, &chunk("Hello", "pQ3"), &chunks);
}

/// Text chunks whose `created` alternates, so that none reads like the one before it and each
/// is parsed whole: what every chunk cost before chunks were read through the last one's frame.
#[divan::bench]
fn stream_chunk_openai_to_openai_parsed_whole(bencher: Bencher) {
    let chunks = [
        openai_chunk_created(" world, and a few more words", 2),
        openai_chunk_created(" world, and a few more words", 3),
    ];
    alternating_chunks(bencher, &openai_chunk("Hello"), &chunks);
}

/// OpenAI chunks decoded and re-encoded for an OpenAI client after `first` started the stream,
/// the two `chunks` in turn.
fn alternating_chunks(bencher: Bencher, first: &[u8], chunks: &[Vec<u8>; 2]) {
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let mut decoder = provider.stream_decoder();
    let mut encoder = OpenAiStreamEncoder::new(ctx());
    let mut events: Vec<StreamEvent> = Vec::new();
    let mut out = Vec::new();
    if decoder.push(first, &mut events).is_err() {
        return;
    }
    for e in events.drain(..) {
        encoder.event(&e, &mut out);
    }
    let mut next = 0;
    bencher.bench_local(|| {
        out.clear();
        next ^= 1;
        let _ = decoder.push(black_box(&chunks[next]), &mut events);
        for e in events.drain(..) {
            encoder.event(&e, &mut out);
        }
        out.len()
    });
}

/// One Gemini stream chunk of text decoded, after the stream started: read by hand (`common`),
/// and the same chunk with one key's letter escaped (`model\u0056ersion`), which the hand
/// reader leaves to the serde decoder that read every chunk before it (`serde`).
#[divan::bench(args = ["common", "serde"])]
fn stream_chunk_gemini_decode(bencher: Bencher, how: &str) {
    let chunk = |text: &str| {
        let data = json!({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mlJ4aK6pMYqGz7IPi6bfuAk",
        })
        .to_string();
        let data = if how == "serde" {
            data.replace("modelVersion", "model\\u0056ersion")
        } else {
            data
        };
        format!("data: {data}\r\n\r\n").into_bytes()
    };
    let mut decoder = GeminiProvider.stream_decoder();
    let mut events: Vec<StreamEvent> = Vec::new();
    if decoder.push(&chunk("Hello"), &mut events).is_err() {
        return;
    }
    let next = chunk(" world, and a few more words");
    bencher.bench_local(|| {
        events.clear();
        let _ = decoder.push(black_box(&next), &mut events);
        events.len()
    });
}

/// The events of a stream that no text frame reads, each decoded by a new decoder after the
/// ones before it: OpenAI's role, first text, finish and usage chunks as the API writes them,
/// and Anthropic's `message_start` to `message_stop` (its one text delta included). `common`
/// is read by hand; `serde` is the same stream with one key's letter escaped in every event
/// (`\u0069d` for `id`, `\u0074ype` for `type`), which the hand readers leave to the serde
/// decoders that read every event before.
#[divan::bench(args = ["common", "serde"])]
fn stream_events_openai_decode(bencher: Bencher, how: &str) {
    let chunk = |choices: serde_json::Value, usage: serde_json::Value| {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": 1741570283, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_eb9dce56a8", "choices": choices, "usage": usage,
        })
    };
    let choice = |delta: serde_json::Value, finish: serde_json::Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let events = [
        chunk(
            choice(
                json!({"role": "assistant", "content": "", "refusal": null}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(
            choice(json!({"content": "Hello"}), json!(null)),
            json!(null),
        ),
        chunk(choice(json!({}), json!("stop")), json!(null)),
        chunk(
            json!([]),
            json!({
                "prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            }),
        ),
    ];
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let body = sse_body(&events, "\"id\"", "\"\\u0069d\"", how);
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    decode_whole_stream(bencher, || provider.stream_decoder(), &body);
}

/// Anthropic's events as the API writes them (`type` first, then its members in a fixed order);
/// `sorted` is the same stream with every object's members sorted by name, as a server writing
/// JSON maps might send it, where the reader meets an event's members before its type.
#[divan::bench(args = ["common", "sorted", "serde"])]
fn stream_events_anthropic_decode(bencher: Bencher, how: &str) {
    let events = [
        concat!(
            r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","#,
            r#""type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","#,
            r#""content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"#,
            r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":"#,
            r#"{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"#,
            r#""service_tier":"standard"}}}"#
        ),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        concat!(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"#,
            r#""usage":{"output_tokens":15}}"#
        ),
        r#"{"type":"message_stop"}"#,
    ];
    let events: Vec<String> = events
        .iter()
        .map(|e| match how {
            // A `Value` writes its members sorted.
            "sorted" => serde_json::from_str::<serde_json::Value>(e)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            _ => (*e).to_owned(),
        })
        .collect();
    let body = sse_body(&events, "\"type\":\"", "\"\\u0074ype\":\"", how);
    decode_whole_stream(bencher, || AnthropicProvider.stream_decoder(), &body);
}

/// The events as one SSE body; with `serde`, `key` replaced by `escaped` in each.
fn sse_body(events: &[String], key: &str, escaped: &str, how: &str) -> Vec<u8> {
    let mut body = String::new();
    for data in events {
        let data = if how == "serde" {
            data.replacen(key, escaped, 1)
        } else {
            data.clone()
        };
        body.push_str(&format!("data: {data}\n\n"));
    }
    body.into_bytes()
}

fn decode_whole_stream(
    bencher: Bencher,
    decoder: impl Fn() -> Box<dyn switchyard_protocol::dialect::StreamDecoder>,
    body: &[u8],
) {
    let mut events: Vec<StreamEvent> = Vec::new();
    // An error would stop the decoder at its first event and time nothing.
    let decoded = decoder().push(body, &mut events);
    assert!(decoded.is_ok() && !events.is_empty(), "{decoded:?}");
    bencher.bench_local(|| {
        events.clear();
        let mut decoder = decoder();
        let _ = decoder.push(black_box(body), &mut events);
        events.len()
    });
}

/// One upstream text chunk decoded and re-encoded for the client, after the stream started
/// (the chunks after the first are read through its text frame).
fn chunk_round_trip(bencher: Bencher, mut encoder: Box<dyn StreamEncoder>) {
    let provider = OpenAiProvider::new(OpenAiQuirks::default());
    let mut decoder = provider.stream_decoder();
    let mut events: Vec<StreamEvent> = Vec::new();
    let mut out = Vec::new();
    // The first chunk starts the stream (role chunk, message start); not measured.
    let first = openai_chunk("Hello");
    if decoder.push(&first, &mut events).is_err() {
        return;
    }
    for e in events.drain(..) {
        encoder.event(&e, &mut out);
    }
    let chunk = openai_chunk(" world, and a few more words");
    bencher.bench_local(|| {
        out.clear();
        let _ = decoder.push(black_box(&chunk), &mut events);
        for e in events.drain(..) {
            encoder.event(&e, &mut out);
        }
        out.len()
    });
}

#[divan::bench]
fn stream_chunk_openai_to_openai(bencher: Bencher) {
    chunk_round_trip(bencher, Box::new(OpenAiStreamEncoder::new(ctx())));
}

#[divan::bench]
fn stream_chunk_openai_to_anthropic(bencher: Bencher) {
    chunk_round_trip(bencher, Box::new(AnthropicStreamEncoder::new(ctx())));
}

#[divan::bench]
fn stream_chunk_openai_to_responses(bencher: Bencher) {
    chunk_round_trip(bencher, Box::new(ResponsesStreamEncoder::new(ctx())));
}

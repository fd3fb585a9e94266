//! OpenAI Chat Completions as a provider: build the upstream request, parse replies, decode
//! streams and classify error bodies. OpenAI-compatible servers and Azure OpenAI reuse it with
//! small differences (quirks, URL and auth header).
//!
//! `cache_control` markers on content parts are an extension some OpenAI-compatible servers
//! accept; they are sent only when the client itself spoke OpenAI (same-dialect fidelity). A
//! marker from another dialect (an Anthropic client's prompt caching) is dropped, since strict
//! servers, OpenAI's own among them, refuse unknown fields in content parts.

use std::borrow::Cow;

use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingInput, EmbeddingRequest, EmbeddingResponse,
    ErrorClass, Extras, FinishReason, Message, ResponseFormat, Role, StreamEvent, ToolChoice,
    UpstreamErrorInfo, Usage,
};
use crate::dialect::{
    Capabilities, DialectId, OpenAiQuirks, ProviderDialect, StreamDecoder, Target, interrupted,
    malformed, retry_after_secs,
};
use crate::error::DecodeError;
use crate::sse::{SseEvent, SseParser};

pub struct OpenAiProvider {
    quirks: OpenAiQuirks,
    endpoint: Endpoint,
}

impl OpenAiProvider {
    pub fn new(quirks: OpenAiQuirks) -> Self {
        Self {
            quirks,
            endpoint: Endpoint::OpenAi,
        }
    }

    /// Azure OpenAI: OpenAI bodies, deployment URLs with `api-version` (or the v1 API), and the
    /// `api-key` header.
    pub fn azure() -> Self {
        Self {
            quirks: OpenAiQuirks::default(),
            endpoint: Endpoint::Azure,
        }
    }
}

/// How the request reaches the server: URL shape and auth header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    OpenAi,
    Azure,
}

fn post(
    url: String,
    auth: Option<(http::HeaderName, String)>,
    body: Vec<u8>,
) -> http::Request<Vec<u8>> {
    let mut builder =
        http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    if let Some((name, value)) = auth {
        builder = builder.header(name, value);
    }
    // Only an invalid URL or header can fail here; both come from validated config.
    builder
        .body(body)
        .unwrap_or_else(|_| http::Request::new(Vec::new()))
}

fn endpoint_url(endpoint: &Endpoint, target: &Target<'_>, path: &str) -> (String, bool) {
    match endpoint {
        Endpoint::OpenAi => (format!("{}/{path}", target.base_url), true),
        Endpoint::Azure => match target.api_version {
            Some(v) => (
                format!(
                    "{}/openai/deployments/{}/{path}?api-version={v}",
                    target.base_url, target.model
                ),
                false,
            ),
            None => (format!("{}/openai/v1/{path}", target.base_url), true),
        },
    }
}

/// The credential header; its name is a constant, not parsed per request.
fn auth(endpoint: &Endpoint, target: &Target<'_>) -> Option<(http::HeaderName, String)> {
    let key = target.api_key?;
    Some(match endpoint {
        Endpoint::OpenAi => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        Endpoint::Azure => (http::HeaderName::from_static("api-key"), key.to_owned()),
    })
}

fn build_chat(
    quirks: &OpenAiQuirks,
    endpoint: &Endpoint,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<http::Request<Vec<u8>>, DecodeError> {
    let (url, model_in_body) = endpoint_url(endpoint, target, "chat/completions");
    let mut body = Map::new();
    if model_in_body {
        body.insert("model".into(), target.model.into());
    }
    body.insert(
        "messages".into(),
        Value::Array(messages_json(
            quirks,
            &request.messages,
            request.extras.dialect == Some(DialectId::OpenAi),
        )),
    );
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), t.name.clone().into());
                if let Some(d) = &t.description {
                    f.insert("description".into(), d.clone().into());
                }
                f.insert("parameters".into(), t.parameters.clone());
                if let Some(s) = t.strict {
                    f.insert("strict".into(), s.into());
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        body.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => "auto".into(),
                ToolChoice::None => "none".into(),
                ToolChoice::Required => "required".into(),
                ToolChoice::Function(name) => {
                    json!({"type": "function", "function": {"name": name}})
                }
            },
        );
    }
    if let Some(p) = request.parallel_tool_calls
        && !request.tools.is_empty()
    {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    if let Some(rf) = &request.response_format {
        body.insert(
            "response_format".into(),
            match rf {
                ResponseFormat::Text => json!({"type": "text"}),
                ResponseFormat::JsonObject => json!({"type": "json_object"}),
                ResponseFormat::JsonSchema {
                    name,
                    description,
                    schema,
                    strict,
                } => {
                    let mut js = Map::new();
                    js.insert("name".into(), name.clone().into());
                    if let Some(d) = description {
                        js.insert("description".into(), d.clone().into());
                    }
                    js.insert("schema".into(), schema.clone());
                    if let Some(s) = strict {
                        js.insert("strict".into(), (*s).into());
                    }
                    json!({"type": "json_schema", "json_schema": js})
                }
            },
        );
    }
    if let Some(m) = request.max_tokens {
        body.insert(quirks.max_tokens_field.clone(), m.into());
    }
    insert_opt(&mut body, "temperature", request.temperature);
    insert_opt(&mut body, "top_p", request.top_p);
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    if let Some(seed) = request.seed {
        body.insert(quirks.seed_field.clone(), seed.into());
    }
    insert_opt(&mut body, "frequency_penalty", request.frequency_penalty);
    insert_opt(&mut body, "presence_penalty", request.presence_penalty);
    if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort.as_ref()) {
        body.insert("reasoning_effort".into(), effort.clone().into());
    }
    if let Some(user) = &request.user {
        body.insert("user".into(), user.clone().into());
    }
    if let Some(md) = &request.metadata {
        body.insert("metadata".into(), Value::Object(md.clone()));
    }
    if let Some(n) = request.n {
        body.insert("n".into(), n.into());
    }
    if request.stream {
        body.insert("stream".into(), true.into());
        if quirks.stream_usage || request.include_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    if let Some(extras) = request.extras.for_dialect(DialectId::OpenAi) {
        for (k, v) in extras {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    // Sized for the prompt up front: a long prompt is then written once, without regrowing.
    let mut bytes = Vec::with_capacity(request.prompt_chars() + 1024);
    crate::json::write_value(&mut bytes, &Value::Object(body))
        .map_err(|e| DecodeError::new(format!("cannot encode request: {e}"), None))?;
    Ok(post(url, auth(endpoint, target), bytes))
}

fn insert_opt(body: &mut Map<String, Value>, key: &str, value: Option<f64>) {
    if let Some(v) = value
        && let Some(n) = serde_json::Number::from_f64(v)
    {
        body.insert(key.into(), Value::Number(n));
    }
}

/// The text parts as one string. Separate blocks (an Anthropic system prompt in several
/// blocks) are separate paragraphs to the sender, so they are joined by a line break rather
/// than run together.
fn text_of<'a>(parts: impl IntoIterator<Item = &'a ContentPart>) -> String {
    let mut s = String::new();
    for p in parts {
        if let ContentPart::Text { text, .. } = p
            && !text.is_empty()
        {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(text);
        }
    }
    s
}

/// User-visible content: a plain string when it is only text, else an array of parts.
/// `markers` says whether part `cache_control` markers are sent.
fn content_json<'a, I>(parts: I, markers: bool) -> Value
where
    I: IntoIterator<Item = &'a ContentPart> + Clone,
{
    let simple = parts.clone().into_iter().all(|p| match p {
        ContentPart::Text { cache_control, .. } => !markers || cache_control.is_none(),
        _ => false,
    });
    if simple {
        return Value::String(text_of(parts));
    }
    let mut out = Vec::new();
    for p in parts {
        match p {
            ContentPart::Text {
                text,
                cache_control,
            } => {
                let mut o = json!({"type": "text", "text": text});
                if let (Some(cc), Some(map), true) = (cache_control, o.as_object_mut(), markers) {
                    map.insert("cache_control".into(), cc.clone());
                }
                out.push(o);
            }
            ContentPart::Image { source, detail } => {
                let mut image = json!({"url": source.to_url()});
                if let (Some(d), Some(map)) = (detail, image.as_object_mut()) {
                    map.insert("detail".into(), d.clone().into());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            _ => {}
        }
    }
    Value::Array(out)
}

fn tool_result_text(content: &[ContentPart], is_error: bool) -> String {
    let text = text_of(content);
    if is_error && !text.starts_with("Error") {
        format!("Error: {text}")
    } else {
        text
    }
}

fn messages_json(quirks: &OpenAiQuirks, messages: &[Message], markers: bool) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let extras = m.extras.for_dialect(DialectId::OpenAi);
        let mut push = |mut v: Value| {
            if let (Some(extras), Some(map)) = (extras, v.as_object_mut()) {
                for (k, val) in extras {
                    map.entry(k.clone()).or_insert_with(|| val.clone());
                }
            }
            out.push(v);
        };
        match m.role {
            Role::System => {
                push(json!({"role": "system", "content": content_json(&m.content, markers)}))
            }
            Role::Developer => push(json!({
                "role": if quirks.developer_role { "developer" } else { "system" },
                "content": content_json(&m.content, markers),
            })),
            Role::User | Role::Tool => {
                // Tool results become `tool` messages; anything else stays a user message.
                let mut rest: Vec<&ContentPart> = Vec::new();
                for part in &m.content {
                    match part {
                        ContentPart::ToolResult {
                            tool_call_id,
                            content,
                            is_error,
                            ..
                        } => push(json!({
                            "role": "tool",
                            "tool_call_id": tool_call_id,
                            "content": tool_result_text(content, *is_error),
                        })),
                        other => rest.push(other),
                    }
                }
                if !rest.is_empty() {
                    let mut msg = json!({"role": "user", "content": content_json(rest.iter().copied(), markers)});
                    if let (Some(name), Some(map)) = (&m.name, msg.as_object_mut()) {
                        map.insert("name".into(), name.clone().into());
                    }
                    push(msg);
                }
            }
            Role::Assistant => {
                let text = text_of(&m.content);
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::ToolCall {
                            id,
                            name,
                            arguments,
                            ..
                        } => Some(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = Map::new();
                msg.insert("role".into(), "assistant".into());
                msg.insert(
                    "content".into(),
                    if text.is_empty() && !calls.is_empty() {
                        Value::Null
                    } else {
                        Value::String(text)
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                push(Value::Object(msg));
            }
        }
    }
    out
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<WirePromptDetails>,
    completion_tokens_details: Option<WireCompletionDetails>,
    /// DeepSeek reports cache hits here.
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WirePromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireCompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn canonical(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cache_read_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionCall>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    refusal: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireMessage>,
    delta: Option<WireMessage>,
    finish_reason: Option<String>,
}

/// A whole `chat.completion`. Read by hand rather than with a flattened map of the rest: serde
/// buffers every field of a struct with a flattened member into an intermediate tree first, and
/// the fields we write anew (`object`, `system_fingerprint`) are skipped instead of kept.
#[derive(Default)]
struct WireCompletion {
    id: String,
    model: String,
    created: i64,
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for WireCompletion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = WireCompletion;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a chat completion object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<WireCompletion, A::Error> {
                let mut out = WireCompletion::default();
                while let Some(key) = map.next_key::<crate::json::Key<'de>>()? {
                    match &*key.0 {
                        "id" => out.id = map.next_value()?,
                        "model" => out.model = map.next_value()?,
                        "created" => out.created = map.next_value()?,
                        "choices" => out.choices = map.next_value()?,
                        "usage" => out.usage = map.next_value()?,
                        // Ours are written anew for the client.
                        "object" | "system_fingerprint" => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                        _ => {
                            let value = map.next_value()?;
                            out.rest.insert(key.0.into_owned(), value);
                        }
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// One `chat.completion.chunk` of a stream, parsed in one pass (no `Value` tree, no flattened
/// leftovers: streams keep no extras). `error` and `object` spot in-band errors.
/// `id`, `model` and `object` borrow from the event's text: they come with every chunk and are
/// read from the first one only.
#[derive(Deserialize)]
struct WireStreamChunk<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    /// Empty when absent.
    #[serde(default, borrow)]
    object: Cow<'a, str>,
}

fn finish_reason(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" | "model_length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn parse_chat(body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> {
    let wire: WireCompletion = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("provider reply is not a chat completion: {e}")))?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| malformed("provider reply has no choices"))?;
    let message = choice
        .message
        .ok_or_else(|| malformed("provider reply has no message"))?;
    let mut content = Vec::new();
    if let Some(r) = message.reasoning_content.or(message.reasoning)
        && !r.is_empty()
    {
        content.push(ContentPart::Reasoning {
            text: r,
            signature: None,
        });
    }
    let refused = message.refusal.is_some();
    let mut rest = wire.rest;
    match (
        message.content.filter(|t| !t.is_empty()),
        message.refusal.filter(|t| !t.is_empty()),
    ) {
        (Some(text), _) => content.push(ContentPart::text(text)),
        // The refusal is the answer's text for other dialects; an OpenAI client gets it back
        // in `refusal`, where its SDK looks for it.
        (None, Some(refusal)) => {
            content.push(ContentPart::text(refusal.clone()));
            rest.insert(REFUSAL.into(), Value::String(refusal));
        }
        (None, None) => {}
    }
    for (i, call) in message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let f = call.function.unwrap_or(WireFunctionCall {
            name: None,
            arguments: None,
        });
        content.push(ContentPart::ToolCall {
            id: call.id.unwrap_or_else(|| format!("call_{i}")),
            name: f.name.unwrap_or_default(),
            arguments: f.arguments.unwrap_or_default(),
            extras: Extras::default(),
        });
    }
    let finish = match choice.finish_reason.as_deref() {
        Some(s) => finish_reason(s),
        None if refused => FinishReason::ContentFilter,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        content,
        finish_reason: finish,
        usage: wire.usage.map(|u| u.canonical()),
        extras: Extras::new(DialectId::OpenAi, rest),
    })
}

/// Response extras key of a refusal that stands as the answer's text (OpenAI `refusal`).
pub(crate) const REFUSAL: &str = "refusal";

/// Decodes `chat.completion.chunk` SSE streams; `[DONE]` is the terminal event.
#[derive(Default)]
pub struct OpenAiStreamDecoder {
    sse: SseParser,
    events: Vec<SseEvent>,
    started: bool,
    done: bool,
    finished: bool,
    tool_indices: Vec<u32>,
}

impl OpenAiStreamDecoder {
    fn handle(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: WireStreamChunk = match serde_json::from_str(data) {
            Ok(c) => c,
            // Not the usual shape: find out whether it is an error, else say what is wrong.
            Err(shape) => {
                let value: Value = serde_json::from_str(data)
                    .map_err(|e| malformed(format!("stream chunk is not JSON: {e}")))?;
                if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
                    out.push(StreamEvent::Error(in_stream_error(err)));
                    return Ok(());
                }
                if value.get("object").and_then(Value::as_str) == Some("error") {
                    out.push(StreamEvent::Error(in_stream_error(&value)));
                    return Ok(());
                }
                return Err(malformed(format!(
                    "stream chunk has an unexpected shape: {shape}"
                )));
            }
        };
        if chunk.error.is_some() || chunk.object == "error" {
            // Rare: parse again as a tree for the error's details.
            let value: Value = serde_json::from_str(data)
                .map_err(|e| malformed(format!("stream chunk is not JSON: {e}")))?;
            let err = value
                .get("error")
                .filter(|e| !e.is_null())
                .unwrap_or(&value);
            out.push(StreamEvent::Error(in_stream_error(err)));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.into_owned(),
                model: chunk.model.into_owned(),
            });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(r) = delta.reasoning_content.or(delta.reasoning)
                    && !r.is_empty()
                {
                    out.push(StreamEvent::ReasoningDelta(r));
                }
                if let Some(t) = delta.content.or(delta.refusal)
                    && !t.is_empty()
                {
                    out.push(StreamEvent::TextDelta(t));
                }
                for (pos, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    let index = call.index.unwrap_or(pos as u32);
                    let f = call.function.unwrap_or(WireFunctionCall {
                        name: None,
                        arguments: None,
                    });
                    if !self.tool_indices.contains(&index) {
                        self.tool_indices.push(index);
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: call.id.unwrap_or_else(|| format!("call_{index}")),
                            name: f.name.unwrap_or_default(),
                        });
                    }
                    if let Some(args) = f.arguments
                        && !args.is_empty()
                    {
                        out.push(StreamEvent::ToolCallDelta {
                            index,
                            arguments: args,
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                out.push(StreamEvent::Finish(finish_reason(&reason)));
            }
        }
        if let Some(u) = chunk.usage {
            out.push(StreamEvent::Usage(u.canonical()));
        }
        Ok(())
    }
}

fn in_stream_error(err: &Value) -> UpstreamErrorInfo {
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("provider reported an error in the stream")
        .to_owned();
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| err.get("type").and_then(Value::as_str))
        .map(str::to_owned);
    let class = match code.as_deref() {
        Some("rate_limit_exceeded") => ErrorClass::RateLimited,
        Some("context_length_exceeded") => ErrorClass::ContextTooLong,
        Some("content_filter") => ErrorClass::ContentFiltered,
        _ => ErrorClass::ServerError,
    };
    UpstreamErrorInfo {
        class,
        status: None,
        message,
        provider_code: code,
        retry_after_secs: None,
    }
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        self.sse
            .push(chunk, &mut self.events)
            .map_err(|e| malformed(e.to_string()))?;
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            if self.done {
                break;
            }
            self.handle(&ev.data, out)?;
        }
        self.events = events;
        self.events.clear();
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.done {
            Ok(())
        } else if self.finished {
            Err(interrupted(
                "provider stream ended after the finish reason but without [DONE]",
            ))
        } else {
            Err(interrupted("provider stream ended before it was complete"))
        }
    }
}

fn classify_error(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<Value>,
    }
    let err = serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.error);
    let (message, code, kind) = match &err {
        Some(Value::Object(o)) => (
            o.get("message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            o.get("code").and_then(Value::as_str).map(str::to_owned),
            o.get("type").and_then(Value::as_str).map(str::to_owned),
        ),
        Some(Value::String(s)) if !s.is_empty() => (Some(s.clone()), None, None),
        _ => (None, None, None),
    };
    let mut class = ErrorClass::from_status(status);
    let lower = message.as_deref().unwrap_or("").to_ascii_lowercase();
    if code.as_deref() == Some("context_length_exceeded")
        || (status == 400 && lower.contains("maximum context length"))
    {
        class = ErrorClass::ContextTooLong;
    } else if code.as_deref() == Some("content_filter")
        || code.as_deref() == Some("content_policy_violation")
    {
        class = ErrorClass::ContentFiltered;
    }
    UpstreamErrorInfo {
        class,
        status: Some(status),
        message: message.unwrap_or_else(|| format!("provider answered HTTP {status}")),
        provider_code: code.or(kind),
        retry_after_secs: retry_after_secs(headers),
    }
}

fn build_embeddings(
    endpoint: &Endpoint,
    request: &EmbeddingRequest,
    target: &Target<'_>,
) -> Result<http::Request<Vec<u8>>, DecodeError> {
    let (url, model_in_body) = endpoint_url(endpoint, target, "embeddings");
    let mut body = Map::new();
    if model_in_body {
        body.insert("model".into(), target.model.into());
    }
    body.insert(
        "input".into(),
        match &request.input {
            EmbeddingInput::Texts(t) => json!(t),
            EmbeddingInput::Tokens(t) => json!(t),
        },
    );
    if let Some(d) = request.dimensions {
        body.insert("dimensions".into(), d.into());
    }
    // Base64 halves the bytes on the wire; we decode it and re-encode in the client's choice.
    body.insert("encoding_format".into(), "base64".into());
    if let Some(user) = &request.user {
        body.insert("user".into(), user.clone().into());
    }
    if let Some(extras) = request.extras.for_dialect(DialectId::OpenAi) {
        for (k, v) in extras {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| DecodeError::new(format!("cannot encode request: {e}"), None))?;
    Ok(post(url, auth(endpoint, target), bytes))
}

fn parse_embeddings(body: &[u8]) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Vector {
        Floats(Vec<f32>),
        Base64(String),
    }
    #[derive(Deserialize)]
    struct Item {
        index: usize,
        embedding: Vector,
    }
    #[derive(Deserialize)]
    struct Reply {
        data: Vec<Item>,
        #[serde(default)]
        model: String,
        usage: Option<WireUsage>,
    }
    let reply: Reply = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("provider reply is not an embeddings list: {e}")))?;
    let mut items = reply.data;
    items.sort_by_key(|i| i.index);
    let mut vectors = Vec::with_capacity(items.len());
    for item in items {
        vectors.push(match item.embedding {
            Vector::Floats(v) => v,
            Vector::Base64(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| malformed(format!("embedding is not valid base64: {e}")))?;
                if bytes.len() % 4 != 0 {
                    return Err(malformed("base64 embedding length is not a multiple of 4"));
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
        });
    }
    Ok(EmbeddingResponse {
        model: reply.model,
        vectors,
        usage: reply.usage.map(|u| u.canonical()),
    })
}

const CAPABILITIES: Capabilities = Capabilities {
    tools: true,
    images: true,
    json_schema: true,
    embeddings: true,
};

impl ProviderDialect for OpenAiProvider {
    fn id(&self) -> DialectId {
        DialectId::OpenAi
    }
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }
    fn build_chat(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        build_chat(&self.quirks, &self.endpoint, request, target)
    }
    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> {
        let mut response = parse_chat(body)?;
        if self.endpoint == Endpoint::Azure {
            // Azure's content-filter annotations are provider detail, not OpenAI fields.
            response.extras.fields.remove("prompt_filter_results");
        }
        Ok(response)
    }
    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::default())
    }
    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
        classify_error(status, headers, body)
    }
    fn build_embeddings(
        &self,
        request: &EmbeddingRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        build_embeddings(&self.endpoint, request, target)
    }
    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
        parse_embeddings(body)
    }
}

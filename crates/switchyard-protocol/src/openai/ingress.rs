//! OpenAI Chat Completions as the client speaks it: decode `POST /v1/chat/completions` and
//! `POST /v1/embeddings` bodies, encode replies, errors and `chat.completion.chunk` streams.
//!
//! Gemini thought signatures travel as Gemini's own OpenAI-compatible API carries them, in
//! `tool_calls[].extra_content.google.thought_signature`: written on tool calls of replies (in
//! the first delta of a streamed call) and read back from assistant `tool_calls` into the tool
//! call's Gemini extras, so a Gemini history survives a round trip through an OpenAI client.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::provider::{LOGPROBS, REFUSAL};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, DocumentSource, EmbeddingInput, EmbeddingRequest,
    EmbeddingResponse, EncodingFormat, Extras, FinishReason, ImageSource, Message, Reasoning,
    ResponseFormat, Role, StreamEvent, Text, Tool, ToolChoice, Usage, WebSearch,
};
use crate::dialect::{DialectId, EncodeCtx, IngressDialect, StreamEncoder};
use crate::error::{ClientError, DecodeError, ErrorKind};
use crate::gemini;
use crate::json::{self, ObjectReader, deserialize_at};
use crate::sse::write_event;

pub struct OpenAiIngress;

impl IngressDialect for OpenAiIngress {
    fn id(&self) -> DialectId {
        DialectId::OpenAi
    }

    fn decode_chat(&self, body: &Bytes) -> Result<ChatRequest, DecodeError> {
        decode_chat(body)
    }

    fn encode_chat(&self, response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
        encode_chat(response, ctx)
    }

    fn stream_encoder(&self, ctx: EncodeCtx) -> Box<dyn StreamEncoder> {
        Box::new(OpenAiStreamEncoder::new(ctx))
    }

    fn encode_error(&self, error: &ClientError) -> Vec<u8> {
        serde_json::to_vec(&error_body(error)).unwrap_or_default()
    }
}

pub(crate) fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::RequestTooLarge => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::InsufficientQuota => "insufficient_quota",
        ErrorKind::Upstream => "upstream_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Internal => "server_error",
    }
}

pub(super) fn error_body(error: &ClientError) -> Value {
    json!({"error": {
        "message": error.message,
        "type": error_type(error.kind),
        "param": error.param,
        "code": error.code,
    }})
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WireRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct WireToolCallFunction {
    name: String,
    arguments: String,
}

/// A tool call of an assistant message in the history.
#[derive(Deserialize)]
pub(super) struct WireToolCall {
    id: String,
    function: WireToolCallFunction,
    extra_content: Option<WireExtraContent>,
}

impl WireToolCall {
    pub(super) fn into_part(self) -> ContentPart {
        let signature = self
            .extra_content
            .and_then(|e| e.google)
            .and_then(|g| g.thought_signature);
        ContentPart::ToolCall {
            id: self.id,
            name: self.function.name,
            arguments: self.function.arguments,
            extras: gemini::signature_extras(signature.as_deref()),
        }
    }
}

/// `extra_content` of a tool call: provider data, keyed by provider.
#[derive(Deserialize)]
struct WireExtraContent {
    google: Option<WireGoogleExtra>,
}

#[derive(Deserialize)]
struct WireGoogleExtra {
    thought_signature: Option<String>,
}

/// `extra_content` carrying a Gemini thought signature.
fn extra_content(signature: &str) -> Value {
    json!({"google": {"thought_signature": signature}})
}

fn decode_chat(body: &Bytes) -> Result<ChatRequest, DecodeError> {
    let mut request = match super::common_chat::decode(body) {
        Some(request) => request,
        None => decode_chat_full(body)?,
    };
    // `web_search_options` stays in the extras for OpenAI providers' search models; providers
    // with a search of their own (Anthropic's) get it as the canonical web search.
    if let Some(options) = request.extras.fields.get(WEB_SEARCH_OPTIONS) {
        request.web_search = Some(web_search_of(options));
    }
    Ok(request)
}

/// Chat Completions' request member asking for a web search.
const WEB_SEARCH_OPTIONS: &str = "web_search_options";

/// The canonical web search of `web_search_options`: its approximate user location (written
/// under `approximate` here, flat in the canonical form); it names no domains.
fn web_search_of(options: &Value) -> WebSearch {
    let user_location = options
        .get("user_location")
        .and_then(|l| l.get("approximate"))
        .and_then(Value::as_object)
        .map(|place| {
            let mut location = place.clone();
            location.insert("type".into(), Value::from("approximate"));
            Value::Object(location)
        });
    WebSearch {
        allowed_domains: Vec::new(),
        user_location,
    }
}

/// Every form of the request, each error naming its JSON path.
pub(super) fn decode_chat_full(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let mut obj = ObjectReader::from_body(body)?;
    let model: String = obj.require("model")?;
    let messages = decode_messages(&mut obj)?;
    let mut tools = decode_tools(&mut obj)?;
    let tool_choice = decode_tool_choice(&mut obj, &mut tools)?;
    let parallel_tool_calls = obj.take("parallel_tool_calls")?;
    let response_format = decode_response_format(&mut obj)?;
    let max_completion_tokens: Option<u32> = obj.take("max_completion_tokens")?;
    let max_tokens: Option<u32> = obj.take("max_tokens")?;
    let temperature = take_temperature(&mut obj)?;
    let top_p = obj.take("top_p")?;
    let stop = obj
        .take::<StringOrList>("stop")?
        .map_or_else(Vec::new, StringOrList::into_vec);
    let seed = obj.take("seed")?;
    let frequency_penalty = obj.take("frequency_penalty")?;
    let presence_penalty = obj.take("presence_penalty")?;
    let effort: Option<String> = obj.take("reasoning_effort")?;
    let user = obj.take("user")?;
    let metadata: Option<Map<String, Value>> = obj.take("metadata")?;
    let stream = obj.take::<bool>("stream")?.unwrap_or(false);
    let include_usage = match obj.take_object("stream_options")? {
        Some(mut so) => so.take::<bool>("include_usage")?.unwrap_or(false),
        None => false,
    };
    let n: Option<u32> = obj.take("n")?;
    match n {
        Some(0) => return Err(DecodeError::new("'n' must be at least 1", Some("n"))),
        // A stream's events are one answer's: several are only answered whole.
        Some(n) if n > 1 && stream => {
            return Err(DecodeError::new(
                format!(
                    "'n' above 1 is answered whole only: this gateway streams one choice (got \
                     {n} with 'stream': true)"
                ),
                Some("n"),
            ));
        }
        _ => {}
    }
    Ok(ChatRequest {
        model,
        messages,
        tools,
        // Set from `web_search_options` by `decode_chat`, for either decoder.
        web_search: None,
        tool_choice,
        parallel_tool_calls,
        response_format,
        max_tokens: max_completion_tokens.or(max_tokens),
        temperature,
        top_p,
        top_k: None,
        stop,
        seed,
        frequency_penalty,
        presence_penalty,
        reasoning: effort.map(|e| Reasoning {
            effort: Some(e),
            budget_tokens: None,
        }),
        user,
        metadata,
        stream,
        include_usage,
        n,
        extras: Extras::new(DialectId::OpenAi, obj.into_rest()),
    })
}

fn decode_messages(obj: &mut ObjectReader) -> Result<Vec<Message>, DecodeError> {
    let Some(items) = obj.take_array("messages")? else {
        return Err(DecodeError::new(
            "missing required field 'messages'",
            Some("messages"),
        ));
    };
    if items.is_empty() {
        return Err(DecodeError::new(
            "'messages' must contain at least one message",
            Some("messages"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (path, value) in items {
        let mut m = ObjectReader::from_value(value, &path)?;
        let role: WireRole = m.require("role")?;
        let name: Option<String> = m.take("name")?;
        let mut content = match m.take_value("content") {
            None => Vec::new(),
            Some(v) => decode_content(v, &m.child_path("content"), matches!(role, WireRole::User))?,
        };
        let role = match role {
            WireRole::System => Role::System,
            WireRole::Developer => Role::Developer,
            WireRole::User => Role::User,
            WireRole::Assistant => {
                // Reasoning text that compatible servers return (and DeepSeek needs back).
                for key in ["reasoning_content", "reasoning"] {
                    if let Some(text) = m.take::<String>(key)? {
                        content.insert(
                            0,
                            ContentPart::Reasoning {
                                text,
                                signature: None,
                            },
                        );
                    }
                }
                if let Some(calls) = m.take_array("tool_calls")? {
                    for (cpath, cv) in calls {
                        content.push(deserialize_at::<WireToolCall>(cv, &cpath)?.into_part());
                    }
                }
                Role::Assistant
            }
            WireRole::Tool => {
                let tool_call_id: String = m.require("tool_call_id")?;
                content = tool_message_content(tool_call_id, name.clone(), content);
                Role::Tool
            }
        };
        out.push(Message {
            role,
            content,
            name,
            extras: Extras::new(DialectId::OpenAi, m.into_rest()),
        });
    }
    Ok(out)
}

/// A tool message's content: its parts as the result of the call it answers.
pub(super) fn tool_message_content(
    tool_call_id: String,
    name: Option<String>,
    content: Vec<ContentPart>,
) -> Vec<ContentPart> {
    vec![ContentPart::ToolResult {
        tool_call_id,
        name,
        content,
        is_error: false,
    }]
}

/// A message's content; `files` says whether `file` parts may be in it (a user message's only,
/// as in OpenAI's reference).
fn decode_content(value: Value, path: &str, files: bool) -> Result<Vec<ContentPart>, DecodeError> {
    match value {
        Value::String(text) => Ok(vec![ContentPart::text(text)]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, part) in parts.into_iter().enumerate() {
                let ppath = format!("{path}[{i}]");
                let mut p = ObjectReader::from_value(part, &ppath)?;
                let kind: String = p.require("type")?;
                match kind.as_str() {
                    "text" => out.push(ContentPart::Text {
                        text: p.require::<String>("text")?.into(),
                        cache_control: p.take_value("cache_control"),
                        citations: None,
                    }),
                    "image_url" => {
                        let mut image = p.require_object("image_url")?;
                        let url: String = image.require("url")?;
                        out.push(ContentPart::Image {
                            source: ImageSource::from_url(&url),
                            detail: image.take("detail")?,
                        });
                    }
                    "refusal" => out.push(ContentPart::text(p.require::<String>("refusal")?)),
                    "file" if files => out.push(decode_file(&mut p, &ppath)?),
                    "input_audio" if files => out.push(decode_input_audio(&mut p, &ppath)?),
                    "file" | "input_audio" => {
                        let tp = format!("{ppath}.type");
                        return Err(DecodeError::new(
                            format!("{kind} parts belong to user messages"),
                            Some(&tp),
                        ));
                    }
                    other => {
                        let tp = format!("{ppath}.type");
                        return Err(DecodeError::new(
                            format!(
                                "content part type '{other}' is not supported by this gateway (supported: text, image_url, input_audio, file)"
                            ),
                            Some(&tp),
                        ));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(DecodeError::new(
            format!("'{path}' must be a string or an array of content parts"),
            Some(path),
        )),
    }
}

/// An `input_audio` part (`input_audio.data`, base64 without a `data:` prefix, and its
/// `format`, `wav` or `mp3`): a document the model hears, inline data of that audio type, which
/// providers that take audio carry (OpenAI's as `input_audio` again, Gemini's as inline data)
/// and the others refuse like any document type they do not read.
fn decode_input_audio(part: &mut ObjectReader, path: &str) -> Result<ContentPart, DecodeError> {
    let mut audio = part.require_object("input_audio")?;
    let data: String = audio.require("data")?;
    let format: String = audio.require("format")?;
    let Some(media_type) = AUDIO_FORMATS
        .iter()
        .find(|(name, _)| *name == format)
        .map(|(_, media_type)| *media_type)
    else {
        let fp = format!("{path}.input_audio.format");
        return Err(DecodeError::new(
            format!("'{fp}' must be 'wav' or 'mp3', got '{format}'"),
            Some(&fp),
        ));
    };
    Ok(ContentPart::Document {
        source: DocumentSource::Base64 {
            media_type: media_type.to_owned(),
            data: Text::from(data),
        },
        title: None,
        context: None,
        extras: Extras::default(),
    })
}

/// OpenAI's `input_audio` formats and the media types an audio document carries for them.
pub(crate) const AUDIO_FORMATS: [(&str, &str); 2] = [("wav", "audio/wav"), ("mp3", "audio/mp3")];

/// A `file` part: `file.file_data` (a `data:<media type>;base64,<data>` URI) or `file.file_id`
/// (a file uploaded to the Files API), and an optional `file.filename`.
fn decode_file(part: &mut ObjectReader, path: &str) -> Result<ContentPart, DecodeError> {
    let file_path = format!("{path}.file");
    let mut file = part.require_object("file")?;
    let filename: Option<String> = file.take("filename")?;
    let data: Option<String> = file.take("file_data")?;
    let id: Option<String> = file.take("file_id")?;
    let source = match (data, id) {
        (Some(data), None) => {
            DocumentSource::from_data_uri(&Text::from(data)).ok_or_else(|| {
                let data_path = format!("{file_path}.file_data");
                DecodeError::new(
                    format!("'{data_path}' must be a data URI: data:<media type>;base64,<data>"),
                    Some(&data_path),
                )
            })?
        }
        (None, Some(id)) => DocumentSource::FileId(id),
        (data, _) => {
            let which = if data.is_some() {
                "either 'file_data' or 'file_id', not both"
            } else {
                "'file_data' or 'file_id'"
            };
            return Err(DecodeError::new(
                format!("'{file_path}' must give {which}"),
                Some(&file_path),
            ));
        }
    };
    Ok(ContentPart::Document {
        source,
        title: filename,
        context: None,
        extras: Extras::default(),
    })
}

pub(super) fn decode_tools(obj: &mut ObjectReader) -> Result<Vec<Tool>, DecodeError> {
    let Some(items) = obj.take_array("tools")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (path, value) in items {
        let mut t = ObjectReader::from_value(value, &path)?;
        let kind: String = t.require("type")?;
        if kind != "function" {
            let tp = format!("{path}.type");
            return Err(DecodeError::new(
                format!("tool type '{kind}' is not supported (only 'function')"),
                Some(&tp),
            ));
        }
        let f: WireFunction = t.require("function")?;
        out.push(Tool {
            name: f.name,
            description: f.description,
            parameters: f
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: f.strict,
            cache_control: t.take_value("cache_control"),
        });
    }
    Ok(out)
}

/// `tool_choice`: a word, a named function, or `allowed_tools` (which cuts `tools` down to the
/// ones it names, see [`allow_only`]).
pub(super) fn decode_tool_choice(
    obj: &mut ObjectReader,
    tools: &mut Vec<Tool>,
) -> Result<Option<ToolChoice>, DecodeError> {
    let Some(value) = obj.take_value("tool_choice") else {
        return Ok(None);
    };
    let mut o = match value {
        Value::String(mode) => return tool_choice_mode(&mode).map(Some),
        value => ObjectReader::from_value(value, "tool_choice")?,
    };
    match o.take::<String>("type")?.as_deref() {
        // Without a type, an object that names a function is read as one.
        None | Some("function") => {
            let mut f = o.require_object("function")?;
            Ok(Some(ToolChoice::Function(f.require("name")?)))
        }
        Some("allowed_tools") => {
            let mut allowed = o.require_object("allowed_tools")?;
            let mode: String = allowed.require("mode")?;
            let listed = allowed.require_array("tools")?;
            let mut names = Vec::with_capacity(listed.len());
            for (path, value) in listed {
                let mut tool = ObjectReader::from_value(value, &path)?;
                let kind: String = tool.require("type")?;
                if kind != "function" {
                    return Err(DecodeError::new(
                        format!("tool type '{kind}' is not supported (only 'function')"),
                        Some(&format!("{path}.type")),
                    ));
                }
                let mut f = tool.require_object("function")?;
                names.push((f.require("name")?, format!("{path}.function.name")));
            }
            allow_only(
                tools,
                &names,
                &mode,
                "tool_choice.allowed_tools.mode",
                false,
            )
            .map(Some)
        }
        Some(other) => Err(DecodeError::new(
            format!(
                "tool_choice type '{other}' is not supported (only 'function' and 'allowed_tools')"
            ),
            Some("tool_choice.type"),
        )),
    }
}

/// OpenAI's `allowed_tools` choice: of the request's tools, only those `names` names (each with
/// its path, for errors) may be called, as the model likes (`auto`) or at least one
/// (`required`). Every provider gets that from the request's tools cut down to those: no other
/// provider has such a choice, and for OpenAI's own the effect is the same (the full list only
/// keeps its prompt cache warm). `others_left`: tools that are not functions (a hosted web
/// search) stay offered.
pub(super) fn allow_only(
    tools: &mut Vec<Tool>,
    names: &[(String, String)],
    mode: &str,
    mode_path: &str,
    others_left: bool,
) -> Result<ToolChoice, DecodeError> {
    let required = match mode {
        "auto" => false,
        "required" => true,
        other => {
            return Err(DecodeError::new(
                format!("'{mode_path}' must be 'auto' or 'required', got '{other}'"),
                Some(mode_path),
            ));
        }
    };
    if let Some((name, path)) = names
        .iter()
        .find(|(name, _)| !tools.iter().any(|tool| &tool.name == name))
    {
        return Err(DecodeError::new(
            format!("'{path}' names '{name}', which is not among 'tools'"),
            Some(path),
        ));
    }
    tools.retain(|tool| names.iter().any(|(name, _)| *name == tool.name));
    match (tools.is_empty() && !others_left, required) {
        (true, true) => Err(DecodeError::new(
            format!("'{mode_path}' is 'required' but no tool is allowed"),
            Some(mode_path),
        )),
        (true, false) => Ok(ToolChoice::None),
        (false, true) => Ok(ToolChoice::Required),
        (false, false) => Ok(ToolChoice::Auto),
    }
}

/// `temperature`, which OpenAI takes between 0 and 2.
pub(super) fn take_temperature(obj: &mut ObjectReader) -> Result<Option<f64>, DecodeError> {
    let temperature: Option<f64> = obj.take("temperature")?;
    if let Some(t) = temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(DecodeError::new(
            format!("'temperature' must be between 0 and 2, got {t}"),
            Some("temperature"),
        ));
    }
    Ok(temperature)
}

/// A `tool_choice` given as a word (Chat Completions' and the Responses API's alike).
pub(super) fn tool_choice_mode(mode: &str) -> Result<ToolChoice, DecodeError> {
    match mode {
        "auto" => Ok(ToolChoice::Auto),
        "none" => Ok(ToolChoice::None),
        "required" => Ok(ToolChoice::Required),
        other => Err(DecodeError::new(
            format!("'tool_choice' must be 'auto', 'none', 'required' or an object, got '{other}'"),
            Some("tool_choice"),
        )),
    }
}

pub(super) fn decode_response_format(
    obj: &mut ObjectReader,
) -> Result<Option<ResponseFormat>, DecodeError> {
    let Some(mut rf) = obj.take_object("response_format")? else {
        return Ok(None);
    };
    let kind: String = rf.require("type")?;
    match kind.as_str() {
        "text" => Ok(Some(ResponseFormat::Text)),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let mut js = rf.require_object("json_schema")?;
            Ok(Some(ResponseFormat::JsonSchema {
                name: js.require("name")?,
                description: js.take("description")?,
                schema: js
                    .take_value("schema")
                    .unwrap_or_else(|| json!({"type": "object"})),
                strict: js.take("strict")?,
            }))
        }
        other => Err(DecodeError::new(
            format!(
                "response_format type '{other}' is not supported (text, json_object, json_schema)"
            ),
            Some("response_format.type"),
        )),
    }
}

/// The `message` object of a completion, shared by the non-stream reply.
/// The client's `chat.completion` as serde writes it: the reference the hand-written
/// [`encode_chat`] is tested against (it must write the same bytes).
#[cfg(test)]
#[derive(Serialize)]
struct CompletionOut<'a> {
    id: String,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    usage: Option<UsageOut>,
    system_fingerprint: Option<()>,
    #[serde(flatten)]
    extras: ExtrasOut<'a>,
}

#[cfg(test)]
#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<&'a Value>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<AnnotationOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

/// A web page the answer's text cites (`url_citation`), from a provider's web search (Claude's
/// `web_search_result_location` citations): the span is the cited text's, in characters of
/// the message's content.
#[derive(Serialize)]
struct AnnotationOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url_citation: UrlCitationOut<'a>,
}

#[derive(Serialize)]
struct UrlCitationOut<'a> {
    end_index: usize,
    start_index: usize,
    title: &'a str,
    url: &'a str,
}

/// The `url_citation`s of a message's text parts, each spanning its part in the joined text.
fn url_citations(content: &[ContentPart]) -> Vec<AnnotationOut<'_>> {
    let mut annotations = Vec::new();
    // Most answers cite nothing: their text is not counted through.
    let cites = |p: &ContentPart| matches!(p, ContentPart::Text { citations: Some(c), .. } if cited_web_pages(Some(c)).next().is_some());
    if !content.iter().any(cites) {
        return annotations;
    }
    let mut start = 0;
    for part in content {
        let ContentPart::Text {
            text, citations, ..
        } = part
        else {
            continue;
        };
        let end = start + text.as_str().chars().count();
        for (url, title) in cited_web_pages(citations.as_ref()) {
            annotations.push(AnnotationOut {
                kind: "url_citation",
                url_citation: UrlCitationOut {
                    end_index: end,
                    start_index: start,
                    title,
                    url,
                },
            });
        }
        start = end;
    }
    annotations
}

/// The web pages (URL and title) a text part's citations name: Claude's
/// `web_search_result_location`s (its citations of documents are not pages).
pub(crate) fn cited_web_pages(citations: Option<&Value>) -> impl Iterator<Item = (&str, &str)> {
    citations
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("web_search_result_location"))
        .filter_map(|c| {
            let url = c.get("url").and_then(Value::as_str)?;
            Some((url, c.get("title").and_then(Value::as_str).unwrap_or("")))
        })
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<ExtraContentOut<'a>>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// `extra_content` carrying a Gemini thought signature.
#[derive(Serialize)]
struct ExtraContentOut<'a> {
    google: GoogleExtraOut<'a>,
}

#[derive(Serialize)]
struct GoogleExtraOut<'a> {
    thought_signature: &'a str,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokensOut,
    completion_tokens_details: ReasoningTokensOut,
}

#[derive(Serialize)]
struct CachedTokensOut {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokensOut {
    reasoning_tokens: u64,
}

impl UsageOut {
    fn of(usage: &Usage) -> Self {
        UsageOut {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.total(),
            prompt_tokens_details: CachedTokensOut {
                cached_tokens: usage.cache_read_tokens,
            },
            completion_tokens_details: ReasoningTokensOut {
                reasoning_tokens: usage.reasoning_tokens,
            },
        }
    }
}

/// The upstream's own fields a `chat.completion` carries after ours: all but those we write and
/// the refusal and log probabilities we carried through.
fn completion_extras(
    extras: Option<&Map<String, Value>>,
) -> impl Iterator<Item = (&String, &Value)> {
    const OURS: [&str; 7] = [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    ];
    extras.into_iter().flatten().filter(|(k, _)| {
        let k = k.as_str();
        k != REFUSAL && k != LOGPROBS && !OURS.contains(&k)
    })
}

#[cfg(test)]
struct ExtrasOut<'a>(Option<&'a Map<String, Value>>);

#[cfg(test)]
impl Serialize for ExtrasOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(completion_extras(self.0))
    }
}

/// The text parts, borrowed when there is one (the usual case).
fn joined_text<'a>(parts: impl Iterator<Item = &'a str> + Clone) -> Cow<'a, str> {
    let mut iter = parts.clone();
    match (iter.next(), iter.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(one), None) => Cow::Borrowed(one),
        _ => Cow::Owned(parts.collect()),
    }
}

/// The choices of a response: its answer, then any further ones, each as its content, finish
/// reason and the OpenAI upstream's fields of its own.
fn choices(
    response: &ChatResponse,
) -> impl Iterator<Item = (&[ContentPart], &FinishReason, Option<&Map<String, Value>>)> {
    fn openai(extras: &Extras) -> Option<&Map<String, Value>> {
        extras.for_dialect(DialectId::OpenAi)
    }
    std::iter::once((
        response.content.as_slice(),
        &response.finish_reason,
        openai(&response.extras),
    ))
    .chain(
        response
            .more_choices
            .iter()
            .map(|c| (c.content.as_slice(), &c.finish_reason, openai(&c.extras))),
    )
}

fn message_out<'a>(
    content: &'a [ContentPart],
    extras: Option<&Map<String, Value>>,
) -> MessageOut<'a> {
    let content_parts = content;
    let text = joined_text(content.iter().filter_map(|p| match p {
        ContentPart::Text { text, .. } => Some(text.as_str()),
        _ => None,
    }));
    let reasoning = joined_text(content.iter().filter_map(|p| match p {
        ContentPart::Reasoning { text, .. } => Some(text.as_str()),
        _ => None,
    }));
    let tool_calls: Vec<ToolCallOut<'_>> = content
        .iter()
        .filter_map(|p| match p {
            ContentPart::ToolCall {
                id,
                name,
                arguments,
                extras,
            } => Some(ToolCallOut {
                id,
                kind: "function",
                function: FunctionOut { name, arguments },
                extra_content: gemini::tool_call_signature(extras).map(|thought_signature| {
                    ExtraContentOut {
                        google: GoogleExtraOut { thought_signature },
                    }
                }),
            }),
            _ => None,
        })
        .collect();
    // A refusal from an OpenAI upstream went through the other dialects as text.
    let refused = extras
        .and_then(|extras| extras.get(REFUSAL))
        .and_then(Value::as_str)
        .is_some_and(|refusal| refusal == text);
    let (content, refusal) = if refused {
        (None, Some(text))
    } else if text.is_empty() && !tool_calls.is_empty() {
        (None, None)
    } else {
        (Some(text), None)
    };
    MessageOut {
        role: "assistant",
        annotations: if content.is_some() {
            url_citations(content_parts)
        } else {
            Vec::new()
        },
        content,
        refusal,
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        tool_calls,
    }
}

pub(crate) fn usage_json(usage: &Usage) -> Value {
    serde_json::to_value(UsageOut::of(usage)).unwrap_or(Value::Null)
}

fn response_id(ctx: &EncodeCtx) -> String {
    if ctx.id.starts_with("chatcmpl-") {
        ctx.id.clone()
    } else {
        ["chatcmpl-", &ctx.id].concat()
    }
}

/// The client's `chat.completion`, written field by field straight from the canonical response
/// (no `Value` tree, no serializer): the keys are constant bytes and the strings go through
/// [`json::write_str`]. An OpenAI upstream's unknown fields (e.g. `service_tier`) follow ours.
/// The bytes are those serde wrote from `CompletionOut`, which the tests hold it to.
fn encode_chat(response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
    // The answer's text plus room for the fields around it.
    json::written(response.encoded_len_hint() + 512, |out| {
        write_completion(out, response, ctx)
    })
}

fn write_completion(
    out: &mut Vec<u8>,
    response: &ChatResponse,
    ctx: &EncodeCtx,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"id\":\"");
    if !ctx.id.starts_with("chatcmpl-") {
        out.extend_from_slice(b"chatcmpl-");
    }
    json::write_str_content(out, &ctx.id);
    out.extend_from_slice(b"\",\"object\":\"chat.completion\",\"created\":");
    serde_json::to_writer(&mut *out, &ctx.created)?;
    out.extend_from_slice(b",\"model\":");
    json::write_str(out, &ctx.model);
    out.extend_from_slice(b",\"choices\":[");
    for (index, (content, finish_reason, extras)) in choices(response).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_choice(out, index, content, finish_reason, extras)?;
    }
    out.extend_from_slice(b"],\"usage\":");
    match &response.usage {
        Some(usage) => write_usage(out, usage)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"system_fingerprint\":null");
    json::write_members(
        out,
        completion_extras(response.extras.for_dialect(DialectId::OpenAi)),
    )?;
    out.push(b'}');
    Ok(())
}

/// One choice of a `chat.completion`, as [`ChoiceOut`] serializes it.
fn write_choice(
    out: &mut Vec<u8>,
    index: usize,
    content: &[ContentPart],
    finish_reason: &FinishReason,
    extras: Option<&Map<String, Value>>,
) -> Result<(), serde_json::Error> {
    let message = message_out(content, extras);
    out.extend_from_slice(b"{\"index\":");
    json::write_uint(out, index as u64);
    out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
    json::write_optional_str(out, message.content.as_deref());
    out.extend_from_slice(b",\"refusal\":");
    json::write_optional_str(out, message.refusal.as_deref());
    if !message.annotations.is_empty() {
        out.extend_from_slice(b",\"annotations\":");
        serde_json::to_writer(&mut *out, &message.annotations)?;
    }
    if let Some(reasoning) = &message.reasoning_content {
        out.extend_from_slice(b",\"reasoning_content\":");
        json::write_str(out, reasoning);
    }
    if !message.tool_calls.is_empty() {
        out.extend_from_slice(b",\"tool_calls\":[");
        for (i, call) in message.tool_calls.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":");
            json::write_str(out, call.id);
            out.extend_from_slice(b",\"type\":");
            json::write_str(out, call.kind);
            out.extend_from_slice(b",\"function\":{\"name\":");
            json::write_str(out, call.function.name);
            out.extend_from_slice(b",\"arguments\":");
            json::write_str(out, call.function.arguments);
            out.push(b'}');
            if let Some(extra) = &call.extra_content {
                out.extend_from_slice(b",\"extra_content\":{\"google\":{\"thought_signature\":");
                json::write_str(out, extra.google.thought_signature);
                out.extend_from_slice(b"}}");
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"},\"logprobs\":");
    match logprobs(extras) {
        Some(logprobs) => json::write_value(out, logprobs)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"finish_reason\":");
    json::write_str(out, finish_reason.as_openai());
    out.push(b'}');
    Ok(())
}

/// A choice's log probabilities, as an OpenAI upstream returned them.
fn logprobs(extras: Option<&Map<String, Value>>) -> Option<&Value> {
    extras.and_then(|extras| extras.get(LOGPROBS))
}

/// `usage` as [`UsageOut`] serializes it.
fn write_usage(out: &mut Vec<u8>, usage: &Usage) -> Result<(), serde_json::Error> {
    let u = UsageOut::of(usage);
    out.extend_from_slice(b"{\"prompt_tokens\":");
    serde_json::to_writer(&mut *out, &u.prompt_tokens)?;
    out.extend_from_slice(b",\"completion_tokens\":");
    serde_json::to_writer(&mut *out, &u.completion_tokens)?;
    out.extend_from_slice(b",\"total_tokens\":");
    serde_json::to_writer(&mut *out, &u.total_tokens)?;
    out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
    serde_json::to_writer(&mut *out, &u.prompt_tokens_details.cached_tokens)?;
    out.extend_from_slice(b"},\"completion_tokens_details\":{\"reasoning_tokens\":");
    serde_json::to_writer(&mut *out, &u.completion_tokens_details.reasoning_tokens)?;
    out.extend_from_slice(b"}}");
    Ok(())
}

/// The same answer as serde writes it from [`CompletionOut`]: the reference for the tests.
#[cfg(test)]
pub(super) fn encode_chat_with_serde(response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
    let completion = CompletionOut {
        id: response_id(ctx),
        object: "chat.completion",
        created: ctx.created,
        model: &ctx.model,
        choices: choices(response)
            .enumerate()
            .map(|(index, (content, finish_reason, extras))| ChoiceOut {
                index: index as u32,
                message: message_out(content, extras),
                logprobs: logprobs(extras),
                finish_reason: finish_reason.as_openai(),
            })
            .collect(),
        usage: response.usage.as_ref().map(UsageOut::of),
        system_fingerprint: None,
        extras: ExtrasOut(response.extras.for_dialect(DialectId::OpenAi)),
    };
    serde_json::to_vec(&completion).unwrap()
}

/// Writes `chat.completion.chunk` frames as canonical events arrive. Every frame is written
/// from constant bytes and the stream's [`chunk_tail`](Self::chunk_tail), made once: the keys
/// in alphabetical order (as serde writes a `Value` map), which a test holds byte for byte to
/// what serde writes.
pub struct OpenAiStreamEncoder {
    include_usage: bool,
    started: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    /// Indices of the tool calls whose first delta was written.
    tool_calls: HashSet<u32>,
    /// Signatures of tool calls not started yet, written with their first delta.
    signatures: HashMap<u32, String>,
    /// Log probabilities of the text chunk to come (the upstream chunk's, compact JSON).
    logprobs: Option<String>,
    /// What follows the choices in every chunk of this stream: `],"created":…,"id":…,
    /// "model":…,"object":"chat.completion.chunk","system_fingerprint":null`, then
    /// `,"usage":null` when the client asked for usage, then `}` and the blank line.
    pub(super) chunk_tail: Vec<u8>,
    /// Where `,"usage":null}` (or `}` without usage) starts in `chunk_tail`.
    usage_at: usize,
}

/// How every chunk starts; its choices follow.
const CHUNK_HEAD: &[u8] = b"data: {\"choices\":[";
/// How a text chunk starts: its text follows, as a JSON string, then `}` and [`CHOICE_END`].
const TEXT_CHUNK_HEAD: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":";
/// What closes a choice that has not finished, after its delta.
const CHOICE_END: &[u8] = b",\"finish_reason\":null,\"index\":0,\"logprobs\":null}";
/// The delta of a stream's first chunk, which names the role.
const ROLE_DELTA: &[u8] = b"{\"delta\":{\"content\":\"\",\"refusal\":null,\"role\":\"assistant\"}";

impl OpenAiStreamEncoder {
    pub fn new(ctx: EncodeCtx) -> Self {
        let id = response_id(&ctx);
        let mut tail = Vec::with_capacity(128 + id.len() + ctx.model.len());
        tail.extend_from_slice(b"],\"created\":");
        // Writing an integer into a vector cannot fail.
        let _ = serde_json::to_writer(&mut tail, &ctx.created);
        tail.extend_from_slice(b",\"id\":");
        json::write_str(&mut tail, &id);
        tail.extend_from_slice(b",\"model\":");
        json::write_str(&mut tail, &ctx.model);
        tail.extend_from_slice(
            b",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":null",
        );
        let usage_at = tail.len();
        if ctx.include_usage {
            tail.extend_from_slice(b",\"usage\":null");
        }
        tail.extend_from_slice(b"}\n\n");
        Self {
            include_usage: ctx.include_usage,
            started: false,
            finish: None,
            usage: None,
            tool_calls: HashSet::new(),
            signatures: HashMap::new(),
            logprobs: None,
            chunk_tail: tail,
            usage_at,
        }
    }

    /// A text chunk: the head, the text as a JSON string, the choice's end and the tail.
    /// With `logprobs` (the provider's, as JSON text) in place of `"logprobs":null`.
    pub(super) fn text_chunk(&self, text: &str, logprobs: Option<&str>, out: &mut Vec<u8>) {
        out.reserve(
            TEXT_CHUNK_HEAD.len()
                + text.len()
                + 3
                + CHOICE_END.len()
                + logprobs.map_or(0, str::len)
                + self.chunk_tail.len(),
        );
        out.extend_from_slice(TEXT_CHUNK_HEAD);
        json::write_str(out, text);
        out.push(b'}');
        match logprobs {
            None => out.extend_from_slice(CHOICE_END),
            Some(logprobs) => {
                out.extend_from_slice(&CHOICE_END[..CHOICE_END.len() - b"null}".len()]);
                out.extend_from_slice(logprobs.as_bytes());
                out.push(b'}');
            }
        }
        out.extend_from_slice(&self.chunk_tail);
    }

    /// A reasoning chunk (`reasoning_content`), as [`Self::delta`] writes it from a tree (a
    /// test holds the two together): a reasoning model streams more of these than of text.
    pub(super) fn reasoning_chunk(&mut self, text: &str, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.chunk(out, |out| {
            out.extend_from_slice(b"{\"delta\":{\"reasoning_content\":");
            json::write_str(out, text);
            out.push(b'}');
            out.extend_from_slice(CHOICE_END);
        });
    }

    /// A fragment of tool call `index`'s arguments, as [`Self::delta`] writes it from a tree
    /// (a test holds the two together): an agent's turn streams many.
    pub(super) fn arguments_chunk(&mut self, index: u32, arguments: &str, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.chunk(out, |out| {
            out.extend_from_slice(b"{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":");
            json::write_str(out, arguments);
            out.extend_from_slice(b"},\"index\":");
            json::write_uint(out, index.into());
            out.extend_from_slice(b"}]}");
            out.extend_from_slice(CHOICE_END);
        });
    }

    /// The chunk that opens tool call `index` (its id and name, empty arguments), as
    /// [`Self::delta`] writes it from a tree: once a call, and an agent's turn makes many.
    pub(super) fn tool_call_start_chunk(
        &mut self,
        index: u32,
        id: &str,
        name: &str,
        out: &mut Vec<u8>,
    ) {
        self.ensure_started(out);
        self.chunk(out, |out| {
            out.extend_from_slice(
                b"{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"\",\"name\":",
            );
            json::write_str(out, name);
            out.extend_from_slice(b"},\"id\":");
            json::write_str(out, id);
            out.extend_from_slice(b",\"index\":");
            json::write_uint(out, index.into());
            out.extend_from_slice(b",\"type\":\"function\"}]}");
            out.extend_from_slice(CHOICE_END);
        });
    }

    /// A chunk whose one choice `choice` writes.
    fn chunk(&self, out: &mut Vec<u8>, choice: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(CHUNK_HEAD);
        choice(out);
        out.extend_from_slice(&self.chunk_tail);
    }

    /// The chunk of a delta other than text (reasoning, tool calls), as a `Value`: rarer, and
    /// of many shapes.
    pub(super) fn delta(&mut self, delta: Value, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.chunk(out, |out| {
            out.extend_from_slice(b"{\"delta\":");
            if json::write_value(out, &delta).is_err() {
                // Writing a `Value` cannot fail; keep the frame well-formed regardless.
                out.extend_from_slice(b"{}");
            }
            out.extend_from_slice(CHOICE_END);
        });
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(out, |out| {
                out.extend_from_slice(ROLE_DELTA);
                out.extend_from_slice(CHOICE_END);
            });
        }
    }

    /// The last chunk when the client asked for usage: no choices, and the usage.
    fn usage_chunk(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(CHUNK_HEAD);
        out.extend_from_slice(&self.chunk_tail[..self.usage_at]);
        out.extend_from_slice(b",\"usage\":");
        let usage = self.usage.as_ref().map(usage_json);
        if json::write_value(out, usage.as_ref().unwrap_or(&Value::Null)).is_err() {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b"}\n\n");
    }
}

impl StreamEncoder for OpenAiStreamEncoder {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { .. } => self.ensure_started(out),
            StreamEvent::TextDelta(text) => {
                if !text.is_empty() {
                    // The common chunk, written without building a tree.
                    self.ensure_started(out);
                    let logprobs = self.logprobs.take();
                    self.text_chunk(text, logprobs.as_deref(), out);
                }
            }
            StreamEvent::RefusalDelta(text) => {
                self.ensure_started(out);
                self.delta(json!({"refusal": text}), out);
            }
            StreamEvent::Logprobs(logprobs) => self.logprobs = Some(logprobs.clone()),
            StreamEvent::ReasoningDelta(text) => {
                if !text.is_empty() {
                    self.reasoning_chunk(text, out);
                }
            }
            // Citations and server tools are Anthropic's; an OpenAI client gets the text alone
            // (a whole answer's web search citations come back as `url_citation`s).
            StreamEvent::ReasoningSignature(_)
            | StreamEvent::RedactedReasoning(_)
            | StreamEvent::TextBlockStart
            | StreamEvent::Citation(_)
            | StreamEvent::ServerToolStart(_)
            | StreamEvent::ServerToolInputDelta(_) => {}
            StreamEvent::ToolCallSignature { index, signature } => {
                if self.tool_calls.contains(index) {
                    // Late for the first delta; clients merge deltas of one call by index.
                    self.delta(
                        json!({"tool_calls": [{"index": index, "extra_content": extra_content(signature)}]}),
                        out,
                    );
                } else {
                    self.signatures.insert(*index, signature.clone());
                }
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.tool_calls.insert(*index);
                match self.signatures.remove(index) {
                    // A Gemini call's signature rides along (rare): through the tree.
                    Some(signature) => {
                        let call = json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}, "extra_content": extra_content(&signature)});
                        self.delta(json!({"tool_calls": [call]}), out);
                    }
                    None => self.tool_call_start_chunk(*index, id, name, out),
                }
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.arguments_chunk(*index, arguments, out);
            }
            StreamEvent::Usage(usage) => match &mut self.usage {
                Some(u) => u.merge(usage),
                None => self.usage = Some(*usage),
            },
            StreamEvent::Finish(reason) => {
                self.ensure_started(out);
                if self.finish.is_none() {
                    self.chunk(out, |out| {
                        out.extend_from_slice(b"{\"delta\":{},\"finish_reason\":");
                        json::write_str(out, reason.as_openai());
                        out.extend_from_slice(b",\"index\":0,\"logprobs\":null}");
                    });
                    self.finish = Some(reason.clone());
                }
            }
            // In-stream provider errors are turned into `error()` calls by the relay.
            StreamEvent::Error(_) => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        if self.include_usage {
            self.usage_chunk(out);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        let data = serde_json::to_vec(&error_body(error)).unwrap_or_default();
        write_event(out, None, &data);
    }
}

/// Decodes an OpenAI `POST /v1/embeddings` body.
pub fn decode_embeddings(body: &[u8]) -> Result<EmbeddingRequest, DecodeError> {
    let mut obj = ObjectReader::from_body(body)?;
    let model: String = obj.require("model")?;
    let raw = obj
        .take_value("input")
        .ok_or_else(|| DecodeError::new("missing required field 'input'", Some("input")))?;
    let (input, single) = match raw {
        Value::String(s) => (EmbeddingInput::Texts(vec![s]), true),
        Value::Array(items) if items.is_empty() => {
            return Err(DecodeError::new("'input' must not be empty", Some("input")));
        }
        Value::Array(items) => match &items[0] {
            Value::String(_) => (
                EmbeddingInput::Texts(deserialize_at(Value::Array(items), "input")?),
                false,
            ),
            Value::Number(_) => (
                EmbeddingInput::Tokens(vec![deserialize_at(Value::Array(items), "input")?]),
                true,
            ),
            _ => (
                EmbeddingInput::Tokens(deserialize_at(Value::Array(items), "input")?),
                false,
            ),
        },
        _ => {
            return Err(DecodeError::new(
                "'input' must be a string, an array of strings or an array of token arrays",
                Some("input"),
            ));
        }
    };
    let encoding_format = match obj.take::<String>("encoding_format")?.as_deref() {
        None | Some("float") => EncodingFormat::Float,
        Some("base64") => EncodingFormat::Base64,
        Some(other) => {
            return Err(DecodeError::new(
                format!("'encoding_format' must be 'float' or 'base64', got '{other}'"),
                Some("encoding_format"),
            ));
        }
    };
    Ok(EmbeddingRequest {
        model,
        input,
        single,
        dimensions: obj.take("dimensions")?,
        encoding_format,
        user: obj.take("user")?,
        extras: Extras::new(DialectId::OpenAi, obj.into_rest()),
    })
}

/// Encodes an embeddings reply in the client's requested encoding.
pub fn encode_embeddings(
    response: &EmbeddingResponse,
    model: &str,
    format: EncodingFormat,
) -> Vec<u8> {
    let data: Vec<Value> = response
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = match format {
                EncodingFormat::Float => json!(v),
                EncodingFormat::Base64 => {
                    let mut bytes = Vec::with_capacity(v.len() * 4);
                    for x in v {
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let usage = response.usage.unwrap_or_default();
    serde_json::to_vec(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }))
    .unwrap_or_default()
}

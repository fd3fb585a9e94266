//! OpenAI Chat Completions as a provider: build the upstream request, parse replies, decode
//! streams and classify error bodies. OpenAI-compatible servers and Azure OpenAI reuse it with
//! small differences (quirks, URL and auth header).
//!
//! Documents go as `file` parts: a PDF's data as a data URI (named `document.pdf` when the
//! client gave no name) or an uploaded file's id; a text document as a text part. Other inline
//! types and documents by URL, which Chat Completions does not take, are refused, naming the
//! part.
//!
//! `cache_control` markers on content parts are an extension some OpenAI-compatible servers
//! accept; they are sent only when the client itself spoke OpenAI (same-dialect fidelity). A
//! marker from another dialect (an Anthropic client's prompt caching) is dropped, since strict
//! servers, OpenAI's own among them, refuse unknown fields in content parts.

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::canonical::{
    ChatRequest, ChatResponse, Choice, ContentPart, DocumentSource, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, ErrorClass, Extras, FinishReason, ImageSource, Message,
    PDF, ResponseFormat, Role, StreamEvent, Text, ToolChoice, UpstreamErrorInfo, Usage,
};
use crate::dialect::{
    Capabilities, DialectId, OpenAiQuirks, ProviderDialect, StreamDecoder, Target, check_documents,
    interrupted, malformed, media_type_essence, retry_after_secs,
};
use crate::error::DecodeError;
use crate::json::{self, ObjectWriter};
use crate::provider_body::{ProviderBody, Splices};
use crate::sse::{PushError, SseParser};
use crate::text_frame::TextFrame;

mod reply;

pub struct OpenAiProvider {
    quirks: OpenAiQuirks,
    endpoint: Endpoint,
    chat_head: OnceLock<Head>,
    embeddings_head: OnceLock<Head>,
}

impl OpenAiProvider {
    pub fn new(quirks: OpenAiQuirks) -> Self {
        Self::with_endpoint(quirks, Endpoint::OpenAi)
    }

    /// Azure OpenAI: OpenAI bodies, deployment URLs with `api-version` (or the v1 API), and the
    /// `api-key` header.
    pub fn azure() -> Self {
        let quirks = OpenAiQuirks {
            responses_members: false,
            ..OpenAiQuirks::default()
        };
        Self::with_endpoint(quirks, Endpoint::Azure)
    }

    fn with_endpoint(quirks: OpenAiQuirks, endpoint: Endpoint) -> Self {
        Self {
            quirks,
            endpoint,
            chat_head: OnceLock::new(),
            embeddings_head: OnceLock::new(),
        }
    }

    /// The head of a request to `path` for `target`: the one kept when it was made for the same
    /// target, else made anew (and kept if none was).
    fn head(
        &self,
        kept: &OnceLock<Head>,
        target: &Target<'_>,
        path: &str,
    ) -> Result<HeadParts, DecodeError> {
        if let Some(head) = kept.get()
            && head.serves(target)
        {
            return Ok(head.parts());
        }
        let head = Head::new(&self.endpoint, target, path)?;
        let parts = head.parts();
        // The first target keeps its head; others (rarer) make theirs each time.
        let _ = kept.set(head);
        Ok(parts)
    }
}

/// What every request to one deployment carries the same: its URL, parsed, and its credential
/// header, checked. Kept by the dialect, since making them cost some 1,400 instructions a
/// request.
struct Head {
    base_url: String,
    /// Only compared when the model is part of the URL (Azure's deployment URLs).
    model: String,
    api_version: Option<String>,
    api_key: Option<String>,
    uri: http::Uri,
    model_in_body: bool,
    auth: Option<(http::HeaderName, http::HeaderValue)>,
}

/// A copy of a [`Head`] for one request (the URI and header value share their bytes).
type HeadParts = (
    http::Uri,
    bool,
    Option<(http::HeaderName, http::HeaderValue)>,
);

impl Head {
    fn new(endpoint: &Endpoint, target: &Target<'_>, path: &str) -> Result<Self, DecodeError> {
        let (url, model_in_body) = endpoint_url(endpoint, target, path);
        let uri = http::Uri::try_from(&url).map_err(|e| {
            DecodeError::new(format!("cannot build a request for `{url}`: {e}"), None)
        })?;
        let auth = match auth(endpoint, target) {
            Some((name, value)) => {
                let mut value = http::HeaderValue::try_from(value).map_err(|_| {
                    DecodeError::new(
                        "the deployment's API key contains characters not allowed in an HTTP header",
                        None,
                    )
                })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        Ok(Self {
            base_url: target.base_url.to_owned(),
            model: target.model.to_owned(),
            api_version: target.api_version.map(str::to_owned),
            api_key: target.api_key.map(str::to_owned),
            uri,
            model_in_body,
            auth,
        })
    }

    fn serves(&self, target: &Target<'_>) -> bool {
        self.base_url == target.base_url
            && (self.model_in_body || self.model == target.model)
            && self.api_version.as_deref() == target.api_version
            && self.api_key.as_deref() == target.api_key
    }

    fn parts(&self) -> HeadParts {
        (self.uri.clone(), self.model_in_body, self.auth.clone())
    }
}

/// How the request reaches the server: URL shape and auth header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    OpenAi,
    Azure,
}

/// Made once: a header value given as text is copied on every request.
const JSON: http::HeaderValue = http::HeaderValue::from_static("application/json");

fn post(
    uri: http::Uri,
    auth: Option<(http::HeaderName, http::HeaderValue)>,
    body: Vec<u8>,
) -> http::Request<Vec<u8>> {
    // Set part by part rather than through `http::request::Builder`, which moves the whole
    // request head through a `Result` at every step.
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, JSON);
    if let Some((name, value)) = auth {
        headers.insert(name, value);
    }
    request
}

fn endpoint_url(endpoint: &Endpoint, target: &Target<'_>, path: &str) -> (String, bool) {
    match endpoint {
        Endpoint::OpenAi => ([target.base_url, "/", path].concat(), true),
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
        Endpoint::OpenAi => (http::header::AUTHORIZATION, ["Bearer ", key].concat()),
        Endpoint::Azure => (http::HeaderName::from_static("api-key"), key.to_owned()),
    })
}

fn build_chat(
    quirks: &OpenAiQuirks,
    (uri, model_in_body, auth): HeadParts,
    request: &ChatRequest,
    target: &Target<'_>,
) -> Result<http::Request<ProviderBody>, DecodeError> {
    check_documents(request, document_refusal)?;
    // Sized for the prompt up front: a long prompt is then written once, without regrowing
    // (unless it is spliced in from the client's body, which leaves the room unused).
    let mut bytes = Vec::with_capacity(request.prompt_chars() + 1024);
    let mut splices = Splices::default();
    write_chat(
        &mut bytes,
        &mut splices,
        quirks,
        request,
        target,
        model_in_body,
    )
    .map_err(|e| DecodeError::new(format!("cannot encode request: {e}"), None))?;
    Ok(post(uri, auth, bytes).map(|bytes| splices.into_body(bytes)))
}

/// The Chat Completions body, written field by field without a `Value` tree in between. The
/// client's unknown fields (extras) come last and never replace a field written here.
fn write_chat(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    quirks: &OpenAiQuirks,
    request: &ChatRequest,
    target: &Target<'_>,
    model_in_body: bool,
) -> Result<(), serde_json::Error> {
    let mut body = ObjectWriter::open(out);
    if model_in_body {
        body.str("model", target.model);
    }
    body.field("messages", |out| {
        write_messages(
            out,
            splices,
            quirks,
            &request.messages,
            request.extras.dialect == Some(DialectId::OpenAi),
        )
    })?;
    if !request.tools.is_empty() {
        body.field("tools", |out| {
            out.push(b'[');
            for (i, tool) in request.tools.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let mut t = ObjectWriter::open(out);
                t.str("type", "function");
                t.field("function", |out| {
                    let mut f = ObjectWriter::open(out);
                    f.str("name", &tool.name);
                    if let Some(d) = &tool.description {
                        f.str("description", d);
                    }
                    f.value("parameters", &tool.parameters)?;
                    if let Some(strict) = tool.strict {
                        f.raw("strict", bool_json(strict));
                    }
                    f.close();
                    Ok(())
                })?;
                t.close();
            }
            out.push(b']');
            Ok(())
        })?;
    }
    // Chat Completions refuses a tool choice without tools (a Responses client may send one).
    match request
        .tool_choice
        .as_ref()
        .filter(|_| !request.tools.is_empty())
    {
        None => {}
        Some(ToolChoice::Auto) => body.str("tool_choice", "auto"),
        Some(ToolChoice::None) => body.str("tool_choice", "none"),
        Some(ToolChoice::Required) => body.str("tool_choice", "required"),
        Some(ToolChoice::Function(name)) => {
            body.put("tool_choice", |out| {
                let mut c = ObjectWriter::open(out);
                c.str("type", "function");
                c.put("function", |out| {
                    let mut f = ObjectWriter::open(out);
                    f.str("name", name);
                    f.close();
                });
                c.close();
            });
        }
    }
    if let Some(p) = request.parallel_tool_calls
        && !request.tools.is_empty()
        && quirks.sends("parallel_tool_calls")
    {
        body.raw("parallel_tool_calls", bool_json(p));
    }
    if let Some(rf) = &request.response_format {
        body.field("response_format", |out| write_response_format(out, rf))?;
    }
    if let Some(m) = request.max_tokens {
        body.u64(&quirks.max_tokens_field, u64::from(m))?;
    }
    if let Some(t) = request.temperature
        && quirks.sends("temperature")
    {
        body.f64("temperature", t)?;
    }
    if let Some(p) = request.top_p
        && quirks.sends("top_p")
    {
        body.f64("top_p", p)?;
    }
    if !request.stop.is_empty() && quirks.sends("stop") {
        body.put("stop", |out| {
            write_str_list(out, &request.stop);
        });
    }
    if let Some(seed) = request.seed
        && quirks.sends(&quirks.seed_field)
    {
        body.field(&quirks.seed_field, |out| serde_json::to_writer(out, &seed))?;
    }
    if let Some(p) = request.frequency_penalty
        && quirks.sends("frequency_penalty")
    {
        body.f64("frequency_penalty", p)?;
    }
    if let Some(p) = request.presence_penalty
        && quirks.sends("presence_penalty")
    {
        body.f64("presence_penalty", p)?;
    }
    if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort.as_ref())
        && quirks.sends("reasoning_effort")
    {
        body.str("reasoning_effort", effort);
    }
    if let Some(user) = &request.user
        && quirks.sends("user")
    {
        body.str("user", user);
    }
    // Chat Completions takes `metadata` only with `store: true` (a Chat Completions client's,
    // which passes as its own); a Responses client's, which that API keeps by default, stays
    // with the gateway's record and kept response.
    if let Some(md) = &request.metadata
        && quirks.sends("metadata")
        && request
            .extras
            .for_dialect(DialectId::OpenAi)
            .and_then(|fields| fields.get("store"))
            == Some(&Value::Bool(true))
    {
        body.field("metadata", |out| json::write_object(out, md))?;
    }
    if let Some(n) = request.n
        && quirks.sends("n")
    {
        body.u64("n", u64::from(n))?;
    }
    if request.stream {
        body.raw("stream", b"true");
        // Only where the server takes `stream_options`: a client's own `include_usage` is
        // answered from the usage the server's last chunk carries (Mistral's always does).
        if quirks.stream_usage && quirks.sends("stream_options") {
            body.raw("stream_options", br#"{"include_usage":true}"#);
        }
    }
    let extras = request.extras.for_dialect(DialectId::OpenAi);
    if quirks.unsupported_fields.is_empty() {
        body.extras(extras)?;
    } else if let Some(fields) = extras {
        let kept: Map<String, Value> = fields
            .iter()
            .filter(|(key, _)| quirks.sends(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        body.extras(Some(&kept))?;
    }
    if quirks.responses_members
        && let Some(fields) = request.extras.for_dialect(DialectId::OpenAiResponses)
    {
        let shared: Map<String, Value> = SHARED_WITH_RESPONSES
            .iter()
            .filter_map(|key| fields.get(*key).map(|v| ((*key).to_owned(), v.clone())))
            .collect();
        body.extras(Some(&shared))?;
    }
    body.close();
    Ok(())
}

/// The members of a Responses API request that Chat Completions takes with the same meaning
/// (OpenAI's API reference for both): prompt caching, the safety identifier, the service
/// tier, moderation.
const SHARED_WITH_RESPONSES: [&str; 6] = [
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    "moderation",
];

fn bool_json(b: bool) -> &'static [u8] {
    if b { b"true" } else { b"false" }
}

fn write_str_list(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, item);
    }
    out.push(b']');
}

fn write_response_format(
    out: &mut Vec<u8>,
    format: &ResponseFormat,
) -> Result<(), serde_json::Error> {
    let mut rf = ObjectWriter::open(out);
    match format {
        ResponseFormat::Text => rf.str("type", "text"),
        ResponseFormat::JsonObject => rf.str("type", "json_object"),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            rf.str("type", "json_schema");
            rf.field("json_schema", |out| {
                let mut js = ObjectWriter::open(out);
                js.str("name", name);
                if let Some(d) = description {
                    js.str("description", d);
                }
                js.value("schema", schema)?;
                if let Some(s) = strict {
                    js.raw("strict", bool_json(*s));
                }
                js.close();
                Ok(())
            })?;
        }
    }
    rf.close();
    Ok(())
}

/// The text parts, each nonempty one a paragraph of its own. Separate blocks (an Anthropic
/// system prompt in several blocks) are separate paragraphs to the sender, so they are joined
/// by a line break rather than run together.
fn texts<'a>(parts: impl IntoIterator<Item = &'a ContentPart>) -> impl Iterator<Item = &'a Text> {
    parts.into_iter().filter_map(|p| match p {
        ContentPart::Text { text, .. } if !text.is_empty() => Some(text),
        _ => None,
    })
}

/// The text parts as one JSON string, with `prefix` before them; one part (the usual case) is
/// written without a joined copy.
fn write_text<'a>(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    prefix: &str,
    parts: impl IntoIterator<Item = &'a ContentPart>,
) {
    let mut texts = texts(parts);
    match (texts.next(), texts.next()) {
        (None, _) => json::write_str(out, prefix),
        (Some(only), None) if prefix.is_empty() => json::write_text_splicing(out, only, splices),
        (first, second) => {
            let mut joined = String::from(prefix);
            for text in first.into_iter().chain(second).chain(texts) {
                if joined.len() > prefix.len() {
                    joined.push('\n');
                }
                joined.push_str(text);
            }
            json::write_str(out, &joined);
        }
    }
}

/// User-visible content: a plain string when it is only text, else an array of parts.
/// `markers` says whether part `cache_control` markers are sent.
fn write_content<'a, I>(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    parts: I,
    markers: bool,
) -> Result<(), serde_json::Error>
where
    I: IntoIterator<Item = &'a ContentPart> + Clone,
{
    let simple = parts.clone().into_iter().all(|p| match p {
        ContentPart::Text { cache_control, .. } => !markers || cache_control.is_none(),
        _ => false,
    });
    if simple {
        write_text(out, splices, "", parts);
        return Ok(());
    }
    out.push(b'[');
    let mut first = true;
    for p in parts {
        match p {
            ContentPart::Text {
                text,
                cache_control,
                ..
            } => {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                let mut o = ObjectWriter::open(out);
                o.str("type", "text");
                o.put("text", |out| json::write_text_splicing(out, text, splices));
                if let (Some(cc), true) = (cache_control, markers) {
                    o.value("cache_control", cc)?;
                }
                o.close();
            }
            ContentPart::Image { source, detail } => {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                let mut o = ObjectWriter::open(out);
                o.str("type", "image_url");
                o.put("image_url", |out| {
                    let mut image = ObjectWriter::open(out);
                    image.put("url", |out| write_image_url(out, source, splices));
                    if let Some(d) = detail {
                        image.str("detail", d);
                    }
                    image.close();
                });
                o.close();
            }
            ContentPart::Document { source, title, .. } => {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_document(out, splices, source, title.as_deref());
            }
            _ => {}
        }
    }
    out.push(b']');
    Ok(())
}

/// Why Chat Completions cannot take a document (`None` when it can): its `file` part holds a PDF
/// (as data or an uploaded file's id) and nothing by URL; a text document is sent as a text
/// part, as OpenAI's reference advises for a file's text.
fn document_refusal(source: &DocumentSource) -> Option<String> {
    match source {
        DocumentSource::Base64 { media_type, .. } if audio_format(media_type).is_some() => None,
        DocumentSource::Base64 { media_type, .. } if media_type_essence(media_type) != PDF => {
            Some(format!(
                "OpenAI Chat Completions takes inline files as PDF (application/pdf) only, not \
                 '{media_type}' (and audio as wav or mp3); send a text file's text as a text \
                 part"
            ))
        }
        DocumentSource::Url(_) => Some(
            "OpenAI Chat Completions takes no document by URL; send its data (base64) or an \
             uploaded file's id instead"
                .to_owned(),
        ),
        DocumentSource::Base64 { .. } | DocumentSource::Text { .. } | DocumentSource::FileId(_) => {
            None
        }
    }
}

/// The `input_audio` format of an audio document's media type (`audio/mpeg` is MP3 too).
fn audio_format(media_type: &str) -> Option<&'static str> {
    match media_type_essence(media_type).as_str() {
        "audio/mpeg" => Some("mp3"),
        essence => super::ingress::AUDIO_FORMATS
            .iter()
            .find(|(_, audio)| *audio == essence)
            .map(|(format, _)| *format),
    }
}

/// Written when a `file` part's data has no name: OpenAI's examples always give one.
const DEFAULT_FILENAME: &str = "document.pdf";

/// A document as a `file` part (`file_data` as a data URI whose base64 text is spliced from the
/// client's body like an image's, or `file_id`), or a text document as a text part. Forms
/// refused by [`document_refusal`] never reach here.
fn write_document(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    source: &DocumentSource,
    title: Option<&str>,
) {
    let mut o = ObjectWriter::open(out);
    match source {
        DocumentSource::Text { data, .. } => {
            o.str("type", "text");
            o.put("text", |out| json::write_text_splicing(out, data, splices));
        }
        DocumentSource::Base64 { media_type, data }
            if let Some(format) = audio_format(media_type) =>
        {
            o.str("type", "input_audio");
            o.put("input_audio", |out| {
                let mut audio = ObjectWriter::open(out);
                audio.put("data", |out| json::write_text_splicing(out, data, splices));
                audio.str("format", format);
                audio.close();
            });
        }
        DocumentSource::Base64 { media_type, data } => {
            o.str("type", "file");
            o.put("file", |out| {
                let mut file = ObjectWriter::open(out);
                file.str("filename", title.unwrap_or(DEFAULT_FILENAME));
                file.put("file_data", |out| {
                    out.push(b'"');
                    write_data_uri(out, media_type, data, splices);
                    out.push(b'"');
                });
                file.close();
            });
        }
        DocumentSource::FileId(id) => {
            o.str("type", "file");
            o.put("file", |out| {
                let mut file = ObjectWriter::open(out);
                file.str("file_id", id);
                if let Some(title) = title {
                    file.str("filename", title);
                }
                file.close();
            });
        }
        DocumentSource::Url(_) => {}
    }
    o.close();
}

/// An image's `url`: the URL, or a data URI whose base64 text (most of a request with an
/// inline image) is spliced in from the client's body when it was read from there.
fn write_image_url(out: &mut Vec<u8>, source: &ImageSource, splices: &mut Splices) {
    out.push(b'"');
    match source {
        ImageSource::Url(url) => json::write_str_content(out, url),
        ImageSource::Base64 { media_type, data } => {
            write_data_uri(out, media_type, data, splices);
        }
    }
    out.push(b'"');
}

/// A `data:` URI's text inside a JSON string (an image's or a file's), its base64 text spliced
/// in from the client's body when it was read from there.
fn write_data_uri(out: &mut Vec<u8>, media_type: &str, data: &Text, splices: &mut Splices) {
    out.extend_from_slice(b"data:");
    json::write_str_content(out, media_type);
    out.extend_from_slice(b";base64,");
    json::write_text_content_splicing(out, data, splices);
}

/// A tool's result as text; an error is marked as one for models that only see text.
fn write_tool_result(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    content: &[ContentPart],
    is_error: bool,
) {
    let starts_with_error = texts(content)
        .next()
        .is_some_and(|t| t.starts_with("Error"));
    let prefix = if is_error && !starts_with_error {
        "Error: "
    } else {
        ""
    };
    write_text(out, splices, prefix, content);
}

/// How `unsupported_fields` names a message's `name` (Groq refuses it).
const MESSAGE_NAME: &str = "messages[].name";

fn write_messages(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    quirks: &OpenAiQuirks,
    messages: &[Message],
    markers: bool,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    let mut first = true;
    for m in messages {
        let extras = m.extras.for_dialect(DialectId::OpenAi);
        // Opens the next message of the array.
        let mut open = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        match m.role {
            Role::System | Role::Developer => {
                let role = match m.role {
                    Role::Developer if quirks.developer_role => "developer",
                    _ => "system",
                };
                open(out);
                let mut msg = ObjectWriter::open(out);
                msg.str("role", role);
                msg.field("content", |out| {
                    write_content(out, splices, &m.content, markers)
                })?;
                msg.extras(extras)?;
                msg.close();
            }
            Role::User | Role::Tool => {
                // Tool results become `tool` messages; anything else stays a user message.
                // A `tool` message holds text only, so a result's images and documents (a
                // screenshot an agent's tool took, a PDF it fetched) follow in that user message,
                // after every `tool` message
                // (each must directly answer the assistant's call), ahead of the other parts.
                let result_images = || {
                    m.content
                        .iter()
                        .filter_map(|p| match p {
                            ContentPart::ToolResult { content, .. } => Some(content),
                            _ => None,
                        })
                        .flatten()
                        .filter(|p| {
                            matches!(p, ContentPart::Image { .. } | ContentPart::Document { .. })
                        })
                };
                let mut others = result_images().next().is_some();
                for part in &m.content {
                    match part {
                        ContentPart::ToolResult {
                            tool_call_id,
                            content,
                            is_error,
                            ..
                        } => {
                            open(out);
                            let mut msg = ObjectWriter::open(out);
                            msg.str("role", "tool");
                            msg.str("tool_call_id", &call_id(quirks, tool_call_id));
                            msg.put("content", |out| {
                                write_tool_result(out, splices, content, *is_error);
                            });
                            msg.extras(extras)?;
                            msg.close();
                        }
                        _ => others = true,
                    }
                }
                if others {
                    let rest = result_images().chain(
                        m.content
                            .iter()
                            .filter(|p| !matches!(p, ContentPart::ToolResult { .. })),
                    );
                    open(out);
                    let mut msg = ObjectWriter::open(out);
                    msg.str("role", "user");
                    msg.field("content", |out| write_content(out, splices, rest, markers))?;
                    // A `tool` message's name is its function's, not a participant's.
                    if let (Some(name), Role::User) = (&m.name, m.role)
                        && quirks.sends(MESSAGE_NAME)
                    {
                        msg.str("name", name);
                    }
                    msg.extras(extras)?;
                    msg.close();
                }
            }
            Role::Assistant => {
                let calls = || {
                    m.content.iter().filter_map(|p| match p {
                        ContentPart::ToolCall {
                            id,
                            name,
                            arguments,
                            ..
                        } => Some((id, name, arguments)),
                        _ => None,
                    })
                };
                let has_calls = calls().next().is_some();
                let has_text = texts(&m.content).next().is_some();
                open(out);
                let mut msg = ObjectWriter::open(out);
                msg.str("role", "assistant");
                if !has_text && has_calls {
                    msg.raw("content", b"null");
                } else {
                    msg.put("content", |out| {
                        write_text(out, splices, "", &m.content);
                    });
                }
                if has_calls && quirks.reasoning_history {
                    let mut reasoning = m.content.iter().filter_map(|p| match p {
                        ContentPart::Reasoning { text, .. } if !text.is_empty() => Some(text),
                        _ => None,
                    });
                    if let Some(first) = reasoning.next() {
                        match reasoning.next() {
                            None => msg.str(&quirks.reasoning_field, first),
                            Some(second) => {
                                let mut all = [first.as_str(), second.as_str()].concat();
                                reasoning.for_each(|t| all.push_str(t));
                                msg.str(&quirks.reasoning_field, &all);
                            }
                        }
                    }
                }
                if has_calls {
                    msg.put("tool_calls", |out| {
                        out.push(b'[');
                        for (i, (id, name, arguments)) in calls().enumerate() {
                            if i > 0 {
                                out.push(b',');
                            }
                            let mut call = ObjectWriter::open(out);
                            call.str("id", &call_id(quirks, id));
                            call.str("type", "function");
                            call.put("function", |out| {
                                let mut f = ObjectWriter::open(out);
                                f.str("name", name);
                                f.str("arguments", arguments);
                                f.close();
                            });
                            call.close();
                        }
                        out.push(b']');
                    });
                }
                msg.extras(extras)?;
                msg.close();
            }
        }
    }
    out.push(b']');
    Ok(())
}

/// A tool call's id as the server takes it: as given, or for a server that takes only 9
/// letters and digits (Mistral), an id of another form replaced by 9 made from it (FNV-1a in
/// base 62), the same wherever it appears, so a call and its result still match.
fn call_id<'a>(quirks: &OpenAiQuirks, id: &'a str) -> Cow<'a, str> {
    if !quirks.short_tool_call_ids
        || (id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Cow::Borrowed(id);
    }
    const DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let short = (0..9)
        .map(|_| {
            let digit = DIGITS[(hash % 62) as usize] as char;
            hash /= 62;
            digit
        })
        .collect();
    Cow::Owned(short)
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<WirePromptDetails>,
    completion_tokens_details: Option<WireCompletionDetails>,
    /// DeepSeek reports cache hits here.
    prompt_cache_hit_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WirePromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireCompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn canonical(&self) -> Usage {
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        // OpenAI counts reasoning within `completion_tokens`; xAI counts it beside them (its
        // total is prompt + completion + reasoning), and bills it as output all the same.
        let beside = reasoning > 0
            && self.total_tokens.is_some()
            && self.total_tokens
                == self
                    .prompt_tokens
                    .checked_add(self.completion_tokens)
                    .and_then(|n| n.checked_add(reasoning));
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: if beside {
                self.completion_tokens + reasoning
            } else {
                self.completion_tokens
            },
            cache_read_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: reasoning,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireFunctionCall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
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
    content: Option<WireContent>,
    refusal: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

/// A message's `content`: a string, or (Mistral's reasoning models) a list of parts, `text`
/// parts and `thinking` parts (each holding a list of text parts), whose texts are joined.
#[derive(Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireContent {
    text: String,
    thinking: Option<String>,
}

impl<'de> Deserialize<'de> for WireContent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Parts(Vec<Value>),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Text(text) => WireContent {
                text,
                thinking: None,
            },
            Form::Parts(parts) => content_parts(&parts),
        })
    }
}

/// The texts of a content given as a list of parts, the answer's and the thinking's apart;
/// parts of other types (Mistral's `reference`) carry no text.
fn content_parts(parts: &[Value]) -> WireContent {
    let mut out = WireContent::default();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    out.text.push_str(t);
                }
            }
            Some("thinking") => {
                let thinking = out.thinking.get_or_insert_default();
                match part.get("thinking") {
                    Some(Value::String(t)) => thinking.push_str(t),
                    Some(Value::Array(inner)) => {
                        for t in inner.iter().filter_map(|p| p.get("text")?.as_str()) {
                            thinking.push_str(t);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    out
}

/// A reply's or chunk's `choices`. Nearly always one: it is kept inline, and only the choices
/// after it take a vector (every stream chunk would otherwise allocate one).
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireChoices<C> {
    first: Option<C>,
    rest: Vec<C>,
}

impl<C> Default for WireChoices<C> {
    fn default() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<C> IntoIterator for WireChoices<C> {
    type Item = C;
    type IntoIter = std::iter::Chain<std::option::IntoIter<C>, std::vec::IntoIter<C>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl<'de, C: Deserialize<'de>> Deserialize<'de> for WireChoices<C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choices<C>(std::marker::PhantomData<C>);
        impl<'de, C: Deserialize<'de>> serde::de::Visitor<'de> for Choices<C> {
            type Value = WireChoices<C>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireChoices<C>, A::Error> {
                let mut out = WireChoices {
                    first: seq.next_element()?,
                    rest: Vec::new(),
                };
                while let Some(choice) = seq.next_element()? {
                    out.rest.push(choice);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(Choices(std::marker::PhantomData))
    }
}

/// A choice of a whole reply. The finish reason is borrowed: it is only ever matched.
#[derive(Deserialize)]
struct WireChoice<'a> {
    message: Option<WireMessage>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
    /// The tokens' log probabilities, when the request asked for them: an OpenAI client gets
    /// them back as they came (see [`LOGPROBS`]).
    logprobs: Option<Value>,
}

/// A choice of a stream chunk.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireStreamChoice<'a> {
    #[serde(borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
    /// The log probabilities of this chunk's tokens, as their JSON text.
    #[serde(borrow)]
    logprobs: Option<RawJson<'a>>,
}

/// A stream chunk's `delta`. The text is kept as its JSON text, borrowed from the chunk: where
/// it lies frames the chunks after it (see `text_frame`).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireDelta<'a> {
    #[serde(borrow)]
    content: Option<RawJson<'a>>,
    refusal: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

/// The JSON text of a value, borrowed from the text it was read from: the serde decoder takes
/// it as a `RawValue`, the hand-written reader as the slice it skipped.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct RawJson<'a>(&'a str);

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(deserializer).map(|raw| RawJson(raw.get()))
    }
}

/// A whole `chat.completion`. Read by hand rather than with a flattened map of the rest: serde
/// buffers every field of a struct with a flattened member into an intermediate tree first, and
/// the fields we write anew (`object`, `system_fingerprint`) are skipped instead of kept.
#[derive(Default)]
struct WireCompletion<'a> {
    id: String,
    model: String,
    created: i64,
    choices: WireChoices<WireChoice<'a>>,
    usage: Option<WireUsage>,
    rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for WireCompletion<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = WireCompletion<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a chat completion object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<WireCompletion<'de>, A::Error> {
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
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireStreamChunk<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default, borrow)]
    choices: WireChoices<WireStreamChoice<'a>>,
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    /// Empty when absent.
    #[serde(default, borrow)]
    object: Cow<'a, str>,
    /// OpenAI's random characters against size side channels: ignored, but a text chunk's frame
    /// allows for it (it changes on every chunk). Only the hand reader notes where it lies.
    #[serde(skip)]
    obfuscation: Option<RawJson<'a>>,
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
    let wire = match reply::read(body) {
        Some(wire) => wire,
        None => crate::json::from_body(body)
            .map_err(|e| malformed(format!("provider reply is not a chat completion: {e}")))?,
    };
    chat_response(wire)
}

/// The canonical response of a reply, however it was read: its first choice is the answer,
/// any others (the client asked for `n` of them) its further choices.
fn chat_response(wire: WireCompletion<'_>) -> Result<ChatResponse, UpstreamErrorInfo> {
    let mut choices = wire.choices.into_iter();
    let first = choices
        .next()
        .ok_or_else(|| malformed("provider reply has no choices"))?;
    let mut rest = wire.rest;
    let (content, finish_reason) = read_choice(first, &mut rest)?;
    let more_choices = choices
        .map(|choice| {
            let mut fields = Map::new();
            let (content, finish_reason) = read_choice(choice, &mut fields)?;
            Ok(Choice {
                content,
                finish_reason,
                extras: if fields.is_empty() {
                    Extras::default()
                } else {
                    Extras::new(DialectId::OpenAi, fields)
                },
            })
        })
        .collect::<Result<_, UpstreamErrorInfo>>()?;
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        content,
        finish_reason,
        usage: wire.usage.map(|u| u.canonical()),
        extras: Extras::new(DialectId::OpenAi, rest),
        more_choices,
    })
}

/// One choice's content and finish reason; its log probabilities and a refusal that stands as
/// its text go into `extras` (see [`LOGPROBS`], [`REFUSAL`]).
fn read_choice(
    choice: WireChoice<'_>,
    extras: &mut Map<String, Value>,
) -> Result<(Vec<ContentPart>, FinishReason), UpstreamErrorInfo> {
    let message = choice
        .message
        .ok_or_else(|| malformed("provider reply has no message"))?;
    let mut content = Vec::new();
    let (text, thinking) = match message.content {
        Some(c) => (Some(c.text), c.thinking),
        None => (None, None),
    };
    if let Some(r) = message.reasoning_content.or(message.reasoning).or(thinking)
        && !r.is_empty()
    {
        content.push(ContentPart::Reasoning {
            text: r,
            signature: None,
        });
    }
    let refused = message.refusal.is_some();
    if let Some(logprobs) = choice.logprobs {
        extras.insert(LOGPROBS.into(), logprobs);
    }
    match (
        text.filter(|t| !t.is_empty()),
        message.refusal.filter(|t| !t.is_empty()),
    ) {
        (Some(text), _) => content.push(ContentPart::text(text)),
        // The refusal is the answer's text for other dialects; an OpenAI client gets it back
        // in `refusal`, where its SDK looks for it.
        (None, Some(refusal)) => {
            content.push(ContentPart::text(refusal.clone()));
            extras.insert(REFUSAL.into(), Value::String(refusal));
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
    Ok((content, finish))
}

/// Response extras key of a refusal that stands as the answer's text (OpenAI `refusal`).
pub(crate) const REFUSAL: &str = "refusal";

/// Response extras key of the choice's `logprobs` (the tokens' log probabilities, asked for
/// with `logprobs: true`): an OpenAI client gets them back in its choice, other dialects have
/// no place for them.
pub(crate) const LOGPROBS: &str = "logprobs";

/// Decodes `chat.completion.chunk` SSE streams; `[DONE]` is the terminal event.
#[derive(Default)]
pub struct OpenAiStreamDecoder {
    sse: SseParser,
    started: bool,
    done: bool,
    finished: bool,
    /// `[DONE]` without a `finish_reason` before it is a cut stream (OpenAI, Azure).
    finish_reason_always: bool,
    /// An error event came: it says why the answer ended, as a finish reason would.
    errored: bool,
    tool_indices: Vec<u32>,
    /// Frames the plain text chunks after the last one parsed whole (see `text_frame`).
    frame: TextFrame,
}

impl OpenAiStreamDecoder {
    fn handle(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if let Some(text) = self.frame.text_of(data) {
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta(text));
            }
            return Ok(());
        }
        let parsed = match reply::read_chunk(data) {
            Some(chunk) => Ok(chunk),
            None => serde_json::from_str::<WireStreamChunk>(data),
        };
        let chunk = match parsed {
            Ok(c) => c,
            // Not the usual shape: find out whether it is an error, else say what is wrong.
            Err(shape) => {
                let value: Value = serde_json::from_str(data)
                    .map_err(|e| malformed(format!("stream chunk is not JSON: {e}")))?;
                if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
                    self.errored = true;
                    out.push(StreamEvent::Error(in_stream_error(err)));
                    return Ok(());
                }
                if value.get("object").and_then(Value::as_str) == Some("error") {
                    self.errored = true;
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
            self.errored = true;
            out.push(StreamEvent::Error(in_stream_error(err)));
            return Ok(());
        }
        if !self.started
            && chunk.id.is_empty()
            && chunk.model.is_empty()
            && chunk.choices.first.is_none()
            && chunk.usage.is_none()
        {
            // Azure's first chunk: the prompt's filter results, with neither id nor model. The
            // stream starts with the chunk that names them.
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.into_owned(),
                model: chunk.model.into_owned(),
            });
        }
        // A chunk whose one choice carries text and nothing else frames the chunks after it.
        let mut framing = None;
        let single = chunk.choices.rest.is_empty() && chunk.usage.is_none();
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                // A chunk with log probabilities is not a frame: they change with the text.
                if single
                    && choice.logprobs.is_none()
                    && choice.finish_reason.is_none()
                    && delta.refusal.is_none()
                    && delta.reasoning_content.is_none()
                    && delta.reasoning.is_none()
                    && delta.tool_calls.is_none()
                {
                    framing = delta.content.filter(|raw| raw.0.starts_with('"'));
                }
                if let Some(r) = delta.reasoning_content.or(delta.reasoning)
                    && !r.is_empty()
                {
                    out.push(StreamEvent::ReasoningDelta(r));
                }
                let content = match delta.content {
                    Some(RawJson(raw)) if raw.starts_with('[') => {
                        let parts: Vec<Value> = serde_json::from_str(raw).map_err(|e| {
                            malformed(format!("stream chunk has an unexpected shape: {e}"))
                        })?;
                        let parts = content_parts(&parts);
                        if let Some(r) = parts.thinking.filter(|r| !r.is_empty()) {
                            out.push(StreamEvent::ReasoningDelta(r));
                        }
                        Some(parts.text)
                    }
                    Some(RawJson(raw)) => Some(match crate::text_frame::plain_string(raw) {
                        Some(plain) => plain.to_owned(),
                        None => serde_json::from_str::<String>(raw).map_err(|e| {
                            malformed(format!("stream chunk has an unexpected shape: {e}"))
                        })?,
                    }),
                    None => None,
                };
                if let Some(r) = delta.refusal.filter(|r| !r.is_empty()) {
                    out.push(StreamEvent::RefusalDelta(r));
                }
                if let Some(t) = content
                    && !t.is_empty()
                {
                    if let Some(RawJson(logprobs)) = choice.logprobs {
                        out.push(StreamEvent::Logprobs(one_line_json(logprobs)?));
                    }
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
        if let Some(text) = framing {
            self.frame
                .set(data, text.0, chunk.obfuscation.map(|raw| raw.0));
        }
        Ok(())
    }

    /// Forgets the text frame, so that the next chunk is parsed whole (tests compare both ways).
    #[cfg(test)]
    pub(crate) fn forget_frame(&mut self) {
        self.frame.forget();
    }

    /// Chunks read through the text frame so far.
    #[cfg(test)]
    pub(crate) fn framed_chunks(&self) -> usize {
        self.frame.hits
    }
}

/// A value's JSON text that fits on an SSE data line: as it came, unless it spans lines (a
/// provider's event of several data lines), then written again compactly.
fn one_line_json(raw: &str) -> Result<String, UpstreamErrorInfo> {
    if !raw.contains(['\n', '\r']) {
        return Ok(raw.to_owned());
    }
    let value: Value = serde_json::from_str(raw)
        .map_err(|e| malformed(format!("stream chunk has an unexpected shape: {e}")))?;
    Ok(value.to_string())
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
        param: None,
    }
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        // The parser is taken out for the call, so that the handler may use the decoder.
        let mut sse = std::mem::take(&mut self.sse);
        let pushed = sse.push_each(chunk, &mut |_, data| {
            if self.done {
                Ok(())
            } else {
                self.handle(data, out)
            }
        });
        self.sse = sse;
        pushed.map_err(|e| match e {
            PushError::Sse(e) => malformed(e.to_string()),
            PushError::Event(e) => e,
        })
    }

    fn terminated(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.done && !self.finished && !self.errored && self.finish_reason_always {
            Err(interrupted(
                "provider stream ended with [DONE] but never said why the answer ended \
                 (no finish_reason): cut short",
            ))
        } else if self.done {
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
    let body: Option<Value> = serde_json::from_slice(body).ok();
    // OpenAI's `{"error": {...}}`; else the error itself at the top (Mistral's and vLLM's
    // `{"object": "error", "message": ...}`), or a web framework's `{"detail": ...}`.
    let err = body.as_ref().and_then(|b| match b.get("error") {
        Some(e) if !e.is_null() => Some(e),
        _ if b.get("message").is_some() => Some(b),
        _ => b.get("detail"),
    });
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        // Mistral's validation errors give the message as the list of what failed.
        Some(v @ (Value::Object(_) | Value::Array(_))) => Some(v.to_string()),
        _ => None,
    };
    let (message, code, kind, param) = match err {
        Some(o @ Value::Object(_)) => (
            text(o.get("message")),
            o.get("code").and_then(Value::as_str).map(str::to_owned),
            o.get("type").and_then(Value::as_str).map(str::to_owned),
            o.get("param").and_then(Value::as_str).map(str::to_owned),
        ),
        other => (text(other), None, None, None),
    };
    let mut class = ErrorClass::from_status(status);
    let lower = message.as_deref().unwrap_or("").to_ascii_lowercase();
    // OpenAI's code, vLLM's and Mistral's words, xAI's ("maximum prompt length", and in newer
    // answers `[input_too_large]`).
    let too_long = [
        "maximum context length",
        "maximum prompt length",
        "input_too_large",
    ];
    // OpenRouter's moderation refusal: a 403 naming what was flagged.
    let flagged = status == 403
        && (err
            .and_then(|e| e.get("metadata"))
            .is_some_and(|m| m.get("flagged_input").is_some() || m.get("reasons").is_some())
            || lower.contains("flagged"));
    if code.as_deref() == Some("context_length_exceeded")
        || ((status == 400 || status == 422) && too_long.iter().any(|t| lower.contains(t)))
    {
        class = ErrorClass::ContextTooLong;
    } else if code.as_deref() == Some("content_filter")
        || code.as_deref() == Some("content_policy_violation")
        || flagged
    {
        class = ErrorClass::ContentFiltered;
    } else if status == 400
        && (lower.contains("incorrect api key") || lower.contains("invalid api key"))
    {
        // xAI answers a bad key with a 400: the deployment's credentials, not the request.
        class = ErrorClass::AuthFailed;
    }
    UpstreamErrorInfo {
        class,
        status: Some(status),
        message: message.unwrap_or_else(|| format!("provider answered HTTP {status}")),
        provider_code: code.or(kind),
        retry_after_secs: retry_after_secs(headers),
        param,
    }
}

fn build_embeddings(
    (uri, model_in_body, auth): HeadParts,
    request: &EmbeddingRequest,
    target: &Target<'_>,
    quirks: &OpenAiQuirks,
) -> Result<http::Request<Vec<u8>>, DecodeError> {
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
    // What the server refuses is left out here as in chat requests (Cohere's compatibility API
    // takes no `dimensions` or `user`; a server that refuses base64 names `encoding_format`,
    // and its floats are read as they come).
    body.retain(|k, _| quirks.sends(k));
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| DecodeError::new(format!("cannot encode request: {e}"), None))?;
    Ok(post(uri, auth, bytes))
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
    documents: true,
    json_schema: true,
    embeddings: true,
    several_choices: true,
    image_urls: true,
    document_urls: false,
    tool_result_urls: true,
    single_tool_call: true,
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
    ) -> Result<http::Request<ProviderBody>, DecodeError> {
        let head = self.head(&self.chat_head, target, "chat/completions")?;
        let dated = match (self.endpoint, target.api_version) {
            (Endpoint::Azure, Some(version)) => self.quirks.for_azure_version(version),
            _ => None,
        };
        build_chat(
            dated.as_ref().unwrap_or(&self.quirks),
            head,
            request,
            target,
        )
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
        Box::new(OpenAiStreamDecoder {
            finish_reason_always: self.quirks.finish_reason_always,
            ..OpenAiStreamDecoder::default()
        })
    }
    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
        classify_error(status, headers, body)
    }
    fn build_embeddings(
        &self,
        request: &EmbeddingRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        let head = self.head(&self.embeddings_head, target, "embeddings")?;
        build_embeddings(head, request, target, &self.quirks)
    }
    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
        parse_embeddings(body)
    }
}

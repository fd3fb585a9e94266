//! The upstream side of the Anthropic dialect: build a `POST /v1/messages` request from a
//! canonical request, parse the answer, classify error bodies. The stream decoder lives in
//! `stream.rs`.
//!
//! Translation choices, where the Messages API differs from the canonical model:
//! * `system`/`developer` messages are hoisted, in order, into `system`: a string when there is
//!   a single block without `cache_control`, else an array of text blocks. A system message an
//!   Anthropic client placed among its messages (the API's mid-conversation system message)
//!   stays where it stands once the conversation has begun.
//! * Tool results (tool-role messages or result parts) become `tool_result` blocks in a `user`
//!   message; consecutive same-role messages are merged; empty text blocks, empty messages and
//!   reasoning without a signature (which Anthropic would reject as forged) are dropped. A
//!   history that starts with an assistant turn is sent as it is.
//! * `max_tokens` is required: the request's value, else [`DEFAULT_MAX_TOKENS`].
//! * `temperature` above 1 (OpenAI allows up to 2) is clamped to 1.
//! * `reasoning.budget_tokens` → `thinking` enabled with that budget. An effort without a
//!   budget maps to a budget (see [`effort_budget`]), capped below the request's `max_tokens`;
//!   since Anthropic rejects thinking together with a non-default temperature, `top_k` or a
//!   forced tool, an effort-derived budget drops `temperature` and `top_k` and is skipped when
//!   a tool is forced, or when the request goes on after a tool turn that did not think (see
//!   [`continues_unthought_tool_turn`]). Claude 4.6 and later (which think adaptively, and from
//!   4.7 only so: [`thinks_adaptively`]) get the effort as `thinking: {"type": "adaptive"}` with
//!   `output_config.effort` ([`adaptive_effort`]) instead of a budget. With thinking on and no `max_tokens` in the request, `max_tokens` is the
//!   budget plus [`DEFAULT_MAX_TOKENS`].
//! * `response_format` json_schema → `output_config.format`; json_object has no native mode, so
//!   a system instruction asks for a bare JSON object.
//! * `seed`, `frequency_penalty`, `presence_penalty` and `metadata` have no Anthropic field and
//!   are not sent; `n` above 1 is refused.
//! * Documents: a PDF's base64 data, a URL or a text document become `document` blocks (an
//!   inline `text/plain` file is decoded into a text source, the only form the API has for it);
//!   other inline types and OpenAI file ids are refused, naming the part. A title and context
//!   are sent; `citations` only when the client spoke Anthropic.
//! * Citations: a text part's `citations` (an earlier answer's, sent back as history) are sent
//!   on its text block; an answer's text blocks keep theirs, for an Anthropic client. A
//!   client's `search_result` blocks and documents of its own chunks (`content` source) are
//!   sent as it wrote them.
//! * Extras from an Anthropic client are passed through (same-dialect fidelity).

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};

use super::ingress::{
    BETA_HEADER, BLOCK_CACHE_CONTROL, DOCUMENT_CITATIONS, IN_CONVERSATION, OUTPUT_CONFIG,
    SERVER_TOOLS, THINKING, VERSION_HEADER, WHOLE_BLOCKS,
};
use super::stream::AnthropicStreamDecoder;
use super::wire::{
    self, ANTHROPIC_VERSION, ContentBlock, ContentBlockParam, ErrorResponse, OutputConfig,
    OutputFormat, ThinkingConfigParam, ToolUnion,
};
use crate::DialectId;
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, DocumentSource, ErrorClass, Extras, ImageSource,
    Message, PDF, Reasoning, ResponseFormat, Role, Text, ToolChoice, UpstreamErrorInfo, WebSearch,
};
use crate::dialect::{
    Capabilities, ProviderDialect, StreamDecoder, Target, check_documents, malformed,
    media_type_essence, retry_after_secs,
};
use crate::error::DecodeError;
use crate::json::{self, ObjectWriter};
use crate::provider_body::{ProviderBody, Splices};

/// `max_tokens` when the request sets none: the Messages API requires the field, and 4096 fits
/// the output limit of every current Claude model.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The system instruction standing in for OpenAI's `json_object` mode.
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single valid JSON object and nothing else: no prose, no code fences.";

/// The thinking budget for an OpenAI-style reasoning effort: `minimal`/`low` → 1024 (the API's
/// minimum), `medium` → 4096, `high` and above → 16384, `none` → no thinking. Unknown efforts
/// read as `medium`.
pub fn effort_budget(effort: &str) -> Option<u32> {
    match effort {
        "none" => None,
        "minimal" | "low" => Some(1024),
        "high" | "xhigh" | "max" => Some(16384),
        _ => Some(4096),
    }
}

/// Whether the request goes on with a tool turn whose thinking it does not send back: it ends
/// with tool results, and the assistant turn they answer does not open with signed (or
/// redacted) reasoning. Claude refuses thinking there (a turn that thought must open with its
/// thinking when it goes on after its tools), and a client of another dialect has no way to
/// send Claude's signed thinking back: thinking that client's effort asked for is left off for
/// such a request, which then answers from the tools' results.
pub fn continues_unthought_tool_turn(messages: &[Message]) -> bool {
    let is_results = |m: &Message| {
        m.role == Role::Tool
            || (m.role == Role::User
                && m.content
                    .iter()
                    .any(|p| matches!(p, ContentPart::ToolResult { .. })))
    };
    // System messages are hoisted out of the conversation; consecutive messages of one role
    // are one turn.
    let mut back = messages
        .iter()
        .rev()
        .filter(|m| !matches!(m.role, Role::System | Role::Developer))
        .peekable();
    if !back.peek().is_some_and(|m| is_results(m)) {
        return false;
    }
    while back.next_if(|m| is_results(m)).is_some() {}
    let mut opening = None;
    while let Some(m) = back.next_if(|m| m.role == Role::Assistant) {
        opening = Some(m);
    }
    let Some(turn) = opening else {
        return false;
    };
    // The first block the turn is sent with: empty texts and unsigned reasoning are dropped.
    let first = turn.content.iter().find(|p| match p {
        ContentPart::Text { text, .. } => !text.as_str().is_empty(),
        ContentPart::Reasoning { signature, .. } => signature.is_some(),
        _ => true,
    });
    !matches!(
        first,
        Some(ContentPart::Reasoning { .. } | ContentPart::RedactedReasoning { .. })
    )
}

/// Whether `model` (an Anthropic or Bedrock model id) is Claude 4.6 or later, which thinks
/// adaptively (`thinking: {"type": "adaptive"}` with an effort): the later ones take no other
/// kind, and on 4.6 a budget is deprecated. The version is the first number after `claude-`
/// and the one-digit number after it, if any (`claude-sonnet-4-6`, `claude-opus-5`); a date
/// (`claude-sonnet-4-5-20250929`) is not a minor version.
pub fn thinks_adaptively(model: &str) -> bool {
    let Some((_, name)) = model.split_once("claude-") else {
        return false;
    };
    let mut numbers = name
        .split(['-', ':', '.', '@'])
        .skip_while(|part| !part.bytes().all(|b| b.is_ascii_digit()) || part.is_empty());
    let Some(major) = numbers.next().and_then(|m| m.parse::<u32>().ok()) else {
        return false;
    };
    let minor = numbers
        .next()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    (major, minor) >= (4, 6)
}

/// The Messages API's `output_config.effort` for an OpenAI-style reasoning effort (`none`: no
/// thinking).
pub fn adaptive_effort(effort: &str) -> Option<&'static str> {
    match effort {
        "none" => None,
        "minimal" | "low" => Some("low"),
        "high" => Some("high"),
        "xhigh" | "max" => Some("max"),
        _ => Some("medium"),
    }
}

/// The Anthropic Messages API as an upstream.
pub struct AnthropicProvider;

impl ProviderDialect for AnthropicProvider {
    fn id(&self) -> DialectId {
        DialectId::Anthropic
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            images: true,
            documents: true,
            json_schema: true,
            embeddings: false,
            several_choices: false,
            image_urls: true,
            document_urls: true,
            tool_result_urls: true,
            single_tool_call: true,
        }
    }

    fn build_chat(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<ProviderBody>, DecodeError> {
        crate::dialect::refuse_legacy_functions(request)?;
        let body = build_body(request, target.model)?;
        post(request, target, "messages", body)
    }

    /// The request's body for `messages`, cut down to the members `count_tokens` takes (it
    /// refuses `max_tokens`, the sampling fields and the rest).
    fn build_count_tokens(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Option<Result<http::Request<Vec<u8>>, DecodeError>> {
        let counted = || {
            let body = build_body(request, target.model)?.into_vec();
            let mut body: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
                DecodeError::new(format!("cannot serialise the Anthropic request: {e}"), None)
            })?;
            body.retain(|key, _| COUNTED_MEMBERS.contains(&key.as_str()));
            let body = serde_json::to_vec(&body).map_err(|e| {
                DecodeError::new(format!("cannot serialise the Anthropic request: {e}"), None)
            })?;
            post(request, target, "messages/count_tokens", body)
        };
        Some(counted())
    }

    fn parse_count_tokens(&self, body: &[u8]) -> Result<u64, UpstreamErrorInfo> {
        #[derive(serde::Deserialize)]
        struct Counted {
            input_tokens: u64,
        }
        crate::json::from_body::<Counted>(body)
            .map(|c| c.input_tokens)
            .map_err(|e| malformed(format!("Anthropic token count is not valid: {e}")))
    }

    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> {
        let message = match super::reply::read(body) {
            Some(message) => message,
            None => crate::json::from_body(body)
                .map_err(|e| malformed(format!("Anthropic message is not valid: {e}")))?,
        };
        Ok(parse_message(message))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicStreamDecoder::new())
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
        classify_error(status, headers, body)
    }
}

/// The members of a `messages` body that `count_tokens` takes (the Messages API reference's
/// `MessageCountTokensParams`, the beta's included).
const COUNTED_MEMBERS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "cache_control",
    "output_config",
    "output_format",
    "context_management",
    "mcp_servers",
    "speed",
];

/// A `POST` of `body` to the API's `path` (after `/v1/`), with the key, the API version and an
/// Anthropic client's beta features (its version and betas go on as it sent them).
fn post<B>(
    request: &ChatRequest,
    target: &Target<'_>,
    path: &str,
    body: B,
) -> Result<http::Request<B>, DecodeError> {
    let base = target.base_url.trim_end_matches('/');
    // Accept a base URL configured with or without the `/v1` suffix.
    let url = if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    };
    let client_header = |key: &str| {
        request
            .extras
            .for_dialect(DialectId::Anthropic)
            .and_then(|fields| fields.get(key))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
    };
    let version = client_header(VERSION_HEADER)
        .unwrap_or_else(|| HeaderValue::from_static(ANTHROPIC_VERSION));
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(HeaderName::from_static("anthropic-version"), version);
    if let Some(beta) = client_header(BETA_HEADER) {
        builder = builder.header(HeaderName::from_static("anthropic-beta"), beta);
    }
    if let Some(key) = target.api_key {
        let mut value = HeaderValue::from_str(key).map_err(|_| {
            DecodeError::new(
                "the deployment's API key contains characters not allowed in an HTTP header",
                None,
            )
        })?;
        value.set_sensitive(true);
        builder = builder.header(HeaderName::from_static("x-api-key"), value);
    }
    builder
        .body(body)
        .map_err(|e| DecodeError::new(format!("cannot build a request for `{url}`: {e}"), None))
}

/// A request content block as the writer takes it: a text borrowed from the canonical request
/// (so that a long prompt read without escapes is spliced into the body, not copied), a tool
/// result holding such texts, or any other block in its wire form.
enum Block<'r> {
    Text {
        text: &'r Text,
        cache_control: Option<Value>,
        citations: Option<&'r Value>,
    },
    ToolResult {
        tool_use_id: &'r str,
        content: Vec<Block<'r>>,
        is_error: bool,
        cache_control: Option<Value>,
    },
    /// Written by hand, so that an inline image's base64 text is spliced in as a long text is.
    Image {
        source: &'r ImageSource,
        cache_control: Option<Value>,
    },
    /// Written by hand too, for a PDF's base64 text.
    Document {
        source: DocumentBlockSource<'r>,
        title: Option<&'r str>,
        context: Option<&'r str>,
        citations: Option<&'r Value>,
        cache_control: Option<Value>,
    },
    Wire(ContentBlockParam),
    /// A block an Anthropic client sent, kept whole (a search result, a document of its own
    /// chunks).
    Verbatim(&'r Value),
}

impl Block<'_> {
    /// The block's `cache_control` marker, for the block types that can carry one.
    fn cache_control_mut(&mut self) -> Option<&mut Option<Value>> {
        match self {
            Block::Text { cache_control, .. }
            | Block::ToolResult { cache_control, .. }
            | Block::Image { cache_control, .. }
            | Block::Document { cache_control, .. } => Some(cache_control),
            Block::Wire(block) => block.cache_control_mut(),
            Block::Verbatim(_) => None,
        }
    }
}

/// A `document` block's `source` as the Messages API takes it.
enum DocumentBlockSource<'r> {
    /// `Base64PDFSource`.
    Pdf(&'r Text),
    /// `URLPDFSource`.
    Url(&'r str),
    /// `PlainTextSource`: a text document's text, or an inline `text/plain` file's, decoded.
    Text(Text),
}

/// Why the Messages API cannot take a document (`None` when it can): its base64 source is a
/// PDF only (plain text inline is sent as a text source), and an OpenAI file id means nothing
/// to it.
fn document_refusal(source: &DocumentSource) -> Option<String> {
    match source {
        DocumentSource::Base64 { media_type, .. } => {
            let essence = media_type_essence(media_type);
            (essence != PDF && essence != "text/plain").then(|| {
                format!(
                    "Anthropic models take inline documents as PDF (application/pdf) or plain \
                     text (text/plain), not '{media_type}'"
                )
            })
        }
        DocumentSource::FileId(_) => Some(
            "Anthropic models cannot read an OpenAI file id; send the document's data \
             (file_data) instead"
                .to_owned(),
        ),
        DocumentSource::Url(_) | DocumentSource::Text { .. } => None,
    }
}

/// A document part's `document` block (its `cache_control`, if any, is set by the caller);
/// `path` names the part in errors.
fn document_block<'r>(
    source: &'r DocumentSource,
    title: &'r Option<String>,
    context: &'r Option<String>,
    extras: &'r Extras,
    path: &str,
) -> Result<Block<'r>, DecodeError> {
    Ok(Block::Document {
        source: document_block_source(source, path)?,
        title: title.as_deref(),
        context: context.as_deref(),
        citations: extras
            .for_dialect(DialectId::Anthropic)
            .and_then(|fields| fields.get(DOCUMENT_CITATIONS)),
        cache_control: None,
    })
}

/// A document's block source; an inline plain text file is decoded into a text source (the
/// Messages API has no base64 source for it).
fn document_block_source<'r>(
    source: &'r DocumentSource,
    path: &str,
) -> Result<DocumentBlockSource<'r>, DecodeError> {
    Ok(match source {
        DocumentSource::Base64 { media_type, data } if media_type_essence(media_type) == PDF => {
            DocumentBlockSource::Pdf(data)
        }
        // `document_refusal` let through no other inline type than plain text.
        DocumentSource::Base64 { data, .. } => {
            let text = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    DecodeError::new(
                        "a text/plain document's data must be base64 of UTF-8 text",
                        Some(path),
                    )
                })?;
            DocumentBlockSource::Text(Text::from(text))
        }
        DocumentSource::Url(url) => DocumentBlockSource::Url(url),
        DocumentSource::Text { data, .. } => DocumentBlockSource::Text(data.clone()),
        DocumentSource::FileId(_) => {
            return Err(DecodeError::new(
                document_refusal(source).unwrap_or_default(),
                Some(path),
            ));
        }
    })
}

/// Anthropic's web search server tool for a search another dialect asked for (OpenAI's hosted
/// `web_search`), in the version Anthropic documents for every Claude model that searches.
fn web_search_tool(search: &WebSearch) -> Map<String, Value> {
    let mut tool = Map::new();
    tool.insert("type".into(), Value::from("web_search_20250305"));
    tool.insert("name".into(), Value::from("web_search"));
    if !search.allowed_domains.is_empty() {
        tool.insert(
            "allowed_domains".into(),
            Value::from(search.allowed_domains.clone()),
        );
    }
    if let Some(location) = &search.user_location {
        tool.insert("user_location".into(), location.clone());
    }
    tool
}

fn build_body(request: &ChatRequest, model: &str) -> Result<ProviderBody, DecodeError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(DecodeError::new(
            "Anthropic models return one answer per request; n must be 1",
            Some("n"),
        ));
    }
    check_documents(request, document_refusal)?;
    let extras = request.extras.for_dialect(DialectId::Anthropic);
    let extra = |key: &str| extras.and_then(|fields| fields.get(key));

    let json_object_instruction = Text::from(JSON_OBJECT_INSTRUCTION);
    let mut system: Vec<Block> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Block>)> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role {
            // A system message an Anthropic client placed among its messages stays there (once
            // the conversation has begun), so the cached prefix before it holds.
            Role::System
                if !messages.is_empty()
                    && message
                        .extras
                        .for_dialect(DialectId::Anthropic)
                        .is_some_and(|fields| fields.contains_key(IN_CONVERSATION)) =>
            {
                "system"
            }
            Role::System | Role::Developer => {
                for part in &message.content {
                    if let ContentPart::Text {
                        text,
                        cache_control,
                        citations,
                    } = part
                        && !text.is_empty()
                    {
                        system.push(Block::Text {
                            text,
                            cache_control: cache_control.clone(),
                            citations: citations.as_ref(),
                        });
                    }
                }
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let blocks = message_blocks(message, i)?;
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last_role, last)) if *last_role == role => last.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    if request.response_format == Some(ResponseFormat::JsonObject) {
        system.push(Block::Text {
            text: &json_object_instruction,
            cache_control: None,
            citations: None,
        });
    }

    let mut tools: Vec<ToolUnion> = request
        .tools
        .iter()
        .map(|tool| {
            ToolUnion::Custom(wire::Tool {
                name: tool.name.clone(),
                description: tool.description.clone(),
                // Anthropic requires an object schema; OpenAI lets a tool omit its parameters.
                input_schema: match &tool.parameters {
                    Value::Null => serde_json::json!({"type": "object", "properties": {}}),
                    // A strict tool's schema is compiled, as a JSON output's is.
                    schema if tool.strict == Some(true) => {
                        super::schema::fitted(schema).unwrap_or_else(|| schema.clone())
                    }
                    schema => schema.clone(),
                },
                cache_control: tool.cache_control.clone(),
                strict: tool.strict,
            })
        })
        .collect();
    if let Some(Value::Array(server_tools)) = extra(SERVER_TOOLS) {
        tools.extend(server_tools.iter().filter_map(|tool| match tool {
            Value::Object(tool) => Some(ToolUnion::Server(tool.clone())),
            _ => None,
        }));
    }
    if let Some(search) = &request.web_search {
        tools.push(ToolUnion::Server(web_search_tool(search)));
    }

    let disable_parallel = (request.parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = match &request.tool_choice {
        Some(ToolChoice::Auto) => Some(wire::ToolChoice::Auto {
            disable_parallel_tool_use: disable_parallel,
        }),
        Some(ToolChoice::Required) => Some(wire::ToolChoice::Any {
            disable_parallel_tool_use: disable_parallel,
        }),
        Some(ToolChoice::Function(name)) => Some(wire::ToolChoice::Tool {
            name: name.clone(),
            disable_parallel_tool_use: disable_parallel,
        }),
        Some(ToolChoice::None) => Some(wire::ToolChoice::None),
        // The API refuses `tool_choice` without tools, so only say it when there are some.
        None if disable_parallel.is_some() && !tools.is_empty() => Some(wire::ToolChoice::Auto {
            disable_parallel_tool_use: disable_parallel,
        }),
        None => None,
    };

    let mut temperature = request.temperature.map(|t| t.min(1.0));
    let mut top_k = request.top_k;
    let forced_tool = matches!(
        request.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Function(_))
    );
    let budget = match &request.reasoning {
        // An Anthropic client's own `thinking` (adaptive, say) goes as it wrote it.
        _ if extra(THINKING).is_some() => None,
        // A client's own budget is left off after a tool turn without signed thinking, as an
        // effort's is: Claude refuses thinking there.
        Some(Reasoning {
            budget_tokens: Some(budget),
            ..
        }) if !continues_unthought_tool_turn(&request.messages) => Some(*budget),
        Some(Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }) if !forced_tool && !continues_unthought_tool_turn(&request.messages) => {
            effort_budget(effort)
                // The budget must stay below `max_tokens`, and at or above 1024.
                .map(|budget| match request.max_tokens {
                    Some(limit) => budget.min(limit.saturating_sub(1)),
                    None => budget,
                })
                .filter(|budget| *budget >= 1024)
                .inspect(|_| {
                    temperature = None;
                    top_k = None;
                })
        }
        _ => None,
    };
    // A defaulted `max_tokens` leaves the default room for the answer after the thinking.
    let max_tokens = match (request.max_tokens, budget) {
        (Some(limit), _) => limit,
        (None, Some(budget)) => budget.saturating_add(DEFAULT_MAX_TOKENS),
        (None, None) => DEFAULT_MAX_TOKENS,
    };
    // Claude 4.6 and later think adaptively, at the effort asked for (the budget above only
    // sizes `max_tokens`).
    let adaptive = match &request.reasoning {
        Some(Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }) if budget.is_some() && thinks_adaptively(model) => adaptive_effort(effort),
        _ => None,
    };
    let thinking = match adaptive {
        Some(_) => Some(ThinkingConfigParam::Other(Map::from_iter([(
            "type".to_owned(),
            Value::from("adaptive"),
        )]))),
        None => budget.map(|budget_tokens| ThinkingConfigParam::Enabled { budget_tokens }),
    };
    // An Anthropic client's own thinking is left off, as an effort's is, for a request that
    // goes on after a tool turn without its signed thinking: a turn another provider answered
    // (its reasoning, unsigned, is not sent), after a switch of model or a fallback.
    let thinking = thinking.or_else(|| match extra(THINKING) {
        Some(Value::Object(other)) if !continues_unthought_tool_turn(&request.messages) => {
            Some(ThinkingConfigParam::Other(other.clone()))
        }
        _ => None,
    });

    let mut output_config = OutputConfig::default();
    if let Some(Value::Object(rest)) = extra(OUTPUT_CONFIG) {
        output_config.rest = rest.clone();
    }
    if let Some(effort) = adaptive {
        output_config
            .rest
            .entry("effort")
            .or_insert_with(|| Value::from(effort));
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &request.response_format {
        output_config.format = Some(OutputFormat::JsonSchema {
            schema: super::schema::fitted(schema).unwrap_or_else(|| schema.clone()),
        });
    }

    // Written field by field in the order of the API reference's `MessageCreateParams`; the
    // texts are written (or spliced) straight from the canonical request, the small wire-typed
    // fields through serde. The fields set here win over same-named extras.
    let mut out = Vec::with_capacity(512);
    let mut splices = Splices::default();
    let mut body = ObjectWriter::open(&mut out);
    let written = (|| -> Result<(), serde_json::Error> {
        body.str("model", model);
        body.u64("max_tokens", u64::from(max_tokens))?;
        body.field("messages", |out| {
            json::write_array(out, &messages, |out, (role, blocks)| {
                let mut message = ObjectWriter::open(out);
                message.str("role", role);
                message.field("content", |out| write_blocks(out, &mut splices, blocks))?;
                message.close();
                Ok(())
            })
        })?;
        if !system.is_empty() {
            body.field("system", |out| write_blocks(out, &mut splices, &system))?;
        }
        if !tools.is_empty() {
            body.field("tools", |out| write_serialized(out, &tools))?;
        }
        if let Some(tool_choice) = &tool_choice {
            body.field("tool_choice", |out| write_serialized(out, tool_choice))?;
        }
        if !request.stop.is_empty() {
            body.field("stop_sequences", |out| write_serialized(out, &request.stop))?;
        }
        if let Some(temperature) = temperature {
            body.f64("temperature", temperature)?;
        }
        if let Some(top_p) = request.top_p {
            body.f64("top_p", top_p)?;
        }
        if let Some(top_k) = top_k {
            body.u64("top_k", u64::from(top_k))?;
        }
        if let Some(thinking) = &thinking {
            body.field("thinking", |out| write_serialized(out, thinking))?;
        }
        if let Some(user) = &request.user {
            body.field("metadata", |out| {
                let mut metadata = ObjectWriter::open(out);
                metadata.str("user_id", user);
                metadata.close();
                Ok(())
            })?;
        }
        if output_config != OutputConfig::default() {
            body.field("output_config", |out| write_serialized(out, &output_config))?;
        }
        if request.stream {
            body.raw("stream", b"true");
        }
        for (key, value) in extras.into_iter().flatten() {
            if !matches!(
                key.as_str(),
                SERVER_TOOLS
                    | THINKING
                    | OUTPUT_CONFIG
                    | BLOCK_CACHE_CONTROL
                    | BETA_HEADER
                    | VERSION_HEADER
            ) {
                body.value(key, value)?;
            }
        }
        Ok(())
    })();
    written.map_err(|e| {
        DecodeError::new(format!("cannot serialise the Anthropic request: {e}"), None)
    })?;
    body.close();
    Ok(splices.into_body(out))
}

/// Writes a message's (or the system prompt's, or a tool result's) blocks: a single text block
/// without `cache_control` as a plain string, else an array of blocks.
fn write_blocks(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    blocks: &[Block],
) -> Result<(), serde_json::Error> {
    if let [
        Block::Text {
            text,
            cache_control: None,
            citations: None,
        },
    ] = blocks
    {
        json::write_text_splicing(out, text, splices);
        return Ok(());
    }
    json::write_array(out, blocks, |out, block| {
        match block {
            Block::Text {
                text,
                cache_control,
                citations,
            } => {
                let mut object = ObjectWriter::open(out);
                object.str("type", "text");
                object.put("text", |out| json::write_text_splicing(out, text, splices));
                if let Some(cache_control) = cache_control {
                    object.value("cache_control", cache_control)?;
                }
                if let Some(citations) = citations {
                    object.value("citations", citations)?;
                }
                object.close();
            }
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
                cache_control,
            } => {
                let mut object = ObjectWriter::open(out);
                object.str("type", "tool_result");
                object.str("tool_use_id", tool_use_id);
                if !content.is_empty() {
                    object.field("content", |out| write_blocks(out, splices, content))?;
                }
                if *is_error {
                    object.raw("is_error", b"true");
                }
                if let Some(cache_control) = cache_control {
                    object.value("cache_control", cache_control)?;
                }
                object.close();
            }
            Block::Image {
                source,
                cache_control,
            } => {
                let mut object = ObjectWriter::open(out);
                object.str("type", "image");
                object.put("source", |out| {
                    let mut source_object = ObjectWriter::open(out);
                    match source {
                        ImageSource::Base64 { media_type, data } => {
                            base64_source(&mut source_object, media_type, data, splices);
                        }
                        ImageSource::Url(url) => url_source(&mut source_object, url),
                    }
                    source_object.close();
                });
                if let Some(cache_control) = cache_control {
                    object.value("cache_control", cache_control)?;
                }
                object.close();
            }
            Block::Document {
                source,
                title,
                context,
                citations,
                cache_control,
            } => {
                let mut object = ObjectWriter::open(out);
                object.str("type", "document");
                object.put("source", |out| {
                    let mut source_object = ObjectWriter::open(out);
                    match source {
                        DocumentBlockSource::Pdf(data) => {
                            base64_source(&mut source_object, PDF, data, splices);
                        }
                        DocumentBlockSource::Url(url) => url_source(&mut source_object, url),
                        DocumentBlockSource::Text(text) => {
                            source_object.str("type", "text");
                            source_object.str("media_type", "text/plain");
                            source_object.put("data", |out| {
                                json::write_text_splicing(out, text, splices);
                            });
                        }
                    }
                    source_object.close();
                });
                if let Some(title) = title {
                    object.str("title", title);
                }
                if let Some(context) = context {
                    object.str("context", context);
                }
                if let Some(citations) = citations {
                    object.value("citations", citations)?;
                }
                if let Some(cache_control) = cache_control {
                    object.value("cache_control", cache_control)?;
                }
                object.close();
            }
            Block::Wire(block) => write_serialized(out, block)?,
            Block::Verbatim(block) => json::write_value(out, block)?,
        }
        Ok(())
    })
}

/// A wire-typed value through serde, its strings then escaped by our writer (several times
/// faster than serde_json's for long ones; the same bytes).
fn write_serialized(
    out: &mut Vec<u8>,
    value: &impl serde::Serialize,
) -> Result<(), serde_json::Error> {
    json::write_value(out, &serde_json::to_value(value)?)
}

/// A `base64` source (an image's or a PDF's), its data borrowed and a long one spliced.
fn base64_source(
    o: &mut ObjectWriter<'_, '_>,
    media_type: &str,
    data: &Text,
    splices: &mut Splices,
) {
    o.str("type", "base64");
    o.str("media_type", media_type);
    o.put("data", |out| json::write_text_splicing(out, data, splices));
}

/// A `url` source, which the provider fetches.
fn url_source(o: &mut ObjectWriter<'_, '_>, url: &str) {
    o.str("type", "url");
    o.str("url", url);
}

/// The blocks of one non-system message, with `cache_control` markers an Anthropic client put
/// on blocks the canonical model has no field for.
fn message_blocks(message: &Message, i: usize) -> Result<Vec<Block<'_>>, DecodeError> {
    let extras = message.extras.for_dialect(DialectId::Anthropic);
    let cache_controls = extras
        .and_then(|fields| fields.get(BLOCK_CACHE_CONTROL))
        .and_then(Value::as_object);
    let whole_blocks = extras
        .and_then(|fields| fields.get(WHOLE_BLOCKS))
        .and_then(Value::as_object);
    let mut blocks = Vec::with_capacity(message.content.len());
    let mut tool_calls = 0;
    for (j, part) in message.content.iter().enumerate() {
        // A search result goes back as the client wrote it, not as its text.
        if let Some(block) = whole_blocks.and_then(|m| m.get(&j.to_string())) {
            blocks.push(Block::Verbatim(block));
            continue;
        }
        let mut block = match part {
            ContentPart::Text {
                text,
                cache_control,
                citations,
            } => {
                // The API rejects empty text blocks (OpenAI assistants often send `""`).
                if text.is_empty() {
                    continue;
                }
                Block::Text {
                    text,
                    cache_control: cache_control.clone(),
                    citations: citations.as_ref(),
                }
            }
            ContentPart::Image { source, .. } => Block::Image {
                source,
                cache_control: None,
            },
            ContentPart::Document {
                source,
                title,
                context,
                extras,
            } => document_block(
                source,
                title,
                context,
                extras,
                &format!("messages[{i}].content[{j}]"),
            )?,
            ContentPart::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                let path = format!("messages[{i}].tool_calls[{tool_calls}].function.arguments");
                tool_calls += 1;
                Block::Wire(ContentBlockParam::ToolUse {
                    id: id.clone(),
                    name: name.clone(),
                    input: tool_arguments(arguments, &path)?,
                    cache_control: None,
                })
            }
            ContentPart::ToolResult {
                tool_call_id,
                content,
                is_error,
                ..
            } => Block::ToolResult {
                tool_use_id: tool_call_id,
                content: tool_result_content(
                    content,
                    &format!("messages[{i}].content[{j}]"),
                    |k| whole_blocks.and_then(|m| m.get(&format!("{j}.{k}"))),
                )?,
                is_error: *is_error,
                cache_control: None,
            },
            ContentPart::Reasoning { text, signature } => match signature {
                Some(signature) => Block::Wire(ContentBlockParam::Thinking {
                    thinking: text.clone(),
                    signature: signature.clone(),
                }),
                None => continue,
            },
            ContentPart::RedactedReasoning { data } => {
                Block::Wire(ContentBlockParam::RedactedThinking { data: data.clone() })
            }
            ContentPart::ServerTool { block } => Block::Verbatim(block),
        };
        if let Some(marker) = cache_controls.and_then(|m| m.get(&j.to_string()))
            && let Some(slot) = block.cache_control_mut()
            && slot.is_none()
        {
            *slot = Some(marker.clone());
        }
        blocks.push(block);
    }
    Ok(blocks)
}

/// Tool-call arguments (JSON text) as the `input` object. Empty arguments mean no arguments;
/// anything else that is not a JSON object is refused rather than guessed at.
fn tool_arguments(arguments: &str, path: &str) -> Result<Value, DecodeError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Ok(Value::Object(object)),
        Ok(_) => Err(DecodeError::new(
            "tool call arguments must be a JSON object",
            Some(path),
        )),
        Err(e) => Err(DecodeError::new(
            format!("tool call arguments are not valid JSON: {e}"),
            Some(path),
        )),
    }
}

/// A tool result's text and image parts; the API takes no other kind there.
fn tool_result_content<'r>(
    content: &'r [ContentPart],
    path: &str,
    search_result: impl Fn(usize) -> Option<&'r Value>,
) -> Result<Vec<Block<'r>>, DecodeError> {
    let mut blocks = Vec::with_capacity(content.len());
    for (k, part) in content.iter().enumerate() {
        if let Some(block) = search_result(k) {
            blocks.push(Block::Verbatim(block));
            continue;
        }
        match part {
            ContentPart::Text {
                text,
                cache_control,
                citations,
            } if !text.is_empty() => blocks.push(Block::Text {
                text,
                cache_control: cache_control.clone(),
                citations: citations.as_ref(),
            }),
            ContentPart::Image { source, .. } => blocks.push(Block::Image {
                source,
                cache_control: None,
            }),
            ContentPart::Document {
                source,
                title,
                context,
                extras,
            } => blocks.push(document_block(
                source,
                title,
                context,
                extras,
                &format!("{path}.content[{k}]"),
            )?),
            _ => {}
        }
    }
    Ok(blocks)
}

/// Whether a text block's `citations` cite anything (the API writes `null` for a block that
/// does not; an empty list says no more).
fn cited(citations: &Value) -> bool {
    citations.as_array().is_none_or(|list| !list.is_empty())
}

fn parse_message(message: wire::Message) -> ChatResponse {
    let mut content = Vec::with_capacity(message.content.len());
    for block in message.content {
        if let Some(block) = block.server_tool() {
            content.push(ContentPart::ServerTool { block });
            continue;
        }
        match block {
            ContentBlock::Text { text, citations } => content.push(ContentPart::Text {
                text: text.into(),
                cache_control: None,
                citations: citations.filter(cited),
            }),
            ContentBlock::ToolUse { id, name, input } => content.push(ContentPart::ToolCall {
                id,
                name,
                arguments: match input {
                    Value::Null => "{}".to_owned(),
                    input => input.to_string(),
                },
                extras: Extras::default(),
            }),
            ContentBlock::Thinking {
                thinking,
                signature,
            } => content.push(ContentPart::Reasoning {
                text: thinking,
                signature: (!signature.is_empty()).then_some(signature),
            }),
            ContentBlock::RedactedThinking { data } => {
                content.push(ContentPart::RedactedReasoning { data });
            }
            // Server tools' blocks were taken above; block types added later have no form.
            _ => {}
        }
    }
    ChatResponse {
        finish_reason: wire::finish_reason(
            message.stop_reason.as_deref(),
            message.stop_sequence.as_deref(),
        ),
        id: message.id,
        model: message.model,
        // The Messages API reports no creation time; the gateway stamps its own.
        created: 0,
        content,
        usage: message.usage.map(wire::Usage::to_canonical),
        extras: if message.rest.is_empty() {
            Extras::default()
        } else {
            Extras::new(DialectId::Anthropic, message.rest)
        },
        more_choices: Vec::new(),
    }
}

fn classify_error(status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
    let retry_after_secs = retry_after_secs(headers);
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(ErrorResponse { error, .. }) => UpstreamErrorInfo {
            class: wire::error_class(&error.kind, &error.message)
                .unwrap_or_else(|| ErrorClass::from_status(status)),
            status: Some(status),
            message: if error.message.is_empty() {
                format!("Anthropic answered HTTP {status} ({})", error.kind)
            } else {
                error.message
            },
            provider_code: Some(error.kind),
            retry_after_secs,
            param: None,
        },
        Err(_) => UpstreamErrorInfo {
            class: ErrorClass::from_status(status),
            status: Some(status),
            message: format!("Anthropic answered HTTP {status} with an unreadable error body"),
            provider_code: None,
            retry_after_secs,
            param: None,
        },
    }
}

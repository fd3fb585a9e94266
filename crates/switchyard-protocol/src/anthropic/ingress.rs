//! The client-facing side of the Anthropic dialect (`POST /v1/messages`, as the official SDKs and
//! Claude Code send it): decode a request into the canonical model, encode a complete answer
//! and an error body. The stream encoder lives in `stream.rs`.
//!
//! Lossless same-dialect round trips: unknown top-level fields go to the request's extras, and
//! so do the parts of known fields the canonical model cannot hold — server tools under
//! `tools`, non-`enabled` thinking configurations under `thinking`, unmodelled `output_config`
//! members under `output_config`. `cache_control` markers on blocks whose canonical part has no
//! such field (images, documents, tool uses, tool results) are kept in the message's extras
//! under `cache_control`, keyed by part index; a document's `citations` setting is kept in its
//! part's extras. A `search_result` block becomes a text part (its title, source and texts, for
//! providers without such a block), and a document of custom content (`content` source) a
//! plain-text document of its texts; both are kept whole under `blocks`, keyed by part index.
//! The provider side puts all of these back.
//!
//! Provider data on tool calls (a Gemini thought signature in the call's extras) has no place
//! in a `tool_use` block and is left out of answers.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::provider::effort_budget;
use super::stream::AnthropicStreamEncoder;
use super::wire::{
    self, ContentBlock, ContentBlockParam, ErrorObject, ErrorResponse, MessageCreateParams,
    MessageParam, OutputConfig, OutputFormat, TextOrBlocks, ThinkingConfigParam, ToolUnion,
};
use crate::DialectId;
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, DocumentSource, Extras, ImageSource, Message,
    Reasoning, ResponseFormat, Role, Tool, ToolChoice,
};
use crate::dialect::{EncodeCtx, IngressDialect, StreamEncoder};
use crate::error::{ClientError, DecodeError, ErrorKind};
use crate::gemini;
use crate::json;

/// Extras key of a message's `cache_control` markers on blocks without a canonical field.
pub(crate) const BLOCK_CACHE_CONTROL: &str = "cache_control";
/// Extras key of a message's blocks that only Anthropic takes as they are (search results,
/// documents of custom content), kept whole and keyed by part index (`3`, or `3.1` for the
/// second block of part 3's tool result); the part is what other providers get instead.
pub(crate) const WHOLE_BLOCKS: &str = "blocks";
/// Extras key marking a system message the client placed among its messages (the Messages
/// API's mid-conversation system messages): an Anthropic provider writes it where it stands,
/// the others' formats take system instructions only ahead of the conversation.
pub(crate) const IN_CONVERSATION: &str = "in_conversation";
/// Extras key of a document block's `citations` setting, in its part's extras.
pub(crate) const DOCUMENT_CITATIONS: &str = "citations";
/// Extras keys of the client's `anthropic-beta` and `anthropic-version` headers, which an
/// Anthropic provider gets unchanged as headers (never as body fields: none has a hyphen).
pub(crate) const BETA_HEADER: &str = "anthropic-beta";
pub(crate) const VERSION_HEADER: &str = "anthropic-version";
/// Extras key of server tools, appended after the client tools on the way out.
pub(crate) const SERVER_TOOLS: &str = "tools";
/// Extras key of a thinking configuration other than `enabled`.
pub(crate) const THINKING: &str = "thinking";
/// Extras key of `output_config` members other than `format`.
pub(crate) const OUTPUT_CONFIG: &str = "output_config";

/// The effort adaptive thinking runs at: the request's `output_config.effort`, `high` (the
/// Messages API's default) when it gives none.
fn adaptive_effort_of(config: Option<&OutputConfig>) -> &str {
    config
        .and_then(|c| c.rest.get("effort"))
        .and_then(Value::as_str)
        .unwrap_or("high")
}

/// The Anthropic Messages API as the gateway serves it to clients.
pub struct AnthropicIngress;

impl IngressDialect for AnthropicIngress {
    fn id(&self) -> DialectId {
        DialectId::Anthropic
    }

    fn decode_chat(&self, body: &Bytes) -> Result<ChatRequest, DecodeError> {
        decode_chat(body)
    }

    /// Claude Code and the SDKs turn features on with `anthropic-beta` (a body field such a
    /// feature adds is refused without it); `anthropic-version` names the API version asked
    /// for. Several `anthropic-beta` lines are joined as one list.
    ///
    /// The version this gateway sends anyway (the SDKs' and Claude Code's) is not kept: every
    /// Anthropic client sends it, and keeping it cost each request a few allocations.
    fn keep_headers(&self, headers: &http::HeaderMap, request: &mut ChatRequest) {
        for name in [BETA_HEADER, VERSION_HEADER] {
            let mut values = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty());
            let Some(first) = values.next() else {
                continue;
            };
            let second = values.next();
            if name == VERSION_HEADER && first == wire::ANTHROPIC_VERSION && second.is_none() {
                continue;
            }
            let mut joined = first.to_owned();
            for value in second.into_iter().chain(values) {
                joined.push(',');
                joined.push_str(value);
            }
            request
                .extras
                .insert(DialectId::Anthropic, name, Value::String(joined));
        }
    }

    fn encode_chat(&self, response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
        encode_chat(response, ctx)
    }

    fn stream_encoder(&self, ctx: EncodeCtx) -> Box<dyn StreamEncoder> {
        Box::new(AnthropicStreamEncoder::new(ctx))
    }

    fn encode_error(&self, error: &ClientError) -> Vec<u8> {
        encode_error(error)
    }
}

fn missing(field: &str) -> DecodeError {
    DecodeError::new(format!("{field}: field required"), Some(field))
}

fn decode_chat(body: &Bytes) -> Result<ChatRequest, DecodeError> {
    let mut request = match super::common::decode(body) {
        Some(request) => {
            check_ranges(&request)?;
            request
        }
        None => decode_chat_full(body)?,
    };
    // A Gemini call's signature, written as a redacted thinking block before the call, is the
    // call's again.
    gemini::attach_carried_signatures(&mut request.messages);
    Ok(request)
}

/// What the Messages API itself refuses, refused here as it words it, whichever provider
/// would have been asked: a temperature outside 0 to 1 (other providers would take up to 2,
/// and a Claude deployment would otherwise have it cut to 1). An empty conversation is not
/// refused here: a configuration's prompt template may supply it.
fn check_ranges(request: &ChatRequest) -> Result<(), DecodeError> {
    if let Some(t) = request.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(DecodeError::new(
            format!("temperature: Input should be less than or equal to 1 and at least 0, got {t}"),
            Some("temperature"),
        ));
    }
    Ok(())
}

/// Every form of the request, each error with its path.
pub(super) fn decode_chat_full(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let params: MessageCreateParams = DecodeError::parse(body)?;
    let model = params.model.ok_or_else(|| missing("model"))?;
    let max_tokens = params.max_tokens.ok_or_else(|| missing("max_tokens"))?;
    let wire_messages = params.messages.ok_or_else(|| missing("messages"))?;
    let mut extras = params.rest;

    let mut messages = Vec::with_capacity(wire_messages.len() + 1);
    if let Some(system) = params.system {
        let content = decode_system(system, "system")?;
        if !content.is_empty() {
            messages.push(Message {
                role: Role::System,
                content,
                name: None,
                extras: Extras::default(),
            });
        }
    }
    for (i, message) in wire_messages.into_iter().enumerate() {
        messages.push(decode_message(message, i)?);
    }

    let typed = decode_typed(
        TypedParams {
            tools: params.tools,
            tool_choice: params.tool_choice,
            thinking: params.thinking,
            output_config: params.output_config,
            max_tokens,
        },
        &mut extras,
    );

    let request = ChatRequest {
        model,
        messages,
        tools: typed.tools,
        tool_choice: typed.tool_choice,
        parallel_tool_calls: typed.parallel_tool_calls,
        response_format: typed.response_format,
        max_tokens: Some(max_tokens),
        temperature: params.temperature,
        top_p: params.top_p,
        top_k: params.top_k,
        stop: params.stop_sequences.unwrap_or_default(),
        reasoning: typed.reasoning,
        user: params.metadata.and_then(|m| m.user_id),
        stream: params.stream.unwrap_or(false),
        // Anthropic streams always carry usage (`message_start` and `message_delta`).
        include_usage: true,
        extras: if extras.is_empty() {
            Extras::default()
        } else {
            Extras::new(DialectId::Anthropic, extras)
        },
        ..ChatRequest::default()
    };
    check_ranges(&request)?;
    Ok(request)
}

/// The request's typed fields beyond messages: tools, tool choice, thinking and output
/// configuration, as the wire has them.
pub(super) struct TypedParams {
    pub tools: Option<Vec<ToolUnion>>,
    pub tool_choice: Option<wire::ToolChoice>,
    pub thinking: Option<ThinkingConfigParam>,
    pub output_config: Option<OutputConfig>,
    /// The request's `max_tokens`, which a thinking budget stays below.
    pub max_tokens: u32,
}

/// What [`TypedParams`] become in the canonical request.
pub(super) struct Typed {
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub reasoning: Option<Reasoning>,
    pub response_format: Option<ResponseFormat>,
}

/// The canonical form of the typed fields; what the canonical model cannot hold (server tools,
/// other thinking configurations, unmodelled output configuration) goes to `extras`.
pub(super) fn decode_typed(params: TypedParams, extras: &mut Map<String, Value>) -> Typed {
    let mut tools = Vec::new();
    let mut server_tools = Vec::new();
    for tool in params.tools.unwrap_or_default() {
        match tool {
            ToolUnion::Custom(tool) => tools.push(Tool {
                name: tool.name,
                description: tool.description,
                parameters: tool.input_schema,
                strict: tool.strict,
                cache_control: tool.cache_control,
            }),
            ToolUnion::Server(tool) => server_tools.push(Value::Object(tool)),
        }
    }
    if !server_tools.is_empty() {
        extras.insert(SERVER_TOOLS.into(), Value::Array(server_tools));
    }

    let (tool_choice, parallel_tool_calls) = match params.tool_choice {
        None => (None, None),
        Some(choice) => {
            let (choice, disable) = match choice {
                wire::ToolChoice::Auto {
                    disable_parallel_tool_use,
                } => (ToolChoice::Auto, disable_parallel_tool_use),
                wire::ToolChoice::Any {
                    disable_parallel_tool_use,
                } => (ToolChoice::Required, disable_parallel_tool_use),
                wire::ToolChoice::Tool {
                    name,
                    disable_parallel_tool_use,
                } => (ToolChoice::Function(name), disable_parallel_tool_use),
                wire::ToolChoice::None => (ToolChoice::None, None),
            };
            (Some(choice), disable.map(|disable| !disable))
        }
    };

    let reasoning = match params.thinking {
        Some(ThinkingConfigParam::Enabled { budget_tokens }) => Some(Reasoning {
            effort: None,
            budget_tokens: Some(budget_tokens),
        }),
        Some(ThinkingConfigParam::Disabled) | None => None,
        Some(ThinkingConfigParam::Other(other)) => {
            // Adaptive thinking (Claude 4.6 and later) is thinking up to its effort's budget for
            // other providers, as a budget of the client's own would be, kept below
            // `max_tokens` as Claude's budgets must be (none when under its least, 1024);
            // Claude gets the client's own `thinking` from the extras.
            let adaptive = other.get("type").and_then(Value::as_str) == Some("adaptive");
            extras.insert(THINKING.into(), Value::Object(other));
            let budget = effort_budget(adaptive_effort_of(params.output_config.as_ref()))
                .map(|budget| budget.min(params.max_tokens.saturating_sub(1)))
                .filter(|budget| *budget >= 1024);
            budget.filter(|_| adaptive).map(|budget| Reasoning {
                effort: None,
                budget_tokens: Some(budget),
            })
        }
    };

    let mut response_format = None;
    if let Some(config) = params.output_config {
        if let Some(OutputFormat::JsonSchema { schema }) = config.format {
            response_format = Some(ResponseFormat::JsonSchema {
                // Anthropic schemas carry no name; OpenAI requires one, so give a neutral one.
                name: "response".into(),
                description: None,
                schema,
                strict: Some(true),
            });
        }
        if !config.rest.is_empty() {
            extras.insert(OUTPUT_CONFIG.into(), Value::Object(config.rest));
        }
    }

    Typed {
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning,
        response_format,
    }
}

/// The top-level `system` (`path` "system") or a system message's content (its `content`'s
/// path): a string or text blocks.
fn decode_system(
    system: TextOrBlocks<ContentBlockParam>,
    path: &str,
) -> Result<Vec<ContentPart>, DecodeError> {
    match system {
        TextOrBlocks::Text(text) if text.is_empty() => Ok(Vec::new()),
        TextOrBlocks::Text(text) => Ok(vec![ContentPart::text(text)]),
        TextOrBlocks::Blocks(blocks) => blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| match block {
                ContentBlockParam::Text {
                    text,
                    cache_control,
                    citations,
                } => Ok(ContentPart::Text {
                    text: text.into(),
                    cache_control,
                    citations,
                }),
                _ => Err(DecodeError::new(
                    "system blocks must be text blocks",
                    Some(&format!("{path}[{i}].type")),
                )),
            })
            .collect(),
    }
}

fn decode_message(message: MessageParam, i: usize) -> Result<Message, DecodeError> {
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => {
            let content = decode_system(message.content, &format!("messages[{i}].content"))?;
            let mut fields = Map::new();
            fields.insert(IN_CONVERSATION.into(), Value::Bool(true));
            return Ok(Message {
                role: Role::System,
                content,
                name: None,
                extras: Extras::new(DialectId::Anthropic, fields),
            });
        }
        other => {
            return Err(DecodeError::new(
                format!(
                    "messages: unexpected role \"{other}\"; expected \"user\", \"assistant\" or \"system\""
                ),
                Some(&format!("messages[{i}].role")),
            ));
        }
    };
    let blocks = match message.content {
        TextOrBlocks::Text(text) => vec![ContentBlockParam::Text {
            text,
            cache_control: None,
            citations: None,
        }],
        TextOrBlocks::Blocks(blocks) => blocks,
    };
    let mut content = Vec::with_capacity(blocks.len());
    let mut cache_controls = Map::new();
    let mut whole_blocks = Map::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let kind = match block {
            ContentBlockParam::Document { .. } => Some("document"),
            ContentBlockParam::SearchResult { .. } => Some("search_result"),
            _ => None,
        };
        if let (Some(kind), false) = (kind, role == Role::User) {
            return Err(DecodeError::new(
                format!("{kind} blocks belong to user messages"),
                Some(&format!("messages[{i}].content[{j}].type")),
            ));
        }
        if block.is_server_tool() && role != Role::Assistant {
            let kind = serde_json::to_value(&block)
                .ok()
                .and_then(|b| b["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(DecodeError::new(
                format!("{kind} blocks belong to assistant messages: the provider wrote them"),
                Some(&format!("messages[{i}].content[{j}].type")),
            ));
        }
        let (part, cache_control) = decode_block(
            block,
            &format!("messages[{i}].content[{j}]"),
            &j.to_string(),
            &mut whole_blocks,
        )?;
        if let Some(cache_control) = cache_control {
            cache_controls.insert(j.to_string(), cache_control);
        }
        content.push(part);
    }
    let mut fields = Map::new();
    if !cache_controls.is_empty() {
        fields.insert(BLOCK_CACHE_CONTROL.into(), Value::Object(cache_controls));
    }
    if !whole_blocks.is_empty() {
        fields.insert(WHOLE_BLOCKS.into(), Value::Object(whole_blocks));
    }
    let extras = if fields.is_empty() {
        Extras::default()
    } else {
        Extras::new(DialectId::Anthropic, fields)
    };
    Ok(Message {
        role,
        content,
        name: None,
        extras,
    })
}

/// One request block as a canonical part, plus a `cache_control` the part cannot carry. A
/// search result or a custom-content document is also kept whole in `whole_blocks`, under
/// `key`.
fn decode_block(
    block: ContentBlockParam,
    path: &str,
    key: &str,
    whole_blocks: &mut Map<String, Value>,
) -> Result<(ContentPart, Option<Value>), DecodeError> {
    if let Some(part) = stand_in(&block, path)? {
        // A wire block of strings and JSON values always serialises.
        if let Ok(whole) = serde_json::to_value(&block) {
            whole_blocks.insert(key.to_owned(), whole);
        }
        return Ok((part, None));
    }
    Ok(match block {
        ContentBlockParam::Text {
            text,
            cache_control,
            citations,
        } => (
            ContentPart::Text {
                text: text.into(),
                cache_control,
                citations,
            },
            None,
        ),
        ContentBlockParam::Image {
            source,
            cache_control,
        } => (
            ContentPart::Image {
                source: image_source(source),
                detail: None,
            },
            cache_control,
        ),
        ContentBlockParam::Document {
            source,
            title,
            context,
            citations,
            cache_control,
        } => (
            document_part(document_source(source), title, context, citations),
            cache_control,
        ),
        ContentBlockParam::ToolUse {
            id,
            name,
            input,
            cache_control,
        } => (tool_use_part(id, name, &input), cache_control),
        ContentBlockParam::ToolResult {
            tool_use_id,
            content,
            is_error,
            cache_control,
        } => {
            let content = match content {
                None => Vec::new(),
                Some(TextOrBlocks::Text(text)) => vec![ContentPart::text(text)],
                Some(TextOrBlocks::Blocks(blocks)) => {
                    let mut parts = Vec::with_capacity(blocks.len());
                    for (k, block) in blocks.into_iter().enumerate() {
                        let inner = format!("{path}.content[{k}]");
                        match block {
                            ContentBlockParam::Text { .. }
                            | ContentBlockParam::Image { .. }
                            | ContentBlockParam::Document { .. }
                            | ContentBlockParam::SearchResult { .. } => {
                                let key = format!("{key}.{k}");
                                parts.push(decode_block(block, &inner, &key, whole_blocks)?.0);
                            }
                            _ => {
                                return Err(DecodeError::new(
                                    "tool_result content may only hold text, image, document \
                                     and search_result blocks",
                                    Some(&format!("{inner}.type")),
                                ));
                            }
                        }
                    }
                    parts
                }
            };
            (
                ContentPart::ToolResult {
                    tool_call_id: tool_use_id,
                    name: None,
                    content,
                    is_error: is_error.unwrap_or(false),
                },
                cache_control,
            )
        }
        ContentBlockParam::Thinking {
            thinking,
            signature,
        } => (
            ContentPart::Reasoning {
                text: thinking,
                signature: (!signature.is_empty()).then_some(signature),
            },
            None,
        ),
        ContentBlockParam::RedactedThinking { data } => {
            (ContentPart::RedactedReasoning { data }, None)
        }
        // Never here: `stand_in` took every search result above.
        ContentBlockParam::SearchResult { .. } => {
            return Err(DecodeError::new(
                "a search_result block could not be read",
                Some(&format!("{path}.type")),
            ));
        }
        // Server tools' calls and results: every other block type is named above. A wire
        // block of strings and JSON values always serialises.
        server_tool => (
            ContentPart::ServerTool {
                block: serde_json::to_value(&server_tool).unwrap_or_default(),
            },
            None,
        ),
    })
}

/// A `tool_use` block's part: its input as the call's arguments text.
pub(super) fn tool_use_part(id: String, name: String, input: &Value) -> ContentPart {
    ContentPart::ToolCall {
        id,
        name,
        arguments: input.to_string(),
        extras: Extras::default(),
    }
}

/// What other providers get for a block only Anthropic takes as it is: a search result as a
/// text part (its title, source and texts), a document of custom content as a plain-text
/// document of its texts; `None` for any other block.
fn stand_in(block: &ContentBlockParam, path: &str) -> Result<Option<ContentPart>, DecodeError> {
    Ok(Some(match block {
        ContentBlockParam::SearchResult {
            source,
            title,
            content,
            ..
        } => {
            let mut text = format!("{title}\n{source}");
            for (k, block) in content.iter().enumerate() {
                let ContentBlockParam::Text { text: t, .. } = block else {
                    return Err(DecodeError::new(
                        "search_result content may only hold text blocks",
                        Some(&format!("{path}.content[{k}].type")),
                    ));
                };
                text.push_str("\n\n");
                text.push_str(t);
            }
            ContentPart::text(text)
        }
        ContentBlockParam::Document {
            source: wire::DocumentSource::Content { content },
            title,
            context,
            citations,
            ..
        } => {
            let data = content_text(content).map_err(|k| {
                DecodeError::new(
                    "a document's content may only hold text blocks",
                    Some(&format!("{path}.source.content[{k}].type")),
                )
            })?;
            document_part(
                DocumentSource::Text {
                    media_type: "text/plain".into(),
                    data: data.into(),
                },
                title.clone(),
                context.clone(),
                citations.clone(),
            )
        }
        _ => return Ok(None),
    }))
}

/// A `document` block's part. `citations` only means something to Anthropic, so it rides in
/// the part's extras; `cache_control` goes where an image's does (the message's extras).
pub(super) fn document_part(
    source: DocumentSource,
    title: Option<String>,
    context: Option<String>,
    citations: Option<Value>,
) -> ContentPart {
    let extras = match citations {
        Some(citations) => {
            let mut fields = Map::new();
            fields.insert(DOCUMENT_CITATIONS.into(), citations);
            Extras::new(DialectId::Anthropic, fields)
        }
        None => Extras::default(),
    };
    ContentPart::Document {
        source,
        title,
        context,
        extras,
    }
}

fn document_source(source: wire::DocumentSource) -> DocumentSource {
    match source {
        wire::DocumentSource::Base64 { media_type, data } => DocumentSource::Base64 {
            media_type,
            data: data.into(),
        },
        wire::DocumentSource::Url { url } => DocumentSource::Url(url),
        wire::DocumentSource::Text { media_type, data } => DocumentSource::Text {
            media_type,
            data: data.into(),
        },
        wire::DocumentSource::Content { content } => DocumentSource::Text {
            media_type: "text/plain".into(),
            data: content_text(&content).unwrap_or_default().into(),
        },
    }
}

/// A custom-content document's texts, one block a line; the index of the first block that is
/// not text, if any.
fn content_text(content: &TextOrBlocks<ContentBlockParam>) -> Result<String, usize> {
    match content {
        TextOrBlocks::Text(text) => Ok(text.clone()),
        TextOrBlocks::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, block) in blocks.iter().enumerate() {
                let ContentBlockParam::Text { text, .. } = block else {
                    return Err(k);
                };
                texts.push(text.as_str());
            }
            Ok(texts.join("\n"))
        }
    }
}

fn image_source(source: wire::ImageSource) -> ImageSource {
    match source {
        wire::ImageSource::Base64 { media_type, data } => ImageSource::Base64 {
            media_type,
            data: data.into(),
        },
        wire::ImageSource::Url { url } => ImageSource::Url(url),
    }
}

/// Anthropic message ids start with `msg_`; gateway ids get the prefix.
pub(crate) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

/// Tool-call arguments as the `input` object Anthropic clients expect. Arguments that are not
/// a JSON object (a model that emitted broken JSON through another provider) become `{}`: the
/// client's tool then reports the missing parameters to the model, which can retry, whereas a
/// non-object `input` would break the client's own parsing.
pub(crate) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => Value::Object(Map::new()),
    }
}

/// The client's `Message`, written member by member straight from the canonical response (no
/// wire structs, no serializer): the keys are constant bytes and the strings go through
/// [`json::write_str`]. The bytes are those serde writes from `wire::Message`, which the tests
/// hold it to (`encode_chat_with_serde`).
fn encode_chat(response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
    // The answer's text plus room for the members around it.
    json::written(response.encoded_len_hint() + 384, |out| {
        write_message(out, response, ctx)
    })
}

fn write_message(
    out: &mut Vec<u8>,
    response: &ChatResponse,
    ctx: &EncodeCtx,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"id\":\"");
    if !ctx.id.starts_with("msg_") {
        out.extend_from_slice(b"msg_");
    }
    json::write_str_content(out, &ctx.id);
    out.extend_from_slice(b"\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[");
    let mut first = true;
    for part in &response.content {
        write_block(out, part, &mut first)?;
    }
    out.extend_from_slice(b"],\"model\":");
    json::write_str(out, &ctx.model);
    let called_tools = calls_tools(response);
    let (stop_reason, stop_sequence) =
        wire::turn_stop_reason(&response.finish_reason, called_tools);
    out.extend_from_slice(b",\"stop_reason\":");
    json::write_str(out, stop_reason);
    out.extend_from_slice(b",\"stop_sequence\":");
    json::write_optional_str(out, stop_sequence);
    // Anthropic clients expect `usage` on every message: estimated when the provider said
    // none.
    out.extend_from_slice(b",\"usage\":");
    wire::Usage::full(&usage_of(response, ctx)).write(out);
    json::write_members(
        out,
        response
            .extras
            .for_dialect(DialectId::Anthropic)
            .into_iter()
            .flatten(),
    )?;
    out.push(b'}');
    Ok(())
}

/// Writes the answer's block(s) for `part`, each after a comma but the message's first.
fn write_block(
    out: &mut Vec<u8>,
    part: &ContentPart,
    first: &mut bool,
) -> Result<(), serde_json::Error> {
    let mut open = |out: &mut Vec<u8>, head: &[u8]| {
        if !std::mem::take(first) {
            out.push(b',');
        }
        out.extend_from_slice(head);
    };
    match part {
        ContentPart::Reasoning { text, signature } => {
            open(out, b"{\"type\":\"thinking\",\"thinking\":");
            json::write_str(out, text);
            out.extend_from_slice(b",\"signature\":");
            json::write_str(out, signature.as_deref().unwrap_or_default());
            out.push(b'}');
        }
        ContentPart::RedactedReasoning { data } => {
            open(out, b"{\"type\":\"redacted_thinking\",\"data\":");
            json::write_str(out, data);
            out.push(b'}');
        }
        ContentPart::Text {
            text, citations, ..
        } => {
            open(out, b"{\"type\":\"text\",\"text\":");
            json::write_str(out, text.as_str());
            if let Some(citations) = citations {
                out.extend_from_slice(b",\"citations\":");
                json::write_value(out, citations)?;
            }
            out.push(b'}');
        }
        ContentPart::ToolCall {
            id,
            name,
            arguments,
            extras,
        } => {
            // A Gemini call's signature, which a tool_use block has no place for.
            if let Some(signature) = gemini::tool_call_signature(extras) {
                open(out, b"{\"type\":\"redacted_thinking\",\"data\":");
                json::write_str(out, &gemini::carry_signature(signature));
                out.push(b'}');
            }
            open(out, b"{\"type\":\"tool_use\",\"id\":");
            json::write_str(out, id);
            out.extend_from_slice(b",\"name\":");
            json::write_str(out, name);
            out.extend_from_slice(b",\"input\":");
            json::write_value(out, &tool_input(arguments))?;
            out.push(b'}');
        }
        // Rare and of many kinds: the wire block, written by serde.
        ContentPart::ServerTool { block } => {
            if let Ok(block) = serde_json::from_value::<ContentBlock>(block.clone()) {
                open(out, b"");
                serde_json::to_writer(&mut *out, &block)?;
            }
        }
        // Output never holds images, documents or tool results; nothing to show for them.
        ContentPart::Image { .. }
        | ContentPart::Document { .. }
        | ContentPart::ToolResult { .. } => {}
    }
    Ok(())
}

/// The same answer as serde writes it from `wire::Message`: the reference for the tests.
#[cfg(test)]
pub(super) fn encode_chat_with_serde(response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
    let called_tools = calls_tools(response);
    let (stop_reason, stop_sequence) =
        wire::turn_stop_reason(&response.finish_reason, called_tools);
    let message = wire::Message {
        id: message_id(&ctx.id),
        kind: "message".into(),
        role: "assistant".into(),
        content: response_blocks(&response.content),
        model: ctx.model.clone(),
        stop_reason: Some(stop_reason.to_owned()),
        stop_sequence: stop_sequence.map(str::to_owned),
        usage: Some(wire::Usage::full(&usage_of(response, ctx))),
        rest: response
            .extras
            .for_dialect(DialectId::Anthropic)
            .cloned()
            .unwrap_or_default(),
    };
    serde_json::to_vec(&message).unwrap()
}

/// The wire blocks of an answer's content, for [`encode_chat_with_serde`].
#[cfg(test)]
fn response_blocks(content: &[ContentPart]) -> Vec<ContentBlock> {
    let mut blocks = Vec::with_capacity(content.len());
    for part in content {
        match part {
            ContentPart::Reasoning { text, signature } => blocks.push(ContentBlock::Thinking {
                thinking: text.clone(),
                signature: signature.clone().unwrap_or_default(),
            }),
            ContentPart::RedactedReasoning { data } => {
                blocks.push(ContentBlock::RedactedThinking { data: data.clone() });
            }
            ContentPart::Text {
                text, citations, ..
            } => blocks.push(ContentBlock::Text {
                text: text.as_str().to_owned(),
                citations: citations.clone(),
            }),
            ContentPart::ToolCall {
                id,
                name,
                arguments,
                extras,
            } => {
                if let Some(signature) = gemini::tool_call_signature(extras) {
                    blocks.push(ContentBlock::RedactedThinking {
                        data: gemini::carry_signature(signature),
                    });
                }
                blocks.push(ContentBlock::ToolUse {
                    id: id.clone(),
                    name: name.clone(),
                    input: tool_input(arguments),
                });
            }
            ContentPart::ServerTool { block } => {
                if let Ok(block) = serde_json::from_value(block.clone()) {
                    blocks.push(block);
                }
            }
            ContentPart::Image { .. }
            | ContentPart::Document { .. }
            | ContentPart::ToolResult { .. } => {}
        }
    }
    blocks
}

/// The Anthropic error `type` for a client-facing error kind (API errors page).
pub(crate) fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::InsufficientQuota => "billing_error",
        ErrorKind::Upstream | ErrorKind::Internal => "api_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
    }
}

/// The error object; the offending field leads the message, as Anthropic's own messages do
/// (`max_tokens: Field required`).
pub(crate) fn error_object(error: &ClientError) -> ErrorObject {
    let message = match &error.param {
        Some(param) if !error.message.contains(param.as_str()) => {
            format!("{param}: {}", error.message)
        }
        _ => error.message.clone(),
    };
    ErrorObject {
        kind: error_type(error.kind).to_owned(),
        message,
    }
}

fn encode_error(error: &ClientError) -> Vec<u8> {
    let body = ErrorResponse {
        kind: "error".into(),
        error: error_object(error),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The answer's usage, or the estimate an Anthropic client is given when the provider said
/// none.
fn usage_of(response: &ChatResponse, ctx: &EncodeCtx) -> crate::canonical::Usage {
    response
        .usage
        .unwrap_or_else(|| super::stream::estimated_usage(ctx.prompt_estimate, response.text_len()))
}

/// Whether an answer called tools (its stop reason is then `tool_use`).
fn calls_tools(response: &ChatResponse) -> bool {
    response
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::ToolCall { .. }))
}

//! The upstream side of the Anthropic dialect: build a `POST /v1/messages` request from a
//! canonical request, parse the answer, classify error bodies. The stream decoder lives in
//! `stream.rs`.
//!
//! Translation choices, where the Messages API differs from the canonical model:
//! * `system`/`developer` messages are hoisted, in order, into `system`: a string when there is
//!   a single block without `cache_control`, else an array of text blocks.
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
//!   a tool is forced. With thinking on and no `max_tokens` in the request, `max_tokens` is the
//!   budget plus [`DEFAULT_MAX_TOKENS`].
//! * `response_format` json_schema → `output_config.format`; json_object has no native mode, so
//!   a system instruction asks for a bare JSON object.
//! * `seed`, `frequency_penalty`, `presence_penalty` and `metadata` have no Anthropic field and
//!   are not sent; `n` above 1 is refused.
//! * Extras from an Anthropic client are passed through (same-dialect fidelity).

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};

use super::ingress::{BLOCK_CACHE_CONTROL, OUTPUT_CONFIG, SERVER_TOOLS, THINKING};
use super::stream::AnthropicStreamDecoder;
use super::wire::{
    self, ANTHROPIC_VERSION, ContentBlock, ContentBlockParam, ErrorResponse, MessageCreateParams,
    MessageParam, OutputConfig, OutputFormat, TextOrBlocks, ThinkingConfigParam, ToolUnion,
};
use crate::DialectId;
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, ErrorClass, Extras, ImageSource, Message, Reasoning,
    ResponseFormat, Role, ToolChoice, UpstreamErrorInfo,
};
use crate::dialect::{
    Capabilities, ProviderDialect, StreamDecoder, Target, malformed, retry_after_secs,
};
use crate::error::DecodeError;
use crate::provider_body::ProviderBody;

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
            json_schema: true,
            embeddings: false,
        }
    }

    fn build_chat(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<ProviderBody>, DecodeError> {
        let body = build_body(request, target.model)?;
        let base = target.base_url.trim_end_matches('/');
        // Accept a base URL configured with or without the `/v1` suffix.
        let url = if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
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
            .body(ProviderBody::from(body))
            .map_err(|e| DecodeError::new(format!("cannot build a request for `{url}`: {e}"), None))
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

fn build_body(request: &ChatRequest, model: &str) -> Result<Vec<u8>, DecodeError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(DecodeError::new(
            "Anthropic models return one answer per request; n must be 1",
            Some("n"),
        ));
    }
    let extras = request.extras.for_dialect(DialectId::Anthropic);
    let extra = |key: &str| extras.and_then(|fields| fields.get(key));

    let mut system: Vec<ContentBlockParam> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<ContentBlockParam>)> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role {
            Role::System | Role::Developer => {
                for part in &message.content {
                    if let ContentPart::Text {
                        text,
                        cache_control,
                    } = part
                        && !text.is_empty()
                    {
                        system.push(ContentBlockParam::Text {
                            text: text.as_str().to_owned(),
                            cache_control: cache_control.clone(),
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
        system.push(ContentBlockParam::Text {
            text: JSON_OBJECT_INSTRUCTION.into(),
            cache_control: None,
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
        Some(Reasoning {
            budget_tokens: Some(budget),
            ..
        }) => Some(*budget),
        Some(Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }) if !forced_tool => effort_budget(effort)
            // The budget must stay below `max_tokens`, and at or above 1024.
            .map(|budget| match request.max_tokens {
                Some(limit) => budget.min(limit.saturating_sub(1)),
                None => budget,
            })
            .filter(|budget| *budget >= 1024)
            .inspect(|_| {
                temperature = None;
                top_k = None;
            }),
        _ => None,
    };
    // A defaulted `max_tokens` leaves the default room for the answer after the thinking.
    let max_tokens = match (request.max_tokens, budget) {
        (Some(limit), _) => limit,
        (None, Some(budget)) => budget.saturating_add(DEFAULT_MAX_TOKENS),
        (None, None) => DEFAULT_MAX_TOKENS,
    };
    let thinking = budget.map(|budget_tokens| ThinkingConfigParam::Enabled { budget_tokens });
    let thinking = thinking.or_else(|| match extra(THINKING) {
        Some(Value::Object(other)) => Some(ThinkingConfigParam::Other(other.clone())),
        _ => None,
    });

    let mut output_config = OutputConfig::default();
    if let Some(Value::Object(rest)) = extra(OUTPUT_CONFIG) {
        output_config.rest = rest.clone();
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &request.response_format {
        output_config.format = Some(OutputFormat::JsonSchema {
            schema: schema.clone(),
        });
    }

    let params = MessageCreateParams {
        model: Some(model.to_owned()),
        max_tokens: Some(max_tokens),
        messages: Some(
            messages
                .into_iter()
                .map(|(role, blocks)| MessageParam {
                    role: role.to_owned(),
                    content: compact(blocks),
                })
                .collect(),
        ),
        system: match system.len() {
            0 => None,
            _ => Some(compact(system)),
        },
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        stop_sequences: (!request.stop.is_empty()).then(|| request.stop.clone()),
        temperature,
        top_p: request.top_p,
        top_k,
        thinking,
        metadata: request.user.as_ref().map(|user| wire::Metadata {
            user_id: Some(user.clone()),
        }),
        output_config: (output_config != OutputConfig::default()).then_some(output_config),
        stream: request.stream.then_some(true),
        rest: Map::new(),
    };

    let mut body = match serde_json::to_value(&params) {
        Ok(Value::Object(body)) => body,
        _ => {
            return Err(DecodeError::new(
                "cannot serialise the Anthropic request",
                None,
            ));
        }
    };
    if let Some(fields) = extras {
        for (key, value) in fields {
            if matches!(
                key.as_str(),
                SERVER_TOOLS | THINKING | OUTPUT_CONFIG | BLOCK_CACHE_CONTROL
            ) {
                continue;
            }
            // Modelled fields win over a same-named leftover.
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    // Written by our writer, whose escaping of a long prompt is several times faster than
    // serde_json's (the same bytes: `json::write_value` is held to serde_json's output).
    let mut out = Vec::new();
    crate::json::write_object(&mut out, &body).map_err(|e| {
        DecodeError::new(format!("cannot serialise the Anthropic request: {e}"), None)
    })?;
    Ok(out)
}

/// A single text block without `cache_control` travels as a plain string.
fn compact(mut blocks: Vec<ContentBlockParam>) -> TextOrBlocks<ContentBlockParam> {
    if let [
        ContentBlockParam::Text {
            cache_control: None,
            ..
        },
    ] = blocks.as_slice()
        && let Some(ContentBlockParam::Text { text, .. }) = blocks.pop()
    {
        return TextOrBlocks::Text(text);
    }
    TextOrBlocks::Blocks(blocks)
}

/// The blocks of one non-system message, with `cache_control` markers an Anthropic client put
/// on blocks the canonical model has no field for.
fn message_blocks(message: &Message, i: usize) -> Result<Vec<ContentBlockParam>, DecodeError> {
    let cache_controls = message
        .extras
        .for_dialect(DialectId::Anthropic)
        .and_then(|fields| fields.get(BLOCK_CACHE_CONTROL))
        .and_then(Value::as_object);
    let mut blocks = Vec::with_capacity(message.content.len());
    let mut tool_calls = 0;
    for (j, part) in message.content.iter().enumerate() {
        let mut block = match part {
            ContentPart::Text {
                text,
                cache_control,
            } => {
                // The API rejects empty text blocks (OpenAI assistants often send `""`).
                if text.is_empty() {
                    continue;
                }
                ContentBlockParam::Text {
                    text: text.as_str().to_owned(),
                    cache_control: cache_control.clone(),
                }
            }
            ContentPart::Image { source, .. } => ContentBlockParam::Image {
                source: image_source(source),
                cache_control: None,
            },
            ContentPart::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                let path = format!("messages[{i}].tool_calls[{tool_calls}].function.arguments");
                tool_calls += 1;
                ContentBlockParam::ToolUse {
                    id: id.clone(),
                    name: name.clone(),
                    input: tool_arguments(arguments, &path)?,
                    cache_control: None,
                }
            }
            ContentPart::ToolResult {
                tool_call_id,
                content,
                is_error,
                ..
            } => ContentBlockParam::ToolResult {
                tool_use_id: tool_call_id.clone(),
                content: tool_result_content(content),
                is_error: is_error.then_some(true),
                cache_control: None,
            },
            ContentPart::Reasoning { text, signature } => match signature {
                Some(signature) => ContentBlockParam::Thinking {
                    thinking: text.clone(),
                    signature: signature.clone(),
                },
                None => continue,
            },
            ContentPart::RedactedReasoning { data } => {
                ContentBlockParam::RedactedThinking { data: data.clone() }
            }
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

fn tool_result_content(content: &[ContentPart]) -> Option<TextOrBlocks<ContentBlockParam>> {
    let blocks: Vec<ContentBlockParam> = content
        .iter()
        .filter_map(|part| match part {
            ContentPart::Text {
                text,
                cache_control,
            } if !text.is_empty() => Some(ContentBlockParam::Text {
                text: text.as_str().to_owned(),
                cache_control: cache_control.clone(),
            }),
            ContentPart::Image { source, .. } => Some(ContentBlockParam::Image {
                source: image_source(source),
                cache_control: None,
            }),
            _ => None,
        })
        .collect();
    (!blocks.is_empty()).then(|| compact(blocks))
}

fn image_source(source: &ImageSource) -> wire::ImageSource {
    match source {
        ImageSource::Url(url) => wire::ImageSource::Url { url: url.clone() },
        ImageSource::Base64 { media_type, data } => wire::ImageSource::Base64 {
            media_type: media_type.clone(),
            data: data.clone(),
        },
    }
}

fn parse_message(message: wire::Message) -> ChatResponse {
    let mut content = Vec::with_capacity(message.content.len());
    for block in message.content {
        match block {
            ContentBlock::Text { text } => content.push(ContentPart::text(text)),
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
            // Server-tool blocks have no canonical form.
            ContentBlock::Other => {}
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
        },
        Err(_) => UpstreamErrorInfo {
            class: ErrorClass::from_status(status),
            status: Some(status),
            message: format!("Anthropic answered HTTP {status} with an unreadable error body"),
            provider_code: None,
            retry_after_secs,
        },
    }
}

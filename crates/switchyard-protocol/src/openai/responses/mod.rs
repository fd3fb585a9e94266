//! OpenAI's Responses API as the client speaks it (`POST /v1/responses`). A request is read as
//! carrying its whole conversation in `input`: the gateway brings in what it refers to among
//! the responses it kept (`previous_response_id`, `item_reference`, see `kept.rs`) before the
//! request is read. Any provider answers it through the canonical request, and the answer comes
//! back as a `response` object or a stream of `response.*` events. Errors use the OpenAI
//! envelope.

mod common;
mod decode;
mod encode;
mod kept;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde_json::{Map, Value, json};

pub use encode::ResponsesStreamEncoder;
pub use kept::{Brought, Kept, bring_in, input_items, referenced_responses, refers_to_kept};

use crate::canonical::{ChatRequest, ChatResponse, ResponseFormat, ToolChoice};
use crate::dialect::{DialectId, EncodeCtx, IngressDialect, StreamEncoder};
use crate::error::{ClientError, DecodeError};

/// The request's `instructions`, which become its first message and are also kept in its
/// extras (never sent to a provider: none speaks this dialect) for the response to repeat.
const INSTRUCTIONS: &str = "instructions";

/// The request's `reasoning.summary`, when it set it, for the response to repeat and to write
/// reasoning as summaries.
const REASONING_SUMMARY: &str = "reasoning_summary";

/// The request's `store`, when it set it: whether the client lets the gateway keep the answer
/// (the Responses API keeps answers unless told not to).
pub const STORE: &str = "store";

/// The request's `tools` as the client wrote them when they hold more than functions (custom
/// tools, the hosted web search), kept in its extras (never sent to a provider) for the
/// response to repeat and to tell custom tools' calls from functions' calls.
const TOOLS_AS_SENT: &str = "tools";

/// The `previous_response_id` a request continued (brought in by `kept.rs` before it was read),
/// for the response to repeat.
const PREVIOUS_RESPONSE_ID: &str = "previous_response_id";

/// Marks `request` as continuing response `previous`, which its response repeats as its
/// `previous_response_id`.
pub fn continues(request: &mut ChatRequest, previous: String) {
    request
        .extras
        .fields
        .insert(PREVIOUS_RESPONSE_ID.into(), Value::String(previous));
}

/// Between a namespace's name and its tool's in the function that stands for the tool: a
/// name every provider takes (letters, digits, `_` and `-`).
const NAMESPACE_SEPARATOR: &str = "__";

/// The name of the function standing for tool `name` of `namespace`.
fn namespaced(namespace: &str, name: &str) -> String {
    format!("{namespace}{NAMESPACE_SEPARATOR}{name}")
}

/// How the calls of the tools in a list as the client wrote it (the one a response repeats)
/// come back: a custom tool's as a `custom_tool_call` item, not a `function_call`, and a
/// namespace's tool's with its own name and its `namespace`.
#[derive(Default)]
struct CallNames {
    /// The custom tools' names, namespaced ones as the functions standing for them.
    custom: Vec<String>,
    /// Each namespaced tool's function name, with the length of its namespace's name.
    namespaced: Vec<(String, usize)>,
}

impl CallNames {
    fn of(tools: Option<&Value>) -> CallNames {
        let mut names = CallNames::default();
        let name = |t: &Value| t.get("name").and_then(Value::as_str).map(str::to_owned);
        fn kind(t: &Value) -> Option<&str> {
            t.get("type").and_then(Value::as_str)
        }
        for tool in tools.and_then(Value::as_array).into_iter().flatten() {
            match kind(tool) {
                Some("custom") => names.custom.extend(name(tool)),
                Some("namespace") => {
                    let Some(namespace) = name(tool) else {
                        continue;
                    };
                    let inner = tool.get("tools").and_then(Value::as_array);
                    for t in inner.into_iter().flatten() {
                        let Some(own) = name(t) else { continue };
                        let function = namespaced(&namespace, &own);
                        if kind(t) == Some("custom") {
                            names.custom.push(function.clone());
                        }
                        names.namespaced.push((function, namespace.len()));
                    }
                }
                _ => {}
            }
        }
        names
    }

    fn is_custom(&self, name: &str) -> bool {
        self.custom.iter().any(|c| c == name)
    }

    /// A call's name as the client knows it, and its namespace if it has one.
    fn split<'a>(&self, name: &'a str) -> (&'a str, Option<&'a str>) {
        match self
            .namespaced
            .iter()
            .find(|(function, _)| function == name)
        {
            Some(&(_, len)) => (&name[len + NAMESPACE_SEPARATOR.len()..], Some(&name[..len])),
            None => (name, None),
        }
    }
}

pub struct ResponsesIngress;

impl IngressDialect for ResponsesIngress {
    fn id(&self) -> DialectId {
        DialectId::OpenAiResponses
    }

    fn decode_chat(&self, body: &Bytes) -> Result<ChatRequest, DecodeError> {
        let request = match common::decode(body) {
            Some(request) => request,
            None => decode::decode(body)?,
        };
        check_limits(&request)?;
        Ok(request)
    }

    fn echo(&self, request: &ChatRequest) -> Option<Value> {
        Some(settings(request))
    }

    fn encode_chat(&self, response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
        encode::encode_response(response, ctx)
    }

    fn stream_encoder(&self, ctx: EncodeCtx) -> Box<dyn StreamEncoder> {
        Box::new(ResponsesStreamEncoder::new(ctx))
    }

    fn encode_error(&self, error: &ClientError) -> Vec<u8> {
        match error.param.as_deref().and_then(responses_param) {
            Some(param) => super::OpenAiIngress.encode_error(&ClientError {
                param: Some(param.to_owned()),
                ..error.clone()
            }),
            None => super::OpenAiIngress.encode_error(error),
        }
    }
}

/// The Responses API's name for a field a refusal names in Chat Completions' terms (a
/// provider's, or the gateway's canonical request's): `reasoning.effort`, `max_output_tokens`,
/// `text.format`, and `input` for a message (whose index in `input` the canonical request's
/// does not keep). `None` for names the two APIs share.
fn responses_param(param: &str) -> Option<&'static str> {
    Some(match param {
        "reasoning_effort" => "reasoning.effort",
        "max_tokens" | "max_completion_tokens" => "max_output_tokens",
        "response_format" => "text.format",
        _ if param == "messages" || param.starts_with("messages[") => "input",
        _ => return None,
    })
}

/// What the Responses API refuses, refused as it words it whatever the provider: an output cap
/// below 16 tokens, metadata other than up to 16 strings (keys to 64 characters, values to
/// 512). Metadata is echoed in the answer, whose SDK types hold strings only.
fn check_limits(request: &ChatRequest) -> Result<(), DecodeError> {
    if let Some(n) = request.max_tokens.filter(|n| *n < 16) {
        return Err(DecodeError::new(
            format!(
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, \
                 but got {n} instead."
            ),
            Some("max_output_tokens"),
        ));
    }
    if let Some(metadata) = &request.metadata {
        if metadata.len() > 16 {
            return Err(DecodeError::new(
                format!(
                    "Invalid 'metadata': too many properties. Expected an object with at most 16 \
                     properties, but got an object with {} properties instead.",
                    metadata.len()
                ),
                Some("metadata"),
            ));
        }
        for (key, value) in metadata {
            let fits = key.chars().count() <= 64
                && value.as_str().is_some_and(|v| v.chars().count() <= 512);
            if !fits {
                return Err(DecodeError::new(
                    format!(
                        "Invalid 'metadata.{key}': expected a string of at most 512 characters \
                         under a key of at most 64."
                    ),
                    Some(&format!("metadata.{key}")),
                ));
            }
        }
    }
    Ok(())
}

/// The request's settings as a `response` object repeats them: those it set, in the
/// Responses API's shapes (`max_output_tokens`, `text.format`, flat function tools).
fn settings(request: &ChatRequest) -> Value {
    let mut echo = Map::new();
    let as_sent = request.extras.fields.get(TOOLS_AS_SENT);
    let names = CallNames::of(as_sent);
    if let Some(instructions) = request.extras.fields.get(INSTRUCTIONS) {
        echo.insert(INSTRUCTIONS.into(), instructions.clone());
    }
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            echo.insert(key.into(), value);
        }
    };
    set("max_output_tokens", request.max_tokens.map(|n| json!(n)));
    set(
        PREVIOUS_RESPONSE_ID,
        request.extras.fields.get(PREVIOUS_RESPONSE_ID).cloned(),
    );
    set("metadata", request.metadata.clone().map(Value::Object));
    set(
        "parallel_tool_calls",
        request.parallel_tool_calls.map(|p| json!(p)),
    );
    let summary = request.extras.fields.get(REASONING_SUMMARY);
    set(
        "reasoning",
        (request.reasoning.is_some() || summary.is_some()).then(|| {
            let effort = request.reasoning.as_ref().and_then(|r| r.effort.clone());
            json!({"effort": effort, "summary": summary})
        }),
    );
    set("temperature", request.temperature.map(|t| json!(t)));
    set(
        "text",
        request.response_format.as_ref().map(|f| {
            let format = match f {
                ResponseFormat::Text => json!({"type": "text"}),
                ResponseFormat::JsonObject => json!({"type": "json_object"}),
                ResponseFormat::JsonSchema {
                    name,
                    description,
                    schema,
                    strict,
                } => json!({"type": "json_schema", "name": name, "description": description, "schema": schema, "strict": strict}),
            };
            json!({"format": format})
        }),
    );
    set(
        "tool_choice",
        request.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) if names.is_custom(name) => {
                json!({"type": "custom", "name": names.split(name).0})
            }
            ToolChoice::Function(name) => {
                json!({"type": "function", "name": names.split(name).0})
            }
        }),
    );
    set(
        "tools",
        as_sent.cloned().or_else(|| {
            (!request.tools.is_empty()).then(|| {
                request
                    .tools
                    .iter()
                    .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters, "strict": t.strict}))
                    .collect()
            })
        }),
    );
    set("top_p", request.top_p.map(|p| json!(p)));
    set("user", request.user.clone().map(Value::String));
    Value::Object(echo)
}

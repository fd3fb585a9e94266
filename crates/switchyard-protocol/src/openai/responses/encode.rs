//! Writes the client's `response` object and its stream of `response.*` events.
//!
//! Output items from the canonical answer, in order: a reasoning item per reasoning part (its
//! text as content, or as its summary when the request asked for one), one message item per
//! run of text (its text as one `output_text` part), one `function_call` or `custom_tool_call`
//! item per tool call, a `web_search_call` item per web search the provider ran. A thinking
//! block's signature travels in the reasoning item's `encrypted_content`, and a redacted
//! thinking block's data there alone, so that a conversation sent back through `input` returns
//! both to Anthropic intact.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::CallNames;
use super::decode::CUSTOM_INPUT;
use crate::canonical::{ChatResponse, ContentPart, FinishReason, StreamEvent, Usage};
use crate::dialect::{EncodeCtx, StreamEncoder};
use crate::error::{ClientError, ErrorKind};
use crate::gemini;
use crate::json;
use crate::openai::ingress::cited_web_pages;
use crate::sse::write_event;

/// The gateway's request id as the body of item and response ids (`resp_…`, `msg_…`).
fn id_body(ctx: &EncodeCtx) -> String {
    ctx.id.replace('-', "")
}

/// The response's id: `resp_…`.
fn response_id(ctx: &EncodeCtx) -> String {
    format!("resp_{}", id_body(ctx))
}

/// The id of output item `n` of a response: `msg_…`, `rs_…` or `fc_…` by `prefix`.
fn item_id(prefix: &str, body: &str, n: usize) -> String {
    format!("{prefix}_{body}_{n}")
}

/// One output item being built or built.
#[derive(Debug, Clone)]
enum Item {
    Message {
        id: String,
        text: String,
        /// The web pages the text cites (`url_citation`s), for a whole answer.
        annotations: Vec<Value>,
    },
    Reasoning {
        id: String,
        text: String,
        signature: Option<String>,
        /// The client asked for a reasoning summary (`reasoning.summary`): the text is the
        /// item's summary, as clients that show reasoning read it, not its content.
        summary: bool,
    },
    RedactedReasoning {
        id: String,
        data: String,
    },
    FunctionCall {
        id: String,
        call_id: String,
        /// The name the client gave the tool, and its namespace if it is in one.
        name: String,
        namespace: Option<String>,
        arguments: String,
    },
    /// A web search the provider ran (Anthropic's web search server tool): its query, and the
    /// addresses of what it found.
    WebSearchCall {
        id: String,
        query: String,
        sources: Vec<String>,
        failed: bool,
    },
    /// A custom tool's call: the arguments of the function standing for it as they arrive,
    /// its `input` once they are whole.
    CustomCall {
        id: String,
        call_id: String,
        name: String,
        namespace: Option<String>,
        arguments: String,
    },
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Message { id, .. }
            | Item::Reasoning { id, .. }
            | Item::RedactedReasoning { id, .. }
            | Item::FunctionCall { id, .. }
            | Item::WebSearchCall { id, .. }
            | Item::CustomCall { id, .. } => id,
        }
    }

    /// Writes [`Item::to_json`]'s JSON: a message and a function call by hand (the commonest
    /// items: an agent's turn makes many calls), the others from their trees.
    fn write(&self, out: &mut Vec<u8>, status: &str) -> Result<(), serde_json::Error> {
        match self {
            Item::Message {
                id,
                text,
                annotations,
            } => {
                let text = (status != "in_progress").then_some(text.as_str());
                message_events::message_item(out, id, status, text, annotations);
                Ok(())
            }
            Item::FunctionCall {
                id,
                call_id,
                name,
                namespace,
                arguments,
            } => {
                // The members in the order of serde's map.
                out.extend_from_slice(b"{\"arguments\":");
                json::write_str(
                    out,
                    if status == "in_progress" {
                        ""
                    } else {
                        arguments
                    },
                );
                out.extend_from_slice(b",\"call_id\":");
                json::write_str(out, call_id);
                out.extend_from_slice(b",\"id\":");
                json::write_str(out, id);
                out.extend_from_slice(b",\"name\":");
                json::write_str(out, name);
                if let Some(namespace) = namespace {
                    out.extend_from_slice(b",\"namespace\":");
                    json::write_str(out, namespace);
                }
                out.extend_from_slice(b",\"status\":");
                json::write_str(out, status);
                out.extend_from_slice(b",\"type\":\"function_call\"}");
                Ok(())
            }
            Item::Reasoning {
                id,
                text,
                signature,
                summary,
            } => {
                reasoning_events::reasoning_item(
                    out,
                    id,
                    status,
                    (status != "in_progress").then_some((text.as_str(), signature.as_deref())),
                    *summary,
                );
                Ok(())
            }
            _ => json::write_value(out, &self.to_json(status)),
        }
    }

    /// The item as the `output` list and the `output_item` events show it; `status` is that of
    /// an item still streaming (`in_progress`) or finished.
    fn to_json(&self, status: &str) -> Value {
        match self {
            Item::Message {
                id,
                text,
                annotations,
            } => {
                let content = if status == "in_progress" {
                    Vec::new()
                } else {
                    vec![output_text(text, annotations)]
                };
                object([
                    ("id", id.as_str().into()),
                    ("type", "message".into()),
                    ("status", status.into()),
                    ("role", "assistant".into()),
                    ("content", Value::Array(content)),
                ])
            }
            Item::Reasoning {
                id,
                text,
                signature,
                summary,
            } => {
                let mut item = json!({"id": id, "type": "reasoning", "summary": []});
                if status != "in_progress" {
                    if *summary {
                        item["summary"] = Value::Array(vec![summary_text(text)]);
                    } else {
                        item["content"] = Value::Array(vec![reasoning_text(text)]);
                    }
                    if let Some(signature) = signature {
                        item["encrypted_content"] = json!(signature);
                    }
                }
                item["status"] = json!(status);
                item
            }
            Item::RedactedReasoning { id, data } => {
                json!({"id": id, "type": "reasoning", "summary": [], "encrypted_content": data, "status": status})
            }
            Item::FunctionCall {
                id,
                call_id,
                name,
                namespace,
                arguments,
            } => {
                let arguments = if status == "in_progress" {
                    ""
                } else {
                    arguments
                };
                let mut item = json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments});
                if let Some(namespace) = namespace {
                    item["namespace"] = json!(namespace);
                }
                item
            }
            Item::WebSearchCall {
                id,
                query,
                sources,
                failed,
            } => {
                let status = match (status, failed) {
                    ("in_progress", _) => "in_progress",
                    (_, true) => "failed",
                    _ => "completed",
                };
                let sources: Vec<Value> = sources
                    .iter()
                    .map(|url| json!({"type": "url", "url": url}))
                    .collect();
                let action = object([
                    ("type", "search".into()),
                    ("query", query.as_str().into()),
                    ("sources", Value::Array(sources)),
                ]);
                object([
                    ("id", id.as_str().into()),
                    ("type", "web_search_call".into()),
                    ("status", status.into()),
                    ("action", action),
                ])
            }
            Item::CustomCall {
                id,
                call_id,
                name,
                namespace,
                arguments,
            } => {
                let input = if status == "in_progress" {
                    String::new()
                } else {
                    custom_input(arguments)
                };
                let mut item = json!({"id": id, "type": "custom_tool_call", "call_id": call_id, "name": name, "input": input});
                if let Some(namespace) = namespace {
                    item["namespace"] = json!(namespace);
                }
                item
            }
        }
    }
}

/// A custom tool call's input: the `input` argument of the function standing for the tool, or
/// the arguments as they are when a model wrote something else.
fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Map<String, Value>>(arguments) {
        Ok(mut args) => match args.remove(CUSTOM_INPUT) {
            Some(Value::String(input)) => input,
            _ => arguments.to_owned(),
        },
        Err(_) => arguments.to_owned(),
    }
}

/// A web search's item from Anthropic's `server_tool_use` block (named `web_search`) and
/// its input's JSON; `None` for another server tool's block.
fn web_search_call(block: &Value, input: Option<&str>, body: &str, n: usize) -> Option<Item> {
    if block.get("type")? != "server_tool_use" || block.get("name")? != "web_search" {
        return None;
    }
    let parsed;
    let input = match input {
        Some(json) => {
            parsed = serde_json::from_str::<Value>(json).unwrap_or(Value::Null);
            &parsed
        }
        None => block.get("input").unwrap_or(&Value::Null),
    };
    let query = input.get("query").and_then(Value::as_str).unwrap_or("");
    Some(Item::WebSearchCall {
        id: item_id("ws", body, n),
        query: query.to_owned(),
        sources: Vec::new(),
        failed: false,
    })
}

/// Fills in a web search's item from Anthropic's `web_search_tool_result` block: the pages
/// found, or that it failed (its content an error object). Other blocks change nothing.
fn add_search_result(block: &Value, item: &mut Item) {
    let Item::WebSearchCall {
        sources, failed, ..
    } = item
    else {
        return;
    };
    if block.get("type").and_then(Value::as_str) != Some("web_search_tool_result") {
        return;
    }
    match block.get("content") {
        Some(Value::Array(results)) => sources.extend(
            results
                .iter()
                .filter_map(|r| r.get("url").and_then(Value::as_str).map(str::to_owned)),
        ),
        _ => *failed = true,
    }
}

/// The item of a call to the function `name`: a custom tool's or a function's, named as the
/// client named the tool, with its namespace.
fn call_item(
    names: &CallNames,
    body: &str,
    n: usize,
    (call_id, name, arguments): (&str, &str, &str),
) -> Item {
    let (own, namespace) = names.split(name);
    let (call_id, arguments) = (call_id.to_owned(), arguments.to_owned());
    let (own, namespace) = (own.to_owned(), namespace.map(str::to_owned));
    if names.is_custom(name) {
        Item::CustomCall {
            id: item_id("ctc", body, n),
            call_id,
            name: own,
            namespace,
            arguments,
        }
    } else {
        Item::FunctionCall {
            id: item_id("fc", body, n),
            call_id,
            name: own,
            namespace,
            arguments,
        }
    }
}

/// A JSON object of `members`, each value moved in: `json!` copies a member that is a `Value`
/// already through the serializer, node by node, and then drops the original.
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn output_text(text: &str, annotations: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": annotations})
}

fn reasoning_text(text: &str) -> Value {
    json!({"type": "reasoning_text", "text": text})
}

fn summary_text(text: &str) -> Value {
    json!({"type": "summary_text", "text": text})
}

/// Whether the request asked for a reasoning summary (`reasoning.summary` as repeated).
fn wants_summary(ctx: &EncodeCtx) -> bool {
    ctx.echo
        .as_ref()
        .and_then(|e| e.get("reasoning"))
        .and_then(|r| r.get("summary"))
        .is_some_and(Value::is_string)
}

/// The answer's output items, in the order of its parts.
fn items_of(response: &ChatResponse, ctx: &EncodeCtx) -> Vec<Item> {
    let body = id_body(ctx);
    let names = CallNames::of(ctx.echo.as_ref().and_then(|e| e.get("tools")));
    let summary = wants_summary(ctx);
    let mut items: Vec<Item> = Vec::new();
    for part in &response.content {
        let n = items.len();
        match part {
            ContentPart::Text {
                text, citations, ..
            } => {
                if !matches!(items.last(), Some(Item::Message { .. })) {
                    items.push(Item::Message {
                        id: item_id("msg", &body, n),
                        text: String::new(),
                        annotations: Vec::new(),
                    });
                }
                if let Some(Item::Message {
                    text: joined,
                    annotations,
                    ..
                }) = items.last_mut()
                {
                    // Each cited page spans its text part, in characters of the message (only
                    // counted for a part that cites one: most cite nothing).
                    let mut pages = cited_web_pages(citations.as_ref()).peekable();
                    if pages.peek().is_some() {
                        let start = joined.chars().count();
                        let end = start + text.as_str().chars().count();
                        for (url, title) in pages {
                            annotations.push(json!({"type": "url_citation", "start_index": start,
                                "end_index": end, "url": url, "title": title}));
                        }
                    }
                    joined.push_str(text);
                }
            }
            ContentPart::Reasoning { text, signature } => items.push(Item::Reasoning {
                id: item_id("rs", &body, n),
                text: text.clone(),
                signature: signature.clone(),
                summary,
            }),
            ContentPart::RedactedReasoning { data } => items.push(Item::RedactedReasoning {
                id: item_id("rs", &body, n),
                data: data.clone(),
            }),
            ContentPart::ToolCall {
                id,
                name,
                arguments,
                extras,
            } => {
                if let Some(signature) = gemini::tool_call_signature(extras) {
                    items.push(gemini_signature_item(&body, n, signature));
                }
                items.push(call_item(&names, &body, items.len(), (id, name, arguments)));
            }
            ContentPart::ServerTool { block } => {
                if let Some(item) = web_search_call(block, None, &body, n) {
                    items.push(item);
                } else if let Some(search) = items
                    .iter_mut()
                    .rev()
                    .find(|item| matches!(item, Item::WebSearchCall { .. }))
                {
                    add_search_result(block, search);
                }
            }
            // Answers hold none of the input-only parts.
            ContentPart::Image { .. }
            | ContentPart::Document { .. }
            | ContentPart::ToolResult { .. } => {}
        }
    }
    items
}

/// The reasoning item that carries a Gemini function call's thought signature, just before
/// the call (see `gemini::carry_signature`).
fn gemini_signature_item(body: &str, n: usize, signature: &str) -> Item {
    Item::RedactedReasoning {
        id: item_id("rs", body, n),
        data: gemini::carry_signature(signature),
    }
}

/// `status` and `incomplete_details` of an answer that stopped for `reason`.
fn status_of(reason: Option<&FinishReason>) -> (&'static str, Value) {
    match reason {
        Some(FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(FinishReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The `status` of the output items of an answer whose own status is `status`.
fn item_status(status: &str) -> &'static str {
    if status == "completed" {
        "completed"
    } else {
        "incomplete"
    }
}

/// [`usage_json`]'s JSON, written member by member in the order of serde's map.
fn write_usage(out: &mut Vec<u8>, usage: &Usage) {
    out.extend_from_slice(b"{\"input_tokens\":");
    json::write_uint(out, usage.input_tokens);
    out.extend_from_slice(b",\"input_tokens_details\":{\"cache_write_tokens\":");
    json::write_uint(out, usage.cache_write_tokens);
    out.extend_from_slice(b",\"cached_tokens\":");
    json::write_uint(out, usage.cache_read_tokens);
    out.extend_from_slice(b"},\"output_tokens\":");
    json::write_uint(out, usage.output_tokens);
    out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":");
    json::write_uint(out, usage.reasoning_tokens);
    out.extend_from_slice(b"},\"total_tokens\":");
    json::write_uint(out, usage.total());
    out.push(b'}');
}

/// The usage as a tree: the reference [`write_usage`] is held to.
#[cfg(test)]
fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total(),
    })
}

/// The settings a `response` repeats from its request.
#[cfg(test)]
const SETTINGS: [&str; 12] = [
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "user",
];

/// [`setting_default`]'s JSON, as serde writes it.
fn setting_default_json(key: &str) -> &'static [u8] {
    match key {
        "metadata" => b"{}",
        "parallel_tool_calls" => b"true",
        "reasoning" => b"{\"effort\":null,\"summary\":null}",
        "text" => b"{\"format\":{\"type\":\"text\"}}",
        "tool_choice" => b"\"auto\"",
        "tools" => b"[]",
        _ => b"null",
    }
}

/// What a setting says when the request left it out.
#[cfg(test)]
fn setting_default(key: &str) -> Value {
    match key {
        "metadata" => json!({}),
        "parallel_tool_calls" => json!(true),
        "reasoning" => json!({"effort": null, "summary": null}),
        "text" => json!({"format": {"type": "text"}}),
        "tool_choice" => json!("auto"),
        "tools" => json!([]),
        _ => Value::Null,
    }
}

/// A `response` object's JSON: the request's settings as echoed (`ctx.echo`), its output and
/// status. Written member by member, in the order serde writes the map of
/// `response_json` (the tests' reference): the members' values as serde writes them, the
/// settings from the echo or their defaults.
fn response_bytes(
    ctx: &EncodeCtx,
    status: &str,
    incomplete: &Value,
    error: &Value,
    (items, item_status): (&[Item], &str),
    usage: Option<&Usage>,
) -> Vec<u8> {
    let echo = ctx.echo.as_ref().and_then(Value::as_object);
    let setting = |out: &mut Vec<u8>, key: &str| match echo.and_then(|e| e.get(key)) {
        Some(value) => json::write_value(out, value),
        None => {
            out.extend_from_slice(setting_default_json(key));
            Ok(())
        }
    };
    let output_len: usize = items.len() * 256;
    json::written(1024 + output_len, |out| {
        out.extend_from_slice(b"{\"background\":false,\"created_at\":");
        serde_json::to_writer(&mut *out, &ctx.created)?;
        out.extend_from_slice(b",\"error\":");
        json::write_value(out, error)?;
        out.extend_from_slice(b",\"id\":\"resp_");
        json::write_str_content(out, &id_body(ctx));
        out.extend_from_slice(b"\",\"incomplete_details\":");
        json::write_value(out, incomplete)?;
        for key in ["instructions", "max_output_tokens", "metadata"] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            setting(out, key)?;
        }
        out.extend_from_slice(b",\"model\":");
        json::write_str(out, &ctx.model);
        out.extend_from_slice(b",\"object\":\"response\",\"output\":");
        json::write_array(out, items, |out, item| item.write(out, item_status))?;
        out.extend_from_slice(b",\"parallel_tool_calls\":");
        setting(out, "parallel_tool_calls")?;
        out.extend_from_slice(b",\"previous_response_id\":");
        setting(out, "previous_response_id")?;
        out.extend_from_slice(b",\"reasoning\":");
        setting(out, "reasoning")?;
        out.extend_from_slice(b",\"status\":");
        json::write_str(out, status);
        out.extend_from_slice(if ctx.keep.is_some() {
            b",\"store\":true"
        } else {
            b",\"store\":false"
        });
        for key in ["temperature", "text", "tool_choice", "tools", "top_p"] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            setting(out, key)?;
        }
        out.extend_from_slice(b",\"truncation\":\"disabled\",\"usage\":");
        match usage {
            Some(usage) => write_usage(out, usage),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"user\":");
        setting(out, "user")?;
        out.push(b'}');
        Ok(())
    })
}

/// A `response` object as a tree: the reference [`response_bytes`] is held to.
#[cfg(test)]
fn response_json(
    ctx: &EncodeCtx,
    status: &str,
    incomplete: Value,
    error: Value,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let mut response = Map::new();
    response.insert("id".into(), json!(response_id(ctx)));
    response.insert("object".into(), json!("response"));
    response.insert("created_at".into(), json!(ctx.created));
    response.insert("status".into(), json!(status));
    response.insert("background".into(), json!(false));
    response.insert("error".into(), error);
    response.insert("incomplete_details".into(), incomplete);
    response.insert("model".into(), json!(ctx.model));
    response.insert("output".into(), Value::Array(output));
    response.insert("store".into(), json!(ctx.keep.is_some()));
    response.insert("truncation".into(), json!("disabled"));
    let echo = ctx.echo.as_ref().and_then(Value::as_object);
    for key in SETTINGS {
        let value = echo.and_then(|e| e.get(key)).cloned();
        response.insert(key.into(), value.unwrap_or_else(|| setting_default(key)));
    }
    response.insert("usage".into(), usage.map_or(Value::Null, usage_json));
    Value::Object(response)
}

pub(super) fn encode_response(response: &ChatResponse, ctx: &EncodeCtx) -> Vec<u8> {
    let (status, incomplete) = status_of(Some(&response.finish_reason));
    let items = items_of(response, ctx);
    let bytes = response_bytes(
        ctx,
        status,
        &incomplete,
        &Value::Null,
        (&items, item_status(status)),
        response.usage.as_ref(),
    );
    if let Some(keep) = &ctx.keep {
        (keep.0)(&response_id(ctx), Bytes::copy_from_slice(&bytes));
    }
    bytes
}

/// A `response.output_text.delta` event, a stream's most frequent, written as `emit` writes
/// it (keys in the order serde's map keeps them; a test holds the two together) without
/// building a tree of values or copying the text or the item's id.
pub(super) fn write_text_delta(
    out: &mut Vec<u8>,
    item_id: &str,
    index: usize,
    sequence: u64,
    text: &str,
) {
    out.reserve(TEXT_DELTA_HEAD.len() + text.len() + item_id.len() + 128);
    out.extend_from_slice(TEXT_DELTA_HEAD);
    json::write_str(out, text);
    out.extend_from_slice(b",\"item_id\":");
    json::write_str(out, item_id);
    out.extend_from_slice(b",\"logprobs\":[],\"output_index\":");
    json::write_uint(out, index as u64);
    out.extend_from_slice(b",\"sequence_number\":");
    json::write_uint(out, sequence);
    out.extend_from_slice(b",\"type\":\"response.output_text.delta\"}\n\n");
}

/// A message item's events, the commonest besides the text deltas, written as [`emit`] writes
/// them from their trees (a test holds the two together): the members in the order of serde's
/// map, an event's `sequence_number` and `type` among them.
mod message_events {
    use super::{Value, event_open as open, json};
    use super::{sequence_member, type_member_and_end};

    /// An `output_text` part, as `output_text` builds it.
    fn output_text(out: &mut Vec<u8>, text: &str, annotations: &[Value]) {
        out.extend_from_slice(b"{\"annotations\":[");
        for (i, annotation) in annotations.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // A map's members sort as the tree's do.
            let _ = json::write_value(out, annotation);
        }
        out.extend_from_slice(b"],\"text\":");
        json::write_str(out, text);
        out.extend_from_slice(b",\"type\":\"output_text\"}");
    }

    /// A message item, as `Item::to_json` builds it: its one output text once it is done.
    pub(super) fn message_item(
        out: &mut Vec<u8>,
        id: &str,
        status: &str,
        text: Option<&str>,
        annotations: &[Value],
    ) {
        out.extend_from_slice(b"{\"content\":[");
        if let Some(text) = text {
            output_text(out, text, annotations);
        }
        out.extend_from_slice(b"],\"id\":");
        json::write_str(out, id);
        out.extend_from_slice(b",\"role\":\"assistant\",\"status\":");
        json::write_str(out, status);
        out.extend_from_slice(b",\"type\":\"message\"}");
    }

    /// `response.content_part.added` (empty text) or `.done` of a message's text part.
    pub(super) fn part(
        out: &mut Vec<u8>,
        sequence: &mut u64,
        index: usize,
        id: &str,
        text: Option<(&str, &[Value])>,
    ) {
        let kind = match text {
            None => "response.content_part.added",
            Some(_) => "response.content_part.done",
        };
        let (text, annotations) = text.unwrap_or_default();
        super::part_event(out, sequence, kind, index, id, false, |out| {
            output_text(out, text, annotations)
        });
    }

    /// `response.output_text.done`: the message's whole text.
    pub(super) fn text_done(
        out: &mut Vec<u8>,
        sequence: &mut u64,
        index: usize,
        id: &str,
        text: &str,
    ) {
        let kind = "response.output_text.done";
        open(out, kind);
        out.extend_from_slice(b"\"content_index\":0,\"item_id\":");
        json::write_str(out, id);
        out.extend_from_slice(b",\"logprobs\":[],\"output_index\":");
        json::write_uint(out, index as u64);
        // `text` sorts between `sequence_number` and `type`.
        sequence_member(out, sequence);
        out.extend_from_slice(b",\"text\":");
        json::write_str(out, text);
        type_member_and_end(out, kind);
    }
}

/// A reasoning item's events and the item itself, written as [`emit`] writes them from their
/// trees (a test holds the two together): the members in the order of serde's map, where the
/// part's index sorts before the others as `content_index`, after `sequence_number` as
/// `summary_index` (a summary's).
mod reasoning_events {
    use super::{event_open as open, json};
    use super::{sequence_member, type_member_and_end};

    /// A reasoning part (`reasoning_text`, or `summary_text` for a summary).
    fn part_json(out: &mut Vec<u8>, summary: bool, text: &str) {
        out.extend_from_slice(b"{\"text\":");
        json::write_str(out, text);
        out.extend_from_slice(if summary {
            b",\"type\":\"summary_text\"}"
        } else {
            b",\"type\":\"reasoning_text\"}"
        });
    }

    /// A reasoning item, as `Item::to_json` builds it: with `done`, its text and signature.
    pub(super) fn reasoning_item(
        out: &mut Vec<u8>,
        id: &str,
        status: &str,
        done: Option<(&str, Option<&str>)>,
        summary: bool,
    ) {
        out.push(b'{');
        if let Some((text, _)) = done
            && !summary
        {
            out.extend_from_slice(b"\"content\":[");
            part_json(out, false, text);
            out.extend_from_slice(b"],");
        }
        if let Some((_, Some(signature))) = done {
            out.extend_from_slice(b"\"encrypted_content\":");
            json::write_str(out, signature);
            out.push(b',');
        }
        out.extend_from_slice(b"\"id\":");
        json::write_str(out, id);
        out.extend_from_slice(b",\"status\":");
        json::write_str(out, status);
        out.extend_from_slice(b",\"summary\":[");
        if let Some((text, _)) = done
            && summary
        {
            part_json(out, true, text);
        }
        out.extend_from_slice(b"],\"type\":\"reasoning\"}");
    }

    /// The part's `.added` (`text` none: empty) or `.done` event.
    pub(super) fn part(
        out: &mut Vec<u8>,
        sequence: &mut u64,
        index: usize,
        id: &str,
        summary: bool,
        text: Option<&str>,
    ) {
        let kind = match (summary, text) {
            (true, None) => "response.reasoning_summary_part.added",
            (true, Some(_)) => "response.reasoning_summary_part.done",
            (false, None) => "response.content_part.added",
            (false, Some(_)) => "response.content_part.done",
        };
        super::part_event(out, sequence, kind, index, id, summary, |out| {
            part_json(out, summary, text.unwrap_or_default())
        });
    }

    /// `response.reasoning_summary_text.done` or `response.reasoning_text.done`: the whole text.
    pub(super) fn text_done(
        out: &mut Vec<u8>,
        sequence: &mut u64,
        index: usize,
        id: &str,
        summary: bool,
        text: &str,
    ) {
        let kind = if summary {
            "response.reasoning_summary_text.done"
        } else {
            "response.reasoning_text.done"
        };
        open(out, kind);
        if !summary {
            out.extend_from_slice(b"\"content_index\":0,");
        }
        out.extend_from_slice(b"\"item_id\":");
        json::write_str(out, id);
        out.extend_from_slice(b",\"output_index\":");
        json::write_uint(out, index as u64);
        sequence_member(out, sequence);
        if summary {
            out.extend_from_slice(b",\"summary_index\":0");
        }
        out.extend_from_slice(b",\"text\":");
        json::write_str(out, text);
        type_member_and_end(out, kind);
    }
}

/// A reasoning item's delta (`response.reasoning_summary_text.delta` for a summary, else
/// `response.reasoning_text.delta`), as [`emit`] writes it from its tree (a test holds the two
/// together): a reasoning model streams more of these than of text.
pub(super) fn write_reasoning_delta(
    out: &mut Vec<u8>,
    sequence: &mut u64,
    summary: bool,
    item_id: &str,
    index: usize,
    text: &str,
) {
    let kind = if summary {
        "response.reasoning_summary_text.delta"
    } else {
        "response.reasoning_text.delta"
    };
    event_open(out, kind);
    // The part's index sorts before `delta` as `content_index`, after `sequence_number` as
    // `summary_index`.
    if !summary {
        out.extend_from_slice(b"\"content_index\":0,");
    }
    out.extend_from_slice(b"\"delta\":");
    json::write_str(out, text);
    out.extend_from_slice(b",\"item_id\":");
    json::write_str(out, item_id);
    out.extend_from_slice(b",\"output_index\":");
    json::write_uint(out, index as u64);
    sequence_member(out, sequence);
    if summary {
        out.extend_from_slice(b",\"summary_index\":0");
    }
    type_member_and_end(out, kind);
}

/// A fragment of a function call's arguments (`response.function_call_arguments.delta`), as
/// [`emit`] writes it from its tree (a test holds the two together): an agent's turn streams
/// many.
pub(super) fn write_arguments_delta(
    out: &mut Vec<u8>,
    sequence: &mut u64,
    item_id: &str,
    index: usize,
    arguments: &str,
) {
    write_arguments_event(out, sequence, item_id, index, arguments, None);
}

/// `response.function_call_arguments.delta`, or with the call's `name` `.done` (the whole
/// arguments, under `arguments` rather than `delta`), as [`emit`] writes them from their trees.
fn write_arguments_event(
    out: &mut Vec<u8>,
    sequence: &mut u64,
    item_id: &str,
    index: usize,
    arguments: &str,
    name: Option<&str>,
) {
    let kind = match name {
        None => "response.function_call_arguments.delta",
        Some(_) => "response.function_call_arguments.done",
    };
    event_open(out, kind);
    out.extend_from_slice(match name {
        None => b"\"delta\":".as_slice(),
        Some(_) => b"\"arguments\":".as_slice(),
    });
    json::write_str(out, arguments);
    out.extend_from_slice(b",\"item_id\":");
    json::write_str(out, item_id);
    if let Some(name) = name {
        out.extend_from_slice(b",\"name\":");
        json::write_str(out, name);
    }
    out.extend_from_slice(b",\"output_index\":");
    json::write_uint(out, index as u64);
    event_close(out, sequence, kind);
}

/// A part's `.added` or `.done` event (`kind`), the part written by `part`: as [`emit`] writes
/// it from its tree, where the part's index sorts before the others as `content_index`, after
/// `sequence_number` as a summary's `summary_index`.
fn part_event(
    out: &mut Vec<u8>,
    sequence: &mut u64,
    kind: &str,
    index: usize,
    id: &str,
    summary: bool,
    part: impl FnOnce(&mut Vec<u8>),
) {
    event_open(out, kind);
    if !summary {
        out.extend_from_slice(b"\"content_index\":0,");
    }
    out.extend_from_slice(b"\"item_id\":");
    json::write_str(out, id);
    out.extend_from_slice(b",\"output_index\":");
    json::write_uint(out, index as u64);
    out.extend_from_slice(b",\"part\":");
    part(out);
    sequence_member(out, sequence);
    if summary {
        out.extend_from_slice(b",\"summary_index\":0");
    }
    type_member_and_end(out, kind);
}

/// `response.output_item.added` or `.done` (`kind`) of an item, as [`emit`] writes it from its
/// tree: the item through [`Item::write`].
fn item_event(
    out: &mut Vec<u8>,
    sequence: &mut u64,
    kind: &str,
    index: usize,
    item: &Item,
    status: &str,
) {
    event_open(out, kind);
    out.extend_from_slice(b"\"item\":");
    if item.write(out, status).is_err() {
        // Writing a tree cannot fail; keep the event well-formed regardless.
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"output_index\":");
    json::write_uint(out, index as u64);
    event_close(out, sequence, kind);
}

/// How a text delta event starts: its text follows as a JSON string.
const TEXT_DELTA_HEAD: &[u8] =
    b"event: response.output_text.delta\ndata: {\"content_index\":0,\"delta\":";

/// The `code` of a failed response's error: OpenAI's codes name the model's failures, of
/// which a gateway's are a rate limit or the server's.
fn failure_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimit => "rate_limit_exceeded",
        _ => "server_error",
    }
}

/// The index member of a part event: a summary part's or a content part's.
#[cfg(test)]
fn part_index(kind: &str) -> &'static str {
    if kind.starts_with("response.reasoning_summary") {
        "summary_index"
    } else {
        "content_index"
    }
}

/// Writes event `kind` with its type and the next sequence number.
pub(super) fn emit(sequence: &mut u64, kind: &str, mut event: Value, out: &mut Vec<u8>) {
    if let Some(map) = event.as_object_mut() {
        map.insert("type".into(), json!(kind));
        map.insert("sequence_number".into(), json!(*sequence));
    }
    *sequence += 1;
    let data = serde_json::to_vec(&event).unwrap_or_default();
    write_event(out, Some(kind), &data);
}

/// Writes event `kind` holding `response` (a `response` object's JSON) as [`emit`] writes
/// `{"response": …}`: the response's members are written once however many events hold it.
pub(super) fn emit_response(sequence: &mut u64, kind: &str, response: &[u8], out: &mut Vec<u8>) {
    // The members in the order of serde's map: `response`, `sequence_number`, `type`.
    event_open(out, kind);
    out.extend_from_slice(b"\"response\":");
    out.extend_from_slice(response);
    event_close(out, sequence, kind);
}

/// Starts event `kind`'s frame and its data's object, as [`write_event`] frames [`emit`]'s.
fn event_open(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {");
}

/// An event's `sequence_number` member (the sequence then advanced).
fn sequence_member(out: &mut Vec<u8>, sequence: &mut u64) {
    out.extend_from_slice(b",\"sequence_number\":");
    json::write_uint(out, *sequence);
    *sequence += 1;
}

/// An event's `type` member, the last in serde's order, and the end of its frame.
fn type_member_and_end(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b",\"type\":");
    json::write_str(out, kind);
    out.extend_from_slice(b"}\n\n");
}

/// Ends an event whose last members are its sequence number and type.
fn event_close(out: &mut Vec<u8>, sequence: &mut u64, kind: &str) {
    sequence_member(out, sequence);
    type_member_and_end(out, kind);
}

/// Writes `response.*` events as canonical events arrive. Items open as their first delta
/// comes and close (their `.done` events) when an item of another kind starts or the answer
/// ends; the closing `response.completed` (or `response.incomplete`) holds them all, with the
/// usage.
pub struct ResponsesStreamEncoder {
    ctx: EncodeCtx,
    id_body: String,
    /// How the request's tools' calls come back (custom tools', namespaces').
    names: CallNames,
    /// Reasoning goes out as a summary (see `Item::Reasoning`).
    summary: bool,
    /// A web search's call block being streamed, with its input so far: its item goes out
    /// whole with its result.
    search: Option<(Value, String)>,
    sequence: u64,
    started: bool,
    items: Vec<Item>,
    /// Index in `items` of the message or reasoning item streaming now.
    open: Option<usize>,
    /// Indices in `items` of the function calls not closed yet, by the canonical call index.
    open_calls: Vec<(u32, usize)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// The text block streaming now, when the provider marks its blocks (Anthropic's cited
    /// answers): its citations become the message's `url_citation`s when it ends.
    block: Option<TextBlock>,
}

/// A text block of a cited answer while it streams.
#[derive(Default)]
struct TextBlock {
    /// Where its text starts in the message, in characters; known once its first text comes.
    start: Option<usize>,
    citations: Vec<Value>,
}

impl ResponsesStreamEncoder {
    pub fn new(ctx: EncodeCtx) -> Self {
        let id_body = id_body(&ctx);
        let names = CallNames::of(ctx.echo.as_ref().and_then(|e| e.get("tools")));
        let summary = wants_summary(&ctx);
        Self {
            ctx,
            id_body,
            names,
            summary,
            search: None,
            sequence: 0,
            started: false,
            items: Vec::new(),
            open: None,
            open_calls: Vec::new(),
            usage: None,
            finish: None,
            block: None,
        }
    }

    /// Ends the text block streaming now, if its text has begun: each web page it cites is
    /// annotated over its text (`response.output_text.annotation.added`), as a whole answer's
    /// are.
    fn end_block(&mut self, out: &mut Vec<u8>) {
        let (Some(index), Some(TextBlock { start: Some(_), .. })) = (self.open, &self.block) else {
            return;
        };
        let Some(TextBlock {
            start: Some(start),
            citations,
        }) = self.block.take()
        else {
            return;
        };
        let Item::Message {
            id,
            text,
            annotations,
        } = &mut self.items[index]
        else {
            return;
        };
        let citations = Value::Array(citations);
        let mut pages = cited_web_pages(Some(&citations)).peekable();
        if pages.peek().is_none() {
            return;
        }
        let end = text.chars().count();
        for (url, title) in pages {
            let annotation = json!({"type": "url_citation", "start_index": start,
                "end_index": end, "url": url, "title": title});
            let event = json!({"item_id": id, "output_index": index, "content_index": 0,
                "annotation_index": annotations.len(), "annotation": annotation});
            annotations.push(annotation);
            emit(
                &mut self.sequence,
                "response.output_text.annotation.added",
                event,
                out,
            );
        }
    }

    fn emit(&mut self, kind: &str, event: Value, out: &mut Vec<u8>) {
        emit(&mut self.sequence, kind, event, out);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = response_bytes(
            &self.ctx,
            "in_progress",
            &Value::Null,
            &Value::Null,
            (&[], "in_progress"),
            None,
        );
        for kind in ["response.created", "response.in_progress"] {
            emit_response(&mut self.sequence, kind, &response, out);
        }
    }

    /// Opens an item: announces it and, for a message or reasoning, its one content part.
    fn open_item(&mut self, item: Item, out: &mut Vec<u8>) -> usize {
        let index = self.items.len();
        if let Item::Message { id, .. } = &item {
            let sequence = &mut self.sequence;
            item_event(
                out,
                sequence,
                "response.output_item.added",
                index,
                &item,
                "in_progress",
            );
            message_events::part(out, sequence, index, id, None);
            self.items.push(item);
            return index;
        }
        item_event(
            out,
            &mut self.sequence,
            "response.output_item.added",
            index,
            &item,
            "in_progress",
        );
        if let Item::Reasoning { id, summary, .. } = &item {
            reasoning_events::part(out, &mut self.sequence, index, id, *summary, None);
        }
        self.items.push(item);
        index
    }

    /// The index of the message (or, with `reasoning`, the reasoning item) streaming now,
    /// opening one (and closing any other item) when needed.
    fn streaming(&mut self, reasoning: bool, out: &mut Vec<u8>) -> usize {
        if let Some(index) = self.open
            && matches!(
                (&self.items[index], reasoning),
                (Item::Message { .. }, false) | (Item::Reasoning { .. }, true)
            )
        {
            return index;
        }
        self.close_all(out);
        let n = self.items.len();
        let item = if reasoning {
            Item::Reasoning {
                id: item_id("rs", &self.id_body, n),
                text: String::new(),
                signature: None,
                summary: self.summary,
            }
        } else {
            Item::Message {
                id: item_id("msg", &self.id_body, n),
                text: String::new(),
                annotations: Vec::new(),
            }
        };
        let index = self.open_item(item, out);
        self.open = Some(index);
        index
    }

    /// An item that comes whole (opaque reasoning data): added and done at once, after the
    /// message or reasoning item streaming now is closed.
    fn whole_item(&mut self, item: Item, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.end_block(out);
        if let Some(open) = self.open.take() {
            self.close(vec![open], out);
        }
        let at = self.open_item(item, out);
        self.close(vec![at], out);
    }

    /// Closes every open item, in the order they were opened.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.end_block(out);
        let mut closing: Vec<usize> = self.open.take().into_iter().collect();
        closing.extend(self.open_calls.drain(..).map(|(_, index)| index));
        closing.sort_unstable();
        self.close(closing, out);
    }

    /// Writes the `.done` events of the items at `closing`.
    fn close(&mut self, closing: Vec<usize>, out: &mut Vec<u8>) {
        let status = item_status(status_of(self.finish.as_ref()).0);
        for index in closing {
            // The item is borrowed while the events advance the sequence: no copy of its text.
            let (item, sequence) = (&self.items[index], &mut self.sequence);
            let id = item.id();
            match item {
                Item::Message {
                    text, annotations, ..
                } => {
                    message_events::text_done(out, sequence, index, id, text);
                    message_events::part(out, sequence, index, id, Some((text, annotations)));
                    item_event(
                        out,
                        sequence,
                        "response.output_item.done",
                        index,
                        item,
                        status,
                    );
                    continue;
                }
                Item::Reasoning { text, summary, .. } => {
                    reasoning_events::text_done(out, sequence, index, id, *summary, text);
                    reasoning_events::part(out, sequence, index, id, *summary, Some(text));
                }
                Item::FunctionCall {
                    name, arguments, ..
                } => write_arguments_event(out, sequence, id, index, arguments, Some(name)),
                // The input comes whole: the function standing for the tool streams its
                // arguments as JSON, of which the input is one string.
                Item::CustomCall { arguments, .. } => {
                    let input = custom_input(arguments);
                    if !input.is_empty() {
                        emit(
                            sequence,
                            "response.custom_tool_call_input.delta",
                            json!({"item_id": id, "output_index": index, "delta": input}),
                            out,
                        );
                    }
                    emit(
                        sequence,
                        "response.custom_tool_call_input.done",
                        json!({"item_id": id, "output_index": index, "input": input}),
                        out,
                    );
                }
                Item::WebSearchCall { .. } => {
                    for kind in [
                        "response.web_search_call.in_progress",
                        "response.web_search_call.searching",
                        "response.web_search_call.completed",
                    ] {
                        emit(
                            sequence,
                            kind,
                            json!({"item_id": id, "output_index": index}),
                            out,
                        );
                    }
                }
                Item::RedactedReasoning { .. } => {}
            }
            item_event(
                out,
                sequence,
                "response.output_item.done",
                index,
                item,
                status,
            );
        }
    }

    /// The closing `response.*` event, with every item and the usage.
    fn terminal(&mut self, out: &mut Vec<u8>) {
        let (status, incomplete) = status_of(self.finish.as_ref());
        let response = response_bytes(
            &self.ctx,
            status,
            &incomplete,
            &Value::Null,
            (&self.items, item_status(status)),
            self.usage.as_ref(),
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        emit_response(&mut self.sequence, kind, &response, out);
        if let Some(keep) = &self.ctx.keep {
            (keep.0)(&response_id(&self.ctx), Bytes::from(response));
        }
    }
}

impl StreamEncoder for ResponsesStreamEncoder {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { .. } => self.ensure_started(out),
            StreamEvent::TextDelta(text) | StreamEvent::RefusalDelta(text) => {
                if text.is_empty() {
                    return;
                }
                self.ensure_started(out);
                let index = self.streaming(false, out);
                if let Item::Message {
                    id, text: joined, ..
                } = &mut self.items[index]
                {
                    if let Some(block @ TextBlock { start: None, .. }) = &mut self.block {
                        block.start = Some(joined.chars().count());
                    }
                    joined.push_str(text);
                    write_text_delta(out, id, index, self.sequence, text);
                    self.sequence += 1;
                }
            }
            StreamEvent::ReasoningDelta(text) => {
                if text.is_empty() {
                    return;
                }
                self.ensure_started(out);
                let index = self.streaming(true, out);
                if let Item::Reasoning {
                    id,
                    text: joined,
                    summary,
                    ..
                } = &mut self.items[index]
                {
                    joined.push_str(text);
                    let sequence = &mut self.sequence;
                    write_reasoning_delta(out, sequence, *summary, id, index, text);
                }
            }
            StreamEvent::ReasoningSignature(value) => {
                self.ensure_started(out);
                let index = self.streaming(true, out);
                if let Item::Reasoning { signature, .. } = &mut self.items[index] {
                    *signature = Some(value.clone());
                }
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                // A message or reasoning item ends where a call starts; earlier calls stay
                // open, since some providers interleave the arguments of parallel calls.
                if let Some(open) = self.open.take() {
                    self.close(vec![open], out);
                }
                let n = self.items.len();
                let item = call_item(&self.names, &self.id_body, n, (id, name, ""));
                let at = self.open_item(item, out);
                self.open_calls.push((*index, at));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(&(_, at)) = self.open_calls.iter().find(|(i, _)| i == index) else {
                    return;
                };
                if let Item::CustomCall {
                    arguments: joined, ..
                } = &mut self.items[at]
                {
                    joined.push_str(arguments);
                } else if let Item::FunctionCall {
                    id,
                    arguments: joined,
                    ..
                } = &mut self.items[at]
                {
                    joined.push_str(arguments);
                    write_arguments_delta(out, &mut self.sequence, id, at, arguments);
                }
            }
            StreamEvent::Usage(usage) => match &mut self.usage {
                Some(u) => u.merge(usage),
                None => self.usage = Some(*usage),
            },
            StreamEvent::Finish(reason) => {
                self.ensure_started(out);
                self.finish.get_or_insert_with(|| reason.clone());
            }
            StreamEvent::RedactedReasoning(data) => {
                let id = item_id("rs", &self.id_body, self.items.len());
                let item = Item::RedactedReasoning {
                    id,
                    data: data.clone(),
                };
                self.whole_item(item, out);
            }
            // A Gemini call's signature comes just before the call: its item goes first.
            StreamEvent::ToolCallSignature { signature, .. } => {
                let item = gemini_signature_item(&self.id_body, self.items.len(), signature);
                self.whole_item(item, out);
            }
            // A web search's call is held until its result, and both go out as one item.
            StreamEvent::ServerToolStart(block) => {
                if block.get("type").and_then(Value::as_str) == Some("server_tool_use") {
                    self.search = Some((block.clone(), String::new()));
                    return;
                }
                let Some((call, input)) = self.search.take() else {
                    return;
                };
                let input = (!input.is_empty()).then_some(input.as_str());
                let n = self.items.len();
                if let Some(mut item) = web_search_call(&call, input, &self.id_body, n) {
                    add_search_result(block, &mut item);
                    self.whole_item(item, out);
                }
            }
            StreamEvent::ServerToolInputDelta(fragment) => {
                if let Some((_, input)) = &mut self.search {
                    input.push_str(fragment);
                }
            }
            // Citations and text block boundaries are Anthropic's; chat completions' log
            // probabilities are not asked for here (the Responses API asks with `include`). In-stream
            // provider errors become `error()` calls by the relay.
            StreamEvent::TextBlockStart => {
                self.end_block(out);
                self.block = Some(TextBlock::default());
            }
            StreamEvent::Citation(citation) => {
                if let Some(block) = &mut self.block {
                    block.citations.push(citation.clone());
                }
            }
            StreamEvent::Logprobs(_) | StreamEvent::Error(_) => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_all(out);
        self.terminal(out);
    }

    /// An `error` event, then `response.failed`: never `response.completed`, so no client
    /// takes the cut answer for a whole one.
    fn error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.emit(
            "error",
            json!({"code": error.code, "message": error.message, "param": error.param}),
            out,
        );
        let failure = json!({"code": failure_code(error.kind), "message": error.message});
        let response = response_bytes(
            &self.ctx,
            "failed",
            &Value::Null,
            &failure,
            (&self.items, "incomplete"),
            self.usage.as_ref(),
        );
        emit_response(&mut self.sequence, "response.failed", &response, out);
    }
}

#[cfg(test)]
mod tests {
    use super::{Item, emit, message_events, object, output_text, reasoning_events};
    use serde_json::json;

    /// Writes an event and advances the sequence.
    type Writer<'a> = dyn Fn(&mut Vec<u8>, &mut u64) + 'a;

    /// A message item's events written by hand are byte for byte those [`emit`] writes from
    /// the trees the encoder built for them before: the item added and done, its part added
    /// and done, its text done.
    #[test]
    fn a_message_items_events_are_what_serde_writes() {
        let text = |out: Vec<u8>| String::from_utf8(out).unwrap();
        for (id, body) in [
            ("msg_0193abcd_0", "Hello"),
            ("msg_\"q\"", "caf\u{e9} \"quoted\"\n\t\u{1} \u{1f600}"),
            ("", ""),
        ] {
            for (index, sequence) in [(0_usize, 0_u64), (7, 123_456)] {
                for status in ["completed", "incomplete"] {
                    let item = Item::Message {
                        id: id.into(),
                        text: body.into(),
                        annotations: Vec::new(),
                    };
                    let cases: [(&str, Box<Writer>, serde_json::Value); 5] = [
                        (
                            "response.output_item.added",
                            Box::new(|out, s| {
                                super::item_event(
                                    out,
                                    s,
                                    "response.output_item.added",
                                    index,
                                    &item,
                                    "in_progress",
                                )
                            }),
                            object([
                                ("output_index", index.into()),
                                ("item", item.to_json("in_progress")),
                            ]),
                        ),
                        (
                            "response.content_part.added",
                            Box::new(|out, s| message_events::part(out, s, index, id, None)),
                            json!({"item_id": id, "output_index": index, "content_index": 0,
                                "part": output_text("", &[])}),
                        ),
                        (
                            "response.output_text.done",
                            Box::new(|out, s| message_events::text_done(out, s, index, id, body)),
                            json!({"item_id": id, "output_index": index, "content_index": 0,
                                "text": body, "logprobs": []}),
                        ),
                        (
                            "response.content_part.done",
                            Box::new(|out, s| {
                                message_events::part(out, s, index, id, Some((body, &[])))
                            }),
                            json!({"item_id": id, "output_index": index, "content_index": 0,
                                "part": output_text(body, &[])}),
                        ),
                        (
                            "response.output_item.done",
                            Box::new(|out, s| {
                                super::item_event(
                                    out,
                                    s,
                                    "response.output_item.done",
                                    index,
                                    &item,
                                    status,
                                )
                            }),
                            object([
                                ("output_index", index.into()),
                                ("item", item.to_json(status)),
                            ]),
                        ),
                    ];
                    for (kind, ours, tree) in cases {
                        let (mut hand, mut serde) = (Vec::new(), Vec::new());
                        let (mut hand_next, mut serde_next) = (sequence, sequence);
                        ours(&mut hand, &mut hand_next);
                        emit(&mut serde_next, kind, tree, &mut serde);
                        assert_eq!(text(hand), text(serde), "{kind}");
                        assert_eq!(hand_next, serde_next, "{kind}");
                    }
                }
            }
        }
    }

    /// The other items' added and done events, a function call's item written by hand among
    /// them, and a call's `function_call_arguments.done` are byte for byte what [`emit`] writes
    /// from the trees the encoder built for them before.
    #[test]
    fn the_other_items_events_are_what_serde_writes() {
        use super::{item_event, write_arguments_event};
        let text_of = |out: Vec<u8>| String::from_utf8(out).unwrap();
        let items = [
            Item::FunctionCall {
                id: "fc_0193abcd_1".into(),
                call_id: "call_\"x\"".into(),
                name: "get_weather".into(),
                namespace: None,
                arguments: "{\"city\":\"Par\u{e9}s\",\n\"days\":1}".into(),
            },
            Item::FunctionCall {
                id: String::new(),
                call_id: String::new(),
                name: "f\u{1}".into(),
                namespace: None,
                arguments: String::new(),
            },
            Item::FunctionCall {
                id: "fc_2".into(),
                call_id: "call_2".into(),
                name: "spawn_agent".into(),
                namespace: Some("multi_agent_\"v1\"".into()),
                arguments: "{}".into(),
            },
            Item::Reasoning {
                id: "rs_1".into(),
                text: "think".into(),
                signature: Some("sig".into()),
                summary: true,
            },
            Item::Reasoning {
                id: "rs_\"1b\"".into(),
                text: "caf\u{e9}\n\t\u{1}".into(),
                signature: None,
                summary: false,
            },
            Item::Reasoning {
                id: "rs_1c".into(),
                text: String::new(),
                signature: Some("s\"ig".into()),
                summary: false,
            },
            Item::Reasoning {
                id: "rs_1d".into(),
                text: "sum".into(),
                signature: None,
                summary: true,
            },
            Item::RedactedReasoning {
                id: "rs_2".into(),
                data: "opaque".into(),
            },
            Item::WebSearchCall {
                id: "ws_3".into(),
                query: "q".into(),
                sources: vec!["https://example.com/".into()],
                failed: false,
            },
            Item::CustomCall {
                id: "ctc_4".into(),
                call_id: "call_4".into(),
                name: "apply_patch".into(),
                namespace: None,
                arguments: "{\"input\":\"*** Begin\"}".into(),
            },
        ];
        for item in &items {
            for (index, sequence) in [(0_usize, 0_u64), (9, 98_765)] {
                for (kind, status) in [
                    ("response.output_item.added", "in_progress"),
                    ("response.output_item.done", "completed"),
                    ("response.output_item.done", "incomplete"),
                ] {
                    let (mut hand, mut serde) = (Vec::new(), Vec::new());
                    let (mut hand_next, mut serde_next) = (sequence, sequence);
                    item_event(&mut hand, &mut hand_next, kind, index, item, status);
                    let tree = object([
                        ("output_index", index.into()),
                        ("item", item.to_json(status)),
                    ]);
                    emit(&mut serde_next, kind, tree, &mut serde);
                    assert_eq!(text_of(hand), text_of(serde), "{kind}");
                    assert_eq!(hand_next, serde_next);
                }
                if let Item::Reasoning {
                    id, text, summary, ..
                } = item
                {
                    let part = |text: &str| {
                        if *summary {
                            super::summary_text(text)
                        } else {
                            super::reasoning_text(text)
                        }
                    };
                    let (added, text_done, done) = if *summary {
                        (
                            "response.reasoning_summary_part.added",
                            "response.reasoning_summary_text.done",
                            "response.reasoning_summary_part.done",
                        )
                    } else {
                        (
                            "response.content_part.added",
                            "response.reasoning_text.done",
                            "response.content_part.done",
                        )
                    };
                    let at = super::part_index(added);
                    let mut part_added = object([
                        ("item_id", id.as_str().into()),
                        ("output_index", index.into()),
                        ("part", part("")),
                    ]);
                    part_added[at] = json!(0);
                    let mut whole = json!({"item_id": id, "output_index": index, "text": text});
                    whole[at] = json!(0);
                    let mut part_done = object([
                        ("item_id", id.as_str().into()),
                        ("output_index", index.into()),
                        ("part", part(text)),
                    ]);
                    part_done[at] = json!(0);
                    let cases: [(&str, Box<Writer>, serde_json::Value); 3] = [
                        (
                            added,
                            Box::new(|out, s| {
                                reasoning_events::part(out, s, index, id, *summary, None)
                            }),
                            part_added,
                        ),
                        (
                            text_done,
                            Box::new(|out, s| {
                                reasoning_events::text_done(out, s, index, id, *summary, text)
                            }),
                            whole,
                        ),
                        (
                            done,
                            Box::new(|out, s| {
                                reasoning_events::part(out, s, index, id, *summary, Some(text))
                            }),
                            part_done,
                        ),
                    ];
                    for (kind, ours, tree) in cases {
                        let (mut hand, mut serde) = (Vec::new(), Vec::new());
                        let (mut hand_next, mut serde_next) = (sequence, sequence);
                        ours(&mut hand, &mut hand_next);
                        emit(&mut serde_next, kind, tree, &mut serde);
                        assert_eq!(text_of(hand), text_of(serde), "{kind}");
                        assert_eq!(hand_next, serde_next, "{kind}");
                    }
                }
                if let Item::FunctionCall {
                    id,
                    name,
                    arguments,
                    ..
                } = item
                {
                    let kind = "response.function_call_arguments.done";
                    let (mut hand, mut serde) = (Vec::new(), Vec::new());
                    let (mut hand_next, mut serde_next) = (sequence, sequence);
                    write_arguments_event(
                        &mut hand,
                        &mut hand_next,
                        id,
                        index,
                        arguments,
                        Some(name),
                    );
                    emit(
                        &mut serde_next,
                        kind,
                        json!({"item_id": id, "output_index": index, "name": name,
                            "arguments": arguments}),
                        &mut serde,
                    );
                    assert_eq!(text_of(hand), text_of(serde), "{kind}");
                    assert_eq!(hand_next, serde_next);
                }
            }
        }
    }

    /// A `response` object written member by member is what serde writes from its tree, byte for
    /// byte: with the request's settings echoed (all, some, none, with escapes), each status, an
    /// error and incomplete details, output items, usage or none, kept or not.
    #[test]
    fn the_written_response_is_what_serde_writes_byte_for_byte() {
        use super::{response_bytes, response_json};
        use crate::canonical::Usage;
        use crate::dialect::{EncodeCtx, KeepAnswer};
        use serde_json::Value;
        let echoes = [
            None,
            Some(json!({})),
            Some(
                json!({"instructions": "Be \"brief\".\n", "max_output_tokens": 64, "metadata": {"b": 1, "a": "x"},
                "parallel_tool_calls": false, "reasoning": {"effort": "low", "summary": "auto"},
                "temperature": 0.2, "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
                "tool_choice": "required", "tools": [{"type": "function", "name": "f"}], "top_p": 0.9,
                "user": "u\u{e9}"}),
            ),
            Some(json!({"temperature": null, "tools": [], "user": "x"})),
        ];
        let outputs = [
            Vec::new(),
            vec![
                Item::Message {
                    id: "msg_1".into(),
                    text: "caf\u{e9}\t\"q\"".into(),
                    annotations: vec![json!({"type": "url_citation", "start_index": 0,
                        "end_index": 5, "url": "https://a.example/\"q\"", "title": "T\u{e9}"})],
                },
                Item::Reasoning {
                    id: "rs_2".into(),
                    text: "think".into(),
                    signature: Some("sig".into()),
                    summary: false,
                },
                Item::FunctionCall {
                    id: "fc_3".into(),
                    call_id: "call_3".into(),
                    name: "f".into(),
                    namespace: None,
                    arguments: "{\"a\":1}".into(),
                },
            ],
        ];
        let usage = Usage {
            input_tokens: 19,
            output_tokens: 12,
            cache_read_tokens: 4,
            cache_write_tokens: 7,
            reasoning_tokens: 3,
            ..Default::default()
        };
        let most = Usage {
            input_tokens: u64::MAX,
            output_tokens: 1,
            ..Default::default()
        };
        for echo in &echoes {
            for keep in [false, true] {
                let ctx = EncodeCtx {
                    prompt_estimate: 0,
                    id: "0193-abcd\"e".into(),
                    model: "al\\ias".into(),
                    created: -5,
                    include_usage: false,
                    echo: echo.clone(),
                    keep: keep.then(|| KeepAnswer(std::sync::Arc::new(|_: &str, _| {}))),
                };
                for (status, incomplete, error) in [
                    ("in_progress", Value::Null, Value::Null),
                    ("completed", Value::Null, Value::Null),
                    (
                        "incomplete",
                        json!({"reason": "max_output_tokens"}),
                        Value::Null,
                    ),
                    (
                        "failed",
                        Value::Null,
                        json!({"code": "server_error", "message": "m"}),
                    ),
                ] {
                    for output in &outputs {
                        for usage in [None, Some(&usage), Some(&most)] {
                            let items = (output.as_slice(), super::item_status(status));
                            let ours =
                                response_bytes(&ctx, status, &incomplete, &error, items, usage);
                            let tree = response_json(
                                &ctx,
                                status,
                                incomplete.clone(),
                                error.clone(),
                                output.iter().map(|i| i.to_json(items.1)).collect(),
                                usage,
                            );
                            assert_eq!(
                                String::from_utf8(ours).unwrap(),
                                serde_json::to_string(&tree).unwrap()
                            );
                        }
                    }
                }
            }
        }
    }
}

//! Anthropic Messages wire format: request validation (roles, `max_tokens`, `tool_use` /
//! `tool_result` pairing), the message object, the SSE event sequence and the error envelope.
//! Field names follow the Anthropic API reference.

use serde_json::{Value, json};

use crate::handler::SimError;
use crate::model::{
    CacheMark, ClaudeThinking, Conversation, Finish, IdGen, JsonMode, Output, Piece, ThinkingMode,
    Tool, ToolChoice, prefix_key, thought, word_pieces,
};
use crate::ordered::{Ordered, member, ordered};
use crate::stream::{FrameKind, StreamBody};

/// Context window reported by the simulated context-length error.
const CONTEXT_WINDOW: u64 = 200_000;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

pub(crate) fn missing_key() -> SimError {
    SimError::new(401, "x-api-key header is required")
}

pub(crate) fn missing_version() -> SimError {
    SimError::bad_request("anthropic-version: header is required")
}

pub(crate) fn invalid_json(err: &serde_json::Error) -> SimError {
    SimError::bad_request(format!("There was an error parsing the body: {err}"))
}

pub(crate) fn context_error(input_tokens: u64) -> SimError {
    SimError::bad_request(format!(
        "prompt is too long: {} tokens > {CONTEXT_WINDOW} maximum",
        CONTEXT_WINDOW + input_tokens.max(1)
    ))
}

pub(crate) fn status_error(status: u16) -> SimError {
    let message = match status {
        400 => "Simulated invalid request.",
        401 => "invalid x-api-key",
        402 => "Your credit balance is too low to access the Anthropic API.",
        403 => "Your API key does not have permission to use the specified resource.",
        404 => "The requested resource could not be found.",
        413 => "Request exceeds the maximum allowed number of bytes.",
        429 => {
            "This request would exceed the rate limit for your organization of 50 requests per \
             minute. Please reduce the request rate or try again later."
        }
        500 => "Internal server error",
        504 => "Request timed out.",
        529 => "Overloaded",
        s if s >= 500 => "Internal server error",
        _ => "Simulated invalid request.",
    };
    SimError::new(status, message)
}

/// An image block's `source` as a data URI (base64) or its URL.
fn image_source(source: Option<&Value>) -> Option<String> {
    let source = source?;
    let get = |key: &str| source.get(key).and_then(Value::as_str);
    match get("type")? {
        "base64" => Some(format!(
            "data:{};base64,{}",
            get("media_type")?,
            get("data")?
        )),
        "url" => get("url").map(str::to_owned),
        _ => None,
    }
}

/// A document block's `source` as `{documents}` shows it: inline data's media type and size, a
/// text source's size, a custom-content source's number of blocks (`content:<blocks>`), or the
/// URL; `None` for a source the API does not take.
fn document_source(source: Option<&Value>) -> Option<String> {
    let source = source?;
    let get = |key: &str| source.get(key).and_then(Value::as_str);
    match get("type")? {
        "base64" => crate::model::inline_document(get("media_type")?, get("data")?),
        "text" => Some(format!("{}:{}", get("media_type")?, get("data")?.len())),
        "url" => get("url").map(str::to_owned),
        "content" => match source.get("content")? {
            Value::String(_) => Some("content:1".to_owned()),
            Value::Array(blocks) => Some(format!("content:{}", blocks.len())),
            _ => None,
        },
        _ => None,
    }
}

/// The citation an answer makes of a document with citations enabled: a text document's first
/// sentence, located by character (`char_location`), or a custom-content document's first
/// block (`content_block_location`). Other sources (a PDF, a URL) are not read here, so not
/// cited.
fn citation(block: &Value, document_index: usize) -> Option<Value> {
    if !citations_enabled(block) {
        return None;
    }
    let source = block.get("source")?;
    let title = block.get("title").cloned().unwrap_or(Value::Null);
    if source.get("type").and_then(Value::as_str) == Some("content") {
        let first = match source.get("content")? {
            Value::String(text) => text.as_str(),
            blocks => blocks.pointer("/0/text").and_then(Value::as_str)?,
        };
        return Some(json!({
            "type": "content_block_location",
            "cited_text": first,
            "document_index": document_index,
            "document_title": title,
            "start_block_index": 0,
            "end_block_index": 1,
        }));
    }
    if source.get("type").and_then(Value::as_str) != Some("text") {
        return None;
    }
    let text = source.get("data").and_then(Value::as_str)?;
    let sentence = match text.find(". ") {
        Some(end) => &text[..end + 2],
        None => text,
    };
    Some(json!({
        "type": "char_location",
        "cited_text": sentence,
        "document_index": document_index,
        "document_title": title,
        "start_char_index": 0,
        "end_char_index": sentence.chars().count(),
    }))
}

/// Characters of a search result's title, source and texts.
fn search_result_chars(block: &Value) -> usize {
    let field = |key: &str| block.get(key).and_then(Value::as_str).map_or(0, chars);
    let texts: usize = block
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(chars)
        .sum();
    field("title") + field("source") + texts
}

/// The citation an answer makes of a search result with citations enabled: its first block
/// (`search_result_location`).
fn search_result_citation(block: &Value, search_result_index: usize) -> Option<Value> {
    if !citations_enabled(block) {
        return None;
    }
    let first = block.pointer("/content/0/text").and_then(Value::as_str)?;
    Some(json!({
        "type": "search_result_location",
        "cited_text": first,
        "search_result_index": search_result_index,
        "source": block.get("source").cloned().unwrap_or(Value::Null),
        "title": block.get("title").cloned().unwrap_or(Value::Null),
        "start_block_index": 0,
        "end_block_index": 1,
    }))
}

fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

pub(crate) fn error_body(ids: &IdGen, err: &SimError) -> Value {
    json!({
        "type": "error",
        "error": {
            "type": err.error_type.unwrap_or(error_type(err.status)),
            "message": err.message,
        },
        "request_id": ids.make("req_011C", 20),
    })
}

pub(crate) fn stream_error_frame() -> Vec<u8> {
    let data = json!({
        "type": "error",
        "error": { "type": "overloaded_error", "message": "Overloaded" },
    })
    .to_string();
    let mut out = Vec::new();
    switchyard_protocol::sse::write_event(&mut out, Some("error"), data.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Text of a `tool_result` content: a string or text blocks.
fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Parses a Messages request; `count_only` (the `count_tokens` endpoint) does not need
/// `max_tokens`.
pub(crate) fn parse_chat(mut body: Value, count_only: bool) -> Result<Conversation, SimError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(SimError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| SimError::bad_request("model: Field required"))?
        .to_owned();
    let max_tokens = obj.get("max_tokens");
    if !count_only && max_tokens.is_none() {
        return Err(SimError::bad_request("max_tokens: Field required"));
    }
    let max_tokens = match max_tokens {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(SimError::bad_request(
                    "max_tokens: Input should be a valid integer greater than or equal to 1",
                ));
            }
        },
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(SimError::bad_request(
                "messages: at least one message is required",
            ));
        }
        Some(_) => {
            return Err(SimError::bad_request(
                "messages: Input should be a valid list",
            ));
        }
        None => return Err(SimError::bad_request("messages: Field required")),
    };
    let mut conv = Conversation {
        model,
        max_output_tokens: max_tokens,
        ..Conversation::default()
    };
    // The last `cache_control` breakpoint: (message index, or none in the system prompt;
    // block index; input characters up to and including the block; cached for an hour).
    let mut breakpoint: Option<(Option<usize>, usize, usize, bool)> = None;
    match obj.get("system") {
        Some(Value::String(s)) => {
            conv.input_chars += chars(s);
            conv.system_text.push_str(s);
        }
        Some(Value::Array(blocks)) => {
            for (j, block) in blocks.iter().enumerate() {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                conv.input_chars += chars(text);
                conv.system_text.push_str(text);
                if let Some(hour) = cache_control(block) {
                    breakpoint = Some((None, j, conv.input_chars, hour));
                }
            }
        }
        _ => {}
    }

    // `tool_use` ids of the previous assistant turn that the next user turn must answer.
    let mut awaiting: Vec<String> = Vec::new();
    // Documents and search results so far in the request, which citations count.
    let mut document_count = 0;
    let mut search_result_count = 0;
    let mut last_results: Option<Vec<String>> = None;
    // The last assistant turn: its index, and whether it opens with (redacted) thinking.
    let mut last_assistant: Option<(usize, bool)> = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "system" {
            conv.input_chars += mid_conversation_system(messages, i)?;
            continue;
        }
        if role != "user" && role != "assistant" {
            return Err(SimError::bad_request(format!(
                "messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
            )));
        }
        let single;
        let blocks: &[Value] = match message.get("content") {
            Some(Value::String(s)) => {
                single = [json!({ "type": "text", "text": s })];
                &single
            }
            Some(Value::Array(blocks)) => blocks,
            _ => {
                return Err(SimError::bad_request(format!(
                    "messages.{i}.content: Field required"
                )));
            }
        };
        let mut text = Vec::new();
        let mut images = Vec::new();
        let mut documents = Vec::new();
        let mut results = Vec::new();
        let mut uses = Vec::new();
        let mut citations = Vec::new();
        let mut server_uses: Vec<String> = Vec::new();
        if role == "assistant" {
            let first = blocks
                .first()
                .and_then(|b| b.get("type"))
                .and_then(Value::as_str);
            last_assistant = Some((i, matches!(first, Some("thinking" | "redacted_thinking"))));
        }
        for (j, block) in blocks.iter().enumerate() {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                    conv.input_chars += chars(t);
                    text.push(t);
                }
                Some("image") => images.extend(image_source(block.get("source"))),
                Some("document") if role == "user" => {
                    let source = block.get("source");
                    if let Some(text) = source.and_then(|s| s.get("data")).and_then(Value::as_str)
                        && source.and_then(|s| s.get("type")).and_then(Value::as_str)
                            == Some("text")
                    {
                        conv.input_chars += chars(text);
                    }
                    if let Some(content) = source.and_then(|s| s.get("content")) {
                        conv.input_chars += chars(&content.to_string());
                    }
                    documents.push(document_source(source).ok_or_else(|| {
                        SimError::bad_request(format!(
                            "messages.{i}.content.{j}.document.source: Input tag does not match \
                             any of the expected tags: 'base64', 'text', 'url' (or its base64 \
                             data is invalid)"
                        ))
                    })?);
                    citations.extend(citation(block, document_count));
                    document_count += 1;
                }
                Some("search_result") if role == "user" => {
                    conv.input_chars += search_result_chars(block);
                    citations.extend(search_result_citation(block, search_result_count));
                    search_result_count += 1;
                }
                Some("thinking") => {
                    if block
                        .get("signature")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        return Err(SimError::bad_request(format!(
                            "messages.{i}.content.{j}.thinking.signature: Field required"
                        )));
                    }
                    conv.input_chars += block
                        .get("thinking")
                        .and_then(Value::as_str)
                        .map_or(0, chars);
                }
                Some("tool_use") if role == "assistant" => {
                    let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                    uses.push(id.to_owned());
                    if let Some(name) = block.get("name").and_then(Value::as_str) {
                        conv.called_tools.push(name.to_owned());
                    }
                    conv.input_chars += block.get("name").and_then(Value::as_str).map_or(0, chars);
                    conv.input_chars += block.get("input").map_or(0, |v| chars(&v.to_string()));
                }
                Some("tool_result") if role == "user" => {
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    match awaiting.iter().position(|a| a == id) {
                        Some(pos) => {
                            awaiting.remove(pos);
                        }
                        None => {
                            return Err(SimError::bad_request(format!(
                                "messages.{i}.content.{j}: unexpected `tool_use_id` found in \
                                 `tool_result` blocks: {id}. Each `tool_result` block must have \
                                 a corresponding `tool_use` block in the previous message."
                            )));
                        }
                    }
                    let result = tool_result_text(block.get("content"));
                    conv.input_chars += chars(&result);
                    results.push(result);
                    // A result's images and documents (an agent's screenshot, a PDF its tool
                    // fetched) are the user turn's too.
                    if let Some(Value::Array(inner)) = block.get("content") {
                        for (k, b) in inner.iter().enumerate() {
                            match b.get("type").and_then(Value::as_str) {
                                Some("image") => images.extend(image_source(b.get("source"))),
                                Some("search_result") => {
                                    conv.input_chars += search_result_chars(b);
                                    citations
                                        .extend(search_result_citation(b, search_result_count));
                                    search_result_count += 1;
                                }
                                Some("document") => {
                                    document_count += 1;
                                    documents.push(document_source(b.get("source")).ok_or_else(
                                        || {
                                            SimError::bad_request(format!(
                                                "messages.{i}.content.{j}.content.{k}.document.\
                                                 source: Input tag does not match any of the \
                                                 expected tags: 'base64', 'text', 'url' (or its \
                                                 base64 data is invalid)"
                                            ))
                                        },
                                    )?);
                                }
                                _ => {}
                            }
                        }
                    }
                }
                // A server tool's call and its result, sent back with the assistant's turn:
                // the result must answer a call of the same turn, and both are read again as
                // input (search results are billed as input tokens on later turns).
                Some("server_tool_use") if role == "assistant" => {
                    let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                    server_uses.push(id.to_owned());
                    conv.input_chars += chars(&block.to_string());
                }
                Some(kind) if role == "assistant" && kind.ends_with("_tool_result") => {
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !server_uses.iter().any(|u| u == id) {
                        return Err(SimError::bad_request(format!(
                            "messages.{i}.content.{j}: `{kind}` block's `tool_use_id` {id} \
                             answers no `server_tool_use` block before it in this message"
                        )));
                    }
                    conv.input_chars += chars(&block.to_string());
                }
                Some("tool_use" | "tool_result") => {
                    return Err(SimError::bad_request(format!(
                        "messages.{i}.content.{j}: this block type is not allowed in a `{role}` \
                         message"
                    )));
                }
                _ => {}
            }
            if let Some(hour) = cache_control(block) {
                breakpoint = Some((Some(i), j, conv.input_chars, hour));
            }
        }
        // The previous assistant turn's `tool_use` blocks must all be answered right here.
        if !awaiting.is_empty() {
            return Err(SimError::bad_request(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately \
                 after: {}. Each `tool_use` block must have a corresponding `tool_result` block \
                 in the next message.",
                i.saturating_sub(1),
                awaiting.join(", ")
            )));
        }
        awaiting = uses;
        if role == "user" {
            conv.last_user_text = text.join("\n");
            conv.last_user_images = images;
            conv.last_user_documents = documents;
            conv.citations = citations;
            last_results = (!results.is_empty()).then_some(results);
        } else {
            last_results = None;
        }
    }
    conv.tool_results = last_results.map(|r| r.join(" "));
    let thinking = thinking_mode(obj, &conv.model, max_tokens)?;
    conv.thinking = thinking.is_some();
    // A thinking turn that called tools goes on after their results: the API needs the turn's
    // thinking back, first in it. Adaptive thinking may have skipped thinking on that turn.
    if thinking == Some(ThinkingMode::Budget)
        && conv.tool_results.is_some()
        && let Some((i, false)) = last_assistant
    {
        return Err(SimError::bad_request(format!(
            "messages.{i}.content.0.type: with `thinking` enabled, the final `assistant` message \
             (the one whose `tool_use` blocks the last `tool_result` blocks answer) must start \
             with a `thinking` or `redacted_thinking` block; send the previous turn's thinking \
             blocks back, or disable `thinking`"
        )));
    }
    conv.cache_mark = breakpoint.map(|(message, block, chars, hour)| CacheMark {
        key: prefix_key(&conv.model, obj.get("system"), messages, message, block),
        chars,
        hour,
    });

    let mut offers_web_search = false;
    if let Some(Value::Array(tools)) = obj.get_mut("tools") {
        for tool in tools {
            // Server tools (web search, code execution...) have no input schema.
            let Some(schema) = tool.get_mut("input_schema").map(Value::take) else {
                offers_web_search |= tool
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("web_search_"));
                continue;
            };
            if tool.get("strict").and_then(Value::as_bool) == Some(true) {
                let i = conv.tools.len();
                compiled_schema(&schema, &format!("tools.{i}.input_schema"))?;
            }
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                conv.tools.push(Tool {
                    name: name.to_owned(),
                    schema,
                });
            }
        }
    }
    let choice = obj.get("tool_choice");
    conv.tool_choice = match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        Some("none") => ToolChoice::None,
        Some("any") => ToolChoice::Required,
        Some("tool") => match choice.and_then(|c| c.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => ToolChoice::Required,
        },
        _ => ToolChoice::Auto,
    };
    conv.parallel_tool_calls = !choice
        .and_then(|c| c.get("disable_parallel_tool_use"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Structured outputs: `output_config.format`, or the earlier beta's `output_format`.
    let format = match obj
        .get_mut("output_config")
        .and_then(|c| c.get_mut("format"))
    {
        Some(format) => Some(format.take()),
        None => obj.get_mut("output_format").map(Value::take),
    };
    if let Some(mut format) = format
        && format.get("type").and_then(Value::as_str) == Some("json_schema")
    {
        let schema = format.get_mut("schema").map(Value::take);
        if let Some(schema) = &schema {
            compiled_schema(schema, "output_config.format.schema")?;
        }
        conv.json = Some(JsonMode { schema });
    }
    conv.stop = obj
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    conv.stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if offers_web_search && conv.tool_results.is_none() && !conv.last_user_text.is_empty() {
        conv.citations
            .push(web_search_citation(&conv.last_user_text));
        conv.web_search = Some(conv.last_user_text.clone());
    }
    Ok(conv)
}

/// Refuses, as Claude's structured outputs do, a schema (a JSON output's or a strict tool's)
/// with keywords their compiler does not take: numeric bounds, string lengths, array sizes
/// beyond `minItems` 0 or 1, property counts. Subschemas are checked too.
pub(crate) fn compiled_schema(schema: &Value, at: &str) -> Result<(), SimError> {
    // Written out here, not taken from the gateway's fitting of schemas: the simulator stands
    // for Claude, and a keyword the gateway forgot to fit must be refused here to be noticed.
    const REFUSED: [&str; 11] = [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    ];
    let Value::Object(node) = schema else {
        return Ok(());
    };
    let kind = node.get("type").and_then(Value::as_str).unwrap_or("schema");
    for (key, value) in node {
        if REFUSED.contains(&key.as_str())
            || (key == "minItems" && value.as_u64().is_none_or(|n| n > 1))
        {
            return Err(SimError::bad_request(format!(
                "{at}: For '{kind}' type, property '{key}' is not supported"
            )));
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = node.get(key) {
            compiled_schema(sub, at)?;
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        for sub in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            compiled_schema(sub, at)?;
        }
    }
    for key in ["properties", "$defs", "definitions"] {
        for sub in node
            .get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.values())
        {
            compiled_schema(sub, at)?;
        }
    }
    Ok(())
}

/// `thinking`: whether and how it is on, checked as Claude checks it ([`ClaudeThinking`]).
fn thinking_mode(
    obj: &serde_json::Map<String, Value>,
    model: &str,
    max_tokens: Option<u64>,
) -> Result<Option<ThinkingMode>, SimError> {
    ClaudeThinking {
        thinking: obj.get("thinking"),
        model,
        max_tokens,
        temperature: obj.get("temperature").and_then(Value::as_f64),
        top_k: obj.get("top_k").is_some_and(|k| !k.is_null()),
        forced_tool: matches!(
            obj.get("tool_choice")
                .and_then(|c| c.get("type"))
                .and_then(Value::as_str),
            Some("any" | "tool")
        ),
    }
    .mode()
    .map_err(SimError::bad_request)
}

/// The thinking an answer opens with when thinking is enabled: a few words on the user's last
/// message, in word pieces as a stream sends them, with the block's signature.
struct Thinking {
    text: String,
    pieces: Vec<Piece>,
    signature: String,
}

impl Thinking {
    fn of(ids: &IdGen, conv: &Conversation) -> Option<Self> {
        if !conv.thinking {
            return None;
        }
        let text = thought(conv);
        let pieces = word_pieces(&text);
        Some(Self {
            text,
            pieces,
            signature: ids.make("EqoBCkgIARABGAIiQ", 64),
        })
    }

    fn tokens(&self) -> u64 {
        self.pieces.iter().map(|p| u64::from(p.tokens)).sum()
    }
}

/// The page the simulated web search finds for `query`.
fn web_search_page(query: &str) -> (String, String) {
    let slug: String = query
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    (
        format!("https://example.com/search/{slug}"),
        format!("About {query}"),
    )
}

/// The citation an answer makes of the page its web search found (`web_search_result_location`).
fn web_search_citation(query: &str) -> Value {
    let (url, title) = web_search_page(query);
    json!({
        "type": "web_search_result_location",
        "url": url,
        "title": title,
        "encrypted_index": "RW5jcnlwdGVkSW5kZXg=",
        "cited_text": format!("What the web says about {query}."),
    })
}

/// The server tool's call (its input left out when streamed, as the API streams it) and its
/// result, for an answer that searched the web for `query`.
fn web_search_blocks(ids: &IdGen, query: &str, streamed: bool) -> [Value; 2] {
    let (url, title) = web_search_page(query);
    let id = ids.make("srvtoolu_01", 22);
    let input = if streamed {
        json!({})
    } else {
        json!({ "query": query })
    };
    [
        json!({ "type": "server_tool_use", "id": id, "name": "web_search", "input": input }),
        json!({
            "type": "web_search_tool_result",
            "tool_use_id": id,
            "content": [{
                "type": "web_search_result",
                "url": url,
                "title": title,
                "encrypted_content": "RW5jcnlwdGVkUGFnZUNvbnRlbnQ=",
                "page_age": null,
            }],
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A block's `cache_control` breakpoint, if it has one: whether it caches for an hour.
fn cache_control(block: &Value) -> Option<bool> {
    let control = block.get("cache_control").filter(|c| !c.is_null())?;
    Some(control.get("ttl").and_then(Value::as_str) == Some("1h"))
}

fn stop_reason(out: &Output) -> (&'static str, Option<&str>) {
    match out {
        Output::ToolCalls(_) => ("tool_use", None),
        Output::Text { finish, .. } => match finish {
            Finish::Stop => ("end_turn", None),
            Finish::Length => ("max_tokens", None),
            Finish::StopSequence(seq) => ("stop_sequence", Some(seq.as_str())),
        },
    }
}

/// The usage counts, in the API's member order.
fn usage(conv: &Conversation, output: u64) -> Ordered {
    let cache = conv.cache;
    let (five_minutes, hour) = if cache.hour {
        (0, cache.written)
    } else {
        (cache.written, 0)
    };
    let mut usage = ordered! {
        "input_tokens": conv.uncached_input_tokens(),
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": ordered! {
            "ephemeral_5m_input_tokens": five_minutes,
            "ephemeral_1h_input_tokens": hour,
        },
        "output_tokens": output,
        "service_tier": "standard",
    };
    if conv.web_search.is_some() {
        usage.0.push((
            "server_tool_use",
            member(&json!({ "web_search_requests": 1 })),
        ));
    }
    usage
}

pub(crate) fn render(ids: &IdGen, conv: &Conversation, out: &Output) -> Value {
    let thinking = Thinking::of(ids, conv);
    let mut content: Vec<Value> = match out {
        Output::Text { text, pieces, .. } => {
            let (lead, claim) = cited_split(conv, pieces);
            let at = claim.first().map_or(text.len(), |p| p.start);
            let mut blocks = Vec::with_capacity(4);
            if let Some(query) = &conv.web_search {
                blocks.extend(web_search_blocks(ids, query, false));
            }
            if !lead.is_empty() || claim.is_empty() {
                blocks.push(json!({ "type": "text", "text": &text[..at], "citations": null }));
            }
            if !claim.is_empty() {
                blocks.push(
                    json!({ "type": "text", "text": &text[at..], "citations": conv.citations }),
                );
            }
            blocks
        }
        Output::ToolCalls(calls) => calls
            .iter()
            .map(|call| {
                json!({
                    "type": "tool_use",
                    "id": ids.make("toolu_01", 22),
                    "name": call.name,
                    "input": call.arguments,
                })
            })
            .collect(),
    };
    let thought = thinking.as_ref().map_or(0, Thinking::tokens);
    if let Some(thinking) = thinking {
        content.insert(
            0,
            json!({ "type": "thinking", "thinking": thinking.text, "signature": thinking.signature }),
        );
    }
    let (reason, sequence) = stop_reason(out);
    json!({
        "id": ids.make("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": conv.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(conv, out.tokens() + thought),
    })
}

pub(crate) fn render_stream(ids: &IdGen, conv: &Conversation, out: &Output) -> StreamBody {
    let mut sse = StreamBody::new();
    let start_usage = usage(conv, 1);
    sse.json(
        FrameKind::Other,
        0,
        Some("message_start"),
        &ordered! {
            "type": "message_start",
            "message": ordered! {
                "id": ids.make("msg_01", 22),
                "type": "message",
                "role": "assistant",
                "model": conv.model,
                "content": [(); 0],
                "stop_reason": (),
                "stop_sequence": (),
                "usage": start_usage,
            },
        },
    );
    // Thinking opens the answer, as block 0; the others follow it.
    let thinking = Thinking::of(ids, conv);
    let first = usize::from(thinking.is_some());
    if let Some(thinking) = &thinking {
        thinking_block(&mut sse, thinking);
    }
    match out {
        Output::Text { text, pieces, .. } => {
            let (lead, claim) = cited_split(conv, pieces);
            let mut index = first;
            if let Some(query) = &conv.web_search {
                web_search_stream(&mut sse, ids, query, first);
                index += 2;
            }
            if !lead.is_empty() || claim.is_empty() {
                text_block(&mut sse, index, text, lead, &[]);
                index += 1;
            }
            if !claim.is_empty() {
                text_block(&mut sse, index, text, claim, &conv.citations);
            }
        }
        Output::ToolCalls(calls) => {
            for (index, call) in (first..).zip(calls) {
                sse.json(
                    FrameKind::Content,
                    1,
                    Some("content_block_start"),
                    &ordered! {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": ordered! {
                            "type": "tool_use",
                            "id": ids.make("toolu_01", 22),
                            "name": call.name,
                            "input": ordered! {},
                        },
                    },
                );
                if index == 0 {
                    sse.json(
                        FrameKind::Other,
                        0,
                        Some("ping"),
                        &ordered! { "type": "ping" },
                    );
                }
                // The API opens argument streaming with an empty fragment.
                let deltas = std::iter::once(("", 0)).chain(
                    call.fragments()
                        .into_iter()
                        .map(|p| (&call.arguments_json[p.start..p.end], p.tokens)),
                );
                for (fragment, tokens) in deltas {
                    sse.json(
                        FrameKind::Content,
                        tokens,
                        Some("content_block_delta"),
                        &ordered! {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": ordered! { "type": "input_json_delta", "partial_json": fragment },
                        },
                    );
                }
                block_stop(&mut sse, index);
            }
        }
    }
    let (reason, sequence) = stop_reason(out);
    let thought = thinking.as_ref().map_or(0, Thinking::tokens);
    let mut final_usage = ordered! { "output_tokens": out.tokens() + thought };
    if conv.web_search.is_some() {
        final_usage.0.push((
            "server_tool_use",
            member(&ordered! { "web_search_requests": 1 }),
        ));
    }
    sse.json(
        FrameKind::Terminal,
        0,
        Some("message_delta"),
        &ordered! {
            "type": "message_delta",
            "delta": ordered! { "stop_reason": reason, "stop_sequence": sequence },
            "usage": final_usage,
        },
    );
    sse.json(
        FrameKind::Terminal,
        0,
        Some("message_stop"),
        &ordered! { "type": "message_stop" },
    );
    sse
}

/// The web search's two blocks, streamed as the API streams them: the call opened with an
/// empty input, its input as one JSON fragment, then the result whole.
fn web_search_stream(sse: &mut StreamBody, ids: &IdGen, query: &str, first: usize) {
    let [call, result] = web_search_blocks(ids, query, true);
    for (index, block) in (first..).zip([call, result]) {
        sse.json(
            FrameKind::Other,
            0,
            Some("content_block_start"),
            &ordered! { "type": "content_block_start", "index": index, "content_block": block },
        );
        if index == first {
            sse.json(
                FrameKind::Other,
                0,
                Some("content_block_delta"),
                &ordered! {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": ordered! {
                        "type": "input_json_delta",
                        "partial_json": json!({ "query": query }).to_string(),
                    },
                },
            );
        }
        block_stop(sse, index);
    }
}

/// The streamed thinking block, first in the answer: opened empty, its text in word pieces,
/// then its signature, as the API streams one.
fn thinking_block(sse: &mut StreamBody, thinking: &Thinking) {
    sse.json(
        FrameKind::Other,
        0,
        Some("content_block_start"),
        &ordered! {
            "type": "content_block_start",
            "index": 0,
            "content_block": ordered! { "type": "thinking", "thinking": "", "signature": "" },
        },
    );
    sse.json(
        FrameKind::Other,
        0,
        Some("ping"),
        &ordered! { "type": "ping" },
    );
    text_deltas(sse, 0, &thinking.text, &thinking.pieces, |t| {
        ordered! { "type": "thinking_delta", "thinking": t }
    });
    sse.json(
        FrameKind::Other,
        0,
        Some("content_block_delta"),
        &ordered! {
            "type": "content_block_delta",
            "index": 0,
            "delta": ordered! { "type": "signature_delta", "signature": thinking.signature },
        },
    );
    block_stop(sse, 0);
}

/// One streamed text block of `pieces` of `text`, its citations first; a ping follows the
/// first block's start, as the API sends one.
fn text_block(
    sse: &mut StreamBody,
    index: usize,
    text: &str,
    pieces: &[Piece],
    citations: &[Value],
) {
    sse.json(
        FrameKind::Other,
        0,
        Some("content_block_start"),
        &ordered! {
            "type": "content_block_start",
            "index": index,
            "content_block": ordered! { "type": "text", "text": "", "citations": () },
        },
    );
    if index == 0 {
        sse.json(
            FrameKind::Other,
            0,
            Some("ping"),
            &ordered! { "type": "ping" },
        );
    }
    for citation in citations {
        sse.json(
            FrameKind::Other,
            0,
            Some("content_block_delta"),
            &ordered! {
                "type": "content_block_delta",
                "index": index,
                "delta": ordered! { "type": "citations_delta", "citation": citation },
            },
        );
    }
    text_deltas(sse, index, text, pieces, |t| {
        ordered! { "type": "text_delta", "text": t }
    });
    block_stop(sse, index);
}

/// A `content_block_delta` for each of `pieces` of `text`, its delta as `delta` writes a piece.
fn text_deltas(
    sse: &mut StreamBody,
    index: usize,
    text: &str,
    pieces: &[Piece],
    delta: impl Fn(&str) -> Ordered,
) {
    for piece in pieces {
        sse.json(
            FrameKind::Content,
            piece.tokens,
            Some("content_block_delta"),
            &ordered! {
                "type": "content_block_delta",
                "index": index,
                "delta": delta(&text[piece.start..piece.end]),
            },
        );
    }
}

/// A text answer's pieces as an uncited lead-in and the cited claim, each a block as the API
/// splits a cited answer: the claim is the second half, and empty when nothing is cited.
fn cited_split<'p>(conv: &Conversation, pieces: &'p [Piece]) -> (&'p [Piece], &'p [Piece]) {
    let at = if conv.citations.is_empty() {
        pieces.len()
    } else {
        pieces.len() / 2
    };
    pieces.split_at(at)
}

/// Whether a document or search result has citations enabled.
fn citations_enabled(block: &Value) -> bool {
    block
        .pointer("/citations/enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn block_stop(sse: &mut StreamBody, index: usize) {
    sse.json(
        FrameKind::Other,
        0,
        Some("content_block_stop"),
        &ordered! { "type": "content_block_stop", "index": index },
    );
}

pub(crate) fn render_models(models: &[String]) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|id| {
            json!({
                "type": "model",
                "id": id,
                "display_name": id,
                "created_at": "2025-01-01T00:00:00Z",
            })
        })
        .collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": models.first(),
        "last_id": models.last(),
    })
}

/// A system message among the messages (a mid-conversation system message), checked as the
/// Messages API places it: right after a user message or an assistant message that ends in
/// server tool use, and last or followed by an assistant message; its content a string or
/// text blocks. Returns its characters.
fn mid_conversation_system(messages: &[Value], i: usize) -> Result<usize, SimError> {
    let role_of = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let after_user_or_server_tool = i.checked_sub(1).is_some_and(|before| {
        let before = &messages[before];
        match role_of(before).as_str() {
            "user" => true,
            "assistant" => {
                before
                    .get("content")
                    .and_then(Value::as_array)
                    .and_then(|blocks| blocks.last())
                    .and_then(|b| b.get("type"))
                    .and_then(Value::as_str)
                    == Some("server_tool_use")
            }
            _ => false,
        }
    });
    let before_assistant_or_last = messages
        .get(i + 1)
        .is_none_or(|next| role_of(next) == "assistant");
    if !after_user_or_server_tool || !before_assistant_or_last {
        return Err(SimError::bad_request(format!(
            "messages.{i}: a system message must come right after a user message (or an \
             assistant message ending in server tool use) and be the last message or be \
             followed by an assistant message"
        )));
    }
    match messages[i].get("content") {
        Some(Value::String(text)) => Ok(chars(text)),
        Some(Value::Array(blocks)) => {
            let mut total = 0;
            for (j, block) in blocks.iter().enumerate() {
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(SimError::bad_request(format!(
                        "messages.{i}.content.{j}: a system message takes text blocks only"
                    )));
                }
                total += block.get("text").and_then(Value::as_str).map_or(0, chars);
            }
            Ok(total)
        }
        _ => Err(SimError::bad_request(format!(
            "messages.{i}.content: Field required"
        ))),
    }
}

//! Gemini API wire format (`generateContent`, `streamGenerateContent?alt=sse`, `embedContent`,
//! `batchEmbedContents`, `countTokens`): contents and parts, function calls, usage metadata and
//! the Google RPC error envelope. Field names follow the Gemini API reference.

use serde_json::{Value, json};

use crate::handler::{EmbedInput, EmbedRequest, SimError};
use crate::model::{
    Conversation, Finish, IdGen, JsonMode, Output, Tool, ToolCall, ToolChoice, embedding, thought,
    word_pieces,
};
use crate::stream::{FrameKind, StreamBody};

/// Context window reported by the simulated context-length error.
const CONTEXT_WINDOW: u64 = 1_048_576;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

pub(crate) fn missing_key() -> SimError {
    SimError::new(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). \
         Please use API Key or other form of API consumer identity to call this API.",
    )
}

pub(crate) fn invalid_json(err: &serde_json::Error) -> SimError {
    SimError::bad_request(format!("Invalid JSON payload received. {err}"))
}

pub(crate) fn context_error(input_tokens: u64) -> SimError {
    SimError::bad_request(format!(
        "The input token count ({}) exceeds the maximum number of tokens allowed \
         ({CONTEXT_WINDOW}).",
        CONTEXT_WINDOW + input_tokens.max(1)
    ))
}

pub(crate) fn status_error(status: u16, retry_after: Option<u64>) -> SimError {
    let message = match status {
        400 => "Request contains an invalid argument.",
        401 => "Request had invalid authentication credentials.",
        403 => "The caller does not have permission",
        404 => "Requested entity was not found.",
        429 => "Resource has been exhausted (e.g. check quota).",
        500 => {
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
        }
        503 => "The model is overloaded. Please try again later.",
        504 => "Deadline expired before operation could complete.",
        s if s >= 500 => "An internal error has occurred.",
        _ => "Request contains an invalid argument.",
    };
    let mut err = SimError::new(status, message);
    err.retry_after = retry_after;
    err
}

/// The `google.rpc.Code` name for an HTTP status.
fn rpc_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

pub(crate) fn error_body(err: &SimError) -> Value {
    let mut error = json!({
        "code": err.status,
        "message": err.message,
        "status": err.error_type.unwrap_or(rpc_status(err.status)),
    });
    if let Some(secs) = err.retry_after {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{secs}s"),
        }]);
    }
    json!({ "error": error })
}

pub(crate) fn stream_error_frame() -> Vec<u8> {
    let data = error_body(&status_error(503, None)).to_string();
    let mut out = Vec::new();
    switchyard_protocol::sse::write_event(&mut out, None, data.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A field by its JSON (lowerCamel) name or its proto (snake_case) name; the API takes both.
fn field<'a>(obj: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel).or_else(|| obj.get(snake))
}

/// A part's `inlineData` or `fileData` when it is a document (its type not an image's), as
/// `{documents}` shows it: inline data's media type and size, or the file's URI. Inline data
/// that is not base64 is refused, as the API refuses it.
fn document(part: &Value) -> Option<Result<String, SimError>> {
    let is_document = |blob: &Value| {
        field(blob, "mimeType", "mime_type")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.starts_with("image/"))
    };
    if let Some(blob) = field(part, "inlineData", "inline_data").filter(|b| is_document(b)) {
        let get = |camel, snake| field(blob, camel, snake).and_then(Value::as_str);
        return Some(
            crate::model::inline_document(get("mimeType", "mime_type")?, get("data", "data")?)
                .ok_or_else(|| {
                    SimError::bad_request(
                        "Invalid value at 'contents.parts.inline_data.data' (TYPE_BYTES), \
                         Base64 decoding failed",
                    )
                }),
        );
    }
    let file = field(part, "fileData", "file_data").filter(|f| is_document(f))?;
    field(file, "fileUri", "file_uri")
        .and_then(Value::as_str)
        .map(|uri| Ok(uri.to_owned()))
}

/// A part's (or a function response part's) `inlineData` as a data URI.
fn inline_image(part: &Value) -> Option<String> {
    let blob = field(part, "inlineData", "inline_data")?;
    let get = |camel, snake| field(blob, camel, snake).and_then(Value::as_str);
    Some(format!(
        "data:{};base64,{}",
        get("mimeType", "mime_type")?,
        get("data", "data")?
    ))
}

fn field_mut<'a>(obj: &'a mut Value, camel: &str, snake: &str) -> Option<&'a mut Value> {
    if obj.get(camel).is_some() {
        obj.get_mut(camel)
    } else {
        obj.get_mut(snake)
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn parts_text(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub(crate) fn parse_chat(
    mut body: Value,
    model: &str,
    count_only: bool,
) -> Result<Conversation, SimError> {
    if !body.is_object() {
        return Err(SimError::bad_request(
            "Invalid JSON payload received. Expected an object.",
        ));
    }
    let contents = match body.get("contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => {
            return Err(SimError::bad_request(
                "* GenerateContentRequest.contents: contents is not specified\n",
            ));
        }
    };
    let mut conv = Conversation {
        model: model.to_owned(),
        parallel_tool_calls: true,
        ..Conversation::default()
    };
    if let Some(system) = field(&body, "systemInstruction", "system_instruction") {
        conv.system_text = parts_text(system);
        conv.input_chars += chars(&conv.system_text);
    }
    let mut last_results = None;
    // The first unsigned function call of the current turn (since the user's last words),
    // which a Gemini 3 model refuses: (content index, part index, name).
    let mut unsigned_call: Option<(usize, usize, String)> = None;
    for (i, content) in contents.iter().enumerate() {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(SimError::bad_request(
                "Please use a valid role: user, model.",
            ));
        }
        let mut text = Vec::new();
        let mut images = Vec::new();
        let mut documents = Vec::new();
        let mut results = Vec::new();
        let mut step_has_call = false;
        for (j, part) in content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                conv.input_chars += chars(t);
                text.push(t);
            } else if let Some(document) = document(part) {
                documents.push(document?);
            } else if let Some(image) = inline_image(part) {
                images.push(image);
            } else if let Some(file) = field(part, "fileData", "file_data") {
                images.extend(
                    field(file, "fileUri", "file_uri")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            } else if let Some(call) = field(part, "functionCall", "function_call") {
                let name = call.get("name").and_then(Value::as_str).unwrap_or("");
                conv.called_tools.push(name.to_owned());
                conv.input_chars += chars(name);
                conv.input_chars += call.get("args").map_or(0, |a| chars(&a.to_string()));
                // A step's first call carries the step's signature.
                let first_call = !step_has_call;
                step_has_call = true;
                if first_call
                    && field(part, "thoughtSignature", "thought_signature").is_none()
                    && unsigned_call.is_none()
                {
                    unsigned_call = Some((i, j, name.to_owned()));
                }
            } else if let Some(response) = field(part, "functionResponse", "function_response") {
                let result = response
                    .get("response")
                    .map(Value::to_string)
                    .unwrap_or_default();
                conv.input_chars += chars(&result);
                results.push(result);
                // The response's media (a screenshot, a PDF) are the user turn's images and
                // documents too.
                for media in response
                    .get("parts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match document(media) {
                        Some(document) => documents.push(document?),
                        None => images.extend(inline_image(media)),
                    }
                }
            }
        }
        // The user's own words start a new turn; function responses do not.
        if role == "user" && !text.is_empty() {
            unsigned_call = None;
        }
        if role == "user" {
            conv.last_user_text = text.join("\n");
            conv.last_user_images = images;
            conv.last_user_documents = documents;
            last_results = (!results.is_empty()).then_some(results);
        } else {
            last_results = None;
        }
    }
    conv.tool_results = last_results.map(|r| r.join(" "));
    if let Some((i, j, name)) = unsigned_call
        && signs_calls(model)
    {
        return Err(SimError::bad_request(format!(
            "Function call `{name}` in the {i}. content block is missing a \
             `thought_signature` (part {j}). Function calls of the current turn must carry \
             the signatures the model returned."
        )));
    }
    if count_only {
        return Ok(conv);
    }

    if let Some(Value::Array(tools)) = body.get_mut("tools") {
        for tool in tools {
            let Some(Value::Array(declarations)) =
                field_mut(tool, "functionDeclarations", "function_declarations")
            else {
                continue;
            };
            for declaration in declarations {
                let Some(name) = declaration
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    continue;
                };
                let schema = field_mut(
                    declaration,
                    "parametersJsonSchema",
                    "parameters_json_schema",
                )
                .map(Value::take)
                .or_else(|| declaration.get_mut("parameters").map(Value::take))
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
                conv.tools.push(Tool { name, schema });
            }
        }
    }
    let calling = field(&body, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"));
    let allowed = calling
        .and_then(|c| field(c, "allowedFunctionNames", "allowed_function_names"))
        .and_then(Value::as_array)
        .and_then(|names| names.first())
        .and_then(Value::as_str);
    conv.tool_choice = match calling.and_then(|c| c.get("mode")).and_then(Value::as_str) {
        Some("NONE") => ToolChoice::None,
        Some("ANY") => match allowed {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => ToolChoice::Required,
        },
        _ => ToolChoice::Auto,
    };
    if let Some(config) = field_mut(&mut body, "generationConfig", "generation_config") {
        conv.thinking = field(config, "thinkingConfig", "thinking_config")
            .and_then(|t| field(t, "includeThoughts", "include_thoughts"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        conv.choices = field(config, "candidateCount", "candidate_count")
            .and_then(Value::as_u64)
            .map_or(1, |n| n.clamp(1, 8) as u32);
        conv.max_output_tokens =
            field(config, "maxOutputTokens", "max_output_tokens").and_then(Value::as_u64);
        conv.stop = field(config, "stopSequences", "stop_sequences")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mime = field(config, "responseMimeType", "response_mime_type").and_then(Value::as_str);
        if mime == Some("application/json") {
            let schema = field_mut(config, "responseJsonSchema", "response_json_schema")
                .map(Value::take)
                .or_else(|| {
                    field_mut(config, "responseSchema", "response_schema").map(Value::take)
                });
            conv.json = Some(JsonMode { schema });
        }
    }
    Ok(conv)
}

/// `countTokens` takes `contents` or a whole `generateContentRequest`.
pub(crate) fn parse_count_tokens(mut body: Value, model: &str) -> Result<Conversation, SimError> {
    if let Some(request) = field_mut(
        &mut body,
        "generateContentRequest",
        "generate_content_request",
    ) {
        let request = request.take();
        return parse_chat(request, model, true);
    }
    parse_chat(body, model, true)
}

pub(crate) fn parse_embeddings(
    mut body: Value,
    model: &str,
    batch: bool,
) -> Result<EmbedRequest, SimError> {
    let mut requests: Vec<Value> = if batch {
        match body.get_mut("requests").map(Value::take) {
            Some(Value::Array(r)) if !r.is_empty() => r,
            _ => {
                return Err(SimError::bad_request(
                    "* BatchEmbedContentsRequest.requests: requests is not specified\n",
                ));
            }
        }
    } else {
        vec![body]
    };
    // Gemini's own limit on a batch.
    if requests.len() > 100 {
        return Err(SimError::bad_request(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
        ));
    }
    let mut dimensions = None;
    let mut inputs = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter_mut().enumerate() {
        let Some(content) = request.get("content") else {
            return Err(SimError::bad_request(format!(
                "* EmbedContentRequest.content: content is not specified (request {i})\n"
            )));
        };
        let text = parts_text(content);
        if text.is_empty() {
            return Err(SimError::bad_request(
                "The content of the request must not be empty.",
            ));
        }
        if dimensions.is_none() {
            dimensions = field(request, "outputDimensionality", "output_dimensionality")
                .and_then(Value::as_u64)
                .and_then(|d| usize::try_from(d).ok());
        }
        inputs.push(EmbedInput::text(text));
    }
    Ok(EmbedRequest {
        model: model.to_owned(),
        inputs,
        dimensions,
        base64: false,
        bedrock: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

fn finish_reason(out: &Output) -> &'static str {
    match out {
        Output::Text {
            finish: Finish::Length,
            ..
        } => "MAX_TOKENS",
        _ => "STOP",
    }
}

/// Usage with the thinking's tokens, which `candidatesTokenCount` leaves out and the total
/// counts.
fn usage(input: u64, output: Option<u64>, thoughts: u64) -> Value {
    let mut usage = json!({
        "promptTokenCount": input,
        "totalTokenCount": input + output.unwrap_or(0) + thoughts,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": input }],
    });
    if let Some(output) = output {
        usage["candidatesTokenCount"] = json!(output);
    }
    if thoughts > 0 {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    usage
}

/// The thought summary a candidate opens with when the request asked for them, and its tokens.
fn thought_part(conv: &Conversation) -> Option<(Value, u64)> {
    conv.thinking.then(|| {
        let text = thought(conv);
        let tokens = text.split_whitespace().count() as u64;
        (json!({ "text": text, "thought": true }), tokens)
    })
}

fn call_part(ids: &IdGen, name: &str, args: &Value) -> Value {
    json!({ "functionCall": { "id": ids.make("", 8), "name": name, "args": args } })
}

/// Whether `model` signs its function calls and requires the signatures back (Gemini 3).
fn signs_calls(model: &str) -> bool {
    model.starts_with("gemini-3")
}

/// A step's function call parts; a Gemini 3 model signs the first (`thoughtSignature`).
fn call_parts(ids: &IdGen, conv: &Conversation, calls: &[ToolCall]) -> Vec<Value> {
    let mut parts: Vec<Value> = calls
        .iter()
        .map(|c| call_part(ids, &c.name, &c.arguments))
        .collect();
    if signs_calls(&conv.model)
        && let Some(first) = parts.first_mut()
    {
        first["thoughtSignature"] = json!(ids.make("Cs0BAY89a1", 40));
    }
    parts
}

fn response(conv: &Conversation, id: &str, candidate: Value, usage: Value) -> Value {
    candidates_response(conv, id, vec![candidate], usage)
}

fn candidates_response(
    conv: &Conversation,
    id: &str,
    candidates: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": conv.model,
        "responseId": id,
    })
}

/// A whole answer, with a candidate for each of `more` after `out`'s (`candidateCount`).
pub(crate) fn render(ids: &IdGen, conv: &Conversation, out: &Output, more: &[Output]) -> Value {
    let candidates = std::iter::once(out)
        .chain(more)
        .enumerate()
        .map(|(index, out)| {
            let mut parts: Vec<Value> = match out {
                Output::Text { text, .. } => vec![json!({ "text": text })],
                Output::ToolCalls(calls) => call_parts(ids, conv, calls),
            };
            if let Some((part, _)) = thought_part(conv) {
                parts.insert(0, part);
            }
            json!({
                "content": { "parts": parts, "role": "model" },
                "finishReason": finish_reason(out),
                "index": index,
            })
        })
        .collect();
    let id = ids.make("", 22);
    let tokens = out.tokens() + more.iter().map(Output::tokens).sum::<u64>();
    let thoughts = thought_part(conv).map_or(0, |(_, t)| t) * (1 + more.len() as u64);
    candidates_response(
        conv,
        &id,
        candidates,
        usage(conv.input_tokens(), Some(tokens), thoughts),
    )
}

pub(crate) fn render_stream(ids: &IdGen, conv: &Conversation, out: &Output) -> StreamBody {
    let mut sse = StreamBody::new();
    let id = ids.make("", 22);
    let input = conv.input_tokens();
    // Each chunk is a whole response carrying the usage so far; the thought summary, when
    // asked for, comes first, word by word.
    let thought =
        thought_part(conv).map(|(part, _)| part["text"].as_str().unwrap_or("").to_owned());
    let mut thought_tokens = 0u64;
    for piece in thought.as_deref().map(word_pieces).unwrap_or_default() {
        let text = &thought.as_deref().unwrap_or("")[piece.start..piece.end];
        thought_tokens += u64::from(piece.tokens);
        let candidate = json!({ "content": { "parts": [{ "text": text, "thought": true }],
            "role": "model" }, "index": 0 });
        let body = response(conv, &id, candidate, usage(input, None, thought_tokens));
        sse.json(FrameKind::Content, piece.tokens, None, &body);
    }
    let mut sent = 0u64;
    let mut chunk = |sse: &mut StreamBody, parts: Value, tokens: u32| {
        sent += u64::from(tokens);
        let candidate = json!({ "content": { "parts": parts, "role": "model" }, "index": 0 });
        let body = response(
            conv,
            &id,
            candidate,
            usage(input, Some(sent), thought_tokens),
        );
        sse.json(FrameKind::Content, tokens, None, &body);
    };
    match out {
        Output::Text { text, pieces, .. } => {
            for piece in pieces {
                chunk(
                    &mut sse,
                    json!([{ "text": &text[piece.start..piece.end] }]),
                    piece.tokens,
                );
            }
        }
        Output::ToolCalls(calls) => {
            let parts = call_parts(ids, conv, calls);
            let tokens = u32::try_from(out.tokens()).unwrap_or(u32::MAX);
            chunk(&mut sse, Value::Array(parts), tokens);
        }
    }
    let candidate = json!({
        "content": { "parts": [{ "text": "" }], "role": "model" },
        "finishReason": finish_reason(out),
        "index": 0,
    });
    let last = response(
        conv,
        &id,
        candidate,
        usage(input, Some(out.tokens()), thought_tokens),
    );
    sse.json(FrameKind::Terminal, 0, None, &last);
    sse
}

pub(crate) fn render_embeddings(request: &EmbedRequest, dimensions: usize, batch: bool) -> Value {
    let mut vectors = request
        .inputs
        .iter()
        .map(|input| json!({ "values": embedding(&input.text, dimensions) }));
    if batch {
        json!({ "embeddings": vectors.collect::<Vec<_>>() })
    } else {
        json!({ "embedding": vectors.next() })
    }
}

pub(crate) fn render_count(tokens: u64) -> Value {
    json!({
        "totalTokens": tokens,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": tokens }],
    })
}

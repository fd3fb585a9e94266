//! OpenAI Chat Completions, Embeddings and Models wire format, and Azure OpenAI's variant of it
//! (deployment in the path, `prompt_filter_results` / `content_filter_results`, its own
//! routing and auth error bodies). Field names follow the OpenAI API reference.

use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::handler::{EmbedInput, EmbedRequest, SimError};
use crate::model::{
    Conversation, Finish, IdGen, JsonMode, Output, Tool, ToolChoice, embedding, unix_now,
};
use crate::ordered::{Ordered, member, ordered};
use crate::stream::{FrameKind, StreamBody};

const FINGERPRINT: &str = "fp_5f3c1d2e7a";
/// Context window reported by the simulated context-length error.
const CONTEXT_WINDOW: u64 = 128_000;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

pub(crate) fn missing_key() -> SimError {
    SimError::new(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization \
         header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )
}

pub(crate) fn azure_access_denied() -> SimError {
    SimError::new(
        401,
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
         provide a valid key for an active subscription and use a correct regional API endpoint \
         for your resource.",
    )
}

pub(crate) fn azure_resource_not_found() -> SimError {
    SimError::new(404, "Resource not found")
}

pub(crate) fn invalid_json(err: &serde_json::Error) -> SimError {
    SimError::bad_request(format!(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
         using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was \
         sent was not valid JSON.) Parser said: {err}"
    ))
}

pub(crate) fn context_error(input_tokens: u64) -> SimError {
    SimError::bad_request(format!(
        "This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages \
         resulted in {} tokens. Please reduce the length of the messages.",
        CONTEXT_WINDOW + input_tokens.max(1)
    ))
    .with_code("context_length_exceeded")
    .with_param("messages")
}

pub(crate) fn status_error(
    status: u16,
    model: &str,
    retry_after: Option<u64>,
    azure: bool,
) -> SimError {
    let wait = retry_after.unwrap_or(1);
    match status {
        429 if azure => SimError::new(
            429,
            format!(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version \
                 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. \
                 Please retry after {wait} seconds."
            ),
        ),
        429 => SimError::new(
            429,
            format!(
                "Rate limit reached for {model} in organization org-simulated on requests per min \
                 (RPM): Limit 60, Used 60, Requested 1. Please try again in {wait}s."
            ),
        )
        .with_type("requests")
        .with_code("rate_limit_exceeded"),
        400 => SimError::bad_request("Simulated invalid request."),
        401 => SimError::new(401, "Incorrect API key provided.").with_code("invalid_api_key"),
        403 => SimError::new(403, "You are not allowed to access this resource.")
            .with_code("unsupported_country_region_territory"),
        404 if azure => azure_resource_not_found(),
        404 => SimError::new(
            404,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_code("model_not_found"),
        500 => SimError::new(
            500,
            "The server had an error while processing your request. Sorry about that!",
        ),
        503 => SimError::new(503, "The server is overloaded or not ready yet."),
        s if s >= 500 => SimError::new(s, format!("Simulated upstream error ({s}).")),
        s => SimError::new(s, format!("Simulated request error ({s}).")),
    }
}

/// `{"error":{message,type,param,code}}`; Azure's own routing, auth and throttling errors use
/// its `{"error":{code,message}}` form.
pub(crate) fn error_body(err: &SimError, azure: bool) -> Value {
    if azure && matches!(err.status, 401 | 404 | 429) && err.error_type.is_none() {
        return json!({ "error": { "code": err.status.to_string(), "message": err.message } });
    }
    let error_type = err.error_type.unwrap_or(match err.status {
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    });
    json!({
        "error": {
            "message": err.message,
            "type": error_type,
            "param": err.param,
            "code": err.code,
        }
    })
}

/// The in-band error a stream carries when it fails after the 200.
pub(crate) fn stream_error_frame() -> Vec<u8> {
    let err = status_error(500, "", None, false);
    let mut out = Vec::new();
    let data = error_body(&err, false).to_string();
    switchyard_protocol::sse::write_event(&mut out, None, data.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The URLs (data URIs included) of a message `content`'s `image_url` parts.
fn content_images(content: Option<&Value>) -> Vec<String> {
    content
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("image_url"))
        .filter_map(|part| part.pointer("/image_url/url").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The documents of a message `content`'s `file` parts (see `Conversation::last_user_documents`);
/// a part with neither data nor id, or data that is not a base64 data URI, is refused as the
/// API refuses it.
fn content_documents(content: Option<&Value>, i: usize) -> Result<Vec<String>, SimError> {
    let mut documents = Vec::new();
    for (j, part) in content
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if part.get("type").and_then(Value::as_str) == Some("input_audio") {
            // Audio the model hears: shown as a document of its type (`audio/wav:<bytes>`).
            let audio = part.get("input_audio");
            let get = |key: &str| audio.and_then(|a| a.get(key)).and_then(Value::as_str);
            let media_type = match get("format") {
                Some("wav") => "audio/wav",
                Some("mp3") => "audio/mp3",
                _ => {
                    return Err(SimError::bad_request(
                        "Invalid value: expected 'wav' or 'mp3' as the audio's format.",
                    )
                    .with_param(format!("messages[{i}].content[{j}].input_audio.format"))
                    .with_code("invalid_value"));
                }
            };
            match get("data").and_then(|data| crate::model::inline_document(media_type, data)) {
                Some(document) => documents.push(document),
                None => {
                    return Err(SimError::bad_request(
                        "Invalid audio data: expected base64-encoded audio.",
                    )
                    .with_param(format!("messages[{i}].content[{j}].input_audio.data"))
                    .with_code("invalid_value"));
                }
            }
            continue;
        }
        if part.get("type").and_then(Value::as_str) != Some("file") {
            continue;
        }
        let file = part.get("file");
        let get = |key: &str| file.and_then(|f| f.get(key)).and_then(Value::as_str);
        let document = match (get("file_data"), get("file_id")) {
            (Some(data), None) => data
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
                .and_then(|(media_type, data)| crate::model::inline_document(media_type, data)),
            (None, Some(id)) => Some(format!("file_id:{id}")),
            _ => None,
        };
        match document {
            Some(document) => documents.push(document),
            None => {
                return Err(SimError::bad_request(
                    "Invalid file data: expected a base64-encoded data URL (file_data) or a \
                     file id (file_id).",
                )
                .with_param(format!("messages[{i}].content[{j}].file"))
                .with_code("invalid_value"));
            }
        }
    }
    Ok(documents)
}

/// The text of a message `content`: a string, or the `text` parts of an array.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Parses a chat request. `deployment` (Azure) replaces the body's `model`.
pub(crate) fn parse_chat(
    mut body: Value,
    deployment: Option<&str>,
) -> Result<Conversation, SimError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(SimError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match deployment {
        Some(d) => d.to_owned(),
        None => obj
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| SimError::bad_request("you must provide a model parameter"))?
            .to_owned(),
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(SimError::bad_request(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but \
                 got an empty array instead.",
            )
            .with_param("messages")
            .with_code("empty_array"));
        }
        _ => {
            return Err(
                SimError::bad_request("Missing required parameter: 'messages'.")
                    .with_param("messages")
                    .with_code("missing_required_parameter"),
            );
        }
    };
    let mut conv = Conversation {
        model,
        ..Conversation::default()
    };
    // Tool call ids of the last assistant message still waiting for their `tool` message.
    let mut awaiting: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(SimError::bad_request(format!(
                "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', \
                 'function', 'tool', and 'developer'."
            ))
            .with_param(format!("messages[{i}].role"))
            .with_code("invalid_value"));
        }
        if role == "tool" {
            let id = message
                .get("tool_call_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            match awaiting.iter().position(|a| a == id) {
                Some(pos) => {
                    awaiting.remove(pos);
                }
                None => {
                    return Err(SimError::bad_request(
                        "Invalid parameter: messages with role 'tool' must be a response to a \
                         preceeding message with 'tool_calls'.",
                    )
                    .with_param(format!("messages.[{i}].role")));
                }
            }
        } else if !awaiting.is_empty() {
            return Err(unanswered_calls(&awaiting, i));
        }
        let text = content_text(message.get("content"));
        conv.input_chars += text.chars().count();
        if matches!(role, "system" | "developer") {
            conv.system_text.push_str(&text);
        }
        if role == "assistant" {
            for call in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    awaiting.push(id.to_owned());
                }
                let function = call.get("function");
                if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    conv.called_tools.push(name.to_owned());
                }
                for field in ["name", "arguments"] {
                    conv.input_chars += function
                        .and_then(|f| f.get(field))
                        .and_then(Value::as_str)
                        .map_or(0, |s| s.chars().count());
                }
            }
        }
        if role == "user" {
            conv.last_user_text = text;
            conv.last_user_images = content_images(message.get("content"));
            conv.last_user_documents = content_documents(message.get("content"), i)?;
        }
    }
    if !awaiting.is_empty() {
        return Err(unanswered_calls(&awaiting, messages.len()));
    }
    let trailing_results: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .map(|m| content_text(m.get("content")))
        .collect();
    if !trailing_results.is_empty() {
        conv.tool_results = Some(
            trailing_results
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" "),
        );
    }

    if let Some(Value::Array(tools)) = obj.get_mut("tools") {
        for tool in tools {
            let kind = tool
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("function");
            if kind != "function" {
                continue;
            }
            let Some(function) = tool.get_mut("function") else {
                continue;
            };
            let Some(name) = function
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let schema = function
                .get_mut("parameters")
                .map(Value::take)
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            conv.tools.push(Tool { name, schema });
        }
    }
    conv.tool_choice = match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(Value::Object(choice)) => match choice
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => ToolChoice::Auto,
        },
        _ => ToolChoice::Auto,
    };
    conv.parallel_tool_calls = obj
        .get("parallel_tool_calls")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if let Some(format) = obj.get_mut("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => conv.json = Some(JsonMode { schema: None }),
            Some("json_schema") => {
                let schema = format
                    .get_mut("json_schema")
                    .and_then(|s| s.get_mut("schema"))
                    .map(Value::take);
                conv.json = Some(JsonMode { schema });
            }
            _ => {}
        }
    }
    conv.max_output_tokens = obj
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| obj.get("max_tokens").and_then(Value::as_u64));
    conv.stop = match obj.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    conv.stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let stream_option = |name: &str| {
        obj.get("stream_options")
            .and_then(|o| o.get(name))
            .and_then(Value::as_bool)
    };
    conv.include_usage = stream_option("include_usage").unwrap_or(false);
    conv.stream_obfuscation = stream_option("include_obfuscation").unwrap_or(true);
    conv.logprobs = logprobs_asked(obj)?;
    conv.choices = match obj.get("n") {
        None | Some(Value::Null) => 1,
        Some(n) => match n.as_u64() {
            Some(n @ 1..=MAX_CHOICES) => n as u32,
            _ => {
                return Err(SimError::bad_request(format!(
                    "Invalid 'n': expected an integer from 1 to {MAX_CHOICES}, but got {n} \
                     instead."
                ))
                .with_param("n"));
            }
        },
    };
    if conv.choices > 1 && conv.stream {
        // The simulator streams one answer; the gateway asks for several only whole.
        return Err(SimError::bad_request(
            "The simulator streams one choice: 'n' above 1 is answered whole only.",
        )
        .with_param("n"));
    }
    Ok(conv)
}

/// The most answers a request may ask for (`n`).
const MAX_CHOICES: u64 = 128;

/// Most likely tokens a request may have listed per token (`top_logprobs`).
const MAX_TOP_LOGPROBS: u64 = 20;

/// `logprobs` and `top_logprobs`: the count of likeliest tokens to list, when asked for.
fn logprobs_asked(obj: &serde_json::Map<String, Value>) -> Result<Option<u8>, SimError> {
    let asked = match obj.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(asked)) => *asked,
        Some(_) => {
            return Err(
                SimError::bad_request("Invalid type for 'logprobs': expected a boolean.")
                    .with_param("logprobs"),
            );
        }
    };
    let top = match obj.get("top_logprobs") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(n) if n <= MAX_TOP_LOGPROBS => Some(n as u8),
            Some(n) => {
                return Err(SimError::bad_request(format!(
                    "Invalid 'top_logprobs': integer above maximum value. Expected a value <= \
                     {MAX_TOP_LOGPROBS}, but got {n} instead."
                ))
                .with_param("top_logprobs"));
            }
            None => {
                return Err(SimError::bad_request(
                    "Invalid type for 'top_logprobs': expected an integer.",
                )
                .with_param("top_logprobs"));
            }
        },
    };
    match (asked, top) {
        (true, top) => Ok(Some(top.unwrap_or(0))),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(SimError::bad_request(
            "'top_logprobs' may only be given with 'logprobs' set to true.",
        )
        .with_param("top_logprobs")),
    }
}

/// Tokens the simulator lists as the likeliest after the one it chose: enough for the most a
/// request may ask for, whichever token was chosen.
const ALTERNATIVE_TOKENS: [&str; MAX_TOP_LOGPROBS as usize] = [
    " the", " a", ",", ".", " and", " of", " to", " in", " is", " that", " it", " for", " on",
    " with", " as", " was", " at", " by", " this", " be",
];

/// One token's entry of `logprobs.content`: its text, a log probability made from the text (the
/// same token always gets the same), its UTF-8 bytes and the `top` likeliest tokens, itself
/// first.
fn token_logprob(token: &str, top: u8) -> Ordered {
    let hash = token.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // In ten-thousandths, so that each is written as a short decimal.
    let logprob = -1 - i64::from(hash % 40_000);
    let alternatives = ALTERNATIVE_TOKENS
        .iter()
        .filter(|alternative| **alternative != token)
        .zip(1..)
        .map(|(alternative, i)| (*alternative, logprob - 15_000 * i));
    let top_logprobs: Vec<Ordered> = std::iter::once((token, logprob))
        .chain(alternatives)
        .take(usize::from(top))
        .map(|(token, logprob)| {
            ordered! { "token": token, "logprob": decimal(logprob), "bytes": token.as_bytes() }
        })
        .collect();
    let logprob = decimal(logprob);
    ordered! {
        "token": token,
        "logprob": logprob,
        "bytes": token.as_bytes(),
        "top_logprobs": top_logprobs,
    }
}

fn decimal(ten_thousandths: i64) -> f64 {
    ten_thousandths as f64 / 10_000.0
}

/// A choice's `logprobs` for these tokens of a text answer.
fn logprobs<'t>(tokens: impl Iterator<Item = &'t str>, top: u8) -> Ordered {
    let content: Vec<Ordered> = tokens.map(|token| token_logprob(token, top)).collect();
    ordered! { "content": content, "refusal": () }
}

fn unanswered_calls(ids: &[String], index: usize) -> SimError {
    SimError::bad_request(format!(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to \
         each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
        ids.join(", ")
    ))
    .with_param(format!("messages.[{index}].role"))
}

/// Parses an embeddings request: `input` is a string, strings, a token array or token arrays.
pub(crate) fn parse_embeddings(
    body: Value,
    deployment: Option<&str>,
) -> Result<EmbedRequest, SimError> {
    let Value::Object(mut obj) = body else {
        return Err(SimError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match deployment {
        Some(d) => d.to_owned(),
        None => obj
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| SimError::bad_request("you must provide a model parameter"))?
            .to_owned(),
    };
    let invalid = || {
        SimError::bad_request("'$.input' is invalid. Please check the API reference.")
            .with_param("input")
    };
    let tokens_input = |tokens: &[Value]| -> Option<EmbedInput> {
        let ids: Option<Vec<u64>> = tokens.iter().map(Value::as_u64).collect();
        let ids = ids?;
        Some(EmbedInput {
            text: format!("{ids:?}"),
            tokens: ids.len() as u64,
        })
    };
    let inputs = match obj.get_mut("input").map(Value::take) {
        Some(Value::String(s)) if !s.is_empty() => vec![EmbedInput::text(s)],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_u64) {
                vec![tokens_input(&items).ok_or_else(invalid)?]
            } else {
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) if !s.is_empty() => Ok(EmbedInput::text(s)),
                        Value::Array(tokens) if !tokens.is_empty() => {
                            tokens_input(&tokens).ok_or_else(invalid)
                        }
                        _ => Err(invalid()),
                    })
                    .collect::<Result<_, _>>()?
            }
        }
        Some(_) => return Err(invalid()),
        None => {
            return Err(
                SimError::bad_request("Missing required parameter: 'input'.")
                    .with_param("input")
                    .with_code("missing_required_parameter"),
            );
        }
    };
    let dimensions = obj
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok());
    let base64 = match obj.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(SimError::bad_request(format!(
                "Invalid value: '{other}'. Supported values are: 'float' and 'base64'."
            ))
            .with_param("encoding_format")
            .with_code("invalid_value"));
        }
    };
    Ok(EmbedRequest {
        model,
        inputs,
        dimensions,
        base64,
        bedrock: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

fn finish_reason(out: &Output) -> &'static str {
    match out {
        Output::ToolCalls(_) => "tool_calls",
        Output::Text { finish, .. } => match finish {
            Finish::Stop | Finish::StopSequence(_) => "stop",
            Finish::Length => "length",
        },
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input + output,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// Azure content-filter verdicts for the four default categories, all safe.
fn filter_results() -> Value {
    let safe = json!({ "filtered": false, "severity": "safe" });
    json!({
        "hate": safe,
        "self_harm": safe,
        "sexual": safe,
        "violence": safe,
    })
}

fn prompt_filter_results() -> Value {
    json!([{ "prompt_index": 0, "content_filter_results": filter_results() }])
}

pub(crate) fn render(
    ids: &IdGen,
    conv: &Conversation,
    out: &Output,
    more: &[Output],
    azure: bool,
) -> Value {
    let choices: Vec<Value> = std::iter::once(out)
        .chain(more)
        .enumerate()
        .map(|(index, out)| choice(ids, conv, index, out, azure))
        .collect();
    let output_tokens = out.tokens() + more.iter().map(Output::tokens).sum::<u64>();
    let mut body = json!({
        "id": ids.make("chatcmpl-", 29),
        "object": "chat.completion",
        "created": unix_now(),
        "model": conv.model,
        "choices": choices,
        "usage": usage(conv.input_tokens(), output_tokens),
        "system_fingerprint": FINGERPRINT,
    });
    if azure {
        body["prompt_filter_results"] = prompt_filter_results();
    } else {
        body["service_tier"] = json!("default");
    }
    body
}

/// One choice of a whole answer.
fn choice(ids: &IdGen, conv: &Conversation, index: usize, out: &Output, azure: bool) -> Value {
    let message = match out {
        Output::Text { text, .. } => json!({
            "role": "assistant",
            "content": text,
            "refusal": null,
            "annotations": [],
        }),
        Output::ToolCalls(calls) => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": calls.iter().map(|call| json!({
                "id": ids.make("call_", 24),
                "type": "function",
                "function": { "name": call.name, "arguments": call.arguments_json },
            })).collect::<Vec<_>>(),
            "refusal": null,
            "annotations": [],
        }),
    };
    // Log probabilities are of the answer's text tokens; a tool call's arguments have none.
    let logprobs = match (out, conv.logprobs) {
        (Output::Text { text, pieces, .. }, Some(top)) => serde_json::to_value(logprobs(
            pieces.iter().map(|piece| &text[piece.start..piece.end]),
            top,
        ))
        .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let mut choice = json!({
        "index": index,
        "message": message,
        "logprobs": logprobs,
        "finish_reason": finish_reason(out),
    });
    if azure {
        choice["content_filter_results"] = filter_results();
    }
    choice
}

/// One `chat.completion.chunk`, written as each API writes it: OpenAI in its own member order
/// with a `service_tier` and, unless the request turned it off, an `obfuscation` of varying
/// length on every chunk; Azure with every object's members sorted by name and neither.
struct Chunks<'a> {
    ids: &'a IdGen,
    id: String,
    created: u64,
    model: &'a str,
    azure: bool,
    /// `stream_options.include_usage`: a `usage` member (null until the last chunk).
    usage: bool,
    obfuscation: bool,
}

impl Chunks<'_> {
    fn chunk(&self, delta: Ordered, finish_reason: Option<&str>) -> Box<RawValue> {
        self.chunk_with_logprobs(delta, finish_reason, None)
    }

    /// A chunk whose choice carries the log probabilities of its delta's tokens.
    fn chunk_with_logprobs(
        &self,
        delta: Ordered,
        finish_reason: Option<&str>,
        logprobs: Option<Ordered>,
    ) -> Box<RawValue> {
        if self.azure {
            let content_filter_results = if finish_reason.is_some() {
                filter_results()
            } else {
                json!({})
            };
            // A `Value` sorts the members, the delta's too.
            let choice = json!({
                "index": 0,
                "delta": delta,
                "logprobs": serde_json::to_value(logprobs).unwrap_or(Value::Null),
                "finish_reason": finish_reason,
                "content_filter_results": content_filter_results,
            });
            return self.wrap(json!([choice]), None);
        }
        let choice = ordered! {
            "index": 0,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        };
        self.wrap([choice], None)
    }

    /// A chunk of these choices; `usage` is the last chunk's counts.
    fn wrap(&self, choices: impl Serialize, usage: Option<Value>) -> Box<RawValue> {
        if self.azure {
            return member(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                "usage": usage,
            }));
        }
        let mut chunk = ordered! {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        };
        if self.usage {
            chunk.0.push(("usage", member(&usage)));
        }
        if self.obfuscation {
            // The API's lengths are not documented; these vary from chunk to chunk.
            let len = 1 + (self.ids.make("", 1).as_bytes()[0] % 16) as usize;
            chunk
                .0
                .push(("obfuscation", member(&self.ids.make("", len))));
        }
        member(&chunk)
    }
}

pub(crate) fn render_stream(
    ids: &IdGen,
    conv: &Conversation,
    out: &Output,
    azure: bool,
) -> StreamBody {
    let mut sse = StreamBody::new();
    let chunks = Chunks {
        ids,
        id: ids.make("chatcmpl-", 29),
        created: unix_now(),
        model: &conv.model,
        azure,
        usage: conv.include_usage,
        obfuscation: !azure && conv.stream_obfuscation,
    };
    if azure {
        // Azure opens with the prompt's filter verdicts and no choices.
        sse.json(
            FrameKind::Other,
            0,
            None,
            &json!({
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": prompt_filter_results(),
            }),
        );
    }
    match out {
        Output::Text { text, pieces, .. } => {
            sse.json(
                FrameKind::Other,
                0,
                None,
                &chunks.chunk(
                    ordered! { "role": "assistant", "content": "", "refusal": () },
                    None,
                ),
            );
            for piece in pieces {
                let token = &text[piece.start..piece.end];
                let delta = ordered! { "content": token };
                let logprobs = conv
                    .logprobs
                    .map(|top| logprobs(std::iter::once(token), top));
                sse.json(
                    FrameKind::Content,
                    piece.tokens,
                    None,
                    &chunks.chunk_with_logprobs(delta, None, logprobs),
                );
            }
        }
        Output::ToolCalls(calls) => {
            for (index, call) in calls.iter().enumerate() {
                let call_head = ordered! {
                    "index": index,
                    "id": ids.make("call_", 24),
                    "type": "function",
                    "function": ordered! { "name": call.name, "arguments": "" },
                };
                let head = if index == 0 {
                    ordered! {
                        "role": "assistant",
                        "content": (),
                        "refusal": (),
                        "tool_calls": [call_head],
                    }
                } else {
                    ordered! { "tool_calls": [call_head] }
                };
                sse.json(FrameKind::Content, 1, None, &chunks.chunk(head, None));
                for piece in call.fragments() {
                    let delta = ordered! {
                        "tool_calls": [ordered! {
                            "index": index,
                            "function": ordered! {
                                "arguments": &call.arguments_json[piece.start..piece.end],
                            },
                        }],
                    };
                    sse.json(
                        FrameKind::Content,
                        piece.tokens,
                        None,
                        &chunks.chunk(delta, None),
                    );
                }
            }
        }
    }
    sse.json(
        FrameKind::Terminal,
        0,
        None,
        &chunks.chunk(ordered! {}, Some(finish_reason(out))),
    );
    if conv.include_usage {
        let usage = usage(conv.input_tokens(), out.tokens());
        sse.json(
            FrameKind::Terminal,
            0,
            None,
            &chunks.wrap([(); 0], Some(usage)),
        );
    }
    sse.raw(FrameKind::Terminal, None, b"[DONE]");
    sse
}

pub(crate) fn render_embeddings(request: &EmbedRequest, dimensions: usize) -> Value {
    let data: Vec<Value> = request
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = embedding(&input.text, dimensions);
            let encoded = if request.base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": encoded })
        })
        .collect();
    let tokens: u64 = request.inputs.iter().map(|i| i.tokens).sum();
    json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })
}

/// A fixed `created` so listings are stable.
const MODEL_CREATED: u64 = 1_700_000_000;

pub(crate) fn render_models(models: &[String]) -> Value {
    json!({
        "object": "list",
        "data": models.iter().map(|id| json!({
            "id": id,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": "system",
        })).collect::<Vec<_>>(),
    })
}

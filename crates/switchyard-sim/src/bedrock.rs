//! Amazon Bedrock Converse wire format (`POST /model/{modelId}/converse`, `/converse-stream`
//! and `/count-tokens`): credentials (a Bedrock API key as a bearer token, or a SigV4 signature
//! whose structure is checked but whose value is not), request validation as Bedrock does it
//! (strict top-level fields, a first `user` message, strict role alternation, `toolUse` /
//! `toolResult` pairing), the Converse answer, the ConverseStream events in AWS event-stream
//! framing, and the AWS JSON error shape with its `x-amzn-ErrorType` header. Field names follow
//! the Amazon Bedrock API reference (`API_runtime_Converse`, `API_runtime_ConverseStream`).
//! InvokeModel for embedding models lives in `bedrock_invoke`, which shares these credentials
//! and errors.
//!
//! Errors: `SimError::error_type` is the AWS exception name (`ValidationException`, ...) and
//! `SimError::code` the Coral namespace the header names after it: Bedrock's own
//! (`com.amazon.bedrock`) unless the request was refused before reaching Bedrock, by request
//! authentication (`com.amazon.coral.service`).

use std::fmt::Display;

use base64::Engine;
use http::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::SimConfig;
use crate::handler::{SimError, header};
use crate::model::{
    CacheMark, ClaudeThinking, Conversation, Finish, IdGen, JsonMode, Output, Piece, ThinkingMode,
    Tool, ToolChoice, inline_document, prefix_key, thought, word_pieces,
};
use crate::stream::{FrameKind, StreamBody};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Namespace of the errors Bedrock itself raises.
const BEDROCK_NAMESPACE: &str = "com.amazon.bedrock";
/// Namespace of the errors AWS request authentication raises before Bedrock sees the request.
const SERVICE_NAMESPACE: &str = "com.amazon.coral.service";

/// A request Bedrock refuses (400 `ValidationException`).
pub(crate) fn validation(message: impl Into<String>) -> SimError {
    SimError::bad_request(message).with_type("ValidationException")
}

/// A schema violation as AWS request validation words it; `at` counts list members from 1.
fn constraint(value: impl Display, at: &str, rule: &str) -> SimError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: \
         {rule}"
    ))
}

/// A request refused by AWS request authentication (always 403).
fn auth_error(error_type: &'static str, message: impl Into<String>) -> SimError {
    SimError::new(403, message)
        .with_type(error_type)
        .with_code(SERVICE_NAMESPACE)
}

pub(crate) fn invalid_json(err: &serde_json::Error) -> SimError {
    validation(format!(
        "Malformed input request: the body is not valid JSON ({err}), please reformat your \
         input and try again."
    ))
}

pub(crate) fn context_error() -> SimError {
    validation("Input is too long for requested model.")
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        s if s >= 500 => "InternalServerException",
        _ => "ValidationException",
    }
}

pub(crate) fn status_error(status: u16) -> SimError {
    let message = match status {
        401 => "The security token included in the request is invalid.",
        403 => "You don't have access to the model with the specified model ID.",
        404 => "The specified model could not be found.",
        408 => "Model has timed out in processing the request. Try your request again.",
        424 => "The model encountered an error while processing the request. Try again.",
        429 => "Too many requests, please wait before trying again.",
        503 => "Bedrock is unable to process your request.",
        s if s >= 500 => {
            "The system encountered an unexpected error during processing. Try your request again."
        }
        _ => "The request is not valid for the specified model.",
    };
    let err = SimError::new(status, message).with_type(error_type(status));
    if status == 401 {
        err.with_code(SERVICE_NAMESPACE)
    } else {
        err
    }
}

/// `x-amzn-ErrorType`: the exception name, then the Coral namespace URL AWS appends (clients
/// keep what comes before the first `:`).
pub(crate) fn error_type_header(err: &SimError) -> String {
    format!(
        "{}:http://internal.amazon.com/coral/{}/",
        err.error_type.unwrap_or(error_type(err.status)),
        err.code.unwrap_or(BEDROCK_NAMESPACE),
    )
}

/// `{"message": ...}`; the missing-credential refusal spells it `Message`, as AWS sends it.
pub(crate) fn error_body(err: &SimError) -> Value {
    let key =
        if err.error_type == Some("AccessDeniedException") && err.code == Some(SERVICE_NAMESPACE) {
            "Message"
        } else {
            "message"
        };
    json!({ key: err.message })
}

/// The exception message a stream ends with for `error_after`.
pub(crate) fn stream_error_frame() -> Vec<u8> {
    let payload = json!({
        "message": "The model encountered an error while streaming the response. Retry your request.",
        "originalStatusCode": 500,
        "originalMessage": "Internal server error",
    });
    crate::eventstream::event_stream_frame(
        &[
            (":exception-type", "modelStreamErrorException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// The unreadable event a stream ends with for `malformed_after`: well framed, its CRCs right,
/// but its payload is not JSON.
pub(crate) fn malformed_frame() -> Vec<u8> {
    crate::eventstream::event_stream_frame(&event_headers("contentBlockDelta"), b"{not json")
}

/// The headers of a ConverseStream event.
fn event_headers(event_type: &str) -> [(&str, &str); 3] {
    [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

const SIGV4_ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Checks the credential as AWS's front door does: a Bedrock API key as a bearer token, or a
/// SigV4 `Authorization` header whose structure is checked (algorithm, a credential scoped to
/// `bedrock` and `aws4_request`, signed `host` and `x-amz-date`, a 64-hex signature, an
/// `x-amz-date` matching the scope's date) and, when it states one, the body's SHA-256
/// (`x-amz-content-sha256`). The signature's value is not verified. With `api_keys` set, the
/// API key or the SigV4 access key id must be one of them. Nothing is checked with
/// `require_auth: false`.
pub(crate) fn check_credentials(
    config: &SimConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SimError> {
    if !config.require_auth {
        return Ok(());
    }
    let Some(authorization) = header(headers, "authorization") else {
        return Err(auth_error(
            "AccessDeniedException",
            "Authorization header is missing",
        ));
    };
    let key = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                return Err(auth_error(
                    "AccessDeniedException",
                    "Authorization header is missing",
                ));
            }
            token
        }
        _ if authorization.starts_with("AWS4-") => sigv4(authorization, headers, body)?,
        _ => {
            return Err(auth_error(
                "IncompleteSignatureException",
                "The Authorization header is neither a Bedrock API key (`Bearer <key>`) nor an \
                 AWS4-HMAC-SHA256 signature.",
            ));
        }
    };
    if !config.api_keys.is_empty() && !config.api_keys.iter().any(|k| k == key) {
        return Err(auth_error(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    Ok(())
}

/// Checks a SigV4 `Authorization` header's structure; returns its access key id.
fn sigv4<'a>(
    authorization: &'a str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'a str, SimError> {
    let incomplete = |message: String| auth_error("IncompleteSignatureException", message);
    let Some(params) = authorization
        .strip_prefix(SIGV4_ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
    else {
        let algorithm = authorization.split_whitespace().next().unwrap_or_default();
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Sign with {SIGV4_ALGORITHM}."
        )));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = param.split_once('=') else {
            return Err(incomplete(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header: '{param}'."
            )));
        };
        match name.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let missing: Vec<String> = [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_none_or(str::is_empty))
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing.join(" ")));
    };
    if !missing.is_empty() {
        return Err(incomplete(missing.join(" ")));
    }

    let scope: Vec<&str> = credential.split('/').collect();
    let &[access_key, date, region, service, terminator] = scope.as_slice() else {
        return Err(incomplete(format!(
            "Credential should be '<access key id>/<YYYYMMDD>/<region>/bedrock/aws4_request', \
             not '{credential}'."
        )));
    };
    if access_key.is_empty() {
        return Err(incomplete("Credential has no access key id.".into()));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid date (YYYYMMDD), not '{date}'."
        )));
    }
    if region.is_empty() {
        return Err(incomplete(
            "Credential should be scoped to a valid region.".into(),
        ));
    }
    if service != "bedrock" {
        return Err(incomplete(format!(
            "Credential should be scoped to correct service: 'bedrock', not '{service}'."
        )));
    }
    if terminator != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not \
             '{terminator}'."
        )));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !signed.contains(&required) {
            return Err(incomplete(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete(format!(
            "Signature should be 64 hexadecimal characters, not '{signature}'."
        )));
    }
    let Some(amz_date) = header(headers, "x-amz-date") else {
        return Err(incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header."
                .into(),
        ));
    };
    if !is_basic_iso8601(amz_date) {
        return Err(incomplete(format!(
            "X-Amz-Date must be in the ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z'), not \
             '{amz_date}'."
        )));
    }
    if &amz_date[..8] != date {
        return Err(auth_error(
            "InvalidSignatureException",
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{date}' != '{}', from '{amz_date}'.",
                &amz_date[..8]
            ),
        ));
    }
    if let Some(stated) = header(headers, "x-amz-content-sha256") {
        let actual = hex::encode(Sha256::digest(body));
        if !stated.eq_ignore_ascii_case(&actual) {
            return Err(auth_error(
                "InvalidSignatureException",
                format!(
                    "The request signature we calculated does not match the signature you \
                     provided. Check your AWS Secret Access Key and signing method. The body's \
                     SHA-256 is {actual}, not the x-amz-content-sha256 sent ({stated})."
                ),
            ));
        }
    }
    Ok(access_key)
}

/// `YYYYMMDDTHHMMSSZ`.
fn is_basic_iso8601(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The members of a Converse request body; any other is refused.
const REQUEST_FIELDS: [&str; 12] = [
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
    "outputConfig",
    "serviceTier",
];

const IMAGE_FORMATS: [&str; 4] = ["png", "jpeg", "gif", "webp"];

/// Document formats with the media type `{documents}` shows them as.
const DOCUMENT_FORMATS: [(&str, &str); 9] = [
    ("pdf", "application/pdf"),
    ("csv", "text/csv"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("html", "text/html"),
    ("txt", "text/plain"),
    ("md", "text/markdown"),
];

/// The members of a message's content block (a union: exactly one is set).
const BLOCK_MEMBERS: [&str; 12] = [
    "text",
    "image",
    "document",
    "video",
    "audio",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
];

const TOOL_USE_ID_MAX: usize = 64;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The single member of a union value (a content block, a tool, a tool choice).
fn union_member<'v>(value: &'v Value, at: &str) -> Result<(&'v str, &'v Value), SimError> {
    match value.as_object() {
        Some(obj) if obj.len() == 1 => obj
            .iter()
            .next()
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| validation(format!("{at} must set exactly one member."))),
        _ => Err(validation(format!(
            "Malformed input request: {at} must be an object setting exactly one member, please \
             reformat your input and try again."
        ))),
    }
}

/// A `cachePoint` block: whether it caches for an hour (`ttl: "1h"`; five minutes otherwise).
fn cache_point(block: &Value, at: &str) -> Result<bool, SimError> {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "default" {
        return Err(constraint(
            kind,
            &format!("{at}.cachePoint.type"),
            "Member must satisfy enum value set: [default]",
        ));
    }
    match block.get("ttl").and_then(Value::as_str) {
        None | Some("5m") => Ok(false),
        Some("1h") => Ok(true),
        Some(other) => Err(constraint(
            other,
            &format!("{at}.cachePoint.ttl"),
            "Member must satisfy enum value set: [5m, 1h]",
        )),
    }
}

/// An image block as `{images}` shows it: inline bytes as a data URI, an S3 object by its URI.
fn image(image: &Value, at: &str) -> Result<String, SimError> {
    let format = image.get("format").and_then(Value::as_str).unwrap_or("");
    if !IMAGE_FORMATS.contains(&format) {
        return Err(constraint(
            format,
            &format!("{at}.image.format"),
            "Member must satisfy enum value set: [png, jpeg, gif, webp]",
        ));
    }
    let source = image.get("source");
    if let Some(bytes) = source.and_then(|s| s.get("bytes")).and_then(Value::as_str) {
        if base64::engine::general_purpose::STANDARD
            .decode(bytes)
            .is_err()
        {
            return Err(validation(format!(
                "Malformed input request: {at}.image.source.bytes is not valid base64, please \
                 reformat your input and try again."
            )));
        }
        return Ok(format!("data:image/{format};base64,{bytes}"));
    }
    if let Some(uri) = source
        .and_then(|s| s.pointer("/s3Location/uri"))
        .and_then(Value::as_str)
    {
        return Ok(uri.to_owned());
    }
    Err(validation(format!(
        "Malformed input request: {at}.image.source must set `bytes` or `s3Location`, please \
         reformat your input and try again."
    )))
}

/// A document block as `{documents}` shows it (inline bytes as `<media type>:<decoded bytes>`,
/// a text source as `<media type>:<bytes>`, a content source as `content:<blocks>`, an S3
/// object by its URI), and the input characters it adds.
/// The citation Claude on Bedrock makes of a text document with citations enabled: its first
/// sentence, by its characters (`documentChar`).
fn document_citation(document: &Value, index: usize) -> Option<Value> {
    let enabled = document
        .get("citations")
        .and_then(|c| c.get("enabled"))
        .and_then(Value::as_bool)
        == Some(true);
    let text = document.get("source")?.get("text")?.as_str()?;
    if !enabled {
        return None;
    }
    let sentence = text.find(". ").map_or(text, |end| &text[..end + 2]);
    Some(json!({
        "title": document.get("name").cloned().unwrap_or(Value::Null),
        "sourceContent": [{ "text": sentence }],
        "location": { "documentChar": {
            "documentIndex": index, "start": 0, "end": sentence.chars().count(),
        } },
    }))
}

/// The words an answer citing the request's documents ends with, in a block of their own that
/// carries the citations (`citationsContent`, or its streamed text and citation deltas).
const CITED_WORDS: &str = " As the document says.";

fn document(document: &Value, at: &str) -> Result<(String, usize), SimError> {
    let format = document.get("format").and_then(Value::as_str).unwrap_or("");
    let Some((_, media_type)) = DOCUMENT_FORMATS.iter().find(|(f, _)| *f == format) else {
        return Err(constraint(
            format,
            &format!("{at}.document.format"),
            "Member must satisfy enum value set: [pdf, csv, doc, docx, xls, xlsx, html, txt, md]",
        ));
    };
    let name = document.get("name").and_then(Value::as_str).unwrap_or("");
    if name.trim().is_empty() {
        return Err(constraint(
            name,
            &format!("{at}.document.name"),
            "Member must have length greater than or equal to 1",
        ));
    }
    let source = document.get("source");
    let get = |key: &str| source.and_then(|s| s.get(key));
    if let Some(bytes) = get("bytes").and_then(Value::as_str) {
        let shown = inline_document(media_type, bytes).ok_or_else(|| {
            validation(format!(
                "Malformed input request: {at}.document.source.bytes is not valid base64, please \
                 reformat your input and try again."
            ))
        })?;
        return Ok((shown, 0));
    }
    if let Some(text) = get("text").and_then(Value::as_str) {
        return Ok((format!("{media_type}:{}", text.len()), chars(text)));
    }
    if let Some(Value::Array(blocks)) = get("content") {
        let text: usize = blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .map(chars)
            .sum();
        return Ok((format!("content:{}", blocks.len()), text));
    }
    if let Some(uri) = get("s3Location")
        .and_then(|l| l.get("uri"))
        .and_then(Value::as_str)
    {
        return Ok((uri.to_owned(), 0));
    }
    Err(validation(format!(
        "Malformed input request: {at}.document.source must set `bytes`, `text`, `content` or \
         `s3Location`, please reformat your input and try again."
    )))
}

/// Checks a `toolUseId` against Bedrock's pattern `[a-zA-Z0-9_-]+` and its 64-character limit.
fn tool_use_id<'v>(block: &'v Value, at: &str) -> Result<&'v str, SimError> {
    let id = block.get("toolUseId").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() {
        return Err(constraint(
            id,
            at,
            "Member must have length greater than or equal to 1",
        ));
    }
    if id.len() > TOOL_USE_ID_MAX {
        return Err(constraint(
            id,
            at,
            "Member must have length less than or equal to 64",
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(constraint(
            id,
            at,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
        ));
    }
    Ok(id)
}

/// The last `cachePoint` so far: message index (none in the system prompt), block index, input
/// characters up to it, cached for an hour.
type Breakpoint = (Option<usize>, usize, usize, bool);

/// What one message adds to the conversation.
#[derive(Default)]
struct Turn {
    text: Vec<String>,
    images: Vec<String>,
    documents: Vec<String>,
    uses: Vec<String>,
    results: Vec<(String, String)>,
}

/// Reads one message's content blocks into `turn`, counting input characters into `conv`.
fn read_message(
    conv: &mut Conversation,
    role: &str,
    i: usize,
    blocks: &[Value],
    turn: &mut Turn,
    breakpoint: &mut Option<Breakpoint>,
) -> Result<(), SimError> {
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        let coral = format!("messages.{}.member.content.{}.member", i + 1, j + 1);
        let (member, value) = union_member(block, &at)?;
        match member {
            "text" => {
                let text = value.as_str().unwrap_or("");
                if text.trim().is_empty() {
                    return Err(validation(format!(
                        "The text field in the ContentBlock object at {at} is blank. Add text \
                         to the text field, and try again."
                    )));
                }
                conv.input_chars += chars(text);
                turn.text.push(text.to_owned());
            }
            "image" => turn.images.push(image(value, &at)?),
            "document" => {
                let (shown, text_chars) = document(value, &at)?;
                conv.input_chars += text_chars;
                conv.citations
                    .extend(document_citation(value, conv.documents_seen));
                conv.documents_seen += 1;
                turn.documents.push(shown);
            }
            "toolUse" if role == "assistant" => {
                let id = tool_use_id(value, &format!("{coral}.toolUse.toolUseId"))?;
                turn.uses.push(id.to_owned());
                if let Some(name) = value.get("name").and_then(Value::as_str) {
                    conv.called_tools.push(name.to_owned());
                }
                conv.input_chars += value.get("name").and_then(Value::as_str).map_or(0, chars);
                conv.input_chars += value.get("input").map_or(0, |v| chars(&v.to_string()));
            }
            "toolResult" if role == "user" => {
                let id = tool_use_id(value, &format!("{coral}.toolResult.toolUseId"))?;
                let mut parts = Vec::new();
                for (k, item) in value
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let at = format!("{at}.toolResult.content.{k}");
                    match union_member(item, &at)? {
                        ("text", text) => parts.push(text.as_str().unwrap_or("").to_owned()),
                        ("json", json) => parts.push(json.to_string()),
                        // A result's media (an agent's screenshot, a fetched PDF) are the user
                        // turn's too.
                        ("image", media) => turn.images.push(image(media, &at)?),
                        ("document", media) => {
                            let (shown, text_chars) = document(media, &at)?;
                            conv.input_chars += text_chars;
                            turn.documents.push(shown);
                        }
                        _ => {}
                    }
                }
                if let Some(status) = value.get("status").and_then(Value::as_str)
                    && status != "success"
                    && status != "error"
                {
                    return Err(constraint(
                        status,
                        &format!("{coral}.toolResult.status"),
                        "Member must satisfy enum value set: [success, error]",
                    ));
                }
                let result = parts.join("\n");
                conv.input_chars += chars(&result);
                turn.results.push((id.to_owned(), result));
            }
            "toolUse" | "toolResult" => {
                return Err(validation(format!(
                    "{at}: a {member} block is not allowed in a message whose role is {role}."
                )));
            }
            "reasoningContent" => {
                conv.input_chars += value
                    .pointer("/reasoningText/text")
                    .and_then(Value::as_str)
                    .map_or(0, chars);
            }
            "guardContent" => {
                conv.input_chars += value
                    .pointer("/text/text")
                    .and_then(Value::as_str)
                    .map_or(0, chars);
            }
            "cachePoint" => {
                let hour = cache_point(value, &at)?;
                *breakpoint = Some((Some(i), j, conv.input_chars, hour));
            }
            other if BLOCK_MEMBERS.contains(&other) => {}
            other => {
                return Err(validation(format!(
                    "Malformed input request: {at} has an unknown member `{other}`, please \
                     reformat your input and try again."
                )));
            }
        }
    }
    Ok(())
}

/// Parses a Converse request for the model `model` (the decoded `modelId`).
pub(crate) fn parse_chat(body: Value, model: &str) -> Result<Conversation, SimError> {
    parse_request(body, model, false)
}

/// `CountTokens`: `{"input": {"converse": {messages, system}}}`, the conversation read as
/// `Converse` reads it (tool blocks need no `toolConfig` here: the request has none).
pub(crate) fn parse_count_tokens(mut body: Value, model: &str) -> Result<Conversation, SimError> {
    // Counted for Claude foundation models only, named bare: a cross-region profile's id
    // (`us.anthropic.…`) or another family's model is refused, as Bedrock refuses it.
    if !model.starts_with("anthropic.") {
        return Err(validation(
            "The provided model doesn't support counting tokens.",
        ));
    }
    let converse = body
        .get_mut("input")
        .and_then(|input| input.get_mut("converse"))
        .map(Value::take)
        .ok_or_else(|| {
            validation("Malformed input request: input.converse is required for a Converse count.")
        })?;
    if let Some(unknown) = converse.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["messages", "system"].contains(&k.as_str()))
    }) {
        return Err(validation(format!(
            "Malformed input request: extraneous key [{unknown}] is not permitted in \
             input.converse, please reformat your input and try again."
        )));
    }
    parse_request(converse, model, true)
}

/// `{"inputTokens": n}`, CountTokens' answer.
pub(crate) fn render_count(tokens: u64) -> Value {
    json!({ "inputTokens": tokens })
}

fn parse_request(mut body: Value, model: &str, counting: bool) -> Result<Conversation, SimError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(validation(
            "Malformed input request: the body must be a JSON object, please reformat your \
             input and try again.",
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(validation(format!(
            "Malformed input request: extraneous key [{unknown}] is not permitted, please \
             reformat your input and try again."
        )));
    }
    let mut conv = Conversation {
        model: model.to_owned(),
        parallel_tool_calls: true,
        ..Conversation::default()
    };
    let mut breakpoint: Option<Breakpoint> = None;
    let mut uses_tools = false;
    // The last assistant turn: its index, and whether it opens with reasoning.
    let mut last_assistant: Option<(usize, bool)> = None;
    {
        let messages = match obj.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m,
            None | Some(Value::Array(_)) => {
                return Err(validation(
                    "A conversation must start with a user message. Try again with a \
                     conversation that starts with a user message.",
                ));
            }
            Some(other) => {
                return Err(validation(format!(
                    "Malformed input request: messages must be a list, not {other}, please \
                     reformat your input and try again."
                )));
            }
        };
        let system = obj.get("system");
        match system {
            None => {}
            Some(Value::Array(blocks)) => {
                for (j, block) in blocks.iter().enumerate() {
                    let at = format!("system.{j}");
                    match union_member(block, &at)? {
                        ("text", text) => {
                            conv.input_chars += text.as_str().map_or(0, chars);
                            conv.system_text.push_str(text.as_str().unwrap_or(""));
                        }
                        ("cachePoint", point) => {
                            let hour = cache_point(point, &at)?;
                            breakpoint = Some((None, j, conv.input_chars, hour));
                        }
                        ("guardContent", guard) => {
                            conv.input_chars += guard
                                .pointer("/text/text")
                                .and_then(Value::as_str)
                                .map_or(0, chars);
                        }
                        (other, _) => {
                            return Err(validation(format!(
                                "Malformed input request: {at} has an unknown member \
                                 `{other}`, please reformat your input and try again."
                            )));
                        }
                    }
                }
            }
            Some(_) => {
                return Err(validation(
                    "Malformed input request: system must be a list of content blocks, please \
                     reformat your input and try again.",
                ));
            }
        }

        // `toolUse` ids of the previous assistant turn, which the next message must answer.
        let mut awaiting: Vec<String> = Vec::new();
        let mut last_results: Option<Vec<String>> = None;
        let mut previous_role = "";
        for (i, message) in messages.iter().enumerate() {
            let role = message.get("role").and_then(Value::as_str).unwrap_or("");
            if role != "user" && role != "assistant" {
                return Err(constraint(
                    role,
                    &format!("messages.{}.member.role", i + 1),
                    "Member must satisfy enum value set: [user, assistant]",
                ));
            }
            if i == 0 && role != "user" {
                return Err(validation(
                    "A conversation must start with a user message. Try again with a \
                     conversation that starts with a user message.",
                ));
            }
            if role == previous_role {
                return Err(validation(
                    "A conversation must alternate between user and assistant roles. Make sure \
                     the conversation alternates between user and assistant roles and try again.",
                ));
            }
            previous_role = role;
            let blocks = match message.get("content") {
                Some(Value::Array(blocks)) if !blocks.is_empty() => blocks,
                Some(Value::Array(_)) | None => {
                    return Err(validation(format!(
                        "The content field in the Message object at messages.{i} is empty. Add \
                         a ContentBlock object to the content field and try again."
                    )));
                }
                Some(_) => {
                    return Err(validation(format!(
                        "Malformed input request: messages.{i}.content must be a list, please \
                         reformat your input and try again."
                    )));
                }
            };
            if role == "assistant" {
                let first = blocks.first().and_then(Value::as_object);
                last_assistant =
                    Some((i, first.is_some_and(|b| b.contains_key("reasoningContent"))));
            }
            let mut turn = Turn::default();
            read_message(&mut conv, role, i, blocks, &mut turn, &mut breakpoint)?;
            uses_tools |= !turn.uses.is_empty() || !turn.results.is_empty();
            if role == "user" {
                if turn.results.len() > awaiting.len() {
                    return Err(validation(format!(
                        "The number of toolResult blocks at messages.{i}.content exceeds the \
                         number of toolUse blocks of previous turn."
                    )));
                }
                let unanswered: Vec<&str> = awaiting
                    .iter()
                    .filter(|id| !turn.results.iter().any(|(r, _)| r == *id))
                    .map(String::as_str)
                    .collect();
                if !unanswered.is_empty() {
                    return Err(validation(format!(
                        "Expected toolResult blocks at messages.{i}.content for the following \
                         Ids: {}",
                        unanswered.join(", ")
                    )));
                }
                awaiting.clear();
                conv.last_user_text = turn.text.join("\n");
                conv.last_user_images = turn.images;
                conv.last_user_documents = turn.documents;
                last_results = (!turn.results.is_empty())
                    .then(|| turn.results.into_iter().map(|(_, r)| r).collect());
            } else {
                awaiting = turn.uses;
                last_results = None;
            }
        }
        conv.tool_results = last_results.map(|r| r.join(" "));
        conv.cache_mark = breakpoint.map(|(message, block, chars, hour)| CacheMark {
            key: prefix_key(&conv.model, system, messages, message, block),
            chars,
            hour,
        });
    }

    if let Some(config) = obj.get("inferenceConfig") {
        read_inference_config(&mut conv, config)?;
    }
    match obj.get_mut("toolConfig") {
        Some(config) => read_tool_config(&mut conv, config)?,
        None if uses_tools && !counting => {
            return Err(validation(
                "The toolConfig field must be defined when using toolUse and toolResult content \
                 blocks.",
            ));
        }
        None => {}
    }
    // After the tool choice, which a budget may not force.
    let budgeted;
    (conv.thinking, budgeted) = claude_thinking(obj, &conv)?;
    conv.response_field_paths = obj
        .get("additionalModelResponseFieldPaths")
        .and_then(Value::as_array)
        .map(|paths| {
            paths
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // Adaptive thinking may have skipped thinking on the turn it goes on from.
    if budgeted
        && conv.tool_results.is_some()
        && let Some((i, false)) = last_assistant
    {
        return Err(validation(format!(
            "The model returned the following errors: messages.{i}.content.0: with thinking \
             enabled, the final assistant message (whose toolUse blocks the last toolResult \
             blocks answer) must start with a reasoningContent block; send the previous turn's \
             reasoning back, or disable thinking"
        )));
    }
    if let Some(format) = obj
        .get("outputConfig")
        .and_then(|c| c.get("textFormat"))
        .filter(|f| !f.is_null())
    {
        let kind = format.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "json_schema" {
            return Err(constraint(
                kind,
                "outputConfig.textFormat.type",
                "Member must satisfy enum value set: [json_schema]",
            ));
        }
        // The schema travels as a JSON document inside a string.
        let schema = format
            .pointer("/structure/jsonSchema/schema")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                validation(
                    "Malformed input request: outputConfig.textFormat.structure.jsonSchema.schema \
                     must be a string holding a JSON schema, please reformat your input and try \
                     again.",
                )
            })?;
        let schema: Value = serde_json::from_str(schema).map_err(|e| {
            validation(format!(
                "The JSON schema in outputConfig.textFormat.structure.jsonSchema.schema is not \
                 valid JSON: {e}"
            ))
        })?;
        // Claude's structured outputs compile the schema as on Anthropic's API.
        if conv.model.contains("anthropic.") {
            crate::anthropic::compiled_schema(
                &schema,
                "outputConfig.textFormat.structure.jsonSchema.schema",
            )?;
        }
        conv.json = Some(JsonMode {
            schema: Some(schema),
        });
    }
    Ok(conv)
}

/// Claude's extended thinking, asked for in the model's own fields
/// (`additionalModelRequestFields.thinking`), checked as Claude checks it ([`ClaudeThinking`]):
/// whether it is on, and whether with a budget.
fn claude_thinking(
    obj: &serde_json::Map<String, Value>,
    conv: &Conversation,
) -> Result<(bool, bool), SimError> {
    let fields = obj.get("additionalModelRequestFields");
    let mode = ClaudeThinking {
        thinking: fields.and_then(|f| f.get("thinking")),
        model: &conv.model,
        max_tokens: conv.max_output_tokens,
        temperature: obj
            .get("inferenceConfig")
            .and_then(|c| c.get("temperature"))
            .and_then(Value::as_f64),
        top_k: fields
            .and_then(|f| f.get("top_k"))
            .is_some_and(|k| !k.is_null()),
        forced_tool: matches!(
            conv.tool_choice,
            ToolChoice::Required | ToolChoice::Named(_)
        ),
    }
    .mode()
    .map_err(|why| validation(format!("The model returned the following errors: {why}")))?;
    Ok((mode.is_some(), mode == Some(ThinkingMode::Budget)))
}

fn read_inference_config(conv: &mut Conversation, config: &Value) -> Result<(), SimError> {
    if !config.is_object() {
        return Err(validation(
            "Malformed input request: inferenceConfig must be an object, please reformat your \
             input and try again.",
        ));
    }
    if let Some(max) = config.get("maxTokens") {
        match max.as_i64() {
            Some(n) if n >= 1 => conv.max_output_tokens = u64::try_from(n).ok(),
            _ => {
                return Err(constraint(
                    max,
                    "inferenceConfig.maxTokens",
                    "Member must have value greater than or equal to 1",
                ));
            }
        }
    }
    for name in ["temperature", "topP"] {
        if let Some(value) = config.get(name) {
            match value.as_f64() {
                Some(v) if v < 0.0 => {
                    return Err(constraint(
                        v,
                        &format!("inferenceConfig.{name}"),
                        "Member must have value greater than or equal to 0",
                    ));
                }
                Some(v) if v > 1.0 => {
                    return Err(constraint(
                        v,
                        &format!("inferenceConfig.{name}"),
                        "Member must have value less than or equal to 1",
                    ));
                }
                Some(_) => {}
                None => {
                    return Err(validation(format!(
                        "Malformed input request: inferenceConfig.{name} must be a number, \
                         please reformat your input and try again."
                    )));
                }
            }
        }
    }
    if let Some(stops) = config.get("stopSequences") {
        let Some(stops) = stops.as_array() else {
            return Err(validation(
                "Malformed input request: inferenceConfig.stopSequences must be a list of \
                 strings, please reformat your input and try again.",
            ));
        };
        conv.stop = stops
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    Ok(())
}

fn read_tool_config(conv: &mut Conversation, config: &mut Value) -> Result<(), SimError> {
    let tools = match config.get_mut("tools") {
        Some(Value::Array(tools)) if !tools.is_empty() => tools,
        _ => {
            return Err(constraint(
                "[]",
                "toolConfig.tools",
                "Member must have length greater than or equal to 1",
            ));
        }
    };
    for (k, tool) in tools.iter_mut().enumerate() {
        let at = format!("toolConfig.tools.{k}");
        let (member, _) = union_member(tool, &at)?;
        match member {
            "toolSpec" => {
                let Some(spec) = tool.get_mut("toolSpec") else {
                    continue;
                };
                let name = spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let coral = format!("toolConfig.tools.{}.member.toolSpec.name", k + 1);
                if name.is_empty()
                    || name.len() > TOOL_USE_ID_MAX
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(constraint(
                        &name,
                        &coral,
                        "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
                    ));
                }
                let Some(schema) = spec.pointer_mut("/inputSchema/json").map(Value::take) else {
                    return Err(validation(format!(
                        "Malformed input request: {at}.toolSpec.inputSchema.json is required, \
                         please reformat your input and try again."
                    )));
                };
                conv.tools.push(Tool { name, schema });
            }
            // A breakpoint after the tools, and Bedrock's own tools, call nothing here.
            "cachePoint" | "systemTool" => {}
            other => {
                return Err(validation(format!(
                    "Malformed input request: {at} has an unknown member `{other}`, please \
                     reformat your input and try again."
                )));
            }
        }
    }
    conv.tool_choice = match config.get("toolChoice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(choice) => match union_member(choice, "toolConfig.toolChoice")? {
            ("auto", _) => ToolChoice::Auto,
            ("any", _) => ToolChoice::Required,
            ("tool", named) => match named.get("name").and_then(Value::as_str) {
                Some(name) => ToolChoice::Named(name.to_owned()),
                None => {
                    return Err(validation(
                        "Malformed input request: toolConfig.toolChoice.tool.name is required, \
                         please reformat your input and try again.",
                    ));
                }
            },
            (other, _) => {
                return Err(validation(format!(
                    "Malformed input request: toolConfig.toolChoice has an unknown member \
                     `{other}`, please reformat your input and try again."
                )));
            }
        },
    };
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// The model's own response fields asked for: Claude's `stop_sequence`, the sequence that
/// stopped it (null when none did).
fn response_fields(conv: &Conversation, out: &Output) -> Option<Value> {
    if !conv
        .response_field_paths
        .iter()
        .any(|p| p == "/stop_sequence")
    {
        return None;
    }
    let sequence = match out {
        Output::Text {
            finish: Finish::StopSequence(seq),
            ..
        } => Some(seq.as_str()),
        _ => None,
    };
    Some(json!({ "stop_sequence": sequence }))
}

fn stop_reason(out: &Output) -> &'static str {
    match out {
        Output::ToolCalls(_) => "tool_use",
        Output::Text { finish, .. } => match finish {
            Finish::Stop => "end_turn",
            Finish::Length => "max_tokens",
            Finish::StopSequence(_) => "stop_sequence",
        },
    }
}

/// `inputTokens` counts what the prompt cache neither read nor wrote; `totalTokens` all of it.
fn usage(conv: &Conversation, output: u64) -> Value {
    let cache = conv.cache;
    let mut usage = json!({
        "inputTokens": conv.uncached_input_tokens(),
        "outputTokens": output,
        "totalTokens": conv.input_tokens() + output,
        "cacheReadInputTokens": cache.read,
        "cacheWriteInputTokens": cache.written,
    });
    if cache.written > 0 {
        usage["cacheDetails"] = json!([{
            "ttl": if cache.hour { "1h" } else { "5m" },
            "inputTokens": cache.written,
        }]);
    }
    usage
}

/// `tooluse_` and 22 characters, as Bedrock's tool use ids look.
fn tool_use_id_for(ids: &IdGen) -> String {
    ids.make("tooluse_", 22)
}

/// Claude's thinking when it is on: its text, in word pieces as a stream sends them, and its
/// signature.
fn reasoning(ids: &IdGen, conv: &Conversation) -> Option<(String, Vec<Piece>, String)> {
    conv.thinking.then(|| {
        let text = thought(conv);
        let pieces = word_pieces(&text);
        (text, pieces, ids.make("EqoBCkgIARABGAIiQ", 64))
    })
}

fn pieces_tokens(pieces: &[Piece]) -> u64 {
    pieces.iter().map(|p| u64::from(p.tokens)).sum()
}

pub(crate) fn render(ids: &IdGen, conv: &Conversation, out: &Output) -> Value {
    let reasoning = reasoning(ids, conv);
    let mut content: Vec<Value> = match out {
        Output::Text { text, .. } if !conv.citations.is_empty() => vec![
            json!({ "text": text }),
            json!({ "citationsContent": {
                "content": [{ "text": CITED_WORDS }],
                "citations": conv.citations,
            } }),
        ],
        Output::Text { text, .. } => vec![json!({ "text": text })],
        Output::ToolCalls(calls) => calls
            .iter()
            .map(|call| {
                json!({
                    "toolUse": {
                        "toolUseId": tool_use_id_for(ids),
                        "name": call.name,
                        "input": call.arguments,
                    }
                })
            })
            .collect(),
    };
    let thought = reasoning
        .as_ref()
        .map_or(0, |(_, pieces, _)| pieces_tokens(pieces));
    if let Some((text, _, signature)) = reasoning {
        content.insert(
            0,
            json!({ "reasoningContent": { "reasoningText": { "text": text, "signature": signature } } }),
        );
    }
    let mut answer = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": stop_reason(out),
        "usage": usage(conv, out.tokens() + thought),
        "metrics": { "latencyMs": conv.latency_ms },
    });
    if let Some(fields) = response_fields(conv, out) {
        answer["additionalModelResponseFields"] = fields;
    }
    answer
}

/// Characters Bedrock's `p` padding is cut from.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Writes ConverseStream events, each with the `p` field Bedrock adds so an event's size does
/// not give its content away: a prefix of [`PADDING`] whose length varies event by event.
struct Events {
    body: StreamBody,
    sent: usize,
}

impl Events {
    /// A `contentBlockDelta` for each of `pieces` of `text`, its delta as `delta` writes a piece.
    fn deltas(
        &mut self,
        index: usize,
        text: &str,
        pieces: &[Piece],
        delta: impl Fn(&str) -> Value,
    ) {
        for piece in pieces {
            self.event(
                FrameKind::Content,
                piece.tokens,
                "contentBlockDelta",
                json!({
                    "contentBlockIndex": index,
                    "delta": delta(&text[piece.start..piece.end]),
                }),
            );
        }
    }

    fn event(&mut self, kind: FrameKind, tokens: u32, event_type: &str, mut payload: Value) {
        let len = 1 + (self.sent * 17 + 5) % PADDING.len();
        self.sent += 1;
        payload["p"] = json!(&PADDING[..len]);
        let payload = serde_json::to_vec(&payload).unwrap_or_default();
        self.body
            .event(kind, tokens, &event_headers(event_type), &payload);
    }
}

/// `messageStart`; per block an optional `contentBlockStart` (tool use only: a text block starts
/// with its first delta), `contentBlockDelta`s and `contentBlockStop`; `messageStop`; then
/// `metadata` with the usage, which only the stream's end carries.
pub(crate) fn render_stream(ids: &IdGen, conv: &Conversation, out: &Output) -> StreamBody {
    let mut events = Events {
        body: StreamBody::new(),
        sent: 0,
    };
    events.event(
        FrameKind::Other,
        0,
        "messageStart",
        json!({ "role": "assistant" }),
    );
    // Claude's reasoning is block 0 when thinking is on: its text, then its signature.
    let reasoning = reasoning(ids, conv);
    let first = usize::from(reasoning.is_some());
    let thought = reasoning
        .as_ref()
        .map_or(0, |(_, pieces, _)| pieces_tokens(pieces));
    if let Some((text, pieces, signature)) = &reasoning {
        events.deltas(
            0,
            text,
            pieces,
            |t| json!({ "reasoningContent": { "text": t } }),
        );
        events.event(
            FrameKind::Other,
            0,
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "reasoningContent": { "signature": signature } } }),
        );
        events.event(
            FrameKind::Other,
            0,
            "contentBlockStop",
            json!({ "contentBlockIndex": 0 }),
        );
    }
    match out {
        Output::Text { text, pieces, .. } => {
            if pieces.is_empty() {
                events.event(
                    FrameKind::Other,
                    0,
                    "contentBlockDelta",
                    json!({ "contentBlockIndex": first, "delta": { "text": "" } }),
                );
            }
            events.deltas(first, text, pieces, |t| json!({ "text": t }));
            events.event(
                FrameKind::Other,
                0,
                "contentBlockStop",
                json!({ "contentBlockIndex": first }),
            );
            if !conv.citations.is_empty() {
                let cited = first + 1;
                events.event(
                    FrameKind::Content,
                    1,
                    "contentBlockDelta",
                    json!({ "contentBlockIndex": cited, "delta": { "text": CITED_WORDS } }),
                );
                for citation in &conv.citations {
                    events.event(
                        FrameKind::Other,
                        0,
                        "contentBlockDelta",
                        json!({ "contentBlockIndex": cited, "delta": { "citation": citation } }),
                    );
                }
                events.event(
                    FrameKind::Other,
                    0,
                    "contentBlockStop",
                    json!({ "contentBlockIndex": cited }),
                );
            }
        }
        Output::ToolCalls(calls) => {
            for (index, call) in (first..).zip(calls) {
                events.event(
                    FrameKind::Content,
                    1,
                    "contentBlockStart",
                    json!({
                        "contentBlockIndex": index,
                        "start": {
                            "toolUse": { "toolUseId": tool_use_id_for(ids), "name": call.name },
                        },
                    }),
                );
                for piece in call.fragments() {
                    events.event(
                        FrameKind::Content,
                        piece.tokens,
                        "contentBlockDelta",
                        json!({
                            "contentBlockIndex": index,
                            "delta": {
                                "toolUse": { "input": &call.arguments_json[piece.start..piece.end] },
                            },
                        }),
                    );
                }
                events.event(
                    FrameKind::Other,
                    0,
                    "contentBlockStop",
                    json!({ "contentBlockIndex": index }),
                );
            }
        }
    }
    events.event(
        FrameKind::Terminal,
        0,
        "messageStop",
        match response_fields(conv, out) {
            Some(fields) => {
                json!({ "stopReason": stop_reason(out), "additionalModelResponseFields": fields })
            }
            None => json!({ "stopReason": stop_reason(out) }),
        },
    );
    events.event(
        FrameKind::Terminal,
        0,
        "metadata",
        json!({
            "usage": usage(conv, out.tokens() + thought),
            "metrics": { "latencyMs": conv.latency_ms },
        }),
    );
    events.body
}

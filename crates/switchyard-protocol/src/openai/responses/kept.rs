//! Responses the gateway kept, brought back into a request that refers to them. The input of a
//! request with `previous_response_id` starts with the conversation that response answered (its
//! request's input, itself already whole) and the response's output; an `item_reference` item
//! becomes the item it names. The request is then read as if the client had sent the whole
//! conversation itself, so every other path stays stateless.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::DecodeError;

/// A response as kept: the request it answered (with what that referred to brought in) and the
/// `response` object.
#[derive(Debug, Clone)]
pub struct Kept {
    pub request: Bytes,
    pub response: Bytes,
}

/// Whether `body` may refer to kept responses: a scan for the two members' names, before a
/// body that failed its first reading is parsed again.
pub fn refers_to_kept(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"previous_response_id").is_some()
        || memchr::memmem::find(body, b"item_reference").is_some()
}

/// The ids of the responses `body` refers to (its `previous_response_id`, and the responses its
/// `item_reference` items' ids belong to), for a gateway that must fetch them before
/// `bring_in`. Empty for anything that is not such a request.
pub fn referenced_responses(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Refs {
        previous_response_id: Option<Value>,
        input: Option<Value>,
    }
    let Ok(refs) = serde_json::from_slice::<Refs>(body) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = refs
        .previous_response_id
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(Value::Array(items)) = &refs.input {
        for item in items {
            if item.get("type").and_then(Value::as_str) == Some("item_reference")
                && let Some(response) = item
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(response_of_item)
                && !ids.contains(&response)
            {
                ids.push(response);
            }
        }
    }
    ids
}

/// The response id an output item's id belongs to: the gateway names items
/// `{kind}_{response}_{index}` (see the encoder's `item_id`).
fn response_of_item(item_id: &str) -> Option<String> {
    let (_, rest) = item_id.split_once('_')?;
    let (body, index) = rest.rsplit_once('_')?;
    index.parse::<usize>().ok()?;
    Some(format!("resp_{body}"))
}

/// `input` as a list of items: a string is one user message.
fn items_of(input: Value, path: &str) -> Result<Vec<Value>, DecodeError> {
    match input {
        Value::String(text) => Ok(vec![json!({"role": "user", "content": text})]),
        Value::Array(items) => Ok(items),
        _ => Err(DecodeError::new(
            format!("'{path}' must be a string or an array of input items"),
            Some(path),
        )),
    }
}

/// The input items of the conversation a kept response answered (its request's input, with
/// what that referred to brought in).
fn request_items(kept: &Kept) -> Vec<Value> {
    serde_json::from_slice::<Map<String, Value>>(&kept.request)
        .ok()
        .and_then(|mut r| r.remove("input"))
        .and_then(|input| items_of(input, "input").ok())
        .unwrap_or_default()
}

/// The input items of the conversation kept response `id` answered, as `GET
/// /v1/responses/{id}/input_items` lists them: a message written the short way (a role and a
/// string) in its full form, and each item with an id (`in_…` ones for those that had none).
pub fn input_items(kept: &Kept, id: &str) -> Vec<Value> {
    let body = id.strip_prefix("resp_").unwrap_or(id);
    let mut items = request_items(kept);
    for (i, item) in items.iter_mut().enumerate() {
        let Value::Object(item) = item else { continue };
        if !item.contains_key("type") {
            item.insert("type".into(), json!("message"));
        }
        if let Some(Value::String(text)) = item.get("content") {
            let kind = if item.get("role").and_then(Value::as_str) == Some("assistant") {
                "output_text"
            } else {
                "input_text"
            };
            let part = json!([{"type": kind, "text": text}]);
            item.insert("content".into(), part);
        }
        // What the API's item types hold: a status on messages and tool calls and their
        // outputs, annotations on an answer's text.
        let typed = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if !item.contains_key("status")
            && matches!(
                typed,
                "message" | "function_call" | "function_call_output" | "custom_tool_call"
            )
        {
            item.insert("status".into(), json!("completed"));
        }
        if let Some(Value::Array(parts)) = item.get_mut("content") {
            for part in parts {
                if let Value::Object(part) = part
                    && part.get("type").and_then(Value::as_str) == Some("output_text")
                    && !part.contains_key("annotations")
                {
                    part.insert("annotations".into(), json!([]));
                }
            }
        }
        if !item.contains_key("id") {
            item.insert("id".into(), json!(format!("in_{body}_{i}")));
        }
    }
    items
}

/// A kept response's conversation: its request's input, then its output.
fn conversation(kept: &Kept) -> Vec<Value> {
    let mut items = request_items(kept);
    items.extend(output_of(kept));
    items
}

fn output_of(kept: &Kept) -> Vec<Value> {
    serde_json::from_slice::<Map<String, Value>>(&kept.response)
        .ok()
        .and_then(|mut r| r.remove("output"))
        .and_then(|output| match output {
            Value::Array(items) => Some(items),
            _ => None,
        })
        .unwrap_or_default()
}

fn not_kept(what: &str, id: &str, path: &str) -> DecodeError {
    DecodeError::new(
        format!(
            "{what} '{id}' is not kept by this gateway: it was stored with 'store': false, has \
             expired or been deleted, or was never answered here; send the whole conversation \
             in 'input' instead"
        ),
        Some(path),
    )
}

/// A request with the kept responses it refers to brought in.
#[derive(Debug)]
pub struct Brought {
    /// The request, stateless: the conversation it continues and the items it refers to are in
    /// its `input`.
    pub body: Vec<u8>,
    /// The `previous_response_id` it continued, which its response repeats (see
    /// [`super::continues`]).
    pub previous: Option<String>,
}

/// `body` with the kept responses it refers to brought in, or `None` when it refers to none
/// (or is not a JSON object, for the decoder to refuse as it would). `kept` finds a response by
/// its id.
pub fn bring_in(
    body: &[u8],
    kept: &dyn Fn(&str) -> Option<Kept>,
) -> Result<Option<Brought>, DecodeError> {
    let Ok(mut request) = serde_json::from_slice::<Map<String, Value>>(body) else {
        return Ok(None);
    };
    let previous = request.remove("previous_response_id");
    // A null one is dropped too, so the decoder never sees the member.
    let previous_given = previous.is_some();
    let mut previous_id = None;
    let mut items = match previous {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(id)) => {
            let previous = kept(&id).ok_or_else(|| {
                // OpenAI's own code, on which clients resend the whole conversation.
                not_kept("response", &id, "previous_response_id")
                    .with_code("previous_response_not_found")
            })?;
            previous_id = Some(id);
            conversation(&previous)
        }
        Some(_) => {
            return Err(DecodeError::new(
                "'previous_response_id' must be a string",
                Some("previous_response_id"),
            ));
        }
    };
    let mut changed = previous_given;
    if let Some(input) = request.remove("input") {
        for (i, item) in items_of(input, "input")?.into_iter().enumerate() {
            if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                items.push(item);
                continue;
            }
            let path = format!("input[{i}].id");
            let id = item.get("id").and_then(Value::as_str).ok_or_else(|| {
                DecodeError::new(format!("missing required field '{path}'"), Some(&path))
            })?;
            let found = response_of_item(id)
                .and_then(|response| kept(&response))
                .and_then(|k| {
                    output_of(&k)
                        .into_iter()
                        .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
                })
                .ok_or_else(|| not_kept("item", id, &path))?;
            items.push(found);
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    request.insert("input".into(), Value::Array(items));
    Ok(Some(Brought {
        body: serde_json::to_vec(&request).unwrap_or_default(),
        previous: previous_id,
    }))
}

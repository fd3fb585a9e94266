//! Reads a `POST /v1/responses` body into the canonical request, each error naming its JSON
//! path. The responses a request refers to are brought into its `input` before it gets here
//! (`kept.rs`); what still needs state the gateway does not keep (`conversation`, a stored
//! `prompt`, `background`, and a `previous_response_id` or `item_reference` nothing brought
//! in) is refused with a 400 rather than silently answered without its context.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::canonical::{
    ChatRequest, ContentPart, DocumentSource, Extras, ImageSource, Message, Reasoning,
    ResponseFormat, Role, Text, Tool, ToolChoice, WebSearch,
};
use crate::dialect::DialectId;
use crate::error::DecodeError;
use crate::json::ObjectReader;
use crate::openai::ingress::{allow_only, take_temperature, tool_choice_mode};

use super::{INSTRUCTIONS, REASONING_SUMMARY, STORE, TOOLS_AS_SENT, namespaced};
use crate::gemini;

/// Request members that only make sense against responses stored by the provider.
pub(super) const NEEDS_STORED_STATE: [&str; 3] = ["previous_response_id", "conversation", "prompt"];

/// Members that ask nothing of the gateway's answer, taken and dropped: it returns what the
/// canonical answer has (`include`), never truncates (`truncation`) and has no stream
/// obfuscation to turn off (`stream_options`).
pub(super) const IGNORED_FIELDS: [&str; 3] = ["include", "truncation", "stream_options"];

pub(super) fn decode(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let mut obj = ObjectReader::from_body(body)?;
    let model: String = obj.require("model")?;
    for key in NEEDS_STORED_STATE {
        if obj.take_value(key).is_some() {
            // Reached for `previous_response_id` only when it names no response kept for the
            // caller (those kept are brought into `input` before this reading).
            let message = if key == "previous_response_id" {
                "'previous_response_id' names no response this gateway keeps for this caller \
                 (kept for server.keep_responses_for, unless 'store' was false); send the whole \
                 conversation in 'input'"
                    .to_owned()
            } else {
                format!(
                    "'{key}' is not supported: this gateway keeps no conversations or stored \
                     prompts; send the conversation or prompt in 'input'"
                )
            };
            return Err(DecodeError::new(message, Some(key)));
        }
    }
    if obj.take::<bool>("background")? == Some(true) {
        return Err(DecodeError::new(
            "'background' responses are not supported: this gateway keeps no responses to poll",
            Some("background"),
        ));
    }
    let mut messages = Vec::new();
    let instructions = obj.take_value(INSTRUCTIONS);
    if let Some(instructions) = &instructions {
        let Value::String(text) = instructions else {
            return Err(DecodeError::new(
                "'instructions' must be a string",
                Some("instructions"),
            ));
        };
        messages.push(message(
            Role::Developer,
            vec![ContentPart::text(text.as_str())],
        ));
    }
    let more_tools = decode_input(&mut obj, &mut messages)?;
    let mut tools = decode_tools(&mut obj, more_tools)?;
    let tool_choice = decode_tool_choice(&mut obj, &mut tools)?;
    let parallel_tool_calls = obj.take("parallel_tool_calls")?;
    let response_format = decode_text(&mut obj)?;
    let max_tokens: Option<u32> = obj.take("max_output_tokens")?;
    let temperature = take_temperature(&mut obj)?;
    let top_p = obj.take("top_p")?;
    let (reasoning, summary) = decode_reasoning_config(&mut obj)?;
    let user = obj.take("user")?;
    let metadata: Option<Map<String, Value>> = obj.take("metadata")?;
    let stream = obj.take::<bool>("stream")?.unwrap_or(false);
    let store: Option<bool> = obj.take(STORE)?;
    for key in IGNORED_FIELDS {
        obj.take_value(key);
    }
    Ok(ChatRequest {
        model,
        messages,
        tools: tools.functions,
        web_search: tools.web_search,
        tool_choice,
        parallel_tool_calls,
        response_format,
        max_tokens,
        temperature,
        top_p,
        reasoning,
        user,
        metadata,
        stream,
        // A Responses stream always ends with the usage in its `response.completed` event.
        include_usage: true,
        extras: {
            let mut extras = obj.into_rest();
            if let Some(instructions) = instructions {
                extras.insert(INSTRUCTIONS.into(), instructions);
            }
            if let Some(as_sent) = tools.as_sent {
                extras.insert(TOOLS_AS_SENT.into(), as_sent);
            }
            if let Some(store) = store {
                extras.insert(STORE.into(), Value::Bool(store));
            }
            if let Some(summary) = summary {
                extras.insert(REASONING_SUMMARY.into(), Value::String(summary));
            }
            Extras::new(DialectId::OpenAiResponses, extras)
        },
        ..ChatRequest::default()
    })
}

/// `reasoning`: its `effort`, and its `summary` (`auto`, `concise`, `detailed`): a client
/// that asks for a summary gets the provider's reasoning text as the reasoning items'
/// summary, where such clients read it (see the encoder's `Item::Reasoning`).
pub(super) fn decode_reasoning_config(
    obj: &mut ObjectReader,
) -> Result<(Option<Reasoning>, Option<String>), DecodeError> {
    Ok(match obj.take_object("reasoning")? {
        Some(mut r) => {
            let effort = r.take::<String>("effort")?.map(|effort| Reasoning {
                effort: Some(effort),
                budget_tokens: None,
            });
            (effort, r.take::<String>("summary")?)
        }
        None => (None, None),
    })
}

/// `input`: a string (one user message) or a list of items: messages, function calls and
/// their outputs, reasoning. An assistant's turn arrives as several items (its reasoning, its
/// message, each function call), which become one assistant message, as the other dialects
/// hold a turn.
///
/// Returns the tools of its `additional_tools` items (Codex sends its tools that way for the
/// newest models), each with its path: no provider takes tools that become available part-way
/// through a conversation, so they join the request's tools.
fn decode_input(
    obj: &mut ObjectReader,
    messages: &mut Vec<Message>,
) -> Result<Vec<(String, Value)>, DecodeError> {
    let mut more_tools = Vec::new();
    let items = match obj.take_value("input") {
        None => {
            return Err(DecodeError::new(
                "missing required field 'input'",
                Some("input"),
            ));
        }
        Some(Value::String(text)) => {
            messages.push(message(Role::User, vec![ContentPart::text(text)]));
            return Ok(more_tools);
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(DecodeError::new(
                "'input' must contain at least one item",
                Some("input"),
            ));
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(DecodeError::new(
                "'input' must be a string or an array of input items",
                Some("input"),
            ));
        }
    };
    // Function names by call id: a function's output names its call only by id, and Gemini
    // matches results to calls by name.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, value) in items.into_iter().enumerate() {
        let path = format!("input[{i}]");
        let mut item = ObjectReader::from_value(value, &path)?;
        let kind: Option<String> = item.take("type")?;
        match kind.as_deref() {
            // An item with a role and no type is a message (the SDK's `EasyInputMessage`).
            Some("message") | None => {
                let (role, content) = decode_message(&mut item, &path)?;
                if role == Role::Assistant {
                    assistant_turn(messages).extend(content);
                } else {
                    messages.push(message(role, content));
                }
            }
            // A custom tool's call is the call of the function that stands for it.
            Some(kind @ ("function_call" | "custom_tool_call")) => {
                let call_id: String = item.require("call_id")?;
                let mut name: String = item.require("name")?;
                if let Some(namespace) = item.take::<String>("namespace")? {
                    name = namespaced(&namespace, &name);
                }
                let arguments = if kind == "function_call" {
                    item.require::<String>("arguments")?
                } else {
                    json!({ CUSTOM_INPUT: item.require::<String>("input")? }).to_string()
                };
                call_names.insert(call_id.clone(), name.clone());
                assistant_turn(messages).push(ContentPart::ToolCall {
                    id: call_id,
                    name,
                    arguments,
                    extras: Extras::default(),
                });
            }
            Some("function_call_output" | "custom_tool_call_output") => {
                messages.push(call_output(&mut item, &call_names)?);
            }
            Some("additional_tools") => more_tools.extend(item.require_array("tools")?),
            // A web search the provider ran, sent back with the history: the answer that
            // followed holds what it found, and no provider takes another's search as input.
            Some("web_search_call") => {}
            Some("reasoning") => {
                let part = decode_reasoning(&mut item)?;
                assistant_turn(messages).push(part);
            }
            Some("item_reference") => {
                return Err(DecodeError::new(
                    "this item reference names no item of a response this gateway keeps for \
                     this caller; send the item itself",
                    Some(&format!("{path}.type")),
                ));
            }
            Some(other) => {
                return Err(DecodeError::new(
                    format!(
                        "input item type '{other}' is not supported by this gateway (supported: \
                         message, function_call, function_call_output, custom_tool_call, \
                         custom_tool_call_output, web_search_call, reasoning, additional_tools)"
                    ),
                    Some(&format!("{path}.type")),
                ));
            }
        }
    }
    // A Gemini call's signature, written as a reasoning item before the call, is the call's.
    gemini::attach_carried_signatures(messages);
    Ok(more_tools)
}

/// A function's or custom tool's output: a tool message answering its call.
fn call_output(
    item: &mut ObjectReader,
    call_names: &HashMap<String, String>,
) -> Result<Message, DecodeError> {
    let call_id: String = item.require("call_id")?;
    let output_path = item.child_path("output");
    let content = text_or_parts(item.take_value("output"), &output_path, true)?;
    let name = call_names.get(&call_id).cloned();
    Ok(message(
        Role::Tool,
        vec![ContentPart::ToolResult {
            tool_call_id: call_id,
            name,
            content,
            is_error: false,
        }],
    ))
}

pub(super) fn message(role: Role, content: Vec<ContentPart>) -> Message {
    Message {
        role,
        content,
        name: None,
        extras: Extras::default(),
    }
}

/// The parts of the assistant turn being read: the last message's when it is the assistant's,
/// else a new assistant message's.
fn assistant_turn(messages: &mut Vec<Message>) -> &mut Vec<ContentPart> {
    if messages.last().is_none_or(|m| m.role != Role::Assistant) {
        messages.push(message(Role::Assistant, Vec::new()));
    }
    let last = messages.len() - 1;
    &mut messages[last].content
}

fn decode_message(
    item: &mut ObjectReader,
    path: &str,
) -> Result<(Role, Vec<ContentPart>), DecodeError> {
    let role_path = item.child_path("role");
    let role = match item.require::<String>("role")?.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        other => {
            return Err(DecodeError::new(
                format!(
                    "'{role_path}' must be 'user', 'assistant', 'system' or 'developer', got '{other}'"
                ),
                Some(&role_path),
            ));
        }
    };
    let content_path = format!("{path}.content");
    let content = text_or_parts(
        item.take_value("content"),
        &content_path,
        role == Role::User,
    )?;
    Ok((role, content))
}

/// A required member at `path` that is a string (one text part) or a list of content parts;
/// `media` as in [`decode_parts`].
fn text_or_parts(
    value: Option<Value>,
    path: &str,
    media: bool,
) -> Result<Vec<ContentPart>, DecodeError> {
    match value {
        None => Err(DecodeError::new(
            format!("missing required field '{path}'"),
            Some(path),
        )),
        Some(Value::String(text)) => Ok(vec![ContentPart::text(text)]),
        Some(Value::Array(parts)) => decode_parts(parts, path, media),
        Some(_) => Err(DecodeError::new(
            format!("'{path}' must be a string or an array of content parts"),
            Some(path),
        )),
    }
}

/// A message's or a function output's content parts; `media` says whether images and files
/// may be among them (a user message's and a function output's, as in OpenAI's reference).
fn decode_parts(
    parts: Vec<Value>,
    path: &str,
    media: bool,
) -> Result<Vec<ContentPart>, DecodeError> {
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let ppath = format!("{path}[{i}]");
        let mut p = ObjectReader::from_value(part, &ppath)?;
        let kind: String = p.require("type")?;
        let type_path = format!("{ppath}.type");
        match kind.as_str() {
            "input_text" | "output_text" => {
                out.push(ContentPart::text(p.require::<String>("text")?));
            }
            "refusal" => out.push(ContentPart::text(p.require::<String>("refusal")?)),
            "input_image" | "input_file" if !media => {
                return Err(DecodeError::new(
                    format!("{kind} parts belong to user messages and function outputs"),
                    Some(&type_path),
                ));
            }
            "input_image" => out.push(decode_image(&mut p, &ppath)?),
            "input_file" => out.push(decode_file(&mut p, &ppath)?),
            other => {
                return Err(DecodeError::new(
                    format!(
                        "content part type '{other}' is not supported by this gateway (supported: \
                         input_text, output_text, refusal, input_image, input_file)"
                    ),
                    Some(&type_path),
                ));
            }
        }
    }
    Ok(out)
}

fn decode_image(part: &mut ObjectReader, path: &str) -> Result<ContentPart, DecodeError> {
    let detail: Option<String> = part.take("detail")?;
    if part.take_value("file_id").is_some() {
        let id_path = format!("{path}.file_id");
        return Err(DecodeError::new(
            "images by file id are not supported: this gateway does not proxy the Files API; \
             send the image as 'image_url' (a URL or a data URI)",
            Some(&id_path),
        ));
    }
    let url: String = part.require("image_url")?;
    Ok(ContentPart::Image {
        source: ImageSource::from_url(&url),
        detail,
    })
}

/// An `input_file` part: its data as a data URI (`file_data`), a file id, or a URL the
/// provider fetches.
fn decode_file(part: &mut ObjectReader, path: &str) -> Result<ContentPart, DecodeError> {
    let filename: Option<String> = part.take("filename")?;
    let data: Option<String> = part.take("file_data")?;
    let id: Option<String> = part.take("file_id")?;
    let url: Option<String> = part.take("file_url")?;
    let source = match (data, id, url) {
        (Some(data), None, None) => {
            DocumentSource::from_data_uri(&Text::from(data)).ok_or_else(|| {
                let data_path = format!("{path}.file_data");
                DecodeError::new(
                    format!("'{data_path}' must be a data URI: data:<media type>;base64,<data>"),
                    Some(&data_path),
                )
            })?
        }
        (None, Some(id), None) => DocumentSource::FileId(id),
        (None, None, Some(url)) => DocumentSource::Url(url),
        _ => {
            return Err(DecodeError::new(
                format!("'{path}' must give exactly one of 'file_data', 'file_id' and 'file_url'"),
                Some(path),
            ));
        }
    };
    Ok(ContentPart::Document {
        source,
        title: filename,
        context: None,
        extras: Extras::default(),
    })
}

/// A reasoning item sent back: its text (its content, else its summary) and, in
/// `encrypted_content`, the provider's signature of it (an Anthropic thinking block's), which
/// this gateway writes there; an item with encrypted content and no text at all is a redacted
/// thinking block's data.
fn decode_reasoning(item: &mut ObjectReader) -> Result<ContentPart, DecodeError> {
    let encrypted: Option<String> = item.take("encrypted_content")?;
    let content = texts_of(item, "content", "reasoning_text")?;
    let summary = texts_of(item, "summary", "summary_text")?;
    Ok(match (content.or(summary), encrypted) {
        (None, Some(data)) => ContentPart::RedactedReasoning { data },
        (text, signature) => ContentPart::Reasoning {
            text: text.unwrap_or_default(),
            signature,
        },
    })
}

/// The joined texts of the `kind` parts in the list at `key`, `None` when the list is absent
/// or empty.
fn texts_of(item: &mut ObjectReader, key: &str, kind: &str) -> Result<Option<String>, DecodeError> {
    let Some(parts) = item.take_array(key)? else {
        return Ok(None);
    };
    if parts.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for (path, value) in parts {
        let mut p = ObjectReader::from_value(value, &path)?;
        let found: String = p.require("type")?;
        if found != kind {
            let type_path = format!("{path}.type");
            return Err(DecodeError::new(
                format!("'{type_path}' must be '{kind}', got '{found}'"),
                Some(&type_path),
            ));
        }
        text.push_str(&p.require::<String>("text")?);
    }
    Ok(Some(text))
}

/// What a request's `tools` hold, read.
#[derive(Default)]
pub(super) struct Tools {
    /// Functions, and custom tools as the functions that stand for them.
    pub functions: Vec<Tool>,
    pub web_search: Option<WebSearch>,
    /// The list as the client wrote it, kept when it holds more than functions: the response
    /// repeats it, and its custom tools' calls are told from functions' calls by it.
    pub as_sent: Option<Value>,
}

/// The types of OpenAI's hosted web search tool.
const WEB_SEARCH_TOOLS: [&str; 4] = [
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
];

/// `tools`: function tools as they are; custom tools (free-form text input, Codex's
/// `apply_patch`) as functions of one string argument, `input`, that every provider can call;
/// the hosted web search as a search the provider runs where it has one. Other hosted tools
/// (file search, computer use, code interpreter, MCP …) run at OpenAI alone and are refused.
///
/// `more` are tools from elsewhere in the request (`additional_tools` input items), read after
/// the request's own.
pub(super) fn decode_tools(
    obj: &mut ObjectReader,
    more: Vec<(String, Value)>,
) -> Result<Tools, DecodeError> {
    let mut items = obj.take_array("tools")?.unwrap_or_default();
    items.extend(more);
    if items.is_empty() {
        return Ok(Tools::default());
    }
    let mut out = Tools {
        functions: Vec::with_capacity(items.len()),
        ..Tools::default()
    };
    if items
        .iter()
        .any(|(_, t)| t.get("type").and_then(Value::as_str) != Some("function"))
    {
        out.as_sent = Some(Value::Array(items.iter().map(|(_, t)| t.clone()).collect()));
    }
    for (path, value) in items {
        let mut t = ObjectReader::from_value(value, &path)?;
        let kind: String = t.require("type")?;
        match kind.as_str() {
            "function" => out.functions.push(function_tool(&mut t)?),
            "custom" => out.functions.push(custom_tool(&mut t)?),
            // A namespace's tools are functions named after it (`crm__lookup`), which every
            // provider can call; the response names their calls' namespace again.
            "namespace" => {
                let namespace: String = t.require("name")?;
                let about: Option<String> = t.take("description")?;
                for (inner_path, inner) in t.require_array("tools")? {
                    let mut inner = ObjectReader::from_value(inner, &inner_path)?;
                    let kind: String = inner.require("type")?;
                    let mut tool = match kind.as_str() {
                        "function" => function_tool(&mut inner)?,
                        "custom" => custom_tool(&mut inner)?,
                        other => {
                            return Err(DecodeError::new(
                                format!(
                                    "a namespace holds function and custom tools, not '{other}'"
                                ),
                                Some(&format!("{inner_path}.type")),
                            ));
                        }
                    };
                    tool.name = namespaced(&namespace, &tool.name);
                    if let Some(about) = about.as_deref().filter(|a| !a.is_empty()) {
                        let of = format!("One of the {namespace} tools: {about}");
                        tool.description = Some(match tool.description {
                            Some(own) if !own.is_empty() => format!("{own}\n\n({of})"),
                            _ => of,
                        });
                    }
                    out.functions.push(tool);
                }
            }
            kind if WEB_SEARCH_TOOLS.contains(&kind) => {
                let allowed_domains = match t.take_object("filters")? {
                    Some(mut filters) => filters
                        .take::<Vec<String>>("allowed_domains")?
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                out.web_search = Some(WebSearch {
                    allowed_domains,
                    user_location: t.take_value("user_location"),
                });
            }
            _ => {
                return Err(DecodeError::new(
                    format!(
                        "tool type '{kind}' is not supported by this gateway (function, custom, \
                         namespace and web_search are): hosted tools run at OpenAI, not at every \
                         provider"
                    ),
                    Some(&format!("{path}.type")),
                ));
            }
        }
    }
    Ok(out)
}

/// A function tool as the client wrote it.
fn function_tool(t: &mut ObjectReader) -> Result<Tool, DecodeError> {
    Ok(Tool {
        name: t.require("name")?,
        description: t.take("description")?,
        parameters: t
            .take_value("parameters")
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        strict: t.take("strict")?,
        cache_control: None,
    })
}

/// A custom tool, as the function of one string argument that stands for it.
fn custom_tool(t: &mut ObjectReader) -> Result<Tool, DecodeError> {
    let name: String = t.require("name")?;
    let description: Option<String> = t.take("description")?;
    let format = t.take_value("format");
    let input = custom_input_description(format, &t.child_path("format"))?;
    Ok(Tool {
        name,
        description,
        parameters: json!({
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": input}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": false,
        }),
        strict: None,
        cache_control: None,
    })
}

/// The one argument of the function that stands for a custom tool.
pub(super) const CUSTOM_INPUT: &str = "input";

/// What the stand-in function's `input` argument is told to hold: free text, or text that
/// follows the custom tool's grammar (a provider without grammar-constrained output reads the
/// grammar instead).
fn custom_input_description(format: Option<Value>, path: &str) -> Result<String, DecodeError> {
    const FREE: &str = "The tool's input: free-form text, not JSON.";
    let Some(format) = format else {
        return Ok(FREE.to_owned());
    };
    let mut f = ObjectReader::from_value(format, path)?;
    let kind: String = f.require("type")?;
    match kind.as_str() {
        "text" => Ok(FREE.to_owned()),
        "grammar" => {
            let syntax: String = f.require("syntax")?;
            let definition: String = f.require("definition")?;
            if syntax != "lark" && syntax != "regex" {
                let syntax_path = format!("{path}.syntax");
                return Err(DecodeError::new(
                    format!("'{syntax_path}' must be 'lark' or 'regex', got '{syntax}'"),
                    Some(&syntax_path),
                ));
            }
            Ok(format!(
                "The tool's input: free-form text, not JSON, that must match this {syntax} \
                 grammar:\n{definition}"
            ))
        }
        other => {
            let type_path = format!("{path}.type");
            Err(DecodeError::new(
                format!("'{type_path}' must be 'text' or 'grammar', got '{other}'"),
                Some(&type_path),
            ))
        }
    }
}

/// `tool_choice`: a word, a named function or custom tool, or `allowed_tools` (which cuts
/// `tools` down to the ones it names, see [`allow_only`]).
pub(super) fn decode_tool_choice(
    obj: &mut ObjectReader,
    tools: &mut Tools,
) -> Result<Option<ToolChoice>, DecodeError> {
    let Some(value) = obj.take_value("tool_choice") else {
        return Ok(None);
    };
    let mut choice = match value {
        Value::String(mode) => return tool_choice_mode(&mode).map(Some),
        value => ObjectReader::from_value(value, "tool_choice")?,
    };
    let kind: String = choice.require("type")?;
    match kind.as_str() {
        "function" | "custom" => Ok(Some(ToolChoice::Function(choice.require("name")?))),
        "allowed_tools" => {
            let mode: String = choice.require("mode")?;
            let listed = choice.require_array("tools")?;
            let (mut names, mut search) = (Vec::with_capacity(listed.len()), false);
            for (path, value) in listed {
                let mut tool = ObjectReader::from_value(value, &path)?;
                let kind: String = tool.require("type")?;
                match kind.as_str() {
                    "function" | "custom" => {
                        names.push((tool.require("name")?, format!("{path}.name")));
                    }
                    kind if WEB_SEARCH_TOOLS.contains(&kind) && tools.web_search.is_some() => {
                        search = true;
                    }
                    kind => {
                        return Err(DecodeError::new(
                            format!("'{path}' allows a '{kind}' tool, which is not among 'tools'"),
                            Some(&format!("{path}.type")),
                        ));
                    }
                }
            }
            if !search {
                tools.web_search = None;
            }
            let others_left = tools.web_search.is_some();
            allow_only(
                &mut tools.functions,
                &names,
                &mode,
                "tool_choice.mode",
                others_left,
            )
            .map(Some)
        }
        kind => Err(DecodeError::new(
            format!(
                "tool_choice type '{kind}' is not supported (only 'function', 'custom' and \
                 'allowed_tools')"
            ),
            Some("tool_choice.type"),
        )),
    }
}

/// `text.format`: plain text, a JSON object, or JSON following a schema.
pub(super) fn decode_text(obj: &mut ObjectReader) -> Result<Option<ResponseFormat>, DecodeError> {
    let Some(mut text) = obj.take_object("text")? else {
        return Ok(None);
    };
    let Some(mut format) = text.take_object("format")? else {
        return Ok(None);
    };
    let kind: String = format.require("type")?;
    match kind.as_str() {
        "text" => Ok(Some(ResponseFormat::Text)),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => Ok(Some(ResponseFormat::JsonSchema {
            name: format.require("name")?,
            description: format.take("description")?,
            schema: format.require("schema")?,
            strict: format.take("strict")?,
        })),
        other => Err(DecodeError::new(
            format!("text.format type '{other}' is not supported (text, json_object, json_schema)"),
            Some("text.format.type"),
        )),
    }
}

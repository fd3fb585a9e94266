//! `GeminiProvider`: canonical request → `generateContent` / `streamGenerateContent` request,
//! Gemini reply → canonical response, Google error bodies → upstream error classes, and
//! `batchEmbedContents`. Also the conversions the stream decoder shares (usage, finish reason,
//! tool call ids, error status).

use std::collections::HashMap;

use http::HeaderMap;
use serde_json::{Map, Value};

use super::stream::GeminiStreamDecoder;
use super::wire::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Blob, Candidate, Content,
    EmbedContentRequest, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration,
    FunctionResponse, FunctionResponseWithMedia, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, InlineMedia, Part, RequestContent, RequestPart, Status, ThinkingConfig, Tool,
    ToolConfig, UsageMetadata,
};
use crate::canonical::{
    ChatRequest, ChatResponse, Choice, ContentPart, DocumentSource, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, ErrorClass, Extras, FinishReason, ImageSource, Message,
    Reasoning, ResponseFormat, Role, Text, ToolChoice, UpstreamErrorInfo, Usage,
};
use crate::dialect::{
    Capabilities, DialectId, ProviderDialect, StreamDecoder, Target, check_documents, malformed,
    retry_after_secs, sane_retry_after,
};
use crate::error::DecodeError;
use crate::json::{self, ObjectWriter};
use crate::provider_body::{ProviderBody, Splices};

/// Key of a function call's thought signature in `ContentPart::ToolCall::extras`
/// (dialect `Gemini`), named as the `Part` field it comes from.
pub const THOUGHT_SIGNATURE: &str = "thoughtSignature";

/// The Google Gemini API (AI Studio) as an upstream.
pub struct GeminiProvider;

impl ProviderDialect for GeminiProvider {
    fn id(&self) -> DialectId {
        DialectId::Gemini
    }

    /// `batchEmbedContents` takes at most 100 requests ("at most 100 requests can be in one
    /// batch"); an OpenAI client may send up to 2,048 inputs.
    fn embedding_inputs_per_request(&self, _model: &str) -> Option<usize> {
        Some(100)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            images: true,
            documents: true,
            json_schema: true,
            embeddings: true,
            several_choices: true,
            image_urls: true,
            document_urls: true,
            tool_result_urls: false,
            single_tool_call: false,
        }
    }

    fn build_chat(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<ProviderBody>, DecodeError> {
        crate::dialect::refuse_legacy_functions(request)?;
        let body = build_body(request, target.model)?;
        let body = match request.extras.for_dialect(DialectId::Gemini) {
            Some(extras) => {
                let mut value = serde_json::to_value(&body).map_err(encode_error)?;
                merge_extras(&mut value, extras);
                // The tree is there already: our writer escapes its long texts faster than
                // serde_json (the same bytes).
                let mut out = Vec::new();
                json::write_value(&mut out, &value).map(|()| ProviderBody::from(out))
            }
            None => write_request(&body),
        }
        .map_err(encode_error)?;
        let method = if request.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        post(target, method, body)
    }

    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> {
        let response: GenerateContentResponse = match super::reply::read_response(body) {
            Some(response) => response,
            None => DecodeError::parse(body)
                .map_err(|e| malformed(format!("unreadable Gemini response: {}", e.message)))?,
        };
        response_to_canonical(response)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(GeminiStreamDecoder::new())
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
        let Some(error) = parse_error_body(body) else {
            return UpstreamErrorInfo {
                class: ErrorClass::from_status(status),
                status: Some(status),
                message: unreadable_error_message(status, body),
                provider_code: None,
                retry_after_secs: retry_after_secs(headers),
                param: None,
            };
        };
        let mut info = status_to_error(&error, Some(status));
        info.retry_after_secs = retry_after_secs(headers).or_else(|| retry_delay(&error.details));
        info
    }

    fn build_embeddings(
        &self,
        request: &EmbeddingRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        let texts = match &request.input {
            EmbeddingInput::Texts(texts) => texts,
            EmbeddingInput::Tokens(_) => {
                return Err(DecodeError::new(
                    "Gemini embeds text only; token-array inputs are not supported",
                    Some("input"),
                ));
            }
        };
        if texts.is_empty() {
            return Err(DecodeError::new("input must not be empty", Some("input")));
        }
        let model = format!("models/{}", model_name(target.model));
        // `taskType` and `title` belong to each request of the batch, so same-dialect extras are
        // applied to every one of them; they never replace a field we set ourselves.
        let mut rest = request
            .extras
            .for_dialect(DialectId::Gemini)
            .cloned()
            .unwrap_or_default();
        for key in ["model", "content", "outputDimensionality"] {
            rest.remove(key);
        }
        let requests = texts
            .iter()
            .map(|text| EmbedContentRequest {
                model: model.clone(),
                content: Content {
                    role: None,
                    parts: vec![text_part(text.clone())],
                },
                output_dimensionality: request.dimensions,
                rest: rest.clone(),
            })
            .collect();
        let bytes =
            serde_json::to_vec(&BatchEmbedContentsRequest { requests }).map_err(encode_error)?;
        post(target, "batchEmbedContents", bytes)
    }

    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
        let response: BatchEmbedContentsResponse = DecodeError::parse(body)
            .map_err(|e| malformed(format!("unreadable Gemini embeddings: {}", e.message)))?;
        Ok(EmbeddingResponse {
            // The reply does not name the model; the caller knows which one it asked.
            model: String::new(),
            vectors: response.embeddings.into_iter().map(|e| e.values).collect(),
            usage: response.usage_metadata.map(|u| Usage {
                input_tokens: u.prompt_token_count,
                ..Usage::default()
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// `POST {base_url}/models/{model}:{method}` with the API key header when one is configured.
fn post<B>(target: &Target<'_>, method: &str, body: B) -> Result<http::Request<B>, DecodeError> {
    let url = format!(
        "{}/models/{}:{method}",
        target.base_url.trim_end_matches('/'),
        model_name(target.model)
    );
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(url)
        .header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    if let Some(key) = target.api_key {
        builder = builder.header(http::HeaderName::from_static("x-goog-api-key"), key);
    }
    // The message names no value: the URL is configuration and the key is a secret.
    builder.body(body).map_err(|_| {
        DecodeError::new(
            "cannot build the Gemini request: invalid base URL, model name or API key",
            None,
        )
    })
}

/// The model id without the `models/` resource prefix, which the URL template adds.
fn model_name(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

fn encode_error(e: serde_json::Error) -> DecodeError {
    DecodeError::new(format!("cannot encode the Gemini request: {e}"), None)
}

/// Writes `body` as `serde_json::to_vec` would, byte for byte, with its texts written by our
/// writer (or spliced in from the client's body) instead of serde_json's escaper.
fn write_request(body: &GenerateContentRequest) -> Result<ProviderBody, serde_json::Error> {
    let mut out = Vec::with_capacity(512);
    let mut splices = Splices::default();
    let mut object = ObjectWriter::open(&mut out);
    object.field("contents", |out| {
        json::write_array(out, &body.contents, |out, content| {
            write_content(out, &mut splices, content)
        })
    })?;
    if let Some(system) = &body.system_instruction {
        object.field("systemInstruction", |out| {
            write_content(out, &mut splices, system)
        })?;
    }
    if !body.tools.is_empty() {
        object.field("tools", |out| serde_json::to_writer(out, &body.tools))?;
    }
    if let Some(tool_config) = &body.tool_config {
        object.field("toolConfig", |out| serde_json::to_writer(out, tool_config))?;
    }
    if let Some(generation_config) = &body.generation_config {
        object.field("generationConfig", |out| {
            serde_json::to_writer(out, generation_config)
        })?;
    }
    object.close();
    Ok(splices.into_body(out))
}

fn write_content(
    out: &mut Vec<u8>,
    splices: &mut Splices,
    content: &RequestContent,
) -> Result<(), serde_json::Error> {
    let mut object = ObjectWriter::open(out);
    if let Some(role) = content.role {
        object.str("role", role);
    }
    object.field("parts", |out| {
        json::write_array(out, &content.parts, |out, part| {
            match part {
                RequestPart::Text {
                    text,
                    thought_signature,
                } => {
                    let mut part = ObjectWriter::open(out);
                    part.put("text", |out| json::write_text_splicing(out, text, splices));
                    if let Some(signature) = thought_signature {
                        part.str("thoughtSignature", signature);
                    }
                    part.close();
                }
                RequestPart::FunctionResult {
                    id,
                    name,
                    key,
                    text,
                } => {
                    let mut part = ObjectWriter::open(out);
                    part.put("functionResponse", |out| {
                        let mut call = ObjectWriter::open(out);
                        if let Some(id) = id {
                            call.str("id", id);
                        }
                        call.str("name", name);
                        call.put("response", |out| {
                            let mut response = ObjectWriter::open(out);
                            response.put(key, |out| json::write_text_splicing(out, text, splices));
                            response.close();
                        });
                        call.close();
                    });
                    part.close();
                }
                RequestPart::InlineData { mime_type, data } => {
                    write_inline_data(out, mime_type, data, splices);
                }
                RequestPart::FunctionResponse(with_media) => {
                    let mut part = ObjectWriter::open(out);
                    part.field("functionResponse", |out| {
                        let mut call = ObjectWriter::open(out);
                        if let Some(id) = with_media.id {
                            call.str("id", id);
                        }
                        call.str("name", with_media.name);
                        call.field("response", |out| {
                            json::write_object(out, &with_media.response)
                        })?;
                        call.field("parts", |out| {
                            json::write_array(out, &with_media.media, |out, (mime_type, data)| {
                                write_inline_data(out, mime_type, data, splices);
                                Ok(())
                            })
                        })?;
                        call.close();
                        Ok(())
                    })?;
                    part.close();
                }
                RequestPart::Other(part) => serde_json::to_writer(&mut *out, part)?,
            }
            Ok(())
        })
    })?;
    object.close();
    Ok(())
}

pub(super) fn build_body<'r>(
    request: &'r ChatRequest,
    model: &str,
) -> Result<GenerateContentRequest<'r>, DecodeError> {
    check_documents(request, document_refusal)?;
    let (system_instruction, mut contents) = build_contents(&request.messages)?;
    if model_name(model).starts_with("gemini-3") {
        sign_unsigned_calls(&mut contents);
    }
    let tools = if request.tools.is_empty() {
        Vec::new()
    } else {
        vec![Tool {
            function_declarations: request
                .tools
                .iter()
                .map(|t| FunctionDeclaration {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    // Gemini requires an object schema when parameters are given; an empty or
                    // missing schema means the function takes no arguments.
                    parameters_json_schema: match &t.parameters {
                        Value::Null => None,
                        Value::Object(o) if o.is_empty() => None,
                        schema => Some(schema.clone()),
                    },
                })
                .collect(),
        }]
    };
    // A function calling mode means nothing without declarations, so it is sent only with them.
    let choice = request
        .tool_choice
        .as_ref()
        .filter(|_| !request.tools.is_empty());
    let tool_config = choice.map(|choice| {
        let (mode, allowed_function_names) = match choice {
            ToolChoice::Auto => ("AUTO", Vec::new()),
            ToolChoice::None => ("NONE", Vec::new()),
            ToolChoice::Required => ("ANY", Vec::new()),
            ToolChoice::Function(name) => ("ANY", vec![name.clone()]),
        };
        ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names,
            },
        }
    });
    let generation_config = generation_config(request, model)?;
    Ok(GenerateContentRequest {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: (!generation_config.is_empty()).then_some(generation_config),
    })
}

fn generation_config(request: &ChatRequest, model: &str) -> Result<GenerationConfig, DecodeError> {
    let mut config = GenerationConfig {
        stop_sequences: request.stop.clone(),
        candidate_count: request.n,
        max_output_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        seed: request.seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        ..GenerationConfig::default()
    };
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => config.response_mime_type = Some("application/json"),
        // Gemini has no schema name or strict flag: the schema itself is the contract.
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            config.response_mime_type = Some("application/json");
            config.response_json_schema = Some(schema.clone());
        }
    }
    if let Some(reasoning) = &request.reasoning {
        config.thinking_config = thinking_config(reasoning, model)?;
    }
    Ok(config)
}

/// An explicit budget wins (`thinkingBudget`, which every thinking model accepts), kept within
/// what a Gemini 2.5 model takes. An effort becomes Gemini 3's `thinkingLevel` (Gemini 3 Pro's
/// two, low and high); Gemini 2.x models know no levels, so there it becomes the budget
/// Gemini's own OpenAI-compatible API uses (low 1024, medium 8192, high 24576). `none` turns
/// thinking off where the model allows it, else asks for the least it thinks. Thought
/// summaries are requested whenever thinking is on, so reasoning reaches clients that can show
/// it.
fn thinking_config(
    reasoning: &Reasoning,
    model: &str,
) -> Result<Option<ThinkingConfig>, DecodeError> {
    let name = model_name(model);
    if let Some(budget) = reasoning.budget_tokens {
        let budget = thinking_budget_for(name, budget);
        return Ok(Some(ThinkingConfig {
            include_thoughts: (budget > 0).then_some(true),
            thinking_budget: Some(budget),
            thinking_level: None,
        }));
    }
    let Some(effort) = reasoning.effort.as_deref() else {
        return Ok(None);
    };
    let legacy = ["gemini-1", "gemini-2"]
        .iter()
        .any(|family| name.starts_with(family));
    let (level, budget) = match effort {
        // Off where the model can be turned off; else the least it thinks.
        "none" if legacy => {
            let budget = thinking_budget_for(name, 0);
            return Ok(Some(ThinkingConfig {
                include_thoughts: (budget > 0).then_some(true),
                thinking_budget: Some(budget),
                thinking_level: None,
            }));
        }
        "none" | "minimal" => ("MINIMAL", 1024),
        "low" => ("LOW", 1024),
        "medium" => ("MEDIUM", 8192),
        "high" | "xhigh" => ("HIGH", 24576),
        other => {
            return Err(DecodeError::new(
                format!(
                    "reasoning effort '{other}' has no Gemini thinking level \
                     (use none, minimal, low, medium or high)"
                ),
                Some("reasoning_effort"),
            ));
        }
    };
    if legacy {
        return Ok(Some(ThinkingConfig {
            include_thoughts: Some(true),
            thinking_budget: Some(thinking_budget_for(name, budget)),
            thinking_level: None,
        }));
    }
    // Gemini 3 Pro thinks at two levels only, and cannot be turned off.
    let level = match (name.starts_with("gemini-3-pro"), level) {
        (true, "MINIMAL" | "LOW") => "LOW",
        (true, _) => "HIGH",
        (false, level) => level,
    };
    Ok(Some(ThinkingConfig {
        include_thoughts: Some(true),
        thinking_budget: None,
        thinking_level: Some(level),
    }))
}

/// A thinking budget within what the Gemini 2.5 model takes (its thinking guide): Pro 128 to
/// 32,768 and never off; Flash 0 (off) to 24,576; Flash-Lite off or 512 to 24,576. Other
/// models' budgets are sent as asked.
fn thinking_budget_for(name: &str, budget: u32) -> u32 {
    if name.starts_with("gemini-2.5-pro") {
        budget.clamp(128, 32_768)
    } else if name.starts_with("gemini-2.5-flash-lite") {
        if budget == 0 {
            0
        } else {
            budget.clamp(512, 24_576)
        }
    } else if name.starts_with("gemini-2.5-flash") {
        budget.min(24_576)
    } else {
        budget
    }
}

fn text_part(text: String) -> Part {
    Part {
        text: Some(text),
        ..Part::default()
    }
}

/// A request's text part.
fn request_text(text: &Text) -> RequestPart<'_> {
    RequestPart::Text {
        text,
        thought_signature: None,
    }
}

/// System and developer messages become `systemInstruction` (Gemini has one, so all of them are
/// gathered in order); the rest become `contents` with roles `user` and `model`, tool results
/// travelling as `user` parts. Consecutive contents of the same role are merged.
#[allow(clippy::type_complexity)]
fn build_contents(
    messages: &[Message],
) -> Result<(Option<RequestContent<'_>>, Vec<RequestContent<'_>>), DecodeError> {
    let mut system = Vec::new();
    let mut contents: Vec<RequestContent> = Vec::new();
    // Tool call id → function name, from the assistant turns seen so far; a later call with the
    // same id replaces an earlier one, so a result finds the most recent call.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        let (role, parts) = match message.role {
            Role::System | Role::Developer => {
                for (j, part) in message.content.iter().enumerate() {
                    match part {
                        ContentPart::Text { text, .. } if !text.is_empty() => {
                            system.push(request_text(text));
                        }
                        ContentPart::Text { .. } => {}
                        _ => {
                            return Err(DecodeError::new(
                                "Gemini system instructions carry text only",
                                Some(&format!("messages[{i}].content[{j}]")),
                            ));
                        }
                    }
                }
                continue;
            }
            Role::Assistant => ("model", model_parts(i, message, &mut call_names)?),
            Role::User | Role::Tool => ("user", user_parts(i, message, &call_names)?),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => contents.push(RequestContent {
                role: Some(role),
                parts,
            }),
        }
    }
    let system = (!system.is_empty()).then_some(RequestContent {
        role: None,
        parts: system,
    });
    Ok((system, contents))
}

/// A user's image: an inline one borrowed from the request (see [`RequestPart::InlineData`]).
fn image_request_part(source: &ImageSource) -> RequestPart<'_> {
    match source {
        ImageSource::Base64 { media_type, data } => RequestPart::InlineData {
            mime_type: media_type,
            data,
        },
        ImageSource::Url(_) => RequestPart::Other(Box::new(image_part(source))),
    }
}

/// An image as a wire `Part` of its own (a model's image, rare, may carry a signature).
fn image_part(source: &ImageSource) -> Part {
    match source {
        ImageSource::Base64 { media_type, data } => Part {
            inline_data: Some(Blob {
                mime_type: media_type.clone(),
                data: data.as_str().to_owned(),
            }),
            ..Part::default()
        },
        ImageSource::Url(url) => Part {
            file_data: Some(FileData {
                mime_type: image_mime_from_url(url),
                file_uri: url.clone(),
            }),
            ..Part::default()
        },
    }
}

/// `fileData.mimeType` is optional in the reference, and Gemini infers the type of files it
/// fetches; we still name it when the URL's extension says which image format it is.
fn image_mime_from_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = file.rsplit_once('.')?;
    let mime = match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "gif" => "image/gif",
        _ => return None,
    };
    Some(mime.to_owned())
}

/// Why Gemini cannot take a document (`None` when it can): an OpenAI file id means nothing to
/// it (its own files are named by URI).
fn document_refusal(source: &DocumentSource) -> Option<String> {
    matches!(source, DocumentSource::FileId(_)).then(|| {
        "Gemini models cannot read an OpenAI file id; send the document's data (file_data) \
         instead"
            .to_owned()
    })
}

/// A user's document: inline data of any type as `inlineData` (borrowed like an image's), a URL
/// as `fileData` (Gemini fetches it; a URL document is a PDF), a text document as a text part
/// (Gemini reads non-PDF documents as plain text anyway). A file id was refused before.
fn document_request_part<'m>(
    source: &'m DocumentSource,
    path: &str,
) -> Result<RequestPart<'m>, DecodeError> {
    Ok(match source {
        DocumentSource::Base64 { media_type, data } => RequestPart::InlineData {
            mime_type: media_type,
            data,
        },
        DocumentSource::Url(url) => RequestPart::Other(Box::new(Part {
            file_data: Some(FileData {
                mime_type: source.media_type().map(str::to_owned),
                file_uri: url.clone(),
            }),
            ..Part::default()
        })),
        DocumentSource::Text { data, .. } => request_text(data),
        DocumentSource::FileId(_) => {
            return Err(DecodeError::new(
                document_refusal(source).unwrap_or_default(),
                Some(path),
            ));
        }
    })
}

fn user_parts<'m>(
    i: usize,
    message: &'m Message,
    call_names: &HashMap<&str, &'m str>,
) -> Result<Vec<RequestPart<'m>>, DecodeError> {
    let mut parts = Vec::with_capacity(message.content.len());
    for (j, part) in message.content.iter().enumerate() {
        match part {
            ContentPart::Text { text, .. } => {
                if !text.is_empty() {
                    parts.push(request_text(text));
                }
            }
            ContentPart::Image { source, .. } => parts.push(image_request_part(source)),
            ContentPart::Document { source, .. } => parts.push(document_request_part(
                source,
                &format!("messages[{i}].content[{j}]"),
            )?),
            ContentPart::ToolResult {
                tool_call_id,
                name,
                content,
                is_error,
            } => {
                let path = format!("messages[{i}].content[{j}]");
                let name = match name.as_deref() {
                    Some(name) => name,
                    None => call_names
                        .get(tool_call_id.as_str())
                        .copied()
                        .ok_or_else(|| {
                            DecodeError::new(
                                format!(
                                    "tool result '{tool_call_id}' answers no earlier tool call; \
                                 Gemini needs the function name"
                                ),
                                Some(&format!("{path}.tool_call_id")),
                            )
                        })?,
                };
                let id = (!tool_call_id.is_empty()).then_some(tool_call_id.as_str());
                // One text that cannot be a JSON object (the common result: a file, a command's
                // output) is written as it is, shared or spliced like a message's text.
                if let [ContentPart::Text { text, .. }] = &content[..]
                    && !text.trim_start().starts_with('{')
                {
                    parts.push(RequestPart::FunctionResult {
                        id,
                        name,
                        key: if *is_error { "error" } else { "result" },
                        text,
                    });
                    continue;
                }
                let (response, media) = function_response_body(content, *is_error, &path)?;
                if !media.is_empty() {
                    parts.push(RequestPart::FunctionResponse(Box::new(
                        FunctionResponseWithMedia {
                            id,
                            name,
                            response,
                            media,
                        },
                    )));
                    continue;
                }
                parts.push(RequestPart::Other(Box::new(Part {
                    function_response: Some(FunctionResponse {
                        id: id.map(str::to_owned),
                        name: name.to_owned(),
                        response,
                        parts: Vec::new(),
                    }),
                    ..Part::default()
                })));
            }
            // Thoughts are the model's own, and another provider's server tools ran there; a
            // copy in a user turn means nothing to Gemini.
            ContentPart::Reasoning { .. }
            | ContentPart::RedactedReasoning { .. }
            | ContentPart::ServerTool { .. } => {}
            ContentPart::ToolCall { .. } => {
                return Err(DecodeError::new(
                    "tool calls belong to assistant messages",
                    Some(&format!("messages[{i}].content[{j}]")),
                ));
            }
        }
    }
    Ok(parts)
}

/// `{"inlineData": {"mimeType", "data"}}`, a message's part or a function response's: the
/// base64 text copied when short, spliced from the client's body when long.
fn write_inline_data(out: &mut Vec<u8>, mime_type: &str, data: &Text, splices: &mut Splices) {
    let mut part = ObjectWriter::open(out);
    part.put("inlineData", |out| {
        let mut blob = ObjectWriter::open(out);
        blob.str("mimeType", mime_type);
        blob.put("data", |out| json::write_text_splicing(out, data, splices));
        blob.close();
    });
    part.close();
}

/// `functionResponse.response` must be an object: a result whose text is a JSON object is sent
/// as that object, any other text as `{"result": text}`. A failed call is wrapped as
/// `{"error": …}`, the key the reference names for error details. The result's inline images
/// (media type and base64 text) go in the response's own `parts` (an image by URL has no form
/// there).
fn function_response_body<'c>(
    content: &'c [ContentPart],
    is_error: bool,
    path: &str,
) -> Result<(Map<String, Value>, InlineMedia<'c>), DecodeError> {
    let mut text = String::new();
    let mut media = Vec::new();
    for (k, part) in content.iter().enumerate() {
        match part {
            // A text document's text is the tool's text.
            ContentPart::Text { text: t, .. }
            | ContentPart::Document {
                source: DocumentSource::Text { data: t, .. },
                ..
            } => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            ContentPart::Image {
                source: ImageSource::Base64 { media_type, data },
                ..
            }
            | ContentPart::Document {
                source: DocumentSource::Base64 { media_type, data },
                ..
            } => media.push((media_type.as_str(), data)),
            _ => {
                return Err(DecodeError::new(
                    "Gemini function responses carry text and inline (base64) images and \
                     documents only (the gateway fetches media by URL for them unless \
                     server.fetch_media is off)",
                    Some(&format!("{path}.content[{k}]")),
                ));
            }
        }
    }
    let value = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => Value::String(text),
    };
    let mut response = Map::new();
    match (value, is_error) {
        (Value::Object(object), false) => return Ok((object, media)),
        (value, true) => response.insert("error".to_owned(), value),
        (value, false) => response.insert("result".to_owned(), value),
    };
    Ok((response, media))
}

/// Assistant parts. Thought signatures must come back where Gemini put them: on the function
/// call (kept in the tool call's extras) or on a thought or text part (kept as a signed
/// reasoning part). A signed reasoning part with no text only carries a signature, so it is put
/// on the next part; unsigned reasoning is dropped, since Gemini reads nothing from it.
fn model_parts<'m>(
    i: usize,
    message: &'m Message,
    call_names: &mut HashMap<&'m str, &'m str>,
) -> Result<Vec<RequestPart<'m>>, DecodeError> {
    let mut parts = Vec::with_capacity(message.content.len());
    let mut pending_signature: Option<String> = None;
    for (j, part) in message.content.iter().enumerate() {
        match part {
            ContentPart::Text { text, .. } => {
                if text.is_empty() && pending_signature.is_none() {
                    continue;
                }
                parts.push(RequestPart::Text {
                    text,
                    thought_signature: pending_signature.take(),
                });
            }
            ContentPart::Image { source, .. } => {
                let mut part = image_part(source);
                part.thought_signature = pending_signature.take();
                parts.push(RequestPart::Other(Box::new(part)));
            }
            ContentPart::Reasoning {
                text,
                signature: Some(signature),
            } => {
                if text.is_empty() {
                    if let Some(earlier) = pending_signature.replace(signature.clone()) {
                        parts.push(RequestPart::Other(Box::new(signature_part(earlier))));
                    }
                } else {
                    parts.push(RequestPart::Other(Box::new(Part {
                        text: Some(text.clone()),
                        thought: Some(true),
                        thought_signature: Some(signature.clone()),
                        ..Part::default()
                    })));
                }
            }
            // Another provider's server tools ran there; the answer's text says what they found.
            ContentPart::Reasoning { .. }
            | ContentPart::RedactedReasoning { .. }
            | ContentPart::ServerTool { .. } => {}
            ContentPart::ToolCall {
                id,
                name,
                arguments,
                extras,
            } => {
                let args = parse_arguments(arguments, &format!("messages[{i}].content[{j}]"))?;
                let signature = tool_call_signature(extras)
                    .map(str::to_owned)
                    .or_else(|| pending_signature.take());
                call_names.insert(id.as_str(), name.as_str());
                parts.push(RequestPart::Other(Box::new(Part {
                    function_call: Some(FunctionCall {
                        id: (!id.is_empty()).then(|| id.clone()),
                        name: name.clone(),
                        args,
                    }),
                    thought_signature: signature,
                    ..Part::default()
                })));
            }
            ContentPart::Document { .. } => {
                return Err(DecodeError::new(
                    "documents belong to user messages",
                    Some(&format!("messages[{i}].content[{j}]")),
                ));
            }
            ContentPart::ToolResult { .. } => {
                return Err(DecodeError::new(
                    "tool results belong to user or tool messages",
                    Some(&format!("messages[{i}].content[{j}]")),
                ));
            }
        }
    }
    if let Some(signature) = pending_signature {
        parts.push(RequestPart::Other(Box::new(signature_part(signature))));
    }
    Ok(parts)
}

/// Gemini 3 refuses a model turn whose function calls carry no thought signature (the turn's
/// first call carries one when Gemini made it). A turn another provider answered, or whose
/// signature a client dropped, has none: its first call gets the value Google documents for
/// calls Gemini did not make, `skip_thought_signature_validator`. Signed turns are left as
/// they are.
fn sign_unsigned_calls(contents: &mut [RequestContent<'_>]) {
    for content in contents.iter_mut().filter(|c| c.role == Some("model")) {
        let signed = content.parts.iter().any(|p| match p {
            RequestPart::Text {
                thought_signature, ..
            } => thought_signature.is_some(),
            RequestPart::Other(part) => part.thought_signature.is_some(),
            _ => false,
        });
        if signed {
            continue;
        }
        if let Some(part) = content.parts.iter_mut().find_map(|p| match p {
            RequestPart::Other(part) if part.function_call.is_some() => Some(part),
            _ => None,
        }) {
            part.thought_signature = Some("skip_thought_signature_validator".to_owned());
        }
    }
}

/// An empty text part carrying only a signature, as Gemini itself sends them.
fn signature_part(signature: String) -> Part {
    Part {
        text: Some(String::new()),
        thought_signature: Some(signature),
        ..Part::default()
    }
}

/// Tool call arguments as the object Gemini wants; empty text means no arguments.
fn parse_arguments(arguments: &str, path: &str) -> Result<Option<Value>, DecodeError> {
    if arguments.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Ok(Some(Value::Object(object))),
        Ok(_) => Err(DecodeError::new(
            "tool call arguments must be a JSON object",
            Some(&format!("{path}.arguments")),
        )),
        Err(e) => Err(DecodeError::new(
            format!("tool call arguments are not valid JSON: {e}"),
            Some(&format!("{path}.arguments")),
        )),
    }
}

/// Same-dialect extras fill in what the typed body does not set: new keys are added, objects
/// are merged one level deep (e.g. `generationConfig.responseModalities`), arrays are appended
/// (e.g. a `googleSearch` entry in `tools`), and a value we set ourselves is never replaced.
fn merge_extras(body: &mut Value, extras: &Map<String, Value>) {
    let Value::Object(body) = body else {
        return;
    };
    for (key, extra) in extras {
        match (body.get_mut(key), extra) {
            (None, _) => {
                body.insert(key.clone(), extra.clone());
            }
            (Some(Value::Object(ours)), Value::Object(theirs)) => {
                for (k, v) in theirs {
                    ours.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            (Some(Value::Array(ours)), Value::Array(theirs)) => ours.extend(theirs.iter().cloned()),
            (Some(_), _) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn response_to_canonical(
    response: GenerateContentResponse,
) -> Result<ChatResponse, UpstreamErrorInfo> {
    let id = response.response_id.unwrap_or_default();
    let usage = response.usage_metadata.as_ref().map(usage_from_metadata);
    // The candidates in their order (`candidateCount` asks for several): the first is the
    // answer, the others its further choices.
    let mut candidates = response.candidates;
    candidates.sort_by_key(|c| c.index.unwrap_or(0));
    let mut candidates = candidates.iter();
    let (content, finish_reason) = match candidates.next() {
        Some(candidate) => {
            let (content, finish) = candidate_answer(&id, candidate);
            // Nothing but a call the model botched: a failure worth trying again (elsewhere),
            // not an empty answer that would end the client's tool loop.
            if content.is_empty()
                && let Some(e) = candidate.finish_reason.as_deref().and_then(botched_call)
            {
                return Err(e);
            }
            (content, finish)
        }
        None => match response
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
        {
            Some(_) => (Vec::new(), FinishReason::ContentFilter),
            None => return Err(malformed("Gemini response has no candidates")),
        },
    };
    let more_choices = candidates
        .zip(1..)
        .map(|(candidate, k)| {
            // Each candidate's synthesized tool call ids are its own.
            let (content, finish_reason) = candidate_answer(&format!("{id}-{k}"), candidate);
            Choice {
                content,
                finish_reason,
                extras: Extras::default(),
            }
        })
        .collect();
    Ok(ChatResponse {
        id,
        model: response.model_version.unwrap_or_default(),
        // Gemini's reply carries no creation time; the gateway stamps its own.
        created: 0,
        content,
        finish_reason,
        usage,
        extras: Extras::default(),
        more_choices,
    })
}

/// A candidate's content and why it stopped.
fn candidate_answer(response_id: &str, candidate: &Candidate) -> (Vec<ContentPart>, FinishReason) {
    let parts = candidate
        .content
        .as_ref()
        .map(|c| c.parts.as_slice())
        .unwrap_or_default();
    let content = parts_to_content(response_id, parts);
    let has_calls = content
        .iter()
        .any(|p| matches!(p, ContentPart::ToolCall { .. }));
    let finish = match candidate.finish_reason.as_deref() {
        Some(reason) => map_finish_reason(reason, has_calls),
        None => map_finish_reason("STOP", has_calls),
    };
    (content, finish)
}

/// Gemini parts in output order. Thought parts become reasoning; a signature on a text part
/// becomes a signed, empty reasoning part right before it (so it can be returned next turn);
/// a signature on a function call goes into the tool call's extras.
fn parts_to_content(response_id: &str, parts: &[Part]) -> Vec<ContentPart> {
    let mut content: Vec<ContentPart> = Vec::with_capacity(parts.len());
    let mut calls = 0u32;
    for part in parts {
        if let Some(call) = &part.function_call {
            content.push(ContentPart::ToolCall {
                id: tool_call_id(response_id, call.id.as_deref(), calls),
                name: call.name.clone(),
                arguments: arguments_text(call.args.as_ref()),
                extras: signature_extras(part.thought_signature.as_deref()),
            });
            calls += 1;
            continue;
        }
        let Some(text) = &part.text else {
            // Parts we do not model (executable code, inline output data) are left out.
            continue;
        };
        if part.thought == Some(true) {
            // Thought text arriving in pieces is one reasoning block until it is signed.
            if let Some(ContentPart::Reasoning {
                text: earlier,
                signature: signature @ None,
            }) = content.last_mut()
            {
                earlier.push_str(text);
                *signature = part.thought_signature.clone();
            } else {
                content.push(ContentPart::Reasoning {
                    text: text.clone(),
                    signature: part.thought_signature.clone(),
                });
            }
            continue;
        }
        if let Some(signature) = &part.thought_signature {
            content.push(ContentPart::Reasoning {
                text: String::new(),
                signature: Some(signature.clone()),
            });
        } else if let Some(ContentPart::Text { text: earlier, .. }) = content.last_mut() {
            earlier.push_str(text);
            continue;
        }
        if !text.is_empty() {
            content.push(ContentPart::text(text.clone()));
        }
    }
    content
}

/// Tool call extras holding a function call's thought signature (none without one).
pub(crate) fn signature_extras(signature: Option<&str>) -> Extras {
    match signature {
        Some(signature) => {
            let mut fields = Map::new();
            fields.insert(
                THOUGHT_SIGNATURE.to_owned(),
                Value::String(signature.to_owned()),
            );
            Extras::new(DialectId::Gemini, fields)
        }
        None => Extras::default(),
    }
}

/// What starts opaque reasoning data that carries a Gemini function call's thought signature
/// (which Gemini 3 requires back with the call) for clients whose format has no place for it
/// on the call: an Anthropic client's `redacted_thinking` block, a Responses API client's
/// reasoning item, written just before the call. Clients send such data back unchanged; on the
/// way in it returns to the call that follows it ([`attach_carried_signatures`]), so it never
/// reaches another provider as reasoning.
const CARRIED_SIGNATURE: &str = "gemini-thought-signature:";

/// Reasoning data carrying `signature` (see [`CARRIED_SIGNATURE`]).
pub(crate) fn carry_signature(signature: &str) -> String {
    [CARRIED_SIGNATURE, signature].concat()
}

/// Moves each signature carried in reasoning data (see [`CARRIED_SIGNATURE`]) onto the
/// function call that follows it in its message; one followed by no call is dropped.
pub(crate) fn attach_carried_signatures(messages: &mut [Message]) {
    for message in messages.iter_mut().filter(|m| m.role == Role::Assistant) {
        let carries = |p: &ContentPart| matches!(p, ContentPart::RedactedReasoning { data } if data.starts_with(CARRIED_SIGNATURE));
        if !message.content.iter().any(carries) {
            continue;
        }
        let mut signature: Option<String> = None;
        message.content.retain_mut(|part| match part {
            ContentPart::RedactedReasoning { data } if data.starts_with(CARRIED_SIGNATURE) => {
                signature = Some(data[CARRIED_SIGNATURE.len()..].to_owned());
                false
            }
            ContentPart::ToolCall { extras, .. } => {
                if let Some(signature) = signature.take()
                    && tool_call_signature(extras).is_none()
                {
                    *extras = signature_extras(Some(&signature));
                }
                true
            }
            _ => {
                signature = None;
                true
            }
        });
    }
}

/// The thought signature kept in a tool call's extras, if the call came from Gemini.
pub(crate) fn tool_call_signature(extras: &Extras) -> Option<&str> {
    extras
        .for_dialect(DialectId::Gemini)
        .and_then(|fields| fields.get(THOUGHT_SIGNATURE))
        .and_then(Value::as_str)
}

/// JSON text of `args`; a call without arguments has `{}`.
pub(super) fn arguments_text(args: Option<&Value>) -> String {
    match args {
        Some(Value::Null) | None => "{}".to_owned(),
        Some(args) => args.to_string(),
    }
}

/// The call's own id, or a deterministic one: Gemini models often return none. The response id
/// keeps synthesized ids distinct across turns (some providers reject repeated tool ids in one
/// history); only `[A-Za-z0-9_-]` is kept so every provider accepts the id.
pub(super) fn tool_call_id(response_id: &str, given: Option<&str>, index: u32) -> String {
    if let Some(id) = given.filter(|id| !id.is_empty()) {
        return id.to_owned();
    }
    let stem: String = response_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if stem.is_empty() {
        format!("call_{index}")
    } else {
        format!("call_{stem}_{index}")
    }
}

/// The failure a finish reason names when the model botched a function call
/// (`MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`): transient, so retried and fallen back
/// from where it left no answer.
pub(super) fn botched_call(reason: &str) -> Option<UpstreamErrorInfo> {
    matches!(reason, "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL").then(|| {
        UpstreamErrorInfo {
            class: ErrorClass::MalformedResponse,
            status: None,
            message: format!(
                "the model produced no answer but a function call it botched ({reason})"
            ),
            provider_code: Some(reason.to_owned()),
            retry_after_secs: None,
            param: None,
        }
    })
}

/// Gemini says `STOP` also when it called functions; the canonical reason is then `ToolCalls`.
pub(super) fn map_finish_reason(reason: &str, has_tool_calls: bool) -> FinishReason {
    match reason {
        "STOP" if has_tool_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Gemini's counts are disjoint where ours are inclusive: thoughts are billed as output but
/// left out of `candidatesTokenCount`, and tool-use prompt tokens are input outside
/// `promptTokenCount`. `promptTokenCount` already includes cached content. With this,
/// `Usage::total` equals Gemini's `totalTokenCount`.
pub(super) fn usage_from_metadata(usage: &UsageMetadata) -> Usage {
    Usage {
        // Saturating: the counts come from the wire and must not overflow into a panic.
        input_tokens: usage
            .prompt_token_count
            .saturating_add(usage.tool_use_prompt_token_count),
        output_tokens: usage
            .candidates_token_count
            .saturating_add(usage.thoughts_token_count),
        cache_read_tokens: usage.cached_content_token_count,
        cache_write_tokens: 0,
        reasoning_tokens: usage.thoughts_token_count,
        ..Usage::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Google error bodies are `{"error": Status}`; the non-SSE stream endpoint wraps them in an
/// array, which is accepted too.
fn parse_error_body(body: &[u8]) -> Option<Status> {
    // Read as a value first: serde would also accept an array for a struct, field by position.
    let mut envelope = match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(items) => items.into_iter().next()?,
        value => value,
    };
    let error = envelope.get_mut("error").filter(|e| e.is_object())?.take();
    serde_json::from_value(error).ok()
}

/// The class of a Google `Status`, by its canonical `status` name first, then by the HTTP
/// status (given, or the body's numeric `code`).
pub(super) fn status_to_error(status: &Status, http_status: Option<u16>) -> UpstreamErrorInfo {
    let message = status.message.clone().unwrap_or_default();
    let code = http_status.or_else(|| status.code.and_then(|c| u16::try_from(c).ok()));
    let class = match status.status.as_deref() {
        Some("RESOURCE_EXHAUSTED") => ErrorClass::RateLimited,
        Some("UNAVAILABLE") => ErrorClass::Overloaded,
        Some("INVALID_ARGUMENT") if is_context_too_long(&message) => ErrorClass::ContextTooLong,
        // A bad or expired API key is a 400 `INVALID_ARGUMENT` whose `ErrorInfo` says so: the
        // deployment's credentials, not the request.
        Some("INVALID_ARGUMENT") if key_refused(&status.details) => ErrorClass::AuthFailed,
        Some("INVALID_ARGUMENT") => ErrorClass::InvalidRequest,
        Some("PERMISSION_DENIED" | "UNAUTHENTICATED") => ErrorClass::AuthFailed,
        Some("NOT_FOUND") => ErrorClass::NotFound,
        Some("DEADLINE_EXCEEDED") => ErrorClass::Timeout,
        Some("INTERNAL") => ErrorClass::ServerError,
        _ => match code {
            Some(400) if is_context_too_long(&message) => ErrorClass::ContextTooLong,
            Some(code) => ErrorClass::from_status(code),
            None => ErrorClass::ServerError,
        },
    };
    UpstreamErrorInfo {
        class,
        status: http_status,
        message: if message.is_empty() {
            format!(
                "Gemini error {}",
                status.status.as_deref().unwrap_or("UNKNOWN")
            )
        } else {
            message
        },
        provider_code: status.status.clone(),
        retry_after_secs: None,
        param: None,
    }
}

/// Whether an error's details hold an `ErrorInfo` whose reason is the API key's
/// (`API_KEY_INVALID`, `API_KEY_EXPIRED`).
fn key_refused(details: &[Value]) -> bool {
    details.iter().any(|d| {
        d.get("reason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.starts_with("API_KEY_"))
    })
}

/// Gemini's wording: "The input token count (N) exceeds the maximum number of tokens allowed
/// (M)."
fn is_context_too_long(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("token count") && message.contains("exceeds")
}

/// `google.rpc.RetryInfo.retryDelay` (a duration such as `"31s"` or `"0.5s"`) from `details`.
fn retry_delay(details: &[Value]) -> Option<f64> {
    details.iter().find_map(|detail| {
        let kind = detail.get("@type")?.as_str()?;
        if !kind.ends_with("google.rpc.RetryInfo") {
            return None;
        }
        let delay = detail.get("retryDelay")?.as_str()?;
        delay
            .strip_suffix('s')?
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(sane_retry_after)
    })
}

/// Message for an error body that is not Google's envelope (e.g. a proxy's HTML page): the
/// status and a short, single-line excerpt.
fn unreadable_error_message(status: u16, body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    // A proxy's error page can be large; the excerpt comes from its first bytes.
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_CHARS * 8)]);
    let excerpt: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_CHARS)
        .collect();
    if excerpt.is_empty() {
        format!("Gemini returned HTTP {status}")
    } else {
        format!("Gemini returned HTTP {status}: {excerpt}")
    }
}

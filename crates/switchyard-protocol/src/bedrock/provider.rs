//! `BedrockProvider`: canonical request → Converse / ConverseStream request, Converse answer →
//! canonical response, Bedrock errors → upstream error classes.

use http::{HeaderMap, HeaderValue, Method};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::stream::BedrockStreamDecoder;
use crate::anthropic::{
    JSON_OBJECT_INSTRUCTION, adaptive_effort, continues_unthought_tool_turn, effort_budget,
    thinks_adaptively,
};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, DocumentSource, EmbeddingRequest, EmbeddingResponse,
    ErrorClass, FinishReason, ImageSource, Reasoning, ResponseFormat, Role, ToolChoice,
    UpstreamErrorInfo, Usage,
};
use crate::dialect::{
    Capabilities, DialectId, ProviderDialect, StreamDecoder, Target, check_documents, malformed,
    retry_after_secs,
};
use crate::error::DecodeError;
use crate::provider_body::ProviderBody;

/// Output tokens asked for when the client set no limit: Converse has a default per model, but
/// Claude models on Bedrock need one as on Anthropic's own API.
const DEFAULT_MAX_TOKENS: u32 = crate::anthropic::DEFAULT_MAX_TOKENS;

/// Amazon Bedrock's Converse API as an upstream.
pub struct BedrockProvider;

impl ProviderDialect for BedrockProvider {
    fn id(&self) -> DialectId {
        DialectId::Bedrock
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            images: true,
            documents: true,
            json_schema: true,
            embeddings: true,
            several_choices: false,
            image_urls: false,
            document_urls: false,
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
        let operation = if request.stream {
            "converse-stream"
        } else {
            "converse"
        };
        post(target, operation, &body, request.stream).map(|r| r.map(ProviderBody::from))
    }

    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> {
        let answer: ConverseAnswer = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("unreadable Converse answer: {e}")))?;
        let mut content = Vec::new();
        for block in answer.output.message.content {
            content.extend(answer_part(block)?);
        }
        let has_tool_calls = content
            .iter()
            .any(|p| matches!(p, ContentPart::ToolCall { .. }));
        Ok(ChatResponse {
            id: String::new(),
            model: String::new(),
            created: 0,
            content,
            finish_reason: finish_reason(
                &answer.stop_reason,
                has_tool_calls,
                answer.additional_model_response_fields.as_ref(),
            ),
            usage: answer.usage.map(|u| u.canonical()),
            extras: Default::default(),
            more_choices: Vec::new(),
        })
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(BedrockStreamDecoder::default())
    }

    fn build_embeddings(
        &self,
        request: &EmbeddingRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        let body = super::embeddings::build_body(request, target.model)?;
        post(target, "invoke", &body, false)
    }

    fn parse_embeddings(&self, body: &[u8]) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
        super::embeddings::parse(body)
            .map_err(|e| malformed(format!("unreadable Bedrock embeddings: {e}")))
    }

    fn embedding_inputs_per_request(&self, model: &str) -> Option<usize> {
        super::embeddings::Family::of(model).map(super::embeddings::Family::texts_per_call)
    }

    /// InvokeModel's answers count their input in a header (Cohere's bodies have no count).
    fn embedding_tokens_in_headers(&self, headers: &HeaderMap) -> Option<u64> {
        headers
            .get("x-amzn-bedrock-input-token-count")?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// `CountTokens` with the Converse request's messages and system prompt, as the model
    /// would read them.
    fn build_count_tokens(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Option<Result<http::Request<Vec<u8>>, DecodeError>> {
        // CountTokens takes a foundation model's id (a cross-region profile's `us.` and the
        // like taken off), and counts for Claude models only: others are estimated.
        let model = foundation_model(target.model);
        if !model.starts_with("anthropic.") {
            return None;
        }
        let target = &Target { model, ..*target };
        let counted = || {
            let mut body = build_body(request, target.model)?;
            let mut converse = Map::new();
            for member in ["messages", "system"] {
                if let Some(value) = body.get_mut(member).map(Value::take) {
                    converse.insert(member.into(), value);
                }
            }
            post(
                target,
                "count-tokens",
                &json!({ "input": { "converse": converse } }),
                false,
            )
        };
        Some(counted())
    }

    fn parse_count_tokens(&self, body: &[u8]) -> Result<u64, UpstreamErrorInfo> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Counted {
            input_tokens: u64,
        }
        serde_json::from_slice::<Counted>(body)
            .map(|c| c.input_tokens)
            .map_err(|e| malformed(format!("unreadable CountTokens answer: {e}")))
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo {
        let kind = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let kind = kind.or_else(|| {
            parsed
                .as_ref()
                .and_then(|b| b.kind.as_deref())
                // `__type` may be namespaced: `com.amazon.bedrock#ThrottlingException`.
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        });
        let message = parsed
            .and_then(|b| b.message.or(b.message_upper))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| match &kind {
                Some(kind) => format!("Bedrock answered HTTP {status} ({kind})"),
                None => format!("Bedrock answered HTTP {status}"),
            });
        UpstreamErrorInfo {
            class: kind
                .as_deref()
                .and_then(|k| error_class(k, &message))
                .unwrap_or_else(|| ErrorClass::from_status(status)),
            status: Some(status),
            message,
            provider_code: kind,
            retry_after_secs: retry_after_secs(headers),
            param: None,
        }
    }
}

/// A `POST` of `body` to the model's `operation`, with the Bedrock API key when there is one
/// (without one, the gateway signs the request with AWS credentials).
fn post(
    target: &Target<'_>,
    operation: &str,
    body: &Value,
    stream: bool,
) -> Result<http::Request<Vec<u8>>, DecodeError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| DecodeError::new(format!("could not write the request: {e}"), None))?;
    let url = format!(
        "{}/model/{}/{operation}",
        target.base_url.trim_end_matches('/'),
        encode_model_id(target.model)
    );
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    if stream {
        builder = builder.header(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
    }
    if let Some(key) = target.api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
            DecodeError::new("the provider's API key is not a valid header value", None)
        })?;
        value.set_sensitive(true);
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    builder
        .body(body)
        .map_err(|e| DecodeError::new(format!("invalid provider URL {url}: {e}"), None))
}

/// The model id as one path segment: inference-profile ids carry `:` (`…-v1:0`) and ARNs `:`
/// and `/`.
fn encode_model_id(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An AWS exception type's class; the message tells a context overflow from other invalid
/// requests.
pub(super) fn error_class(kind: &str, message: &str) -> Option<ErrorClass> {
    Some(match kind {
        "ThrottlingException" | "ServiceQuotaExceededException" => ErrorClass::RateLimited,
        "ServiceUnavailableException" | "ModelNotReadyException" => ErrorClass::Overloaded,
        "InternalServerException" | "ModelErrorException" | "ModelStreamErrorException" => {
            ErrorClass::ServerError
        }
        "ModelTimeoutException" => ErrorClass::Timeout,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException" => ErrorClass::AuthFailed,
        "ResourceNotFoundException" => ErrorClass::NotFound,
        "ValidationException" => {
            let lower = message.to_ascii_lowercase();
            // Bedrock's own words, and Claude's it relays ("The model returned the following
            // errors: input length and `max_tokens` exceed context limit: …").
            if [
                "too long",
                "context window",
                "context limit",
                "context length",
            ]
            .iter()
            .any(|needle| lower.contains(needle))
            {
                ErrorClass::ContextTooLong
            } else {
                ErrorClass::InvalidRequest
            }
        }
        _ => return None,
    })
}

/// `stopReason` → canonical. `stop_sequence` does not say which sequence; Claude's own
/// response fields do (`additionalModelResponseFields.stop_sequence`, asked for with the stop
/// sequences).
pub(super) fn finish_reason(
    reason: &str,
    has_tool_calls: bool,
    fields: Option<&serde_json::Value>,
) -> FinishReason {
    match reason {
        "end_turn" if has_tool_calls => FinishReason::ToolCalls,
        "end_turn" => FinishReason::Stop,
        "tool_use" => FinishReason::ToolCalls,
        "max_tokens" => FinishReason::Length,
        // Kept as Claude says it (a length stop to clients of other dialects).
        "model_context_window_exceeded" => FinishReason::Other(reason.to_owned()),
        "stop_sequence" => FinishReason::StopSequence(
            fields
                .and_then(|f| f.get("stop_sequence"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        ),
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
    #[serde(rename = "__type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseAnswer {
    output: Output,
    stop_reason: String,
    usage: Option<TokenUsage>,
    additional_model_response_fields: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Output {
    message: OutputMessage,
}

#[derive(Debug, Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<Value>,
}

/// `usage` (`TokenUsage`): Bedrock's input count leaves out cache reads and writes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
    /// The cache writes by lifetime.
    #[serde(default)]
    cache_details: Vec<CacheDetail>,
}

/// `usage.cacheDetails[]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheDetail {
    ttl: String,
    input_tokens: u64,
}

impl TokenUsage {
    pub(super) fn canonical(&self) -> Usage {
        Usage {
            input_tokens: self
                .input_tokens
                .saturating_add(self.cache_read_input_tokens)
                .saturating_add(self.cache_write_input_tokens),
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cache_read_input_tokens,
            cache_write_tokens: self.cache_write_input_tokens,
            cache_write_1h_tokens: self
                .cache_details
                .iter()
                .filter(|d| d.ttl == "1h")
                .map(|d| d.input_tokens)
                .sum::<u64>()
                .min(self.cache_write_input_tokens),
            ..Usage::default()
        }
    }
}

/// The foundation model an inference profile id names: `us.anthropic.claude-…` is
/// `anthropic.claude-…`. Any other id (a foundation model's, an ARN) is itself.
fn foundation_model(model: &str) -> &str {
    match model.split_once('.') {
        Some((geo, rest))
            if matches!(
                geo,
                "us" | "eu" | "apac" | "global" | "us-gov" | "ca" | "jp" | "au"
            ) && rest.contains('.') =>
        {
            rest
        }
        _ => model,
    }
}

/// One content block of an answer; blocks of kinds this gateway does not carry (guard
/// content) are left out.
fn answer_part(block: Value) -> Result<Option<ContentPart>, UpstreamErrorInfo> {
    let Value::Object(mut block) = block else {
        return Err(malformed("a Converse content block that is not an object"));
    };
    if let Some(Value::String(text)) = block.remove("text") {
        return Ok(Some(ContentPart::text(text)));
    }
    // Text that cites the request's documents: its text, with Claude's citations of it.
    if let Some(cited) = block.remove("citationsContent") {
        let text = joined_texts(cited.get("content"));
        let citations: Vec<Value> = cited
            .get("citations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(anthropic_citation)
            .collect();
        return Ok(Some(ContentPart::Text {
            text: text.into(),
            cache_control: None,
            citations: (!citations.is_empty()).then_some(Value::Array(citations)),
        }));
    }
    if let Some(tool_use) = block.remove("toolUse") {
        let id = tool_use["toolUseId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = tool_use["name"].as_str().unwrap_or_default().to_owned();
        if id.is_empty() || name.is_empty() {
            return Err(malformed("a Converse toolUse block without its id or name"));
        }
        let arguments = match tool_use.get("input") {
            Some(input) if !input.is_null() => input.to_string(),
            _ => "{}".to_owned(),
        };
        return Ok(Some(ContentPart::ToolCall {
            id,
            name,
            arguments,
            extras: Default::default(),
        }));
    }
    if let Some(reasoning) = block.remove("reasoningContent") {
        if let Some(text) = reasoning.get("reasoningText") {
            return Ok(Some(ContentPart::Reasoning {
                text: text["text"].as_str().unwrap_or_default().to_owned(),
                signature: text["signature"].as_str().map(str::to_owned),
            }));
        }
        if let Some(Value::String(data)) = reasoning.get("redactedContent") {
            return Ok(Some(ContentPart::RedactedReasoning { data: data.clone() }));
        }
    }
    Ok(None)
}

fn build_body(request: &ChatRequest, model: &str) -> Result<Value, DecodeError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(DecodeError::new(
            "Bedrock models return one answer per request; n must be 1",
            Some("n"),
        ));
    }
    check_documents(request, document_refusal)?;
    // Converse wants a `toolConfig` whenever the history holds tool calls, and has no way to
    // forbid calls: without tools, or with a choice of none, the history's calls and results
    // go as text (their images and documents as blocks), so the model cannot call.
    let tools_off = request.tools.is_empty() || request.tool_choice == Some(ToolChoice::None);
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role {
            Role::System | Role::Developer => {
                for part in &message.content {
                    if let ContentPart::Text {
                        text,
                        cache_control,
                        ..
                    } = part
                        && !text.is_empty()
                    {
                        system.push(json!({ "text": &**text }));
                        if let Some(marker) = cache_control {
                            system.push(cache_point(marker));
                        }
                    }
                }
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::new();
        for (j, part) in message.content.iter().enumerate() {
            part_blocks(
                part,
                &format!("messages[{i}].content[{j}]"),
                tools_off,
                &mut blocks,
            )?;
        }
        if blocks.is_empty() {
            continue;
        }
        // Converse wants user and assistant turns to alternate: tool results (OpenAI's `tool`
        // messages) and consecutive turns of one role become one message.
        match messages.last_mut() {
            Some((last_role, last)) if *last_role == role => last.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    if request.response_format == Some(ResponseFormat::JsonObject) {
        system.push(json!({ "text": JSON_OBJECT_INSTRUCTION }));
    }

    let mut body = Map::new();
    body.insert(
        "messages".into(),
        messages
            .into_iter()
            .map(|(role, content)| json!({ "role": role, "content": content }))
            .collect(),
    );
    if !system.is_empty() {
        body.insert("system".into(), system.into());
    }

    let forced_tool = matches!(
        request.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Function(_))
    );
    let claude = model.contains("anthropic.");
    // Claude's extended thinking goes in the model's own fields (`additionalModelRequestFields`).
    let thinking_budget = match &request.reasoning {
        // A client's own budget too is left off after a tool turn without signed thinking.
        Some(Reasoning {
            budget_tokens: Some(budget),
            ..
        }) if claude && !continues_unthought_tool_turn(&request.messages) => Some(*budget),
        Some(Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }) if claude && !forced_tool && !continues_unthought_tool_turn(&request.messages) => {
            effort_budget(effort)
                .map(|budget| match request.max_tokens {
                    Some(limit) => budget.min(limit.saturating_sub(1)),
                    None => budget,
                })
                .filter(|budget| *budget >= 1024)
        }
        _ => None,
    };
    let max_tokens = match (request.max_tokens, thinking_budget) {
        (Some(limit), _) => limit,
        (None, Some(budget)) => budget.saturating_add(DEFAULT_MAX_TOKENS),
        (None, None) => DEFAULT_MAX_TOKENS,
    };
    let mut inference = Map::new();
    inference.insert("maxTokens".into(), max_tokens.into());
    // Thinking takes no sampling settings on Claude.
    if thinking_budget.is_none() {
        // Converse takes a temperature up to 1, OpenAI's clients up to 2: the most it takes.
        if let Some(t) = request.temperature {
            inference.insert("temperature".into(), t.min(1.0).into());
        }
        if let Some(p) = request.top_p {
            inference.insert("topP".into(), p.into());
        }
    }
    if !request.stop.is_empty() {
        inference.insert("stopSequences".into(), request.stop.clone().into());
        // Converse's `stop_sequence` does not say which; Claude's own field does, when asked.
        if claude {
            body.insert(
                "additionalModelResponseFieldPaths".into(),
                json!(["/stop_sequence"]),
            );
        }
    }
    body.insert("inferenceConfig".into(), inference.into());

    let mut additional = Map::new();
    // Claude 4.6 and later think adaptively (from 4.7 only so), at the effort an OpenAI-style
    // client asked for, else at the default.
    if thinking_budget.is_some() && thinks_adaptively(model) {
        additional.insert("thinking".into(), json!({ "type": "adaptive" }));
        if let Some(effort) = request
            .reasoning
            .as_ref()
            .and_then(|r| r.effort.as_deref())
            .and_then(adaptive_effort)
        {
            additional.insert("output_config".into(), json!({ "effort": effort }));
        }
    } else if let Some(budget_tokens) = thinking_budget {
        additional.insert(
            "thinking".into(),
            json!({ "type": "enabled", "budget_tokens": budget_tokens }),
        );
    } else if let (Some(k), true) = (request.top_k, claude) {
        additional.insert("top_k".into(), k.into());
    }
    if !additional.is_empty() {
        body.insert("additionalModelRequestFields".into(), additional.into());
    }

    if !tools_off {
        let mut tools = Vec::new();
        for tool in &request.tools {
            let schema = match &tool.parameters {
                Value::Null => json!({ "type": "object", "properties": {} }),
                schema => schema.clone(),
            };
            let mut spec = Map::new();
            spec.insert("name".into(), tool.name.clone().into());
            if let Some(description) = tool.description.as_deref().filter(|d| !d.is_empty()) {
                spec.insert("description".into(), description.into());
            }
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            tools.push(json!({ "toolSpec": spec }));
            if let Some(marker) = &tool.cache_control {
                tools.push(cache_point(marker));
            }
        }
        let mut config = Map::new();
        config.insert("tools".into(), tools.into());
        match &request.tool_choice {
            Some(ToolChoice::Required) => {
                config.insert("toolChoice".into(), json!({ "any": {} }));
            }
            Some(ToolChoice::Function(name)) => {
                config.insert("toolChoice".into(), json!({ "tool": { "name": name } }));
            }
            Some(ToolChoice::Auto) => {
                config.insert("toolChoice".into(), json!({ "auto": {} }));
            }
            Some(ToolChoice::None) | None => {}
        }
        body.insert("toolConfig".into(), config.into());
    } else if matches!(
        request.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Function(_))
    ) {
        return Err(DecodeError::new(
            "tool_choice asks for a tool call but the request offers no tools",
            Some("tool_choice"),
        ));
    }

    if let Some(ResponseFormat::JsonSchema {
        name,
        description,
        schema,
        ..
    }) = &request.response_format
    {
        let mut definition = Map::new();
        // Converse takes the schema as JSON text; Claude's as its structured outputs compile
        // it, as on Anthropic's API.
        let fitted = claude
            .then(|| crate::anthropic::fitted_schema(schema))
            .flatten();
        definition.insert(
            "schema".into(),
            fitted.as_ref().unwrap_or(schema).to_string().into(),
        );
        definition.insert("name".into(), name.clone().into());
        if let Some(description) = description {
            definition.insert("description".into(), description.clone().into());
        }
        body.insert(
            "outputConfig".into(),
            json!({ "textFormat": {
                "type": "json_schema",
                "structure": { "jsonSchema": definition },
            } }),
        );
    }
    Ok(Value::Object(body))
}

/// A cache point for a cache marker (Anthropic's `cache_control`), with its lifetime when the
/// marker names one Converse takes (`5m`, `1h`).
fn cache_point(marker: &Value) -> Value {
    match marker.get("ttl").and_then(Value::as_str) {
        Some(ttl @ ("5m" | "1h")) => json!({ "cachePoint": { "type": "default", "ttl": ttl } }),
        _ => json!({ "cachePoint": { "type": "default" } }),
    }
}

/// The Converse blocks of one canonical part (a text with a cache marker is followed by a
/// cache point). With `tools_off`, tool calls and results become text.
fn part_blocks(
    part: &ContentPart,
    path: &str,
    tools_off: bool,
    out: &mut Vec<Value>,
) -> Result<(), DecodeError> {
    match part {
        ContentPart::Text {
            text,
            cache_control,
            ..
        } => {
            // Converse refuses empty text blocks.
            if !text.is_empty() {
                out.push(json!({ "text": &**text }));
            }
            if let Some(marker) = cache_control {
                out.push(cache_point(marker));
            }
        }
        ContentPart::Image { source, .. } => out.push(image_block(source, path)?),
        ContentPart::Document {
            source,
            title,
            extras,
            ..
        } => out.push(cited_document_block(source, title, extras, out.len())),
        ContentPart::ToolCall {
            id,
            name,
            arguments,
            ..
        } if tools_off => {
            out.push(
                json!({ "text": format!("[Called tool {name} (call {id}) with {arguments}]") }),
            );
        }
        ContentPart::ToolResult {
            tool_call_id,
            content,
            is_error,
            ..
        } if tools_off => {
            let outcome = if *is_error { "Error from" } else { "Result of" };
            let text = ContentPart::concat_text(content);
            out.push(json!({ "text": format!("[{outcome} tool call {tool_call_id}: {text}]") }));
            for (k, inner) in content.iter().enumerate() {
                match inner {
                    ContentPart::Image { source, .. } => {
                        out.push(image_block(source, &format!("{path}.content[{k}]"))?);
                    }
                    ContentPart::Document {
                        source,
                        title,
                        extras,
                        ..
                    } => out.push(cited_document_block(source, title, extras, k)),
                    _ => {}
                }
            }
        }
        ContentPart::ToolCall {
            id,
            name,
            arguments,
            ..
        } => {
            let input = match serde_json::from_str::<Value>(arguments) {
                Ok(Value::Object(input)) => Value::Object(input),
                // Converse wants an object: arguments that are not one become empty.
                _ => json!({}),
            };
            out.push(json!({ "toolUse": {
                "toolUseId": tool_use_id(id),
                "name": name,
                "input": input,
            } }));
        }
        ContentPart::ToolResult {
            tool_call_id,
            content,
            is_error,
            ..
        } => {
            let mut blocks = Vec::new();
            for (k, inner) in content.iter().enumerate() {
                match inner {
                    ContentPart::Text { text, .. } if !text.is_empty() => {
                        blocks.push(json!({ "text": &**text }));
                    }
                    ContentPart::Image { source, .. } => {
                        blocks.push(image_block(source, &format!("{path}.content[{k}]"))?);
                    }
                    ContentPart::Document {
                        source,
                        title,
                        extras,
                        ..
                    } => blocks.push(cited_document_block(source, title, extras, k)),
                    _ => {}
                }
            }
            if blocks.is_empty() {
                // A result must say something.
                blocks.push(json!({ "text": "(no output)" }));
            }
            let mut result = Map::new();
            result.insert("toolUseId".into(), tool_use_id(tool_call_id).into());
            result.insert("content".into(), blocks.into());
            if *is_error {
                result.insert("status".into(), "error".into());
            }
            out.push(json!({ "toolResult": result }));
        }
        // Reasoning goes back only as the model signed it ("include the text and its signature
        // unmodified"): another provider's, or a client's echo of `reasoning_content`, has no
        // signature, and Claude refuses the turn for it.
        ContentPart::Reasoning {
            text,
            signature: Some(signature),
        } => {
            out.push(json!({ "reasoningContent": { "reasoningText": {
                "text": text,
                "signature": signature,
            } } }));
        }
        ContentPart::Reasoning {
            signature: None, ..
        } => {}
        ContentPart::RedactedReasoning { data } => {
            out.push(json!({ "reasoningContent": { "redactedContent": data } }));
        }
        // A server tool ran on another provider; the answer's text says what it found.
        ContentPart::ServerTool { .. } => {}
    }
    Ok(())
}

/// Converse takes tool use ids of `[a-zA-Z0-9_-]`, at most 64: other characters become `_`
/// (the same id maps the same way in the call and in its result).
fn tool_use_id(id: &str) -> String {
    id.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn image_block(source: &ImageSource, path: &str) -> Result<Value, DecodeError> {
    match source {
        ImageSource::Base64 { media_type, data } => {
            let format = media_type.strip_prefix("image/").unwrap_or(media_type);
            let format = match format {
                "jpg" => "jpeg",
                "png" | "jpeg" | "gif" | "webp" => format,
                _ => {
                    return Err(DecodeError::new(
                        format!("Bedrock takes PNG, JPEG, GIF and WebP images, not {media_type}"),
                        Some(path),
                    ));
                }
            };
            Ok(json!({ "image": { "format": format, "source": { "bytes": &**data } } }))
        }
        ImageSource::Url(url) => match s3_object(url) {
            Some(extension) => {
                let format = match extension.as_str() {
                    "jpg" => "jpeg",
                    "png" | "jpeg" | "gif" | "webp" => extension.as_str(),
                    _ => {
                        return Err(DecodeError::new(
                            "Bedrock takes PNG, JPEG, GIF and WebP images; name the S3 object with \
                             its extension (.png, .jpg, .gif, .webp)",
                            Some(path),
                        ));
                    }
                };
                Ok(
                    json!({ "image": { "format": format, "source": { "s3Location": { "uri": url } } } }),
                )
            }
            None => Err(DecodeError::new(
                "Bedrock takes images inline or from S3 (s3://) only: send this image as a base64 \
                 data URL",
                Some(path),
            )),
        },
    }
}

/// The lower-cased extension of an `s3://bucket/key` object, which Converse reads itself
/// (`s3Location`); `None` for any other URL.
fn s3_object(url: &str) -> Option<String> {
    let key = url.strip_prefix("s3://")?.split_once('/')?.1;
    let name = key.rsplit('/').next().unwrap_or(key);
    Some(
        name.rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .unwrap_or_default(),
    )
}

/// The Converse format of an S3 document, by its extension (a PDF when it names none known).
fn s3_document_format(extension: &str) -> &'static str {
    match extension {
        "csv" => "csv",
        "doc" => "doc",
        "docx" => "docx",
        "xls" => "xls",
        "xlsx" => "xlsx",
        "html" | "htm" => "html",
        "txt" => "txt",
        "md" | "markdown" => "md",
        _ => "pdf",
    }
}

/// Document formats Converse reads, by media type.
fn document_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

fn document_refusal(source: &DocumentSource) -> Option<String> {
    match source {
        DocumentSource::Base64 { media_type, .. } | DocumentSource::Text { media_type, .. }
            if document_format(media_type).is_none() =>
        {
            Some(format!(
                "Bedrock reads PDF, CSV, Word, Excel, HTML, text and Markdown documents, not {media_type}"
            ))
        }
        DocumentSource::Base64 { .. } | DocumentSource::Text { .. } => None,
        DocumentSource::Url(url) if s3_object(url).is_some() => None,
        DocumentSource::Url(_) => {
            Some("Bedrock takes documents inline or from S3 (s3://) only, not by URL".to_owned())
        }
        DocumentSource::FileId(_) => {
            Some("Bedrock cannot read an OpenAI file id; send the document inline".to_owned())
        }
    }
}

/// A document block, asking for its citations (`citations: {enabled: true}`) where an
/// Anthropic client did: Claude on Bedrock then cites it, as on Anthropic's API.
fn cited_document_block(
    source: &DocumentSource,
    title: &Option<String>,
    extras: &crate::canonical::Extras,
    index: usize,
) -> Value {
    let mut block = document_block(source, title.as_deref(), index);
    let enabled = extras
        .for_dialect(DialectId::Anthropic)
        .and_then(|fields| fields.get(crate::anthropic::DOCUMENT_CITATIONS))
        .and_then(|c| c.get("enabled"))
        .and_then(Value::as_bool)
        == Some(true);
    if enabled && let Some(document) = block.get_mut("document") {
        document["citations"] = json!({ "enabled": true });
    }
    block
}

/// The texts of a list of `{"text": …}` parts (a citation's generated or source content),
/// joined.
fn joined_texts(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect()
}

/// Claude's citation (as the Messages API writes it) of a Converse `Citation` or streamed
/// `CitationsDelta`: where in which document (characters, pages or chunks) and the text cited.
pub(super) fn anthropic_citation(citation: &Value) -> Option<Value> {
    let cited = joined_texts(citation.get("sourceContent"));
    let title = citation.get("title").cloned().unwrap_or(Value::Null);
    let location = citation.get("location")?;
    let at = |place: &Value, key: &str| place.get(key).cloned().unwrap_or(json!(0));
    if let Some(place) = location.get("documentChar") {
        Some(json!({"type": "char_location", "cited_text": cited,
            "document_index": at(place, "documentIndex"), "document_title": title,
            "start_char_index": at(place, "start"), "end_char_index": at(place, "end")}))
    } else if let Some(place) = location.get("documentPage") {
        Some(json!({"type": "page_location", "cited_text": cited,
            "document_index": at(place, "documentIndex"), "document_title": title,
            "start_page_number": at(place, "start"), "end_page_number": at(place, "end")}))
    } else if let Some(place) = location.get("documentChunk") {
        Some(
            json!({"type": "content_block_location", "cited_text": cited,
            "document_index": at(place, "documentIndex"), "document_title": title,
            "start_block_index": at(place, "start"), "end_block_index": at(place, "end")}),
        )
    } else {
        location.get("web").map(|web| {
            json!({"type": "web_search_result_location", "cited_text": cited,
                "url": web.get("url").cloned().unwrap_or(Value::Null), "title": title,
                "encrypted_index": ""})
        })
    }
}

/// A document block; `check_documents` has refused the forms Bedrock cannot take. Its name
/// may hold only letters, digits, single spaces, hyphens, parentheses and square brackets.
fn document_block(source: &DocumentSource, title: Option<&str>, index: usize) -> Value {
    let name: String = title
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '(' | ')' | '[' | ']') {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let name = if name.is_empty() {
        format!("document {}", index + 1)
    } else {
        name
    };
    let (format, source) = match source {
        DocumentSource::Base64 { media_type, data } => {
            (document_format(media_type), json!({ "bytes": &**data }))
        }
        DocumentSource::Text { media_type, data } => {
            (document_format(media_type), json!({ "text": &**data }))
        }
        DocumentSource::Url(url) => match s3_object(url) {
            Some(extension) => (
                Some(s3_document_format(&extension)),
                json!({ "s3Location": { "uri": url } }),
            ),
            None => (None, Value::Null),
        },
        DocumentSource::FileId(_) => (None, Value::Null),
    };
    json!({ "document": {
        "format": format.unwrap_or("txt"),
        "name": name,
        "source": source,
    } })
}

//! The two dialect traits and the one registry from provider kind to dialect. This is the only
//! place in the code base that matches on a provider kind.

use bytes::Bytes;
use http::HeaderMap;

use crate::canonical::{
    ChatRequest, ChatResponse, DocumentSource, EmbeddingRequest, EmbeddingResponse, ErrorClass,
    StreamEvent, UpstreamErrorInfo,
};
use crate::error::{ClientError, DecodeError};
use crate::provider_body::ProviderBody;

/// One wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialectId {
    OpenAi,
    /// OpenAI's Responses API: a client dialect only, no provider speaks it here.
    OpenAiResponses,
    /// OpenAI's legacy Completions API (`/v1/completions`): a client dialect only, its prompt
    /// sent to providers as a chat.
    OpenAiCompletions,
    Anthropic,
    Gemini,
    /// Amazon Bedrock's Converse API: a provider dialect only.
    Bedrock,
}

impl DialectId {
    pub fn as_str(self) -> &'static str {
        match self {
            DialectId::OpenAi => "openai",
            DialectId::OpenAiResponses => "openai-responses",
            DialectId::OpenAiCompletions => "openai-completions",
            DialectId::Anthropic => "anthropic",
            DialectId::Gemini => "gemini",
            DialectId::Bedrock => "bedrock",
        }
    }
}

/// What the encoders need to know about the reply they are writing.
#[derive(Debug, Clone)]
pub struct EncodeCtx {
    /// Gateway-generated response id (dialect-prefixed by the encoder when needed).
    pub id: String,
    /// The model name to show the client: the alias it asked for.
    pub model: String,
    /// Unix seconds.
    pub created: i64,
    /// The client asked for a final usage chunk (OpenAI `stream_options.include_usage`).
    pub include_usage: bool,
    /// The request's settings, for dialects whose answers repeat them (a Responses API
    /// `response`); see [`IngressDialect::echo`].
    pub echo: Option<serde_json::Value>,
    /// Where a finished answer goes to be kept, for dialects whose clients may refer to it
    /// later (the Responses API's `previous_response_id`); `None` keeps nothing.
    pub keep: Option<KeepAnswer>,
    /// The prompt's estimated tokens (as the request was admitted), for dialects whose answers
    /// must say a count when the provider said none (Anthropic's `usage`).
    pub prompt_estimate: u64,
}

/// Takes a finished answer, whole or streamed to its end: its id and its dialect's object (a
/// Responses API `response`) as JSON; never an answer that failed.
#[derive(Clone)]
pub struct KeepAnswer(pub std::sync::Arc<KeepFn>);

/// What a [`KeepAnswer`] calls: with the answer's id and its JSON.
pub type KeepFn = dyn Fn(&str, bytes::Bytes) + Send + Sync;

impl std::fmt::Debug for KeepAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAnswer")
    }
}

/// What the client speaks: decode its request, encode our answer, frame our stream.
pub trait IngressDialect: Send + Sync {
    fn id(&self) -> DialectId;
    /// Reads the client's request. Its texts may share `body`'s bytes rather than copy them.
    fn decode_chat(&self, body: &Bytes) -> Result<ChatRequest, DecodeError>;
    /// Keeps the request headers that a provider of this dialect must get unchanged (Anthropic's
    /// `anthropic-beta` and `anthropic-version`), in the request's extras.
    fn keep_headers(&self, _headers: &http::HeaderMap, _request: &mut ChatRequest) {}
    /// The request's settings that this dialect's answers repeat, if any ([`EncodeCtx::echo`]).
    fn echo(&self, _request: &ChatRequest) -> Option<serde_json::Value> {
        None
    }
    fn encode_chat(&self, response: &crate::canonical::ChatResponse, ctx: &EncodeCtx) -> Vec<u8>;
    fn stream_encoder(&self, ctx: EncodeCtx) -> Box<dyn StreamEncoder>;
    /// The full error body in this dialect's envelope.
    fn encode_error(&self, error: &ClientError) -> Vec<u8>;
}

/// Turns canonical stream events into SSE frames of one dialect, appending to `out`.
pub trait StreamEncoder: Send {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
    /// The upstream ended properly: write the dialect's terminal frames.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The stream failed after commit: write an in-band error frame. No terminal success frame
    /// follows, so the client cannot mistake the stream for complete.
    fn error(&mut self, error: &ClientError, out: &mut Vec<u8>);
}

/// Turns a provider's streamed body into canonical events, whatever the chunking.
pub trait StreamDecoder: Send {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo>;
    /// The body ended. Fails with `StreamInterrupted` when the dialect's terminal event was not
    /// seen: a premature end is never a success.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo>;
    /// The dialect's terminal event came (OpenAI's `[DONE]`, Anthropic's `message_stop`,
    /// Bedrock's `metadata`, Gemini's chunk with a finish reason and the usage): the answer is
    /// whole, whether or not the provider closes its body.
    fn terminated(&self) -> bool {
        false
    }
}

/// Per-provider differences among OpenAI-compatible servers, as data rather than code copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiQuirks {
    /// Name of the output-token limit field: `max_completion_tokens` (OpenAI) or `max_tokens`
    /// (most compatible servers).
    pub max_tokens_field: String,
    /// Name of the seed field (`seed`; Mistral uses `random_seed`).
    pub seed_field: String,
    /// Send `stream_options.include_usage` so usage is measured on streams.
    pub stream_usage: bool,
    /// The server understands the `developer` role (else it is sent as `system`).
    pub developer_role: bool,
    /// The server is OpenAI's own: a Responses API client's members that Chat Completions
    /// shares (`prompt_cache_key`, `safety_identifier`, `service_tier` …) are sent on.
    /// Compatible servers and Azure may refuse members they do not know.
    pub responses_members: bool,
    /// Every stream names why it ended (`finish_reason`) before `[DONE]`, as OpenAI's and
    /// Azure's do: one that ends without it was cut short. Compatible servers are not held
    /// to it.
    pub finish_reason_always: bool,
    /// Top-level request members the server refuses (Mistral refuses `user`), and
    /// `messages[].name` for a message's name (Groq refuses it): left out of every request,
    /// whoever set them.
    pub unsupported_fields: Vec<String>,
    /// An assistant turn's reasoning that led to tool calls goes back as `reasoning_content`
    /// (DeepSeek's thinking mode refuses a tool loop without it).
    pub reasoning_history: bool,
    /// The member that reasoning goes back in: `reasoning_content` (DeepSeek's), or
    /// `reasoning` (Ollama's and vLLM's).
    pub reasoning_field: String,
    /// Tool call ids are sent as 9 letters and digits (Mistral refuses any other id); an id of
    /// another form is replaced by one made from it, the same in the call and its result.
    pub short_tool_call_ids: bool,
}

impl Default for OpenAiQuirks {
    fn default() -> Self {
        Self {
            max_tokens_field: "max_completion_tokens".into(),
            seed_field: "seed".into(),
            stream_usage: true,
            developer_role: true,
            responses_members: true,
            finish_reason_always: true,
            unsupported_fields: Vec::new(),
            reasoning_history: false,
            reasoning_field: "reasoning_content".into(),
            short_tool_call_ids: false,
        }
    }
}

impl OpenAiQuirks {
    pub fn compatible() -> Self {
        Self {
            max_tokens_field: "max_tokens".into(),
            developer_role: false,
            responses_members: false,
            finish_reason_always: false,
            ..Self::default()
        }
    }

    /// The differences of a compatible server known by its address, as its API reference
    /// documents them; any other server gets `compatible()`'s. Mistral's API takes
    /// `random_seed`, refuses `stream_options` and `user` (it forbids unknown members) and
    /// tool call ids other than 9 letters and digits; DeepSeek's wants a tool loop's reasoning
    /// back; Groq's refuses a message's `name`.
    pub fn compatible_for(base_url: &str) -> Self {
        let host = base_url
            .split_once("://")
            .map_or(base_url, |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut quirks = Self::compatible();
        match host.as_str() {
            "api.mistral.ai" | "codestral.mistral.ai" => {
                quirks.seed_field = "random_seed".into();
                quirks.stream_usage = false;
                quirks.unsupported_fields = vec!["user".into()];
                quirks.short_tool_call_ids = true;
            }
            "api.deepseek.com" => quirks.reasoning_history = true,
            // Groq's OpenAI compatibility refuses a message's `name` with a 400.
            "api.groq.com" => quirks.unsupported_fields = vec!["messages[].name".into()],
            _ => {}
        }
        quirks
    }

    /// Whether the server takes the top-level member `field`.
    pub fn sends(&self, field: &str) -> bool {
        self.unsupported_fields.is_empty() || !self.unsupported_fields.iter().any(|f| f == field)
    }

    /// Azure's classic deployment URLs take what their `api-version` (`YYYY-MM-DD` with an
    /// optional `-preview`) documents: `stream_options` from 2024-08-01, `max_completion_tokens`
    /// from 2024-09-01, the `developer` role from 2024-12-01. A version not read as a date is
    /// taken as recent.
    pub fn for_azure_version(&self, version: &str) -> Option<Self> {
        let date = version.get(..10).filter(|d| {
            d.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
        })?;
        if date >= "2024-12-01" {
            return None;
        }
        let mut quirks = self.clone();
        quirks.developer_role = false;
        if date < "2024-09-01" {
            quirks.max_tokens_field = "max_tokens".into();
        }
        if date < "2024-08-01" {
            quirks.stream_usage = false;
        }
        Some(quirks)
    }
}

/// Where and how to call one deployment. Credentials are passed in, never stored here.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: &'a str,
    /// The provider's model (or Azure deployment) name.
    pub model: &'a str,
    pub api_key: Option<&'a str>,
    /// Azure `api-version` (classic deployment URLs); `None` means Azure's v1 API.
    pub api_version: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub tools: bool,
    pub images: bool,
    pub documents: bool,
    pub json_schema: bool,
    pub embeddings: bool,
    /// Several answers to one request (OpenAI `n`, Gemini `candidateCount`).
    pub several_choices: bool,
    /// Images by an `http(s)` URL, which the provider fetches itself; where it takes none the
    /// gateway fetches them and sends their bytes.
    pub image_urls: bool,
    /// Documents by an `http(s)` URL, likewise.
    pub document_urls: bool,
    /// Images and documents by URL inside a tool's result too, where `image_urls` and
    /// `document_urls` allow them (Gemini's function responses take inline media only).
    pub tool_result_urls: bool,
    /// The provider can be told to call at most one tool (OpenAI's `parallel_tool_calls`,
    /// Anthropic's `disable_parallel_tool_use`); where it cannot, the gateway keeps an answer
    /// to the first call ([`FirstToolCallOnly`], [`ChatResponse::keep_first_tool_call`]).
    pub single_tool_call: bool,
}

/// A provider's stream kept to its first tool call, for a client that asked for no parallel
/// calls from a provider that cannot be told so: the calls after the first are left out, as
/// the client, which runs one call per turn, expects.
pub struct FirstToolCallOnly(pub Box<dyn StreamDecoder>);

impl FirstToolCallOnly {
    fn keep_first(out: &mut Vec<StreamEvent>, from: usize) {
        let mut at = from;
        out.retain(|event| {
            let keep = at < from
                || !matches!(
                    event,
                    StreamEvent::ToolCallStart { index, .. }
                    | StreamEvent::ToolCallDelta { index, .. }
                    | StreamEvent::ToolCallSignature { index, .. } if *index > 0
                );
            at += 1;
            keep
        });
    }
}

impl StreamDecoder for FirstToolCallOnly {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        let from = out.len();
        let pushed = self.0.push(chunk, out);
        Self::keep_first(out, from);
        pushed
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        let from = out.len();
        let finished = self.0.finish(out);
        Self::keep_first(out, from);
        finished
    }
}

/// What the upstream speaks: build its request, parse its reply and errors.
pub trait ProviderDialect: Send + Sync {
    fn id(&self) -> DialectId;
    fn capabilities(&self) -> Capabilities;
    /// The provider's request. Long texts of the client's body may be spliced into its body
    /// rather than copied (see `ProviderBody`).
    fn build_chat(
        &self,
        request: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<http::Request<ProviderBody>, DecodeError>;
    fn parse_chat(&self, body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo>;
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;
    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamErrorInfo;
    fn build_embeddings(
        &self,
        _request: &EmbeddingRequest,
        _target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        Err(DecodeError::new(
            format!("{} providers do not serve embeddings", self.id().as_str()),
            Some("model"),
        ))
    }
    fn parse_embeddings(&self, _body: &[u8]) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
        Err(malformed("this provider does not serve embeddings"))
    }
    /// Most inputs one embeddings request to `model` may carry, where the provider has a limit
    /// (Titan embeds one text a call): the gateway sends a longer list in pieces.
    fn embedding_inputs_per_request(&self, _model: &str) -> Option<usize> {
        None
    }
    /// Input tokens of an embeddings answer, from its headers, for providers that put them
    /// there rather than in the body.
    fn embedding_tokens_in_headers(&self, _headers: &HeaderMap) -> Option<u64> {
        None
    }
    /// A request to count the prompt's input tokens, where the provider has such an endpoint
    /// (Anthropic's `count_tokens`); `None` where it has not.
    fn build_count_tokens(
        &self,
        _request: &ChatRequest,
        _target: &Target<'_>,
    ) -> Option<Result<http::Request<Vec<u8>>, DecodeError>> {
        None
    }
    fn parse_count_tokens(&self, _body: &[u8]) -> Result<u64, UpstreamErrorInfo> {
        Err(malformed("this provider does not count tokens"))
    }
}

/// Provider kinds as they appear in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible(OpenAiQuirks),
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

/// The one registry: provider kind → its dialect.
pub fn provider_dialect(kind: &ProviderKind) -> Box<dyn ProviderDialect> {
    match kind {
        ProviderKind::OpenAi => {
            Box::new(crate::openai::OpenAiProvider::new(OpenAiQuirks::default()))
        }
        ProviderKind::OpenAiCompatible(quirks) => {
            Box::new(crate::openai::OpenAiProvider::new(quirks.clone()))
        }
        ProviderKind::Azure => Box::new(crate::openai::OpenAiProvider::azure()),
        ProviderKind::Anthropic => Box::new(crate::anthropic::AnthropicProvider),
        ProviderKind::Gemini => Box::new(crate::gemini::GeminiProvider),
        ProviderKind::Bedrock => Box::new(crate::bedrock::BedrockProvider),
    }
}

/// The ingress dialect for a client-facing API.
pub fn ingress_dialect(id: DialectId) -> Option<Box<dyn IngressDialect>> {
    match id {
        DialectId::OpenAi => Some(Box::new(crate::openai::OpenAiIngress)),
        DialectId::OpenAiResponses => Some(Box::new(crate::openai::ResponsesIngress)),
        DialectId::OpenAiCompletions => Some(Box::new(crate::openai::CompletionsIngress)),
        DialectId::Anthropic => Some(Box::new(crate::anthropic::AnthropicIngress)),
        DialectId::Gemini | DialectId::Bedrock => None,
    }
}

/// Refuses an OpenAI client's deprecated `functions` / `function_call` for a provider of
/// another format: they reach OpenAI-style providers as written, but their answer's
/// `function_call` has no equivalent elsewhere, and a request sent without them would be
/// answered as if no function had been offered.
pub(crate) fn refuse_legacy_functions(request: &ChatRequest) -> Result<(), DecodeError> {
    let Some(fields) = request.extras.for_dialect(DialectId::OpenAi) else {
        return Ok(());
    };
    match ["functions", "function_call"]
        .into_iter()
        .find(|key| fields.contains_key(*key))
    {
        Some(key) => Err(DecodeError::new(
            format!(
                "'{key}' is deprecated and reaches OpenAI-style providers only; send the \
                 functions as 'tools' (and 'function_call' as 'tool_choice')"
            ),
            Some(key),
        )),
        None => Ok(()),
    }
}

/// Refuses, naming the part, a document a provider cannot take: `refusal` says why a form is
/// not taken (`None` when it is). A document is input for the model to read, so one outside a
/// user message is refused for every provider rather than left out.
pub(crate) fn check_documents(
    request: &ChatRequest,
    refusal: impl Fn(&DocumentSource) -> Option<String>,
) -> Result<(), DecodeError> {
    for (path, in_place, source) in request.documents() {
        let reason = if in_place {
            refusal(source)
        } else {
            Some("documents belong to user messages".to_owned())
        };
        if let Some(reason) = reason {
            return Err(DecodeError::new(reason, Some(&path)));
        }
    }
    Ok(())
}

/// The essence of a media type (`text/plain; charset=utf-8` → `text/plain`), lower-cased.
pub(crate) fn media_type_essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or(media_type)
        .trim()
        .to_ascii_lowercase()
}

/// A `MalformedResponse` error with a message.
pub fn malformed(message: impl Into<String>) -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::MalformedResponse,
        status: None,
        message: message.into(),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

/// A `StreamInterrupted` error with a message.
pub fn interrupted(message: impl Into<String>) -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::StreamInterrupted,
        status: None,
        message: message.into(),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

/// `retry-after-ms`, else `retry-after` in seconds or as an HTTP date (RFC 9110 allows both; a
/// date already past is no wait).
pub fn retry_after_secs(headers: &HeaderMap) -> Option<f64> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let number = |name| text(name).and_then(|v| v.parse::<f64>().ok());
    if let Some(ms) = number("retry-after-ms").and_then(|ms| sane_retry_after(ms / 1000.0)) {
        return Some(ms);
    }
    let value = text(http::header::RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<f64>() {
        return sane_retry_after(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    sane_retry_after(wait.as_secs_f64())
}

/// Longest wait an upstream may ask for; anything longer is read as this.
const MAX_RETRY_AFTER_SECS: f64 = 86_400.0;

/// A provider's requested wait as a delay every caller can use (`Duration::from_secs_f64`
/// panics on negative, infinite or huge values): `None` unless finite and non-negative, and
/// capped at a day.
pub(crate) fn sane_retry_after(secs: f64) -> Option<f64> {
    (secs.is_finite() && secs >= 0.0).then(|| secs.min(MAX_RETRY_AFTER_SECS))
}

//! The request pipeline every provider endpoint runs: credentials, fault selection, body
//! validation, fault outcomes, the simulated model, rendering, pacing and stats. Dialect
//! details (error shapes, body formats) are delegated to the dialect modules through [`Api`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::bedrock_invoke::{self, InvokeEmbedding};
use crate::config::SimConfig;
use crate::fault::{FaultSpec, FaultTable};
use crate::model::{Conversation, IdGen, Output, estimate_tokens, respond, scripted_reply};
use crate::server::ConnAbort;
use crate::stats::{Api, Endpoint, LogEntry, Stats};
use crate::stream::{Break, StreamBody, into_body};
use crate::{anthropic, bedrock, gemini, openai};

/// Everything a handler shares.
pub(crate) struct SimState {
    pub config: SimConfig,
    pub faults: FaultTable,
    pub stats: Stats,
    pub ids: IdGen,
    pub prompt_cache: crate::model::PromptCache,
}

/// A provider error before dialect rendering. `error_type` and `code` override what the
/// dialect derives from the status.
#[derive(Debug, Clone)]
pub(crate) struct SimError {
    pub status: u16,
    pub message: String,
    pub error_type: Option<&'static str>,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
}

impl SimError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            error_type: None,
            code: None,
            param: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub(crate) fn with_type(mut self, error_type: &'static str) -> Self {
        self.error_type = Some(error_type);
        self
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
}

/// The request-side facts the pipeline needs besides the body.
pub(crate) struct Incoming<'a> {
    pub api: Api,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// Azure deployment, Gemini model or Bedrock model id (decoded) from the path.
    pub path_model: Option<&'a str>,
    /// Gemini and Bedrock stream by method, not by a body field.
    pub stream_method: bool,
    /// Gemini `batchEmbedContents` rather than `embedContent`.
    pub batch: bool,
    pub abort: Option<ConnAbort>,
}

/// The value of `name` in a raw query string (no percent-decoding; the simulator's callers send
/// plain values).
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    header(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl Api {
    /// Credential and protocol-header checks, as each provider does them. Bedrock's SigV4 check
    /// reads the body's hash.
    fn check_request(
        self,
        config: &SimConfig,
        req: &Incoming<'_>,
        body: &[u8],
    ) -> Result<(), SimError> {
        let headers = req.headers;
        let key = match self {
            Api::OpenAi => {
                let key = bearer(headers);
                if config.require_auth && key.is_none() {
                    return Err(openai::missing_key());
                }
                key
            }
            Api::Azure => {
                // Only the classic deployment paths carry the version in the query.
                if req.path_model.is_some() && query_param(req.query, "api-version").is_none() {
                    return Err(openai::azure_resource_not_found());
                }
                let key = header(headers, "api-key").or_else(|| bearer(headers));
                if config.require_auth && key.is_none() {
                    return Err(openai::azure_access_denied());
                }
                key
            }
            Api::Anthropic => {
                let key = header(headers, "x-api-key");
                if config.require_auth && key.is_none() {
                    return Err(anthropic::missing_key());
                }
                if header(headers, "anthropic-version").is_none() {
                    return Err(anthropic::missing_version());
                }
                key
            }
            Api::Gemini => {
                let key = header(headers, "x-goog-api-key")
                    .or_else(|| query_param(req.query, "key").filter(|k| !k.is_empty()));
                if config.require_auth && key.is_none() {
                    return Err(gemini::missing_key());
                }
                key
            }
            // Bedrock refuses unknown credentials with its own error.
            Api::Bedrock => return bedrock::check_credentials(config, headers, body),
        };
        if config.require_auth
            && !config.api_keys.is_empty()
            && !key.is_some_and(|k| config.api_keys.iter().any(|a| a == k))
        {
            return Err(
                SimError::new(401, "Incorrect API key provided.").with_code("invalid_api_key")
            );
        }
        Ok(())
    }

    pub(crate) fn error_response(self, ids: &IdGen, err: &SimError) -> Response {
        let body = match self {
            Api::OpenAi => openai::error_body(err, false),
            Api::Azure => openai::error_body(err, true),
            Api::Anthropic => anthropic::error_body(ids, err),
            Api::Gemini => gemini::error_body(err),
            Api::Bedrock => bedrock::error_body(err),
        };
        let mut response = json_response(err.status, serde_json::to_vec(&body).unwrap_or_default());
        if self == Api::Bedrock
            && let Ok(value) = HeaderValue::from_str(&bedrock::error_type_header(err))
        {
            response.headers_mut().insert("x-amzn-errortype", value);
        }
        if let Some(secs) = err.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            if self == Api::Azure {
                response.headers_mut().insert(
                    "retry-after-ms",
                    HeaderValue::from(secs.saturating_mul(1000)),
                );
            }
        }
        response
    }

    fn fault_error(self, status: u16, model: &str, retry_after: Option<u64>) -> SimError {
        let mut err = match self {
            Api::OpenAi => openai::status_error(status, model, retry_after, false),
            Api::Azure => openai::status_error(status, model, retry_after, true),
            Api::Anthropic => anthropic::status_error(status),
            Api::Gemini => gemini::status_error(status, retry_after),
            Api::Bedrock => bedrock::status_error(status),
        };
        err.retry_after = retry_after;
        err
    }

    fn context_error(self, input_tokens: u64) -> SimError {
        match self {
            Api::OpenAi | Api::Azure => openai::context_error(input_tokens),
            Api::Anthropic => anthropic::context_error(input_tokens),
            Api::Gemini => gemini::context_error(input_tokens),
            Api::Bedrock => bedrock::context_error(),
        }
    }

    fn invalid_json(self, err: &serde_json::Error) -> SimError {
        match self {
            Api::OpenAi | Api::Azure => openai::invalid_json(err),
            Api::Anthropic => anthropic::invalid_json(err),
            Api::Gemini => gemini::invalid_json(err),
            Api::Bedrock => bedrock::invalid_json(err),
        }
    }

    fn parse_chat(self, body: Value, req: &Incoming<'_>) -> Result<Conversation, SimError> {
        match self {
            Api::OpenAi | Api::Azure => openai::parse_chat(body, req.path_model),
            Api::Anthropic => anthropic::parse_chat(body, false),
            Api::Gemini => gemini::parse_chat(body, req.path_model.unwrap_or_default(), false),
            Api::Bedrock => bedrock::parse_chat(body, req.path_model.unwrap_or_default()),
        }
        .map(|mut conv| {
            if matches!(self, Api::Gemini | Api::Bedrock) {
                conv.stream = req.stream_method;
            }
            conv
        })
    }

    /// A whole answer: `out`, and the further answers `more` when the request asked for several
    /// (only OpenAI's and Gemini's formats can).
    fn render(self, ids: &IdGen, conv: &Conversation, out: &Output, more: &[Output]) -> Value {
        match self {
            Api::OpenAi => openai::render(ids, conv, out, more, false),
            Api::Azure => openai::render(ids, conv, out, more, true),
            Api::Anthropic => anthropic::render(ids, conv, out),
            Api::Gemini => gemini::render(ids, conv, out, more),
            Api::Bedrock => bedrock::render(ids, conv, out),
        }
    }

    fn render_stream(self, ids: &IdGen, conv: &Conversation, out: &Output) -> StreamBody {
        match self {
            Api::OpenAi => openai::render_stream(ids, conv, out, false),
            Api::Azure => openai::render_stream(ids, conv, out, true),
            Api::Anthropic => anthropic::render_stream(ids, conv, out),
            Api::Gemini => gemini::render_stream(ids, conv, out),
            Api::Bedrock => bedrock::render_stream(ids, conv, out),
        }
    }

    fn stream_error_frame(self) -> Vec<u8> {
        match self {
            Api::OpenAi | Api::Azure => openai::stream_error_frame(),
            Api::Anthropic => anthropic::stream_error_frame(),
            Api::Gemini => gemini::stream_error_frame(),
            Api::Bedrock => bedrock::stream_error_frame(),
        }
    }

    /// What `malformed_after` sends: an SSE line that is not JSON, or for Bedrock an
    /// event-stream message whose payload is not.
    fn stream_malformed_frame(self) -> Vec<u8> {
        match self {
            Api::Bedrock => bedrock::malformed_frame(),
            _ => b"data: {not json\n\n".to_vec(),
        }
    }

    /// What `ping_after` repeats: Anthropic's `ping` event, an SSE comment for the other SSE
    /// dialects (as servers behind proxies send to keep a connection open); Bedrock's event
    /// stream has no keep-alive, so there the stream just falls silent.
    fn stream_ping_frame(self) -> Vec<u8> {
        match self {
            Api::Bedrock => Vec::new(),
            Api::Anthropic => b"event: ping\ndata: {\"type\": \"ping\"}\n\n".to_vec(),
            Api::OpenAi | Api::Azure | Api::Gemini => b": keep-alive\n\n".to_vec(),
        }
    }

    /// The streamed body's content type.
    fn stream_response(self, body: Body) -> Response {
        if self != Api::Bedrock {
            return sse_response(body);
        }
        let mut response = Response::new(body);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        response
    }
}

pub(crate) fn json_response(status: u16, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn pause(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

struct Pipeline<'a> {
    sim: &'a SimState,
    endpoint: Endpoint,
    entry: LogEntry,
    api: Api,
}

impl Pipeline<'_> {
    fn finish(mut self, status: u16, response: Response) -> Response {
        self.entry.status = status;
        self.sim.stats.record(self.api, self.endpoint, self.entry);
        response
    }

    fn fail(self, err: &SimError) -> Response {
        let response = self.api.error_response(&self.sim.ids, err);
        self.finish(err.status, response)
    }

    /// Applies hang, reset, status and context-length faults; `None` lets the request go on.
    async fn fault_outcome(
        self,
        fault: &FaultSpec,
        ttft_ms: u64,
        abort: Option<&ConnAbort>,
    ) -> Result<Self, Response> {
        if fault.hang || fault.reset {
            self.sim.stats.record(self.api, self.endpoint, self.entry);
            pause(ttft_ms).await;
            if fault.reset
                && let Some(abort) = abort
            {
                abort.trigger();
            }
            // The connection task drops the socket (reset) or the client gives up (hang).
            return Err(std::future::pending::<Response>().await);
        }
        if let Some(status) = fault.status {
            pause(ttft_ms).await;
            let err = self
                .api
                .fault_error(status, &self.entry.model, fault.retry_after);
            return Err(self.fail(&err));
        }
        if fault.context_length {
            pause(ttft_ms).await;
            let err = self.api.context_error(self.entry.input_tokens);
            return Err(self.fail(&err));
        }
        if fault.error_body {
            pause(ttft_ms).await;
            let err = self.api.fault_error(500, &self.entry.model, None);
            let mut response = self.api.error_response(&self.sim.ids, &err);
            *response.status_mut() = axum::http::StatusCode::OK;
            return Err(self.finish(200, response));
        }
        Ok(self)
    }
}

/// Looks up the fault for this request: the `x-sim-fault` header, else the first rule
/// matching the model.
fn select_fault(
    faults: &FaultTable,
    headers: &HeaderMap,
    model: &str,
) -> Result<Option<FaultSpec>, SimError> {
    match headers.get("x-sim-fault") {
        Some(value) => {
            let spec = value
                .to_str()
                .map_err(|_| SimError::bad_request("x-sim-fault is not valid UTF-8"))?;
            spec.parse()
                .map(Some)
                .map_err(|e| SimError::bad_request(format!("x-sim-fault: {e}")))
        }
        None => Ok(faults.take(model)),
    }
}

fn start<'a>(
    sim: &'a SimState,
    req: &Incoming<'_>,
    endpoint: Endpoint,
    parsed: Option<&Value>,
) -> Pipeline<'a> {
    let model = req
        .path_model
        .or_else(|| parsed.and_then(|v| v.get("model")).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    Pipeline {
        sim,
        endpoint,
        api: req.api,
        entry: LogEntry {
            model,
            provider_kind: req.api.as_str().to_owned(),
            endpoint: endpoint.as_str().to_owned(),
            stream: false,
            status: 0,
            input_tokens: 0,
            output_tokens: 0,
            fault: None,
            anthropic_version: header(req.headers, "anthropic-version").map(str::to_owned),
            anthropic_beta: header(req.headers, "anthropic-beta").map(str::to_owned),
        },
    }
}

/// Chat endpoints of every dialect.
pub(crate) async fn chat(sim: Arc<SimState>, req: Incoming<'_>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let mut p = start(&sim, &req, Endpoint::Chat, parsed.as_ref().ok());
    if let Err(err) = req.api.check_request(&sim.config, &req, &body) {
        return p.fail(&err);
    }
    let fault = match select_fault(&sim.faults, req.headers, &p.entry.model) {
        Ok(fault) => fault,
        Err(err) => return p.fail(&err),
    };
    p.entry.fault = fault.map(|f| f.to_string());
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let err = req.api.invalid_json(&e);
            return p.fail(&err);
        }
    };
    let mut conv = match req.api.parse_chat(body, &req) {
        Ok(conv) => conv,
        Err(err) => return p.fail(&err),
    };
    conv.cache = sim.prompt_cache.apply(conv.cache_mark);
    p.entry.stream = conv.stream;
    p.entry.input_tokens = conv.input_tokens();
    let ttft_ms = fault.and_then(|f| f.ttft_ms).unwrap_or(sim.config.ttft_ms);
    if let Some(fault) = &fault {
        p = match p.fault_outcome(fault, ttft_ms, req.abort.as_ref()).await {
            Ok(p) => p,
            Err(response) => return response,
        };
    }
    let scripted = scripted_reply(&sim.config.replies, &conv);
    let out = respond(&conv, sim.config.reply_words, scripted.as_deref(), 0);
    let more: Vec<Output> = (1..conv.choices.max(1) as usize)
        .map(|variant| respond(&conv, sim.config.reply_words, scripted.as_deref(), variant))
        .collect();
    let answer_ms = sim.config.token_ms.saturating_mul(out.tokens());
    conv.latency_ms = ttft_ms.saturating_add(answer_ms);
    if !conv.stream {
        let body = req.api.render(&sim.ids, &conv, &out, &more);
        let tokens = out.tokens() + more.iter().map(Output::tokens).sum::<u64>();
        p.entry.output_tokens = tokens;
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let response = if fault.is_some_and(|f| f.stall_body) {
            let mut response = json_response(200, Vec::new());
            *response.body_mut() = crate::stream::stalled_body(body);
            response
        } else {
            json_response(200, body)
        };
        let response = p.finish(200, response);
        pause(ttft_ms.saturating_add(answer_ms)).await;
        return response;
    }
    let sse = req.api.render_stream(&sim.ids, &conv, &out);
    let brk = fault.and_then(|f| f.stream).map(|fault| Break {
        fault,
        error_frame: req.api.stream_error_frame(),
        malformed_frame: req.api.stream_malformed_frame(),
        ping_frame: req.api.stream_ping_frame(),
    });
    let (body, tokens) = into_body(sse, sim.config.token_ms, brk);
    p.entry.output_tokens = tokens;
    let response = p.finish(200, req.api.stream_response(body));
    pause(ttft_ms).await;
    response
}

/// One input of an embeddings request: the text hashed into the vector, and its token count.
pub(crate) struct EmbedInput {
    pub text: String,
    pub tokens: u64,
}

pub(crate) struct EmbedRequest {
    pub model: String,
    pub inputs: Vec<EmbedInput>,
    pub dimensions: Option<usize>,
    /// OpenAI `encoding_format: base64`.
    pub base64: bool,
    /// Bedrock InvokeModel: the model's body shape and the asked embedding types.
    pub bedrock: Option<InvokeEmbedding>,
}

impl EmbedInput {
    pub(crate) fn text(text: String) -> Self {
        let tokens = estimate_tokens(text.chars().count());
        Self { text, tokens }
    }
}

/// Embeddings endpoints (OpenAI, Azure, Gemini, Bedrock InvokeModel for embedding models).
pub(crate) async fn embeddings(sim: Arc<SimState>, req: Incoming<'_>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let mut p = start(&sim, &req, Endpoint::Embeddings, parsed.as_ref().ok());
    if let Err(err) = req.api.check_request(&sim.config, &req, &body) {
        return p.fail(&err);
    }
    let fault = match select_fault(&sim.faults, req.headers, &p.entry.model) {
        Ok(fault) => fault,
        Err(err) => return p.fail(&err),
    };
    p.entry.fault = fault.map(|f| f.to_string());
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let err = req.api.invalid_json(&e);
            return p.fail(&err);
        }
    };
    let parsed = match req.api {
        Api::Gemini => {
            gemini::parse_embeddings(body, req.path_model.unwrap_or_default(), req.batch)
        }
        Api::Bedrock => bedrock_invoke::parse(body, req.path_model.unwrap_or_default()),
        _ => openai::parse_embeddings(body, req.path_model),
    };
    let request = match parsed {
        Ok(request) => request,
        Err(err) => return p.fail(&err),
    };
    let input_tokens = request.inputs.iter().map(|i| i.tokens).sum();
    p.entry.input_tokens = input_tokens;
    let ttft_ms = fault.and_then(|f| f.ttft_ms).unwrap_or(sim.config.ttft_ms);
    if let Some(fault) = &fault {
        p = match p.fault_outcome(fault, ttft_ms, req.abort.as_ref()).await {
            Ok(p) => p,
            Err(response) => return response,
        };
    }
    let dimensions = request
        .dimensions
        .unwrap_or(sim.config.embedding_dimensions as usize);
    let body = match (&request.bedrock, req.api) {
        (Some(invoke), _) => bedrock_invoke::render(&sim.ids, invoke, &request.inputs),
        (None, Api::Gemini) => gemini::render_embeddings(&request, dimensions, req.batch),
        (None, _) => openai::render_embeddings(&request, dimensions),
    };
    let mut response = json_response(200, serde_json::to_vec(&body).unwrap_or_default());
    if request.bedrock.is_some() {
        bedrock_invoke::insert_token_headers(response.headers_mut(), input_tokens);
    }
    let response = p.finish(200, response);
    pause(ttft_ms).await;
    response
}

/// Anthropic `count_tokens` and Gemini `countTokens`.
pub(crate) async fn count_tokens(sim: Arc<SimState>, req: Incoming<'_>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let p = start(&sim, &req, Endpoint::CountTokens, parsed.as_ref().ok());
    if let Err(err) = req.api.check_request(&sim.config, &req, &body) {
        return p.fail(&err);
    }
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let err = req.api.invalid_json(&e);
            return p.fail(&err);
        }
    };
    let conv = match req.api {
        Api::Gemini => gemini::parse_count_tokens(body, req.path_model.unwrap_or_default()),
        Api::Bedrock => bedrock::parse_count_tokens(body, req.path_model.unwrap_or_default()),
        _ => anthropic::parse_chat(body, true),
    };
    let conv = match conv {
        Ok(conv) => conv,
        Err(err) => return p.fail(&err),
    };
    let tokens = conv.input_tokens();
    let body = match req.api {
        Api::Gemini => gemini::render_count(tokens),
        Api::Bedrock => bedrock::render_count(tokens),
        _ => serde_json::json!({ "input_tokens": tokens }),
    };
    p.finish(
        200,
        json_response(200, serde_json::to_vec(&body).unwrap_or_default()),
    )
}

/// `GET /v1/models`, in Anthropic's shape when the request carries `anthropic-version`.
pub(crate) async fn models(sim: Arc<SimState>, req: Incoming<'_>) -> Response {
    let p = start(&sim, &req, Endpoint::Models, None);
    if let Err(err) = req.api.check_request(&sim.config, &req, &[]) {
        return p.fail(&err);
    }
    let body = match req.api {
        Api::Anthropic => anthropic::render_models(&sim.config.models),
        _ => openai::render_models(&sim.config.models),
    };
    p.finish(
        200,
        json_response(200, serde_json::to_vec(&body).unwrap_or_default()),
    )
}

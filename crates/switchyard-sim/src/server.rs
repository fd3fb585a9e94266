//! The server: routes, the `/_sim` control endpoints, and an accept loop of its own. Each
//! connection gets an abort handle in the request extensions so a `reset` fault can make the
//! connection task drop the socket with `SO_LINGER` 0, which sends a TCP RST.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming as IncomingBody;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::bedrock_invoke::EmbeddingModel;
use crate::config::{FaultRule, SimConfig};
use crate::fault::FaultTable;
use crate::handler::{self, Incoming, SimError, SimState, json_response, query_param};
use crate::model::IdGen;
use crate::stats::{Api, Stats, StatsSnapshot};

/// Largest request body accepted (large prompts and inline images included).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Lets a handler ask its connection task to reset the TCP connection.
#[derive(Clone)]
pub(crate) struct ConnAbort(Arc<Notify>);

impl ConnAbort {
    pub(crate) fn trigger(&self) {
        self.0.notify_one();
    }
}

/// A running simulator. Dropping it stops the server too; [`SimServer::shutdown`] also waits.
pub struct SimServer {
    /// The bound address (the real port when started on port 0).
    pub addr: SocketAddr,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `addr` (port 0 picks a free port) and serves until shut down.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> io::Result<SimServer> {
        let faults = FaultTable::default();
        faults.add(config.faults.iter().cloned());
        let state = Arc::new(SimState {
            stats: Stats::new(config.log_capacity),
            faults,
            ids: IdGen::default(),
            prompt_cache: Default::default(),
            config,
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, router(state.clone()), stopped));
        Ok(SimServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes every open connection and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Adds fault rules after the configured ones (first match wins).
    pub fn add_faults(&self, rules: impl IntoIterator<Item = FaultRule>) {
        self.state.faults.add(rules);
    }

    /// Removes every fault rule, the configured ones included.
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// The fault rules with their remaining counts.
    pub fn faults(&self) -> Vec<FaultRule> {
        self.state.faults.list()
    }

    /// What reached the simulator so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.state.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.state.stats.reset();
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // Dropping the sender stops the accept loop, which aborts the connections.
        self.stop.take();
    }
}

async fn accept_loop(listener: TcpListener, app: Router, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(tcp, app.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(tcp: TcpStream, app: Router) {
    let _ = tcp.set_nodelay(true);
    let abort = Arc::new(Notify::new());
    let handle = ConnAbort(abort.clone());
    let service = hyper::service::service_fn(move |mut req: Request<IncomingBody>| {
        req.extensions_mut().insert(handle.clone());
        app.clone().oneshot(req)
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tcp), service);
    tokio::select! {
        _ = &mut conn => {}
        _ = abort.notified() => {
            let parts = conn.into_parts();
            // Zero linger turns the close into a reset.
            let _ = parts.io.inner().set_zero_linger();
        }
    }
}

type Sim = State<Arc<SimState>>;

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/models", get(list_models))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure_embeddings),
        )
        .route("/openai/v1/chat/completions", post(azure_v1_chat))
        .route("/openai/v1/embeddings", post(azure_v1_embeddings))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/v1beta/models/{model_and_method}", post(gemini))
        .route("/model/{model_id}/converse", post(bedrock_converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(bedrock_converse_stream),
        )
        .route("/model/{model_id}/count-tokens", post(bedrock_count_tokens))
        .route("/model/{model_id}/invoke", post(bedrock_invoke))
        .route(
            "/model/{model_id}/{operation}",
            post(bedrock_unknown_operation),
        )
        .route(
            "/_sim/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_sim/stats", get(get_stats).delete(reset_stats))
        .route("/_sim/health", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

type Abort = Option<Extension<ConnAbort>>;

fn incoming<'a>(
    api: Api,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    path_model: Option<&'a str>,
    abort: Abort,
) -> Incoming<'a> {
    Incoming {
        api,
        headers,
        query,
        path_model,
        stream_method: false,
        batch: false,
        abort: abort.map(|Extension(a)| a),
    }
}

async fn openai_chat(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(Api::OpenAi, &headers, query.as_deref(), None, abort);
    handler::chat(sim, req, body).await
}

async fn openai_embeddings(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(Api::OpenAi, &headers, query.as_deref(), None, abort);
    handler::embeddings(sim, req, body).await
}

async fn list_models(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let api = if headers.contains_key("anthropic-version") {
        Api::Anthropic
    } else {
        Api::OpenAi
    };
    let req = incoming(api, &headers, query.as_deref(), None, abort);
    handler::models(sim, req).await
}

async fn azure_chat(
    State(sim): Sim,
    abort: Abort,
    Path(deployment): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(
        Api::Azure,
        &headers,
        query.as_deref(),
        Some(&deployment),
        abort,
    );
    handler::chat(sim, req, body).await
}

async fn azure_embeddings(
    State(sim): Sim,
    abort: Abort,
    Path(deployment): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(
        Api::Azure,
        &headers,
        query.as_deref(),
        Some(&deployment),
        abort,
    );
    handler::embeddings(sim, req, body).await
}

async fn azure_v1_chat(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(Api::Azure, &headers, query.as_deref(), None, abort);
    handler::chat(sim, req, body).await
}

async fn azure_v1_embeddings(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(Api::Azure, &headers, query.as_deref(), None, abort);
    handler::embeddings(sim, req, body).await
}

async fn anthropic_messages(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(Api::Anthropic, &headers, query.as_deref(), None, abort);
    handler::chat(sim, req, body).await
}

async fn anthropic_count_tokens(
    State(sim): Sim,
    abort: Abort,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(Api::Anthropic, &headers, query.as_deref(), None, abort);
    handler::count_tokens(sim, req, body).await
}

/// `/v1beta/models/{model}:{method}`: the segment is split at its last `:`.
async fn gemini(
    State(sim): Sim,
    abort: Abort,
    Path(model_and_method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, method)) = model_and_method.rsplit_once(':') else {
        return gemini_not_found(&sim, &model_and_method);
    };
    let mut req = incoming(Api::Gemini, &headers, query.as_deref(), Some(model), abort);
    match method {
        "generateContent" => handler::chat(sim, req, body).await,
        "streamGenerateContent" => {
            if query_param(req.query, "alt") != Some("sse") {
                let err = SimError::bad_request(
                    "The simulator streams Gemini responses as server-sent events only; add \
                     `alt=sse` to the query.",
                );
                return Api::Gemini.error_response(&sim.ids, &err);
            }
            req.stream_method = true;
            handler::chat(sim, req, body).await
        }
        "embedContent" => handler::embeddings(sim, req, body).await,
        "batchEmbedContents" => {
            req.batch = true;
            handler::embeddings(sim, req, body).await
        }
        "countTokens" => handler::count_tokens(sim, req, body).await,
        _ => gemini_not_found(&sim, &model_and_method),
    }
}

/// `/model/{modelId}/converse`; the id arrives percent-encoded (`:` as `%3A`, an ARN's `/` as
/// `%2F`) and is matched and reported decoded.
async fn bedrock_converse(
    State(sim): Sim,
    abort: Abort,
    Path(model_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(
        Api::Bedrock,
        &headers,
        query.as_deref(),
        Some(&model_id),
        abort,
    );
    handler::chat(sim, req, body).await
}

async fn bedrock_converse_stream(
    State(sim): Sim,
    abort: Abort,
    Path(model_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut req = incoming(
        Api::Bedrock,
        &headers,
        query.as_deref(),
        Some(&model_id),
        abort,
    );
    req.stream_method = true;
    handler::chat(sim, req, body).await
}

async fn bedrock_count_tokens(
    State(sim): Sim,
    abort: Abort,
    Path(model_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = incoming(
        Api::Bedrock,
        &headers,
        query.as_deref(),
        Some(&model_id),
        abort,
    );
    handler::count_tokens(sim, req, body).await
}

/// InvokeModel, served for the embedding models whose bodies the simulator speaks. Any other
/// model's `invoke` is an operation the simulator does not serve: a 404 like any other, so a
/// test sees the simulator's limit rather than a request that looks malformed.
async fn bedrock_invoke(
    State(sim): Sim,
    abort: Abort,
    Path(model_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if EmbeddingModel::of(&model_id).is_none() {
        return bedrock_unknown_operation_response(&sim, &format!("`invoke` for {model_id}"));
    }
    let req = incoming(
        Api::Bedrock,
        &headers,
        query.as_deref(),
        Some(&model_id),
        abort,
    );
    handler::embeddings(sim, req, body).await
}

/// Bedrock operations the simulator does not serve (`invoke-with-response-stream`, ...),
/// answered in Bedrock's shape.
async fn bedrock_unknown_operation(
    State(sim): Sim,
    Path((_, operation)): Path<(String, String)>,
) -> Response {
    bedrock_unknown_operation_response(&sim, &format!("`{operation}`"))
}

fn bedrock_unknown_operation_response(sim: &SimState, refused: &str) -> Response {
    let err = SimError::new(
        404,
        format!(
            "The simulator serves the Bedrock operations `converse`, `converse-stream` and \
             `count-tokens`, and `invoke` for the embedding models Amazon Titan Text Embeddings \
             (`amazon.titan-embed-text-v2…`, `amazon.titan-embed-text-v1…`) and Cohere Embed \
             (`cohere.embed-…`); not {refused}."
        ),
    )
    .with_type("UnknownOperationException");
    Api::Bedrock.error_response(&sim.ids, &err)
}

fn gemini_not_found(sim: &SimState, path: &str) -> Response {
    let err = SimError::new(
        404,
        format!("The requested method models/{path} was not found."),
    );
    Api::Gemini.error_response(&sim.ids, &err)
}

async fn not_found() -> Response {
    let body = json!({
        "error": {
            "message": "The simulator does not serve this path.",
            "type": "invalid_request_error",
            "param": null,
            "code": "unknown_url",
        }
    });
    json_response(404, body.to_string().into_bytes())
}

async fn list_faults(State(sim): Sim) -> Response {
    axum::Json(sim.faults.list()).into_response()
}

/// `POST /_sim/faults`: a rule or a list of rules, added after the existing ones.
async fn add_faults(State(sim): Sim, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).and_then(|v| {
        if v.is_array() {
            serde_json::from_value::<Vec<FaultRule>>(v)
        } else {
            serde_json::from_value::<FaultRule>(v).map(|rule| vec![rule])
        }
    });
    match parsed {
        Ok(rules) => {
            sim.faults.add(rules);
            axum::Json(sim.faults.list()).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": format!("invalid fault rules: {e}") })),
        )
            .into_response(),
    }
}

async fn clear_faults(State(sim): Sim) -> StatusCode {
    sim.faults.clear();
    StatusCode::NO_CONTENT
}

async fn get_stats(State(sim): Sim) -> Response {
    axum::Json(sim.stats.snapshot()).into_response()
}

async fn reset_stats(State(sim): Sim) -> StatusCode {
    sim.stats.reset();
    StatusCode::NO_CONTENT
}

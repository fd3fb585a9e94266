//! HTTP: the axum routers for the OpenAI- and Anthropic-compatible APIs and health checks, body
//! limits, and the one place where a [`GatewayError`] becomes an HTTP response in the ingress
//! dialect's error shape. No business rules live here.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard_protocol::anthropic::AnthropicIngress;
use switchyard_protocol::dialect::{DialectId, IngressDialect};
use switchyard_protocol::openai::kept_responses;
use switchyard_protocol::openai::{CompletionsIngress, OpenAiIngress, ResponsesIngress};
use tokio::net::TcpListener;
use tower::Layer;

mod admin;
mod credentials;
mod dashboard;
mod evaluation;
mod experiments;
mod governance;
mod models;
mod observability;

use crate::app::App;
use crate::config::CorsOrigins;
use crate::error::GatewayError;
use crate::pipeline::{self, Reply, ReplyBody, RequestContext, settle, tracker};
use crate::routing::now_ms;

static OPENAI: OpenAiIngress = OpenAiIngress;
static ANTHROPIC: AnthropicIngress = AnthropicIngress;
static RESPONSES: ResponsesIngress = ResponsesIngress;
static COMPLETIONS: CompletionsIngress = CompletionsIngress;

fn ingress(dialect: DialectId) -> &'static dyn IngressDialect {
    match dialect {
        DialectId::Anthropic => &ANTHROPIC,
        DialectId::OpenAiResponses => &RESPONSES,
        DialectId::OpenAiCompletions => &COMPLETIONS,
        _ => &OPENAI,
    }
}

pub fn router(app: Arc<App>) -> Router {
    let admin = dashboard::routes(credentials::routes(governance::routes(Router::new())));
    evaluation::routes(experiments::routes(admin))
        .route("/v1/chat/completions", post(openai_chat))
        .route("/chat/completions", post(openai_chat))
        .route("/v1/responses", post(openai_responses))
        .route("/responses", post(openai_responses))
        .route("/v1/responses/input_tokens", post(openai_input_tokens))
        .route("/v1/responses/{*rest}", any(kept_response))
        .route("/responses/input_tokens", post(openai_input_tokens))
        .route("/responses/{*rest}", any(kept_response))
        .route("/v1/completions", post(openai_completions))
        .route("/completions", post(openai_completions))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embeddings", post(openai_embeddings))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/models/{id}", get(models::get))
        .route("/v1/messages", post(anthropic_messages))
        .route("/messages", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/messages/count_tokens", post(anthropic_count_tokens))
        .route("/admin/deployments", get(admin::deployments))
        .route("/admin/requests", get(admin::requests))
        .route("/admin/requests/{id}", get(admin::request))
        .route("/admin/spend", get(admin::spend))
        .route("/admin/alerts", get(observability::alerts))
        .route("/metrics", get(observability::metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(app)
}

/// An extractor's refusal (a query string or a body it cannot read, a body over its limit)
/// in the API's error shape: axum words them as plain text.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() && plain) {
        return response;
    }
    let said = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let ctx = RequestContext::new(DialectId::OpenAi);
    let error = GatewayError::InvalidRequest(switchyard_protocol::error::DecodeError::new(
        if said.is_empty() {
            format!("The request could not be read (HTTP {}).", status.as_u16())
        } else {
            said
        },
        None,
    ));
    let mut response = error_response(DialectId::OpenAi, &error, &ctx.id);
    *response.status_mut() = status;
    response
}

/// Serves until `shutdown` resolves, then lets in-flight requests (streams included) finish for
/// up to `grace`.
///
/// Requests are served by `server.workers` threads, each with a single-threaded event loop and
/// its own upstream connection pools; this task accepts connections and hands each to the next
/// worker, which serves it from start to finish. A request's work (client socket, pipeline,
/// provider socket) thus stays on one thread: no work stealing, no wake-ups across threads.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = app.config.server.shutdown_grace;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handoffs = Vec::new();
    let mut finished = Vec::new();
    for slot in 1..=app.config.server.workers.max(1) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let app = app.clone();
        let stop = stop_rx.clone();
        std::thread::Builder::new()
            .name(format!("switchyard-worker-{slot}"))
            .spawn(move || {
                crate::upstream::set_worker_slot(slot);
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| rt.block_on(worker(app, rx, stop, grace)));
                let _ = done_tx.send(result);
            })?;
        handoffs.push(tx);
        finished.push(done_rx);
    }
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small writes (stream events) leave at once.
                    let _ = stream.set_nodelay(true);
                    match stream.into_std() {
                        Ok(stream) => {
                            let _ = handoffs[next % handoffs.len()].send(stream);
                            next = next.wrapping_add(1);
                        }
                        Err(e) => tracing::debug!(error = %e, "cannot hand over a connection"),
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    drop(handoffs);
    let mut result = Ok(());
    for done in finished {
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => {
                result = Err(std::io::Error::other(
                    "a serving worker stopped unexpectedly",
                ))
            }
        }
    }
    result
}

/// One worker's event loop: serves the connections it is handed, over HTTP/1.1, until told to
/// stop, then lets its in-flight requests finish for up to `grace`.
async fn worker(
    app: Arc<App>,
    mut connections: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let idle_timeout = app.config.server.idle_timeout;
    // One router for all connections; each gets a clone, which is a reference count (a router
    // built per connection costs its route tables, about 16 KiB, for the connection's life).
    let router = router(app.clone());
    let cors = cors_layer(&app.config.server.cors).map(|layer| {
        layer.layer(Dispatch {
            app: app.clone(),
            router: router.clone(),
        })
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's header read timeout runs whenever a connection waits for a request's headers
    // (from the connect, and again after each response) until they are complete: one bound for
    // idle keep-alive connections and for clients that send their headers slowly.
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let open = hyper_util::server::graceful::GracefulShutdown::new();
    let heartbeat = tokio::spawn(heartbeat());
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            next = connections.recv() => {
                // The acceptor has stopped: no more connections come.
                let Some(stream) = next else { break };
                let stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot take over a connection");
                        continue;
                    }
                };
                let service = Service {
                    dispatch: Dispatch {
                        app: app.clone(),
                        router: router.clone(),
                    },
                    cors: cors.clone(),
                };
                let connection = open.watch(
                    http.serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
                tokio::spawn(async move {
                    // A client that hangs up or stays idle too long ends its connection; the
                    // requests on it were recorded by the pipeline, nothing is left to report.
                    let _ = connection.await;
                });
            }
        }
    }
    // Idle connections close now; those with a request in flight close once it is answered.
    tokio::select! {
        () = open.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            GRACE_OVER.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing the remaining connections");
        }
    }
    heartbeat.abort();
    Ok(())
}

/// Set when the shutdown's grace period runs out, just before the remaining connections close:
/// the requests they cut short are recorded as the gateway's doing, not their clients'.
static GRACE_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a request ending now without its answer was cut short by the gateway's shutdown.
pub fn shutdown_cut_short() -> bool {
    GRACE_OVER.load(std::sync::atomic::Ordering::SeqCst)
}

/// What a worker serves each connection with: requests from a browser page (with an `Origin`
/// header) to the API through CORS, the others straight to [`Dispatch`]. Clients that are not
/// browsers (the SDKs, curl) send no `Origin`, so CORS costs them one header lookup.
#[derive(Clone)]
struct Service {
    dispatch: Dispatch,
    cors: Option<tower_http::cors::Cors<Dispatch>>,
}

/// The inference endpoints straight to their handlers, everything else through the router
/// (on the background runtime but for health checks: [`answered_on_serving_thread`]).
///
/// The router's way to a handler cost a request some 4,600 instructions, about a twentieth of
/// a plain chat request's: the route match, the extractors (the `HeaderMap` extractor clones
/// every header), and the futures wrapped around the handler's. The hot endpoints take none of its
/// features, so they skip it; `router` keeps them too, and a request that is not a POST to one
/// of them (a GET to `/v1/chat/completions` included) gets the router's answer.
#[derive(Clone)]
struct Dispatch {
    app: Arc<App>,
    router: Router,
}

/// The endpoints served without the router, by their exact path.
#[derive(Clone, Copy)]
enum Endpoint {
    Chat(DialectId),
    Embeddings,
}

impl Endpoint {
    fn of(method: &http::Method, path: &str) -> Option<Endpoint> {
        if method != http::Method::POST {
            return None;
        }
        match path {
            "/v1/chat/completions" | "/chat/completions" => Some(Endpoint::Chat(DialectId::OpenAi)),
            "/v1/messages" | "/messages" => Some(Endpoint::Chat(DialectId::Anthropic)),
            "/v1/responses" | "/responses" => Some(Endpoint::Chat(DialectId::OpenAiResponses)),
            "/v1/embeddings" | "/embeddings" => Some(Endpoint::Embeddings),
            "/v1/completions" | "/completions" => {
                Some(Endpoint::Chat(DialectId::OpenAiCompletions))
            }
            _ => None,
        }
    }
}

type ServiceFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

impl Dispatch {
    fn serve(&self, request: http::Request<hyper::body::Incoming>) -> ServiceFuture {
        let Some(endpoint) = Endpoint::of(request.method(), request.uri().path()) else {
            let router = self.router.clone();
            let here = answered_on_serving_thread(request.uri().path());
            let answer = tower::ServiceExt::oneshot(router, request);
            if here {
                return Box::pin(answer);
            }
            let background = self.app.background.spawn(answer);
            return Box::pin(async move {
                match background.await {
                    Ok(answered) => answered,
                    Err(e) => {
                        tracing::error!(error = %e, "a background request task failed");
                        Ok(error_response(
                            DialectId::OpenAi,
                            &GatewayError::Internal("the request's task failed".into()),
                            &RequestContext::new(DialectId::OpenAi).id,
                        ))
                    }
                }
            });
        };
        let app = self.app.clone();
        let (parts, body) = request.into_parts();
        let body = Body::new(body);
        Box::pin(async move {
            Ok(match endpoint {
                Endpoint::Chat(dialect) => chat(app, dialect, parts.headers, body).await,
                Endpoint::Embeddings => embeddings(app, parts.headers, body).await,
            })
        })
    }
}

/// Whether the router's answer to `path` is worked out on the serving thread. Only health
/// checks are: a load balancer's probe must not wait behind background work, or a busy
/// gateway would be taken for a dead one. The admin API, the metrics, the dashboard and the
/// router's other routes run on the background runtime, so a metrics scrape or a dashboard
/// reading records never holds a serving thread that inference requests wait for.
fn answered_on_serving_thread(path: &str) -> bool {
    path.starts_with("/health/")
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Dispatch {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = ServiceFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> ServiceFuture {
        self.serve(request)
    }
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Service {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> ServiceFuture {
        REQUESTS_ON_THIS_THREAD.set(REQUESTS_ON_THIS_THREAD.get().wrapping_add(1));
        if let Some(cors) = &self.cors
            && request.headers().contains_key(http::header::ORIGIN)
            && browser_api(request.uri().path())
        {
            return Box::pin(tower::ServiceExt::oneshot(cors.clone(), request));
        }
        self.dispatch.serve(request)
    }
}

/// The API a page of another origin may call: the inference API, which takes a key. The
/// metrics and health endpoints (read without one), the admin API and the dashboard answer
/// their own origin only, so a page elsewhere cannot read them through a browser that can
/// reach the gateway.
fn browser_api(path: &str) -> bool {
    path.starts_with("/v1/")
        || [
            "/chat/",
            "/completions",
            "/responses",
            "/embeddings",
            "/models",
            "/messages",
        ]
        .iter()
        .any(|api| path.starts_with(api))
}

/// CORS as `server.cors_origins` asks: the allowed origin answered, a preflight given back
/// the method and headers it asks for (a browser client's own, such as the SDKs'
/// `x-stainless-*` or `anthropic-version`, and `Authorization`, which a wildcard would not
/// cover), every response header readable by the page, and the preflight kept for an hour.
/// No credentials mode: the gateway's keys are sent as headers, never as cookies.
fn cors_layer(origins: &CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};
    let origin = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::any())
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

thread_local! {
    /// Requests a serving thread has taken, for its heartbeat to tell busy from idle.
    static REQUESTS_ON_THIS_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A timer that fires every second on the worker's event loop; on a tick after a second with
/// no new request, the thread hands its free memory back to the system
/// ([`crate::allocator::Collector`]), which it would otherwise hold until requests resume.
///
/// tokio's timer wakes its event loop through an eventfd (a write, then one more `epoll_wait`)
/// whenever a timer is armed to fire before the loop's planned wake-up, even from the loop's
/// own thread. Every request arms such timers: the first-byte timeout before it goes upstream
/// and, once answered, the connection's next header (idle) timeout, which without this would
/// come before the first-byte timeout the loop last planned for. With a wake-up planned at most
/// a second ahead, timers seconds away never come first; the price is one wake-up a second.
async fn heartbeat() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collector = crate::allocator::Collector::new();
    let mut requests = REQUESTS_ON_THIS_THREAD.get();
    loop {
        tick.tick().await;
        let now = REQUESTS_ON_THIS_THREAD.get();
        collector.tick(now != requests);
        requests = now;
    }
}

/// Most we read and discard of an oversized body so the client gets a clean 413 instead of a
/// connection reset mid-upload.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = body;
    // A body that arrives in one piece (most do) is kept as hyper handed it over, without a
    // copy; only a second piece makes a buffer.
    let mut first: Option<Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(GatewayError::InvalidRequest(
                switchyard_protocol::error::DecodeError::new(
                    "the request body could not be read",
                    None,
                ),
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        seen += data.len();
        if seen <= limit {
            if first.is_none() && buf.is_empty() {
                first = Some(data);
            } else {
                if let Some(first) = first.take() {
                    buf.reserve(declared.unwrap_or(0).min(limit).max(seen));
                    buf.extend_from_slice(&first);
                }
                buf.extend_from_slice(&data);
            }
        } else if seen > limit + MAX_DRAIN_BYTES {
            break;
        }
    }
    if seen > limit {
        return Err(GatewayError::RequestTooLarge(limit));
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

fn error_response(dialect: DialectId, error: &GatewayError, request_id: &str) -> Response {
    let client = error.to_client();
    let body = match error {
        // The thread helpers of Anthropic's SDKs act on `error.details.error_code`.
        GatewayError::Thread { .. } => {
            let mut body: serde_json::Value =
                serde_json::from_slice(&ingress(dialect).encode_error(&client)).unwrap_or_default();
            body["error"]["details"] = serde_json::json!({ "error_code": client.code });
            serde_json::to_vec(&body).unwrap_or_default()
        }
        _ => ingress(dialect).encode_error(&client),
    };
    // Anthropic's error bodies name the request (`request_id`), which its SDKs show.
    let body = if dialect == DialectId::Anthropic {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(mut object)) => {
                object.insert("request_id".into(), request_id.into());
                serde_json::to_vec(&object).unwrap_or(body)
            }
            _ => body,
        }
    } else {
        body
    };
    let mut response = Response::new(Body::from(body));
    // Anthropic's API says it is overloaded with 529, which its clients know.
    let status = if client.code == "upstream_overloaded" && dialect == DialectId::Anthropic {
        529
    } else {
        client.status
    };
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        if dialect == DialectId::Anthropic {
            h.insert(REQUEST_ID, v.clone());
        }
        h.insert(X_REQUEST_ID, v);
    }
    for (name, value) in error.rate_limit_headers() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    if let Some(secs) = error.retry_after_secs() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if client.status == 401
        && matches!(
            dialect,
            DialectId::OpenAi | DialectId::OpenAiResponses | DialectId::OpenAiCompletions
        )
    {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

// Header names made once: inserting a name given as text copies it into the map every time.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_SWITCHYARD_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// An error response with the route its request took to fail, when it reached a provider.
fn with_route(mut response: Response, route: Option<String>) -> Response {
    if let Some(v) = route.and_then(|r| HeaderValue::from_str(&r).ok()) {
        response.headers_mut().insert(X_SWITCHYARD_ROUTE, v);
    }
    response
}

fn reply_response(reply: Reply, request_id: &str) -> Response {
    let (body, content_type) = match reply.body {
        ReplyBody::Json(bytes) => (Body::from(bytes), "application/json"),
        ReplyBody::Sse(stream) => (Body::from_stream(stream), "text/event-stream"),
    };
    let streaming = content_type == "text/event-stream";
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if streaming {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&reply.route) {
        h.insert(X_SWITCHYARD_ROUTE, v);
    }
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    response
}

/// The W3C `tracestate` header, carried on by the request's spans; several of them are one,
/// joined in order (as Trace Context says to combine them).
pub(crate) fn tracestate(headers: &HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
    let mut values = headers
        .get_all(&TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    match values.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first},{second}");
            for more in values {
                joined.push(',');
                joined.push_str(more);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

/// The W3C `traceparent` header, read so the request's spans join the caller's trace.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<&str> {
    static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok())
}

async fn chat(app: Arc<App>, dialect: DialectId, headers: HeaderMap, body: Body) -> Response {
    let ctx = RequestContext::new(dialect);
    let mut tracker = tracker(&app, &ctx, "chat");
    tracker.set_trace(traceparent(&headers), tracestate(&headers).as_deref());
    let limit = app.config.server.max_body_bytes;
    let result = match read_body(&headers, body, limit).await {
        Ok(bytes) => {
            pipeline::chat(app, &ctx, ingress(dialect), &headers, bytes, &mut tracker).await
        }
        Err(e) => Err(e),
    };
    let failed_route = tracker.take_failed_route();
    settle(tracker, &result);
    let mut response = match result {
        Ok(reply) => reply_response(reply, &ctx.id),
        Err(e) => with_route(error_response(dialect, &e, &ctx.id), failed_route),
    };
    // Anthropic's SDKs read the request's id from `request-id` (`message._request_id`).
    if dialect == DialectId::Anthropic
        && let Some(id) = response.headers().get(X_REQUEST_ID).cloned()
    {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

async fn openai_chat(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    chat(app, DialectId::OpenAi, headers, body).await
}

async fn openai_completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(app, DialectId::OpenAiCompletions, headers, body).await
}

async fn openai_responses(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    chat(app, DialectId::OpenAiResponses, headers, body).await
}

async fn anthropic_messages(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(app, DialectId::Anthropic, headers, body).await
}

async fn anthropic_count_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count_tokens(
        app,
        DialectId::Anthropic,
        headers,
        body,
        |n| json!({"input_tokens": n}),
    )
    .await
}

async fn openai_input_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count_tokens(
        app,
        DialectId::OpenAiResponses,
        headers,
        body,
        |n| json!({"object": "response.input_tokens", "input_tokens": n}),
    )
    .await
}

async fn count_tokens(
    app: Arc<App>,
    dialect: DialectId,
    headers: HeaderMap,
    body: Body,
    answer: impl Fn(u64) -> serde_json::Value,
) -> Response {
    let ctx = RequestContext::new(dialect);
    let limit = app.config.server.max_body_bytes;
    let counted = match read_body(&headers, body, limit).await {
        Ok(bytes) => pipeline::count_tokens(&app, ingress(dialect), &headers, bytes).await,
        Err(e) => Err(e),
    };
    match counted {
        Ok(input_tokens) => {
            let mut response = json_response(StatusCode::OK, answer(input_tokens));
            if let Ok(v) = HeaderValue::from_str(&ctx.id) {
                let h = response.headers_mut();
                if dialect == DialectId::Anthropic {
                    h.insert(REQUEST_ID, v.clone());
                }
                h.insert(X_REQUEST_ID, v);
            }
            response
        }
        Err(e) => error_response(dialect, &e, &ctx.id),
    }
}

/// A kept response (see `kept_responses`): `GET /v1/responses/{id}` answers it, `DELETE` forgets
/// it and `GET /v1/responses/{id}/input_items` lists the items of the conversation it answered.
/// Only the caller that made a response sees it; anything else, a response not kept among
/// them, is a 404.
async fn kept_response(
    State(app): State<Arc<App>>,
    method: http::Method,
    headers: HeaderMap,
    uri: http::Uri,
) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAiResponses);
    let principal = match pipeline::authenticate(&app, &headers) {
        Ok(p) => p,
        Err(e) => return error_response(DialectId::OpenAiResponses, &e, &ctx.id),
    };
    let owner = &principal.caller.key_id.as_deref().map(str::to_owned);
    // Served with and without the version, as the other OpenAI paths are.
    let path = uri.path();
    let rest = path
        .strip_prefix("/v1/responses/")
        .or_else(|| path.strip_prefix("/responses/"))
        .unwrap_or(path);
    let (id, sub) = rest.split_once('/').unwrap_or((rest, ""));
    // Another replica may have kept it.
    app.kept_responses.fetch(id).await;
    let found = match (&method, sub) {
        (&http::Method::GET, "") => app
            .kept_responses
            .get(id, owner)
            .and_then(|k| serde_json::from_slice(&k.response).ok()),
        (&http::Method::GET, "input_items") => match ListPage::read(uri.query()) {
            Ok(page) => app
                .kept_responses
                .get(id, owner)
                .map(|k| page.of(kept_responses::input_items(&k, id))),
            Err(e) => return error_response(DialectId::OpenAiResponses, &e, &ctx.id),
        },
        // Only a background response can be cancelled, and the gateway runs none: a response
        // it kept has finished.
        (&http::Method::POST, "cancel") if app.kept_responses.get(id, owner).is_some() => {
            return error_response(
                DialectId::OpenAiResponses,
                &GatewayError::InvalidRequest(switchyard_protocol::error::DecodeError::new(
                    "Only background responses can be cancelled, and this gateway runs none: \
                     this response has finished.",
                    None,
                )),
                &ctx.id,
            );
        }
        (&http::Method::POST, "cancel") => None,
        (&http::Method::DELETE, "") => app
            .kept_responses
            .forget(id, owner)
            .await
            .then(|| json!({"id": id, "object": "response.deleted", "deleted": true})),
        // Not a kept response's path at all (`/v1/responses/compact`, say).
        _ => {
            return error_response(
                DialectId::OpenAiResponses,
                &GatewayError::NotFound(format!("{method} {}", uri.path())),
                &ctx.id,
            );
        }
    };
    match found {
        Some(body) => json_response(StatusCode::OK, body),
        None => error_response(
            DialectId::OpenAiResponses,
            &GatewayError::Missing(format!(
                "No response found at {} {}: it was stored with 'store': false, has expired or \
                 been deleted, or was made with another key",
                method,
                uri.path()
            )),
            &ctx.id,
        ),
    }
}

/// A list's page as OpenAI's list endpoints take it: `order` (`desc`, the default, or `asc`),
/// `limit` (1 to 100, default 20) and `after` (the id the page starts after).
struct ListPage {
    ascending: bool,
    limit: usize,
    after: Option<String>,
}

impl ListPage {
    fn read(query: Option<&str>) -> Result<Self, GatewayError> {
        let bad = |message: &str, param: &str| {
            GatewayError::InvalidRequest(switchyard_protocol::error::DecodeError::new(
                message,
                Some(param),
            ))
        };
        let mut page = ListPage {
            ascending: false,
            limit: 20,
            after: None,
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "order" => {
                    page.ascending = match &*value {
                        "asc" => true,
                        "desc" => false,
                        _ => return Err(bad("order must be 'asc' or 'desc'", "order")),
                    }
                }
                "limit" => {
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| bad("limit must be between 1 and 100", "limit"))?;
                }
                "after" => page.after = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(page)
    }

    /// The page of `items` (in their own order, oldest first) as a list object.
    fn of(&self, mut items: Vec<Value>) -> Value {
        if !self.ascending {
            items.reverse();
        }
        if let Some(after) = &self.after {
            let start = items
                .iter()
                .position(|i| i.get("id").and_then(Value::as_str) == Some(after))
                .map_or(items.len(), |p| p + 1);
            items.drain(..start);
        }
        let has_more = items.len() > self.limit;
        items.truncate(self.limit);
        let first = items.first().and_then(|i| i.get("id")).cloned();
        let last = items.last().and_then(|i| i.get("id")).cloned();
        json!({"object": "list", "data": items, "first_id": first, "last_id": last,
            "has_more": has_more})
    }
}

async fn openai_embeddings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    embeddings(app, headers, body).await
}

async fn embeddings(app: Arc<App>, headers: HeaderMap, body: Body) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    let mut tracker = tracker(&app, &ctx, "embeddings");
    tracker.set_trace(traceparent(&headers), tracestate(&headers).as_deref());
    let limit = app.config.server.max_body_bytes;
    let result = match read_body(&headers, body, limit).await {
        Ok(bytes) => pipeline::embeddings(app, &ctx, &headers, bytes, &mut tracker).await,
        Err(e) => Err(e),
    };
    let failed_route = tracker.take_failed_route();
    settle(tracker, &result);
    match result {
        Ok(reply) => reply_response(reply, &ctx.id),
        Err(e) => with_route(error_response(DialectId::OpenAi, &e, &ctx.id), failed_route),
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn live() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

/// Ready when this replica can serve: with shared state, while it reaches Redis (without it,
/// virtual keys' requests are refused). Providers' health does not decide it: every replica
/// sees the same providers, so a load balancer that took replicas out for a provider's outage
/// would take them all out, fallbacks and healthy aliases with them. What cannot be served
/// now is said in the body: aliases whose deployments and fallbacks all cool down.
async fn ready(State(app): State<Arc<App>>) -> Response {
    let now = now_ms();
    let usable = |alias: &str| {
        app.table.route(alias).is_some_and(|r| {
            r.deployments
                .iter()
                .any(|d| !d.health.snapshot(now).cooling)
        })
    };
    let mut cooling = Vec::new();
    let mut unavailable = Vec::new();
    for alias in &app.table.aliases {
        if usable(alias) {
            continue;
        }
        cooling.push(alias.clone());
        let fallback = app
            .table
            .route(alias)
            .is_some_and(|r| r.fallbacks.all().any(|f| usable(f)));
        if !fallback {
            unavailable.push(alias.clone());
        }
    }
    let shared_up = app.governance.shared().is_none_or(|s| s.reachable());
    let mut body = json!({"status": if shared_up { "ready" } else { "not_ready" }});
    if !shared_up {
        body["shared_state"] = json!("unreachable");
    }
    if !cooling.is_empty() {
        body["aliases_cooling"] = json!(cooling);
        body["aliases_without_usable_deployment"] = json!(unavailable);
    }
    let status = if shared_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body)
}

/// The error shape of a path the gateway does not serve: Anthropic's under `/v1/messages` or
/// for a client that says it speaks Anthropic's API (its SDKs send `anthropic-version` on every
/// call, to `/v1/files` say), OpenAI's otherwise.
fn dialect_for_path(path: &str, headers: &HeaderMap) -> DialectId {
    if path.starts_with("/v1/messages")
        || path.starts_with("/messages")
        || headers.contains_key("anthropic-version")
    {
        DialectId::Anthropic
    } else {
        DialectId::OpenAi
    }
}

async fn not_found(uri: http::Uri, headers: HeaderMap) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    error_response(
        dialect_for_path(uri.path(), &headers),
        &GatewayError::NotFound(uri.path().to_owned()),
        &ctx.id,
    )
}

async fn method_not_allowed(method: http::Method, uri: http::Uri, headers: HeaderMap) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    error_response(
        dialect_for_path(uri.path(), &headers),
        &GatewayError::MethodNotAllowed(format!("{method} {}", uri.path())),
        &ctx.id,
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        h
    }

    fn pieces(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures::stream::iter(frames))
    }

    #[test]
    fn only_health_checks_are_answered_on_the_serving_threads() {
        for path in ["/health/live", "/health/ready"] {
            assert!(answered_on_serving_thread(path), "{path}");
        }
        for path in [
            "/metrics",
            "/admin/requests",
            "/admin/spend",
            "/dashboard",
            "/v1/models",
            "/v1/messages/count_tokens",
        ] {
            assert!(!answered_on_serving_thread(path), "{path}");
        }
    }

    #[tokio::test]
    async fn a_body_is_read_whole_whatever_its_pieces() {
        // One piece: handed on as it came, not copied.
        let one = Bytes::from_static(b"{\"model\":\"m\"}");
        let read = read_body(&length(one.len()), Body::from(one.clone()), 1024)
            .await
            .unwrap();
        assert_eq!(read, one);
        assert_eq!(read.as_ptr(), one.as_ptr());

        // Several pieces, empty ones among them, with and without a declared length.
        let parts: &[&[u8]] = &[b"{\"mo", b"", b"del\":", b"\"m\"", b"}"];
        for headers in [length(14), HeaderMap::new(), length(3)] {
            let read = read_body(&headers, pieces(parts), 1024).await.unwrap();
            assert_eq!(&read[..], b"{\"model\":\"m\"}");
        }

        // Nothing at all.
        let read = read_body(&HeaderMap::new(), Body::empty(), 1024).await;
        assert!(read.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_in_one_piece_or_many() {
        let parts: &[&[u8]] = &[b"0123456789", b"0123456789"];
        for limit in [5, 15] {
            let read = read_body(&HeaderMap::new(), pieces(parts), limit).await;
            assert!(
                matches!(read, Err(GatewayError::RequestTooLarge(l)) if l == limit),
                "limit {limit}"
            );
        }
        let read = read_body(&HeaderMap::new(), pieces(parts), 20).await;
        assert_eq!(read.unwrap().len(), 20);
    }
}

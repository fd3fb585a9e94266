//! Performs the calls a route plan asks for: builds each attempt's HTTP request through the
//! provider's dialect, enforces timeouts (connect, first byte, stall between chunks, total),
//! classifies failures, retries with backoff and full jitter, moves on to the next deployment,
//! and hands a committed stream to the [`relay`]. It decides nothing about *where* to go.

pub mod aws_credentials;
mod budget;
pub mod client;
mod hedge;
pub mod media;
pub mod relay;
pub mod sigv4;

pub use budget::RetryBudget;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyDataStream, BodyExt};
use serde_json::Value;
use switchyard_protocol::canonical::{
    ChatRequest, ChatResponse, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, ErrorClass,
    StreamEvent, UpstreamErrorInfo, Usage,
};
use switchyard_protocol::dialect::{StreamDecoder, Target};
use switchyard_protocol::provider_body::ProviderBody;

use crate::config::{HedgeAfter, RoutingFile, StreamBufferFile};
use crate::error::GatewayError;
use crate::routing::{Deployment, Name, PlannedAttempt, Planner, Provider, now_ms, record_failure};
use media::MediaFetcher;

/// Most of an error body we read to classify it.
const MAX_ERROR_BODY: usize = 256 * 1024;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, client::BodyError>> + Send>>;

type Response = http::Response<client::ResponseBody>;

/// One HTTP exchange with one deployment, as the request record will show it.
#[derive(Debug, Clone)]
pub struct AttemptLog {
    pub alias: Name,
    pub deployment: Name,
    pub provider: Name,
    pub status: Option<u16>,
    pub error: Option<ErrorClass>,
    /// What the failure said (see `AttemptRecord::error_message`).
    pub error_message: Option<String>,
    /// When it started (its record keeps the offset from the request's start).
    pub started: Instant,
    pub latency: Duration,
    /// A retry of the same deployment after a failure.
    pub retry: bool,
    /// Started as a hedge next to a slow first attempt.
    pub hedged: bool,
    /// Cancelled because a competing hedged attempt answered first.
    pub cancelled: bool,
}

/// How far a request's walk through its plan has come, kept by the request's record rather
/// than by the walk: when the client leaves mid-walk, the walk's future is dropped with
/// everything in it, and the record still shows where the request was and which provider it
/// was waiting on.
#[derive(Default)]
pub struct Progress {
    /// The attempts over so far.
    pub attempts: Vec<AttemptLog>,
    /// The attempt under way.
    pub trying: Option<Trying>,
}

/// An attempt under way.
pub struct Trying {
    pub planned: PlannedAttempt,
    pub since: Instant,
    pub retry: bool,
}

impl Progress {
    /// The attempts, the one under way (if any) as given up, for a client that left.
    pub fn given_up(&mut self) -> Vec<AttemptLog> {
        let mut attempts = std::mem::take(&mut self.attempts);
        if let Some(t) = self.trying.take() {
            attempts.push(AttemptLog {
                alias: t.planned.alias().clone(),
                deployment: t.planned.deployment.id.clone(),
                provider: t.planned.deployment.provider.name.clone(),
                status: None,
                error: None,
                error_message: None,
                started: t.since,
                latency: t.since.elapsed(),
                retry: t.retry,
                hedged: false,
                cancelled: true,
            });
        }
        attempts
    }
}

/// A stream whose first meaningful event has arrived: from here on there is no fallback.
pub struct CommittedStream {
    /// Events decoded before commit (start, first delta …), not yet sent to the client.
    pub buffered: Vec<StreamEvent>,
    /// The upstream already ended cleanly (a very short answer).
    pub ended: bool,
    /// Bytes read from the provider but not yet decoded: what followed the first meaningful
    /// event in the same read (see [`push_until_meaningful`]).
    pub unread: Bytes,
    pub body: ByteStream,
    pub decoder: Box<dyn StreamDecoder>,
    pub stall: Duration,
    pub deadline: Instant,
}

pub enum Answer {
    Complete(ChatResponse),
    Stream(CommittedStream),
}

pub struct Executed<T> {
    pub answer: T,
    pub deployment: Arc<Deployment>,
    pub attempts: Vec<AttemptLog>,
}

pub struct Failed {
    pub error: GatewayError,
    pub attempts: Vec<AttemptLog>,
}

thread_local! {
    static WORKER_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as serving worker `slot` (1-based; 0, the default, is every
/// other thread), so its upstream requests use that worker's connection pools.
pub fn set_worker_slot(slot: usize) {
    WORKER_SLOT.with(|w| w.set(slot));
}

/// The current thread's worker slot (0 outside serving workers).
pub fn worker_slot() -> usize {
    WORKER_SLOT.with(std::cell::Cell::get)
}

fn target<'a>(d: &'a Deployment, api_key: Option<&'a crate::config::Secret>) -> Target<'a> {
    let p = &d.provider;
    Target {
        base_url: &p.base_url,
        model: &d.model,
        api_key: api_key.map(|s| s.expose()),
        api_version: p.api_version.as_deref(),
    }
}

/// The provider's credential for this attempt. A stored credential that is missing or cannot
/// be decrypted fails the attempt (status-less `auth_failed`, so other deployments are tried).
fn credential(
    provider: &Provider,
) -> Result<Option<Arc<crate::config::Secret>>, UpstreamErrorInfo> {
    provider.api_key().map_err(|why| UpstreamErrorInfo {
        class: ErrorClass::AuthFailed,
        status: None,
        message: format!("provider '{}': {why}", provider.name),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    })
}

fn transport_error(failure: client::SendFailure, provider: &Provider) -> UpstreamErrorInfo {
    let (class, what) = match failure {
        client::SendFailure::Timeout => (ErrorClass::Timeout, "timed out"),
        client::SendFailure::Url => {
            return UpstreamErrorInfo {
                class: ErrorClass::InvalidRequest,
                status: None,
                message: format!(
                    "cannot build the request for provider '{}': its URL is invalid",
                    provider.name
                ),
                provider_code: None,
                retry_after_secs: None,
                param: None,
            };
        }
        client::SendFailure::Unreadable => (
            ErrorClass::MalformedResponse,
            "answered with a response head that is not readable HTTP/1.1",
        ),
        client::SendFailure::Stale => (
            ErrorClass::Connect,
            "closed the connection before answering, twice",
        ),
        // Resets and closes before a response are connection-level failures.
        client::SendFailure::Connect => (
            ErrorClass::Connect,
            "could not be reached or closed the connection",
        ),
    };
    UpstreamErrorInfo {
        class,
        status: None,
        message: format!("provider '{}' {what}", provider.name),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

/// A provider's error sent with a success status (some servers and proxies answer 200 with an
/// error body): read as the error it is, with the provider's own message, when a body that is
/// not an answer holds one (`{"error": …}`, or Anthropic's `{"type": "error", …}`).
fn error_in_success(provider: &Provider, body: &[u8]) -> Option<UpstreamErrorInfo> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let holds_error = value.get("error").is_some_and(|e| !e.is_null())
        || value.get("type").and_then(Value::as_str) == Some("error");
    if !holds_error {
        return None;
    }
    // Classified as a server's failure would be; the status says what came.
    let mut error = provider
        .dialect
        .classify_error(500, &http::HeaderMap::new(), body);
    error.status = Some(200);
    Some(error)
}

fn broken_off(provider: &Provider) -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::StreamInterrupted,
        status: None,
        message: format!(
            "provider '{}' broke off while sending its answer",
            provider.name
        ),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

fn timeout_error(provider: &Provider, what: &str, after: Duration) -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::Timeout,
        status: None,
        message: format!(
            "provider '{}' sent no {what} within {} ms",
            provider.name,
            after.as_millis()
        ),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

/// A request the provider's format cannot carry. The message names the part by its place in
/// the gateway's request (where an Anthropic client's `system` is the first message).
fn invalid_for_provider(e: switchyard_protocol::error::DecodeError) -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::InvalidRequest,
        status: None,
        message: match &e.param {
            Some(param) => format!("{} (at '{param}')", e.message),
            None => e.message,
        },
        provider_code: None,
        retry_after_secs: None,
        param: e.param,
    }
}

/// Sends the request `build` makes and waits for the response head within the first-byte
/// timeout. When a reused connection closed without a byte of answer
/// (the provider's idle timeout racing the request), the request is built again and sent on
/// a new connection, once (the pool's other idle ones may have gone stale with it): failing it
/// would cost the client a fallback, or an error, and a healthy deployment a failure.
async fn send<F>(d: &Deployment, started: Instant, build: F) -> Result<Response, UpstreamErrorInfo>
where
    F: Fn() -> Result<http::Request<ProviderBody>, UpstreamErrorInfo>,
{
    let provider = &d.provider;
    // The whole exchange's bound holds while the head is awaited too.
    let first_byte = provider.timeouts.first_byte.min(provider.timeouts.total);
    let deadline = started + first_byte;
    let mut resent = false;
    let response = loop {
        let request = build()?;
        let wait = deadline.saturating_duration_since(Instant::now());
        let sent = provider.client().send(request, &d.urls, resent);
        match tokio::time::timeout(wait, sent).await {
            Err(_) => return Err(timeout_error(provider, "response", first_byte)),
            Ok(Err(client::SendFailure::Stale)) if !resent => resent = true,
            Ok(Err(e)) => return Err(transport_error(e, provider)),
            Ok(Ok(r)) => break r,
        }
    };
    if let Some(h) = headroom(response.headers()) {
        d.health.provider_headroom(h);
    }
    if let Some(coding) = response.headers().get(http::header::CONTENT_ENCODING)
        && coding != "identity"
    {
        return Err(UpstreamErrorInfo {
            class: ErrorClass::MalformedResponse,
            status: Some(response.status().as_u16()),
            message: format!(
                "provider '{}' compressed its answer (content-encoding: {}) though the gateway \
                 asked for none (accept-encoding: identity)",
                provider.name,
                String::from_utf8_lossy(coding.as_bytes())
            ),
            provider_code: None,
            retry_after_secs: None,
            param: None,
        });
    }
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let budget = remaining(started, provider.timeouts.total).min(Duration::from_secs(10));
    let body = tokio::time::timeout(budget, read_limited(body, MAX_ERROR_BODY))
        .await
        .unwrap_or_default();
    Err(provider
        .dialect
        .classify_error(status, &parts.headers, &body))
}

/// The tightest remaining share among the provider's rate-limit headers (OpenAI style
/// `x-ratelimit-remaining-requests` / `x-ratelimit-limit-requests`, and Anthropic's
/// `anthropic-ratelimit-requests-remaining` / `-limit`).
fn headroom(headers: &http::HeaderMap) -> Option<f64> {
    // (remaining, limit) header pairs, read in one pass over the reply's headers: most replies
    // carry none of them, and a lookup by name would hash each of the eight names.
    const PAIRS: [(&str, &str); 4] = [
        (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-limit-requests",
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-limit",
        ),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens"),
        (
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-limit",
        ),
    ];
    let mut found = [(None, None); 4];
    for (name, value) in headers {
        let name = name.as_str();
        // Every name of the pairs starts so: two short comparisons, not a substring search.
        if !(name.starts_with("x-ratelimit-") || name.starts_with("anthropic-ratelimit-")) {
            continue;
        }
        let number = || value.to_str().ok()?.trim().parse::<f64>().ok();
        for (i, (rem, lim)) in PAIRS.iter().enumerate() {
            if name == *rem {
                found[i].0 = number();
            } else if name == *lim {
                found[i].1 = number();
            }
        }
    }
    let mut best: Option<f64> = None;
    for (r, l) in found {
        if let (Some(r), Some(l)) = (r, l)
            && l > 0.0
        {
            let f = r / l;
            best = Some(best.map_or(f, |b: f64| b.min(f)));
        }
    }
    best
}

fn remaining(started: Instant, total: Duration) -> Duration {
    total.saturating_sub(started.elapsed())
}

async fn read_limited(body: client::ResponseBody, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = BodyDataStream::new(body);
    while let Some(Ok(chunk)) = body.next().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

/// Reads a whole answer's body. Providers send a whole answer's headers once it is ready, so
/// its body normally follows at once; one that stops part-way is cut, like a stream, once it
/// has been silent for the stall timeout (or until the first-byte deadline, whichever is
/// later), not left to hold the request until the total timeout. Some providers send spaces
/// while they work, which count as progress.
async fn whole_body(
    provider: &Provider,
    response: Response,
    started: Instant,
) -> Result<Bytes, UpstreamErrorInfo> {
    let timeouts = provider.timeouts;
    let first_deadline = started + timeouts.first_byte.min(timeouts.total);
    let mut body = response.into_body();
    let mut first: Option<Bytes> = None;
    let mut more = bytes::BytesMut::new();
    loop {
        // A frame already received is taken without arming a timer: the common case, an
        // answer that came in one or two reads with its headers.
        let next = match futures::FutureExt::now_or_never(body.frame()) {
            Some(next) => next,
            None => {
                let left = remaining(started, timeouts.total);
                let wait = first_deadline
                    .saturating_duration_since(Instant::now())
                    .max(timeouts.stall)
                    .min(left);
                match tokio::time::timeout(wait, body.frame()).await {
                    Ok(next) => next,
                    Err(_) if wait == left => {
                        return Err(timeout_error(provider, "complete answer", timeouts.total));
                    }
                    Err(_) => return Err(relay::stall_error(wait)),
                }
            }
        };
        let data = match next {
            None => break,
            Some(Err(_)) => return Err(broken_off(provider)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        match &first {
            None => first = Some(data),
            Some(head) => {
                if more.is_empty() {
                    more.extend_from_slice(head);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.freeze()
    })
}

async fn attempt_chat(
    d: &Deployment,
    request: &ChatRequest,
    buffer: Option<StreamBufferFile>,
    media: Option<(&MediaFetcher, &media::Fetched)>,
) -> Result<Answer, UpstreamErrorInfo> {
    let provider = &d.provider;
    let inlined;
    let request = match media {
        Some((fetcher, fetched)) => {
            match fetcher
                .inline(request, provider.dialect.capabilities(), fetched)
                .await?
            {
                Some(r) => {
                    inlined = r;
                    &inlined
                }
                None => request,
            }
        }
        None => request,
    };
    let started = Instant::now();
    let key = credential(provider)?;
    let response = send(d, started, || {
        let mut built = provider
            .dialect
            .build_chat(request, &target(d, key.as_deref()))
            .map_err(invalid_for_provider)?;
        if let Some(aws) = &provider.aws {
            let body = built.body().to_vec();
            sign(provider, aws, &mut built, &body)?;
        }
        Ok(built)
    })
    .await?;
    let timeouts = provider.timeouts;
    // A client that asked for no parallel tool calls, of a provider that cannot be told so,
    // gets the first call only.
    let first_call_only = request.parallel_tool_calls == Some(false)
        && !request.tools.is_empty()
        && !provider.dialect.capabilities().single_tool_call;
    if !request.stream {
        let body = whole_body(provider, response, started).await?;
        return provider
            .dialect
            .parse_chat(&body)
            .map(|mut answer| {
                if first_call_only {
                    answer.keep_first_tool_call();
                }
                Answer::Complete(answer)
            })
            .map_err(|e| error_in_success(provider, &body).unwrap_or(e));
    }
    // A whole JSON body where a stream was asked for is no stream: the error it holds (a
    // server or proxy that answers errors with 200), or an answer that did not stream.
    if response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
    {
        let body = whole_body(provider, response, started).await?;
        return Err(error_in_success(provider, &body).unwrap_or_else(|| {
            switchyard_protocol::dialect::malformed(format!(
                "provider '{}' answered a stream request with a whole JSON body, not a stream",
                provider.name
            ))
        }));
    }
    let mut body: ByteStream = Box::pin(BodyDataStream::new(response.into_body()));
    let mut decoder = provider.dialect.stream_decoder();
    if first_call_only {
        decoder = Box::new(switchyard_protocol::dialect::FirstToolCallOnly(decoder));
    }
    let mut buffered = Vec::new();
    // Until the first meaningful event the first-byte budget applies, however many events
    // without content (an opening event, keep-alive pings, empty chunks) come first: a
    // provider that only keeps its stream alive fails over at the first-byte deadline instead
    // of holding the request. Then, with a pre-commit buffer, we keep reading until it is
    // full or its delay is over.
    let first_deadline = (started + timeouts.first_byte).min(started + timeouts.total);
    let mut buffer_until: Option<(Instant, usize)> = None;
    let mut buffered_bytes = 0usize;
    // A body that opens as JSON, kept (up to 64 KiB) until the stream's first event: a server
    // that answers an error with 200 and the stream's content type writes no events at all.
    let mut json_body: Option<Vec<u8>> = None;
    // While buffering, a silence longer than the stall timeout is a failure still worth falling
    // back from: nothing has reached the client yet.
    let mut last_read = Instant::now();
    loop {
        let wait = match buffer_until {
            Some((until, _)) => until.min(last_read + timeouts.stall),
            None => first_deadline,
        }
        .saturating_duration_since(Instant::now());
        let next = match tokio::time::timeout(wait, body.next()).await {
            Err(_)
                if buffer_until.is_some_and(|(until, _)| {
                    let now = Instant::now();
                    now < until && now >= last_read + timeouts.stall
                }) =>
            {
                return Err(relay::stall_error(timeouts.stall));
            }
            Err(_) if buffer_until.is_some() => {
                return Ok(Answer::Stream(CommittedStream {
                    buffered,
                    ended: false,
                    unread: Bytes::new(),
                    body,
                    decoder,
                    stall: timeouts.stall,
                    deadline: started + timeouts.total,
                }));
            }
            Err(_) => {
                return Err(timeout_error(
                    provider,
                    "stream content",
                    timeouts.first_byte.min(timeouts.total),
                ));
            }
            Ok(next) => next,
        };
        match next {
            Some(Ok(chunk)) => {
                last_read = Instant::now();
                if buffered_bytes == 0 && chunk.trim_ascii_start().starts_with(b"{") {
                    json_body = Some(Vec::new());
                }
                if let Some(json) = json_body.as_mut().filter(|j| j.len() < 64 * 1024) {
                    json.extend_from_slice(&chunk);
                }
                buffered_bytes += chunk.len();
                // With a pre-commit buffer everything read is checked before commit; without
                // one the first meaningful event commits, and what follows it waits.
                let unread = if buffer_until.is_some() {
                    decoder.push(&chunk, &mut buffered)?;
                    Bytes::new()
                } else {
                    push_until_meaningful(decoder.as_mut(), chunk, &mut buffered)?
                };
                in_band_error(&buffered)?;
                let meaningful = buffered.iter().any(is_meaningful);
                if meaningful
                    && buffer_until.is_none()
                    && let Some(b) = buffer.filter(|b| b.max_bytes > 0 || !b.max_delay.is_zero())
                {
                    buffer_until =
                        Some((Instant::now() + b.max_delay, buffered_bytes + b.max_bytes));
                    decoder.push(&unread, &mut buffered)?;
                    in_band_error(&buffered)?;
                } else if !unread.is_empty() {
                    return Ok(Answer::Stream(CommittedStream {
                        buffered,
                        ended: false,
                        unread,
                        body,
                        decoder,
                        stall: timeouts.stall,
                        deadline: started + timeouts.total,
                    }));
                }
                let full = match buffer_until {
                    Some((until, bytes)) => buffered_bytes >= bytes || Instant::now() >= until,
                    None => meaningful,
                };
                if full {
                    return Ok(Answer::Stream(CommittedStream {
                        buffered,
                        ended: false,
                        unread: Bytes::new(),
                        body,
                        decoder,
                        stall: timeouts.stall,
                        deadline: started + timeouts.total,
                    }));
                }
            }
            // Broken after the stream's terminal event, the answer is whole (a reset before
            // the chunked body's own end); before it, it is not.
            Some(Err(_)) | None => {
                if let Err(e) = decoder.finish(&mut buffered) {
                    if let Some(error) = json_body
                        .filter(|_| buffered.is_empty())
                        .and_then(|json| error_in_success(provider, &json))
                    {
                        return Err(error);
                    }
                    return Err(if next.is_some() {
                        broken_off(provider)
                    } else {
                        e
                    });
                }
                return Ok(Answer::Stream(CommittedStream {
                    buffered,
                    ended: true,
                    unread: Bytes::new(),
                    body,
                    decoder,
                    stall: timeouts.stall,
                    deadline: started + timeouts.total,
                }));
            }
        }
    }
}

/// Fails with the provider's in-band error, when one came before commit.
fn in_band_error(events: &[StreamEvent]) -> Result<(), UpstreamErrorInfo> {
    match events.iter().find(|e| matches!(e, StreamEvent::Error(_))) {
        Some(StreamEvent::Error(e)) => Err(e.clone()),
        _ => Ok(()),
    }
}

/// Whether an event is worth committing the stream for (an answer has begun). A text block's
/// start is not: its text has yet to come.
fn is_meaningful(event: &StreamEvent) -> bool {
    !matches!(
        event,
        StreamEvent::Start { .. } | StreamEvent::Usage(_) | StreamEvent::TextBlockStart
    )
}

/// Decodes `input` one SSE event at a time until a meaningful event comes out, and returns
/// the bytes not decoded yet. When a provider's read holds many events (a fast or caching
/// provider, or chunks that queued up), the first of them then reaches the client without
/// waiting for the rest to be translated. Decoders accept input split anywhere, so the split
/// (after a blank line) only decides how soon that event is found, never what is decoded.
fn push_until_meaningful(
    decoder: &mut dyn StreamDecoder,
    mut input: Bytes,
    events: &mut Vec<StreamEvent>,
) -> Result<Bytes, UpstreamErrorInfo> {
    let finder = memchr::memmem::Finder::new(b"\n\n");
    while !input.is_empty() {
        let cut = finder.find(&input).map_or(input.len(), |at| at + 2);
        let before = events.len();
        decoder.push(&input.split_to(cut), events)?;
        if events[before..].iter().any(is_meaningful) {
            break;
        }
    }
    Ok(input)
}

/// Calls to one provider a split embeddings request keeps in flight at once.
const EMBEDDING_CALLS_IN_FLIGHT: usize = 8;

async fn attempt_embeddings(
    d: &Deployment,
    request: &EmbeddingRequest,
) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
    let per_call = d.provider.dialect.embedding_inputs_per_request(&d.model);
    let texts = match (&request.input, per_call) {
        (EmbeddingInput::Texts(texts), Some(per_call)) if texts.len() > per_call => texts,
        _ => return embeddings_call(d, request).await,
    };
    // The provider takes fewer inputs a call than the client sent: the pieces go out side by
    // side (a few at a time) and come back in order, as one answer.
    let pieces: Vec<EmbeddingRequest> = texts
        .chunks(per_call.unwrap_or(usize::MAX))
        .map(|chunk| EmbeddingRequest {
            model: request.model.clone(),
            input: EmbeddingInput::Texts(chunk.to_vec()),
            single: false,
            dimensions: request.dimensions,
            encoding_format: request.encoding_format,
            user: request.user.clone(),
            extras: request.extras.clone(),
        })
        .collect();
    let mut answers = Vec::with_capacity(pieces.len());
    for batch in pieces.chunks(EMBEDDING_CALLS_IN_FLIGHT) {
        // Futures made in a loop rather than by a closure: a closure's borrowed arguments would
        // make the request's future not `Send` for every lifetime.
        let mut calls = Vec::with_capacity(batch.len());
        for piece in batch {
            calls.push(embeddings_call(d, piece));
        }
        answers.extend(futures::future::join_all(calls).await);
    }
    let mut whole = EmbeddingResponse {
        model: String::new(),
        vectors: Vec::with_capacity(texts.len()),
        usage: None,
    };
    for answer in answers {
        let answer = answer?;
        whole.model = answer.model;
        whole.vectors.extend(answer.vectors);
        if let Some(usage) = answer.usage {
            let total = whole.usage.get_or_insert_with(Usage::default);
            total.input_tokens += usage.input_tokens;
        }
    }
    Ok(whole)
}

/// One embeddings call, signed where the provider signs.
async fn embeddings_call(
    d: &Deployment,
    request: &EmbeddingRequest,
) -> Result<EmbeddingResponse, UpstreamErrorInfo> {
    let provider = &d.provider;
    let started = Instant::now();
    let key = credential(provider)?;
    let response = send(d, started, || {
        let mut built = provider
            .dialect
            .build_embeddings(request, &target(d, key.as_deref()))
            .map_err(invalid_for_provider)?;
        if let Some(aws) = &provider.aws {
            let body = built.body().clone();
            sign(provider, aws, &mut built, &body)?;
        }
        Ok(built.map(ProviderBody::from))
    })
    .await?;
    let counted = provider
        .dialect
        .embedding_tokens_in_headers(response.headers());
    let body = whole_body(provider, response, started).await?;
    let mut answer = provider.dialect.parse_embeddings(&body)?;
    if answer.usage.is_none()
        && let Some(tokens) = counted
    {
        answer.usage = Some(Usage {
            input_tokens: tokens,
            ..Usage::default()
        });
    }
    Ok(answer)
}

/// The prompt's input tokens as the deployment's provider counts them, where it has a counting
/// endpoint (`None` where it has not). One call, within the provider's timeouts; no retries.
pub async fn count_tokens(
    d: &Deployment,
    request: &ChatRequest,
) -> Option<Result<u64, UpstreamErrorInfo>> {
    let provider = &d.provider;
    // Only a provider that counts needs its credential: the others are estimated.
    let key = credential(provider);
    let usable = key.as_ref().ok().and_then(|k| k.as_deref());
    let built = provider
        .dialect
        .build_count_tokens(request, &target(d, usable))?;
    Some(
        async {
            if let Err(e) = &key {
                return Err(e.clone());
            }
            // The first build is sent; a second (to resend) is built again.
            let first = parking_lot::Mutex::new(Some(built));
            let started = Instant::now();
            let response = send(d, started, || {
                let built = first.lock().take().or_else(|| {
                    provider
                        .dialect
                        .build_count_tokens(request, &target(d, usable))
                });
                let Some(built) = built else {
                    return Err(transport_error(client::SendFailure::Stale, provider));
                };
                let mut built = built.map_err(invalid_for_provider)?;
                if let Some(aws) = &provider.aws {
                    let body = built.body().clone();
                    sign(provider, aws, &mut built, &body)?;
                }
                Ok(built.map(ProviderBody::from))
            })
            .await?;
            let body = whole_body(provider, response, started).await?;
            provider.dialect.parse_count_tokens(&body)
        }
        .await,
    )
}

/// Signs a request to a Bedrock provider with its current AWS credentials, now.
fn sign<B>(
    provider: &Provider,
    aws: &aws_credentials::AwsAuth,
    request: &mut http::Request<B>,
    body: &[u8],
) -> Result<(), UpstreamErrorInfo> {
    let failed = |why: &str| UpstreamErrorInfo {
        class: ErrorClass::AuthFailed,
        status: None,
        message: format!(
            "provider '{}': could not sign the request: {why}",
            provider.name
        ),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    };
    let credentials = aws
        .current()
        .ok_or_else(|| failed("no AWS credentials were found"))?;
    let now = sigv4::amz_date(std::time::SystemTime::now());
    sigv4::sign(request, body, &credentials, &now).map_err(|why| failed(&why))
}

/// Full jitter: a random wait between zero and an exponentially growing cap.
fn backoff(try_no: u32) -> Duration {
    let cap_ms = (100u64 << try_no.min(5)).min(2_000);
    Duration::from_millis(rand::random_range(0..=cap_ms))
}

/// A committed stream that failed before its end (cut, stalled, malformed, or the provider's
/// in-band error) counts against its deployment as a failed attempt does: a provider whose
/// streams die part-way cools down like one that refuses requests.
pub fn stream_failed(d: &Deployment, policy: &RoutingFile, error: &UpstreamErrorInfo) {
    if counts_against_deployment(error.class) {
        let retry_after = error.retry_after_secs.map(Duration::from_secs_f64);
        record_failure(d, policy, error.class, retry_after, now_ms());
    }
}

/// A committed stream that reached its end (or whose client left first) is its deployment's
/// success.
pub fn stream_succeeded(d: &Deployment) {
    d.health.succeeded();
}

/// Whether a failure says anything about the deployment's health.
fn counts_against_deployment(class: ErrorClass) -> bool {
    !matches!(
        class,
        ErrorClass::InvalidRequest | ErrorClass::ContextTooLong | ErrorClass::ContentFiltered
    )
}

fn random_below(n: u32) -> u32 {
    if n == 0 { 0 } else { rand::random_range(0..n) }
}

/// The outcome of one attempt as the walk sees it.
struct Tried<T> {
    planned: PlannedAttempt,
    result: Result<T, UpstreamErrorInfo>,
    started: Instant,
    latency: Duration,
    retry: bool,
    hedged: bool,
    cancelled: bool,
}

fn log_of<T>(t: &Tried<T>) -> AttemptLog {
    let (status, error, message) = match &t.result {
        Ok(_) => (Some(200), None, None),
        // A provider's words about the gateway's credentials may quote them.
        Err(e) if e.class == ErrorClass::AuthFailed && e.status.is_some() => (
            e.status,
            Some(e.class),
            Some("the provider rejected the gateway's credentials".to_owned()),
        ),
        Err(e) => (e.status, Some(e.class), Some(e.message.clone())),
    };
    AttemptLog {
        alias: t.planned.alias().clone(),
        deployment: t.planned.deployment.id.clone(),
        provider: t.planned.deployment.provider.name.clone(),
        status: if t.cancelled { None } else { status },
        error: if t.cancelled { None } else { error },
        error_message: if t.cancelled { None } else { message },
        started: t.started,
        latency: t.latency,
        retry: t.retry,
        hedged: t.hedged,
        cancelled: t.cancelled,
    }
}

/// Whether an answer is whole when its attempt returns: a stream has only begun, and whether
/// it succeeded is known at its end ([`stream_failed`], [`stream_succeeded`]).
trait Whole {
    fn whole(&self) -> bool;
}

impl Whole for Answer {
    fn whole(&self) -> bool {
        matches!(self, Answer::Complete(_))
    }
}

impl Whole for EmbeddingResponse {
    fn whole(&self) -> bool {
        true
    }
}

/// Walks the plan until one attempt succeeds or the plan is exhausted.
async fn walk<T: Whole, F, Fut>(
    planner: &mut Planner<'_>,
    policy: &RoutingFile,
    retry_budget: &RetryBudget,
    progress: &mut Progress,
    call: F,
) -> Result<Executed<T>, Failed>
where
    F: Fn(PlannedAttempt) -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamErrorInfo>>,
{
    retry_budget.deposit();
    let input_tokens = planner.facts().input_tokens;
    let Progress { attempts, trying } = progress;
    let mut last: Option<UpstreamErrorInfo> = None;
    let mut all_rate_limited = true;
    // When every deployment refused for its rate limit, the client is told when the first of them
    // frees up, not when the last one tried does: each deployment's latest word, as a deadline.
    let mut frees_up: Vec<(Arc<Deployment>, Instant)> = Vec::new();
    let mut first = true;
    let mut rng = random_below;
    // The class that chooses the fallbacks: a context-length or content-filter failure, once
    // seen, however the request's other deployments failed after it (a deployment that is
    // merely down says nothing of whether the request fits).
    let mut telling: Option<ErrorClass> = None;
    while let Some(planned) = planner.next(telling.or(last.as_ref().map(|e| e.class)), &mut rng) {
        if first {
            planned.route.count_request();
        }
        let mut try_no = 0;
        loop {
            let retry = try_no > 0;
            // Only the very first attempt of a request may be hedged.
            let hedge = if first { planned.route.hedge } else { None };
            first = false;
            let since = Instant::now();
            *trying = Some(Trying {
                planned: planned.clone(),
                since,
                retry,
            });
            let tried: Vec<Tried<T>> = match hedge {
                Some(h) => {
                    let delay = match h.after {
                        HedgeAfter::Fixed(d) => Some(d),
                        HedgeAfter::P95 => planned
                            .deployment
                            .health
                            .snapshot(now_ms())
                            .p95_ms
                            .map(Duration::from_millis),
                    };
                    match delay {
                        // Boxed: a race's own state (its delay, the second plan, the bookkeeping of
                        // two attempts) would otherwise widen every request's future, hedged or
                        // not, and each layer's copy of it.
                        Some(delay) => {
                            Box::pin(hedge::race(
                                planner,
                                planned.clone(),
                                delay,
                                h.max_share,
                                retry_budget,
                                &call,
                                input_tokens,
                            ))
                            .await
                        }
                        None => {
                            vec![
                                hedge::single(planned.clone(), &call, retry, input_tokens, since)
                                    .await,
                            ]
                        }
                    }
                }
                None => {
                    vec![hedge::single(planned.clone(), &call, retry, input_tokens, since).await]
                }
            };
            *trying = None;
            let mut winner = None;
            for t in tried {
                attempts.push(log_of(&t));
                match t.result {
                    Ok(answer) => {
                        let health = &t.planned.deployment.health;
                        // When it ended, from what the attempt measured: no clock read.
                        let ended = crate::routing::ms_at(t.started + t.latency);
                        if answer.whole() {
                            health.success(t.latency, ended);
                        } else {
                            health.answering();
                            health.answered_at(t.latency, ended);
                        }
                        winner = Some((answer, t.planned));
                    }
                    Err(e) if !t.cancelled => {
                        tracing::debug!(deployment = %t.planned.deployment.id, class = e.class.as_str(), status = ?e.status, "attempt failed");
                        let retry_after = e.retry_after_secs.map(Duration::from_secs_f64);
                        if counts_against_deployment(e.class) {
                            record_failure(
                                &t.planned.deployment,
                                policy,
                                e.class,
                                retry_after,
                                now_ms(),
                            );
                        } else if e.status.is_some() {
                            // The provider answered, refusing the request for itself: it is
                            // up, and a half-open probe that met such a refusal has its
                            // verdict.
                            t.planned.deployment.health.answered();
                        }
                        if matches!(
                            e.class,
                            ErrorClass::ContextTooLong | ErrorClass::ContentFiltered
                        ) {
                            telling = Some(e.class);
                        }
                        if e.class != ErrorClass::RateLimited {
                            all_rate_limited = false;
                        } else {
                            // One that said no wait may be asked again at once.
                            let secs = e.retry_after_secs.unwrap_or(0.0);
                            let at = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
                            match frees_up
                                .iter_mut()
                                .find(|(d, _)| Arc::ptr_eq(d, &t.planned.deployment))
                            {
                                Some((_, known)) => *known = at,
                                None => frees_up.push((t.planned.deployment.clone(), at)),
                            }
                        }
                        last = Some(e);
                    }
                    // The first attempt dropped because its hedge answered first.
                    Err(_) if !t.hedged => {
                        let d = &t.planned.deployment;
                        if let Some(until_ms) = d.health.lost_race(policy.cooldown, now_ms()) {
                            crate::routing::shared_health::announce(&d.id, until_ms);
                        }
                    }
                    Err(_) => {}
                }
            }
            if let Some((answer, planned)) = winner {
                return Ok(Executed {
                    answer,
                    deployment: planned.deployment,
                    attempts: std::mem::take(attempts),
                });
            }
            let Some(e) = &last else { break };
            // The client's own mistake: no other deployment will think differently.
            if e.class == ErrorClass::InvalidRequest {
                return Err(failed(last, false, std::mem::take(attempts)));
            }
            let retry_after = e.retry_after_secs.map(Duration::from_secs_f64);
            // A failure that just cooled the deployment (a timeout does at once) moves on: the
            // next try here would most likely wait out the same timeout. A provider's own
            // `retry-after` short enough to wait out is waited out, whatever the cooldown.
            let waits_out = retry_after.is_some_and(|ra| ra <= policy.max_retry_after);
            let cooled = planned.deployment.health.snapshot(now_ms()).cooling;
            let retry_here = e.class.is_retryable()
                && try_no < planned.retries
                && retry_after.is_none_or(|ra| ra <= policy.max_retry_after)
                && (waits_out || !cooled)
                && retry_budget.try_withdraw();
            if !retry_here {
                break;
            }
            try_no += 1;
            tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(try_no - 1))).await;
        }
    }
    if attempts.is_empty() {
        return Err(Failed {
            error: GatewayError::Unsupported(format!(
                "No deployment behind '{}' can serve this request ({}).",
                planner.decision.alias,
                planner
                    .decision
                    .skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.deployment, s.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            attempts: Vec::new(),
        });
    }
    if all_rate_limited
        && let (Some(last), Some(earliest)) = (last.as_mut(), frees_up.iter().map(|f| f.1).min())
    {
        last.retry_after_secs = Some(
            earliest
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
        );
    }
    Err(failed(last, all_rate_limited, std::mem::take(attempts)))
}

fn failed(
    last: Option<UpstreamErrorInfo>,
    all_rate_limited: bool,
    attempts: Vec<AttemptLog>,
) -> Failed {
    let error = match last {
        Some(last) => GatewayError::Upstream {
            last,
            all_rate_limited,
            attempts: attempts.len() as u32,
        },
        None => GatewayError::Internal("route plan was empty".into()),
    };
    Failed { error, attempts }
}

pub async fn execute_chat(
    planner: &mut Planner<'_>,
    request: &ChatRequest,
    policy: &RoutingFile,
    retry_budget: &RetryBudget,
    media: Option<&MediaFetcher>,
    progress: &mut Progress,
) -> Result<Executed<Answer>, Failed> {
    let needs = planner.facts().needs;
    let fetched = media::Fetched::default();
    // Only a request with images or documents may hold a URL to fetch.
    let media = media
        .filter(|_| needs.images || needs.documents)
        .map(|m| (m, &fetched));
    walk(
        planner,
        policy,
        retry_budget,
        progress,
        |a: PlannedAttempt| async move {
            attempt_chat(&a.deployment, request, a.route.stream_buffer, media).await
        },
    )
    .await
}

pub async fn execute_embeddings(
    planner: &mut Planner<'_>,
    request: &EmbeddingRequest,
    policy: &RoutingFile,
    retry_budget: &RetryBudget,
    progress: &mut Progress,
) -> Result<Executed<EmbeddingResponse>, Failed> {
    walk(
        planner,
        policy,
        retry_budget,
        progress,
        |a: PlannedAttempt| async move { attempt_embeddings(&a.deployment, request).await },
    )
    .await
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_protocol::canonical::StreamEvent;
    use switchyard_protocol::dialect::{ProviderKind, provider_dialect};

    use super::{headroom, push_until_meaningful};

    #[test]
    fn a_burst_commits_on_its_first_text_and_keeps_the_rest_undecoded() {
        let chunk = |delta: &str| {
            format!(
                "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
                 \"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\
                 \"finish_reason\":null}}]}}\n\n"
            )
        };
        let burst = [
            chunk(r#"{"role":"assistant","content":""}"#),
            chunk(r#"{"content":"Hello"}"#),
            chunk(r#"{"content":" there"}"#),
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
             \"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\
             \"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
                .to_owned(),
        ]
        .concat();
        let dialect = provider_dialect(&ProviderKind::OpenAi);

        let mut whole = Vec::new();
        let mut decoder = dialect.stream_decoder();
        decoder.push(burst.as_bytes(), &mut whole).unwrap();
        decoder.finish(&mut whole).unwrap();

        let mut split = Vec::new();
        let mut decoder = dialect.stream_decoder();
        let unread =
            push_until_meaningful(decoder.as_mut(), Bytes::from(burst.clone()), &mut split)
                .unwrap();
        assert!(matches!(split.last(), Some(StreamEvent::TextDelta(t)) if t == "Hello"));
        assert!(unread.starts_with(b"data: "));
        assert!(burst.ends_with(std::str::from_utf8(&unread).unwrap()));
        decoder.push(&unread, &mut split).unwrap();
        decoder.finish(&mut split).unwrap();
        assert_eq!(split, whole);

        // No blank line at all: the whole input is decoded in one piece.
        let mut events = Vec::new();
        let mut decoder = dialect.stream_decoder();
        let unread = push_until_meaningful(
            decoder.as_mut(),
            Bytes::from_static(b"data: {"),
            &mut events,
        )
        .unwrap();
        assert!(unread.is_empty() && events.is_empty());
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn headroom_is_the_tightest_share_among_complete_pairs() {
        assert_eq!(
            headroom(&headers(&[("content-type", "application/json")])),
            None
        );
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "50"),
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-tokens", " 1000 "),
            ("x-ratelimit-limit-tokens", "10000"),
        ]);
        assert_eq!(headroom(&h), Some(0.1));
        let h = headers(&[
            ("anthropic-ratelimit-requests-remaining", "3"),
            ("anthropic-ratelimit-requests-limit", "4"),
            // Half a pair, a zero limit and a non-number are ignored.
            ("anthropic-ratelimit-tokens-remaining", "1"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-limit-requests", "0"),
            ("x-ratelimit-remaining-tokens", "many"),
            ("x-ratelimit-limit-tokens", "10"),
        ]);
        assert_eq!(headroom(&h), Some(0.75));
    }
}

//! The HTTP client a provider's requests go out on: a pool of hyper's HTTP/1 connections
//! (`DirectClient`). reqwest's layers (redirect and retry services, a URL parse of every
//! request) cost about a tenth of the gateway's CPU at saturation, and hyper-util's pooled
//! client does per-request work a pool of one worker's connections does not need (see
//! `DirectClient`). reqwest is still used when the environment names a proxy for the
//! provider's URL (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, less `NO_PROXY`, read at start): it
//! tunnels and forwards through proxies, which deployments behind a corporate proxy rely on and
//! which this module does not redo.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http::uri::{Authority, Scheme};
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use parking_lot::Mutex;
use switchyard_protocol::provider_body::ProviderBody;

use crate::routing::UrlCache;

/// How long an unused pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Most idle connections kept per host and pool (one pool per serving worker).
const POOL_MAX_IDLE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("cannot set up TLS for provider connections: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot set up the HTTP client for a proxied provider: {0}")]
    Proxied(#[from] reqwest::Error),
}

/// What every provider client of one routing table shares: the TLS settings (the platform's
/// trust store) and the proxy rules of the environment.
pub struct Transport {
    tls: rustls::ClientConfig,
    proxies: Matcher,
}

impl Transport {
    pub fn from_env() -> Result<Self, ClientSetupError> {
        use rustls_platform_verifier::BuilderVerifierExt;
        let tls = rustls::ClientConfig::builder()
            .with_platform_verifier()?
            .with_no_client_auth();
        Ok(Self {
            tls,
            proxies: Matcher::from_system(),
        })
    }

    /// Whether the environment's proxy rules send requests for `base_url` through a proxy.
    pub fn proxied(&self, base_url: &str) -> bool {
        base_url
            .parse::<http::Uri>()
            .is_ok_and(|uri| self.proxies.intercept(&uri).is_some())
    }

    /// A connection pool for a provider, through the environment's proxy when `proxied`.
    /// Retries and fallbacks are the gateway's, and a provider's redirect is an answer to
    /// report, not to follow with the caller's credentials: neither client retries or follows
    /// redirects.
    pub fn client(
        &self,
        proxied: bool,
        connect_timeout: Duration,
    ) -> Result<HttpClient, ClientSetupError> {
        if proxied {
            let client = reqwest::Client::builder()
                .retry(reqwest::retry::never().max_retries_per_request(0))
                .redirect(reqwest::redirect::Policy::none())
                .http1_only()
                .tcp_nodelay(true)
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(POOL_IDLE)
                .pool_max_idle_per_host(POOL_MAX_IDLE)
                .build()?;
            return Ok(HttpClient::Proxied(client));
        }
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let connector = TimedConnector {
            inner: hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(self.tls.clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp),
            timeout: connect_timeout,
        };
        Ok(HttpClient::Direct(DirectClient {
            connector,
            pool: Arc::new(Pool::default()),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connection = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
type Sender = hyper::client::conn::http1::SendRequest<Pieces>;

/// The connector with the provider's connect timeout over the TCP connect and the TLS handshake
/// together (hyper's own connect timeout covers the TCP connect only).
#[derive(Clone)]
pub struct TimedConnector {
    inner: hyper_rustls::HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl tower::Service<http::Uri> for TimedConnector {
    type Response = Connection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting timed out",
                )) as BoxError),
            }
        })
    }
}

/// One provider's connection pool on one serving worker.
pub enum HttpClient {
    Direct(DirectClient),
    Proxied(reqwest::Client),
}

/// Every request asks for its answer uncompressed: the dialects read bodies as they come, and
/// without the header any coding would be acceptable (RFC 9110).
const ACCEPT_ENCODING: http::HeaderName = http::header::ACCEPT_ENCODING;
static IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// Why a request got no response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The connection (or its TLS handshake) timed out.
    Timeout,
    /// Refused, reset or closed before a response: a connection-level failure.
    Connect,
    /// The request's URL is not one the client can send to.
    Url,
    /// A response head that is not HTTP/1.1 as the client reads it (a bad status line or
    /// header, too many or too large headers).
    Unreadable,
    /// Sent on a reused connection that then closed without a byte of answer: the provider
    /// closed it as idle while the request was on its way, and almost certainly never read
    /// it. Worth sending again on a new connection.
    Stale,
}

impl HttpClient {
    /// Sends `request` (absolute URI) and waits for the response head; on a new connection
    /// when `fresh` (a request resent because a kept one closed under it: the pool's other
    /// idle connections may be as stale, closed by the same idle timeout).
    pub async fn send(
        &self,
        request: http::Request<ProviderBody>,
        urls: &UrlCache,
        fresh: bool,
    ) -> Result<http::Response<ResponseBody>, SendFailure> {
        match self {
            Self::Direct(client) => client.send(request, fresh).await,
            Self::Proxied(client) => {
                let (parts, body) = request.into_parts();
                let url = urls.get(&parts.uri).map_err(|_| SendFailure::Url)?;
                let mut request = reqwest::Request::new(parts.method, url);
                *request.headers_mut() = parts.headers;
                request
                    .headers_mut()
                    .insert(ACCEPT_ENCODING, IDENTITY.clone());
                *request.version_mut() = parts.version;
                *request.body_mut() = Some(body.into_vec().into());
                // Boxed: see `DirectClient::send`.
                match Box::pin(client.execute(request)).await {
                    Ok(r) => Ok(http::Response::from(r).map(ResponseBody::Proxied)),
                    Err(e) if e.is_timeout() => Err(SendFailure::Timeout),
                    Err(_) => Err(SendFailure::Connect),
                }
            }
        }
    }
}

/// Whether a connection closed (or was reset) before any of the response came.
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        }) {
            return true;
        }
        source = s.source();
    }
    false
}

/// A timed-out connect shows as an I/O `TimedOut` somewhere in the error's sources, a head
/// that could not be read as hyper's parse error; anything else before a response head is the
/// connection failing.
fn failure_of(e: &(dyn std::error::Error + 'static)) -> SendFailure {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return SendFailure::Timeout;
        }
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return SendFailure::Unreadable;
        }
        source = s.source();
    }
    SendFailure::Connect
}

/// HTTP/1.1 connections to a provider, kept alive and reused. Each serving worker has its own
/// (see [`crate::upstream::worker_slot`]), so a pool is only ever touched by one thread and its
/// connections' tasks run there; the lock is never contended.
///
/// hyper's own connection API is used under a small pool of ours rather than hyper-util's
/// pooled client: that client clones its connector and builds a URI for a connect it rarely
/// makes, formats the `Host` header, rebuilds the request URI, and spawns a task to return
/// the connection, on every request.
pub struct DirectClient {
    connector: TimedConnector,
    pool: Arc<Pool>,
}

/// Idle connections per origin (a provider's base URL has one; a pool rarely sees another).
#[derive(Default)]
struct Pool {
    origins: Mutex<Vec<Origin>>,
}

struct Origin {
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header for this origin, made once.
    host: HeaderValue,
    /// Most recently returned last; taken from the back, expired from the front.
    idle: VecDeque<(Sender, Instant)>,
}

impl Pool {
    /// The origin's index and `Host` header, registering the origin on first sight, and its most
    /// recently used idle connection that is still open: one lock for the common request.
    fn checkout(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        reuse: bool,
    ) -> Result<(usize, HeaderValue, Option<Sender>), SendFailure> {
        let mut origins = self.origins.lock();
        let i = match origins
            .iter()
            .position(|o| o.scheme == *scheme && o.authority == *authority)
        {
            Some(i) => i,
            None => {
                origins.push(Origin {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                    host: host_header(scheme, authority).ok_or(SendFailure::Url)?,
                    idle: VecDeque::new(),
                });
                origins.len() - 1
            }
        };
        let origin = &mut origins[i];
        let idle = if reuse {
            take_idle(&mut origin.idle)
        } else {
            None
        };
        Ok((i, origin.host.clone(), idle))
    }

    /// The origin's next idle connection, after one taken before turned out closed.
    fn take(&self, origin: usize) -> Option<Sender> {
        take_idle(&mut self.origins.lock()[origin].idle)
    }

    /// Takes a connection back once its response has been read to the end.
    fn put(&self, origin: usize, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut origins = self.origins.lock();
        let idle = &mut origins[origin].idle;
        let now = Instant::now();
        expire(idle, now);
        if idle.len() >= POOL_MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back((sender, now));
    }
}

/// The most recently used idle connection that is still open; connections idle for longer than
/// [`POOL_IDLE`] are closed instead (servers drop them about then, and a request sent as one
/// closes would be lost to that race).
fn take_idle(idle: &mut VecDeque<(Sender, Instant)>) -> Option<Sender> {
    expire(idle, Instant::now());
    while let Some((sender, _)) = idle.pop_back() {
        if !sender.is_closed() {
            return Some(sender);
        }
    }
    None
}

/// Closes the connections idle for longer than [`POOL_IDLE`] (the oldest are at the front).
fn expire(idle: &mut VecDeque<(Sender, Instant)>, now: Instant) {
    while idle
        .front()
        .is_some_and(|(_, since)| now.duration_since(*since) > POOL_IDLE)
    {
        idle.pop_front();
    }
}

/// `Host` as HTTP/1.1 wants it: the URI's host, with the port unless it is the scheme's default.
fn host_header(scheme: &Scheme, authority: &Authority) -> Option<HeaderValue> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = authority.host();
    let value = match authority.port_u16() {
        Some(port) if port != default_port => HeaderValue::try_from(format!("{host}:{port}")),
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

impl DirectClient {
    /// The future every request to a provider awaits, and every future above it holds: the
    /// rarer paths it may take (a new connection here, a proxy in `HttpClient::send`) are
    /// boxed so that their state does not make it, and every caller's, larger. Unboxed, a
    /// request's whole future took 6.6 KiB, copied as each layer was built.
    async fn send(
        &self,
        request: http::Request<ProviderBody>,
        fresh: bool,
    ) -> Result<http::Response<ResponseBody>, SendFailure> {
        let (mut parts, body) = request.into_parts();
        let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority()) else {
            return Err(SendFailure::Url);
        };
        let (origin, host, mut idle) = self.pool.checkout(scheme, authority, !fresh)?;
        parts.headers.entry(http::header::HOST).or_insert(host);
        parts.headers.insert(ACCEPT_ENCODING, IDENTITY.clone());
        // The request line carries the path only; the origin is the connection's.
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let origin_uri = std::mem::replace(&mut parts.uri, http::Uri::from(path));
        let mut request = http::Request::from_parts(parts, Pieces::new(body));
        loop {
            let kept = idle
                .take()
                .or_else(|| (!fresh).then(|| self.pool.take(origin)).flatten());
            let (mut sender, reused) = match kept {
                Some(sender) => (sender, true),
                None => (Box::pin(self.connect(&origin_uri)).await?, false),
            };
            if reused && sender.ready().await.is_err() {
                // Closed while idle: the request is still ours to send elsewhere.
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.pool.clone(),
                        origin,
                        sender,
                    };
                    return Ok(response.map(|body| {
                        ResponseBody::Direct(Leased {
                            body,
                            lease: Some(lease),
                        })
                    }));
                }
                // Not sent at all (the connection closed as it was taken): a reused
                // connection's request goes out on another; a new one's failure is final.
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    None if reused && closed_unanswered(e.error()) => {
                        return Err(SendFailure::Stale);
                    }
                    _ => return Err(failure_of(e.error())),
                },
            }
        }
    }

    /// A new connection to the request's origin, its task running on this thread.
    async fn connect(&self, uri: &http::Uri) -> Result<Sender, SendFailure> {
        let io = tower::ServiceExt::oneshot(self.connector.clone(), uri.clone())
            .await
            .map_err(|e| failure_of(&*e))?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| failure_of(&e))?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the pool lets go of it; a failure
            // here reaches the request it affected through that request's own future or body.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A connection lent to one response: back to the pool once the body has been read to its
/// end; dropped with a body that was not (hyper then closes the connection).
struct Lease {
    pool: Arc<Pool>,
    origin: usize,
    sender: Sender,
}

/// A response body from the pool, with the connection it came on.
pub struct Leased {
    body: hyper::body::Incoming,
    lease: Option<Lease>,
}

impl Leased {
    fn give_back(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.put(lease.origin, lease.sender);
        }
    }
}

/// A request body sent as its pieces (see `ProviderBody`): hyper takes them one after another
/// into one vectored write, so a long prompt spliced in goes from the client's body as it is.
pub struct Pieces {
    next: Option<Bytes>,
    rest: std::vec::IntoIter<Bytes>,
    left: u64,
}

impl Pieces {
    /// A body of `pieces`, sent one after another.
    pub fn of(pieces: Vec<Bytes>) -> Self {
        let left = pieces.iter().map(|p| p.len() as u64).sum();
        let mut rest = pieces.into_iter();
        Pieces {
            next: rest.next(),
            rest,
            left,
        }
    }

    fn new(body: ProviderBody) -> Self {
        let left = body.len() as u64;
        // A body of one piece (most) needs no list of pieces.
        if !body.is_spliced() {
            return Pieces {
                next: Some(Bytes::from(body.into_vec())),
                rest: Vec::new().into_iter(),
                left,
            };
        }
        let mut rest = body.into_pieces().into_iter();
        Pieces {
            next: rest.next(),
            rest,
            left,
        }
    }
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        Poll::Ready(this.next.take().or_else(|| this.rest.next()).map(|piece| {
            this.left -= piece.len() as u64;
            Ok(Frame::data(piece))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    /// Exact, so the request carries a `content-length` rather than a chunked body.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// A provider's response body, from either client.
pub enum ResponseBody {
    Direct(Leased),
    Proxied(reqwest::Body),
}

/// The response body broke off (reset, closed early, malformed framing).
#[derive(Debug, thiserror::Error)]
#[error("the provider's response body broke off: {0}")]
pub struct BodyError(Box<dyn std::error::Error + Send + Sync>);

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Direct(leased) => {
                let frame = Pin::new(&mut leased.body).poll_frame(cx);
                match &frame {
                    Poll::Ready(None) => leased.give_back(),
                    Poll::Ready(Some(Err(_))) => leased.lease = None,
                    _ => {}
                }
                frame.map_err(|e| BodyError(Box::new(e)))
            }
            Self::Proxied(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| BodyError(Box::new(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Direct(leased) => leased.body.is_end_stream(),
            Self::Proxied(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Direct(leased) => leased.body.size_hint(),
            Self::Proxied(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test server saw: connections accepted and each request's head.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        heads: Mutex<Vec<String>>,
    }

    /// A loopback HTTP/1.1 server answering every request with a 2,000-byte body; after
    /// `answers_per_connection` answers it closes the connection without saying so first.
    async fn server(answers_per_connection: usize) -> (String, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let seen = shared.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    for _ in 0..answers_per_connection {
                        let head_end = loop {
                            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            if !read_more(&mut stream, &mut buffer).await {
                                return;
                            }
                        };
                        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buffer.len() < head_end + length {
                            if !read_more(&mut stream, &mut buffer).await {
                                return;
                            }
                        }
                        buffer.drain(..head_end + length);
                        seen.heads.lock().push(head);
                        let body = "x".repeat(2000);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    /// Appends what the peer sent next; false once it has closed.
    async fn read_more(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn client() -> HttpClient {
        Transport::from_env()
            .unwrap()
            .client(false, Duration::from_secs(2))
            .unwrap()
    }

    fn post(url: &str) -> http::Request<ProviderBody> {
        http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(ProviderBody::from(b"{\"a\":1}".to_vec()))
            .unwrap()
    }

    async fn read(response: http::Response<ResponseBody>) -> usize {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_is_read_and_requests_name_only_the_path() {
        let (base, seen) = server(usize::MAX).await;
        let client = client();
        let urls = UrlCache::default();
        for _ in 0..5 {
            let response = client
                .send(
                    post(&format!("{base}/v1/chat/completions?api-version=1")),
                    &urls,
                    false,
                )
                .await
                .unwrap();
            assert_eq!(read(response).await, 2000);
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
        let heads = seen.heads.lock();
        assert_eq!(heads.len(), 5);
        let port = base.rsplit(':').next().unwrap();
        for head in heads.iter() {
            assert!(
                head.starts_with("POST /v1/chat/completions?api-version=1 HTTP/1.1\r\n"),
                "{head}"
            );
            assert!(
                head.contains(&format!("host: 127.0.0.1:{port}\r\n")),
                "{head}"
            );
        }
    }

    /// Three requests in flight together, each answer read to its end.
    async fn three_at_once(client: &HttpClient, url: &str) {
        let urls = UrlCache::default();
        let (a, b, c) = tokio::join!(
            client.send(post(url), &urls, false),
            client.send(post(url), &urls, false),
            client.send(post(url), &urls, false)
        );
        for response in [a, b, c] {
            assert_eq!(read(response.unwrap()).await, 2000);
        }
    }

    #[tokio::test]
    async fn requests_in_flight_together_get_a_connection_each_and_all_return_to_the_pool() {
        let (base, seen) = server(usize::MAX).await;
        let client = client();
        let url = format!("{base}/v1/embeddings");
        three_at_once(&client, &url).await;
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
        // All three are idle again: three more at once open nothing new.
        three_at_once(&client, &url).await;
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_left_unread_does_not_give_its_connection_back() {
        let (base, seen) = server(usize::MAX).await;
        let client = client();
        let urls = UrlCache::default();
        let url = format!("{base}/v1/chat/completions");
        let unread = client.send(post(&url), &urls, false).await.unwrap();
        drop(unread);
        let response = client.send(post(&url), &urls, false).await.unwrap();
        assert_eq!(read(response).await, 2000);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced_without_failing_the_request() {
        let (base, seen) = server(1).await;
        let client = client();
        let urls = UrlCache::default();
        let url = format!("{base}/v1/chat/completions");
        for _ in 0..3 {
            let response = client.send(post(&url), &urls, false).await.unwrap();
            assert_eq!(read(response).await, 2000);
            // Give the connection's task the moment it needs to see the close.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_idle_for_longer_than_the_pool_keeps_them_is_closed_not_reused() {
        let (base, seen) = server(usize::MAX).await;
        let client = client();
        let HttpClient::Direct(direct) = &client else {
            panic!("a direct client was asked for");
        };
        let urls = UrlCache::default();
        let url = format!("{base}/v1/chat/completions");
        let response = client.send(post(&url), &urls, false).await.unwrap();
        assert_eq!(read(response).await, 2000);
        {
            let mut origins = direct.pool.origins.lock();
            let idle = &mut origins[0].idle;
            assert_eq!(idle.len(), 1);
            expire(idle, Instant::now() + POOL_IDLE / 2);
            assert_eq!(idle.len(), 1, "not yet expired");
            expire(idle, Instant::now() + POOL_IDLE + Duration::from_secs(1));
            assert!(idle.is_empty());
        }
        let response = client.send(post(&url), &urls, false).await.unwrap();
        assert_eq!(read(response).await, 2000);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_url_without_origin_are_told_apart() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!(
            "http://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        );
        drop(listener);
        let client = client();
        let urls = UrlCache::default();
        let refused = client.send(post(&closed), &urls, false).await.err();
        assert_eq!(refused, Some(SendFailure::Connect));
        let relative = client
            .send(post("/v1/chat/completions"), &urls, false)
            .await
            .err();
        assert_eq!(relative, Some(SendFailure::Url));
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_schemes_default() {
        let host = |scheme: Scheme, authority: &str| {
            host_header(&scheme, &authority.parse().unwrap()).unwrap()
        };
        assert_eq!(host(Scheme::HTTPS, "api.openai.com"), "api.openai.com");
        assert_eq!(host(Scheme::HTTPS, "api.openai.com:443"), "api.openai.com");
        assert_eq!(host(Scheme::HTTPS, "example.com:8443"), "example.com:8443");
        assert_eq!(host(Scheme::HTTP, "localhost:80"), "localhost");
        assert_eq!(host(Scheme::HTTP, "localhost:443"), "localhost:443");
        assert_eq!(host(Scheme::HTTP, "[::1]:11434"), "[::1]:11434");
        assert_eq!(host(Scheme::HTTP, "user:pw@10.0.0.1:8000"), "10.0.0.1:8000");
    }
}

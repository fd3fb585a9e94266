//! The HTTP client a provider's requests go out on. hyper's pooled client is called directly:
//! reqwest's layers around it (redirect and retry services, a URL parse of every request) cost
//! about a tenth of the gateway's CPU at saturation. reqwest is still used when the environment
//! names a proxy for the provider's URL (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, less
//! `NO_PROXY`, read at start): it tunnels and forwards through proxies, which deployments behind
//! a corporate proxy rely on and which this module does not redo.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(HttpClient::Direct(client))
    }
}

type DirectClient = Client<TimedConnector, Full<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connection = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;

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
#[expect(
    clippy::large_enum_variant,
    reason = "made once per provider and worker and never moved after"
)]
pub enum HttpClient {
    Direct(DirectClient),
    Proxied(reqwest::Client),
}

/// Why a request got no response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The connection (or its TLS handshake) timed out.
    Timeout,
    /// Refused, reset or closed before a response: a connection-level failure.
    Connect,
    /// The request's URL is not one the client can send to.
    Url,
}

impl HttpClient {
    /// Sends `request` (absolute URI) and waits for the response head.
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        urls: &UrlCache,
    ) -> Result<http::Response<ResponseBody>, SendFailure> {
        match self {
            Self::Direct(client) => client
                .request(request.map(|body| Full::new(Bytes::from(body))))
                .await
                .map(|r| r.map(ResponseBody::Direct))
                .map_err(|e| direct_failure(&e)),
            Self::Proxied(client) => {
                let (parts, body) = request.into_parts();
                let url = urls.get(&parts.uri).map_err(|_| SendFailure::Url)?;
                let mut request = reqwest::Request::new(parts.method, url);
                *request.headers_mut() = parts.headers;
                *request.version_mut() = parts.version;
                *request.body_mut() = Some(body.into());
                match client.execute(request).await {
                    Ok(r) => Ok(http::Response::from(r).map(ResponseBody::Proxied)),
                    Err(e) if e.is_timeout() => Err(SendFailure::Timeout),
                    Err(_) => Err(SendFailure::Connect),
                }
            }
        }
    }
}

/// A timed-out connect shows as an I/O `TimedOut` somewhere in the error's sources; anything
/// else before a response head is the connection failing.
fn direct_failure(e: &hyper_util::client::legacy::Error) -> SendFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return SendFailure::Timeout;
        }
        source = s.source();
    }
    SendFailure::Connect
}

/// A provider's response body, from either client.
pub enum ResponseBody {
    Direct(hyper::body::Incoming),
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
            Self::Direct(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| BodyError(Box::new(e))),
            Self::Proxied(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| BodyError(Box::new(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Direct(b) => b.is_end_stream(),
            Self::Proxied(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Direct(b) => b.size_hint(),
            Self::Proxied(b) => b.size_hint(),
        }
    }
}

//! The load generator's HTTP/1.1 client: a keep-alive connection pool over hyper's connection
//! API, and one request/response exchange with its timings. Runs on a single-threaded runtime
//! inside a `LocalSet`, so the pool is a plain `RefCell`.
//!
//! The pool is ours rather than hyper-util's: it sets `TCP_NODELAY`, reuses the most recently
//! returned connection first, counts the connections it opens, and has no locks or timers.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::payload::Template;

type Sender = SendRequest<Full<Bytes>>;

/// Keep-alive connections to one loopback address.
pub struct Pool {
    addr: SocketAddr,
    host: header::HeaderValue,
    idle: RefCell<Vec<Sender>>,
    opened: Cell<u64>,
}

impl Pool {
    pub fn new(addr: SocketAddr) -> anyhow::Result<Pool> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "refusing to send load to {addr}: only loopback targets are allowed"
        );
        Ok(Pool {
            addr,
            host: header::HeaderValue::from_str(&addr.to_string())?,
            idle: RefCell::new(Vec::new()),
            opened: Cell::new(0),
        })
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.get()
    }

    fn pop_idle(&self) -> Option<Sender> {
        self.idle.borrow_mut().pop()
    }

    /// An idle connection ready for a request, or a new one.
    async fn checkout(&self) -> Result<Sender, Failure> {
        while let Some(mut sender) = self.pop_idle() {
            // A connection the server closed fails here and is dropped.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        self.opened.set(self.opened.get() + 1);
        Ok(sender)
    }

    fn checkin(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle.borrow_mut().push(sender);
        }
    }
}

/// One JSON request on a fresh connection (admin calls, not load): the status and the body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    bearer: &str,
    body: String,
) -> anyhow::Result<(u16, Bytes)> {
    anyhow::ensure!(addr.ip().is_loopback(), "refusing to call {addr}");
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let request = Request::post(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Why a request did not count as a success.
#[derive(Debug, Clone)]
pub enum Failure {
    Connect(String),
    Io(String),
    Status(u16, String),
    /// A stream that ended without `data: [DONE]`.
    Incomplete,
    Timeout,
}

impl Failure {
    /// A short, bounded label for counting.
    pub fn label(&self) -> String {
        match self {
            Failure::Connect(_) => "connect".into(),
            Failure::Io(_) => "io".into(),
            Failure::Status(code, _) => format!("status {code}"),
            Failure::Incomplete => "incomplete stream".into(),
            Failure::Timeout => "timeout".into(),
        }
    }

    /// The label with detail, for the first error of a run.
    pub fn detail(&self) -> String {
        match self {
            Failure::Connect(e) | Failure::Io(e) => format!("{}: {e}", self.label()),
            Failure::Status(_, body) => format!("{}: {body}", self.label()),
            Failure::Incomplete | Failure::Timeout => self.label(),
        }
    }
}

/// When the parts of a successful reply arrived.
#[derive(Debug)]
pub struct Timings {
    /// The whole body was read.
    pub end: Instant,
    /// Streams: arrival of each SSE event carrying output text, in order.
    pub tokens: Vec<Instant>,
}

/// Sends `template` once and reads the whole reply.
pub async fn exchange(pool: &Pool, template: &Template) -> Result<Timings, Failure> {
    let mut sender = pool.checkout().await?;
    let mut request = Request::post(template.path)
        .header(header::HOST, pool.host.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(template.body.clone()))
        .map_err(|e| Failure::Io(e.to_string()))?;
    for (name, value) in &template.headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Io(e.to_string()))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut scan = SseScan::default();
    let mut error_body = Vec::new();
    let mut tokens = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Io(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if !status.is_success() {
            if error_body.len() < 300 {
                error_body.extend_from_slice(data);
            }
        } else if template.stream {
            scan.push(data, Instant::now(), &mut tokens);
        }
    }
    let end = Instant::now();
    pool.checkin(sender);
    if !status.is_success() {
        let text = String::from_utf8_lossy(&error_body);
        return Err(Failure::Status(
            status.as_u16(),
            text.chars().take(300).collect(),
        ));
    }
    if template.stream && !scan.done {
        return Err(Failure::Incomplete);
    }
    Ok(Timings { end, tokens })
}

/// Finds SSE events in an OpenAI chat stream as they arrive: which carry output text and
/// whether `[DONE]` came. Events are separated by a blank line (`\n\n`, as both the simulator
/// and the gateway write them).
#[derive(Debug, Default)]
struct SseScan {
    buf: Vec<u8>,
    done: bool,
}

impl SseScan {
    fn push(&mut self, data: &[u8], now: Instant, tokens: &mut Vec<Instant>) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(len) = find(&self.buf[start..], b"\n\n") {
            let event = &self.buf[start..start + len];
            if find(event, b"data: [DONE]").is_some() {
                self.done = true;
            } else if carries_text(event) {
                tokens.push(now);
            }
            start += len + 2;
        }
        self.buf.drain(..start);
    }
}

/// A chunk whose `content` is a non-empty string (the role chunk has `"content":""`).
fn carries_text(event: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    let mut rest = event;
    while let Some(at) = find(rest, KEY) {
        let after = &rest[at + KEY.len()..];
        if after.first().is_some_and(|&b| b != b'"') {
            return true;
        }
        rest = after;
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_scan_finds_text_events_and_done_across_splits() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        )
        .as_bytes();
        for split in 0..stream.len() {
            let mut scan = SseScan::default();
            let mut tokens = Vec::new();
            let now = Instant::now();
            scan.push(&stream[..split], now, &mut tokens);
            scan.push(&stream[split..], now, &mut tokens);
            assert_eq!(tokens.len(), 2, "split at {split}");
            assert!(scan.done);
        }
    }

    #[test]
    fn a_stream_without_done_is_not_done() {
        let mut scan = SseScan::default();
        let mut tokens = Vec::new();
        scan.push(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
            Instant::now(),
            &mut tokens,
        );
        assert_eq!(tokens.len(), 1);
        assert!(!scan.done);
    }
}

//! The load generator's HTTP/1.1 client: a keep-alive connection pool over hyper's connection
//! API, and one request/response exchange with its timings. Runs on a single-threaded runtime
//! inside a `LocalSet`, so the pool is a plain `RefCell`.
//!
//! The pool is ours rather than hyper-util's: it sets `TCP_NODELAY`, reuses the most recently
//! returned connection first, counts the connections it opens, and has no locks or timers. It
//! can be bounded (`--soak`): all its connections are opened up front and taken in turn (the
//! least recently returned first, so none sits idle long enough for the gateway's idle timeout
//! to close it), and a request that finds none idle waits for one to come back, so the number
//! of connections stays put over a long run.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
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
    idle: RefCell<VecDeque<Sender>>,
    opened: Cell<u64>,
    /// Connections open now, idle or lent.
    open: Cell<u64>,
    /// Most connections open at once, if bounded.
    limit: Option<u64>,
    /// Told when a lent connection comes back or is dropped.
    returned: tokio::sync::Notify,
}

/// A connection lent by the pool: [`Lease::give_back`] returns it for reuse; dropped otherwise
/// (a failed or abandoned exchange), it is closed and its place freed.
pub struct Lease<'p> {
    sender: Sender,
    place: Place<'p>,
}

impl Lease<'_> {
    /// Back to the idle list, which keeps its place; a closed one is dropped instead.
    fn give_back(self) {
        if !self.sender.is_closed() {
            let pool = self.place.pool;
            pool.idle.borrow_mut().push_back(self.sender);
            // The idle connection now holds the place.
            std::mem::forget(self.place);
            pool.returned.notify_one();
        }
    }
}

/// One connection's place in [`Pool::open`], freed when dropped.
struct Place<'p> {
    pool: &'p Pool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.pool.open.set(self.pool.open.get().saturating_sub(1));
        self.pool.returned.notify_one();
    }
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
            idle: RefCell::new(VecDeque::new()),
            opened: Cell::new(0),
            open: Cell::new(0),
            limit: None,
            returned: tokio::sync::Notify::new(),
        })
    }

    /// A pool of at most `limit` connections, all opened now.
    pub async fn bounded(addr: SocketAddr, limit: u64) -> anyhow::Result<Pool> {
        let limit = limit.max(1);
        let mut pool = Pool::new(addr)?;
        pool.limit = Some(limit);
        let mut opened = Vec::new();
        for _ in 0..limit {
            opened.push(
                pool.checkout()
                    .await
                    .map_err(|e| anyhow::anyhow!(e.detail()))?,
            );
        }
        opened.into_iter().for_each(Lease::give_back);
        Ok(pool)
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// Unbounded: the most recently returned (the fewest connections stay warm); bounded: the
    /// least recently returned (every one stays in use).
    fn pop_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.borrow_mut();
        if self.limit.is_some() {
            idle.pop_front()
        } else {
            idle.pop_back()
        }
    }

    /// An idle connection ready for a request, or a new one (within the bound, waiting for one
    /// to come back when it is reached).
    async fn checkout(&self) -> Result<Lease<'_>, Failure> {
        loop {
            while let Some(mut sender) = self.pop_idle() {
                // Its place passes to the lease; a connection the server closed fails here and
                // is dropped with the lease.
                let place = Place { pool: self };
                if sender.ready().await.is_ok() {
                    return Ok(Lease { sender, place });
                }
            }
            if self.limit.is_none_or(|limit| self.open.get() < limit) {
                break;
            }
            self.returned.notified().await;
        }
        // Counted before the connect's await, so requests waiting meanwhile respect the bound;
        // freed if the connect fails.
        self.open.set(self.open.get() + 1);
        let place = Place { pool: self };
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
        Ok(Lease { sender, place })
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
    /// A stream that ended without its last event (`data: [DONE]`, `message_stop`).
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
    let mut lease = pool.checkout().await?;
    let mut request = Request::post(template.path)
        .header(header::HOST, pool.host.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(template.body.clone()))
        .map_err(|e| Failure::Io(e.to_string()))?;
    for (name, value) in &template.headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let response = lease
        .sender
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
    lease.give_back();
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

/// Finds SSE events in an OpenAI chat stream or an Anthropic Messages stream as they arrive:
/// which carry output text and whether the stream's last event came (`[DONE]`,
/// `message_stop`). Events are separated by a blank line (`\n\n`, as both the simulator and
/// the gateway write them).
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
            if find(event, b"data: [DONE]").is_some()
                || find(event, b"data: {\"type\":\"message_stop\"").is_some()
            {
                self.done = true;
            } else if carries_text(event) {
                tokens.push(now);
            }
            start += len + 2;
        }
        self.buf.drain(..start);
    }
}

/// An OpenAI chunk whose `content` is a non-empty string (the role chunk has
/// `"content":""`), or an Anthropic event whose `text` is (a text block starts with
/// `"text":""`).
fn carries_text(event: &[u8]) -> bool {
    [&b"\"content\":\""[..], b"\"text\":\""].iter().any(|key| {
        let mut rest = event;
        while let Some(at) = find(rest, key) {
            let after = &rest[at + key.len()..];
            if after.first().is_some_and(|&b| b != b'"') {
                return true;
            }
            rest = after;
        }
        false
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounded pool opens its connections up front and never more, however many requests
    /// are in flight, and a request that fails gives its place back.
    #[test]
    fn a_bounded_pool_keeps_its_connections() {
        let sim = crate::targets::SimThread::start().unwrap();
        let template = Template {
            path: "/v1/chat/completions",
            headers: vec![(
                header::AUTHORIZATION,
                header::HeaderValue::from_static("Bearer sk-test"),
            )],
            body: Bytes::from_static(
                br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            ),
            stream: false,
            prompt_bytes: 2,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let pool = std::rc::Rc::new(Pool::bounded(sim.addr, 3).await.unwrap());
            assert_eq!(pool.opened(), 3);
            let template = std::rc::Rc::new(template);
            let exchanges: Vec<_> = (0..40)
                .map(|_| {
                    let (pool, template) = (pool.clone(), template.clone());
                    tokio::task::spawn_local(async move { exchange(&pool, &template).await })
                })
                .collect();
            for e in exchanges {
                assert!(e.await.unwrap().is_ok());
            }
            assert_eq!(pool.opened(), 3);
            assert_eq!(pool.open.get(), 3);
            // A lease dropped without being given back (a failed exchange) frees its place,
            // and three requests at once open a connection in its stead.
            drop(pool.checkout().await.unwrap());
            assert_eq!(pool.open.get(), 2);
            let (a, b, c) = tokio::join!(
                exchange(&pool, &template),
                exchange(&pool, &template),
                exchange(&pool, &template)
            );
            assert!(a.is_ok() && b.is_ok() && c.is_ok());
            assert_eq!((pool.opened(), pool.open.get()), (4, 3));
        });
    }

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
    fn sse_scan_reads_an_anthropic_stream_across_splits() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[],\"usage\":{}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
        .as_bytes();
        let last =
            stream.len() - "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".len();
        for split in 0..stream.len() {
            let mut scan = SseScan::default();
            let mut tokens = Vec::new();
            let now = Instant::now();
            scan.push(&stream[..split], now, &mut tokens);
            assert!(!scan.done, "split at {split}");
            scan.push(&stream[split..], now, &mut tokens);
            assert_eq!(tokens.len(), 2, "split at {split}");
            assert!(scan.done);
        }
        let mut cut = SseScan::default();
        cut.push(&stream[..last], Instant::now(), &mut Vec::new());
        assert!(!cut.done, "a stream cut before message_stop");
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

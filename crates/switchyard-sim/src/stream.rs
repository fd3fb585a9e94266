//! Streamed bodies: dialects write their frames (SSE events, or AWS event-stream messages for
//! Bedrock) into one buffer and label each frame; this module turns the buffer into a response
//! body, paced by `token_ms` and broken by stream faults. Without pacing or faults the whole
//! buffer goes out as one body, with no timers involved. Pacing and faults only see frame
//! boundaries and labels, never the framing itself.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::stream;
use serde::Serialize;

use crate::fault::StreamFault;

/// What a frame is, for stream faults: they keep preamble frames, count content frames, and
/// never send terminal ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// Structure around the content (`message_start`, the role chunk, `content_block_stop`).
    Other,
    /// A chunk carrying output (a word, a JSON fragment, a tool call or its arguments).
    Content,
    /// What tells the client the stream completed (finish reason, usage, `[DONE]`, stop).
    Terminal,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    end: usize,
    kind: FrameKind,
    tokens: u32,
}

/// A stream's frames in one buffer, each labelled with its kind and output tokens.
#[derive(Debug, Default)]
pub(crate) struct StreamBody {
    buf: Vec<u8>,
    marks: Vec<Mark>,
}

impl StreamBody {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            marks: Vec::with_capacity(32),
        }
    }

    /// Appends `event:` (optional) and a `data:` line holding `value` as JSON.
    pub(crate) fn json(
        &mut self,
        kind: FrameKind,
        tokens: u32,
        event: Option<&str>,
        value: &impl Serialize,
    ) {
        if let Some(event) = event {
            self.buf.extend_from_slice(b"event: ");
            self.buf.extend_from_slice(event.as_bytes());
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(b"data: ");
        // Serialising a `serde_json::Value` or a plain struct into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, value);
        self.buf.extend_from_slice(b"\n\n");
        self.mark(kind, tokens);
    }

    /// Appends a frame whose data is written verbatim.
    pub(crate) fn raw(&mut self, kind: FrameKind, event: Option<&str>, data: &[u8]) {
        switchyard_protocol::sse::write_event(&mut self.buf, event, data);
        self.mark(kind, 0);
    }

    /// Appends an AWS event-stream message (string headers, then the payload).
    pub(crate) fn event(
        &mut self,
        kind: FrameKind,
        tokens: u32,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) {
        crate::eventstream::write_frame(&mut self.buf, headers, payload);
        self.mark(kind, tokens);
    }

    fn mark(&mut self, kind: FrameKind, tokens: u32) {
        self.marks.push(Mark {
            end: self.buf.len(),
            kind,
            tokens,
        });
    }
}

/// How a stream fault ends the body.
#[derive(Debug, Clone)]
pub(crate) struct Break {
    pub fault: StreamFault,
    /// The dialect's in-band error frame, for `error_after`.
    pub error_frame: Vec<u8>,
    /// The dialect's unreadable frame, for `malformed_after`.
    pub malformed_frame: Vec<u8>,
    /// The dialect's keep-alive frame, for `ping_after` (empty where it has none).
    pub ping_frame: Vec<u8>,
}

/// The response body and the output tokens it carries.
pub(crate) fn into_body(sse: StreamBody, token_ms: u64, brk: Option<Break>) -> (Body, u64) {
    let Some(brk) = brk else {
        let tokens = sse.marks.iter().map(|m| u64::from(m.tokens)).sum();
        if token_ms == 0 {
            return (Body::from(sse.buf), tokens);
        }
        let frames = split(sse.buf, &sse.marks);
        return (paced(frames, token_ms, Tail::End), tokens);
    };
    let n = match brk.fault {
        StreamFault::CutAfter(n)
        | StreamFault::PrematureEndAfter(n)
        | StreamFault::MalformedAfter(n)
        | StreamFault::ErrorAfter(n)
        | StreamFault::StallAfter(n)
        | StreamFault::PingAfter(n) => n,
        StreamFault::CutAtEnd | StreamFault::HoldOpen => {
            let tokens = sse.marks.iter().map(|m| u64::from(m.tokens)).sum();
            let frames = split(sse.buf, &sse.marks);
            let tail = if brk.fault == StreamFault::HoldOpen {
                Tail::Stall
            } else {
                Tail::Cut
            };
            return (paced(frames, token_ms, tail), tokens);
        }
    };
    // Keep frames up to the n-th content frame (the opening ones before the first content frame
    // always), and never a terminal one.
    let mut keep = 0;
    let mut seen = 0;
    let mut tokens = 0u64;
    for mark in &sse.marks {
        let opening = seen == 0 && mark.kind == FrameKind::Other;
        if (seen == n && !opening) || mark.kind == FrameKind::Terminal {
            break;
        }
        if mark.kind == FrameKind::Content {
            seen += 1;
        }
        tokens += u64::from(mark.tokens);
        keep += 1;
    }
    let marks = &sse.marks[..keep];
    let mut buf = sse.buf;
    buf.truncate(marks.last().map_or(0, |m| m.end));
    let mut frames = split(buf, marks);
    let tail = match brk.fault {
        StreamFault::CutAfter(_) | StreamFault::CutAtEnd | StreamFault::HoldOpen => Tail::Cut,
        StreamFault::PrematureEndAfter(_) => Tail::End,
        StreamFault::MalformedAfter(_) => {
            frames.push(Bytes::from(brk.malformed_frame));
            Tail::End
        }
        StreamFault::ErrorAfter(_) => {
            frames.push(Bytes::from(brk.error_frame));
            Tail::End
        }
        StreamFault::StallAfter(_) => Tail::Stall,
        StreamFault::PingAfter(_) if brk.ping_frame.is_empty() => Tail::Stall,
        StreamFault::PingAfter(_) => Tail::Ping(Bytes::from(brk.ping_frame)),
    };
    (paced(frames, token_ms, tail), tokens)
}

/// A whole answer's body that falls silent half-way, for `stall_body`.
pub(crate) fn stalled_body(body: Vec<u8>) -> Body {
    let mut body = Bytes::from(body);
    let head = body.split_to(body.len() / 2);
    paced(vec![head], 0, Tail::Stall)
}

fn split(buf: Vec<u8>, marks: &[Mark]) -> Vec<Bytes> {
    let all = Bytes::from(buf);
    let mut start = 0;
    marks
        .iter()
        .map(|m| {
            let frame = all.slice(start..m.end);
            start = m.end;
            frame
        })
        .collect()
}

#[derive(Clone, PartialEq, Eq)]
enum Tail {
    End,
    Cut,
    /// Never end: the client gives up.
    Stall,
    /// Never end, sending this keep-alive frame every [`PING_EVERY`].
    Ping(Bytes),
}

const PING_EVERY: Duration = Duration::from_millis(100);

/// Long enough for the server to flush the frames already written before the cut.
const CUT_FLUSH: Duration = Duration::from_millis(20);

fn paced(frames: Vec<Bytes>, token_ms: u64, tail: Tail) -> Body {
    let delay = Duration::from_millis(token_ms);
    let state = (frames.into_iter(), true, false);
    let frames = stream::unfold(state, move |(mut frames, first, done)| {
        let tail = tail.clone();
        async move {
            if done {
                return None;
            }
            match frames.next() {
                Some(frame) => {
                    if !first && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(frame), (frames, false, false)))
                }
                None if tail == Tail::Stall => std::future::pending().await,
                None if let Tail::Ping(ping) = tail => {
                    tokio::time::sleep(PING_EVERY).await;
                    Some((Ok(ping), (frames, false, false)))
                }
                None if tail == Tail::Cut => {
                    // An error from the body makes the server drop the connection mid-body.
                    tokio::time::sleep(CUT_FLUSH).await;
                    let cut = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "simulated connection cut",
                    );
                    Some((Err(cut), (frames, false, true)))
                }
                None => None,
            }
        }
    });
    Body::from_stream(frames)
}

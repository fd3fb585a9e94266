//! The stream relay: after commit, upstream chunks are decoded and re-encoded into the client's
//! dialect one by one as they arrive (no buffering of the whole answer). A failure after commit
//! (break, stall, premature end, in-band provider error) becomes the dialect's in-stream error
//! event; a truncated stream never ends with the terminal success frame. Dropping the body (the
//! client went away) drops the upstream response, which cancels the upstream request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use switchyard_protocol::canonical::{
    ErrorClass, FinishReason, StreamEvent, UpstreamErrorInfo, Usage,
};
use switchyard_protocol::dialect::StreamEncoder;

use super::CommittedStream;
use crate::error::GatewayError;

/// Room made for a stream's first chunk to the client: the role chunk and the first event, with
/// the longest ids and model names in use, fit.
const FIRST_CHUNK_BYTES: usize = 1024;

/// How a relayed stream ended, reported once to whoever records the request.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    pub usage: Option<Usage>,
    /// `None` when the stream completed; the failure otherwise.
    pub error: Option<UpstreamErrorInfo>,
    /// The client disconnected before the end.
    pub cancelled: bool,
    pub first_chunk_at: Option<Instant>,
    /// The answer's text, when the caller asked for it to be captured (for the record).
    pub text: String,
    /// Characters of output seen, for an explicit estimate when usage is missing.
    pub output_chars: usize,
    /// Why the model stopped, when it said.
    pub finish: Option<FinishReason>,
    /// The model the provider says answered (empty when its stream named none).
    pub model: String,
    /// The provider's id of the answer, kept only when asked for (trace spans).
    pub response_id: String,
}

type OnEnd = Box<dyn FnOnce(StreamEnd) + Send>;

struct Relay {
    upstream: CommittedStream,
    encoder: Box<dyn StreamEncoder>,
    events: Vec<StreamEvent>,
    usage: Option<Usage>,
    done: bool,
    first_chunk_at: Option<Instant>,
    capture_text: bool,
    text: String,
    output_chars: usize,
    finish: Option<FinishReason>,
    model: String,
    keep_id: bool,
    response_id: String,
    on_end: Option<OnEnd>,
}

impl Relay {
    fn end(&mut self, error: Option<UpstreamErrorInfo>, cancelled: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(StreamEnd {
                usage: self.usage,
                error,
                cancelled,
                first_chunk_at: self.first_chunk_at,
                text: std::mem::take(&mut self.text),
                output_chars: self.output_chars,
                finish: self.finish.take(),
                model: std::mem::take(&mut self.model),
                response_id: std::mem::take(&mut self.response_id),
            });
        }
    }

    /// Encodes pending events; returns an in-band provider error if one came.
    fn encode_pending(&mut self, out: &mut Vec<u8>) -> Option<UpstreamErrorInfo> {
        let mut events = std::mem::take(&mut self.events);
        let mut failure = None;
        for event in &mut events {
            match event {
                StreamEvent::Start { .. } => {
                    self.encoder.event(event, out);
                    // Moved out once written: the events are cleared after this pass.
                    if let StreamEvent::Start { id, model } = event {
                        self.model = std::mem::take(model);
                        if self.keep_id {
                            self.response_id = std::mem::take(id);
                        }
                    }
                }
                StreamEvent::Error(e) => {
                    failure = Some(e.clone());
                    break;
                }
                StreamEvent::Usage(u) => {
                    match &mut self.usage {
                        Some(total) => total.merge(u),
                        None => self.usage = Some(*u),
                    }
                    self.encoder.event(event, out);
                }
                StreamEvent::TextDelta(t) | StreamEvent::RefusalDelta(t) => {
                    self.output_chars += t.len();
                    if self.capture_text {
                        self.text.push_str(t);
                    }
                    self.encoder.event(event, out);
                }
                StreamEvent::ToolCallDelta { arguments, .. } => {
                    self.output_chars += arguments.len();
                    self.encoder.event(event, out);
                }
                StreamEvent::Finish(reason) => {
                    self.finish = Some(reason.clone());
                    self.encoder.event(event, out);
                }
                other => self.encoder.event(other, out),
            }
        }
        self.events = events;
        self.events.clear();
        failure
    }

    /// Decodes bytes from the provider and encodes what they hold for the client; a decode
    /// failure or an in-band error ends the stream with the dialect's error event.
    fn translate(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Err(e) = self.upstream.decoder.push(bytes, &mut self.events) {
            self.events.clear();
            self.fail(e, out);
        } else if let Some(e) = self.encode_pending(out) {
            self.fail(e, out);
        } else {
            self.end_if_terminated(out);
        }
    }

    /// Reads the rest of the provider's body after its terminal event, so that its connection
    /// goes back to the pool (a body dropped before its end closes the connection, and the
    /// next request would pay for a new one). Nearly always the body's own end came in the same
    /// read and is taken at once; otherwise it is awaited off the stream, for as long as a
    /// silence may last.
    fn release_body(&mut self) {
        use futures::FutureExt;
        let mut body =
            std::mem::replace(&mut self.upstream.body, Box::pin(futures::stream::empty()));
        match body.next().now_or_never() {
            Some(None | Some(Err(_))) => {}
            Some(Some(Ok(_))) | None => {
                let stall = self.upstream.stall;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(stall, async {
                        while let Some(Ok(_)) = body.next().await {}
                    })
                    .await;
                });
            }
        }
    }

    /// Ends the client's stream once the provider's terminal event came, without waiting for
    /// its body to close: a provider (or a proxy before it) that holds the connection open
    /// after `[DONE]` would otherwise hold back the end, and fail the answer at the stall
    /// timeout. The rest of the body is dropped with the relay.
    fn end_if_terminated(&mut self, out: &mut Vec<u8>) {
        if self.done || !self.upstream.decoder.terminated() {
            return;
        }
        self.release_body();
        match self.upstream.decoder.finish(&mut self.events) {
            Ok(()) => match self.encode_pending(out) {
                Some(e) => self.fail(e, out),
                None => self.complete(out),
            },
            Err(e) => {
                self.encode_pending(out);
                self.fail(e, out);
            }
        }
    }

    fn fail(&mut self, error: UpstreamErrorInfo, out: &mut Vec<u8>) {
        let client = GatewayError::Upstream {
            last: error.clone(),
            all_rate_limited: false,
            attempts: 1,
        }
        .to_client();
        self.encoder.error(&client, out);
        self.done = true;
        self.end(Some(error), false);
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.encoder.finish(out);
        self.done = true;
        self.end(None, false);
    }

    /// Produces the next chunk for the client, or `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        // The events decoded before commit go out first, with the end if it already came.
        if !self.upstream.buffered.is_empty() || self.upstream.ended {
            self.events = std::mem::take(&mut self.upstream.buffered);
            // Room for the usual first chunk (the role and the first words) without regrowing.
            out.reserve(FIRST_CHUNK_BYTES);
            if let Some(e) = self.encode_pending(&mut out) {
                self.fail(e, &mut out);
            } else if self.upstream.ended {
                self.complete(&mut out);
            } else if self.upstream.unread.is_empty() {
                self.end_if_terminated(&mut out);
            }
            self.first_chunk_at.get_or_insert_with(Instant::now);
            return Some(Bytes::from(out));
        }
        if !self.upstream.unread.is_empty() {
            // The first event went out as a chunk of its own; letting the connection write it
            // before the rest of that read is translated is what puts it on the wire first.
            tokio::task::yield_now().await;
            let unread = std::mem::take(&mut self.upstream.unread);
            out.reserve(unread.len() + 256);
            self.translate(&unread, &mut out);
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
        loop {
            let left = self
                .upstream
                .deadline
                .saturating_duration_since(Instant::now());
            let wait = self.upstream.stall.min(left);
            let next = tokio::time::timeout(wait, self.upstream.body.next()).await;
            match next {
                // The total timeout, not a silence, when it came first.
                Err(_) if left < self.upstream.stall => {
                    self.fail(total_timeout_error(), &mut out);
                }
                Err(_) => {
                    self.fail(stall_error(wait), &mut out);
                }
                Ok(Some(Ok(chunk))) => {
                    // Re-encoded, a read comes out about as long as it went in: sized once
                    // instead of grown event by event.
                    out.reserve(chunk.len() + 256);
                    self.translate(&chunk, &mut out);
                }
                // A connection that broke after the stream's terminal event (a reset before
                // the chunked body's own end) lost nothing: the answer is whole.
                Ok(Some(Err(_))) if self.upstream.decoder.finish(&mut self.events).is_ok() => {
                    if let Some(e) = self.encode_pending(&mut out) {
                        self.fail(e, &mut out);
                    } else {
                        self.complete(&mut out);
                    }
                }
                Ok(Some(Err(_))) => {
                    self.fail(
                        UpstreamErrorInfo {
                            class: ErrorClass::StreamInterrupted,
                            status: None,
                            message: "the provider's stream broke off".into(),
                            provider_code: None,
                            retry_after_secs: None,
                            param: None,
                        },
                        &mut out,
                    );
                }
                Ok(None) => match self.upstream.decoder.finish(&mut self.events) {
                    Ok(()) => {
                        if let Some(e) = self.encode_pending(&mut out) {
                            self.fail(e, &mut out);
                        } else {
                            self.complete(&mut out);
                        }
                    }
                    Err(e) => {
                        self.encode_pending(&mut out);
                        self.fail(e, &mut out);
                    }
                },
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            if self.done {
                return None;
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped before its end: the client went away mid-stream.
        self.end(None, true);
    }
}

/// The provider stopped sending part-way through its answer, a stream or a whole one.
pub(super) fn stall_error(after: Duration) -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::Timeout,
        status: None,
        message: format!(
            "the provider stopped sending for {} ms mid-answer",
            after.as_millis()
        ),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

/// The answer went on past the provider's total timeout.
fn total_timeout_error() -> UpstreamErrorInfo {
    UpstreamErrorInfo {
        class: ErrorClass::Timeout,
        status: None,
        message: "the answer was still streaming at the provider's total timeout".into(),
        provider_code: None,
        retry_after_secs: None,
        param: None,
    }
}

/// The client-facing body of a committed stream.
pub fn relay(
    upstream: CommittedStream,
    encoder: Box<dyn StreamEncoder>,
    capture_text: bool,
    keep_id: bool,
    on_end: OnEnd,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let relay = Relay {
        upstream,
        encoder,
        events: Vec::new(),
        usage: None,
        done: false,
        first_chunk_at: None,
        capture_text,
        text: String::new(),
        output_chars: 0,
        finish: None,
        model: String::new(),
        keep_id,
        response_id: String::new(),
        on_end: Some(on_end),
    };
    futures::stream::unfold(relay, |mut relay| async move {
        relay.next_chunk().await.map(|chunk| (Ok(chunk), relay))
    })
}

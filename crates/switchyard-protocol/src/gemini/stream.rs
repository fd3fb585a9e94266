//! Decoder for `streamGenerateContent?alt=sse`: each SSE event carries a whole
//! `GenerateContentResponse` chunk holding the new parts only, with cumulative usage.
//!
//! Gemini sends no `[DONE]`: a stream is complete once a candidate reported a `finishReason`
//! (or the prompt was blocked). An in-band `{"error": …}` chunk is reported as an error event
//! and also ends the stream; nothing after it is read.

use super::provider::{
    arguments_text, map_finish_reason, status_to_error, tool_call_id, usage_from_metadata,
};
use super::wire::{GenerateContentResponse, StreamChunk};
use crate::canonical::{FinishReason, StreamEvent, UpstreamErrorInfo};
use crate::dialect::{StreamDecoder, interrupted, malformed};
use crate::sse::{PushError, SseParser};

#[derive(Debug, Default)]
pub(super) struct GeminiStreamDecoder {
    sse: SseParser,
    started: bool,
    /// The first chunk's `responseId`, which names synthesized tool call ids.
    response_id: String,
    /// Tool calls seen so far; the next one gets this index.
    tool_calls: u32,
    finished: bool,
    /// A chunk with the finish reason carried the usage too: Gemini's last chunk.
    ended: bool,
    /// An in-band error was reported; the stream is over.
    failed: bool,
    /// Some text, reasoning or call came: a botched call at the end no longer leaves nothing.
    said: bool,
}

impl GeminiStreamDecoder {
    pub(super) fn new() -> Self {
        Self::default()
    }

    fn on_data(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.failed || data.trim().is_empty() {
            return Ok(());
        }
        // The first chunk names the stream's response and model; later ones repeat them.
        let read = if self.started {
            super::reply::read_later_chunk(data)
        } else {
            super::reply::read_chunk(data)
        };
        let chunk: StreamChunk = match read {
            Some(chunk) => chunk,
            None => serde_json::from_str(data)
                .map_err(|e| malformed(format!("unreadable Gemini stream chunk: {e}")))?,
        };
        if let Some(error) = chunk.error {
            self.failed = true;
            out.push(StreamEvent::Error(status_to_error(&error, None)));
            return Ok(());
        }
        self.on_response(chunk.response, out);
        Ok(())
    }

    fn on_response(&mut self, response: GenerateContentResponse, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            self.response_id = response.response_id.clone().unwrap_or_default();
            out.push(StreamEvent::Start {
                id: self.response_id.clone(),
                model: response.model_version.clone().unwrap_or_default(),
            });
        }
        let candidate = response
            .candidates
            .into_iter()
            .find(|c| c.index.unwrap_or(0) == 0);
        let mut finish = None;
        if let Some(candidate) = candidate {
            // The parts are taken apart: their texts become the events' without a copy.
            for part in candidate.content.into_iter().flat_map(|c| c.parts) {
                // A function call's signature is its own event, just before the call starts (the
                // tool call's extras in `parse_chat`); a text part's signature goes before its
                // text, as a signed reasoning part does in `parse_chat`.
                let signature = part.thought_signature;
                if let Some(call) = &part.function_call {
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    out.extend(
                        signature
                            .map(|signature| StreamEvent::ToolCallSignature { index, signature }),
                    );
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: tool_call_id(&self.response_id, call.id.as_deref(), index),
                        name: call.name.clone(),
                    });
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: arguments_text(call.args.as_ref()),
                    });
                } else if let Some(text) = part.text {
                    if part.thought == Some(true) {
                        if !text.is_empty() {
                            out.push(StreamEvent::ReasoningDelta(text));
                        }
                        out.extend(signature.map(StreamEvent::ReasoningSignature));
                    } else {
                        out.extend(signature.map(StreamEvent::ReasoningSignature));
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text));
                        }
                    }
                }
            }
            // Looked for until found, not again for every later chunk.
            self.said = self.said
                || out.iter().any(|e| {
                    matches!(
                        e,
                        StreamEvent::TextDelta(_)
                            | StreamEvent::RefusalDelta(_)
                            | StreamEvent::ReasoningDelta(_)
                            | StreamEvent::ToolCallStart { .. }
                    )
                });
            if let Some(e) = candidate
                .finish_reason
                .as_deref()
                .filter(|_| !self.said)
                .and_then(super::provider::botched_call)
            {
                self.failed = true;
                out.push(StreamEvent::Error(e));
                return;
            }
            // After the parts: a call among them makes a stop a tool-call stop.
            finish = candidate
                .finish_reason
                .as_deref()
                .map(|reason| map_finish_reason(reason, self.tool_calls > 0));
        } else if response
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some())
        {
            finish = Some(FinishReason::ContentFilter);
        }
        if let Some(reason) = finish
            && !self.finished
        {
            self.finished = true;
            out.push(StreamEvent::Finish(reason));
        }
        if let Some(usage) = &response.usage_metadata {
            // Gemini's last chunk holds the finish reason and the whole usage (usage on every
            // chunk is cumulative): with both, the answer is whole.
            self.ended |= self.finished;
            out.push(StreamEvent::Usage(usage_from_metadata(usage)));
        }
    }
}

impl StreamDecoder for GeminiStreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        // The parser is taken out for the call, so that the handler may use the decoder. Events
        // completed before a framing error are still delivered.
        let mut sse = std::mem::take(&mut self.sse);
        let pushed = sse.push_each(chunk, &mut |_, data| self.on_data(data, out));
        self.sse = sse;
        pushed.map_err(|e| match e {
            PushError::Sse(e) => malformed(format!("Gemini stream: {e}")),
            PushError::Event(e) => e,
        })
    }

    fn terminated(&self) -> bool {
        self.ended
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.finished || self.failed {
            Ok(())
        } else {
            Err(interrupted("Gemini stream ended before a finishReason"))
        }
    }
}

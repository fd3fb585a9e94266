//! Decoder for `ConverseStream`: event-stream messages whose `:event-type` names the event and
//! whose payload is its JSON. A stream is complete once `messageStop` came; usage follows in
//! `metadata`. An exception message (`:message-type: exception`) is reported as an error event
//! and ends the stream.

use serde_json::Value;

use super::event_stream::{Decoder, Message};
use super::provider::{TokenUsage, error_class, finish_reason};
use crate::canonical::{ErrorClass, StreamEvent, UpstreamErrorInfo};
use crate::dialect::{StreamDecoder, interrupted, malformed};

#[derive(Debug, Default)]
pub(super) struct BedrockStreamDecoder {
    frames: Decoder,
    started: bool,
    /// Content block index → tool call index, for the tool use blocks seen so far.
    /// Each tool block's index in the answer, its tool call's index, and whether any of its
    /// arguments came yet.
    tool_blocks: Vec<(u64, u32, bool)>,
    stopped: bool,
    /// `metadata` came, with the usage: the stream's last event.
    ended: bool,
    /// An exception was reported; the stream is over.
    failed: bool,
    /// The content block the last text or citation belonged to: a citation belongs to its own
    /// block's text, so a new block's text starts a block of its own.
    text_block: Option<u64>,
}

impl BedrockStreamDecoder {
    fn on_message(
        &mut self,
        message: Message,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), UpstreamErrorInfo> {
        if self.failed {
            return Ok(());
        }
        if message.header(":message-type") == Some("exception") {
            self.failed = true;
            out.push(StreamEvent::Error(exception(&message)));
            return Ok(());
        }
        let Some(kind) = message.header(":event-type") else {
            return Ok(());
        };
        let event: Value = serde_json::from_slice(&message.payload)
            .map_err(|e| malformed(format!("unreadable ConverseStream {kind} event: {e}")))?;
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
            });
        }
        match kind {
            "contentBlockStart" => {
                if let Some(tool_use) = event["start"].get("toolUse") {
                    let index = self.tool_blocks.len() as u32;
                    let block = event["contentBlockIndex"].as_u64().unwrap_or_default();
                    self.tool_blocks.push((block, index, false));
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: text(&tool_use["toolUseId"]),
                        name: text(&tool_use["name"]),
                    });
                }
            }
            "contentBlockDelta" => {
                let delta = &event["delta"];
                let block = event["contentBlockIndex"].as_u64().unwrap_or_default();
                let said = delta.get("text");
                let citation = delta.get("citation");
                if (said.is_some() || citation.is_some())
                    && self.text_block.replace(block).is_some_and(|b| b != block)
                {
                    out.push(StreamEvent::TextBlockStart);
                }
                if let Some(Value::String(t)) = said {
                    out.push(StreamEvent::TextDelta(t.clone()));
                } else if let Some(citation) = citation {
                    out.extend(
                        super::provider::anthropic_citation(citation).map(StreamEvent::Citation),
                    );
                } else if let Some(tool_use) = delta.get("toolUse") {
                    let block = event["contentBlockIndex"].as_u64().unwrap_or_default();
                    let Some((_, index, said)) =
                        self.tool_blocks.iter_mut().find(|(b, _, _)| *b == block)
                    else {
                        return Err(malformed(
                            "a ConverseStream toolUse delta for a block that did not start",
                        ));
                    };
                    let arguments = text(&tool_use["input"]);
                    if !arguments.is_empty() {
                        *said = true;
                        out.push(StreamEvent::ToolCallDelta {
                            index: *index,
                            arguments,
                        });
                    }
                } else if let Some(reasoning) = delta.get("reasoningContent") {
                    if let Some(Value::String(t)) = reasoning.get("text") {
                        out.push(StreamEvent::ReasoningDelta(t.clone()));
                    } else if let Some(Value::String(s)) = reasoning.get("signature") {
                        out.push(StreamEvent::ReasoningSignature(s.clone()));
                    } else if let Some(Value::String(data)) = reasoning.get("redactedContent") {
                        out.push(StreamEvent::RedactedReasoning(data.clone()));
                    }
                }
            }
            "messageStop" => {
                self.stopped = true;
                let reason = event["stopReason"].as_str().unwrap_or("end_turn");
                out.push(StreamEvent::Finish(finish_reason(
                    reason,
                    !self.tool_blocks.is_empty(),
                    event.get("additionalModelResponseFields"),
                )));
            }
            "metadata" => {
                self.ended = true;
                if let Some(usage) = event.get("usage") {
                    let usage: TokenUsage = serde_json::from_value(usage.clone())
                        .map_err(|e| malformed(format!("unreadable ConverseStream usage: {e}")))?;
                    out.push(StreamEvent::Usage(usage.canonical()));
                }
            }
            "contentBlockStop" => {
                // A tool without parameters streams no arguments: they are the empty object.
                let block = event["contentBlockIndex"].as_u64().unwrap_or_default();
                if let Some((_, index, said)) =
                    self.tool_blocks.iter_mut().find(|(b, _, _)| *b == block)
                    && !*said
                {
                    *said = true;
                    out.push(StreamEvent::ToolCallDelta {
                        index: *index,
                        arguments: "{}".into(),
                    });
                }
            }
            // messageStart carries nothing the canonical stream needs.
            _ => {}
        }
        Ok(())
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// An exception message: its `:exception-type` and the payload's message.
fn exception(message: &Message) -> UpstreamErrorInfo {
    let kind = message
        .header(":exception-type")
        .unwrap_or("exception")
        .to_owned();
    let text = serde_json::from_slice::<Value>(&message.payload)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("Bedrock reported {kind} in the stream"));
    // Exception names in streams start lower case (`throttlingException`).
    let mut name = kind.clone();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    UpstreamErrorInfo {
        class: error_class(&name, &text).unwrap_or(ErrorClass::ServerError),
        status: None,
        message: text,
        provider_code: Some(kind),
        retry_after_secs: None,
        param: None,
    }
}

impl StreamDecoder for BedrockStreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        let mut frames = std::mem::take(&mut self.frames);
        let mut failure = None;
        let pushed = frames.push(chunk, &mut |message| {
            self.on_message(message, out).map_err(|e| {
                let text = e.message.clone();
                failure = Some(e);
                text
            })
        });
        self.frames = frames;
        match (pushed, failure) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(e)) => Err(e),
            (Err(framing), None) => Err(malformed(format!("ConverseStream: {framing}"))),
        }
    }

    fn terminated(&self) -> bool {
        self.ended
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.ended || self.failed {
            Ok(())
        } else if self.stopped {
            // As a finish reason without `[DONE]`: the usage that follows was cut off.
            Err(interrupted(
                "ConverseStream ended after messageStop but before its metadata (the usage)",
            ))
        } else if self.frames.pending() > 0 {
            Err(interrupted("ConverseStream ended inside a message"))
        } else {
            Err(interrupted("ConverseStream ended before messageStop"))
        }
    }
}

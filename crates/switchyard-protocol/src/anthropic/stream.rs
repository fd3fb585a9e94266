//! Anthropic streams in both directions. The decoder turns an upstream SSE body
//! (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`, `error`) into
//! canonical events, whatever the chunking; the encoder writes canonical events as that same
//! event sequence for clients.
//!
//! A cited answer comes as several text blocks, each with its `citations_delta` events: the
//! decoder marks where each text block starts and passes every citation on as it was written,
//! and the encoder writes the same blocks and citations for an Anthropic client.
//!
//! Server tools' blocks (`server_tool_use`, `web_search_tool_result`, …) pass whole, a call's
//! input deltas with it, from an Anthropic provider to an Anthropic client.
//!
//! A Gemini call's signature (`thoughtSignature`), which a `tool_use` block has no place for,
//! goes to the client in a `redacted_thinking` block of its own just before the call.
//!
//! A `redacted_thinking` block passes whole (`StreamEvent::RedactedReasoning`), as in a whole
//! answer, so that a client can send it back with the history.

use std::collections::HashMap;

use serde_json::Value;

use super::ingress::{error_object, message_id};
use super::wire::{self, ContentBlock, ContentBlockDelta, ErrorObject, MessageStreamEvent};
use crate::canonical::{FinishReason, StreamEvent, UpstreamErrorInfo, Usage};
use crate::dialect::{EncodeCtx, StreamDecoder, StreamEncoder, interrupted, malformed};
use crate::error::ClientError;
use crate::gemini;
use crate::json;
use crate::sse::{PushError, SseParser, write_event};
use crate::text_frame::TextFrame;

/// What kind of block a stream index holds, as far as the decoder cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A client tool call, its position among the answer's tool calls, and whether any of its
    /// arguments came yet.
    Tool(u32, bool),
    /// A server tool's call or result, kept whole.
    ServerTool,
    /// Redacted thinking (passed on whole at its start) and block types added later.
    Skipped,
}

/// Anthropic SSE body → canonical events.
#[derive(Debug, Default)]
pub struct AnthropicStreamDecoder {
    parser: SseParser,
    blocks: HashMap<u32, BlockKind>,
    tool_calls: u32,
    usage: Usage,
    started: bool,
    /// `message_stop` or an in-stream `error` was seen: nothing more is read.
    ended: bool,
    /// Frames the text deltas after the last one parsed whole (see `text_frame`).
    text: TextFrame,
}

/// Where a `text_delta` event's text lies in the event's JSON (borrowed from it).
#[derive(serde::Deserialize)]
pub(super) struct TextDeltaAt<'a> {
    #[serde(borrow)]
    pub(super) delta: TextAt<'a>,
}

#[derive(serde::Deserialize)]
pub(super) struct TextAt<'a> {
    #[serde(borrow)]
    pub(super) text: &'a serde_json::value::RawValue,
}

impl AnthropicStreamDecoder {
    /// One event's data.
    fn on_data(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.ended {
            return Ok(());
        }
        // A text delta shaped like the last one: its text is all that differs.
        if let Some(text) = self.text.text_of(data) {
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta(text));
            }
            return Ok(());
        }
        if let Some((event, text_at)) = super::reply::read_event(data) {
            self.handle(event, out)?;
            if let Some(text) = text_at {
                self.text.set(data, text, None);
            }
            return Ok(());
        }
        let event: MessageStreamEvent = serde_json::from_str(data)
            .map_err(|e| malformed(format!("Anthropic stream event is not valid: {e}")))?;
        let text_delta = matches!(
            &event,
            MessageStreamEvent::ContentBlockDelta {
                delta: ContentBlockDelta::TextDelta { .. },
                ..
            }
        );
        self.handle(event, out)?;
        if text_delta && let Ok(at) = serde_json::from_str::<TextDeltaAt>(data) {
            self.text.set(data, at.delta.text.get(), None);
        }
        Ok(())
    }

    pub fn new() -> Self {
        Self::default()
    }

    fn handle(
        &mut self,
        event: MessageStreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), UpstreamErrorInfo> {
        match event {
            MessageStreamEvent::MessageStart { message } => {
                self.started = true;
                out.push(StreamEvent::Start {
                    id: message.id,
                    model: message.model,
                });
                if let Some(usage) = message.usage {
                    self.usage = usage.to_canonical();
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            MessageStreamEvent::Ping | MessageStreamEvent::Unknown => {}
            MessageStreamEvent::Error { error } => {
                self.ended = true;
                out.push(StreamEvent::Error(stream_error(error)));
            }
            MessageStreamEvent::MessageStop => {
                self.require_start("message_stop")?;
                self.ended = true;
            }
            MessageStreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                self.require_start("content_block_start")?;
                let server_tool = content_block.server_tool();
                let kind = match content_block {
                    _ if server_tool.is_some() => {
                        out.extend(server_tool.map(StreamEvent::ServerToolStart));
                        BlockKind::ServerTool
                    }
                    ContentBlock::Text { text, citations } => {
                        out.push(StreamEvent::TextBlockStart);
                        if let Some(Value::Array(citations)) = citations {
                            out.extend(citations.into_iter().map(StreamEvent::Citation));
                        }
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text));
                        }
                        BlockKind::Text
                    }
                    ContentBlock::Thinking {
                        thinking,
                        signature,
                    } => {
                        if !thinking.is_empty() {
                            out.push(StreamEvent::ReasoningDelta(thinking));
                        }
                        if !signature.is_empty() {
                            out.push(StreamEvent::ReasoningSignature(signature));
                        }
                        BlockKind::Thinking
                    }
                    ContentBlock::ToolUse { id, name, input } => {
                        let tool = self.tool_calls;
                        self.tool_calls += 1;
                        out.push(StreamEvent::ToolCallStart {
                            index: tool,
                            id,
                            name,
                        });
                        // The API starts tool blocks with `input: {}` and streams the arguments;
                        // anything already present is the start of them.
                        let said = input.as_object().is_some_and(|o| !o.is_empty());
                        if said {
                            out.push(StreamEvent::ToolCallDelta {
                                index: tool,
                                arguments: input.to_string(),
                            });
                        }
                        BlockKind::Tool(tool, said)
                    }
                    ContentBlock::RedactedThinking { data } => {
                        out.push(StreamEvent::RedactedReasoning(data));
                        BlockKind::Skipped
                    }
                    _ => BlockKind::Skipped,
                };
                self.blocks.insert(index, kind);
            }
            MessageStreamEvent::ContentBlockDelta { index, delta } => {
                self.require_start("content_block_delta")?;
                let kind = self.blocks.get(&index).copied();
                match (delta, kind) {
                    (ContentBlockDelta::TextDelta { text }, _) => {
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text));
                        }
                    }
                    (ContentBlockDelta::ThinkingDelta { thinking }, _) => {
                        if !thinking.is_empty() {
                            out.push(StreamEvent::ReasoningDelta(thinking));
                        }
                    }
                    (ContentBlockDelta::SignatureDelta { signature }, _) => {
                        out.push(StreamEvent::ReasoningSignature(signature));
                    }
                    (ContentBlockDelta::CitationsDelta { citation }, Some(BlockKind::Text)) => {
                        out.push(StreamEvent::Citation(citation));
                    }
                    (
                        ContentBlockDelta::InputJsonDelta { partial_json },
                        Some(BlockKind::Tool(tool, _)),
                    ) => {
                        if !partial_json.is_empty() {
                            self.blocks.insert(index, BlockKind::Tool(tool, true));
                            out.push(StreamEvent::ToolCallDelta {
                                index: tool,
                                arguments: partial_json,
                            });
                        }
                    }
                    (
                        ContentBlockDelta::InputJsonDelta { partial_json },
                        Some(BlockKind::ServerTool),
                    ) => {
                        if !partial_json.is_empty() {
                            out.push(StreamEvent::ServerToolInputDelta(partial_json));
                        }
                    }
                    // Arguments of blocks that are not calls, citations outside a text block,
                    // and deltas of kinds added later.
                    (
                        ContentBlockDelta::InputJsonDelta { .. }
                        | ContentBlockDelta::CitationsDelta { .. }
                        | ContentBlockDelta::Other,
                        _,
                    ) => {}
                }
            }
            MessageStreamEvent::ContentBlockStop { index } => {
                self.require_start("content_block_stop")?;
                // A tool without parameters streams no arguments (or one empty piece): its
                // arguments are the empty object, which a client parses, not nothing.
                if let Some(BlockKind::Tool(tool, false)) = self.blocks.get(&index).copied() {
                    out.push(StreamEvent::ToolCallDelta {
                        index: tool,
                        arguments: "{}".into(),
                    });
                }
            }
            MessageStreamEvent::MessageDelta { delta, usage } => {
                self.require_start("message_delta")?;
                if let Some(reason) = delta.stop_reason.as_deref() {
                    out.push(StreamEvent::Finish(wire::finish_reason(
                        Some(reason),
                        delta.stop_sequence.as_deref(),
                    )));
                }
                if let Some(usage) = usage {
                    // `message_delta` usage is cumulative; the input side is present only in
                    // newer API versions, otherwise the `message_start` counts stand.
                    if let Some(output) = usage.output_tokens {
                        self.usage.output_tokens = output;
                    }
                    let counts = usage.to_canonical();
                    if usage.has_input_side() {
                        self.usage.input_tokens = counts.input_tokens;
                        self.usage.cache_read_tokens = counts.cache_read_tokens;
                        self.usage.cache_write_tokens = counts.cache_write_tokens;
                        // `MessageDeltaUsage` has no split of the writes by lifetime: the
                        // start's stands.
                        if usage.cache_creation.is_some() {
                            self.usage.cache_write_1h_tokens = counts.cache_write_1h_tokens;
                        }
                        self.usage.cache_write_1h_tokens = self
                            .usage
                            .cache_write_1h_tokens
                            .min(counts.cache_write_tokens);
                    }
                    if usage.server_tool_use.is_some() {
                        self.usage.web_search_requests = counts.web_search_requests;
                        self.usage.web_fetch_requests = counts.web_fetch_requests;
                    }
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
        }
        Ok(())
    }

    /// Forgets the text frame, so that the next event is parsed whole (tests compare both ways).
    #[cfg(test)]
    pub(crate) fn forget_text_frame(&mut self) {
        self.text.forget();
    }

    /// Text deltas read through the text frame so far.
    #[cfg(test)]
    pub(crate) fn framed_texts(&self) -> usize {
        self.text.hits
    }

    fn require_start(&self, event: &str) -> Result<(), UpstreamErrorInfo> {
        if self.started {
            Ok(())
        } else {
            Err(malformed(format!(
                "Anthropic stream sent `{event}` before `message_start`"
            )))
        }
    }
}

/// An in-stream `error` event as an upstream error.
fn stream_error(error: ErrorObject) -> UpstreamErrorInfo {
    let class = wire::error_class(&error.kind, &error.message)
        .unwrap_or(crate::canonical::ErrorClass::ServerError);
    UpstreamErrorInfo {
        class,
        status: None,
        message: if error.message.is_empty() {
            format!("Anthropic stream reported {}", error.kind)
        } else {
            error.message
        },
        provider_code: Some(error.kind),
        retry_after_secs: None,
        param: None,
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        if self.ended {
            return Ok(());
        }
        // The parser is taken out for the call, so that the handler may use the decoder.
        let mut parser = std::mem::take(&mut self.parser);
        let pushed = parser.push_each(chunk, &mut |_, data| self.on_data(data, out));
        self.parser = parser;
        pushed.map_err(|e| match e {
            PushError::Sse(e) => malformed(format!("Anthropic stream: {e}")),
            PushError::Event(e) => e,
        })
    }

    fn terminated(&self) -> bool {
        self.ended
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        // An in-stream `error` already reported the failure as an event.
        if self.ended {
            Ok(())
        } else {
            Err(interrupted("Anthropic stream ended before `message_stop`"))
        }
    }
}

/// The block the encoder has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text {
        index: u32,
    },
    /// `signed` once a signature was written: the next reasoning starts a new block.
    Thinking {
        index: u32,
        signed: bool,
    },
    Tool {
        index: u32,
        tool: u32,
    },
    ServerTool {
        index: u32,
    },
}

impl OpenBlock {
    fn index(self) -> u32 {
        match self {
            OpenBlock::Text { index }
            | OpenBlock::Thinking { index, .. }
            | OpenBlock::Tool { index, .. }
            | OpenBlock::ServerTool { index } => index,
        }
    }
}

/// Canonical events → Anthropic SSE, for clients of `POST /v1/messages`.
///
/// `message_start` is written lazily, just before the first block (or at the end), so it can
/// carry input usage that arrives right after `Start`. A new block starts whenever the kind of
/// content changes or a new tool call begins. The stop reason is held until [`finish`] so the
/// closing `message_delta` carries the last usage, whether usage came before or after `Finish`.
///
/// [`finish`]: StreamEncoder::finish
#[derive(Debug)]
pub struct AnthropicStreamEncoder {
    id: String,
    model: String,
    usage: Usage,
    started: bool,
    next_index: u32,
    open: Option<OpenBlock>,
    /// Block index of every tool call seen, for argument fragments that arrive late.
    tool_blocks: HashMap<u32, u32>,
    stop: Option<FinishReason>,
    done: bool,
    /// For a stream whose provider says no usage: the prompt's estimate, and the output's
    /// characters seen (text, thinking, tool arguments).
    prompt_estimate: u64,
    output_chars: usize,
    usage_said: bool,
}

/// A `text_delta` event up to its block's index, then from the index to its text.
const TEXT_DELTA_HEAD: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":";

impl AnthropicStreamEncoder {
    pub fn new(ctx: EncodeCtx) -> Self {
        Self {
            id: message_id(&ctx.id),
            model: ctx.model,
            prompt_estimate: ctx.prompt_estimate,
            output_chars: 0,
            usage_said: false,
            usage: Usage::default(),
            started: false,
            next_index: 0,
            open: None,
            tool_blocks: HashMap::new(),
            stop: None,
            done: false,
        }
    }

    pub(super) fn write(event: &MessageStreamEvent, out: &mut Vec<u8>) {
        let name = match event {
            MessageStreamEvent::MessageStart { .. } => "message_start",
            MessageStreamEvent::ContentBlockStart { .. } => "content_block_start",
            MessageStreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            MessageStreamEvent::ContentBlockStop { .. } => "content_block_stop",
            MessageStreamEvent::MessageDelta { .. } => "message_delta",
            MessageStreamEvent::MessageStop => "message_stop",
            MessageStreamEvent::Ping => "ping",
            MessageStreamEvent::Error { .. } => "error",
            MessageStreamEvent::Unknown => return,
        };
        // Serialising these plain values cannot fail.
        if let Ok(data) = serde_json::to_vec(event) {
            write_event(out, Some(name), &data);
        }
    }

    /// `message_start`, once: the message's skeleton, written as [`Self::write`] writes it (a
    /// test holds the two together). So are the other events a text answer is made of
    /// ([`Self::block_stop`], [`Self::text_block`]'s start, [`StreamEncoder::finish`]'s), which
    /// every stream has: no serializer for them.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        // A provider that counts the prompt only at the end (OpenAI's, Gemini's, Bedrock's
        // streams) has said nothing yet: the prompt as admitted stands in, as Anthropic's own
        // stream opens with its count (clients size their context by it); `message_delta`
        // then carries the provider's.
        if self.usage.input_tokens == 0 && self.prompt_estimate > 0 {
            let usage = Usage {
                input_tokens: self.prompt_estimate,
                ..self.usage
            };
            Self::message_start(&self.id, &self.model, &usage, out);
        } else {
            Self::message_start(&self.id, &self.model, &self.usage, out);
        }
    }

    /// `message_start` of the message `id` from `model`, with the counts known so far.
    pub(super) fn message_start(id: &str, model: &str, usage: &Usage, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        json::write_str(out, id);
        out.extend_from_slice(
            b",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":",
        );
        json::write_str(out, model);
        out.extend_from_slice(b",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        wire::Usage::full(usage).write(out);
        out.extend_from_slice(b"}}\n\n");
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            Self::block_stop(open.index(), out);
        }
    }

    /// `content_block_stop`.
    pub(super) fn block_stop(index: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
        );
        json::write_uint(out, index.into());
        out.extend_from_slice(b"}\n\n");
    }

    /// The next block's index, after the message's start and the open block's end.
    fn next_block(&mut self, out: &mut Vec<u8>) -> u32 {
        self.ensure_started(out);
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    fn open(&mut self, block: ContentBlock, out: &mut Vec<u8>) -> u32 {
        let index = self.next_block(out);
        Self::write(
            &MessageStreamEvent::ContentBlockStart {
                index,
                content_block: block,
            },
            out,
        );
        index
    }

    fn delta(index: u32, delta: ContentBlockDelta, out: &mut Vec<u8>) {
        Self::write(&MessageStreamEvent::ContentBlockDelta { index, delta }, out);
    }

    /// A `text_delta`, a stream's most frequent event, written as [`Self::write`] writes it (a
    /// test holds the two together) without a copy of the text or a serializer.
    pub(super) fn text_delta(index: u32, text: &str, out: &mut Vec<u8>) {
        Self::string_delta(index, b"text_delta\",\"text\":", text, out);
    }

    /// A `thinking_delta`, as [`Self::write`] writes it (a test holds the two together): a
    /// thinking model streams more of these than of text.
    pub(super) fn thinking_delta(index: u32, thinking: &str, out: &mut Vec<u8>) {
        Self::string_delta(index, b"thinking_delta\",\"thinking\":", thinking, out);
    }

    /// An `input_json_delta`, a fragment of a tool call's input, as [`Self::write`] writes it:
    /// an agent's turn streams many.
    pub(super) fn input_json_delta(index: u32, partial_json: &str, out: &mut Vec<u8>) {
        Self::string_delta(
            index,
            b"input_json_delta\",\"partial_json\":",
            partial_json,
            out,
        );
    }

    /// A delta of one string: its type and the string's key (`kind_and_key`, between the type's
    /// opening quote and the string), then the string.
    fn string_delta(index: u32, kind_and_key: &[u8], value: &str, out: &mut Vec<u8>) {
        out.reserve(TEXT_DELTA_HEAD.len() + 10 + kind_and_key.len() + value.len() + 32);
        out.extend_from_slice(TEXT_DELTA_HEAD);
        json::write_uint(out, index.into());
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind_and_key);
        json::write_str(out, value);
        out.extend_from_slice(b"}}\n\n");
    }

    fn open_tool(&mut self, tool: u32, id: &str, name: &str, out: &mut Vec<u8>) -> u32 {
        let index = self.next_block(out);
        Self::tool_block_start(index, id, name, out);
        self.open = Some(OpenBlock::Tool { index, tool });
        self.tool_blocks.insert(tool, index);
        index
    }

    /// The open text block's index, opening one if the open block is not text.
    fn text_block(&mut self, out: &mut Vec<u8>) -> u32 {
        match self.open {
            Some(OpenBlock::Text { index }) => index,
            _ => {
                let index = self.next_block(out);
                Self::text_block_start(index, out);
                self.open = Some(OpenBlock::Text { index });
                index
            }
        }
    }

    /// `content_block_start` of an empty text block.
    pub(super) fn text_block_start(index: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":",
        );
        json::write_uint(out, index.into());
        out.extend_from_slice(b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    }

    /// A `tool_use` block's `content_block_start` (its id and name, an empty input), as
    /// [`Self::write`] writes it (a test holds the two together): once a call, and an agent's
    /// turn makes many.
    pub(super) fn tool_block_start(index: u32, id: &str, name: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":",
        );
        json::write_uint(out, index.into());
        out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
        json::write_str(out, id);
        out.extend_from_slice(b",\"name\":");
        json::write_str(out, name);
        out.extend_from_slice(b",\"input\":{}}}\n\n");
    }

    fn thinking_block(&mut self, out: &mut Vec<u8>) -> u32 {
        match self.open {
            Some(OpenBlock::Thinking {
                index,
                signed: false,
            }) => index,
            _ => {
                let index = self.open(
                    ContentBlock::Thinking {
                        thinking: String::new(),
                        signature: String::new(),
                    },
                    out,
                );
                self.open = Some(OpenBlock::Thinking {
                    index,
                    signed: false,
                });
                index
            }
        }
    }

    /// A whole `redacted_thinking` block: its start, which holds the data, and its stop.
    fn redacted_block(&mut self, data: String, out: &mut Vec<u8>) {
        let index = self.open(ContentBlock::RedactedThinking { data }, out);
        Self::block_stop(index, out);
    }

    /// The counts `message_delta` carries: a stream that never learnt its input count says
    /// only what it knows.
    pub(super) fn delta_usage(usage: &Usage) -> wire::Usage {
        if usage.input_tokens != 0 {
            wire::Usage::streamed(usage)
        } else {
            wire::Usage {
                output_tokens: Some(usage.output_tokens),
                server_tool_use: wire::Usage::full(usage).server_tool_use,
                ..wire::Usage::default()
            }
        }
    }

    /// `message_delta` with the stop reason and the counts, then `message_stop`.
    pub(super) fn message_end(
        stop_reason: &str,
        stop_sequence: Option<&str>,
        usage: &Usage,
        out: &mut Vec<u8>,
    ) {
        let usage = Self::delta_usage(usage);
        out.extend_from_slice(
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":",
        );
        json::write_str(out, stop_reason);
        out.extend_from_slice(b",\"stop_sequence\":");
        json::write_optional_str(out, stop_sequence);
        out.extend_from_slice(b"},\"usage\":");
        usage.write(out);
        out.extend_from_slice(b"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }

    fn write_error(&mut self, error: ErrorObject, out: &mut Vec<u8>) {
        Self::write(&MessageStreamEvent::Error { error }, out);
        self.done = true;
    }
}

impl StreamEncoder for AnthropicStreamEncoder {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            // The client sees the gateway's id and the alias it asked for, from the context.
            // Log probabilities are OpenAI's; the Messages API has no field for them.
            StreamEvent::Start { .. } | StreamEvent::Logprobs(_) => {}
            StreamEvent::Usage(usage) => {
                self.usage_said = true;
                self.usage.merge(usage);
            }
            StreamEvent::TextDelta(text) | StreamEvent::RefusalDelta(text) => {
                if text.is_empty() {
                    return;
                }
                self.output_chars += text.len();
                let index = self.text_block(out);
                Self::text_delta(index, text, out);
            }
            // The next text or citation opens a block of its own.
            StreamEvent::TextBlockStart => {
                if matches!(self.open, Some(OpenBlock::Text { .. })) {
                    self.close(out);
                }
            }
            StreamEvent::Citation(citation) => {
                let index = self.text_block(out);
                Self::delta(
                    index,
                    ContentBlockDelta::CitationsDelta {
                        citation: citation.clone(),
                    },
                    out,
                );
            }
            StreamEvent::ReasoningDelta(thinking) => {
                if thinking.is_empty() {
                    return;
                }
                self.output_chars += thinking.len();
                let index = self.thinking_block(out);
                Self::thinking_delta(index, thinking, out);
            }
            StreamEvent::ReasoningSignature(signature) => {
                let index = self.thinking_block(out);
                self.open = Some(OpenBlock::Thinking {
                    index,
                    signed: true,
                });
                Self::delta(
                    index,
                    ContentBlockDelta::SignatureDelta {
                        signature: signature.clone(),
                    },
                    out,
                );
            }
            StreamEvent::ServerToolStart(block) => {
                // Only blocks read from this format's own streams come here.
                if let Ok(block) = serde_json::from_value(block.clone()) {
                    let index = self.open(block, out);
                    self.open = Some(OpenBlock::ServerTool { index });
                }
            }
            StreamEvent::ServerToolInputDelta(partial_json) => {
                if let Some(OpenBlock::ServerTool { index }) = self.open {
                    Self::input_json_delta(index, partial_json, out);
                }
            }
            StreamEvent::RedactedReasoning(data) => self.redacted_block(data.clone(), out),
            // A Gemini call's signature, which a tool_use block has no place for, comes just
            // before the call: a redacted thinking block of its own carries it.
            StreamEvent::ToolCallSignature { signature, .. } => {
                self.redacted_block(gemini::carry_signature(signature), out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.open_tool(*index, id, name, out);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if arguments.is_empty() {
                    return;
                }
                self.output_chars += arguments.len();
                let block = match (self.open, self.tool_blocks.get(index)) {
                    (Some(OpenBlock::Tool { index: block, tool }), _) if tool == *index => block,
                    // A fragment for a tool call whose block was already closed (providers that
                    // interleave parallel calls): it keeps its own index, which clients
                    // accumulate by.
                    (_, Some(block)) => *block,
                    // Arguments without a start: open the block with what is known.
                    (_, None) => self.open_tool(*index, "", "", out),
                };
                Self::input_json_delta(block, arguments, out);
            }
            StreamEvent::Finish(reason) => {
                self.ensure_started(out);
                self.close(out);
                self.stop = Some(reason.clone());
            }
            StreamEvent::Error(info) => {
                let error = ErrorObject {
                    kind: wire::error_type_of_class(info.class).to_owned(),
                    message: info.message.clone(),
                };
                self.write_error(error, out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.close(out);
        // The Messages API always says its counts: estimated when the provider said none.
        if !self.usage_said {
            self.usage = estimated_usage(self.prompt_estimate, self.output_chars);
        }
        let (stop_reason, stop_sequence) = wire::turn_stop_reason(
            self.stop.as_ref().unwrap_or(&FinishReason::Stop),
            !self.tool_blocks.is_empty(),
        );
        Self::message_end(stop_reason, stop_sequence, &self.usage, out);
        self.done = true;
    }

    fn error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.write_error(error_object(error), out);
    }
}

/// The counts an Anthropic client is given when the provider said none: the prompt as it was
/// estimated on admission, the output at four characters a token (as the request's record
/// bills it).
pub(super) fn estimated_usage(prompt_estimate: u64, output_chars: usize) -> Usage {
    Usage {
        input_tokens: prompt_estimate,
        output_tokens: (output_chars as u64).div_ceil(4),
        ..Usage::default()
    }
}

use super::error::UpstreamErrorInfo;
use super::response::{FinishReason, Usage};

/// One step of a streamed answer, independent of dialect. Decoders emit these as bytes arrive;
/// encoders turn them into the client's frames.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The answer began. Always the first event a decoder emits.
    Start {
        id: String,
        model: String,
    },
    TextDelta(String),
    /// Text of a refusal (OpenAI `delta.refusal`): an OpenAI client gets it in `refusal`, where
    /// its SDK looks for it instead of parsing it as the structured output it asked for; other
    /// dialects have no such field and get it as text.
    RefusalDelta(String),
    /// Log probabilities of the tokens of the `TextDelta` that follows it, as an OpenAI-form
    /// provider wrote them in that chunk (`choices[].logprobs`, compact JSON text). Only an
    /// OpenAI client's chunks carry them; other dialects have no such field.
    Logprobs(String),
    /// A text block starts. Anthropic answers that cite their sources come as several text
    /// blocks, one per cited claim, and a block's citations belong to it alone: the boundary
    /// lets an Anthropic client get the same blocks. Dialects with one text per answer ignore
    /// it.
    TextBlockStart,
    /// One citation of the text block streaming now (Anthropic `citations_delta`), as the
    /// provider wrote it. Only the Anthropic dialect carries it.
    Citation(serde_json::Value),
    /// A server tool's block starts (see `ContentPart::ServerTool`), as the provider wrote its
    /// start: a result whole, a call with its input following as `ServerToolInputDelta`.
    /// Only the Anthropic dialect carries it.
    ServerToolStart(serde_json::Value),
    /// A fragment of the JSON input of the server tool call streaming now.
    ServerToolInputDelta(String),
    ReasoningDelta(String),
    /// Signature of the reasoning block so far (Anthropic `signature_delta`).
    ReasoningSignature(String),
    /// A reasoning block the provider encrypted (Anthropic `redacted_thinking`), whole: its data
    /// must come back unchanged with the history.
    RedactedReasoning(String),
    /// A new tool call at output position `index` (0-based among tool calls).
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// The provider's opaque signature of tool call `index` (Gemini `thoughtSignature`), which
    /// must come back with that call on the next turn. Sent just before the call's
    /// `ToolCallStart`; dialects that cannot carry it ignore it.
    ToolCallSignature {
        index: u32,
        signature: String,
    },
    /// A fragment of the JSON arguments of tool call `index`.
    ToolCallDelta {
        index: u32,
        arguments: String,
    },
    /// Usage so far; later events supersede earlier ones field by field.
    Usage(Usage),
    /// The model stopped. Usage may still follow.
    Finish(FinishReason),
    /// The provider reported an error inside the stream.
    Error(UpstreamErrorInfo),
}

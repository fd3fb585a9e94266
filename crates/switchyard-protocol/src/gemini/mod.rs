//! Google Gemini (`generateContent`) as a provider dialect: wire types, request building,
//! response and stream decoding, error classification and `batchEmbedContents`.
//!
//! Gemini is only an upstream here; no client speaks it to the gateway. What this folder
//! decided where the formats differ:
//!
//! * Roles: system and developer messages become the one `systemInstruction`; assistant turns
//!   are `model`; tool results are `functionResponse` parts of `user` turns, named after the
//!   function (from the result, else from the earlier call with the same id). Consecutive turns
//!   of one role are merged.
//! * A tool result whose text is a JSON object is sent as that object, other text as
//!   `{"result": text}`; a failed call as `{"error": …}`.
//! * Tool schemas go in `parametersJsonSchema` and answer schemas in `responseJsonSchema`, both
//!   of which take JSON Schema as is (the older fields take only an OpenAPI subset).
//! * Reasoning: a token budget becomes `thinkingBudget`; an effort becomes `thinkingLevel`, or
//!   a budget on Gemini 2.x models, which know no levels (`none` becomes a zero budget).
//!   Thought summaries are requested whenever thinking is on.
//! * Thought signatures: on a function call they live in the tool call's extras under
//!   [`THOUGHT_SIGNATURE`]; on thought or text parts they become signed reasoning parts (an
//!   empty one when only a signature is carried). Streams report a function call's signature
//!   as a `ToolCallSignature` event just before the call starts, and any other signature as a
//!   `ReasoningSignature` event placed before the part it belongs to.
//! * Function calls without an id get a deterministic `call_<responseId>_<n>`.
//! * Only the first candidate is read; Gemini reports no creation time, so `created` is 0.

mod provider;
mod reply;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

pub use provider::{GeminiProvider, THOUGHT_SIGNATURE};
pub(crate) use provider::{
    attach_carried_signatures, carry_signature, signature_extras, tool_call_signature,
};

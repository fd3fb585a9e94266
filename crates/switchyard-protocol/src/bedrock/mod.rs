//! Amazon Bedrock's Converse API as a provider dialect: request building, answer and stream
//! decoding (the AWS event-stream framing of `ConverseStream`), error classification.
//!
//! Bedrock is only an upstream here; no client speaks it to the gateway. What this folder
//! decided where the formats differ:
//!
//! * Roles: system and developer messages become `system` text blocks; tool results are
//!   `toolResult` blocks of `user` turns; consecutive turns of one role are merged, as Converse
//!   wants user and assistant turns to alternate.
//! * Images and documents go inline (`bytes`); a URL is refused with a 400 naming the part,
//!   as Converse takes no URLs. A document's name keeps only the characters Converse allows.
//! * Tool use ids are reduced to Converse's `[a-zA-Z0-9_-]{1,64}`, the same way in a call and
//!   in its result. A `tool_choice` of `none` is left out (Converse has no such choice).
//! * A JSON schema answer format is `outputConfig.textFormat` (the schema as JSON text); a
//!   JSON object answer is asked for in the system prompt, as for Anthropic.
//! * Claude models (ids with `anthropic.`): reasoning becomes `thinking` in
//!   `additionalModelRequestFields`, and `top_k` goes there too. Cache markers become
//!   `cachePoint` blocks after the marked block.
//! * Answers carry no id, model or creation time: the gateway shows its own.
//! * Authentication: a Bedrock API key as a bearer token here; AWS credentials are applied by
//!   the gateway, which signs the finished request (Signature Version 4).
//! * Embeddings go through InvokeModel in the model family's own body (`embeddings.rs`): Titan
//!   Text Embeddings one text a call, Cohere Embed up to 96; the gateway splits longer lists.

mod embeddings;
mod event_stream;
mod provider;
mod stream;

#[cfg(test)]
mod tests;

pub use provider::BedrockProvider;

//! Anthropic Messages dialect (`POST /v1/messages`), both directions: [`AnthropicIngress`]
//! serves Anthropic clients (the official SDKs, Claude Code) and [`AnthropicProvider`] calls
//! Anthropic's API. Wire types stay in `wire`; translation choices are documented where they
//! are made (`ingress`, `provider`, `stream`).

mod common;
mod ingress;
mod provider;
mod reply;
mod schema;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

pub use ingress::AnthropicIngress;
pub(crate) use ingress::BLOCK_CACHE_CONTROL;
pub(crate) use ingress::DOCUMENT_CITATIONS;
pub use provider::{
    AnthropicProvider, DEFAULT_MAX_TOKENS, JSON_OBJECT_INSTRUCTION, adaptive_effort,
    continues_unthought_tool_turn, effort_budget, thinks_adaptively,
};
pub(crate) use schema::fitted as fitted_schema;
pub use stream::{AnthropicStreamDecoder, AnthropicStreamEncoder};

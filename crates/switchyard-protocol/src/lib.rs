//! Sans-IO LLM wire protocols. This crate knows formats, not policies: it does no IO, has no
//! async runtime, reads no clock (time is passed in) and knows nothing of keys, budgets or routing.
//!
//! Every dialect lives in its own folder with its own wire types; the rest of the gateway speaks
//! the [`canonical`] model. [`dialect`] holds the traits and the one registry from provider kind
//! to dialect.

pub mod anthropic;
pub mod bedrock;
pub mod canonical;
pub mod dialect;
#[cfg(test)]
mod document_tests;
pub mod error;
pub mod gemini;
pub mod json;
mod one_pass;
pub mod openai;
pub mod provider_body;
mod scan;
pub mod sse;
mod text_frame;

pub use dialect::{DialectId, ProviderKind};

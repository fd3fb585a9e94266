//! OpenAI Chat Completions and Embeddings: the client-facing dialect most SDKs speak, and the
//! provider dialect of OpenAI, Azure OpenAI and every OpenAI-compatible server (vLLM, Ollama,
//! Mistral, Groq, Together, DeepSeek, OpenRouter …), whose differences are data in
//! [`OpenAiQuirks`](crate::dialect::OpenAiQuirks).

mod common_chat;
mod completions;
mod ingress;
mod provider;
mod responses;
#[cfg(test)]
mod tests;

pub use completions::{CompletionsIngress, CompletionsStreamEncoder};
pub use ingress::{OpenAiIngress, OpenAiStreamEncoder, decode_embeddings, encode_embeddings};
pub use provider::{OpenAiProvider, OpenAiStreamDecoder};
pub use responses::{ResponsesIngress, ResponsesStreamEncoder};
/// Responses the gateway keeps, brought back into requests that refer to them.
pub mod kept_responses {
    pub use super::responses::{
        Brought, Kept, STORE, bring_in, continues, input_items, referenced_responses,
        refers_to_kept,
    };
}

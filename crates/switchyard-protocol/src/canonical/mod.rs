//! The gateway's own vocabulary between dialects: requests, responses, stream events, usage and
//! upstream error classes. No client or provider ever sees these serialised; each dialect folder
//! converts to and from its wire types.

mod error;
mod request;
mod response;
mod stream;
mod text;

pub use error::{ErrorClass, UpstreamErrorInfo};
pub use request::{
    CacheTtl, ChatRequest, ContentPart, DocumentSource, EmbeddingInput, EmbeddingRequest,
    EncodingFormat, Extras, ImageSource, Message, PDF, Reasoning, ResponseFormat, Role, Tool,
    ToolChoice, WebSearch,
};
pub use response::{ChatResponse, Choice, EmbeddingResponse, FinishReason, Usage};
pub use stream::StreamEvent;
pub use text::Text;

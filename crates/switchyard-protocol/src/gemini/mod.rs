//! Gemini generateContent dialect (placeholder until the dialect lands).

use http::HeaderMap;

use crate::canonical::{ChatRequest, ChatResponse, StreamEvent, UpstreamErrorInfo};
use crate::dialect::{
    Capabilities, DialectId, ProviderDialect, StreamDecoder,
    Target, malformed,
};
use crate::error::DecodeError;

pub struct GeminiProvider;

struct Nothing;

impl StreamDecoder for Nothing {
    fn push(&mut self, _c: &[u8], _o: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        Err(malformed("not implemented"))
    }
    fn finish(&mut self, _o: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        Err(malformed("not implemented"))
    }
}

impl ProviderDialect for GeminiProvider {
    fn id(&self) -> DialectId {
        DialectId::Gemini
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn build_chat(
        &self,
        _request: &ChatRequest,
        _target: &Target<'_>,
    ) -> Result<http::Request<Vec<u8>>, DecodeError> {
        Err(DecodeError::new("not implemented", None))
    }
    fn parse_chat(&self, _body: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> {
        Err(malformed("not implemented"))
    }
    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(Nothing)
    }
    fn classify_error(&self, _status: u16, _headers: &HeaderMap, _body: &[u8]) -> UpstreamErrorInfo {
        malformed("not implemented")
    }
}

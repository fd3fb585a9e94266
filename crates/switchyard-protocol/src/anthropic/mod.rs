//! Anthropic Messages dialect (placeholder until the dialect lands).

use http::HeaderMap;

use crate::canonical::{ChatRequest, ChatResponse, StreamEvent, UpstreamErrorInfo};
use crate::dialect::{
    Capabilities, DialectId, EncodeCtx, IngressDialect, ProviderDialect, StreamDecoder,
    StreamEncoder, Target, malformed,
};
use crate::error::{ClientError, DecodeError};

pub struct AnthropicIngress;
pub struct AnthropicProvider;

struct Nothing;

impl StreamEncoder for Nothing {
    fn event(&mut self, _event: &StreamEvent, _out: &mut Vec<u8>) {}
    fn finish(&mut self, _out: &mut Vec<u8>) {}
    fn error(&mut self, _error: &ClientError, _out: &mut Vec<u8>) {}
}

impl StreamDecoder for Nothing {
    fn push(&mut self, _c: &[u8], _o: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        Err(malformed("not implemented"))
    }
    fn finish(&mut self, _o: &mut Vec<StreamEvent>) -> Result<(), UpstreamErrorInfo> {
        Err(malformed("not implemented"))
    }
}

impl IngressDialect for AnthropicIngress {
    fn id(&self) -> DialectId {
        DialectId::Anthropic
    }
    fn decode_chat(&self, _body: &[u8]) -> Result<ChatRequest, DecodeError> {
        Err(DecodeError::new("not implemented", None))
    }
    fn encode_chat(&self, _response: &ChatResponse, _ctx: &EncodeCtx) -> Vec<u8> {
        Vec::new()
    }
    fn stream_encoder(&self, _ctx: EncodeCtx) -> Box<dyn StreamEncoder> {
        Box::new(Nothing)
    }
    fn encode_error(&self, _error: &ClientError) -> Vec<u8> {
        Vec::new()
    }
}

impl ProviderDialect for AnthropicProvider {
    fn id(&self) -> DialectId {
        DialectId::Anthropic
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

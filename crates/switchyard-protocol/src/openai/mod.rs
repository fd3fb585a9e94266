//! OpenAI Chat Completions dialect (placeholder until the dialect lands).

use http::HeaderMap;

use crate::canonical::{ChatRequest, ChatResponse, StreamEvent, UpstreamErrorInfo};
use crate::dialect::{
    Capabilities, DialectId, EncodeCtx, IngressDialect, ProviderDialect, StreamDecoder,
    StreamEncoder, Target, malformed,
};
use crate::error::{ClientError, DecodeError};

pub struct OpenAiIngress;
pub struct OpenAiProvider;
impl OpenAiProvider { pub fn new(_q: crate::dialect::OpenAiQuirks) -> Self { OpenAiProvider } }
#[derive(Default)]
pub struct AzureProvider;
impl ProviderDialect for AzureProvider {
    fn id(&self) -> DialectId { DialectId::OpenAi }
    fn capabilities(&self) -> Capabilities { Capabilities::default() }
    fn build_chat(&self, _r: &ChatRequest, _t: &Target<'_>) -> Result<http::Request<Vec<u8>>, DecodeError> { Err(DecodeError::new("x", None)) }
    fn parse_chat(&self, _b: &[u8]) -> Result<ChatResponse, UpstreamErrorInfo> { Err(malformed("x")) }
    fn stream_decoder(&self) -> Box<dyn StreamDecoder> { Box::new(Nothing) }
    fn classify_error(&self, _s: u16, _h: &HeaderMap, _b: &[u8]) -> UpstreamErrorInfo { malformed("x") }
}


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

impl IngressDialect for OpenAiIngress {
    fn id(&self) -> DialectId {
        DialectId::OpenAi
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

impl ProviderDialect for OpenAiProvider {
    fn id(&self) -> DialectId {
        DialectId::OpenAi
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

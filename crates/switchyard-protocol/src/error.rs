//! Errors the protocol layer reports: decode failures with the JSON path of the offending field,
//! and the client-facing error description every ingress dialect knows how to render.

use std::fmt;

/// A client body that could not be understood. `param` is the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub message: String,
    pub param: Option<String>,
    /// The client's error code where its API has one of its own for this refusal (OpenAI's
    /// `previous_response_not_found`); otherwise the gateway's `invalid_request`.
    pub code: Option<&'static str>,
}

impl DecodeError {
    pub fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            message: message.into(),
            param: param.map(str::to_owned),
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Parses `body` into `T`, reporting the path of the first field that does not fit.
    pub fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(v) => {
                de.end()
                    .map_err(|e| DecodeError::new(format!("invalid JSON body: {e}"), None))?;
                Ok(v)
            }
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let param = (path != "." && !path.is_empty()).then_some(path);
                let message = if inner.is_syntax() || inner.is_eof() {
                    format!("invalid JSON body: {inner}")
                } else {
                    match &param {
                        Some(p) => format!("invalid value at '{p}': {inner}"),
                        None => format!("invalid request body: {inner}"),
                    }
                };
                Err(DecodeError {
                    message,
                    param,
                    code: None,
                })
            }
        }
    }
}

/// The broad kind of a client-facing error; each ingress dialect maps it to its own `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    InsufficientQuota,
    Upstream,
    Overloaded,
    Timeout,
    Internal,
}

/// An error as the client will see it: status, stable snake_case code, message, offending field.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    pub status: u16,
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

/// Why an upstream exchange failed. Drives retry, fallback and the client-facing status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Timeout,
    Connect,
    RateLimited,
    Overloaded,
    ServerError,
    InvalidRequest,
    ContextTooLong,
    ContentFiltered,
    AuthFailed,
    NotFound,
    /// The stream broke or ended without the dialect's terminal event.
    StreamInterrupted,
    /// The provider answered with something its own format does not allow.
    MalformedResponse,
}

impl ErrorClass {
    /// Whether trying again (same or another deployment) can help.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Timeout
                | ErrorClass::Connect
                | ErrorClass::RateLimited
                | ErrorClass::Overloaded
                | ErrorClass::ServerError
                | ErrorClass::StreamInterrupted
                | ErrorClass::MalformedResponse
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::ServerError => "server_error",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::ContextTooLong => "context_window_exceeded",
            ErrorClass::ContentFiltered => "content_filtered",
            ErrorClass::AuthFailed => "auth_failed",
            ErrorClass::NotFound => "not_found",
            ErrorClass::StreamInterrupted => "stream_interrupted",
            ErrorClass::MalformedResponse => "malformed_response",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "timeout" => ErrorClass::Timeout,
            "connect" => ErrorClass::Connect,
            "rate_limited" => ErrorClass::RateLimited,
            "overloaded" => ErrorClass::Overloaded,
            "server_error" => ErrorClass::ServerError,
            "invalid_request" => ErrorClass::InvalidRequest,
            "context_window_exceeded" => ErrorClass::ContextTooLong,
            "content_filtered" => ErrorClass::ContentFiltered,
            "auth_failed" => ErrorClass::AuthFailed,
            "not_found" => ErrorClass::NotFound,
            "stream_interrupted" => ErrorClass::StreamInterrupted,
            "malformed_response" => ErrorClass::MalformedResponse,
            _ => return None,
        })
    }

    /// Class of an HTTP error status when the body says nothing more specific.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 | 409 | 415 | 422 => ErrorClass::InvalidRequest,
            // Larger than this provider takes (a byte limit of its own or of a proxy before
            // it): another deployment may take it, as with a prompt too long for a context.
            413 => ErrorClass::ContextTooLong,
            401 | 403 => ErrorClass::AuthFailed,
            404 => ErrorClass::NotFound,
            408 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimited,
            503 | 529 => ErrorClass::Overloaded,
            _ => ErrorClass::ServerError,
        }
    }
}

/// What a provider said when it refused or failed, after its error body was read.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamErrorInfo {
    pub class: ErrorClass,
    /// The HTTP status of the upstream answer (`None` for in-stream errors and transport faults).
    pub status: Option<u16>,
    /// The provider's message, safe to show the client (never contains our credentials).
    pub message: String,
    /// The provider's own error type or code, if any (e.g. `rate_limit_error`).
    pub provider_code: Option<String>,
    /// Seconds, from `retry-after` / `retry-after-ms`.
    pub retry_after_secs: Option<f64>,
    /// The request field the provider named as the fault (OpenAI's `error.param`), for a
    /// refused request: an OpenAI client's error object carries it on.
    pub param: Option<String>,
}

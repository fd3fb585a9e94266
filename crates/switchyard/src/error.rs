//! What the client receives when a request fails: one variant per cause, each with its HTTP
//! status and a stable snake_case code (listed in `docs/errors.md`, used as the `error_code`
//! label). Rendering into a dialect's body happens in `server`, in one place.

use switchyard_protocol::canonical::{ErrorClass, UpstreamErrorInfo};
use switchyard_protocol::error::{ClientError, DecodeError, ErrorKind};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    InvalidRequest(DecodeError),
    #[error("missing or invalid API key")]
    InvalidApiKey,
    #[error("unknown model '{0}'")]
    ModelNotFound(String),
    #[error("request body larger than {0} bytes")]
    RequestTooLarge(usize),
    #[error("{0}")]
    Unsupported(String),
    #[error("no route for {0}")]
    NotFound(String),
    /// An entity the request names does not exist; the message says which and how to find one.
    #[error("{0}")]
    Missing(String),
    /// Every planned attempt failed; `last` decides the status.
    #[error("{}", .last.message)]
    Upstream {
        last: UpstreamErrorInfo,
        /// Every attempt was rate limited: the client should back off.
        all_rate_limited: bool,
        attempts: u32,
    },
    #[error("{message}")]
    BudgetExceeded {
        message: String,
        /// When it is worth trying again: the next budget period, or a moment for in-flight
        /// reservations to settle.
        retry_after_secs: Option<u64>,
    },
    #[error("{message}")]
    RateLimited {
        message: String,
        limit: u64,
        remaining: u64,
        /// `requests per minute`, `tokens per minute` or `parallel requests`.
        kind: &'static str,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    ModelNotAllowed(String),
    #[error("{0}")]
    Forbidden(String),
    /// A path served, with another method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A change that would leave other entities pointing at nothing (the message says which).
    #[error("{0}")]
    Conflict(String),
    /// A feature needs configuration the operator has not given (the message says which).
    #[error("{0}")]
    NotConfigured(String),
    /// Exporting results to an external tracking server failed (the message says why).
    #[error("{0}")]
    ExportFailed(String),
    /// A guardrail refused the request or the answer (`code` says which).
    #[error("{message}")]
    Guardrail { code: &'static str, message: String },
    /// The state replicas share (Redis) could not be reached: budgets and limits cannot be
    /// checked, so the request is not sent.
    #[error("{0}")]
    SharedStateUnavailable(String),
    /// The store (PostgreSQL shared by replicas) could not be reached.
    #[error("{0}")]
    StoreUnavailable(String),
    /// An Anthropic client's `thread` (the message threads beta): the gateway holds no
    /// threads, so a new one is refused as unsupported and a continued one is not found; the
    /// SDK's thread helpers then send the whole conversation without it.
    #[error("message threads are not supported")]
    Thread { continuing: bool },
    /// The gateway's shutdown ended the request before its answer was complete (its grace
    /// period ran out).
    #[error("the gateway shut down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A store error: 503 when the database could not be reached (it may be back soon), 500
    /// for anything else. Something other than the database answering at its address (a
    /// protocol error) is a store that cannot be reached, not a fault of the gateway.
    pub fn store(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::StoreUnavailable(e.to_string()),
            e => Self::Internal(format!("store: {e}")),
        }
    }

    pub fn code(&self) -> &'static str {
        self.to_client().code
    }

    /// Seconds the client should wait, when known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::Upstream {
                last,
                all_rate_limited: true,
                ..
            } => Some(
                last.retry_after_secs
                    .map_or(1, |s| s.ceil().max(1.0) as u64),
            ),
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            GatewayError::BudgetExceeded {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }

    /// `x-ratelimit-*` headers for a rate-limit refusal, OpenAI-style.
    pub fn rate_limit_headers(&self) -> Vec<(String, String)> {
        match self {
            GatewayError::RateLimited {
                limit,
                remaining,
                kind,
                retry_after_secs,
                ..
            } => {
                let unit = if kind.starts_with("tokens") {
                    "tokens"
                } else if kind.starts_with("parallel") {
                    // OpenAI's headers speak of per-minute limits; a limit on requests at
                    // once has none (read as one, `max_parallel: 5` would look like 5 a
                    // minute). `retry-after` and the message say it.
                    return Vec::new();
                } else {
                    "requests"
                };
                vec![
                    (format!("x-ratelimit-limit-{unit}"), limit.to_string()),
                    (
                        format!("x-ratelimit-remaining-{unit}"),
                        remaining.to_string(),
                    ),
                    (
                        format!("x-ratelimit-reset-{unit}"),
                        format!("{retry_after_secs}s"),
                    ),
                ]
            }
            _ => Vec::new(),
        }
    }

    pub fn to_client(&self) -> ClientError {
        let (status, kind, code, message, param) = match self {
            GatewayError::InvalidRequest(e) => (
                400,
                ErrorKind::InvalidRequest,
                e.code.unwrap_or("invalid_request"),
                e.message.clone(),
                e.param.clone(),
            ),
            GatewayError::InvalidApiKey => (
                401,
                ErrorKind::Authentication,
                "invalid_api_key",
                "Missing or invalid API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.".to_owned(),
                None,
            ),
            GatewayError::ModelNotFound(alias) => (
                404,
                ErrorKind::NotFound,
                "model_not_found",
                format!("The model '{alias}' does not exist or you do not have access to it. GET /v1/models lists the models you can use."),
                Some("model".to_owned()),
            ),
            GatewayError::RequestTooLarge(limit) => (
                413,
                ErrorKind::RequestTooLarge,
                "request_too_large",
                format!("Request body is larger than the limit of {limit} bytes."),
                None,
            ),
            GatewayError::Unsupported(message) => (
                400,
                ErrorKind::InvalidRequest,
                "unsupported_content",
                message.clone(),
                None,
            ),
            GatewayError::NotFound(what) => (
                404,
                ErrorKind::NotFound,
                "not_found",
                format!("No such endpoint: {what}"),
                None,
            ),
            GatewayError::Missing(message) => (
                404,
                ErrorKind::NotFound,
                "not_found",
                message.clone(),
                None,
            ),
            GatewayError::Thread { continuing: false } => (
                400,
                ErrorKind::InvalidRequest,
                "thread_unsupported_request",
                "This gateway keeps no message threads: send the whole conversation without \
                 'thread' (the SDK's tool runner does so by itself, and a thread helper when told \
                 unsupported_request_behavior=\"continue_unthreaded\")."
                    .to_owned(),
                Some("thread".to_owned()),
            ),
            GatewayError::Thread { continuing: true } => (
                404,
                ErrorKind::NotFound,
                "thread_not_found",
                "This gateway keeps no message threads, so none continues from \
                 'previous_message_id': send the whole conversation without 'thread'."
                    .to_owned(),
                Some("thread.previous_message_id".to_owned()),
            ),
            GatewayError::Upstream {
                last,
                all_rate_limited,
                attempts,
            } => upstream(last, *all_rate_limited, *attempts),
            GatewayError::BudgetExceeded { message, .. } => (
                429,
                ErrorKind::InsufficientQuota,
                "budget_exceeded",
                message.clone(),
                None,
            ),
            GatewayError::RateLimited { message, .. } => (
                429,
                ErrorKind::RateLimit,
                "rate_limited",
                message.clone(),
                None,
            ),
            GatewayError::ModelNotAllowed(message) => (
                403,
                ErrorKind::Permission,
                "model_not_allowed",
                message.clone(),
                Some("model".to_owned()),
            ),
            GatewayError::Forbidden(message) => (
                403,
                ErrorKind::Permission,
                "permission_denied",
                message.clone(),
                None,
            ),
            GatewayError::MethodNotAllowed(what) => (
                405,
                ErrorKind::InvalidRequest,
                "method_not_allowed",
                format!("{what} is not served: see the allow header for the methods that are."),
                None,
            ),
            GatewayError::Conflict(message) => (
                409,
                ErrorKind::InvalidRequest,
                "conflict",
                message.clone(),
                None,
            ),
            GatewayError::ExportFailed(message) => (
                502,
                ErrorKind::Upstream,
                "mlflow_export_failed",
                format!("The MLflow export failed: {message}"),
                None,
            ),
            GatewayError::NotConfigured(message) => (
                503,
                ErrorKind::Internal,
                "encryption_not_configured",
                message.clone(),
                None,
            ),
            GatewayError::Guardrail { code, message } => (
                // A refused answer is the provider's doing; a refused prompt the client's.
                if *code == "guardrail_schema" { 502 } else { 400 },
                if *code == "guardrail_schema" {
                    ErrorKind::Upstream
                } else {
                    ErrorKind::InvalidRequest
                },
                *code,
                message.clone(),
                None,
            ),
            GatewayError::SharedStateUnavailable(message) => (
                503,
                ErrorKind::Overloaded,
                "shared_state_unavailable",
                format!(
                    "The gateway cannot reach the state its replicas share, so it cannot check \
                     this caller's budget and limits: {message}"
                ),
                None,
            ),
            GatewayError::StoreUnavailable(message) => (
                503,
                ErrorKind::Overloaded,
                "store_unavailable",
                format!("The gateway cannot reach its store: {message}"),
                None,
            ),
            GatewayError::ShuttingDown => (
                503,
                ErrorKind::Overloaded,
                "gateway_shutdown",
                "The gateway shut down (its grace period for requests in flight ran out) before \
                 the answer was complete."
                    .to_owned(),
                None,
            ),
            GatewayError::Internal(message) => (
                500,
                ErrorKind::Internal,
                "internal_error",
                format!("Internal gateway error: {message}"),
                None,
            ),
        };
        ClientError {
            status,
            kind,
            code,
            message,
            param,
        }
    }
}

fn upstream(
    last: &UpstreamErrorInfo,
    all_rate_limited: bool,
    attempts: u32,
) -> (u16, ErrorKind, &'static str, String, Option<String>) {
    let tries = if attempts == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{attempts} attempts")
    };
    if all_rate_limited {
        return (
            429,
            ErrorKind::RateLimit,
            "upstream_rate_limited",
            format!(
                "Every provider for this model is rate limited ({tries}): {}",
                last.message
            ),
            None,
        );
    }
    match last.class {
        ErrorClass::InvalidRequest => (
            400,
            ErrorKind::InvalidRequest,
            "upstream_invalid_request",
            // No status: the gateway refused it before sending (a part the provider's format
            // has no place for, media it could not fetch), not the provider.
            match last.status {
                Some(_) => format!("The provider rejected the request: {}", last.message),
                None => format!(
                    "The request cannot be sent to the provider: {}",
                    last.message
                ),
            },
            last.param.clone(),
        ),
        ErrorClass::ContextTooLong if last.status == Some(413) => (
            413,
            ErrorKind::RequestTooLarge,
            "request_too_large",
            format!(
                "The provider refused the request as too large: {}",
                last.message
            ),
            None,
        ),
        ErrorClass::ContextTooLong => (
            400,
            ErrorKind::InvalidRequest,
            "context_window_exceeded",
            format!(
                "The prompt does not fit the model's context window: {}",
                last.message
            ),
            Some("messages".to_owned()),
        ),
        ErrorClass::ContentFiltered => (
            400,
            ErrorKind::InvalidRequest,
            "content_filtered",
            format!(
                "The provider's content filter blocked the request: {}",
                last.message
            ),
            None,
        ),
        // No status: the gateway had no usable credential to send (our own message).
        ErrorClass::AuthFailed if last.status.is_none() => (
            503,
            ErrorKind::Upstream,
            "credential_unavailable",
            format!(
                "The gateway has no usable credential for the provider: {}",
                last.message
            ),
            None,
        ),
        // Never echo the provider's text here: it may quote part of our credential.
        ErrorClass::AuthFailed => (
            502,
            ErrorKind::Upstream,
            "upstream_auth_failed",
            format!(
                "The provider rejected the gateway's credentials (HTTP {}); check the provider's api_key in the gateway configuration, or the credential it names (POST /admin/credentials).",
                last.status.unwrap_or(401)
            ),
            None,
        ),
        ErrorClass::Timeout => (
            504,
            ErrorKind::Timeout,
            "upstream_timeout",
            format!(
                "The provider did not answer in time ({tries}): {}",
                last.message
            ),
            None,
        ),
        ErrorClass::RateLimited => (
            429,
            ErrorKind::RateLimit,
            "upstream_rate_limited",
            format!("The provider is rate limiting ({tries}): {}", last.message),
            None,
        ),
        ErrorClass::NotFound => (
            502,
            ErrorKind::Upstream,
            "upstream_not_found",
            format!(
                "The provider does not know the configured model: {}",
                last.message
            ),
            None,
        ),
        ErrorClass::StreamInterrupted => (
            502,
            ErrorKind::Upstream,
            "stream_interrupted",
            format!(
                "The provider's stream broke off ({tries}): {}",
                last.message
            ),
            None,
        ),
        // The provider said it is overloaded (Anthropic's 529, an OpenAI-style 503 saying so):
        // a status clients retry later, and Anthropic's clients see their API's own 529.
        ErrorClass::Overloaded => (
            503,
            ErrorKind::Overloaded,
            "upstream_overloaded",
            format!("The provider is overloaded ({tries}): {}", last.message),
            None,
        ),
        ErrorClass::Connect | ErrorClass::ServerError | ErrorClass::MalformedResponse => (
            502,
            ErrorKind::Upstream,
            "upstream_unavailable",
            format!("The provider failed ({tries}): {}", last.message),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_per_minute_limits_are_told_in_openais_rate_limit_headers() {
        let limited = |kind| GatewayError::RateLimited {
            message: "m".into(),
            limit: 5,
            remaining: 0,
            kind,
            retry_after_secs: 1,
        };
        let rpm = limited("requests per minute").rate_limit_headers();
        assert!(rpm.contains(&("x-ratelimit-limit-requests".into(), "5".into())));
        let tpm = limited("tokens per minute").rate_limit_headers();
        assert!(tpm.contains(&("x-ratelimit-limit-tokens".into(), "5".into())));
        assert!(limited("parallel requests").rate_limit_headers().is_empty());
        assert_eq!(limited("parallel requests").retry_after_secs(), Some(1));
    }

    #[test]
    fn a_store_that_cannot_be_reached_or_is_not_the_database_is_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let not_postgres =
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x48".to_owned());
        for e in [
            sqlx::Error::Io(refused),
            not_postgres,
            sqlx::Error::PoolTimedOut,
        ] {
            let client = GatewayError::store(e).to_client();
            assert_eq!((client.status, client.code), (503, "store_unavailable"));
        }
        let client = GatewayError::store(sqlx::Error::RowNotFound).to_client();
        assert_eq!((client.status, client.code), (500, "internal_error"));
    }
}

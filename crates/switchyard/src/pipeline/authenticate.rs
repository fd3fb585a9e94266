//! Who is calling. Until virtual keys exist the only credential is the master key, sent as
//! `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic SDKs).

use http::HeaderMap;

use crate::app::App;
use crate::error::GatewayError;
use crate::telemetry::Caller;

/// The credential a request carries, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(key) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(key.trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, GatewayError> {
    let key = presented_key(headers).ok_or(GatewayError::InvalidApiKey)?;
    match &app.config.server.master_key {
        Some(master) if master.matches(key) => Ok(Caller {
            key_id: Some("master".into()),
            key_name: Some("master key".into()),
            team: None,
            org: None,
        }),
        _ => Err(GatewayError::InvalidApiKey),
    }
}

//! Who is calling. Until virtual keys exist the only credential is the master key, sent as
//! `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic SDKs).

use http::{HeaderMap, HeaderName};

/// Anthropic's key header, made once (a lookup by `&str` parses the name every time).
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

use crate::app::App;
use crate::error::GatewayError;
use crate::governance::Principal;
use crate::governance::model::Role;
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
        .get(&X_API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The master key or a valid virtual key; anything else is 401 without a hint why.
pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, GatewayError> {
    let key = presented_key(headers).ok_or(GatewayError::InvalidApiKey)?;
    if let Some(master) = &app.config.server.master_key
        && master.matches(key)
    {
        return Ok(Principal {
            caller: Caller {
                key_id: Some("master".into()),
                key_name: Some("master key".into()),
                team: None,
                org: None,
            },
            role: Role::Admin,
            master: true,
            key: None,
        });
    }
    app.governance
        .authenticate(key)
        .ok_or(GatewayError::InvalidApiKey)
}

/// Admin API access: reads need at least `viewer`, changes `team_admin` (limited to its own
/// team by the handlers) or `admin`. Callers without the role get 403.
pub fn authorize_admin(
    app: &App,
    headers: &HeaderMap,
    write: bool,
) -> Result<Principal, GatewayError> {
    let p = authenticate(app, headers)?;
    let needed = if write { Role::TeamAdmin } else { Role::Viewer };
    if p.role < needed {
        return Err(GatewayError::Forbidden(format!(
            "This key's role does not allow {} the admin API.",
            if write { "changes through" } else { "reading" }
        )));
    }
    Ok(p)
}

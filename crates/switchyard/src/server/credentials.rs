//! Admin API for provider credentials: `POST /admin/credentials` stores (or rotates) one,
//! encrypted; `GET` lists names and masked tails, never a secret; `DELETE` removes one. Admin
//! role only, reads included. Every change is audited without the secret.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::governance::{bad, parse, require_admin, respond, store_error};
use super::json_response;
use crate::app::App;
use crate::credentials::{ChangeError, valid_name};
use crate::error::GatewayError;
use crate::governance::{Principal, now_unix_ms};
use crate::pipeline::authorize_admin;

/// Largest secret accepted, in bytes.
const MAX_SECRET_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialInput {
    name: String,
    /// The secret, e.g. an upstream API key.
    value: String,
    description: Option<String>,
}

fn admin(app: &App, headers: &HeaderMap, write: bool) -> Result<Principal, GatewayError> {
    let p = authorize_admin(app, headers, write)?;
    require_admin(&p)?;
    Ok(p)
}

fn change_error(e: ChangeError) -> GatewayError {
    match e {
        ChangeError::NotConfigured => GatewayError::NotConfigured(e.to_string()),
        ChangeError::Seal(m) => GatewayError::Internal(m),
        ChangeError::Store(e) => store_error(e),
    }
}

pub async fn create(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let p = admin(&app, &headers, true)?;
            let input: CredentialInput = parse(&body)?;
            if !valid_name(&input.name) {
                return Err(bad(
                    "'name' must be 1 to 64 letters, digits, '-', '_' or '.'",
                    "name",
                ));
            }
            // The value becomes an HTTP header: no control characters, nothing empty.
            if input.value.is_empty()
                || input.value.len() > MAX_SECRET_BYTES
                || input.value.chars().any(char::is_control)
            {
                return Err(bad(
                    format!(
                        "'value' must be 1 to {MAX_SECRET_BYTES} bytes without control characters"
                    ),
                    "value",
                ));
            }
            let (view, replaced) = app
                .credentials
                .put(
                    &input.name,
                    &input.value,
                    input.description,
                    p.actor(),
                    now_unix_ms(),
                )
                .await
                .map_err(change_error)?;
            let status = if replaced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(status, json!(view)))
        }
        .await,
    )
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond(
        async {
            admin(&app, &headers, false)?;
            let data = app.credentials.list().await.map_err(store_error)?;
            Ok(json_response(
                StatusCode::OK,
                json!({
                    "object": "list",
                    "encryption_configured": app.credentials.configured(),
                    "data": data,
                }),
            ))
        }
        .await,
    )
}

pub async fn get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    respond(
        async {
            admin(&app, &headers, false)?;
            let view = app
                .credentials
                .find(&name)
                .await
                .map_err(store_error)?
                .ok_or_else(|| {
                    GatewayError::Missing(format!("No credential named '{name}' is stored."))
                })?;
            Ok(json_response(StatusCode::OK, json!(view)))
        }
        .await,
    )
}

pub async fn delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    respond(
        async {
            let p = admin(&app, &headers, true)?;
            if !app
                .credentials
                .delete(&name, p.actor(), now_unix_ms())
                .await
                .map_err(change_error)?
            {
                return Err(GatewayError::Missing(format!(
                    "No credential named '{name}' is stored."
                )));
            }
            Ok(json_response(
                StatusCode::OK,
                json!({"name": name, "deleted": true}),
            ))
        }
        .await,
    )
}

pub fn routes(router: axum::Router<Arc<App>>) -> axum::Router<Arc<App>> {
    use axum::routing::get as get_route;
    router
        .route("/admin/credentials", get_route(list).post(create))
        .route("/admin/credentials/{name}", get_route(get).delete(delete))
}

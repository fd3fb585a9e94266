//! `GET /v1/models` and `GET /v1/models/{id}`: the aliases a caller may use. An Anthropic client
//! (its SDKs and Claude Code send `anthropic-version`) gets Anthropic's shape, a `ModelInfo` per
//! alias in pages (`limit`, `after_id`, `before_id`); any other client OpenAI's list.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_protocol::dialect::DialectId;
use switchyard_protocol::error::DecodeError;

use super::{error_response, json_response};
use crate::app::App;
use crate::error::GatewayError;
use crate::pipeline::{self, RequestContext};

/// An alias has no creation time: Anthropic's `created_at` and OpenAI's `created` say the epoch.
const CREATED_AT: &str = "1970-01-01T00:00:00Z";

/// Anthropic's page bounds for `limit`.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Page {
    limit: Option<usize>,
    after_id: Option<String>,
    before_id: Option<String>,
}

/// The shape the client speaks: Anthropic's when it sent `anthropic-version`.
fn dialect_of(headers: &HeaderMap) -> DialectId {
    if headers.contains_key("anthropic-version") {
        DialectId::Anthropic
    } else {
        DialectId::OpenAi
    }
}

/// The aliases the caller may use, in configuration order.
fn usable_aliases(app: &App, headers: &HeaderMap) -> Result<Vec<String>, GatewayError> {
    let principal = pipeline::authenticate(app, headers)?;
    let restrictions = app.governance.restrictions(&principal, None);
    Ok(app
        .table
        .aliases
        .iter()
        .filter(|a| app.governance.model_allowed(&principal, None, a))
        .filter(|a| restrictions.is_empty() || app.table.usable(a, &restrictions))
        .cloned()
        .collect())
}

fn model_info(dialect: DialectId, alias: &str) -> Value {
    match dialect {
        DialectId::Anthropic => json!({
            "type": "model",
            "id": alias,
            "display_name": alias,
            "created_at": CREATED_AT,
        }),
        _ => json!({"id": alias, "object": "model", "created": 0, "owned_by": "switchyard"}),
    }
}

/// One page of `aliases`: those after `after_id` (or before `before_id`), at most `limit`, and
/// whether more lie beyond it in that direction.
fn page<'a>(aliases: &'a [String], q: &Page) -> Result<(&'a [String], bool), DecodeError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(DecodeError::new(
            format!("limit must be between 1 and {MAX_LIMIT}"),
            Some("limit"),
        ));
    }
    let position = |id: &str, param: &str| {
        aliases
            .iter()
            .position(|a| a == id)
            .ok_or_else(|| DecodeError::new(format!("no model with the id `{id}`"), Some(param)))
    };
    Ok(match (&q.after_id, &q.before_id) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::new(
                "give `after_id` or `before_id`, not both",
                Some("before_id"),
            ));
        }
        (Some(after), None) => {
            let rest = &aliases[position(after, "after_id")? + 1..];
            let end = limit.min(rest.len());
            (&rest[..end], end < rest.len())
        }
        (None, Some(before)) => {
            let head = &aliases[..position(before, "before_id")?];
            let start = head.len().saturating_sub(limit);
            (&head[start..], start > 0)
        }
        (None, None) => {
            let end = limit.min(aliases.len());
            (&aliases[..end], end < aliases.len())
        }
    })
}

/// `GET /v1/models`.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<Page>, QueryRejection>,
) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    let dialect = dialect_of(&headers);
    let listed = usable_aliases(&app, &headers).and_then(|aliases| {
        let body = match dialect {
            DialectId::Anthropic => {
                let Query(q) = query.map_err(|e| {
                    GatewayError::InvalidRequest(DecodeError::new(
                        format!("invalid query: {}", e.body_text()),
                        None,
                    ))
                })?;
                let (shown, has_more) = page(&aliases, &q).map_err(GatewayError::InvalidRequest)?;
                let data: Vec<Value> = shown.iter().map(|a| model_info(dialect, a)).collect();
                json!({
                    "data": data,
                    "has_more": has_more,
                    "first_id": shown.first(),
                    "last_id": shown.last(),
                })
            }
            _ => {
                let data: Vec<Value> = aliases.iter().map(|a| model_info(dialect, a)).collect();
                json!({"object": "list", "data": data})
            }
        };
        Ok(body)
    });
    match listed {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_response(dialect, &e, &ctx.id),
    }
}

/// `GET /v1/models/{id}`: one alias the caller may use, else a 404 in the client's shape.
pub(super) async fn get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    let dialect = dialect_of(&headers);
    // A name the routing rules send to an alias the caller may use is a model it may ask for
    // (`gpt-5*` routed to an alias, say), as a chat request would find.
    let routed = |aliases: &[String]| {
        app.table.policy.rules.iter().any(|rule| {
            rule.when
                .model
                .as_deref()
                .is_some_and(|glob| crate::routing::glob_match(glob, &id))
                && rule
                    .route
                    .alias
                    .as_ref()
                    .is_some_and(|a| aliases.contains(a))
        })
    };
    match usable_aliases(&app, &headers) {
        Ok(aliases) if aliases.contains(&id) || routed(&aliases) => {
            json_response(StatusCode::OK, model_info(dialect, &id))
        }
        Ok(_) => error_response(dialect, &GatewayError::ModelNotFound(id), &ctx.id),
        Err(e) => error_response(dialect, &e, &ctx.id),
    }
}

#[cfg(test)]
mod tests {
    use super::{Page, page};

    fn aliases() -> Vec<String> {
        ["a", "b", "c", "d", "e"].map(String::from).to_vec()
    }

    fn ids(shown: &[String]) -> Vec<&str> {
        shown.iter().map(String::as_str).collect()
    }

    #[test]
    fn pages_run_forwards_and_backwards_and_say_whether_more_lie_beyond() {
        let all = aliases();
        let q = |limit, after: Option<&str>, before: Option<&str>| Page {
            limit,
            after_id: after.map(String::from),
            before_id: before.map(String::from),
        };
        let (shown, more) = page(&all, &q(Some(2), None, None)).unwrap();
        assert_eq!((ids(shown), more), (vec!["a", "b"], true));
        let (shown, more) = page(&all, &q(Some(2), Some("b"), None)).unwrap();
        assert_eq!((ids(shown), more), (vec!["c", "d"], true));
        let (shown, more) = page(&all, &q(Some(2), Some("d"), None)).unwrap();
        assert_eq!((ids(shown), more), (vec!["e"], false));
        let (shown, more) = page(&all, &q(Some(2), None, Some("d"))).unwrap();
        assert_eq!((ids(shown), more), (vec!["b", "c"], true));
        let (shown, more) = page(&all, &q(Some(5), None, Some("c"))).unwrap();
        assert_eq!((ids(shown), more), (vec!["a", "b"], false));
        let (shown, more) = page(&all, &q(None, None, None)).unwrap();
        assert_eq!((ids(shown), more), (vec!["a", "b", "c", "d", "e"], false));

        for (bad, param) in [
            (q(Some(0), None, None), "limit"),
            (q(Some(1001), None, None), "limit"),
            (q(None, Some("x"), None), "after_id"),
            (q(None, Some("a"), Some("b")), "before_id"),
        ] {
            assert_eq!(page(&all, &bad).unwrap_err().param.as_deref(), Some(param));
        }
    }
}

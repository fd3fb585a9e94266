//! The admin API: read-only views for operators, authenticated by the master key.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use switchyard_protocol::dialect::DialectId;

use super::{error_response, json_response};
use crate::app::App;
use crate::pipeline::{self, RequestContext};
use crate::routing::now_ms;

/// `GET /admin/deployments`: health of every deployment, by alias.
pub async fn deployments(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    if let Err(e) = pipeline::authenticate(&app, &headers) {
        return error_response(DialectId::OpenAi, &e, &ctx.id);
    }
    let now = now_ms();
    let data: Vec<_> = app
        .table
        .deployments()
        .map(|(alias, d)| {
            let h = d.health.snapshot(now);
            let state = if h.cooling {
                "cooling"
            } else if h.consecutive_failures > 0 {
                "degraded"
            } else {
                "healthy"
            };
            json!({
                "alias": alias,
                "deployment": d.id,
                "provider": d.provider.name,
                "model": d.model,
                "state": state,
                "in_flight": h.in_flight,
                "successes": h.successes,
                "failures": h.failures,
                "consecutive_failures": h.consecutive_failures,
                "recent_error_rate": (h.error_rate * 1000.0).round() / 1000.0,
                "latency_ewma_ms": h.latency_ewma_ms.map(|l| (l * 10.0).round() / 10.0),
                "latency_p50_ms": h.p50_ms,
                "latency_p99_ms": h.p99_ms,
                "cooldown_remaining_ms": h.cooldown_left_ms,
                "requests_this_minute": h.requests_this_minute,
            })
        })
        .collect();
    json_response(StatusCode::OK, json!({"object": "list", "data": data}))
}

//! `GET /metrics` (Prometheus, no authentication, like any scrape target) and
//! `GET /admin/alerts` (the alerts firing now, master key required).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use switchyard_protocol::dialect::DialectId;

use super::{error_response, json_response};
use crate::app::App;
use crate::metrics::{self, RecorderCounts, Snapshot};
use crate::pipeline::{self, RequestContext};

/// `GET /metrics`: the exposition, gauges read now.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let snapshot = Snapshot {
        deployments: Snapshot::deployments_of(&app.table),
        recorder: RecorderCounts::read(&app.recorder),
        alerts: app.alerts.counts(),
        kept_responses: app.kept_responses.counts(),
        semantic_questions: app.semantic_cache.as_ref().map(|s| s.len() as u64),
        shared_state_up: app.governance.shared().map(|s| s.reachable()),
        store_up: app.store.reachable(),
        otlp: app
            .otlp_stats
            .iter()
            .map(|(endpoint, s)| (endpoint.clone(), metrics::OtlpCounts::read(s)))
            .collect(),
    };
    let mut response = Response::new(Body::from(app.metrics.render(snapshot)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// `GET /admin/alerts`: the alerts firing now, oldest first.
pub async fn alerts(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    if let Err(e) = pipeline::authorize_admin(&app, &headers, false) {
        return error_response(DialectId::OpenAi, &e, &ctx.id);
    }
    let data = app.alerts.active();
    json_response(StatusCode::OK, json!({"object": "list", "data": data}))
}

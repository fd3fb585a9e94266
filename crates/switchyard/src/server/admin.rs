//! The admin API: read-only views for operators, authenticated by the master key.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use switchyard_protocol::dialect::DialectId;
use switchyard_protocol::error::DecodeError;

use super::{error_response, json_response};
use crate::app::App;
use crate::error::GatewayError;
use crate::pipeline::{self, RequestContext};
use crate::routing::now_ms;
use crate::store::{Bucket, RequestFilter, SpendGroup};
use crate::telemetry::record::Outcome;

/// Recent error rate (a moving average over about the last five attempts) from which a
/// deployment that is not cooling shows as degraded, though its last attempt succeeded.
const DEGRADED_ERROR_RATE: f64 = 0.2;

/// `GET /admin/deployments`: health of every deployment, by alias.
pub async fn deployments(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let ctx = RequestContext::new(DialectId::OpenAi);
    if let Err(e) = pipeline::authorize_admin(&app, &headers, false) {
        return error_response(DialectId::OpenAi, &e, &ctx.id);
    }
    let now = now_ms();
    let data: Vec<_> = app
        .table
        .deployments()
        .map(|(alias, d)| {
            let h = d.health.snapshot(now);
            // A deployment failing often is not healthy for answering now and then: its recent
            // error rate (about the last five attempts) says so too.
            let state = if h.cooling {
                "cooling"
            } else if h.consecutive_failures > 0 || h.error_rate >= DEGRADED_ERROR_RATE {
                "degraded"
            } else {
                "healthy"
            };
            json!({
                "alias": alias,
                "deployment": d.id,
                "provider": d.provider.name,
                "model": d.model,
                "attributes": d.attributes,
                // Null: the deployment's requests cost nothing in budgets and records.
                "price": d.billing.map(|p| p.to_json()),
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

/// Query parameters of `GET /admin/requests`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// Unix milliseconds, or a relative span like `15m`, `24h`, `7d` before now.
    since: Option<String>,
    until: Option<String>,
    alias: Option<String>,
    deployment: Option<String>,
    /// A deployment one of whose attempts failed.
    failed_deployment: Option<String>,
    key: Option<String>,
    team: Option<String>,
    customer: Option<String>,
    status: Option<u16>,
    outcome: Option<String>,
    error_code: Option<String>,
    /// `name:value` of a request metadata entry.
    tag: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    limit: Option<u32>,
}

fn bad_query(message: String, request_id: &str) -> Response {
    error_response(
        DialectId::OpenAi,
        &GatewayError::InvalidRequest(DecodeError::new(message, None)),
        request_id,
    )
}

/// A time bound: Unix milliseconds, or `N{s,m,h,d}` ago.
/// A span is a whole number of units back from now: never negative (that would be the future)
/// and never before the Unix epoch's reach.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Ok(ms) = value.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    let unit = value.chars().last()?;
    let num = &value[..value.len() - unit.len_utf8()];
    if !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = num.parse().ok()?;
    let unit_secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let back = n.checked_mul(unit_secs)?.checked_mul(1000)?;
    Some(now.saturating_sub(back).max(0))
}

/// `since` and `until` as given, refused when the window they make is empty the wrong way
/// round (a caller who swapped them would otherwise read "nothing happened").
fn ordered_window(since: Option<i64>, until: Option<i64>) -> Result<(), String> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => {
            Err("'since' is after 'until': the window is empty".to_owned())
        }
        _ => Ok(()),
    }
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<String, Box<Response>> {
    authorize_reader(app, headers).map(|(id, _)| id)
}

/// The request's id and, for a reader below the admin role that belongs to a team, that team:
/// the request records it may read are its team's (they hold prompts and answers).
fn authorize_reader(
    app: &App,
    headers: &HeaderMap,
) -> Result<(String, Option<String>), Box<Response>> {
    let ctx = RequestContext::new(DialectId::OpenAi);
    match pipeline::authorize_admin(app, headers, false) {
        Ok(p) => Ok((ctx.id, p.reader_team().map(str::to_owned))),
        Err(e) => Err(Box::new(error_response(DialectId::OpenAi, &e, &ctx.id))),
    }
}

/// `GET /admin/requests`: request records, newest first, filtered, with cursor pagination.
pub async fn requests(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> Response {
    let (id, own_team) = match authorize_reader(&app, &headers) {
        Ok(reader) => reader,
        Err(r) => return *r,
    };
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(format!("invalid query: {e}"), &id),
    };
    let mut filter = RequestFilter {
        alias: q.alias,
        deployment: q.deployment,
        failed_deployment: q.failed_deployment,
        key: q.key,
        // A team's reader reads its team's records, whatever team it names.
        team: own_team.or(q.team),
        customer: q.customer,
        status: q.status,
        outcome: q.outcome,
        error_code: q.error_code,
        before_id: q.cursor,
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
        ..RequestFilter::default()
    };
    for (name, value, slot) in [
        ("since", q.since, &mut filter.since_ms),
        ("until", q.until, &mut filter.until_ms),
    ] {
        if let Some(v) = value {
            match parse_time(&v) {
                Some(t) => *slot = Some(t),
                None => {
                    return bad_query(
                        format!("'{name}' must be Unix milliseconds or a span like 24h"),
                        &id,
                    );
                }
            }
        }
    }
    if let Err(message) = ordered_window(filter.since_ms, filter.until_ms) {
        return bad_query(message, &id);
    }
    if let Some(outcome) = &filter.outcome
        && !Outcome::ALL.iter().any(|o| o.as_str() == outcome)
    {
        let known: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        return bad_query(
            format!("'outcome' must be one of {}", known.join(", ")),
            &id,
        );
    }
    if q.limit.is_some_and(|l| l == 0 || l > 1000) {
        return bad_query("'limit' must be 1 to 1000".into(), &id);
    }
    // A cursor is a record's id, as a page's `next_cursor` gives it: anything else would read
    // as a place in the list and answer a page that is not the next one.
    if let Some(cursor) = &filter.before_id
        && !(cursor.len() == 32 && cursor.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return bad_query(
            "'cursor' must be the 'next_cursor' of a previous page".into(),
            &id,
        );
    }
    if let Some(tag) = q.tag {
        match tag.split_once(':') {
            // A tag's name is a JSON path in the store; one with control characters (a NUL
            // ends SQLite's) names no tag a request could have set through a header.
            Some((k, _)) if k.chars().any(char::is_control) => {
                return bad_query("a tag's name cannot hold control characters".into(), &id);
            }
            Some((k, v)) => filter.tag = Some((k.to_owned(), v.to_owned())),
            None => return bad_query("'tag' must be name:value".into(), &id),
        }
    }
    match app.store.query(&filter).await {
        Ok(records) => {
            let next = (records.len() as u32 == filter.limit)
                .then(|| records.last().map(|r| r.id.clone()))
                .flatten();
            json_response(
                StatusCode::OK,
                json!({"object": "list", "data": records, "next_cursor": next}),
            )
        }
        Err(e) => error_response(DialectId::OpenAi, &GatewayError::store(e), &id),
    }
}

/// `GET /admin/requests/{id}`: one record with its full route decision and attempts.
pub async fn request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(request_id): Path<String>,
) -> Response {
    let (id, own_team) = match authorize_reader(&app, &headers) {
        Ok(reader) => reader,
        Err(r) => return *r,
    };
    match app.store.get(&request_id).await {
        // Another team's record answers as a missing one: a reader learns nothing of it.
        Ok(Some(record))
            if own_team
                .as_deref()
                .is_none_or(|t| record.caller.team.as_deref() == Some(t)) =>
        {
            json_response(StatusCode::OK, json!(record))
        }
        Ok(Some(_)) => error_response(
            DialectId::OpenAi,
            &GatewayError::Missing(format!("No request record with id '{request_id}'.")),
            &id,
        ),
        Ok(None) => error_response(
            DialectId::OpenAi,
            &GatewayError::Missing(format!("No request record with id '{request_id}'.")),
            &id,
        ),
        Err(e) => error_response(DialectId::OpenAi, &GatewayError::store(e), &id),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    /// `key`, `team`, `org`, `customer`, `alias`, `deployment` or `tag:NAME`.
    by: Option<String>,
    /// `day`, `week`, `month` or `all` (default).
    bucket: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `GET /admin/spend`: cost and tokens grouped by an attribute over time buckets.
pub async fn spend(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<SpendQuery>, QueryRejection>,
) -> Response {
    let id = match authorize(&app, &headers) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(format!("invalid query: {e}"), &id),
    };
    let by = q.by.as_deref().unwrap_or("alias");
    let group = match by {
        "key" => SpendGroup::Key,
        "team" => SpendGroup::Team,
        "org" => SpendGroup::Org,
        "customer" => SpendGroup::Customer,
        "alias" => SpendGroup::Alias,
        "deployment" => SpendGroup::Deployment,
        other => match other.strip_prefix("tag:") {
            Some(name) if !name.is_empty() && !name.chars().any(char::is_control) => {
                SpendGroup::Tag(name.to_owned())
            }
            _ => {
                return bad_query(
                    "'by' must be key, team, org, customer, alias, deployment or tag:NAME".into(),
                    &id,
                );
            }
        },
    };
    let bucket = match q.bucket.as_deref().unwrap_or("all") {
        "day" => Bucket::Day,
        "week" => Bucket::Week,
        "month" => Bucket::Month,
        "all" => Bucket::All,
        _ => return bad_query("'bucket' must be day, week, month or all".into(), &id),
    };
    let since = match q.since.as_deref().map(parse_time) {
        Some(None) => {
            return bad_query(
                "'since' must be Unix milliseconds or a span like 7d".into(),
                &id,
            );
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    let until = match q.until.as_deref().map(parse_time) {
        Some(None) => {
            return bad_query(
                "'until' must be Unix milliseconds or a span like 7d".into(),
                &id,
            );
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    if let Err(message) = ordered_window(since, until) {
        return bad_query(message, &id);
    }
    match app.store.spend(&group, bucket, since, until).await {
        Ok(rows) => {
            let total: i64 = rows.iter().map(|r| r.cost_nanos).sum();
            let data: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "group": r.group, "bucket": r.bucket, "requests": r.requests,
                        "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                        "cost_nanos": r.cost_nanos, "cost_usd": r.cost_nanos as f64 / 1e9,
                    })
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"object": "list", "by": by, "data": data, "total_cost_nanos": total}),
            )
        }
        Err(e) => error_response(DialectId::OpenAi, &GatewayError::store(e), &id),
    }
}

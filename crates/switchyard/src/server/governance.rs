//! Admin API for governance: virtual keys, teams, organisations, customers, their budgets, and
//! the audit log. Reads need the `viewer` role, changes `admin` (or `team_admin` within its own
//! team). Every change writes an audit entry with the entity before and after, never a secret.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_protocol::dialect::DialectId;
use switchyard_protocol::error::DecodeError;

use super::{error_response, json_response};
use crate::app::App;
use crate::config::RiskLevel;
use crate::error::GatewayError;
use crate::governance::ledger::Level;
use crate::governance::model::{
    Customer, Limits, Org, OverBudget, Period, Role, StoredKey, Team, VirtualKey,
};
use crate::governance::{Principal, display_of, new_secret, now_unix_ms};
use crate::pipeline::{RequestContext, authorize_admin};
use crate::store::AuditEntry;

type Answer = Result<Response, GatewayError>;

pub(super) fn respond(answer: Answer) -> Response {
    match answer {
        Ok(r) => r,
        Err(e) => error_response(
            DialectId::OpenAi,
            &e,
            &RequestContext::new(DialectId::OpenAi).id,
        ),
    }
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    DecodeError::parse(body).map_err(GatewayError::InvalidRequest)
}

const LIMIT_FIELDS: &[&str] = &[
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "max_budget_usd",
    "budget_period",
    "soft_budget",
    "over_budget",
    "allowed_regions",
    "max_risk_level",
    "allowed_data_classifications",
];

/// Parses an entity body and its limits separately (both strict), so errors keep their field
/// path — `#[serde(flatten)]` would lose it.
fn parse_with_limits<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<(T, LimitsInput), GatewayError> {
    let value: Value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        parse(body)?
    };
    let Value::Object(mut rest) = value else {
        return Err(bad("the body must be a JSON object", ""));
    };
    let mut limits = Map::new();
    for f in LIMIT_FIELDS {
        if let Some(v) = rest.remove(*f) {
            limits.insert((*f).to_owned(), v);
        }
    }
    let fields = switchyard_protocol::json::deserialize_at(Value::Object(rest), "")
        .map_err(GatewayError::InvalidRequest)?;
    let limits = switchyard_protocol::json::deserialize_at(Value::Object(limits), "")
        .map_err(GatewayError::InvalidRequest)?;
    Ok((fields, limits))
}

pub(super) fn bad(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::InvalidRequest(DecodeError::new(message, Some(param)))
}

pub(super) fn store_error(e: sqlx::Error) -> GatewayError {
    GatewayError::store(e)
}

/// Limits as the API takes them: money in US dollars, converted once to nano-dollars.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    models: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    max_parallel: Option<u32>,
    /// `null` lifts the budget.
    #[serde(default, deserialize_with = "present")]
    max_budget_usd: Option<Option<f64>>,
    budget_period: Option<Period>,
    /// `null` lifts the soft budget.
    #[serde(default, deserialize_with = "present")]
    soft_budget: Option<Option<f64>>,
    over_budget: Option<OverBudget>,
    allowed_regions: Option<Vec<String>>,
    /// `low`, `medium` or `high`; `null` lifts the limit.
    #[serde(default, deserialize_with = "present")]
    max_risk_level: Option<Option<RiskLevel>>,
    allowed_data_classifications: Option<Vec<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl LimitsInput {
    fn apply(self, limits: &mut Limits) -> Result<(), GatewayError> {
        if let Some(m) = self.models {
            limits.models = m;
        }
        if let Some(v) = self.rpm {
            limits.rpm = (v > 0).then_some(v);
        }
        if let Some(v) = self.tpm {
            limits.tpm = (v > 0).then_some(v);
        }
        if let Some(v) = self.max_parallel {
            limits.max_parallel = (v > 0).then_some(v);
        }
        if let Some(None) = self.max_budget_usd {
            limits.max_budget_nanos = None;
        }
        if let Some(Some(usd)) = self.max_budget_usd {
            if !(usd.is_finite() && usd >= 0.0) {
                return Err(bad(
                    "'max_budget_usd' must be a non-negative number",
                    "max_budget_usd",
                ));
            }
            limits.max_budget_nanos = Some((usd * 1e9).round() as i64);
        }
        if let Some(p) = self.budget_period {
            limits.budget_period = p;
        }
        if let Some(None) = self.soft_budget {
            limits.soft_budget = None;
        }
        if let Some(Some(s)) = self.soft_budget {
            if !(0.0..=1.0).contains(&s) {
                return Err(bad("'soft_budget' must be between 0 and 1", "soft_budget"));
            }
            limits.soft_budget = Some(s);
        }
        if let Some(o) = self.over_budget {
            limits.over_budget = o;
        }
        for (field, list, into) in [
            (
                "allowed_regions",
                self.allowed_regions,
                &mut limits.allowed_regions,
            ),
            (
                "allowed_data_classifications",
                self.allowed_data_classifications,
                &mut limits.allowed_data_classifications,
            ),
        ] {
            if let Some(list) = list {
                if let Some(i) = list.iter().position(|v| v.trim().is_empty()) {
                    return Err(bad(
                        format!("'{field}[{i}]' must not be empty"),
                        &format!("{field}[{i}]"),
                    ));
                }
                *into = list;
            }
        }
        if let Some(r) = self.max_risk_level {
            limits.max_risk_level = r;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    name: Option<String>,
    team_id: Option<String>,
    role: Option<Role>,
    /// Seconds until the key expires; `null` (on a change) lifts the expiry.
    #[serde(default, deserialize_with = "present")]
    expires_in_secs: Option<Option<i64>>,
    blocked: Option<bool>,
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupInput {
    id: Option<String>,
    name: Option<String>,
    org_id: Option<String>,
    metadata: Option<Map<String, Value>>,
}

/// Secrets of rotations before the last kept in their grace periods, at most.
const MAX_EARLIER_SECRETS: usize = 4;

/// The longest expiry or grace period a key takes: ten years, in seconds.
const MAX_SECS: i64 = 10 * 366 * 86_400;

/// When a key given `secs` from `now_ms` expires (a key given a negative number has already
/// expired); a number of seconds beyond ten years either way is refused.
fn expiry(now_ms: i64, secs: i64) -> Result<i64, GatewayError> {
    if (-MAX_SECS..=MAX_SECS).contains(&secs) {
        Ok(now_ms + secs * 1000)
    } else {
        Err(bad(
            format!("expires_in_secs must be within {MAX_SECS} seconds (ten years) either way"),
            "expires_in_secs",
        ))
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// One change to an entity: what is stored, and what the audit log says about it.
struct Change<'a> {
    action: &'a str,
    kind: &'a str,
    id: &'a str,
    before: Option<Value>,
    after: Option<Value>,
    /// The stored body (`None` deletes).
    body: Option<String>,
}

async fn audited(app: &App, p: &Principal, c: Change<'_>) -> Result<(), GatewayError> {
    let entry = AuditEntry {
        at_ms: now_unix_ms(),
        actor: p.actor(),
        action: c.action.into(),
        kind: c.kind.into(),
        entity_id: c.id.into(),
        before: c.before,
        after: c.after,
    };
    app.governance
        .write(c.kind, c.id, c.body, entry)
        .await
        .map_err(|e| match e.downcast::<redis::RedisError>() {
            Ok(e) => GatewayError::SharedStateUnavailable(e.to_string()),
            Err(e) => match e.downcast::<sqlx::Error>() {
                Ok(e) => GatewayError::store(e),
                Err(e) => GatewayError::Internal(format!("store: {e}")),
            },
        })
}

/// A team admin acts only within its own team.
fn check_team_scope(p: &Principal, team: Option<&str>) -> Result<(), GatewayError> {
    if p.role >= Role::Admin {
        return Ok(());
    }
    if p.role == Role::TeamAdmin && team.is_some() && team == p.caller.team.as_deref() {
        return Ok(());
    }
    Err(GatewayError::Forbidden(
        "A team admin may only manage its own team's keys.".into(),
    ))
}

pub(super) fn require_admin(p: &Principal) -> Result<(), GatewayError> {
    if p.role >= Role::Admin {
        Ok(())
    } else {
        Err(GatewayError::Forbidden(
            "This change needs the admin role.".into(),
        ))
    }
}

fn key_json(app: &App, k: &VirtualKey) -> Value {
    let mut v = json!(k);
    if let (Some(map), Some((spent, reserved, budget, since))) = (
        v.as_object_mut(),
        app.governance.budget_of(&Level::Key(k.id.clone())),
    ) {
        map.insert(
            "budget".into(),
            json!({"spent_nanos": spent, "reserved_nanos": reserved, "max_nanos": budget, "period_start_ms": since}),
        );
    }
    v
}

/// Stores a key and writes its audit entry.
async fn save_key(
    app: &App,
    p: &Principal,
    action: &str,
    before: Option<&VirtualKey>,
    key: &VirtualKey,
) -> Result<(), GatewayError> {
    let change = Change {
        action,
        kind: "key",
        id: &key.id,
        before: before.map(|k| json!(k)),
        after: Some(json!(key)),
        body: Some(store_key(key)),
    };
    audited(app, p, change).await
}

/// A key's JSON with its secret: the only time the secret is ever shown.
fn with_secret(app: &App, key: &VirtualKey, secret: String) -> Value {
    let mut out = key_json(app, key);
    if let Some(map) = out.as_object_mut() {
        map.insert("key".into(), Value::String(secret));
    }
    out
}

fn store_key(key: &VirtualKey) -> String {
    serde_json::to_string(&StoredKey {
        key: key.clone(),
        hash: key.hash.clone(),
        previous_hash: key.previous_hash.clone(),
        earlier: key.earlier_hashes.clone(),
    })
    .unwrap_or_default()
}

pub async fn create_key(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            let (input, limits_input): (KeyInput, LimitsInput) = parse_with_limits(&body)?;
            check_team_scope(&p, input.team_id.as_deref())?;
            let role = input.role.unwrap_or_default();
            if role > p.role {
                return Err(GatewayError::Forbidden(
                    "A key cannot be given a role above its creator's.".into(),
                ));
            }
            if let Some(t) = &input.team_id
                && app.governance.team(t).is_none()
            {
                return Err(bad(format!("unknown team '{t}'"), "team_id"));
            }
            let secret = new_secret();
            let now = now_unix_ms();
            let mut limits = Limits::default();
            limits_input.apply(&mut limits)?;
            let mut expires_at_ms = input
                .expires_in_secs
                .flatten()
                .map(|s| expiry(now, s))
                .transpose()?;
            within_creator(&p, &mut limits, &mut expires_at_ms)?;
            let key = VirtualKey {
                id: new_id("key"),
                name: input.name.unwrap_or_else(|| "unnamed".into()),
                display: display_of(&secret),
                hash: app.governance.hash(&secret),
                previous_hash: None,
                previous_valid_until_ms: None,
                earlier_hashes: Vec::new(),
                team_id: input.team_id,
                role,
                expires_at_ms,
                blocked: input.blocked.unwrap_or(false),
                limits,
                metadata: input.metadata.unwrap_or_default(),
                created_at_ms: now,
            };
            save_key(&app, &p, "create", None, &key).await?;
            Ok(json_response(
                StatusCode::CREATED,
                with_secret(&app, &key, secret),
            ))
        }
        .await,
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    team: Option<String>,
}

pub async fn list_keys(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    respond((|| {
        let p = authorize_admin(&app, &headers, false)?;
        let team_scope = p.reader_team();
        let data: Vec<Value> = app
            .governance
            .keys()
            .iter()
            .filter(|k| {
                q.team
                    .as_ref()
                    .is_none_or(|t| k.team_id.as_ref() == Some(t))
            })
            .filter(|k| team_scope.is_none() || k.team_id.as_deref() == team_scope)
            .map(|k| key_json(&app, k))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({"object": "list", "data": data}),
        ))
    })())
}

fn find_key(app: &App, p: &Principal, id: &str) -> Result<Arc<VirtualKey>, GatewayError> {
    let key = app
        .governance
        .key(id)
        .ok_or_else(|| GatewayError::Missing(format!("No key with id '{id}'.")))?;
    if p.role < Role::Admin {
        check_team_scope(p, key.team_id.as_deref())?;
    }
    Ok(key)
}

/// A key to change (rotate, block, update, delete): within the caller's team, and of no higher
/// role than the caller's (a team admin taking over an admin key would hold its rights).
fn find_key_to_change(app: &App, p: &Principal, id: &str) -> Result<Arc<VirtualKey>, GatewayError> {
    let key = find_key(app, p, id)?;
    if !p.master && key.role > p.role {
        return Err(GatewayError::Forbidden(
            "A key of a higher role than yours cannot be changed with your key.".into(),
        ));
    }
    Ok(key)
}

/// Below the admin role, a key hands on no more than it holds: a key it creates gets its
/// limits and expiry where it sets none, and none beyond them.
fn within_creator(
    p: &Principal,
    limits: &mut Limits,
    expires_at_ms: &mut Option<i64>,
) -> Result<(), GatewayError> {
    let Some(creator) = p.key.as_ref().filter(|_| !p.master && p.role < Role::Admin) else {
        return Ok(());
    };
    let own = &creator.limits;
    let beyond = |field: &str| {
        Err(GatewayError::Forbidden(format!(
            "'{field}' goes beyond your own key's; a key you create gets at most what yours has."
        )))
    };
    fn at_most<T: PartialOrd + Copy>(mine: Option<T>, theirs: &mut Option<T>) -> bool {
        match (mine, *theirs) {
            (Some(m), None) => {
                *theirs = Some(m);
                true
            }
            (Some(m), Some(t)) => t <= m,
            (None, _) => true,
        }
    }
    if !at_most(own.max_budget_nanos, &mut limits.max_budget_nanos) {
        return beyond("max_budget_usd");
    }
    if !at_most(own.rpm, &mut limits.rpm) {
        return beyond("rpm");
    }
    if !at_most(own.tpm, &mut limits.tpm) {
        return beyond("tpm");
    }
    if !at_most(own.max_parallel, &mut limits.max_parallel) {
        return beyond("max_parallel");
    }
    if !at_most(creator.expires_at_ms, expires_at_ms) {
        return beyond("expires_in_secs");
    }
    if !own.models.is_empty() {
        if limits.models.is_empty() {
            limits.models = own.models.clone();
        } else if limits.models.iter().any(|m| !own.models.contains(m)) {
            return beyond("models");
        }
    }
    Ok(())
}

pub async fn get_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    respond((|| {
        let p = authorize_admin(&app, &headers, false)?;
        // Read as the list is: a reader of a team sees its team's keys, one of none every key.
        let key = app
            .governance
            .key(&id)
            .filter(|k| {
                p.reader_team()
                    .is_none_or(|t| k.team_id.as_deref() == Some(t))
            })
            .ok_or_else(|| GatewayError::Missing(format!("No key with id '{id}'.")))?;
        Ok(json_response(StatusCode::OK, key_json(&app, &key)))
    })())
}

pub async fn update_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            let old = find_key_to_change(&app, &p, &id)?;
            let (input, limits_input): (KeyInput, LimitsInput) = parse_with_limits(&body)?;
            let mut key = (*old).clone();
            if let Some(n) = input.name {
                key.name = n;
            }
            if let Some(t) = input.team_id {
                check_team_scope(&p, Some(&t))?;
                if app.governance.team(&t).is_none() {
                    return Err(bad(format!("unknown team '{t}'"), "team_id"));
                }
                key.team_id = Some(t);
            }
            if let Some(r) = input.role {
                if r > p.role {
                    return Err(GatewayError::Forbidden(
                        "A key cannot be given a role above yours.".into(),
                    ));
                }
                key.role = r;
            }
            match input.expires_in_secs {
                Some(Some(s)) => key.expires_at_ms = Some(expiry(now_unix_ms(), s)?),
                Some(None) => key.expires_at_ms = None,
                None => {}
            }
            if let Some(b) = input.blocked {
                key.blocked = b;
            }
            if let Some(m) = input.metadata {
                key.metadata = m;
            }
            limits_input.apply(&mut key.limits)?;
            // A key below the admin role does not lift what was set on it.
            let own = p.caller.key_id.as_deref() == Some(old.id.as_str());
            if own
                && !p.master
                && p.role < Role::Admin
                && (key.limits != old.limits || key.expires_at_ms != old.expires_at_ms)
            {
                return Err(GatewayError::Forbidden(
                    "A key cannot change its own limits or expiry; an admin changes them.".into(),
                ));
            }
            save_key(&app, &p, "update", Some(&old), &key).await?;
            Ok(json_response(StatusCode::OK, key_json(&app, &key)))
        }
        .await,
    )
}

async fn set_blocked(app: Arc<App>, headers: HeaderMap, id: String, blocked: bool) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            let old = find_key_to_change(&app, &p, &id)?;
            let mut key = (*old).clone();
            key.blocked = blocked;
            let action = if blocked { "block" } else { "unblock" };
            save_key(&app, &p, action, Some(&old), &key).await?;
            Ok(json_response(StatusCode::OK, key_json(&app, &key)))
        }
        .await,
    )
}

pub async fn block_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_blocked(app, headers, id, true).await
}

pub async fn unblock_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_blocked(app, headers, id, false).await
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateInput {
    /// How long the old secret keeps working (default 0: at once).
    grace_secs: Option<i64>,
}

pub async fn rotate_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            let old = find_key_to_change(&app, &p, &id)?;
            let input: RotateInput = if body.is_empty() {
                RotateInput::default()
            } else {
                parse(&body)?
            };
            let grace = input.grace_secs.unwrap_or(0);
            if !(0..=MAX_SECS).contains(&grace) {
                return Err(bad(
                    format!("grace_secs must be between 0 and {MAX_SECS} (ten years)"),
                    "grace_secs",
                ));
            }
            let secret = new_secret();
            let now = now_unix_ms();
            let mut key = (*old).clone();
            // The secret a rotation before this one left in its grace period keeps it (a
            // retried rotation would otherwise cut off every client still on the first).
            // A rotation without grace (a leaked key) ends every old secret at once.
            key.earlier_hashes
                .retain(|(_, until)| grace > 0 && *until > now);
            if let (Some(hash), Some(until)) = (&old.previous_hash, old.previous_valid_until_ms)
                && grace > 0
                && until > now
            {
                key.earlier_hashes.push((hash.clone(), until));
            }
            // A few at most: each is a secret that still opens the key.
            let excess = key.earlier_hashes.len().saturating_sub(MAX_EARLIER_SECRETS);
            key.earlier_hashes.drain(..excess);
            key.previous_hash = (grace > 0).then(|| old.hash.clone());
            key.previous_valid_until_ms = (grace > 0).then(|| now + grace * 1000);
            key.hash = app.governance.hash(&secret);
            key.display = display_of(&secret);
            save_key(&app, &p, "rotate", Some(&old), &key).await?;
            Ok(json_response(
                StatusCode::OK,
                with_secret(&app, &key, secret),
            ))
        }
        .await,
    )
}

pub async fn delete_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            let old = find_key_to_change(&app, &p, &id)?;
            audited(
                &app,
                &p,
                Change {
                    action: "delete",
                    kind: "key",
                    id: &id,
                    before: Some(json!(*old)),
                    after: None,
                    body: None,
                },
            )
            .await?;
            Ok(json_response(
                StatusCode::OK,
                json!({"id": id, "deleted": true}),
            ))
        }
        .await,
    )
}

/// Teams, organisations and customers share one shape of handler.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Team,
    Org,
    Customer,
}

impl Group {
    fn kind(self) -> &'static str {
        match self {
            Group::Team => "team",
            Group::Org => "org",
            Group::Customer => "customer",
        }
    }

    fn level(self, id: &str) -> Level {
        match self {
            Group::Team => Level::Team(id.into()),
            Group::Org => Level::Org(id.into()),
            Group::Customer => Level::Customer(id.into()),
        }
    }

    fn get(self, app: &App, id: &str) -> Option<Value> {
        match self {
            Group::Team => app.governance.team(id).map(|v| json!(v)),
            Group::Org => app.governance.org(id).map(|v| json!(v)),
            Group::Customer => app.governance.customer(id).map(|v| json!(v)),
        }
    }

    fn all(self, app: &App) -> Vec<Value> {
        match self {
            Group::Team => app.governance.teams().iter().map(|v| json!(v)).collect(),
            Group::Org => app.governance.orgs().iter().map(|v| json!(v)).collect(),
            Group::Customer => app
                .governance
                .customers()
                .iter()
                .map(|v| json!(v))
                .collect(),
        }
    }

    fn with_budget(self, app: &App, mut v: Value) -> Value {
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        if let (Some(map), Some((spent, reserved, budget, since))) = (
            v.as_object_mut(),
            app.governance.budget_of(&self.level(&id)),
        ) {
            map.insert(
                "budget".into(),
                json!({"spent_nanos": spent, "reserved_nanos": reserved, "max_nanos": budget, "period_start_ms": since}),
            );
        }
        v
    }
}

pub async fn create_group(
    app: Arc<App>,
    headers: HeaderMap,
    body: Bytes,
    group: Group,
) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            require_admin(&p)?;
            let (input, limits_input): (GroupInput, LimitsInput) = parse_with_limits(&body)?;
            let id = match (group, input.id) {
                (_, Some(id)) if !id.is_empty() => id,
                (Group::Customer, _) => {
                    return Err(bad(
                        "'id' is required for customers (the `user` value)",
                        "id",
                    ));
                }
                (Group::Team, _) => new_id("team"),
                (Group::Org, _) => new_id("org"),
            };
            // An id is named in paths, records, logs and metric labels: short, printable, no
            // path separator.
            if id.len() > 128
                || id.trim().is_empty()
                || id
                    .chars()
                    .any(|c| c.is_control() || (c == '/' && group != Group::Customer))
            {
                return Err(bad(
                    "'id' must be 1 to 128 printable characters (a team's or organisation's without '/')",
                    "id",
                ));
            }
            if group.get(&app, &id).is_some() {
                return Err(bad(format!("{} '{id}' already exists", group.kind()), "id"));
            }
            if let Some(o) = &input.org_id
                && app.governance.org(o).is_none()
            {
                return Err(bad(format!("unknown org '{o}'"), "org_id"));
            }
            let mut limits = Limits::default();
            limits_input.apply(&mut limits)?;
            let metadata = input.metadata.unwrap_or_default();
            let name = input.name.unwrap_or_else(|| id.clone());
            let value = match group {
                Group::Team => json!(Team {
                    id: id.clone(),
                    name,
                    org_id: input.org_id,
                    limits,
                    metadata
                }),
                Group::Org => json!(Org {
                    id: id.clone(),
                    name,
                    limits,
                    metadata
                }),
                Group::Customer => json!(Customer {
                    id: id.clone(),
                    limits,
                    metadata
                }),
            };
            audited(
                &app,
                &p,
                Change {
                    action: "create",
                    kind: group.kind(),
                    id: &id,
                    before: None,
                    after: Some(value.clone()),
                    body: Some(value.to_string()),
                },
            )
            .await?;
            Ok(json_response(
                StatusCode::CREATED,
                group.with_budget(&app, value),
            ))
        }
        .await,
    )
}

pub async fn update_group(
    app: Arc<App>,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    group: Group,
) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            require_admin(&p)?;
            let old = group.get(&app, &id).ok_or_else(|| {
                GatewayError::Missing(format!("No {} with id '{id}'.", group.kind()))
            })?;
            let (input, limits_input): (GroupInput, LimitsInput) = parse_with_limits(&body)?;
            let mut limits: Limits =
                serde_json::from_value(old["limits"].clone()).unwrap_or_default();
            limits_input.apply(&mut limits)?;
            let mut value = old.clone();
            if let Some(map) = value.as_object_mut() {
                map.insert("limits".into(), json!(limits));
                if let Some(n) = input.name
                    && !matches!(group, Group::Customer)
                {
                    map.insert("name".into(), Value::String(n));
                }
                if let Some(m) = input.metadata {
                    map.insert("metadata".into(), Value::Object(m));
                }
                if let (Some(o), Group::Team) = (input.org_id, group) {
                    if app.governance.org(&o).is_none() {
                        return Err(bad(format!("unknown org '{o}'"), "org_id"));
                    }
                    map.insert("org_id".into(), Value::String(o));
                }
            }
            audited(
                &app,
                &p,
                Change {
                    action: "update",
                    kind: group.kind(),
                    id: &id,
                    before: Some(old),
                    after: Some(value.clone()),
                    body: Some(value.to_string()),
                },
            )
            .await?;
            Ok(json_response(
                StatusCode::OK,
                group.with_budget(&app, value),
            ))
        }
        .await,
    )
}

pub async fn delete_group(app: Arc<App>, headers: HeaderMap, id: String, group: Group) -> Response {
    respond(
        async {
            let p = authorize_admin(&app, &headers, true)?;
            let _one_at_a_time = app.governance.changes.lock().await;
            require_admin(&p)?;
            let old = group.get(&app, &id).ok_or_else(|| {
                GatewayError::Missing(format!("No {} with id '{id}'.", group.kind()))
            })?;
            // Keys of a deleted team (teams of a deleted organisation) would be freed of its
            // limits, and taken back by a new one of the same id.
            let members = match group {
                Group::Team => app
                    .governance
                    .keys()
                    .iter()
                    .filter(|k| k.team_id.as_deref() == Some(id.as_str()))
                    .count(),
                Group::Org => app
                    .governance
                    .teams()
                    .iter()
                    .filter(|t| t.org_id.as_deref() == Some(id.as_str()))
                    .count(),
                Group::Customer => 0,
            };
            if members > 0 {
                let what = if group == Group::Team {
                    "keys"
                } else {
                    "teams"
                };
                return Err(GatewayError::Conflict(format!(
                    "The {} '{id}' still has {members} {what}: move or delete them first.",
                    group.kind()
                )));
            }
            audited(
                &app,
                &p,
                Change {
                    action: "delete",
                    kind: group.kind(),
                    id: &id,
                    before: Some(old),
                    after: None,
                    body: None,
                },
            )
            .await?;
            Ok(json_response(
                StatusCode::OK,
                json!({"id": id, "deleted": true}),
            ))
        }
        .await,
    )
}

pub async fn list_group(app: Arc<App>, headers: HeaderMap, group: Group) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        let data: Vec<Value> = group
            .all(&app)
            .into_iter()
            .map(|v| group.with_budget(&app, v))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({"object": "list", "data": data}),
        ))
    })())
}

pub async fn get_group(app: Arc<App>, headers: HeaderMap, id: String, group: Group) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        let v = group
            .get(&app, &id)
            .ok_or_else(|| GatewayError::Missing(format!("No {} with id '{id}'.", group.kind())))?;
        Ok(json_response(StatusCode::OK, group.with_budget(&app, v)))
    })())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    cursor: Option<i64>,
}

pub async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(
        async {
            authorize_admin(&app, &headers, false)?;
            let Query(q) = query.map_err(|e| bad(format!("invalid query: {e}"), "query"))?;
            let limit = q.limit.unwrap_or(100);
            if !(1..=1000).contains(&limit) {
                return Err(bad("'limit' must be 1 to 1000", "limit"));
            }
            let entries = app
                .governance
                .store()
                .audit_log(limit, q.cursor)
                .await
                .map_err(store_error)?;
            // Pages go back as far as the log does: the last entry's number is the next
            // page's cursor.
            let next = (entries.len() == limit as usize)
                .then(|| entries.last().map(|(seq, _)| *seq))
                .flatten();
            let data: Vec<Value> = entries
                .into_iter()
                .map(|(seq, entry)| {
                    let mut v = json!(entry);
                    if let Some(map) = v.as_object_mut() {
                        map.insert("seq".into(), json!(seq));
                    }
                    v
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                json!({"object": "list", "data": data, "next_cursor": next}),
            ))
        }
        .await,
    )
}

/// Route table entries for the group kinds, so `server` stays a list of paths.
macro_rules! group_routes {
    ($router:expr, $path:literal, $group:expr) => {
        $router
            .route(
                $path,
                axum::routing::get(|State(app): State<Arc<App>>, headers: HeaderMap| async move {
                    $crate::server::governance::list_group(app, headers, $group).await
                })
                .post(|State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes| async move {
                    $crate::server::governance::create_group(app, headers, body, $group).await
                }),
            )
            .route(
                concat!($path, "/{id}"),
                axum::routing::get(
                    |State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>| async move {
                        $crate::server::governance::get_group(app, headers, id, $group).await
                    },
                )
                .patch(
                    |State(app): State<Arc<App>>,
                     headers: HeaderMap,
                     Path(id): Path<String>,
                     body: Bytes| async move {
                        $crate::server::governance::update_group(app, headers, id, body, $group).await
                    },
                )
                .delete(
                    |State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>| async move {
                        $crate::server::governance::delete_group(app, headers, id, $group).await
                    },
                ),
            )
    };
}

pub fn routes(router: axum::Router<Arc<App>>) -> axum::Router<Arc<App>> {
    use axum::routing::{get, post};
    let router = router
        .route("/admin/keys", get(list_keys).post(create_key))
        .route(
            "/admin/keys/{id}",
            get(get_key).patch(update_key).delete(delete_key),
        )
        .route("/admin/keys/{id}/block", post(block_key))
        .route("/admin/keys/{id}/unblock", post(unblock_key))
        .route("/admin/keys/{id}/rotate", post(rotate_key))
        .route("/admin/audit", get(audit));
    let router = group_routes!(router, "/admin/teams", Group::Team);
    let router = group_routes!(router, "/admin/orgs", Group::Org);
    group_routes!(router, "/admin/customers", Group::Customer)
}

//! Experiments own what a request becomes when it names a configuration: versioned
//! configurations (target alias, parameters, prompt template) with labels, A/B experiments that
//! split a configuration's traffic between versions by a sticky hash, the change log of every
//! change to either, feedback scores on requests and sessions, and per-variant results.
//!
//! The hot path reads an immutable snapshot swapped atomically after each change (no lock, no
//! IO); changes are serialised by one async mutex on the admin path and written with their
//! change-log and audit entries in one transaction. Routing, governance and recording stay with
//! their owners: this module only rewrites the decoded request and says which version served it.

pub mod assign;
pub mod diff;
pub mod export;
pub mod model;
pub mod results;
pub mod stats;
pub mod store;
pub mod template;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_protocol::canonical::ChatRequest;
use switchyard_protocol::error::DecodeError;

use crate::error::GatewayError;
use crate::governance::{Principal, now_unix_ms};
use crate::store::{AuditEntry, Store};
use model::{
    ChangeEntry, ConfigVersion, Experiment, Feedback, FeedbackTarget, FeedbackValue, LATEST,
    MetricSpec, PARAMETER_NAMES, PRODUCTION, Parameters, Status, Template, Unit, Variant,
};
use store::{ExperimentStore, Mutation};

/// Header selecting a configuration: `NAME`, `NAME@VERSION` or `NAME@LABEL`.
pub const CONFIG_HEADER: &str = "x-switchyard-config";
/// Header naming the session a request belongs to (assignment unit and feedback target).
pub const SESSION_HEADER: &str = "x-switchyard-session-id";

// Looked up by name made once: a lookup by `&str` parses and checks the name on every request.
static CONFIG_NAME: HeaderName = HeaderName::from_static(CONFIG_HEADER);
static SESSION_NAME: HeaderName = HeaderName::from_static(SESSION_HEADER);
/// Top-level body field `{"config": …, "variables": {…}}`, removed before anything goes upstream.
pub const BODY_FIELD: &str = "switchyard";

/// How long feedback waits for the record of a request that has just finished: records reach
/// the store through the recorder's queue, a few milliseconds after the answer.
/// The largest numeric feedback value either side of zero.
const MAX_SCORE: f64 = 1e12;
const RECORD_WAIT: Duration = Duration::from_secs(3);
const RECORD_POLL: Duration = Duration::from_millis(25);

/// Which configuration version served a request, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub config: String,
    pub version: u32,
    pub experiment_id: Option<String>,
    pub variant: Option<String>,
    pub assignment: Option<String>,
}

/// The values an experiment may hash, for one request.
#[derive(Debug, Clone, Copy)]
pub struct Units<'a> {
    pub customer: Option<&'a str>,
    pub key: Option<&'a str>,
    pub session: Option<&'a str>,
    pub request: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRef {
    /// No version: the running experiment's choice, else `production`, else the latest.
    Default,
    Number(u32),
    Label(String),
}

/// The session a request belongs to (`x-switchyard-session-id`), if it says.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&SESSION_NAME)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// Response headers naming what served the request: `x-switchyard-config: NAME@VERSION`, and
/// when an experiment chose it `x-switchyard-experiment` and `x-switchyard-variant`.
pub fn reply_headers(applied: Option<&Applied>) -> Vec<(&'static str, String)> {
    let Some(a) = applied else {
        return Vec::new();
    };
    let mut out = vec![(CONFIG_HEADER, format!("{}@{}", a.config, a.version))];
    if let (Some(e), Some(v)) = (&a.experiment_id, &a.variant) {
        out.push(("x-switchyard-experiment", e.clone()));
        out.push(("x-switchyard-variant", v.clone()));
    }
    out
}

fn bad(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::InvalidRequest(DecodeError::new(message, Some(param)))
}

fn store_error(e: sqlx::Error) -> GatewayError {
    GatewayError::store(e)
}

/// Names of configurations, labels, variants and metrics.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Splits `NAME`, `NAME@3` or `NAME@production`.
pub fn parse_selector(text: &str, param: &str) -> Result<(String, VersionRef), GatewayError> {
    let text = text.trim();
    let (name, version) = match text.split_once('@') {
        None => (text, VersionRef::Default),
        Some((name, v)) => match v.parse::<u32>() {
            Ok(n) => (name, VersionRef::Number(n)),
            Err(_) if valid_name(v) => (name, VersionRef::Label(v.to_owned())),
            Err(_) => {
                return Err(bad(
                    format!("'{text}' is not NAME, NAME@VERSION or NAME@LABEL"),
                    param,
                ));
            }
        },
    };
    if !valid_name(name) {
        return Err(bad(
            format!("'{text}' is not NAME, NAME@VERSION or NAME@LABEL"),
            param,
        ));
    }
    Ok((name.to_owned(), version))
}

#[derive(Default)]
struct ConfigEntry {
    versions: BTreeMap<u32, Arc<ConfigVersion>>,
    labels: BTreeMap<String, u32>,
}

impl ConfigEntry {
    fn latest(&self) -> Option<&Arc<ConfigVersion>> {
        self.versions.values().next_back()
    }

    /// `production` if set, else the latest version.
    fn default_version(&self) -> Option<&Arc<ConfigVersion>> {
        self.labels
            .get(PRODUCTION)
            .and_then(|v| self.versions.get(v))
            .or_else(|| self.latest())
    }

    fn find(
        &self,
        name: &str,
        version: &VersionRef,
        param: &str,
    ) -> Result<&Arc<ConfigVersion>, GatewayError> {
        let latest = self.latest().map_or(0, |v| v.version);
        match version {
            VersionRef::Default => self
                .default_version()
                .ok_or_else(|| bad(format!("configuration '{name}' has no versions"), param)),
            VersionRef::Number(n) => self.versions.get(n).ok_or_else(|| {
                bad(
                    format!("configuration '{name}' has no version {n} (the latest is {latest})"),
                    param,
                )
            }),
            VersionRef::Label(l) if l == LATEST => self
                .latest()
                .ok_or_else(|| bad(format!("configuration '{name}' has no versions"), param)),
            VersionRef::Label(l) => self
                .labels
                .get(l)
                .and_then(|v| self.versions.get(v))
                .ok_or_else(|| {
                    let known: Vec<&str> = self.labels.keys().map(String::as_str).collect();
                    bad(
                        format!(
                            "configuration '{name}' has no label '{l}' (labels: latest{}{})",
                            if known.is_empty() { "" } else { ", " },
                            known.join(", ")
                        ),
                        param,
                    )
                }),
        }
    }
}

/// In-memory view of every configuration and experiment, rebuilt after each change.
#[derive(Default)]
struct Snapshot {
    configs: BTreeMap<String, ConfigEntry>,
    experiments: BTreeMap<String, Arc<Experiment>>,
    /// Configuration name → the experiment (running or paused) that splits its traffic.
    active: HashMap<String, String>,
}

/// The `switchyard` body field, once checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyField {
    config: Option<String>,
    #[serde(default)]
    variables: Map<String, Value>,
}

/// A new configuration version as the admin API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionInput {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub parameters: Parameters,
    #[serde(default)]
    pub locked: Vec<String>,
    #[serde(default)]
    pub template: Template,
    #[serde(default)]
    pub description: String,
    /// Labels to point at the new version (e.g. `["production"]`).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A variant as the admin API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    pub name: String,
    /// Another configuration than the experiment's (default: the experiment's).
    pub config: Option<String>,
    /// A version number or a label, resolved to a number when the experiment is created.
    pub version: Value,
    /// Percent of the traffic, up to two decimals.
    pub share: f64,
}

/// A new experiment as the admin API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentInput {
    pub id: Option<String>,
    pub name: Option<String>,
    pub config: String,
    #[serde(default)]
    pub unit: Unit,
    pub variants: Vec<VariantInput>,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub description: String,
}

/// Pause, resume or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Pause,
    Resume,
    Stop,
}

/// A feedback score as `POST /v1/feedback` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub metric: String,
    pub value: Value,
    pub comment: Option<String>,
    pub source: Option<String>,
}

pub struct Experiments {
    store: ExperimentStore,
    records: Store,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises changes (admin path only) so version numbers and transitions never race.
    writes: tokio::sync::Mutex<()>,
}

fn change(
    actor: &str,
    action: &str,
    kind: &str,
    subject: &str,
    description: String,
    diff: Vec<Value>,
) -> ChangeEntry {
    ChangeEntry {
        seq: 0,
        at_ms: now_unix_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        description,
        diff: Value::Array(diff),
    }
}

fn audit(
    actor: &str,
    action: &str,
    kind: &str,
    id: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    AuditEntry {
        at_ms: now_unix_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        kind: kind.to_owned(),
        entity_id: id.to_owned(),
        before,
        after,
    }
}

/// Percent with up to two decimals → basis points.
fn share_bp(share: f64) -> Option<u32> {
    let bp = share * 100.0;
    (share.is_finite() && share > 0.0 && (bp - bp.round()).abs() < 1e-6 && bp <= 10_000.0)
        .then(|| bp.round() as u32)
}

fn check_parameters(p: &Parameters) -> Result<(), GatewayError> {
    if let Some(t) = p.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(bad(
            "'parameters.temperature' must be between 0 and 2",
            "parameters.temperature",
        ));
    }
    if let Some(t) = p.top_p
        && !(0.0..=1.0).contains(&t)
    {
        return Err(bad(
            "'parameters.top_p' must be between 0 and 1",
            "parameters.top_p",
        ));
    }
    if p.max_tokens == Some(0) {
        return Err(bad(
            "'parameters.max_tokens' must be at least 1",
            "parameters.max_tokens",
        ));
    }
    Ok(())
}

impl Experiments {
    pub async fn load(records: Store) -> Result<Arc<Self>, sqlx::Error> {
        let this = Arc::new(Self {
            store: ExperimentStore::new(records.clone()),
            records,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            writes: tokio::sync::Mutex::new(()),
        });
        this.reload().await?;
        Ok(this)
    }

    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let mut snap = Snapshot::default();
        for v in self.store.versions().await? {
            snap.configs
                .entry(v.name.clone())
                .or_default()
                .versions
                .insert(v.version, Arc::new(v));
        }
        for (name, label, version) in self.store.labels().await? {
            snap.configs
                .entry(name)
                .or_default()
                .labels
                .insert(label, version);
        }
        for e in self.store.experiments().await? {
            if e.active() {
                snap.active.insert(e.config.clone(), e.id.clone());
            }
            snap.experiments.insert(e.id.clone(), Arc::new(e));
        }
        self.snapshot.store(Arc::new(snap));
        Ok(())
    }

    async fn commit(&self, m: &Mutation) -> Result<(), GatewayError> {
        self.store.apply(m).await.map_err(store_error)?;
        self.reload().await.map_err(store_error)
    }

    // ---- the request path -------------------------------------------------------------

    /// Takes the `switchyard` field out of the request (always: it never goes upstream), and
    /// when a configuration is selected (header or body field) applies the version it resolves
    /// to. `allowed` says whether the caller may use an alias: a variant it may not use is not
    /// assigned, the caller gets the default version instead.
    pub fn prepare(
        &self,
        request: &mut ChatRequest,
        headers: &HeaderMap,
        units: Units<'_>,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Applied>, GatewayError> {
        let body = match request.extras.fields.remove(BODY_FIELD) {
            None => BodyField::default(),
            Some(v @ Value::Object(_)) => switchyard_protocol::json::deserialize_at(v, BODY_FIELD)
                .map_err(GatewayError::InvalidRequest)?,
            Some(_) => return Err(bad("'switchyard' must be an object", BODY_FIELD)),
        };
        let header = match headers.get(&CONFIG_NAME) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| bad("the x-switchyard-config header must be text", CONFIG_HEADER))?
                    .trim()
                    .to_owned(),
            ),
        };
        let (selector, param) = match (header, body.config) {
            (Some(h), Some(b)) if h != b.trim() => {
                return Err(bad(
                    format!(
                        "the x-switchyard-config header ('{h}') and switchyard.config ('{b}') disagree; send one"
                    ),
                    "switchyard.config",
                ));
            }
            (Some(h), _) => (h, CONFIG_HEADER),
            (None, Some(b)) => (b, "switchyard.config"),
            (None, None) => {
                if !body.variables.is_empty() {
                    return Err(bad(
                        "switchyard.variables needs a configuration: set switchyard.config or the x-switchyard-config header",
                        "switchyard.variables",
                    ));
                }
                return Ok(None);
            }
        };
        let (name, version_ref) = parse_selector(&selector, param)?;
        let snap = self.snapshot.load_full();
        let entry = snap
            .configs
            .get(&name)
            .ok_or_else(|| bad(format!("unknown configuration '{name}'"), param))?;
        let mut applied = Applied {
            config: name.clone(),
            version: 0,
            experiment_id: None,
            variant: None,
            assignment: None,
        };
        let mut version = entry.find(&name, &version_ref, param)?;
        if version_ref == VersionRef::Default
            && let Some(exp) = snap
                .active
                .get(&name)
                .and_then(|id| snap.experiments.get(id))
            && exp.status == Status::Running
        {
            let (unit, assignment) = match (exp.unit, units) {
                (
                    Unit::Customer,
                    Units {
                        customer: Some(c), ..
                    },
                ) => (c, "customer".to_owned()),
                (Unit::Key, Units { key: Some(k), .. }) => (k, "key".to_owned()),
                (
                    Unit::Session,
                    Units {
                        session: Some(s), ..
                    },
                ) => (s, "session".to_owned()),
                (Unit::Request, _) => (units.request, "request".to_owned()),
                (missing, _) => (units.request, format!("request (no {})", missing.as_str())),
            };
            let bucket = assign::bucket(&exp.id, unit);
            if let Some(variant) = assign::pick(&exp.variants, bucket)
                && let Some(chosen) = snap
                    .configs
                    .get(&variant.config)
                    .and_then(|c| c.versions.get(&variant.version))
            {
                if allowed(&chosen.target) {
                    version = chosen;
                    applied.experiment_id = Some(exp.id.clone());
                    applied.variant = Some(variant.name.clone());
                    applied.assignment = Some(assignment);
                } else {
                    applied.assignment = Some("not_allowed".to_owned());
                }
            }
        }
        applied.config = version.name.clone();
        applied.version = version.version;
        template::apply(version, request, &body.variables).map_err(GatewayError::InvalidRequest)?;
        Ok(Some(applied))
    }

    // ---- configurations ---------------------------------------------------------------

    fn version_json(&self, snap: &Snapshot, v: &ConfigVersion) -> Value {
        let labels: Vec<&str> = snap
            .configs
            .get(&v.name)
            .map(|c| {
                c.labels
                    .iter()
                    .filter(|(_, n)| **n == v.version)
                    .map(|(l, _)| l.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut out = json!(v);
        if let Some(map) = out.as_object_mut() {
            map.insert("labels".into(), json!(labels));
            map.insert("variables".into(), json!(template::variables(&v.template)));
        }
        out
    }

    /// Every configuration: name, latest version, labels, target.
    pub fn list_configs(&self) -> Vec<Value> {
        let snap = self.snapshot.load_full();
        snap.configs
            .iter()
            .filter_map(|(name, c)| {
                let latest = c.latest()?;
                Some(json!({
                    "name": name,
                    "latest_version": latest.version,
                    "versions": c.versions.len(),
                    "labels": c.labels,
                    "target": latest.target,
                    "updated_at_ms": latest.created_at_ms,
                    "experiment": snap.active.get(name),
                }))
            })
            .collect()
    }

    /// One configuration with all its versions, newest first.
    pub fn config(&self, name: &str) -> Result<Value, GatewayError> {
        let snap = self.snapshot.load_full();
        let c = snap
            .configs
            .get(name)
            .ok_or_else(|| GatewayError::Missing(format!("No configuration named '{name}'.")))?;
        let versions: Vec<Value> = c
            .versions
            .values()
            .rev()
            .map(|v| self.version_json(&snap, v))
            .collect();
        Ok(
            json!({"name": name, "labels": c.labels, "experiment": snap.active.get(name), "versions": versions}),
        )
    }

    /// One version by number or label.
    pub fn version(&self, name: &str, version: &str) -> Result<Value, GatewayError> {
        let snap = self.snapshot.load_full();
        let (name, v) = parse_selector(&format!("{name}@{version}"), "version")?;
        let c = snap
            .configs
            .get(&name)
            .ok_or_else(|| GatewayError::Missing(format!("No configuration named '{name}'.")))?;
        // The version named in the path is the thing asked for: one that is not there is a 404.
        let found = c.find(&name, &v, "version").map_err(|e| match e {
            GatewayError::InvalidRequest(d) => GatewayError::Missing(d.message),
            other => other,
        })?;
        Ok(self.version_json(&snap, found))
    }

    /// The version number `reference` (`NAME`, `NAME@VERSION`, `NAME@LABEL`) names now, as
    /// `NAME@N`: for what must not move while it runs (an evaluation), where `NAME` alone is
    /// the `production` label (else the latest version), never an experiment's split.
    pub fn pin(&self, reference: &str) -> Result<String, GatewayError> {
        let snap = self.snapshot.load_full();
        let (name, v) = parse_selector(reference, "config")?;
        let c = snap
            .configs
            .get(&name)
            .ok_or_else(|| GatewayError::Missing(format!("No configuration named '{name}'.")))?;
        let found = c.find(&name, &v, "config")?;
        Ok(format!("{name}@{}", found.version))
    }

    /// Field differences between two versions (numbers or labels).
    pub fn diff(&self, name: &str, from: &str, to: &str) -> Result<Value, GatewayError> {
        let snap = self.snapshot.load_full();
        let c = snap
            .configs
            .get(name)
            .ok_or_else(|| GatewayError::Missing(format!("No configuration named '{name}'.")))?;
        let (_, a) = parse_selector(&format!("{name}@{from}"), "from")?;
        let (_, b) = parse_selector(&format!("{name}@{to}"), "to")?;
        let a = c.find(name, &a, "from")?;
        let b = c.find(name, &b, "to")?;
        Ok(json!({
            "name": name,
            "from": a.version,
            "to": b.version,
            "changes": diff::diff(&a.content(), &b.content()),
        }))
    }

    /// Creates the next version of a configuration (the first creates it). Content identical
    /// to the latest version creates nothing: the answer is that version, `created: false`.
    pub async fn create_version(
        &self,
        actor: &str,
        input: VersionInput,
        known_alias: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(Value, bool), GatewayError> {
        if !valid_name(&input.name) {
            return Err(bad(
                "'name' must be 1–64 letters, digits, '_', '-', '.' or ':'",
                "name",
            ));
        }
        if !known_alias(&input.target) {
            return Err(bad(
                format!(
                    "unknown model alias '{}'; the target must be a configured alias",
                    input.target
                ),
                "target",
            ));
        }
        for (i, l) in input.locked.iter().enumerate() {
            if !PARAMETER_NAMES.contains(&l.as_str()) {
                return Err(bad(
                    format!(
                        "'{l}' is not a parameter (one of {})",
                        PARAMETER_NAMES.join(", ")
                    ),
                    &format!("locked[{i}]"),
                ));
            }
        }
        check_parameters(&input.parameters)?;
        template::validate(&input.template).map_err(GatewayError::InvalidRequest)?;
        for (i, l) in input.labels.iter().enumerate() {
            if !valid_name(l) || l == LATEST {
                return Err(bad(
                    format!(
                        "'{l}' cannot be a label ('latest' is implicit; names are letters, digits, '_', '-', '.', ':')"
                    ),
                    &format!("labels[{i}]"),
                ));
            }
        }
        let _guard = self.writes.lock().await;
        let snap = self.snapshot.load_full();
        let previous = snap
            .configs
            .get(&input.name)
            .and_then(|c| c.latest().cloned());
        let mut version = ConfigVersion {
            name: input.name.clone(),
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            target: input.target,
            parameters: input.parameters,
            locked: input.locked,
            template: input.template,
            description: input.description,
            author: actor.to_owned(),
            created_at_ms: now_unix_ms(),
        };
        if let Some(p) = &previous
            && p.content() == version.content()
            && input.labels.is_empty()
        {
            return Ok((self.version_json(&snap, p), false));
        }
        let before = previous.as_ref().map_or(Value::Null, |p| p.content());
        let changes = diff::diff(&before, &version.content());
        if version.description.is_empty() {
            version.description = match &previous {
                None => "first version".to_owned(),
                Some(p) => format!("changes from version {}", p.version),
            };
        }
        let mut m = Mutation {
            changes: vec![change(
                actor,
                "create_version",
                "config",
                &version.name,
                format!("version {}: {}", version.version, version.description),
                changes,
            )],
            audit: vec![audit(
                actor,
                "create_version",
                "config",
                &format!("{}@{}", version.name, version.version),
                None,
                Some(json!(version)),
            )],
            ..Mutation::default()
        };
        for label in &input.labels {
            let old = snap
                .configs
                .get(&version.name)
                .and_then(|c| c.labels.get(label))
                .copied();
            m.labels
                .push((version.name.clone(), label.clone(), version.version));
            m.changes.push(label_change(
                actor,
                &version.name,
                label,
                old,
                version.version,
            ));
        }
        m.versions.push(version.clone());
        self.commit(&m).await?;
        let snap = self.snapshot.load_full();
        Ok((self.version_json(&snap, &version), true))
    }

    /// Points a label at a version.
    pub async fn set_label(
        &self,
        actor: &str,
        name: &str,
        label: &str,
        version: &Value,
    ) -> Result<Value, GatewayError> {
        if !valid_name(label) || label == LATEST {
            return Err(bad(
                format!("'{label}' cannot be a label ('latest' always means the newest version)"),
                "label",
            ));
        }
        let _guard = self.writes.lock().await;
        let snap = self.snapshot.load_full();
        let c = snap
            .configs
            .get(name)
            .ok_or_else(|| GatewayError::Missing(format!("No configuration named '{name}'.")))?;
        let target = c
            .find(name, &version_ref(version, "version")?, "version")?
            .version;
        let old = c.labels.get(label).copied();
        let m = Mutation {
            labels: vec![(name.to_owned(), label.to_owned(), target)],
            changes: vec![label_change(actor, name, label, old, target)],
            audit: vec![audit(
                actor,
                "move_label",
                "config",
                name,
                Some(json!({label: old})),
                Some(json!({label: target})),
            )],
            ..Mutation::default()
        };
        self.commit(&m).await?;
        self.config(name)
    }

    // ---- experiments ------------------------------------------------------------------

    /// Every experiment, newest first (the map is keyed by id, which says nothing of when).
    pub fn list_experiments(&self) -> Vec<Arc<Experiment>> {
        let mut all: Vec<Arc<Experiment>> =
            self.snapshot.load().experiments.values().cloned().collect();
        all.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| b.id.cmp(&a.id))
        });
        all
    }

    pub fn experiment(&self, id: &str) -> Result<Arc<Experiment>, GatewayError> {
        self.snapshot
            .load()
            .experiments
            .get(id)
            .cloned()
            .ok_or_else(|| GatewayError::Missing(format!("No experiment with id '{id}'.")))
    }

    pub async fn create_experiment(
        &self,
        actor: &str,
        input: ExperimentInput,
    ) -> Result<Arc<Experiment>, GatewayError> {
        let _guard = self.writes.lock().await;
        let snap = self.snapshot.load_full();
        let id = match input.id {
            Some(id) if !valid_name(&id) => {
                return Err(bad(
                    "'id' must be 1–64 letters, digits, '_', '-', '.' or ':'",
                    "id",
                ));
            }
            Some(id) => id,
            None => format!("exp_{}", uuid::Uuid::now_v7().simple()),
        };
        if snap.experiments.contains_key(&id) {
            return Err(bad(format!("experiment '{id}' already exists"), "id"));
        }
        if !snap.configs.contains_key(&input.config) {
            return Err(bad(
                format!("unknown configuration '{}'", input.config),
                "config",
            ));
        }
        if let Some(other) = snap.active.get(&input.config) {
            return Err(bad(
                format!(
                    "configuration '{}' already has an active experiment ('{other}'); stop it first",
                    input.config
                ),
                "config",
            ));
        }
        if input.variants.len() < 2 {
            return Err(bad("an experiment needs at least two variants", "variants"));
        }
        let mut variants = Vec::with_capacity(input.variants.len());
        for (i, v) in input.variants.iter().enumerate() {
            let path = format!("variants[{i}]");
            if !valid_name(&v.name) {
                return Err(bad(
                    "a variant name must be 1–64 letters, digits, '_', '-', '.' or ':'",
                    &format!("{path}.name"),
                ));
            }
            if variants.iter().any(|x: &Variant| x.name == v.name) {
                return Err(bad(
                    format!("variant name '{}' is used twice", v.name),
                    &format!("{path}.name"),
                ));
            }
            let config = v.config.clone().unwrap_or_else(|| input.config.clone());
            let c = snap.configs.get(&config).ok_or_else(|| {
                bad(
                    format!("unknown configuration '{config}'"),
                    &format!("{path}.config"),
                )
            })?;
            let vpath = format!("{path}.version");
            let version = c
                .find(&config, &version_ref(&v.version, &vpath)?, &vpath)?
                .version;
            let share_bp = share_bp(v.share).ok_or_else(|| {
                bad(
                    format!(
                        "'{path}.share' must be a percentage above 0 with at most two decimals"
                    ),
                    &format!("{path}.share"),
                )
            })?;
            variants.push(Variant {
                name: v.name.clone(),
                config,
                version,
                share_bp,
            });
        }
        let total: u32 = variants.iter().map(|v| v.share_bp).sum();
        if total != assign::BUCKETS {
            return Err(bad(
                format!(
                    "the variants' shares must sum to 100; they sum to {}",
                    f64::from(total) / 100.0
                ),
                "variants",
            ));
        }
        for (i, m) in input.metrics.iter().enumerate() {
            if !valid_name(&m.name) {
                return Err(bad(
                    "a metric name must be 1–64 letters, digits, '_', '-', '.' or ':'",
                    &format!("metrics[{i}].name"),
                ));
            }
            if input.metrics[..i].iter().any(|x| x.name == m.name) {
                return Err(bad(
                    format!("metric '{}' is listed twice", m.name),
                    &format!("metrics[{i}].name"),
                ));
            }
        }
        let now = now_unix_ms();
        let exp = Experiment {
            name: input.name.unwrap_or_else(|| id.clone()),
            id,
            config: input.config,
            unit: input.unit,
            variants,
            metrics: input.metrics,
            status: Status::Running,
            description: input.description,
            author: actor.to_owned(),
            created_at_ms: now,
            updated_at_ms: now,
            winner: None,
        };
        let split: Vec<String> = exp
            .variants
            .iter()
            .map(|v| {
                format!(
                    "{} = {}@{} ({} %)",
                    v.name,
                    v.config,
                    v.version,
                    f64::from(v.share_bp) / 100.0
                )
            })
            .collect();
        let m = Mutation {
            experiments: vec![exp.clone()],
            changes: vec![change(
                actor,
                "create_experiment",
                "experiment",
                &exp.id,
                format!(
                    "experiment on '{}' by {}: {}",
                    exp.config,
                    exp.unit.as_str(),
                    split.join(", ")
                ),
                diff::diff(&Value::Null, &json!(exp)),
            )],
            audit: vec![audit(
                actor,
                "create",
                "experiment",
                &exp.id,
                None,
                Some(json!(exp)),
            )],
            ..Mutation::default()
        };
        self.commit(&m).await?;
        self.experiment(&exp.id)
    }

    /// Pauses, resumes or stops an experiment.
    pub async fn transition(
        &self,
        actor: &str,
        id: &str,
        t: Transition,
    ) -> Result<Arc<Experiment>, GatewayError> {
        let _guard = self.writes.lock().await;
        let old = self.experiment(id)?;
        let (from, to, action) = match t {
            Transition::Pause => (Status::Running, Status::Paused, "pause"),
            Transition::Resume => (Status::Paused, Status::Running, "resume"),
            Transition::Stop => (old.status, Status::Stopped, "stop"),
        };
        if old.status != from || old.status == Status::Stopped {
            return Err(bad(
                format!(
                    "experiment '{id}' is {}; it cannot {action}",
                    old.status.as_str()
                ),
                "status",
            ));
        }
        let mut exp = (*old).clone();
        exp.status = to;
        exp.updated_at_ms = now_unix_ms();
        let m = Mutation {
            experiments: vec![exp.clone()],
            changes: vec![change(
                actor,
                action,
                "experiment",
                id,
                format!("{action}: {} → {}", from.as_str(), to.as_str()),
                diff::diff(&json!({"status": from}), &json!({"status": to})),
            )],
            audit: vec![audit(
                actor,
                action,
                "experiment",
                id,
                Some(json!(*old)),
                Some(json!(exp)),
            )],
            ..Mutation::default()
        };
        self.commit(&m).await?;
        self.experiment(id)
    }

    /// Makes a variant the configuration's `production` version and stops the experiment. A
    /// variant of another configuration is first copied into a new version of the experiment's
    /// configuration, so the label always points within it.
    pub async fn promote(
        &self,
        actor: &str,
        id: &str,
        variant: &str,
    ) -> Result<(Arc<Experiment>, u32), GatewayError> {
        let _guard = self.writes.lock().await;
        let old = self.experiment(id)?;
        if old.status == Status::Stopped {
            return Err(bad(
                format!("experiment '{id}' is stopped; it cannot promote"),
                "status",
            ));
        }
        let v = old.variant(variant).ok_or_else(|| {
            let names: Vec<&str> = old.variants.iter().map(|v| v.name.as_str()).collect();
            bad(
                format!(
                    "experiment '{id}' has no variant '{variant}' (variants: {})",
                    names.join(", ")
                ),
                "variant",
            )
        })?;
        let snap = self.snapshot.load_full();
        let config = snap.configs.get(&old.config).ok_or_else(|| {
            GatewayError::Internal(format!("configuration '{}' is gone", old.config))
        })?;
        let mut m = Mutation::default();
        let target_version = if v.config == old.config {
            v.version
        } else {
            let source = snap
                .configs
                .get(&v.config)
                .and_then(|c| c.versions.get(&v.version))
                .ok_or_else(|| {
                    GatewayError::Internal(format!("{}@{} is gone", v.config, v.version))
                })?;
            let previous = config.latest().map_or(Value::Null, |p| p.content());
            let copy = ConfigVersion {
                name: old.config.clone(),
                version: config.latest().map_or(1, |p| p.version + 1),
                description: format!(
                    "promoted from {}@{} by experiment {id}",
                    v.config, v.version
                ),
                author: actor.to_owned(),
                created_at_ms: now_unix_ms(),
                ..(**source).clone()
            };
            m.changes.push(change(
                actor,
                "create_version",
                "config",
                &copy.name,
                format!("version {}: {}", copy.version, copy.description),
                diff::diff(&previous, &copy.content()),
            ));
            m.audit.push(audit(
                actor,
                "create_version",
                "config",
                &format!("{}@{}", copy.name, copy.version),
                None,
                Some(json!(copy)),
            ));
            let n = copy.version;
            m.versions.push(copy);
            n
        };
        let before_label = config.labels.get(PRODUCTION).copied();
        m.labels
            .push((old.config.clone(), PRODUCTION.to_owned(), target_version));
        m.changes.push(label_change(
            actor,
            &old.config,
            PRODUCTION,
            before_label,
            target_version,
        ));
        let mut exp = (*old).clone();
        exp.status = Status::Stopped;
        exp.winner = Some(variant.to_owned());
        exp.updated_at_ms = now_unix_ms();
        m.changes.push(change(
            actor,
            "promote",
            "experiment",
            id,
            format!("promoted variant '{variant}': {}@{target_version} is now production; experiment stopped", old.config),
            diff::diff(&json!({"status": old.status, "winner": null}), &json!({"status": Status::Stopped, "winner": variant})),
        ));
        m.audit.push(audit(
            actor,
            "promote",
            "experiment",
            id,
            Some(json!(*old)),
            Some(json!(exp)),
        ));
        m.experiments.push(exp);
        self.commit(&m).await?;
        Ok((self.experiment(id)?, target_version))
    }

    pub async fn changelog(
        &self,
        kind: Option<&str>,
        subject: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ChangeEntry>, GatewayError> {
        self.store
            .changelog(kind, subject, limit)
            .await
            .map_err(store_error)
    }

    /// Per-variant results of an experiment over a window.
    pub async fn results(
        &self,
        id: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Value, GatewayError> {
        let exp = self.experiment(id)?;
        let requests = self
            .store
            .requests(id, since_ms, until_ms)
            .await
            .map_err(store_error)?;
        let feedback = self
            .store
            .feedback(id, since_ms, until_ms)
            .await
            .map_err(store_error)?;
        Ok(results::compute(&exp, &requests, &feedback))
    }

    // ---- feedback ---------------------------------------------------------------------

    /// Stores a score on a request or session. A virtual key may score only its own requests
    /// (`any` lifts that: the master key, admins on the admin API). A request whose record is
    /// not stored yet is waited for briefly; after that it is unknown (404).
    pub async fn feedback(
        &self,
        p: &Principal,
        any: bool,
        input: FeedbackInput,
    ) -> Result<Value, GatewayError> {
        let target = match (input.request_id, input.session_id) {
            (Some(r), None) if !r.trim().is_empty() => FeedbackTarget::Request(r.trim().to_owned()),
            (None, Some(s)) if !s.trim().is_empty() => FeedbackTarget::Session(s.trim().to_owned()),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "send either 'request_id' or 'session_id', not both",
                    "session_id",
                ));
            }
            _ => {
                return Err(bad(
                    "feedback needs a 'request_id' (the x-request-id of the answer) or a 'session_id'",
                    "request_id",
                ));
            }
        };
        if !valid_name(&input.metric) {
            return Err(bad(
                "'metric' must be 1–64 letters, digits, '_', '-', '.' or ':'",
                "metric",
            ));
        }
        let source = input.source.unwrap_or_else(|| "api".to_owned());
        if !valid_name(&source) {
            return Err(bad(
                "'source' must be 1–64 letters, digits, '_', '-', '.' or ':'",
                "source",
            ));
        }
        let value = match &input.value {
            Value::Bool(b) => FeedbackValue::Boolean(*b),
            // Bounded: one score near f64's limits would overflow its variant's variance, and
            // every statistic of the metric with it.
            Value::Number(n) => match n.as_f64().filter(|f| f.abs() <= MAX_SCORE) {
                Some(f) => FeedbackValue::Numeric(f),
                None => {
                    return Err(bad(
                        "'value' must be a number between -1e12 and 1e12",
                        "value",
                    ));
                }
            },
            Value::String(s) if !s.is_empty() && s.len() <= 256 => {
                FeedbackValue::Categorical(s.clone())
            }
            _ => {
                return Err(bad(
                    "'value' must be true/false, a number, or a category (a string of 1–256 characters)",
                    "value",
                ));
            }
        };
        if input.comment.as_ref().is_some_and(|c| c.len() > 8192) {
            return Err(bad("'comment' is limited to 8192 bytes", "comment"));
        }
        let own = p.caller.key_id.as_deref();
        match &target {
            FeedbackTarget::Request(id) => {
                let record = self.wait_for_record(id).await?.ok_or_else(|| {
                    GatewayError::Missing(format!(
                        "No request with id '{id}': feedback needs the x-request-id of an answer from this gateway."
                    ))
                })?;
                if !any && record.caller.key_id.as_deref() != own {
                    // Same answer as an unknown id: a key learns nothing about others' requests.
                    return Err(GatewayError::Missing(format!(
                        "No request with id '{id}': feedback needs the x-request-id of an answer from this gateway."
                    )));
                }
                self.check_kind(record.experiment_id.as_deref(), &input.metric, &value)?;
            }
            FeedbackTarget::Session(id) => {
                let keys = self.wait_for_session(id, own, any).await?;
                let mine = any || keys.iter().any(|(k, _)| k.as_deref() == own);
                if keys.is_empty() || !mine {
                    return Err(GatewayError::Missing(format!(
                        "No requests with session id '{id}' (the x-switchyard-session-id header) are recorded."
                    )));
                }
                // Of the kind every experiment the session's requests were in declares.
                for (_, experiment) in &keys {
                    self.check_kind(experiment.as_deref(), &input.metric, &value)?;
                }
            }
        }
        let feedback = Feedback {
            target,
            metric: input.metric,
            source,
            value,
            comment: input.comment,
            actor: p.actor(),
            at_ms: now_unix_ms(),
        };
        let replaced = self
            .store
            .put_feedback(&feedback)
            .await
            .map_err(store_error)?;
        let mut out = json!({
            "object": "feedback",
            "metric": feedback.metric,
            "source": feedback.source,
            "value": feedback.value.to_json(),
            "replaced": replaced,
        });
        if let Some(map) = out.as_object_mut() {
            let key = format!("{}_id", feedback.target.kind());
            map.insert(key, json!(feedback.target.id()));
            if let Some(c) = &feedback.comment {
                map.insert("comment".into(), json!(c));
            }
        }
        Ok(out)
    }

    /// The record of a request; a well-formed id whose record is not stored yet (the recorder
    /// writes a moment after the answer) is polled for up to [`RECORD_WAIT`].
    /// The keys a session's recorded requests were made with; waits (as for a request's
    /// record) for the records of a session answered a moment ago to be written.
    /// The session's requests' keys and experiments, once the caller's own request in it is
    /// recorded (any request for an admin), or whatever is recorded when the wait runs out.
    async fn wait_for_session(
        &self,
        id: &str,
        own: Option<&str>,
        any: bool,
    ) -> Result<Vec<(Option<String>, Option<String>)>, GatewayError> {
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        loop {
            let keys = self.store.session_keys(id).await.map_err(store_error)?;
            let found = if any {
                !keys.is_empty()
            } else {
                keys.iter().any(|(k, _)| k.as_deref() == own)
            };
            if found || tokio::time::Instant::now() >= deadline {
                return Ok(keys);
            }
            tokio::time::sleep(RECORD_POLL).await;
        }
    }

    /// Refuses a value of another kind than `experiment` declares for `metric`.
    fn check_kind(
        &self,
        experiment: Option<&str>,
        metric: &str,
        value: &FeedbackValue,
    ) -> Result<(), GatewayError> {
        let Some(experiment) = experiment else {
            return Ok(());
        };
        let snapshot = self.snapshot.load();
        let Some(spec) = snapshot
            .experiments
            .get(experiment)
            .and_then(|e| e.metric(metric))
        else {
            return Ok(());
        };
        if spec.kind == value.kind() {
            return Ok(());
        }
        Err(bad(
            format!(
                "metric '{}' is {} in experiment '{experiment}'; this value is {}",
                spec.name,
                spec.kind.as_str(),
                value.kind().as_str()
            ),
            "value",
        ))
    }

    async fn wait_for_record(
        &self,
        id: &str,
    ) -> Result<Option<crate::telemetry::RequestRecord>, GatewayError> {
        let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        loop {
            if let Some(r) = self.records.get(id).await.map_err(store_error)? {
                return Ok(Some(r));
            }
            if !well_formed || tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(RECORD_POLL).await;
        }
    }
}

fn label_change(actor: &str, name: &str, label: &str, old: Option<u32>, new: u32) -> ChangeEntry {
    change(
        actor,
        "move_label",
        "config",
        name,
        match old {
            Some(o) => format!("label '{label}': version {o} → {new}"),
            None => format!("label '{label}' → version {new}"),
        },
        diff::diff(
            &json!({"labels": {label: old}}),
            &json!({"labels": {label: new}}),
        ),
    )
}

/// A version given as a JSON number or a label string.
fn version_ref(v: &Value, param: &str) -> Result<VersionRef, GatewayError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(VersionRef::Number)
            .ok_or_else(|| {
                bad(
                    format!("'{param}' must be a version number or a label"),
                    param,
                )
            }),
        Value::String(s) => match s.parse::<u32>() {
            Ok(n) => Ok(VersionRef::Number(n)),
            Err(_) if valid_name(s) => Ok(VersionRef::Label(s.clone())),
            Err(_) => Err(bad(
                format!("'{param}' must be a version number or a label"),
                param,
            )),
        },
        _ => Err(bad(
            format!("'{param}' must be a version number or a label"),
            param,
        )),
    }
}

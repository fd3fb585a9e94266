//! The experiment entities as the admin API and the store see them: configuration versions
//! (target alias, parameters, prompt template), experiments with their variants, change-log
//! entries and feedback values. Versions and experiments' variants are immutable once stored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The label every request without an explicit version falls back to when it is set.
pub const PRODUCTION: &str = "production";
/// The always-present pseudo-label for the newest version (cannot be moved).
pub const LATEST: &str = "latest";

/// One immutable version of a named configuration: what a request becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub name: String,
    pub version: u32,
    /// The model alias the request is sent to (replaces the request's `model`).
    pub target: String,
    #[serde(default)]
    pub parameters: Parameters,
    /// Parameters a request may not set to a different value (else 400).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<String>,
    #[serde(default)]
    pub template: Template,
    pub description: String,
    pub author: String,
    pub created_at_ms: i64,
}

impl ConfigVersion {
    /// The content that defines the version, without who/when: what diffs compare.
    pub fn content(&self) -> Value {
        serde_json::json!({
            "target": self.target,
            "parameters": self.parameters,
            "locked": self.locked,
            "template": self.template,
        })
    }
}

/// Sampling parameters a configuration sets as defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
}

/// Names of the parameters, as `locked` accepts them.
pub const PARAMETER_NAMES: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
];

/// A system prompt and messages with `{{variable}}` placeholders, put before the request's own
/// messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<TemplateMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMessage {
    pub role: TemplateRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateRole {
    System,
    User,
    Assistant,
}

/// What an experiment hashes to pick a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// The end customer (`x-switchyard-customer`, else the body's `user`).
    #[default]
    Customer,
    /// The calling virtual key.
    Key,
    /// The `x-switchyard-session-id` header.
    Session,
    /// Each request on its own.
    Request,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Customer => "customer",
            Unit::Key => "key",
            Unit::Session => "session",
            Unit::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// One arm of an experiment: a fixed configuration version and its share of traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub config: String,
    pub version: u32,
    /// Share in basis points (1/100 of a percent); the variants' shares sum to 10 000.
    pub share_bp: u32,
}

/// The kind of a feedback metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Boolean,
    Numeric,
    Categorical,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Boolean => "boolean",
            MetricKind::Numeric => "numeric",
            MetricKind::Categorical => "categorical",
        }
    }
}

/// Which direction of a metric counts as better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    #[default]
    Increase,
    Decrease,
}

/// A metric the experiment reports on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    pub kind: MetricKind,
    #[serde(default)]
    pub goal: Goal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    /// The configuration whose requests (by name, without a version) the experiment splits.
    pub config: String,
    pub unit: Unit,
    /// The first variant is the control every other is compared with.
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    pub status: Status,
    pub description: String,
    pub author: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The variant promoted when the experiment was stopped by a promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
}

impl Experiment {
    pub fn active(&self) -> bool {
        self.status != Status::Stopped
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// One entry of the change log: who changed what, when, why and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    /// `create_version`, `move_label`, `create_experiment`, `pause`, `resume`, `stop`, `promote`.
    pub action: String,
    /// `config` or `experiment`.
    pub kind: String,
    /// The configuration name or the experiment id.
    pub subject: String,
    pub description: String,
    /// Changed fields: `[{"path", "before", "after"}]`.
    pub diff: Value,
}

/// A feedback value as posted: `true`, `0.8` or `"good"`.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackValue {
    Boolean(bool),
    Numeric(f64),
    Categorical(String),
}

impl FeedbackValue {
    pub fn kind(&self) -> MetricKind {
        match self {
            FeedbackValue::Boolean(_) => MetricKind::Boolean,
            FeedbackValue::Numeric(_) => MetricKind::Numeric,
            FeedbackValue::Categorical(_) => MetricKind::Categorical,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            FeedbackValue::Boolean(b) => Value::Bool(*b),
            FeedbackValue::Numeric(n) => serde_json::json!(n),
            FeedbackValue::Categorical(s) => Value::String(s.clone()),
        }
    }
}

/// What feedback is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackTarget {
    Request(String),
    Session(String),
}

impl FeedbackTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            FeedbackTarget::Request(_) => "request",
            FeedbackTarget::Session(_) => "session",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            FeedbackTarget::Request(id) | FeedbackTarget::Session(id) => id,
        }
    }
}

/// One stored score.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub target: FeedbackTarget,
    pub metric: String,
    pub source: String,
    pub value: FeedbackValue,
    pub comment: Option<String>,
    pub actor: String,
    pub at_ms: i64,
}

//! The governed entities as the admin API and the store see them: organisations, teams, virtual
//! keys and customers, each with the same set of limits.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::RiskLevel;

/// When a budget starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    None,
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::None => "none",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }
}

/// What to do when a request without `max_tokens` could cost more than the budget has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverBudget {
    /// Lower the `max_tokens` sent upstream to what the budget can pay.
    #[default]
    Cap,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Calls models only.
    #[default]
    User,
    /// Reads the admin API.
    Viewer,
    /// Manages its own team's keys and reads its spend.
    TeamAdmin,
    /// Everything.
    Admin,
}

/// Limits any entity may carry; every level a request touches applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Model aliases (globs allowed) this entity may use; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// Budget in nano-dollars (10⁻⁹ USD). The API also accepts `max_budget_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget_nanos: Option<i64>,
    #[serde(default)]
    pub budget_period: Period,
    /// Share of the budget at which a soft alert fires (e.g. 0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<f64>,
    #[serde(default)]
    pub over_budget: OverBudget,
    /// Deployment regions this entity's requests may go to; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_regions: Vec<String>,
    /// Highest deployment risk level allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_risk_level: Option<RiskLevel>,
    /// Deployment data classifications allowed; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_data_classifications: Vec<String>,
}

impl Limits {
    /// Whether these limits reserve by the prompt's token estimate (a budget or a TPM limit).
    pub fn meters_tokens(&self) -> bool {
        self.max_budget_nanos.is_some() || self.tpm.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
            && self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_parallel.is_none()
            && self.max_budget_nanos.is_none()
            && self.allowed_regions.is_empty()
            && self.max_risk_level.is_none()
            && self.allowed_data_classifications.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// An end user of the caller's product, named by the OpenAI `user` field or the
/// `x-switchyard-customer` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// A virtual key. The secret itself is never stored: only its keyed hash and a display prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualKey {
    pub id: String,
    pub name: String,
    /// `sk-sy-AbCd…wXyZ`, enough to recognise a key in a list.
    pub display: String,
    /// Keyed hash (HMAC-SHA-256, hex) of the secret.
    #[serde(skip_serializing)]
    #[serde(default)]
    pub hash: String,
    /// The previous secret's hash while a rotation's grace period runs.
    #[serde(skip_serializing)]
    #[serde(default)]
    pub previous_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until_ms: Option<i64>,
    /// Secrets of rotations before the last whose grace periods still run (hash, end): a
    /// second rotation does not cut off the clients still on the first secret.
    #[serde(skip_serializing, default)]
    pub earlier_hashes: Vec<(String, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default)]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    pub created_at_ms: i64,
}

/// Stored form of a key: everything, hash included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    #[serde(flatten)]
    pub key: VirtualKey,
    pub hash: String,
    #[serde(default)]
    pub previous_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<(String, i64)>,
}

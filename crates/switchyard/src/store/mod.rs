//! Persistence behind small interfaces. The embedded default is SQLite in the data directory;
//! the store persists and answers queries, it never decides anything.

mod sqlite;

pub use sqlite::{AuditEntry, SpendColumn, SqliteStore, StoredCredential};

use crate::telemetry::record::RequestRecord;

/// Filters of `GET /admin/requests`.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub alias: Option<String>,
    pub deployment: Option<String>,
    pub key: Option<String>,
    pub team: Option<String>,
    pub customer: Option<String>,
    pub status: Option<u16>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    /// `name` and `value` of one tag (request metadata entry).
    pub tag: Option<(String, String)>,
    /// Records older than this id (time-ordered ids make it a cursor).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// What spend is grouped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendGroup {
    Key,
    Team,
    Org,
    Customer,
    Alias,
    Deployment,
    Tag(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
    All,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpendRow {
    pub group: Option<String>,
    /// Start of the bucket (`YYYY-MM-DD`), absent for `All`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
}

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// Where request records live.
pub trait RecordStore: Send + Sync {
    fn insert(
        &self,
        records: &[RequestRecord],
    ) -> impl std::future::Future<Output = StoreResult<()>> + Send;
}

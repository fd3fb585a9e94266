//! Persistence behind small interfaces. The embedded default is SQLite in the data directory;
//! replicas share PostgreSQL (`store.url`). The store persists and answers queries, it never
//! decides anything.
//!
//! One set of statements serves both databases: parameters are written `$N`, which both read
//! (SQLite takes `$N` as the N-th argument), upserts are `ON CONFLICT`, sums are cast to
//! `BIGINT`, and the few expressions that differ (a tag's value, a report's date bucket) come
//! from `Dialect`. `on_db!` compiles a body once per database.

mod entities;
mod postgres;
mod records;
mod sqlite;
mod texts;

pub(crate) use entities::insert_audit;
pub use entities::{AuditEntry, SpendColumn, StoredCredential};

use sqlx::{PgPool, QueryBuilder, SqlitePool};

use crate::telemetry::record::RequestRecord;
use texts::KnownTexts;

/// The database a store lives in, as a pool of connections to it.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool of whichever database `$db` is and `$Db` naming
/// its sqlx database type: the body is compiled once for each, so queries and row reads are the
/// drivers' own, with no translation layer between.
macro_rules! on_db {
    ($db:expr, |$pool:ident: $Db:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => {
                #[allow(dead_code)]
                type $Db = sqlx::Sqlite;
                $body
            }
            $crate::store::Db::Postgres($pool) => {
                #[allow(dead_code)]
                type $Db = sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_db;

/// What the two databases write differently.
pub trait Dialect: sqlx::Database + Sized {
    /// A record's body as it is stored: its JSON (`RequestRecord::to_json`), which SQLite keeps
    /// compressed (`sqlite::pack_body`) with its long texts in rows of their own (`texts`), and
    /// PostgreSQL as text (compressed by TOAST).
    type StoredBody;
    /// The records stored bodies hold, reading from `pool` what they refer to; a body that
    /// cannot be read (damaged) is left out.
    fn records_of(
        pool: &sqlx::Pool<Self>,
        bodies: Vec<Self::StoredBody>,
    ) -> impl std::future::Future<Output = StoreResult<Vec<RequestRecord>>> + Send;
    /// Appends the value of the tag (request metadata entry) `name`, as text.
    fn push_tag(q: &mut QueryBuilder<Self>, name: &str);
    /// The function giving where a text starts in another (1-based, 0 when it is not there),
    /// its arguments the text searched and the text sought.
    const FIND: &'static str;
    /// The first day (`YYYY-MM-DD`, UTC) of the bucket a record's `started_at_ms` falls in.
    fn bucket_start(bucket: Bucket) -> &'static str;
}

impl Dialect for sqlx::Sqlite {
    type StoredBody = Vec<u8>;
    const FIND: &'static str = "instr";

    async fn records_of(
        pool: &SqlitePool,
        bodies: Vec<Vec<u8>>,
    ) -> StoreResult<Vec<RequestRecord>> {
        texts::read(pool, bodies).await
    }

    fn push_tag(q: &mut QueryBuilder<Self>, name: &str) {
        // `$."name"` with the name's quotes escaped, so any tag name is a safe JSON path.
        let path = format!("$.\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""));
        q.push("CAST(json_extract(tags, ")
            .push_bind(path)
            .push(") AS TEXT)");
    }

    fn bucket_start(bucket: Bucket) -> &'static str {
        match bucket {
            Bucket::Day => "date(started_at_ms / 1000, 'unixepoch')",
            // The Sunday on or after, less six days: the week's Monday.
            Bucket::Week => "date(started_at_ms / 1000, 'unixepoch', 'weekday 0', '-6 days')",
            Bucket::Month => "date(started_at_ms / 1000, 'unixepoch', 'start of month')",
            Bucket::All => "NULL",
        }
    }
}

impl Dialect for sqlx::Postgres {
    type StoredBody = String;
    const FIND: &'static str = "strpos";

    async fn records_of(_: &PgPool, bodies: Vec<String>) -> StoreResult<Vec<RequestRecord>> {
        Ok(bodies
            .iter()
            .filter_map(|body| serde_json::from_str(body).ok())
            .collect())
    }

    fn push_tag(q: &mut QueryBuilder<Self>, name: &str) {
        q.push("(tags::jsonb ->> ")
            .push_bind(name.to_owned())
            .push(")");
    }

    fn bucket_start(bucket: Bucket) -> &'static str {
        match bucket {
            Bucket::Day => {
                "to_char(to_timestamp(started_at_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            // Weeks start on Monday, as in SQLite's reports.
            Bucket::Week => {
                "to_char(date_trunc('week', to_timestamp(started_at_ms / 1000.0) AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
            }
            Bucket::Month => {
                "to_char(date_trunc('month', to_timestamp(started_at_ms / 1000.0) AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
            }
            Bucket::All => "CAST(NULL AS TEXT)",
        }
    }
}

/// The gateway's store: every table, in SQLite or PostgreSQL.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Where the record writer writes: SQLite gives it a connection of its own
    /// (`sqlite::open`); PostgreSQL shares the pool.
    records: Db,
    /// Whether the last poll of a shared store reached it (`switchyard_store_up`).
    reachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The long texts the record writer stored lately (SQLite).
    texts: std::sync::Arc<KnownTexts>,
}

impl Store {
    /// The embedded default: a SQLite file, created on first start.
    pub async fn open_sqlite(path: &std::path::Path) -> StoreResult<Self> {
        let (db, records) = sqlite::open(path).await?;
        Ok(Self {
            db: Db::Sqlite(db),
            records: Db::Sqlite(records),
            reachable: Default::default(),
            texts: Default::default(),
        })
    }

    /// A PostgreSQL database that replicas share; its schema is brought up to date first.
    pub async fn open_postgres(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = postgres::open(url, max_connections).await?;
        Ok(Self {
            db: Db::Postgres(pool.clone()),
            records: Db::Postgres(pool),
            reachable: std::sync::Arc::new(true.into()),
            texts: Default::default(),
        })
    }

    /// The database, for modules that keep their own tables here (experiments, evaluation).
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Whether other replicas may write here too (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// For a shared store, whether its last poll reached it; `None` for the embedded one.
    pub fn reachable(&self) -> Option<bool> {
        self.is_shared()
            .then(|| self.reachable.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Notes whether a poll reached the store.
    pub fn note_reached(&self, reached: bool) {
        self.reachable
            .store(reached, std::sync::atomic::Ordering::Relaxed);
    }
}

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
    /// A deployment one of whose attempts failed (whatever answered in the end).
    pub failed_deployment: Option<String>,
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

//! SQLite: the embedded default store, a file in the data directory created on first start,
//! in WAL mode, with its schema applied by ordered migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{Bucket, RecordStore, RequestFilter, SpendGroup, SpendRow, StoreResult};
use crate::telemetry::record::RequestRecord;

/// SQLite's memory, all connections together (a soft limit: past it, SQLite reuses its page
/// caches' pages instead of taking more). Without it each of the pool's connections may keep a
/// page cache of SQLite's default 2,000 KiB, filled by whatever it last read (a large admin
/// query, say), and hold it for as long as the process runs.
const SQLITE_HEAP_LIMIT: u64 = 4 << 20;

/// Applied in order; each runs once (tracked in `schema_migrations`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    requested_model TEXT NOT NULL,
    alias TEXT,
    deployment TEXT,
    provider TEXT,
    key_id TEXT,
    team TEXT,
    org TEXT,
    customer TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    stream INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_nanos INTEGER,
    tags TEXT,
    body TEXT NOT NULL
);
CREATE INDEX requests_started ON requests (started_at_ms);
CREATE INDEX requests_alias ON requests (alias, started_at_ms);
CREATE INDEX requests_deployment ON requests (deployment, started_at_ms);
CREATE INDEX requests_key ON requests (key_id, started_at_ms);
CREATE INDEX requests_team ON requests (team, started_at_ms);
CREATE INDEX requests_customer ON requests (customer, started_at_ms);
CREATE INDEX requests_error ON requests (error_code, started_at_ms);
"#,
    r#"
CREATE TABLE entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX requests_org ON requests (org, started_at_ms);
"#,
    crate::experiments::store::MIGRATION,
    crate::evaluation::store::MIGRATION,
    r#"
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    envelope TEXT NOT NULL,
    hint TEXT NOT NULL,
    description TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
"#,
    // The columns most records leave empty are indexed only where set: every filter on them is
    // an equality, which implies `IS NOT NULL`, so the planner still uses these; and a record
    // no longer pays, for each empty column, a B-tree insert and its pages in the WAL and the
    // checkpoint.
    r#"
DROP INDEX requests_key;
CREATE INDEX requests_key ON requests (key_id, started_at_ms) WHERE key_id IS NOT NULL;
DROP INDEX requests_team;
CREATE INDEX requests_team ON requests (team, started_at_ms) WHERE team IS NOT NULL;
DROP INDEX requests_org;
CREATE INDEX requests_org ON requests (org, started_at_ms) WHERE org IS NOT NULL;
DROP INDEX requests_customer;
CREATE INDEX requests_customer ON requests (customer, started_at_ms) WHERE customer IS NOT NULL;
DROP INDEX requests_error;
CREATE INDEX requests_error ON requests (error_code, started_at_ms) WHERE error_code IS NOT NULL;
DROP INDEX requests_experiment;
CREATE INDEX requests_experiment ON requests (experiment_id, started_at_ms)
    WHERE experiment_id IS NOT NULL;
DROP INDEX requests_session;
CREATE INDEX requests_session ON requests (session_id) WHERE session_id IS NOT NULL;
"#,
];

/// Applies the migrations not applied yet, each in a transaction of its own.
async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        .execute(pool)
        .await?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(pool)
                .await?;
        if done.is_some() {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES (?)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Page cache of the record writer's connection, in KiB (SQLite's default is 2,000).
const RECORDS_CACHE_KIB: u64 = 512;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The record writer's own connection (see `open`).
    records: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_millis(500))
            .pragma("soft_heap_limit", SQLITE_HEAP_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        migrate(&pool).await?;
        // Records are written on a connection of their own, kept for the process's life. In WAL
        // mode a connection's page cache holds only while no other connection has written since
        // its last transaction, and the pool hands its connections out in turn: each batch
        // found the cache of its connection made stale by the batch before, on another one,
        // and read its index pages again. Appending records touches the right edge of each
        // B-tree only, a few dozen pages: its cache is kept to a quarter of SQLite's default.
        // Opened with the first batch, so a gateway without records does not hold it.
        // Its commits checkpoint the WAL every 100 pages rather than SQLite's 1,000: about the
        // same copying (new pages are copied once either way), in pieces a tenth as long, so a
        // checkpoint no longer holds a CPU for some 15 ms every few seconds while requests wait
        // for it (docs/PERFORMANCE.md, thirty-eighth round).
        let records = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(
                options
                    .pragma("cache_size", format!("-{}", RECORDS_CACHE_KIB))
                    .pragma("wal_autocheckpoint", "100"),
            );
        Ok(Self { pool, records })
    }

    /// The connection pool, for modules that keep their own tables here (experiments,
    /// evaluation).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<RequestRecord>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM requests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    pub async fn count(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(&self.pool)
            .await
    }

    pub async fn query(&self, f: &RequestFilter) -> StoreResult<Vec<RequestRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT body FROM requests WHERE 1=1");
        if let Some(v) = f.since_ms {
            q.push(" AND started_at_ms >= ").push_bind(v);
        }
        if let Some(v) = f.until_ms {
            q.push(" AND started_at_ms < ").push_bind(v);
        }
        for (col, v) in [
            ("alias", &f.alias),
            ("deployment", &f.deployment),
            ("key_id", &f.key),
            ("team", &f.team),
            ("customer", &f.customer),
            ("outcome", &f.outcome),
            ("error_code", &f.error_code),
        ] {
            if let Some(v) = v {
                q.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(i64::from(s));
        }
        if let Some((name, value)) = &f.tag {
            q.push(" AND json_extract(tags, ")
                .push_bind(json_path(name))
                .push(") = ")
                .push_bind(value.clone());
        }
        if let Some(id) = &f.before_id {
            q.push(" AND id < ").push_bind(id.clone());
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit.clamp(1, 1000)));
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter_map(|b| serde_json::from_str(&b).ok())
            .collect())
    }

    pub async fn spend(
        &self,
        group: &SpendGroup,
        bucket: Bucket,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> StoreResult<Vec<SpendRow>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        match group {
            SpendGroup::Key => q.push("key_id"),
            SpendGroup::Team => q.push("team"),
            SpendGroup::Org => q.push("org"),
            SpendGroup::Customer => q.push("customer"),
            SpendGroup::Alias => q.push("alias"),
            SpendGroup::Deployment => q.push("deployment"),
            SpendGroup::Tag(name) => q
                .push("CAST(json_extract(tags, ")
                .push_bind(json_path(name))
                .push(") AS TEXT)"),
        };
        q.push(" AS grp, ");
        match bucket {
            Bucket::Day => q.push("date(started_at_ms / 1000, 'unixepoch')"),
            Bucket::Week => {
                q.push("date(started_at_ms / 1000, 'unixepoch', 'weekday 0', '-6 days')")
            }
            Bucket::Month => q.push("date(started_at_ms / 1000, 'unixepoch', 'start of month')"),
            Bucket::All => q.push("NULL"),
        };
        q.push(
            " AS bucket, COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), \
             COALESCE(SUM(cost_nanos), 0) FROM requests WHERE 1=1",
        );
        if let Some(v) = since_ms {
            q.push(" AND started_at_ms >= ").push_bind(v);
        }
        if let Some(v) = until_ms {
            q.push(" AND started_at_ms < ").push_bind(v);
        }
        q.push(" GROUP BY grp, bucket ORDER BY bucket, grp");
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| SpendRow {
                group: r.try_get(0).ok().flatten(),
                bucket: r.try_get(1).ok().flatten(),
                requests: r.try_get(2).unwrap_or(0),
                input_tokens: r.try_get(3).unwrap_or(0),
                output_tokens: r.try_get(4).unwrap_or(0),
                cost_nanos: r.try_get(5).unwrap_or(0),
            })
            .collect())
    }
}

impl SqliteStore {
    /// Every stored entity of every kind: `(kind, id, body)`.
    pub async fn entities(&self) -> StoreResult<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT kind, id, body FROM entities")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?)))
            .collect())
    }

    /// Writes (or replaces) an entity and its audit entry in one transaction.
    pub async fn put_entity(
        &self,
        kind: &str,
        id: &str,
        body: Option<&str>,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        match body {
            Some(b) => {
                sqlx::query("INSERT OR REPLACE INTO entities (kind, id, body) VALUES (?, ?, ?)")
                    .bind(kind)
                    .bind(id)
                    .bind(b)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM entities WHERE kind = ? AND id = ?")
                    .bind(kind)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await
    }

    pub async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, action, kind, entity_id, before, after FROM audit ORDER BY seq DESC LIMIT ?",
        )
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at_ms: r.try_get(0).unwrap_or(0),
                actor: r.try_get(1).unwrap_or_default(),
                action: r.try_get(2).unwrap_or_default(),
                kind: r.try_get(3).unwrap_or_default(),
                entity_id: r.try_get(4).unwrap_or_default(),
                before: r
                    .try_get::<Option<String>, _>(5)
                    .ok()
                    .flatten()
                    .and_then(|s| serde_json::from_str(&s).ok()),
                after: r
                    .try_get::<Option<String>, _>(6)
                    .ok()
                    .flatten()
                    .and_then(|s| serde_json::from_str(&s).ok()),
            })
            .collect())
    }

    /// Total recorded cost of one entity since a time (the ledger's starting point).
    pub async fn spent_since(
        &self,
        column: SpendColumn,
        id: &str,
        since_ms: i64,
    ) -> StoreResult<i64> {
        let sql = match column {
            SpendColumn::Key => {
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM requests WHERE key_id = ? AND started_at_ms >= ?"
            }
            SpendColumn::Team => {
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM requests WHERE team = ? AND started_at_ms >= ?"
            }
            SpendColumn::Org => {
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM requests WHERE org = ? AND started_at_ms >= ?"
            }
            SpendColumn::Customer => {
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM requests WHERE customer = ? AND started_at_ms >= ?"
            }
        };
        sqlx::query_scalar(sql)
            .bind(id)
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await
    }
}

impl SqliteStore {
    /// Every stored credential (still encrypted).
    pub async fn credentials(&self) -> StoreResult<Vec<StoredCredential>> {
        let rows = sqlx::query(
            "SELECT name, envelope, hint, description, created_at_ms, updated_at_ms FROM credentials ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(StoredCredential {
                    name: r.try_get(0).ok()?,
                    envelope: r.try_get(1).ok()?,
                    hint: r.try_get(2).ok()?,
                    description: r.try_get(3).ok()?,
                    created_at_ms: r.try_get(4).ok()?,
                    updated_at_ms: r.try_get(5).ok()?,
                })
            })
            .collect())
    }

    /// Writes (or, with `None`, deletes) the credential `name` and its audit entry (when given)
    /// in one transaction.
    pub async fn put_credential(
        &self,
        name: &str,
        record: Option<&StoredCredential>,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        match record {
            Some(c) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO credentials (name, envelope, hint, description, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&c.name)
                .bind(&c.envelope)
                .bind(&c.hint)
                .bind(&c.description)
                .bind(c.created_at_ms)
                .bind(c.updated_at_ms)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM credentials WHERE name = ?")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await
    }
}

async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    audit: &AuditEntry,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit (at_ms, actor, action, kind, entity_id, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(audit.at_ms)
    .bind(&audit.actor)
    .bind(&audit.action)
    .bind(&audit.kind)
    .bind(&audit.entity_id)
    .bind(audit.before.as_ref().map(|v| v.to_string()))
    .bind(audit.after.as_ref().map(|v| v.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A credential as stored: the secret only inside the encrypted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub name: String,
    /// `v1:key_id:nonce:ciphertext`.
    pub envelope: String,
    /// `…abcd`: the secret's last characters, or `…` for short secrets.
    pub hint: String,
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Copy)]
pub enum SpendColumn {
    Key,
    Team,
    Org,
    Customer,
}

/// One entry of the audit log: who changed what, before and after (never a secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub kind: String,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// `$."name"` with the name's quotes escaped, so any tag name is a safe JSON path.
fn json_path(name: &str) -> String {
    format!("$.\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Rows of the multi-row statements a batch of records is written with: as many of the largest
/// as fit, then the rest by halves, so any batch takes a few statements (each a round trip to
/// the SQLite thread) of five sizes only. Each size is prepared once per connection and kept,
/// so its memory is taken once; statements sized to each batch were parsed anew every time and
/// took memory that followed the largest batch so far (a stall of the writer made a batch of
/// hundreds of records and raised it for good).
const STATEMENT_ROWS: [usize; 5] = [16, 8, 4, 2, 1];

/// The columns a record is written to, in the order its values are bound.
const RECORD_COLUMNS: &str = "id, started_at_ms, requested_model, alias, deployment, provider, key_id, \
    team, org, customer, status, outcome, error_code, stream, duration_ms, input_tokens, output_tokens, \
    cost_nanos, tags, body, config_name, config_version, experiment_id, variant, session_id";

/// The `INSERT` of `STATEMENT_ROWS[size]` records, written once for the process: built per
/// batch, its few hundred placeholders and separators went through the query builder's
/// formatting one by one, about a third of the writer's own work per record.
fn insert_statement(size: usize) -> &'static str {
    static STATEMENTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let columns = RECORD_COLUMNS.split(',').count();
        let row = format!("({})", vec!["?"; columns].join(", "));
        STATEMENT_ROWS
            .iter()
            .map(|&rows| {
                format!(
                    "INSERT OR IGNORE INTO requests ({RECORD_COLUMNS}) VALUES {}",
                    vec![row.as_str(); rows].join(", ")
                )
            })
            .collect()
    });
    &STATEMENTS[size]
}

impl RecordStore for SqliteStore {
    async fn insert(&self, records: &[RequestRecord]) -> StoreResult<()> {
        let mut tx = self.records.begin().await?;
        let mut rest = records;
        while let Some(size) = STATEMENT_ROWS.iter().position(|&rows| rows <= rest.len()) {
            let (chunk, tail) = rest.split_at(STATEMENT_ROWS[size]);
            rest = tail;
            // Replays after a sink outage may repeat records: the id makes that harmless.
            let mut insert = sqlx::query(insert_statement(size));
            for r in chunk {
                let tags = (!r.tags.is_empty())
                    .then(|| serde_json::to_string(&r.tags).unwrap_or_default());
                insert = insert
                    .bind(&r.id)
                    .bind(r.started_at_ms)
                    .bind(&r.requested_model)
                    .bind(&r.alias)
                    .bind(&r.deployment)
                    .bind(&r.provider)
                    .bind(&r.caller.key_id)
                    .bind(&r.caller.team)
                    .bind(&r.caller.org)
                    .bind(&r.customer)
                    .bind(i64::from(r.status))
                    .bind(r.outcome.as_str())
                    .bind(&r.error_code)
                    .bind(r.stream)
                    .bind(r.duration_ms)
                    .bind(r.tokens.map(|t| t.input as i64))
                    .bind(r.tokens.map(|t| t.output as i64))
                    .bind(r.cost_nanos)
                    .bind(tags)
                    .bind(r.to_json())
                    .bind(&r.config_name)
                    .bind(r.config_version.map(i64::from))
                    .bind(&r.experiment_id)
                    .bind(&r.variant)
                    .bind(&r.session_id);
            }
            // Kept prepared: one statement per size in `STATEMENT_ROWS` and connection.
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite picks for `sql`, its detail lines joined.
    async fn plan(store: &SqliteStore, sql: &str) -> String {
        // Test-only SQL built from the constants below.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .bind("x")
            .bind(0_i64)
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Filters on the sparsely set columns still find their (partial) index.
    async fn assert_sparse_indexes_used(store: &SqliteStore) {
        for (column, index) in [
            ("key_id", "requests_key"),
            ("team", "requests_team"),
            ("org", "requests_org"),
            ("customer", "requests_customer"),
            ("error_code", "requests_error"),
            ("experiment_id", "requests_experiment"),
        ] {
            let sql = format!(
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM requests \
                 WHERE {column} = ? AND started_at_ms >= ?"
            );
            let plan = plan(store, &sql).await;
            assert!(
                plan.contains(&format!("INDEX {index} ")),
                "{column}: {plan}"
            );
        }
        let plan = plan(
            store,
            "SELECT DISTINCT key_id FROM requests WHERE session_id = ? AND ? = 0",
        )
        .await;
        assert!(plan.contains("INDEX requests_session "), "session: {plan}");
    }

    async fn assert_customer_index_partial(store: &SqliteStore) {
        let sql: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'requests_customer'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(sql.contains("WHERE customer IS NOT NULL"), "{sql}");
    }

    #[tokio::test]
    async fn sparse_columns_are_indexed_only_where_set_and_the_indexes_serve_their_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).await.unwrap();
        assert_customer_index_partial(&store).await;
        assert_sparse_indexes_used(&store).await;

        // A store from before the change: its indexes cover every row. Opening it again
        // replaces them.
        sqlx::raw_sql(
            "DELETE FROM schema_migrations WHERE version = 6;
             DROP INDEX requests_customer;
             CREATE INDEX requests_customer ON requests (customer, started_at_ms);",
        )
        .execute(store.pool())
        .await
        .unwrap();
        store.pool.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        assert_customer_index_partial(&store).await;
        assert_sparse_indexes_used(&store).await;
    }

    #[tokio::test]
    async fn sqlite_memory_is_bounded_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        // Hold every connection of the pool at once, so each is asked, and the record writer's.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(store.pool().acquire().await.unwrap());
        }
        held.push(store.records.acquire().await.unwrap());
        for conn in &mut held {
            let limit: i64 = sqlx::query_scalar("PRAGMA soft_heap_limit")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(limit as u64, SQLITE_HEAP_LIMIT);
        }
        let writer = held.last_mut().unwrap();
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut **writer)
            .await
            .unwrap();
        assert_eq!(cache, -(RECORDS_CACHE_KIB as i64));
    }

    #[tokio::test]
    async fn a_batch_of_any_size_is_stored_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let record: RequestRecord = serde_json::from_value(serde_json::json!({
            "id": "", "started_at_ms": 1, "duration_ms": 2.0, "ingress": "openai",
            "endpoint": "chat", "requested_model": "m", "stream": false, "status": 200,
            "outcome": "success", "caller": {}, "attempts": []
        }))
        .unwrap();
        let mut stored = 0;
        for size in (0..=40).chain([77, 300]) {
            let batch: Vec<RequestRecord> = (0..size)
                .map(|i| RequestRecord {
                    id: format!("{size}-{i}"),
                    ..record.clone()
                })
                .collect();
            store.insert(&batch).await.unwrap();
            stored += size;
            assert_eq!(
                store.count().await.unwrap(),
                stored as i64,
                "batch of {size}"
            );
            for r in &batch {
                assert!(store.get(&r.id).await.unwrap().is_some(), "{}", r.id);
            }
        }
        // Every column holds its own value, in a statement of each size (the binds follow
        // `RECORD_COLUMNS` in order).
        for size in [1usize, 3, 16] {
            let batch: Vec<RequestRecord> = (0..size)
                .map(|i| {
                    let mut r = record.clone();
                    r.id = format!("full-{size}-{i}");
                    r.alias = Some(format!("alias-{i}"));
                    r.deployment = Some("deployment".into());
                    r.provider = Some("provider".into());
                    r.caller.key_id = Some("key".into());
                    r.caller.team = Some("team".into());
                    r.caller.org = Some("org".into());
                    r.customer = Some("customer".into());
                    r.error_code = Some("code".into());
                    r.cost_nanos = Some(7);
                    r.tags.insert("t".into(), serde_json::json!("v"));
                    r.config_name = Some("config".into());
                    r.config_version = Some(3);
                    r.experiment_id = Some("experiment".into());
                    r.variant = Some("variant".into());
                    r.session_id = Some("session".into());
                    r
                })
                .collect();
            store.insert(&batch).await.unwrap();
            stored += size;
            for (i, r) in batch.iter().enumerate() {
                let row = sqlx::query(
                    "SELECT alias, deployment, provider, key_id, team, org, customer, error_code, \
                     cost_nanos, tags, config_name, config_version, experiment_id, variant, \
                     session_id, status, started_at_ms, requested_model, outcome, body \
                     FROM requests WHERE id = ?",
                )
                .bind(&r.id)
                .fetch_one(store.pool())
                .await
                .unwrap();
                let text = |c: &str| row.get::<Option<String>, _>(c);
                assert_eq!(text("alias"), Some(format!("alias-{i}")));
                for c in [
                    "deployment",
                    "provider",
                    "customer",
                    "variant",
                    "experiment_id",
                    "session_id",
                ] {
                    assert_eq!(
                        text(c).as_deref(),
                        Some(c.split('_').next().unwrap()),
                        "{c}"
                    );
                }
                assert_eq!(text("key_id").as_deref(), Some("key"));
                assert_eq!(text("team").as_deref(), Some("team"));
                assert_eq!(text("org").as_deref(), Some("org"));
                assert_eq!(text("error_code").as_deref(), Some("code"));
                assert_eq!(text("config_name").as_deref(), Some("config"));
                assert_eq!(text("tags").as_deref(), Some(r#"{"t":"v"}"#));
                assert_eq!(text("requested_model").as_deref(), Some("m"));
                assert_eq!(text("outcome").as_deref(), Some("success"));
                assert_eq!(text("body"), Some(r.to_json()));
                assert_eq!(row.get::<Option<i64>, _>("cost_nanos"), Some(7));
                assert_eq!(row.get::<Option<i64>, _>("config_version"), Some(3));
                assert_eq!(row.get::<i64, _>("status"), 200);
                assert_eq!(row.get::<i64, _>("started_at_ms"), 1);
            }
        }
        assert_eq!(store.count().await.unwrap(), stored as i64);

        // A replayed batch stores nothing twice.
        store
            .insert(&[RequestRecord {
                id: "3-1".into(),
                ..record
            }])
            .await
            .unwrap();
        assert_eq!(store.count().await.unwrap(), stored as i64);
    }
}

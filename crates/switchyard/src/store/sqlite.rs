//! SQLite: the embedded default store, a file in the data directory created on first start,
//! in WAL mode, with its schema applied by ordered migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreResult;

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
    crate::evaluation::store::HEARTBEAT_MIGRATION,
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

/// Opens (creating if missing) the database at `path` and applies its migrations: the pool for
/// every other use, and the record writer's own connection.
pub(super) async fn open(path: &Path) -> StoreResult<(SqlitePool, SqlitePool)> {
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
    Ok((pool, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, RecordStore, Store};
    use crate::telemetry::record::RequestRecord;
    use sqlx::Row;

    impl Store {
        fn pool(&self) -> &SqlitePool {
            match &self.db {
                Db::Sqlite(pool) => pool,
                Db::Postgres(_) => unreachable!("a SQLite store"),
            }
        }
    }

    /// The plan SQLite picks for `sql`, its detail lines joined.
    async fn plan(store: &Store, sql: &str) -> String {
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
    async fn assert_sparse_indexes_used(store: &Store) {
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

    async fn assert_customer_index_partial(store: &Store) {
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
        let store = Store::open_sqlite(&path).await.unwrap();
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
        store.pool().close().await;
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_customer_index_partial(&store).await;
        assert_sparse_indexes_used(&store).await;
    }

    #[tokio::test]
    async fn sqlite_memory_is_bounded_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        // Hold every connection of the pool at once, so each is asked, and the record writer's.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(store.pool().acquire().await.unwrap());
        }
        let Db::Sqlite(records) = &store.records else {
            unreachable!("a SQLite store")
        };
        held.push(records.acquire().await.unwrap());
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
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
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
                    r.alias = Some(format!("alias-{i}").into());
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
                     FROM requests WHERE id = $1",
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

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
    // Records' long texts, each kept once (`store::texts`).
    r#"
CREATE TABLE record_texts (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
"#,
    // The deployments whose attempts failed, `|a|b|` (NULL when none did): which requests a
    // failing deployment touched, fallbacks that hid it included.
    "ALTER TABLE requests ADD COLUMN failed_deployments TEXT;",
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

/// The first byte of a record body stored compressed: an LZ4 block, its length before
/// compression (four bytes, little-endian) ahead of it. A body stored as it is (short, or not
/// made shorter) is its JSON, which begins with `{`, as every body written before did (or, for
/// a text kept apart, `"`; a body whose texts are apart begins with its own byte, `texts`).
const LZ4_BODY: u8 = 1;

/// Bodies shorter than this are stored as they are: the saving would not pay for the work.
const PACK_FROM_BYTES: usize = 256;

/// A record's body as SQLite stores it. SQLite keeps text as it is given, where PostgreSQL
/// compresses a long value itself (TOAST), and a record with its prompt and response kept is
/// mostly text (up to the content limits, tens of KiB): every byte of it is written to the WAL,
/// copied into the database at the next checkpoint and synced, which at full load took a third
/// of a CPU (docs/PERFORMANCE.md, forty-sixth round). LZ4 compresses a GB a second and more on
/// one core, prose and code to between a half and two thirds, JSON and a conversation's
/// repeated turns further.
pub(super) fn pack_body(json: &[u8]) -> Vec<u8> {
    let size = match u32::try_from(json.len()) {
        Ok(size) if json.len() >= PACK_FROM_BYTES => size,
        _ => return json.to_vec(),
    };
    let mut packed = vec![0; 5 + lz4_flex::block::get_maximum_output_size(json.len())];
    packed[0] = LZ4_BODY;
    packed[1..5].copy_from_slice(&size.to_le_bytes());
    match lz4_flex::block::compress_into(json, &mut packed[5..]) {
        Ok(n) if 5 + n < json.len() => {
            packed.truncate(5 + n);
            packed
        }
        _ => json.to_vec(),
    }
}

/// The JSON of a stored body, `None` when it cannot be read (a damaged file).
pub(super) fn unpack_body(stored: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let Some((&LZ4_BODY, packed)) = stored.split_first() else {
        return Some(std::borrow::Cow::Borrowed(stored));
    };
    let (size, block) = packed.split_first_chunk::<4>()?;
    let size = u32::from_le_bytes(*size) as usize;
    // LZ4 cannot expand a block more than 255 times: a larger length is damage, not a body.
    if size > block.len().saturating_mul(255) {
        return None;
    }
    let json = lz4_flex::block::decompress(block, size).ok()?;
    (json.len() == size).then_some(std::borrow::Cow::Owned(json))
}

/// WAL pages after which a commit of the record writer's connection checkpoints.
const RECORDS_CHECKPOINT_PAGES: u32 = 1_000;

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
    // Its commits checkpoint the WAL at SQLite's 1,000 pages. Each checkpoint syncs the WAL and
    // the database, and each sync is a burst of block-device writes whose completions
    // interrupt whichever CPU serves requests; every 100 pages (from the thirty-eighth round,
    // whose pieces a tenth as long held a CPU for less) made seven times the writes, and with
    // idle CPUs held at polling the tail of requests at 500 a second showed it
    // (docs/PERFORMANCE.md, fifty-fifth round).
    // Not pinged each time a batch takes it: a ping is a round trip to SQLite's thread with as
    // many switches as the batch's own statement, and a connection in this process, used by no
    // one else, has nothing to find (a failed write spills its batch either way).
    let records = SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect_lazy_with(
            options
                .pragma("cache_size", format!("-{}", RECORDS_CACHE_KIB))
                .pragma("wal_autocheckpoint", RECORDS_CHECKPOINT_PAGES.to_string()),
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
    async fn sqlite_memory_is_bounded_on_every_connection_and_the_writer_checkpoints_at_its_mark() {
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
        // The writer's commits checkpoint the WAL at its own mark.
        let checkpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut **writer)
            .await
            .unwrap();
        assert_eq!(checkpoint, i64::from(RECORDS_CHECKPOINT_PAGES));
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
        // Every column holds its own value, in each of the statements' sizes, full or not, and
        // in two statements (the binds follow `RECORD_COLUMNS` in order).
        for size in [1usize, 2, 3, 5, 9, 13, 17, 25, 32, 33] {
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
                let body = row.get::<Vec<u8>, _>("body");
                assert_eq!(unpack_body(&body).as_deref(), Some(r.to_json().as_bytes()));
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

    #[tokio::test]
    async fn a_batch_cut_short_or_refused_leaves_nothing_in_the_way_of_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let batch = |prefix: &str| -> Vec<RequestRecord> {
            (0..5)
                .map(|i| record_with_content(&format!("{prefix}-{i}"), "short"))
                .collect()
        };
        let first = batch("first");
        store.insert(&first).await.unwrap();

        // Another connection holds the write lock, so the writer's insert waits for it until the
        // writer gives up on it (its timeout drops the statement's answer).
        let mut other = store.pool().acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *other)
            .await
            .unwrap();
        let cut = batch("cut");
        let gave_up = tokio::time::timeout(Duration::from_millis(100), store.insert(&cut)).await;
        assert!(gave_up.is_err(), "the insert waited for the lock");
        sqlx::query("COMMIT").execute(&mut *other).await.unwrap();
        drop(other);

        // The next batch is written, and seen by other connections: committed.
        let next = batch("next");
        store.insert(&next).await.unwrap();
        for r in first.iter().chain(&next) {
            assert!(store.get(&r.id).await.unwrap().is_some(), "{}", r.id);
        }
        // The batch cut short is stored whole or not at all; written again, it is there once.
        let cut_stored = store.count().await.unwrap() - 10;
        assert!(cut_stored == 0 || cut_stored == 5, "{cut_stored}");
        store.insert(&cut).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 15);

        // An insert that fails (a row refused by a trigger) leaves nothing of its batch, in one
        // statement or in several, and nothing in the way of the next.
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON requests \
             WHEN NEW.id IN ('refused-2', 'refused-many-35') \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(store.pool())
        .await
        .unwrap();
        assert!(store.insert(&batch("refused")).await.is_err());
        let many: Vec<RequestRecord> = (0..40)
            .map(|i| record_with_content(&format!("refused-many-{i}"), "short"))
            .collect();
        assert!(store.insert(&many).await.is_err());
        assert!(store.get("refused-many-0").await.unwrap().is_none());
        let after = batch("after");
        store.insert(&after).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 20);
        assert!(store.get("refused-0").await.unwrap().is_none());
    }

    /// A record with a prompt and response of `text`.
    fn record_with_content(id: &str, text: &str) -> RequestRecord {
        let mut r: RequestRecord = serde_json::from_value(serde_json::json!({
            "id": id, "started_at_ms": 1, "duration_ms": 2.0, "ingress": "openai",
            "endpoint": "chat", "requested_model": "m", "stream": false, "status": 200,
            "outcome": "success", "caller": {}, "attempts": []
        }))
        .unwrap();
        r.prompt = Some(vec![crate::telemetry::record::PromptMessage {
            role: "user".into(),
            content: text.to_owned(),
        }]);
        r.response = Some(text.chars().rev().collect());
        r
    }

    /// Text that compresses as prose does: this file's own source.
    fn prose(len: usize) -> String {
        include_str!("sqlite.rs").chars().take(len).collect()
    }

    #[test]
    fn a_body_is_stored_compressed_when_that_makes_it_shorter() {
        let json = record_with_content("a", &prose(16 * 1024)).to_json();
        let packed = pack_body(json.as_bytes());
        assert_eq!(packed[0], LZ4_BODY);
        assert!(
            packed.len() * 3 < json.len() * 2,
            "{} of {}",
            packed.len(),
            json.len()
        );
        assert_eq!(unpack_body(&packed).as_deref(), Some(json.as_bytes()));

        // Short bodies, and bodies compression would not shorten, are stored as their JSON.
        let short = r#"{"id":"b"}"#.to_owned();
        assert_eq!(pack_body(short.as_bytes()), short.as_bytes());
        let mut state = 0x2545_f491_u32;
        let noise: String = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                char::from(b'!' + (state % 90) as u8)
            })
            .collect();
        let incompressible = serde_json::json!({ "noise": noise }).to_string();
        assert_eq!(
            pack_body(incompressible.as_bytes()),
            incompressible.as_bytes()
        );
        assert_eq!(
            unpack_body(incompressible.as_bytes()).as_deref(),
            Some(incompressible.as_bytes())
        );
    }

    #[test]
    fn a_damaged_body_reads_as_nothing() {
        let packed = pack_body(
            record_with_content("a", &prose(8 * 1024))
                .to_json()
                .as_bytes(),
        );
        assert!(
            unpack_body(&packed[..packed.len() / 2]).is_none(),
            "cut short"
        );
        assert!(unpack_body(&packed[..3]).is_none(), "no length");
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack_body(&huge).is_none(), "a length LZ4 cannot reach");
        let mut longer = packed.clone();
        let size = u32::from_le_bytes([packed[1], packed[2], packed[3], packed[4]]);
        longer[1..5].copy_from_slice(&(size + 1).to_le_bytes());
        assert!(
            unpack_body(&longer).is_none(),
            "a length the block does not fill"
        );
    }

    #[tokio::test]
    async fn records_read_back_whether_stored_compressed_as_json_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        // Its texts kept apart (`texts`), compressed.
        let kept = record_with_content("1-kept", &prose(12 * 1024));
        store.insert(std::slice::from_ref(&kept)).await.unwrap();
        let raw: Vec<u8> = sqlx::query_scalar("SELECT body FROM requests WHERE id = '1-kept'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(raw[0], 2, "texts apart");
        assert!(
            raw.len() < 512,
            "the record without its texts: {} bytes",
            raw.len()
        );
        let texts: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM record_texts ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(texts.len(), 2, "the prompt and the response");
        let json = kept.to_json();
        let stored = raw.len() + texts.iter().map(Vec::len).sum::<usize>();
        assert!(stored < json.len() * 2 / 3, "{stored} of {}", json.len());

        // A row written as text, as every body was before bodies were compressed.
        let old = record_with_content("2-old", "an earlier record's prompt");
        sqlx::query("INSERT INTO requests (id, started_at_ms, requested_model, status, outcome, stream, duration_ms, body) VALUES ($1, 1, 'm', 200, 'success', 0, 2.0, $2)")
            .bind(&old.id)
            .bind(old.to_json())
            .execute(store.pool())
            .await
            .unwrap();
        // And one whose compressed body was damaged.
        let damaged = record_with_content("3-damaged", &prose(4096)).to_json();
        let mut damaged = pack_body(damaged.as_bytes());
        damaged.truncate(damaged.len() / 2);
        sqlx::query("INSERT INTO requests (id, started_at_ms, requested_model, status, outcome, stream, duration_ms, body) VALUES ('3-damaged', 1, 'm', 200, 'success', 0, 2.0, $1)")
            .bind(damaged)
            .execute(store.pool())
            .await
            .unwrap();

        let got = store.get("1-kept").await.unwrap().unwrap();
        assert_eq!(got.to_json(), json);
        assert_eq!(
            store.get("2-old").await.unwrap().unwrap().to_json(),
            old.to_json()
        );
        assert!(store.get("3-damaged").await.unwrap().is_none());
        let listed = store
            .query(&crate::store::RequestFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["2-old", "1-kept"],
            "newest first, the damaged one left out"
        );
        assert_eq!(listed[1].to_json(), json);
    }
}

//! PostgreSQL: the store replicas share. Its schema is the SQLite store's as it stands after
//! all of SQLite's migrations, in PostgreSQL's types, applied by its own ordered list.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::StoreResult;

/// Applied in order; each runs once (tracked in `schema_migrations`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    requested_model TEXT NOT NULL,
    alias TEXT,
    deployment TEXT,
    provider TEXT,
    key_id TEXT,
    team TEXT,
    org TEXT,
    customer TEXT,
    status BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    stream BOOLEAN NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost_nanos BIGINT,
    tags TEXT,
    body TEXT NOT NULL,
    config_name TEXT,
    config_version BIGINT,
    experiment_id TEXT,
    variant TEXT,
    session_id TEXT
);
CREATE INDEX requests_started ON requests (started_at_ms);
CREATE INDEX requests_alias ON requests (alias, started_at_ms);
CREATE INDEX requests_deployment ON requests (deployment, started_at_ms);
CREATE INDEX requests_key ON requests (key_id, started_at_ms) WHERE key_id IS NOT NULL;
CREATE INDEX requests_team ON requests (team, started_at_ms) WHERE team IS NOT NULL;
CREATE INDEX requests_org ON requests (org, started_at_ms) WHERE org IS NOT NULL;
CREATE INDEX requests_customer ON requests (customer, started_at_ms) WHERE customer IS NOT NULL;
CREATE INDEX requests_error ON requests (error_code, started_at_ms) WHERE error_code IS NOT NULL;
CREATE INDEX requests_experiment ON requests (experiment_id, started_at_ms)
    WHERE experiment_id IS NOT NULL;
CREATE INDEX requests_session ON requests (session_id) WHERE session_id IS NOT NULL;
CREATE TABLE entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    envelope TEXT NOT NULL,
    hint TEXT NOT NULL,
    description TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
"#,
    crate::experiments::store::POSTGRES_SCHEMA,
    crate::evaluation::store::POSTGRES_SCHEMA,
    // As SQLite's: the deployments whose attempts failed.
    "ALTER TABLE requests ADD COLUMN IF NOT EXISTS failed_deployments TEXT;",
];

/// Any number; taken for the migrations' transaction, so replicas starting together apply
/// each migration once.
const MIGRATION_LOCK: i64 = 0x5357_4954_4348;

/// Connects (failing at once if the database cannot be reached) and applies the migrations.
pub(super) async fn open(url: &str, max_connections: u32) -> StoreResult<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Applies the migrations not applied yet, all in one transaction that holds the migration
/// lock.
async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .execute(&mut *tx)
        .await?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

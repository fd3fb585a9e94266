//! Persistence of datasets, evaluation runs and their per-item results, in the gateway's
//! store. A dataset is written with all its items in one transaction; a run item is one row
//! written when the item is finished, so a run's progress is the count of its rows and a resumed
//! run skips exactly the items that have one.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::dataset::DatasetItem;
use super::scorer::Score;
use crate::store::{Db, StoreResult, on_db};

/// A later SQLite migration: when the replica running a run last said it was.
pub const HEARTBEAT_MIGRATION: &str = "ALTER TABLE eval_runs ADD COLUMN heartbeat_ms INTEGER;";

/// The schema of this module in SQLite, applied as one entry of the store's ordered migrations.
pub const MIGRATION: &str = r#"
CREATE TABLE eval_datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    source TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE eval_dataset_items (
    dataset_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (dataset_id, position),
    UNIQUE (dataset_id, item_id)
);
CREATE TABLE eval_runs (
    id TEXT PRIMARY KEY,
    name TEXT,
    dataset_id TEXT NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    created_by TEXT NOT NULL,
    error TEXT
);
CREATE INDEX eval_runs_created ON eval_runs (created_at_ms);
CREATE TABLE eval_run_items (
    run_id TEXT NOT NULL,
    target INTEGER NOT NULL,
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    output TEXT,
    scores TEXT NOT NULL,
    passed INTEGER,
    latency_ms REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_nanos INTEGER,
    judge_cost_nanos INTEGER,
    error_code TEXT,
    error TEXT,
    request_id TEXT,
    finished_at_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, target, position)
);
"#;

/// The same tables in PostgreSQL.
pub const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE eval_datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    source TEXT NOT NULL,
    item_count BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE eval_dataset_items (
    dataset_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (dataset_id, position),
    UNIQUE (dataset_id, item_id)
);
CREATE TABLE eval_runs (
    id TEXT PRIMARY KEY,
    name TEXT,
    dataset_id TEXT NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    total BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    created_by TEXT NOT NULL,
    error TEXT,
    heartbeat_ms BIGINT
);
CREATE INDEX eval_runs_created ON eval_runs (created_at_ms);
CREATE TABLE eval_run_items (
    run_id TEXT NOT NULL,
    target BIGINT NOT NULL,
    position BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    output TEXT,
    scores TEXT NOT NULL,
    passed BOOLEAN,
    latency_ms DOUBLE PRECISION,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost_nanos BIGINT,
    judge_cost_nanos BIGINT,
    error_code TEXT,
    error TEXT,
    request_id TEXT,
    finished_at_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, target, position)
);
"#;

#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `upload` or `requests`.
    pub source: String,
    pub item_count: i64,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// How a run is carried out, as stored with it (scorers in their input form, compiled again
/// when the run resumes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub targets: Vec<Target>,
    pub scorers: Vec<Value>,
    pub concurrency: usize,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, Value>,
}

/// What an item is sent to: a model alias, or a configuration version (`NAME`,
/// `NAME@VERSION` or `NAME@LABEL`) selected with the `x-switchyard-config` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl Target {
    /// `model:ALIAS` or `config:NAME@VERSION`, the name results and exports use.
    pub fn label(&self) -> String {
        match (&self.config, &self.model) {
            (Some(c), _) => format!("config:{c}"),
            (None, Some(m)) => format!("model:{m}"),
            (None, None) => "-".into(),
        }
    }
}

/// `queued` → `running` → `completed`; `interrupted` when the gateway stopped mid-run,
/// `failed` when the run could not go on (its dataset or a scorer's model is gone).
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub dataset_id: String,
    pub status: String,
    pub spec: RunSpec,
    /// Items × targets.
    pub total: i64,
    pub created_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the replica running it last said so (every `HEARTBEAT_EVERY` while it runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_at_ms: Option<i64>,
}

/// One item's result for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub target: usize,
    /// The item's position in its dataset, from 1.
    pub position: i64,
    pub item_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub scores: BTreeMap<String, Score>,
    /// Every scorer that gave a verdict passed, and the request did not fail.
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_cost_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The gateway's `x-request-id` of the item's request (its request record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub finished_at_ms: i64,
}

/// A dataset from a row of `eval_datasets` (of either database).
macro_rules! dataset_of {
    ($r:expr) => {{
        let r = $r;
        Dataset {
            id: r.try_get("id").unwrap_or_default(),
            name: r.try_get("name").unwrap_or_default(),
            description: r.try_get("description").ok().flatten(),
            source: r.try_get("source").unwrap_or_default(),
            item_count: r.try_get("item_count").unwrap_or(0),
            created_at_ms: r.try_get("created_at_ms").unwrap_or(0),
            created_by: r.try_get("created_by").unwrap_or_default(),
        }
    }};
}

/// A run from a row of `eval_runs` (of either database); `None` when its spec is unreadable.
macro_rules! run_of {
    ($r:expr) => {{
        let r = $r;
        (|| {
            let spec: String = r.try_get("spec").ok()?;
            Some(Run {
                id: r.try_get("id").ok()?,
                name: r.try_get("name").ok().flatten(),
                dataset_id: r.try_get("dataset_id").ok()?,
                status: r.try_get("status").ok()?,
                spec: serde_json::from_str(&spec).ok()?,
                total: r.try_get("total").unwrap_or(0),
                created_at_ms: r.try_get("created_at_ms").unwrap_or(0),
                started_at_ms: r.try_get("started_at_ms").ok().flatten(),
                finished_at_ms: r.try_get("finished_at_ms").ok().flatten(),
                created_by: r.try_get("created_by").unwrap_or_default(),
                error: r.try_get("error").ok().flatten(),
                heartbeat_at_ms: r.try_get("heartbeat_ms").ok().flatten(),
            })
        })()
    }};
}

/// The evaluation tables of the gateway's store.
#[derive(Clone)]
pub struct EvalStore {
    db: Db,
}

impl EvalStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores a dataset and all its items, or nothing. `Ok(false)` when the name is taken.
    pub async fn create_dataset(
        &self,
        dataset: &Dataset,
        items: &[DatasetItem],
    ) -> StoreResult<bool> {
        on_db!(&self.db, |pool: Db| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO eval_datasets (id, name, description, source, item_count, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&dataset.id)
            .bind(&dataset.name)
            .bind(&dataset.description)
            .bind(&dataset.source)
            .bind(dataset.item_count)
            .bind(dataset.created_at_ms)
            .bind(&dataset.created_by)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
            for (i, item) in items.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO eval_dataset_items (dataset_id, position, item_id, body) VALUES ($1, $2, $3, $4)",
                )
                .bind(&dataset.id)
                .bind(i as i64 + 1)
                .bind(&item.id)
                .bind(serde_json::to_string(item).unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn datasets(&self) -> StoreResult<Vec<Dataset>> {
        on_db!(&self.db, |pool: Db| {
            let rows =
                sqlx::query("SELECT * FROM eval_datasets ORDER BY created_at_ms DESC, id DESC")
                    .fetch_all(pool)
                    .await?;
            Ok(rows.iter().map(|r| dataset_of!(r)).collect())
        })
    }

    /// A dataset by id or by name.
    pub async fn dataset(&self, id_or_name: &str) -> StoreResult<Option<Dataset>> {
        on_db!(&self.db, |pool: Db| {
            let row = sqlx::query("SELECT * FROM eval_datasets WHERE id = $1 OR name = $1 LIMIT 1")
                .bind(id_or_name)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(|r| dataset_of!(r)))
        })
    }

    /// Items in order, `(position, item)`, from `offset` (0-based) for at most `limit`.
    pub async fn items(
        &self,
        dataset_id: &str,
        offset: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, DatasetItem)>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query(
                "SELECT position, body FROM eval_dataset_items WHERE dataset_id = $1 \
                 ORDER BY position LIMIT $2 OFFSET $3",
            )
            .bind(dataset_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let position: i64 = r.try_get(0).ok()?;
                    let body: String = r.try_get(1).ok()?;
                    Some((position, serde_json::from_str(&body).ok()?))
                })
                .collect())
        })
    }

    pub async fn create_run(&self, run: &Run) -> StoreResult<()> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query(
                "INSERT INTO eval_runs (id, name, dataset_id, status, spec, total, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&run.id)
            .bind(&run.name)
            .bind(&run.dataset_id)
            .bind(&run.status)
            .bind(serde_json::to_string(&run.spec).unwrap_or_default())
            .bind(run.total)
            .bind(run.created_at_ms)
            .bind(&run.created_by)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn run(&self, id: &str) -> StoreResult<Option<Run>> {
        on_db!(&self.db, |pool: Db| {
            let row = sqlx::query("SELECT * FROM eval_runs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().and_then(|r| run_of!(r)))
        })
    }

    /// The latest runs, newest first.
    pub async fn runs(&self, limit: i64) -> StoreResult<Vec<Run>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query(
                "SELECT * FROM eval_runs ORDER BY created_at_ms DESC, id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().filter_map(|r| run_of!(r)).collect())
        })
    }

    /// Moves a run to `status`; `started`/`finished` stamp the times (a start only the first
    /// time), `error` says why it stopped.
    pub async fn set_status(
        &self,
        id: &str,
        status: &str,
        started_at_ms: Option<i64>,
        finished_at_ms: Option<i64>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query(
                // A resumed run keeps when it first started.
                "UPDATE eval_runs SET status = $1, started_at_ms = COALESCE(started_at_ms, $2), \
                 finished_at_ms = $3, error = $4 WHERE id = $5",
            )
            .bind(status)
            .bind(started_at_ms)
            .bind(finished_at_ms)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Moves `running` (and `queued`) runs to `interrupted`: called at start. With `stale_before`
    /// (a store replicas share), only the runs whose replica has not said it is running them
    /// since then; else every one, since no run can be running yet. Returns how many there were.
    pub async fn interrupt_unfinished(&self, stale_before: Option<i64>) -> StoreResult<u64> {
        on_db!(&self.db, |pool: Db| {
            let done = sqlx::query(
                "UPDATE eval_runs SET status = 'interrupted' WHERE status IN ('running', 'queued') \
                 AND ($1 IS NULL OR COALESCE(heartbeat_ms, created_at_ms) < $1)",
            )
            .bind(stale_before)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Says that this replica is running `id` still.
    pub async fn heartbeat(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query("UPDATE eval_runs SET heartbeat_ms = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn put_result(&self, run_id: &str, r: &ItemResult) -> StoreResult<()> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query(
                "INSERT INTO eval_run_items (run_id, target, position, item_id, output, scores, passed, \
                 latency_ms, input_tokens, output_tokens, cost_nanos, judge_cost_nanos, error_code, error, \
                 request_id, finished_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                 ON CONFLICT (run_id, target, position) DO UPDATE SET item_id = excluded.item_id, \
                 output = excluded.output, scores = excluded.scores, passed = excluded.passed, \
                 latency_ms = excluded.latency_ms, input_tokens = excluded.input_tokens, \
                 output_tokens = excluded.output_tokens, cost_nanos = excluded.cost_nanos, \
                 judge_cost_nanos = excluded.judge_cost_nanos, error_code = excluded.error_code, \
                 error = excluded.error, request_id = excluded.request_id, \
                 finished_at_ms = excluded.finished_at_ms",
            )
            .bind(run_id)
            .bind(r.target as i64)
            .bind(r.position)
            .bind(&r.item_id)
            .bind(&r.output)
            .bind(serde_json::to_string(&r.scores).unwrap_or_default())
            .bind(r.passed)
            .bind(r.latency_ms)
            .bind(r.input_tokens)
            .bind(r.output_tokens)
            .bind(r.cost_nanos)
            .bind(r.judge_cost_nanos)
            .bind(&r.error_code)
            .bind(&r.error)
            .bind(&r.request_id)
            .bind(r.finished_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Results of a run, by target then position; `target` narrows to one target.
    pub async fn results(
        &self,
        run_id: &str,
        target: Option<usize>,
    ) -> StoreResult<Vec<ItemResult>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query(
                "SELECT * FROM eval_run_items WHERE run_id = $1 AND ($2 IS NULL OR target = $2) \
                 ORDER BY target, position",
            )
            .bind(run_id)
            .bind(target.map(|t| t as i64))
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let scores: String = r.try_get("scores").ok()?;
                    Some(ItemResult {
                        target: usize::try_from(r.try_get::<i64, _>("target").ok()?).ok()?,
                        position: r.try_get("position").ok()?,
                        item_id: r.try_get("item_id").ok()?,
                        output: r.try_get("output").ok().flatten(),
                        scores: serde_json::from_str(&scores).ok()?,
                        passed: r.try_get("passed").unwrap_or(false),
                        latency_ms: r.try_get("latency_ms").ok().flatten(),
                        input_tokens: r.try_get("input_tokens").ok().flatten(),
                        output_tokens: r.try_get("output_tokens").ok().flatten(),
                        cost_nanos: r.try_get("cost_nanos").ok().flatten(),
                        judge_cost_nanos: r.try_get("judge_cost_nanos").ok().flatten(),
                        error_code: r.try_get("error_code").ok().flatten(),
                        error: r.try_get("error").ok().flatten(),
                        request_id: r.try_get("request_id").ok().flatten(),
                        finished_at_ms: r.try_get("finished_at_ms").unwrap_or(0),
                    })
                })
                .collect())
        })
    }

    /// `(target, position)` of every finished item of a run.
    pub async fn finished(&self, run_id: &str) -> StoreResult<HashSet<(usize, i64)>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query("SELECT target, position FROM eval_run_items WHERE run_id = $1")
                .bind(run_id)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let t: i64 = r.try_get(0).ok()?;
                    Some((usize::try_from(t).ok()?, r.try_get(1).ok()?))
                })
                .collect())
        })
    }

    pub async fn count_finished(&self, run_id: &str) -> StoreResult<i64> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query_scalar("SELECT COUNT(*) FROM eval_run_items WHERE run_id = $1")
                .bind(run_id)
                .fetch_one(pool)
                .await
        })
    }

    /// Forgets the results that ended in a request error, so a resume runs them again.
    pub async fn clear_errors(&self, run_id: &str) -> StoreResult<u64> {
        on_db!(&self.db, |pool: Db| {
            let done =
                sqlx::query("DELETE FROM eval_run_items WHERE run_id = $1 AND error IS NOT NULL")
                    .bind(run_id)
                    .execute(pool)
                    .await?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, created_at_ms: i64) -> Run {
        Run {
            id: id.into(),
            name: None,
            dataset_id: "ds".into(),
            status: "running".into(),
            spec: RunSpec {
                targets: vec![],
                scorers: vec![],
                concurrency: 1,
                params: serde_json::Map::new(),
            },
            total: 1,
            created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            heartbeat_at_ms: None,
            created_by: "test".into(),
            error: None,
        }
    }

    #[tokio::test]
    async fn only_runs_no_replica_has_vouched_for_lately_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let evals = EvalStore::new(store.db().clone());
        for id in ["alive", "silent", "old-beat"] {
            evals.create_run(&run(id, 1_000)).await.unwrap();
            evals
                .set_status(id, "running", Some(1_000), None, None)
                .await
                .unwrap();
        }
        // Resumed later: the run still started when it first did.
        evals
            .set_status("alive", "running", Some(9_000), None, None)
            .await
            .unwrap();
        assert_eq!(
            evals.run("alive").await.unwrap().unwrap().started_at_ms,
            Some(1_000)
        );
        evals.heartbeat("alive", 50_000).await.unwrap();
        evals.heartbeat("old-beat", 5_000).await.unwrap();
        assert_eq!(evals.interrupt_unfinished(Some(40_000)).await.unwrap(), 2);
        let status = |id: &'static str| {
            let evals = evals.clone();
            async move { evals.run(id).await.unwrap().unwrap().status }
        };
        assert_eq!(status("alive").await, "running");
        assert_eq!(status("silent").await, "interrupted");
        assert_eq!(status("old-beat").await, "interrupted");
        assert_eq!(
            evals.run("alive").await.unwrap().unwrap().heartbeat_at_ms,
            Some(50_000)
        );
        // Alone with its store, a starting gateway interrupts every unfinished run.
        assert_eq!(evals.interrupt_unfinished(None).await.unwrap(), 1);
        assert_eq!(status("alive").await, "interrupted");
    }
}

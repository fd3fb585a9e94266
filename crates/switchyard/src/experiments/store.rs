//! The experiment tables in the gateway's store: configuration versions and labels,
//! experiments, the change log and feedback, plus the experiment columns of the request
//! records. Every change (with its change-log and audit entries) is one transaction.

use sqlx::{QueryBuilder, Row};

use super::model::{ChangeEntry, ConfigVersion, Experiment, Feedback, FeedbackValue};
use crate::store::{AuditEntry, Db, Store, StoreResult, insert_audit, on_db};

/// The SQLite store's migration that adds the experiment tables and record columns.
pub const MIGRATION: &str = r#"
ALTER TABLE requests ADD COLUMN config_name TEXT;
ALTER TABLE requests ADD COLUMN config_version INTEGER;
ALTER TABLE requests ADD COLUMN experiment_id TEXT;
ALTER TABLE requests ADD COLUMN variant TEXT;
ALTER TABLE requests ADD COLUMN session_id TEXT;
CREATE INDEX requests_experiment ON requests (experiment_id, started_at_ms);
CREATE INDEX requests_session ON requests (session_id);
CREATE TABLE config_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE config_labels (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, label)
);
CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE changelog (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    description TEXT NOT NULL,
    diff TEXT NOT NULL
);
CREATE INDEX changelog_subject ON changelog (kind, subject, seq);
CREATE TABLE feedback (
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    num REAL,
    category TEXT,
    comment TEXT,
    actor TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    revisions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target_kind, target_id, metric, source)
);
"#;

/// The experiment tables in PostgreSQL (the record columns are in the store's first table).
pub const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE config_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE config_labels (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name, label)
);
CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE changelog (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    description TEXT NOT NULL,
    diff TEXT NOT NULL
);
CREATE INDEX changelog_subject ON changelog (kind, subject, seq);
CREATE TABLE feedback (
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    num DOUBLE PRECISION,
    category TEXT,
    comment TEXT,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    revisions BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (target_kind, target_id, metric, source)
);
"#;

/// Everything one change writes, together.
#[derive(Debug, Default)]
pub struct Mutation {
    pub versions: Vec<ConfigVersion>,
    /// `(config, label, version)` to set.
    pub labels: Vec<(String, String, u32)>,
    pub experiments: Vec<Experiment>,
    pub changes: Vec<ChangeEntry>,
    pub audit: Vec<AuditEntry>,
}

/// One request of an experiment, as the results need it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub variant: String,
    pub outcome: String,
    pub duration_ms: f64,
    pub cost_nanos: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// Who the request came from, each way an experiment may assign by: its customer, key and
    /// session.
    pub customer: Option<String>,
    pub key_id: Option<String>,
    pub session_id: Option<String>,
}

/// One feedback score joined to the variant of the request (or session) it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    pub variant: String,
    pub metric: String,
    pub value: FeedbackValue,
}

/// The experiment tables, over the gateway's store.
#[derive(Clone)]
pub struct ExperimentStore {
    store: Store,
}

fn value_columns(v: &FeedbackValue) -> (&'static str, Option<f64>, Option<&str>) {
    match v {
        FeedbackValue::Boolean(b) => ("boolean", Some(if *b { 1.0 } else { 0.0 }), None),
        FeedbackValue::Numeric(n) => ("numeric", Some(*n), None),
        FeedbackValue::Categorical(c) => ("categorical", None, Some(c.as_str())),
    }
}

fn value_of(kind: &str, num: Option<f64>, category: Option<String>) -> Option<FeedbackValue> {
    match kind {
        "boolean" => Some(FeedbackValue::Boolean(num? > 0.5)),
        "numeric" => Some(FeedbackValue::Numeric(num?)),
        "categorical" => Some(FeedbackValue::Categorical(category?)),
        _ => None,
    }
}

impl ExperimentStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn db(&self) -> &Db {
        self.store.db()
    }

    pub async fn versions(&self) -> StoreResult<Vec<ConfigVersion>> {
        let bodies: Vec<String> = on_db!(self.db(), |pool: Db| {
            let rows = sqlx::query("SELECT body FROM config_versions ORDER BY name, version")
                .fetch_all(pool)
                .await?;
            rows.iter().filter_map(|r| r.try_get(0).ok()).collect()
        });
        Ok(bodies
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect())
    }

    pub async fn labels(&self) -> StoreResult<Vec<(String, String, u32)>> {
        on_db!(self.db(), |pool: Db| {
            let rows = sqlx::query("SELECT name, label, version FROM config_labels")
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some((
                        r.try_get(0).ok()?,
                        r.try_get(1).ok()?,
                        u32::try_from(r.try_get::<i64, _>(2).ok()?).ok()?,
                    ))
                })
                .collect())
        })
    }

    pub async fn experiments(&self) -> StoreResult<Vec<Experiment>> {
        let bodies: Vec<String> = on_db!(self.db(), |pool: Db| {
            let rows = sqlx::query("SELECT body FROM experiments ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter().filter_map(|r| r.try_get(0).ok()).collect()
        });
        Ok(bodies
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect())
    }

    /// The newest change-log entry's number (0 for none).
    pub async fn last_change(&self) -> StoreResult<i64> {
        on_db!(self.db(), |pool: Db| {
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM changelog")
                .fetch_one(pool)
                .await
        })
    }

    /// Writes a whole change in one transaction: versions, labels, experiments, change-log and
    /// audit entries. A version that already exists fails the whole change.
    pub async fn apply(&self, m: &Mutation) -> StoreResult<()> {
        on_db!(self.db(), |pool: Db| {
            let mut tx = pool.begin().await?;
            for v in &m.versions {
                sqlx::query(
                    "INSERT INTO config_versions (name, version, body) VALUES ($1, $2, $3)",
                )
                .bind(&v.name)
                .bind(i64::from(v.version))
                .bind(serde_json::to_string(v).unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            }
            for (name, label, version) in &m.labels {
                sqlx::query(
                    "INSERT INTO config_labels (name, label, version) VALUES ($1, $2, $3) \
                     ON CONFLICT (name, label) DO UPDATE SET version = excluded.version",
                )
                .bind(name)
                .bind(label)
                .bind(i64::from(*version))
                .execute(&mut *tx)
                .await?;
            }
            for e in &m.experiments {
                sqlx::query(
                    "INSERT INTO experiments (id, body) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                )
                .bind(&e.id)
                .bind(serde_json::to_string(e).unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            }
            for c in &m.changes {
                sqlx::query(
                    "INSERT INTO changelog (at_ms, actor, action, kind, subject, description, diff) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(c.at_ms)
                .bind(&c.actor)
                .bind(&c.action)
                .bind(&c.kind)
                .bind(&c.subject)
                .bind(&c.description)
                .bind(c.diff.to_string())
                .execute(&mut *tx)
                .await?;
            }
            for a in &m.audit {
                insert_audit!(tx, a)?;
            }
            tx.commit().await
        })
    }

    /// Change-log entries, newest first, optionally of one kind and subject.
    pub async fn changelog(
        &self,
        kind: Option<&str>,
        subject: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ChangeEntry>> {
        on_db!(self.db(), |pool: Db| {
            let mut q: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT seq, at_ms, actor, action, kind, subject, description, diff FROM changelog WHERE 1=1",
            );
            if let Some(k) = kind {
                q.push(" AND kind = ").push_bind(k.to_owned());
            }
            if let Some(s) = subject {
                q.push(" AND subject = ").push_bind(s.to_owned());
            }
            q.push(" ORDER BY seq DESC LIMIT ")
                .push_bind(i64::from(limit.clamp(1, 1000)));
            let rows = q.build().fetch_all(pool).await?;
            Ok(rows
                .iter()
                .map(|r| ChangeEntry {
                    seq: r.try_get(0).unwrap_or(0),
                    at_ms: r.try_get(1).unwrap_or(0),
                    actor: r.try_get(2).unwrap_or_default(),
                    action: r.try_get(3).unwrap_or_default(),
                    kind: r.try_get(4).unwrap_or_default(),
                    subject: r.try_get(5).unwrap_or_default(),
                    description: r.try_get(6).unwrap_or_default(),
                    diff: r
                        .try_get::<String, _>(7)
                        .ok()
                        .and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or_default(),
                })
                .collect())
        })
    }

    /// Stores a score, replacing the one with the same target, metric and source. Returns
    /// whether one was replaced.
    pub async fn put_feedback(&self, f: &Feedback) -> StoreResult<bool> {
        let (kind, num, category) = value_columns(&f.value);
        // One statement, so concurrent posts never hold a read lock they must upgrade.
        let revisions: i64 = on_db!(self.db(), |pool: Db| {
            sqlx::query_scalar(
                "INSERT INTO feedback (target_kind, target_id, metric, source, kind, num, category, comment, actor, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (target_kind, target_id, metric, source) DO UPDATE SET kind = excluded.kind, \
                 num = excluded.num, category = excluded.category, comment = excluded.comment, \
                 actor = excluded.actor, at_ms = excluded.at_ms, revisions = feedback.revisions + 1 \
                 RETURNING revisions",
            )
            .bind(f.target.kind())
            .bind(f.target.id())
            .bind(&f.metric)
            .bind(&f.source)
            .bind(kind)
            .bind(num)
            .bind(category)
            .bind(&f.comment)
            .bind(&f.actor)
            .bind(f.at_ms)
            .fetch_one(pool)
            .await?
        });
        Ok(revisions > 0)
    }

    /// The calling keys of a session's requests and the experiments that assigned them, one
    /// pair each (empty when the session has none).
    pub async fn session_keys(
        &self,
        session_id: &str,
    ) -> StoreResult<Vec<(Option<String>, Option<String>)>> {
        on_db!(self.db(), |pool: Db| {
            let rows = sqlx::query(
                "SELECT DISTINCT key_id, experiment_id FROM requests WHERE session_id = $1",
            )
            .bind(session_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.try_get::<Option<String>, _>(0).ok().flatten(),
                        r.try_get::<Option<String>, _>(1).ok().flatten(),
                    )
                })
                .collect())
        })
    }

    /// The requests an experiment assigned within a time window.
    pub async fn requests(
        &self,
        experiment_id: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> StoreResult<Vec<RequestRow>> {
        on_db!(self.db(), |pool: Db| {
            let mut q: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT variant, outcome, duration_ms, cost_nanos, input_tokens, output_tokens, customer, key_id, session_id FROM requests WHERE experiment_id = ",
            );
            q.push_bind(experiment_id.to_owned());
            window_on(&mut q, "", since_ms, until_ms);
            let rows = q.build().fetch_all(pool).await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some(RequestRow {
                        variant: r.try_get(0).ok()?,
                        outcome: r.try_get(1).ok()?,
                        duration_ms: r.try_get(2).ok()?,
                        cost_nanos: r.try_get(3).ok()?,
                        input_tokens: r.try_get(4).ok()?,
                        output_tokens: r.try_get(5).ok()?,
                        customer: r.try_get(6).ok()?,
                        key_id: r.try_get(7).ok()?,
                        session_id: r.try_get(8).ok()?,
                    })
                })
                .collect())
        })
    }

    /// Feedback on an experiment's requests (and on sessions it assigned), with the variant of
    /// what it is about, for requests within the window.
    pub async fn feedback(
        &self,
        experiment_id: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> StoreResult<Vec<FeedbackRow>> {
        on_db!(self.db(), |pool: Db| {
            // One sample per request (or session) and metric, whatever the number of sources
            // that scored it: the latest of them (ties by source name). Each source's value
            // counted on its own would make one answer several independent observations.
            const LATEST: &str = " AND NOT EXISTS (SELECT 1 FROM feedback g WHERE \
                 g.target_kind = f.target_kind AND g.target_id = f.target_id AND \
                 g.metric = f.metric AND (g.at_ms > f.at_ms OR (g.at_ms = f.at_ms AND \
                 g.source > f.source)))";
            let mut q: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT r.variant, f.metric, f.kind, f.num, f.category FROM feedback f JOIN requests r \
                 ON f.target_kind = 'request' AND r.id = f.target_id WHERE r.experiment_id = ",
            );
            q.push_bind(experiment_id.to_owned());
            window_on(&mut q, "r.", since_ms, until_ms);
            q.push(LATEST);
            // A session counts once per metric, under the variant its requests got.
            q.push(
                " UNION ALL SELECT s.variant, f.metric, f.kind, f.num, f.category FROM feedback f JOIN \
                 (SELECT session_id, MIN(variant) AS variant FROM requests WHERE experiment_id = ",
            );
            q.push_bind(experiment_id.to_owned());
            window_on(&mut q, "", since_ms, until_ms);
            q.push(
                " AND session_id IS NOT NULL GROUP BY session_id) s \
                 ON f.target_kind = 'session' AND s.session_id = f.target_id WHERE 1 = 1",
            );
            q.push(LATEST);
            let rows = q.build().fetch_all(pool).await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let kind: String = r.try_get(2).ok()?;
                    Some(FeedbackRow {
                        variant: r.try_get(0).ok()?,
                        metric: r.try_get(1).ok()?,
                        value: value_of(&kind, r.try_get(3).ok()?, r.try_get(4).ok()?)?,
                    })
                })
                .collect())
        })
    }
}

/// Narrows `q` to records started within the window (`prefix` names the records' table).
fn window_on<DB: sqlx::Database>(
    q: &mut QueryBuilder<DB>,
    prefix: &str,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if let Some(v) = since_ms {
        q.push(format!(" AND {prefix}started_at_ms >= "))
            .push_bind(v);
    }
    if let Some(v) = until_ms {
        q.push(format!(" AND {prefix}started_at_ms < "))
            .push_bind(v);
    }
}

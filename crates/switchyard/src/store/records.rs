//! Request records: the batched writer's insert, and the reads of the query API, the spend
//! reports and the ledgers' starting points.

use sqlx::{QueryBuilder, Row};

use super::{
    Bucket, Dialect, RecordStore, RequestFilter, SpendColumn, SpendGroup, SpendRow, Store,
    StoreResult, on_db, texts,
};
use crate::telemetry::record::RequestRecord;

impl Store {
    pub async fn get(&self, id: &str) -> StoreResult<Option<RequestRecord>> {
        Ok(on_db!(&self.db, |pool: Db| {
            let body: Option<<Db as Dialect>::StoredBody> =
                sqlx::query_scalar("SELECT body FROM requests WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
            Db::records_of(pool, body.into_iter().collect())
                .await?
                .pop()
        }))
    }

    pub async fn count(&self) -> StoreResult<i64> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query_scalar("SELECT COUNT(*) FROM requests")
                .fetch_one(pool)
                .await
        })
    }

    pub async fn query(&self, f: &RequestFilter) -> StoreResult<Vec<RequestRecord>> {
        Ok(on_db!(&self.db, |pool: Db| {
            let mut q: QueryBuilder<Db> = QueryBuilder::new("SELECT body FROM requests WHERE 1=1");
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
                q.push(" AND ");
                Db::push_tag(&mut q, name);
                q.push(" = ").push_bind(value.clone());
            }
            if let Some(id) = &f.before_id {
                q.push(" AND id < ").push_bind(id.clone());
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(f.limit.clamp(1, 1000)));
            let bodies = q.build_query_scalar().fetch_all(pool).await?;
            Db::records_of(pool, bodies).await?
        }))
    }

    pub async fn spend(
        &self,
        group: &SpendGroup,
        bucket: Bucket,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> StoreResult<Vec<SpendRow>> {
        on_db!(&self.db, |pool: Db| {
            let mut q: QueryBuilder<Db> = QueryBuilder::new("SELECT ");
            match group {
                SpendGroup::Key => _ = q.push("key_id"),
                SpendGroup::Team => _ = q.push("team"),
                SpendGroup::Org => _ = q.push("org"),
                SpendGroup::Customer => _ = q.push("customer"),
                SpendGroup::Alias => _ = q.push("alias"),
                SpendGroup::Deployment => _ = q.push("deployment"),
                SpendGroup::Tag(name) => Db::push_tag(&mut q, name),
            };
            q.push(" AS grp, ").push(Db::bucket_start(bucket)).push(
                " AS bucket, COUNT(*), CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM requests WHERE 1=1",
            );
            if let Some(v) = since_ms {
                q.push(" AND started_at_ms >= ").push_bind(v);
            }
            if let Some(v) = until_ms {
                q.push(" AND started_at_ms < ").push_bind(v);
            }
            q.push(" GROUP BY grp, bucket ORDER BY bucket, grp");
            let rows = q.build().fetch_all(pool).await?;
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
        })
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
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM requests WHERE key_id = $1 AND started_at_ms >= $2"
            }
            SpendColumn::Team => {
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM requests WHERE team = $1 AND started_at_ms >= $2"
            }
            SpendColumn::Org => {
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM requests WHERE org = $1 AND started_at_ms >= $2"
            }
            SpendColumn::Customer => {
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM requests WHERE customer = $1 AND started_at_ms >= $2"
            }
        };
        on_db!(&self.db, |pool: Db| {
            sqlx::query_scalar(sql)
                .bind(id)
                .bind(since_ms)
                .fetch_one(pool)
                .await
        })
    }
}

/// Rows of the multi-row statements a batch of records is written with: as many of the largest
/// as fit, then the rest by halves, so any batch takes a few statements (each a round trip to
/// the database) of five sizes only. Each size is prepared once per connection and kept, so its
/// memory is taken once; statements sized to each batch were parsed anew every time and took
/// memory that followed the largest batch so far (a stall of the writer made a batch of
/// hundreds of records and raised it for good).
pub(super) const STATEMENT_ROWS: [usize; 5] = [16, 8, 4, 2, 1];

/// The columns a record is written to, in the order its values are bound.
pub(super) const RECORD_COLUMNS: &str = "id, started_at_ms, requested_model, alias, deployment, provider, key_id, \
    team, org, customer, status, outcome, error_code, stream, duration_ms, input_tokens, output_tokens, \
    cost_nanos, tags, body, config_name, config_version, experiment_id, variant, session_id";

/// The `INSERT` of `STATEMENT_ROWS[size]` records, written once for the process: built per
/// batch, its few hundred placeholders and separators went through the query builder's
/// formatting one by one, about a third of the writer's own work per record. Replays after a
/// sink outage may repeat records: the id makes that harmless.
fn insert_statement<D: Dialect>(size: usize) -> &'static str {
    fn statements(anonymous: bool, (insert, ignoring): (&str, &str)) -> Vec<String> {
        let columns = RECORD_COLUMNS.split(',').count();
        STATEMENT_ROWS
            .iter()
            .map(|&rows| {
                let values: Vec<String> = (0..rows)
                    .map(|row| {
                        let params: Vec<String> = (1..=columns)
                            .map(|c| match anonymous {
                                true => "?".to_owned(),
                                false => format!("${}", row * columns + c),
                            })
                            .collect();
                        format!("({})", params.join(", "))
                    })
                    .collect();
                format!(
                    "{insert} requests ({RECORD_COLUMNS}) VALUES {}{ignoring}",
                    values.join(", ")
                )
            })
            .collect()
    }
    static SQLITE: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        statements(
            sqlx::Sqlite::ANONYMOUS_PARAMETERS,
            sqlx::Sqlite::INSERT_IGNORING,
        )
    });
    static POSTGRES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        statements(
            sqlx::Postgres::ANONYMOUS_PARAMETERS,
            sqlx::Postgres::INSERT_IGNORING,
        )
    });
    if D::ANONYMOUS_PARAMETERS {
        &SQLITE[size]
    } else {
        &POSTGRES[size]
    }
}

impl RecordStore for Store {
    async fn insert(&self, records: &[RequestRecord]) -> StoreResult<()> {
        // Each database's writing is boxed: the two together make a large future, and the
        // writer moves this one into a timeout for every batch.
        on_db!(&self.records, |pool: Db| Box::pin(async move {
            let mut tx = pool.begin().await?;
            let mut texts = texts::Pending::new();
            let mut rest = records;
            while let Some(size) = STATEMENT_ROWS.iter().position(|&rows| rows <= rest.len()) {
                let (chunk, tail) = rest.split_at(STATEMENT_ROWS[size]);
                rest = tail;
                let bodies = Db::store_bodies(&mut tx, &self.texts, &mut texts, chunk).await?;
                let mut insert = sqlx::query::<Db>(insert_statement::<Db>(size));
                for (r, body) in chunk.iter().zip(bodies) {
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
                        .bind(body)
                        .bind(&r.config_name)
                        .bind(r.config_version.map(i64::from))
                        .bind(&r.experiment_id)
                        .bind(&r.variant)
                        .bind(&r.session_id);
                }
                // Kept prepared: one statement per size in `STATEMENT_ROWS` and connection.
                insert.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            self.texts.remember(texts);
            Ok(())
        })
        .await)
    }
}

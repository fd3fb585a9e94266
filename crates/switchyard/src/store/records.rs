//! Request records: the batched writer's insert, and the reads of the query API, the spend
//! reports and the ledgers' starting points.

use sqlx::{Connection, PgPool, Postgres, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use super::{
    Bucket, Db, Dialect, RecordStore, RequestFilter, SpendColumn, SpendGroup, SpendRow, Store,
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
            if let Some(deployment) = &f.failed_deployment {
                q.push(format!(" AND {}(failed_deployments, ", Db::FIND))
                    .push_bind(format!("|{deployment}|"))
                    .push(") > 0");
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
            // The master key's requests are metered by no budget, a customer's included: its
            // ledger never counted them live, so it does not after a restart either.
            SpendColumn::Customer => {
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM requests WHERE customer = $1 AND key_id IS DISTINCT FROM 'master' AND started_at_ms >= $2"
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

/// The columns a record is written to, in the order its values are bound.
pub(super) const RECORD_COLUMNS: &str = "id, started_at_ms, requested_model, alias, deployment, provider, key_id, \
    team, org, customer, status, outcome, error_code, stream, duration_ms, input_tokens, output_tokens, \
    cost_nanos, tags, body, config_name, config_version, experiment_id, variant, session_id, \
    failed_deployments";

/// Binds `$r`'s values, `$body` its stored body, to `$query`, in `RECORD_COLUMNS`' order.
macro_rules! bind_record {
    ($query:expr, $r:expr, $body:expr) => {{
        let r = $r;
        let tags = (!r.tags.is_empty()).then(|| serde_json::to_string(&r.tags).unwrap_or_default());
        $query
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
            .bind($body)
            .bind(&r.config_name)
            .bind(r.config_version.map(i64::from))
            .bind(&r.experiment_id)
            .bind(&r.variant)
            .bind(&r.session_id)
            .bind(failed_deployments(r))
    }};
}

/// The deployments whose attempts failed, `|a|b|`, for the `failed_deployment` filter; `None`
/// for the common request, none of whose attempts failed.
fn failed_deployments(r: &RequestRecord) -> Option<String> {
    let mut failed = r
        .attempts
        .iter()
        .filter(|a| a.error_class.is_some() && !a.cancelled)
        .peekable();
    failed.peek()?;
    let mut joined = String::from("|");
    for a in failed {
        if !joined.contains(&format!("|{}|", a.deployment)) {
            joined.push_str(&a.deployment);
            joined.push('|');
        }
    }
    Some(joined)
}

/// Records per statement on SQLite.
pub(super) const SQLITE_ROWS: usize = 32;

/// Rows of the statements a chunk of records is written with on SQLite: the fewest that hold
/// it. Every execution of a statement pays for all its rows, bound or not: SQLite clears each
/// of its parameters after it (twice: sqlx resets a statement before binding and after
/// running), runs through each row of its `VALUES`, and sqlx hashes its text to find it among
/// the prepared ones. With 32 rows of 25 parameters for the five records a window gathers at a
/// hundred requests a second, the clearing alone was some 6,000 instructions a record
/// (docs/PERFORMANCE.md, fifty-eighth round). Each size is prepared on the connection when first
/// used and kept: all six hold 228 KB of SQLite's memory, the one of 32 rows 99 KB of it.
const SQLITE_SIZES: [usize; 6] = [1, 2, 4, 8, 16, SQLITE_ROWS];

/// The statement that writes `rows` records (at most [`SQLITE_ROWS`]) on SQLite: the one of
/// [`SQLITE_SIZES`] that holds them. Outside a transaction it is one of its own (SQLite's
/// autocommit), so a batch of the few dozen records a window holds at a few hundred requests a
/// second is one message to the connection's thread and one answer back. sqlx hands every
/// statement to that thread and waits for its answer, `BEGIN` and `COMMIT` twice over (their
/// answers are acknowledged): a batch's transaction of five statements woke SQLite's thread
/// nine times and the runtime's as often (docs/PERFORMANCE.md, fifty-second round). Rows not
/// bound read as NULL, and rows whose id is NULL are left out. Anonymous parameters: SQLite
/// finds a named one's number by a walk through the statement's names, for every parameter
/// bound at every execution. `OR IGNORE` makes a replay after a sink outage harmless.
fn sqlite_insert(rows: usize) -> &'static str {
    static STATEMENTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let columns = RECORD_COLUMNS.split(',').count();
        let row = format!("({})", vec!["?"; columns].join(", "));
        SQLITE_SIZES
            .iter()
            .map(|&size| {
                format!(
                    "INSERT OR IGNORE INTO requests ({RECORD_COLUMNS}) SELECT * FROM (VALUES {}) \
                     WHERE column1 IS NOT NULL",
                    vec![row.as_str(); size].join(", ")
                )
            })
            .collect()
    });
    let size = SQLITE_SIZES
        .iter()
        .position(|&size| size >= rows)
        .unwrap_or(SQLITE_SIZES.len() - 1);
    &STATEMENTS[size]
}

/// Rows of the multi-row statements a batch of records is written with on PostgreSQL: as many
/// of the largest as fit, then the rest by halves, so any batch takes a few statements (each a
/// round trip to the database) of five sizes only, each prepared once per connection and kept.
/// Statements sized to each batch were parsed anew every time, and took memory that followed
/// the largest batch so far.
pub(super) const POSTGRES_ROWS: [usize; 5] = [16, 8, 4, 2, 1];

/// The `INSERT` of `POSTGRES_ROWS[size]` records, written once for the process: built per
/// batch, its few hundred placeholders and separators went through the query builder's
/// formatting one by one. Replays after a sink outage may repeat records: the id makes that
/// harmless.
fn postgres_insert(size: usize) -> &'static str {
    static STATEMENTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let columns = RECORD_COLUMNS.split(',').count();
        POSTGRES_ROWS
            .iter()
            .map(|&rows| {
                let values: Vec<String> = (0..rows)
                    .map(|row| {
                        let params: Vec<String> = (1..=columns)
                            .map(|c| format!("${}", row * columns + c))
                            .collect();
                        format!("({})", params.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO requests ({RECORD_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
                    values.join(", ")
                )
            })
            .collect()
    });
    &STATEMENTS[size]
}

impl Store {
    /// Writes `records` on SQLite, one statement per [`SQLITE_ROWS`] records (`sqlite_insert`).
    /// A batch one statement holds, with no long text to store, is that statement alone, a
    /// transaction of its own. Any other is one transaction with its new texts (`texts`): at
    /// full load, where batches hold hundreds of records, a commit per statement cost the
    /// SQLite thread some 40 % more a record, each commit writing out the right edges of the
    /// table and its indexes again.
    async fn insert_sqlite(&self, pool: &SqlitePool, records: &[RequestRecord]) -> StoreResult<()> {
        let mut chunks = records.chunks(SQLITE_ROWS);
        let Some(mut chunk) = chunks.next() else {
            return Ok(());
        };
        let mut conn = pool.acquire().await?;
        let mut bodies = texts::Bodies::of(&self.texts, chunk);
        if records.len() <= SQLITE_ROWS && !bodies.has_new_texts() {
            return insert_rows(&mut conn, chunk, bodies).await;
        }
        let mut tx = conn.begin().await?;
        let mut stored = texts::Pending::new();
        loop {
            bodies.store_new_texts(&mut tx, &mut stored).await?;
            insert_rows(&mut tx, chunk, bodies).await?;
            let Some(next) = chunks.next() else {
                break;
            };
            chunk = next;
            bodies = texts::Bodies::of(&self.texts, chunk);
        }
        tx.commit().await?;
        self.texts.remember(stored);
        Ok(())
    }
}

/// Writes up to [`SQLITE_ROWS`] records, with their bodies as stored, in one statement.
async fn insert_rows(
    conn: &mut SqliteConnection,
    records: &[RequestRecord],
    bodies: texts::Bodies<'_>,
) -> StoreResult<()> {
    let mut insert = sqlx::query::<Sqlite>(sqlite_insert(records.len()));
    for (r, body) in records.iter().zip(bodies.into_stored()) {
        insert = bind_record!(insert, r, body);
    }
    insert.execute(conn).await?;
    Ok(())
}

/// Writes `records` on PostgreSQL in one transaction.
async fn insert_postgres(pool: &PgPool, records: &[RequestRecord]) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let mut rest = records;
    while let Some(size) = POSTGRES_ROWS.iter().position(|&rows| rows <= rest.len()) {
        let (chunk, tail) = rest.split_at(POSTGRES_ROWS[size]);
        rest = tail;
        let mut insert = sqlx::query::<Postgres>(postgres_insert(size));
        for (i, r) in chunk.iter().enumerate() {
            crate::telemetry::recorder::give_way(i);
            insert = bind_record!(insert, r, r.to_json());
        }
        // Kept prepared: one statement per size in `POSTGRES_ROWS` and connection.
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await
}

impl RecordStore for Store {
    async fn insert(&self, records: &[RequestRecord]) -> StoreResult<()> {
        // Each database's writing is boxed: the two together make a large future, and the
        // writer moves this one into a timeout for every batch.
        match &self.records {
            Db::Sqlite(pool) => Box::pin(self.insert_sqlite(pool, records)).await,
            Db::Postgres(pool) => Box::pin(insert_postgres(pool, records)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_written_by_the_fewest_rows_that_hold_it() {
        let rows_of = |sql: &str| sql.matches("(?").count();
        assert_eq!(SQLITE_SIZES.last(), Some(&SQLITE_ROWS));
        let mut sizes_used = std::collections::BTreeSet::new();
        for n in 1..=SQLITE_ROWS {
            let rows = rows_of(sqlite_insert(n));
            assert!(rows >= n, "{n} records in {rows} rows");
            assert!(
                SQLITE_SIZES.iter().all(|&size| size >= rows || size < n),
                "{n} records in {rows} rows, a smaller statement holds them"
            );
            sizes_used.insert(rows);
        }
        assert_eq!(sizes_used.into_iter().collect::<Vec<_>>(), SQLITE_SIZES);
        let columns = RECORD_COLUMNS.split(',').count();
        assert_eq!(
            sqlite_insert(SQLITE_ROWS).matches('?').count(),
            SQLITE_ROWS * columns
        );
    }
}

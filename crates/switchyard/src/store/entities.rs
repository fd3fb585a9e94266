//! Entities (keys, teams, orgs, customers), provider credentials and the audit log of who
//! changed them.

use sqlx::Row;

use super::{Store, StoreResult, on_db};

/// Appends an audit entry inside the transaction `$tx` (of either database).
macro_rules! insert_audit {
    ($tx:expr, $audit:expr) => {{
        let audit: &$crate::store::AuditEntry = $audit;
        sqlx::query(
            "INSERT INTO audit (at_ms, actor, action, kind, entity_id, before, after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(audit.at_ms)
        .bind(&audit.actor)
        .bind(&audit.action)
        .bind(&audit.kind)
        .bind(&audit.entity_id)
        .bind(audit.before.as_ref().map(|v| v.to_string()))
        .bind(audit.after.as_ref().map(|v| v.to_string()))
        .execute(&mut *$tx)
        .await
    }};
}
pub(crate) use insert_audit;

impl Store {
    /// Every stored entity of every kind: `(kind, id, body)`.
    pub async fn entities(&self) -> StoreResult<Vec<(String, String, String)>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query("SELECT kind, id, body FROM entities")
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?)))
                .collect())
        })
    }

    /// Writes (or replaces) an entity and its audit entry in one transaction.
    pub async fn put_entity(
        &self,
        kind: &str,
        id: &str,
        body: Option<&str>,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        on_db!(&self.db, |pool: Db| {
            let mut tx = pool.begin().await?;
            match body {
                Some(b) => {
                    sqlx::query(
                        "INSERT INTO entities (kind, id, body) VALUES ($1, $2, $3) \
                         ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                    )
                    .bind(kind)
                    .bind(id)
                    .bind(b)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM entities WHERE kind = $1 AND id = $2")
                        .bind(kind)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            insert_audit!(tx, audit)?;
            tx.commit().await
        })
    }

    /// Audit entries, newest first: at most `limit`, those before entry `before` (a number a
    /// previous page gave) when given. Each with its number.
    pub async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<(i64, AuditEntry)>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query(
                "SELECT seq, at_ms, actor, action, kind, entity_id, before, after FROM audit \
                 WHERE seq < $2 ORDER BY seq DESC LIMIT $1",
            )
            .bind(i64::from(limit.clamp(1, 1000)))
            .bind(before.unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
            let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.try_get(0).unwrap_or(0),
                        AuditEntry {
                            at_ms: r.try_get(1).unwrap_or(0),
                            actor: r.try_get(2).unwrap_or_default(),
                            action: r.try_get(3).unwrap_or_default(),
                            kind: r.try_get(4).unwrap_or_default(),
                            entity_id: r.try_get(5).unwrap_or_default(),
                            before: json(r.try_get(6).ok().flatten()),
                            after: json(r.try_get(7).ok().flatten()),
                        },
                    )
                })
                .collect())
        })
    }

    /// The newest audit entry's number (0 for none): every change through the admin API writes
    /// one, so replicas sharing the store poll it to learn that something changed.
    pub async fn last_change(&self) -> StoreResult<i64> {
        on_db!(&self.db, |pool: Db| {
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM audit")
                .fetch_one(pool)
                .await
        })
    }

    /// Every stored credential (still encrypted).
    pub async fn credentials(&self) -> StoreResult<Vec<StoredCredential>> {
        on_db!(&self.db, |pool: Db| {
            let rows = sqlx::query(
                "SELECT name, envelope, hint, description, created_at_ms, updated_at_ms \
                 FROM credentials ORDER BY name",
            )
            .fetch_all(pool)
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
        })
    }

    /// Writes (or, with `None`, deletes) the credential `name` and its audit entry (when given)
    /// in one transaction.
    pub async fn put_credential(
        &self,
        name: &str,
        record: Option<&StoredCredential>,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        on_db!(&self.db, |pool: Db| {
            let mut tx = pool.begin().await?;
            match record {
                Some(c) => {
                    sqlx::query(
                        "INSERT INTO credentials (name, envelope, hint, description, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
                         envelope = excluded.envelope, hint = excluded.hint, \
                         description = excluded.description, created_at_ms = excluded.created_at_ms, \
                         updated_at_ms = excluded.updated_at_ms",
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
                    sqlx::query("DELETE FROM credentials WHERE name = $1")
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            if let Some(audit) = audit {
                insert_audit!(tx, audit)?;
            }
            tx.commit().await
        })
    }
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

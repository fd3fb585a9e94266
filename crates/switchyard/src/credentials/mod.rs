//! Provider credentials managed through the admin API: stored encrypted ([`cipher`]) in the
//! store, decrypted once into an in-memory [`Vault`] that providers configured with
//! `credential: NAME` read on every attempt, so adding or rotating a credential takes effect
//! with the next request. The secret never leaves the vault except as the provider's auth
//! header: listings, audit entries, logs and errors show the name and a masked tail only.

pub mod cipher;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Secret;
use crate::store::{AuditEntry, Store, StoredCredential};
pub use cipher::{KEY_VAR, Keyring, OpenError, PREVIOUS_KEY_VAR};

/// 1–64 of `A–Z a–z 0–9 - _ .`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `…abcd` for secrets long enough that four characters reveal nothing useful; `…` otherwise.
pub fn hint_of(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 16 {
        return "…".into();
    }
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("…{tail}")
}

/// The decrypted credentials by name, or why one is unusable.
#[derive(Default)]
pub struct Vault {
    entries: ArcSwap<HashMap<String, Result<Arc<Secret>, String>>>,
}

impl Vault {
    /// The secret of `name`, or a message (without any secret) saying why there is none.
    pub fn get(&self, name: &str) -> Result<Arc<Secret>, String> {
        match self.entries.load().get(name) {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(why)) => Err(format!("the stored credential '{name}' is unusable: {why}")),
            None => Err(format!(
                "no credential named '{name}' is stored (add it with POST /admin/credentials)"
            )),
        }
    }

    fn status(&self, name: &str) -> Result<(), String> {
        match self.entries.load().get(name) {
            Some(Ok(_)) => Ok(()),
            Some(Err(why)) => Err(why.clone()),
            None => Err("not loaded".into()),
        }
    }

    fn set(&self, name: &str, entry: Option<Result<Arc<Secret>, String>>) {
        self.entries.rcu(|old| {
            let mut map = HashMap::clone(old);
            match entry.clone() {
                Some(e) => map.insert(name.to_owned(), e),
                None => map.remove(name),
            };
            map
        });
    }
}

/// A credential as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    pub name: String,
    pub hint: String,
    /// Master key the record is encrypted under.
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// `ready`, or why the gateway cannot use it (e.g. encrypted under another key).
    pub status: String,
    /// Providers in the configuration that use it.
    pub used_by: Vec<String>,
}

/// Why a credential change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "credential encryption is not configured: set {KEY_VAR} (32 random bytes, base64 or hex) and restart"
    )]
    NotConfigured,
    #[error("{0}")]
    Seal(String),
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
}

/// Credentials: the store, the master keys and the vault.
pub struct Credentials {
    store: Store,
    keyring: Option<Keyring>,
    vault: Arc<Vault>,
    /// Provider name → credential name, from the configuration.
    users: Vec<(String, String)>,
}

impl Credentials {
    /// Loads and decrypts every stored credential. Records under the previous master key are
    /// sealed again under the current one. One that cannot be opened stays stored and is
    /// reported (by name and reason) instead of failing the start.
    pub async fn load(
        store: Store,
        keyring: Option<Keyring>,
        users: Vec<(String, String)>,
    ) -> Result<Self, sqlx::Error> {
        let me = Self {
            store,
            keyring,
            vault: Arc::new(Vault::default()),
            users,
        };
        me.refresh().await?;
        Ok(me)
    }

    /// Reads every stored credential again and replaces the vault's entries: at start, and
    /// when another replica sharing the store changed one.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let mut map = HashMap::new();
        for record in self.store.credentials().await? {
            let entry = match &self.keyring {
                None => Err(format!(
                    "credential encryption is not configured ({KEY_VAR} is not set)"
                )),
                Some(ring) => match ring.open(&record.name, &record.envelope) {
                    Ok((secret, stale)) => {
                        if stale {
                            self.reseal(ring, &record, &secret).await?;
                        }
                        Ok(Arc::new(Secret::new(secret)))
                    }
                    Err(e) => Err(format!("cannot be decrypted: {e}")),
                },
            };
            if let Err(why) = &entry {
                tracing::error!(credential = %record.name, "stored credential unusable: {why}");
            }
            map.insert(record.name, entry);
        }
        for (provider, name) in &self.users {
            if !map.contains_key(name) {
                tracing::warn!(
                    provider = %provider, credential = %name,
                    "provider uses a credential that is not stored yet; its requests fail until it is added"
                );
            }
        }
        self.vault.entries.store(Arc::new(map));
        Ok(())
    }

    async fn reseal(
        &self,
        ring: &Keyring,
        record: &StoredCredential,
        secret: &str,
    ) -> Result<(), sqlx::Error> {
        let Ok(envelope) = ring.seal(&record.name, secret) else {
            return Ok(());
        };
        let updated = StoredCredential {
            envelope,
            ..record.clone()
        };
        self.store
            .put_credential(&record.name, Some(&updated), None)
            .await?;
        tracing::info!(credential = %record.name, key_id = ring.key_id(), "credential re-encrypted under the current key");
        Ok(())
    }

    pub fn vault(&self) -> Arc<Vault> {
        self.vault.clone()
    }

    pub fn configured(&self) -> bool {
        self.keyring.is_some()
    }

    fn view(&self, c: &StoredCredential) -> CredentialView {
        CredentialView {
            name: c.name.clone(),
            hint: c.hint.clone(),
            key_id: c.envelope.split(':').nth(1).unwrap_or_default().to_owned(),
            description: c.description.clone(),
            created_at_ms: c.created_at_ms,
            updated_at_ms: c.updated_at_ms,
            status: match self.vault.status(&c.name) {
                Ok(()) => "ready".into(),
                Err(why) => why,
            },
            used_by: self
                .users
                .iter()
                .filter(|(_, n)| *n == c.name)
                .map(|(p, _)| p.clone())
                .collect(),
        }
    }

    pub async fn list(&self) -> Result<Vec<CredentialView>, sqlx::Error> {
        Ok(self
            .store
            .credentials()
            .await?
            .iter()
            .map(|c| self.view(c))
            .collect())
    }

    pub async fn find(&self, name: &str) -> Result<Option<CredentialView>, sqlx::Error> {
        Ok(self
            .store
            .credentials()
            .await?
            .iter()
            .find(|c| c.name == name)
            .map(|c| self.view(c)))
    }

    /// Stores (or replaces) a credential with its audit entry, then puts it in the vault.
    /// Returns the view and whether it replaced an existing one.
    pub async fn put(
        &self,
        name: &str,
        secret: &str,
        description: Option<String>,
        actor: String,
        now_ms: i64,
    ) -> Result<(CredentialView, bool), ChangeError> {
        let ring = self.keyring.as_ref().ok_or(ChangeError::NotConfigured)?;
        let envelope = ring.seal(name, secret).map_err(ChangeError::Seal)?;
        let old = self.find(name).await?;
        let record = StoredCredential {
            name: name.to_owned(),
            envelope,
            hint: hint_of(secret),
            description: description.or_else(|| old.as_ref().and_then(|o| o.description.clone())),
            created_at_ms: old.as_ref().map_or(now_ms, |o| o.created_at_ms),
            updated_at_ms: now_ms,
        };
        let mut view = self.view(&record);
        view.status = "ready".into();
        let audit = AuditEntry {
            at_ms: now_ms,
            actor,
            action: if old.is_some() { "rotate" } else { "create" }.into(),
            kind: "credential".into(),
            entity_id: name.to_owned(),
            before: old.as_ref().map(audit_view),
            after: Some(audit_view(&view)),
        };
        self.store
            .put_credential(name, Some(&record), Some(&audit))
            .await?;
        self.vault
            .set(name, Some(Ok(Arc::new(Secret::new(secret.to_owned())))));
        Ok((view, old.is_some()))
    }

    /// Deletes a credential (with its audit entry); `false` when there was none.
    pub async fn delete(
        &self,
        name: &str,
        actor: String,
        now_ms: i64,
    ) -> Result<bool, ChangeError> {
        let Some(old) = self.find(name).await? else {
            return Ok(false);
        };
        let audit = AuditEntry {
            at_ms: now_ms,
            actor,
            action: "delete".into(),
            kind: "credential".into(),
            entity_id: name.to_owned(),
            before: Some(audit_view(&old)),
            after: None,
        };
        self.store.put_credential(name, None, Some(&audit)).await?;
        self.vault.set(name, None);
        Ok(true)
    }
}

/// What the audit log keeps of a credential: never the secret, nor its envelope.
fn audit_view(v: &CredentialView) -> serde_json::Value {
    serde_json::json!({
        "name": v.name,
        "hint": v.hint,
        "key_id": v.key_id,
        "description": v.description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hints() {
        assert!(valid_name("openai-prod.v2_eu"));
        for bad in ["", "has space", "colon:name", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(hint_of("sk-proj-0123456789abcdef"), "…cdef");
        assert_eq!(hint_of("short-key"), "…");
    }
}

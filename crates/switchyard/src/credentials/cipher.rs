//! AES-256-GCM envelopes for credentials at rest: `v1:KEY_ID:NONCE:CIPHERTEXT` (nonce and
//! ciphertext in standard base64, the GCM tag at the end of the ciphertext), a fresh random
//! 96-bit nonce per encryption, and the credential's name as associated data, so a record moved
//! to another name no longer decrypts. The key id names the master key (a keyed fingerprint of
//! it, never the key), so a record under a key that is not configured is told apart from a
//! damaged one, and a previous key can still be read during a rotation.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable holding the master key: 32 bytes, base64 or hex.
pub const KEY_VAR: &str = "SWITCHYARD_ENCRYPTION_KEY";
/// Optional previous master key, read-only, while records are re-encrypted after a rotation.
pub const PREVIOUS_KEY_VAR: &str = "SWITCHYARD_ENCRYPTION_KEY_PREVIOUS";

const VERSION: &str = "v1";

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The configured master keys: the current one encrypts, every one decrypts.
pub struct Keyring {
    current: MasterKey,
    previous: Option<MasterKey>,
}

/// Why an envelope did not open. Messages never contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the stored record is not a v1 envelope")]
    Malformed,
    #[error(
        "it was encrypted under key id {stored}, but the configured key has id {configured} (set {KEY_VAR} to the key it was stored with, or that key as {PREVIOUS_KEY_VAR} to re-encrypt)"
    )]
    UnknownKey { stored: String, configured: String },
    #[error(
        "it does not decrypt with the configured key {key_id} (the record was altered, or belongs to another name)"
    )]
    Failed { key_id: String },
}

/// A master key from its text form: 64 hex digits, or base64 of exactly 32 bytes.
fn parse_key(var: &str, text: &str) -> Result<MasterKey, String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    let bytes = bytes.filter(|b| b.len() == 32).ok_or_else(|| {
        format!(
            "{var} must be 32 random bytes written as 64 hex digits or as base64 (e.g. the output of `openssl rand -base64 32`)"
        )
    })?;
    let cipher =
        Aes256Gcm::new_from_slice(&bytes).map_err(|_| format!("{var}: not a 256-bit key"))?;
    Ok(MasterKey {
        id: key_id(&bytes),
        cipher,
    })
}

/// A short, keyed fingerprint naming a master key.
fn key_id(key: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"switchyard credential key id");
            hex::encode(&mac.finalize().into_bytes()[..4])
        }
        Err(_) => String::from("00000000"),
    }
}

impl Keyring {
    /// Reads the keys from `env`. `Ok(None)` when no key is set; an error when one is set but
    /// is not a 256-bit key.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(current) = env(KEY_VAR).filter(|v| !v.trim().is_empty()) else {
            if env(PREVIOUS_KEY_VAR).is_some_and(|v| !v.trim().is_empty()) {
                return Err(format!("{PREVIOUS_KEY_VAR} is set but {KEY_VAR} is not"));
            }
            return Ok(None);
        };
        let current = parse_key(KEY_VAR, &current)?;
        let previous = env(PREVIOUS_KEY_VAR)
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse_key(PREVIOUS_KEY_VAR, &v))
            .transpose()?
            .filter(|p| p.id != current.id);
        Ok(Some(Self { current, previous }))
    }

    /// Id of the key new records are encrypted with.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` for the credential `name`.
    pub fn seal(&self, name: &str, plaintext: &str) -> Result<String, String> {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        Ok(format!(
            "{VERSION}:{}:{}:{}",
            self.current.id,
            STANDARD.encode(nonce_bytes),
            STANDARD.encode(ciphertext)
        ))
    }

    /// Decrypts an envelope stored for `name`; also says whether it was under a previous key
    /// (so it should be sealed again under the current one).
    pub fn open(&self, name: &str, envelope: &str) -> Result<(String, bool), OpenError> {
        let mut parts = envelope.split(':');
        let (Some(VERSION), Some(id), Some(nonce), Some(ciphertext), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(OpenError::Malformed);
        };
        let key = if id == self.current.id {
            &self.current
        } else {
            match &self.previous {
                Some(p) if p.id == id => p,
                _ => {
                    return Err(OpenError::UnknownKey {
                        stored: id.to_owned(),
                        configured: self.current.id.clone(),
                    });
                }
            }
        };
        let nonce: [u8; 12] = STANDARD
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(OpenError::Malformed)?;
        let ciphertext = STANDARD
            .decode(ciphertext)
            .map_err(|_| OpenError::Malformed)?;
        let plaintext = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Failed {
                key_id: key.id.clone(),
            })?;
        let text = String::from_utf8(plaintext).map_err(|_| OpenError::Malformed)?;
        Ok((text, key.id != self.current.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, previous: Option<&str>) -> Keyring {
        let (c, p) = (current.to_owned(), previous.map(str::to_owned));
        Keyring::from_env(&move |v| match v {
            KEY_VAR => Some(c.clone()),
            PREVIOUS_KEY_VAR => p.clone(),
            _ => None,
        })
        .unwrap()
        .unwrap()
    }

    const A: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="; // 32 × 0x02

    #[test]
    fn seals_and_opens_with_the_name_as_associated_data() {
        let ring = ring(A, None);
        let sealed = ring.seal("openai-prod", "sk-live-123").unwrap();
        assert!(sealed.starts_with(&format!("v1:{}:", ring.key_id())));
        assert!(!sealed.contains("sk-live-123"));
        assert_eq!(
            ring.open("openai-prod", &sealed).unwrap(),
            ("sk-live-123".to_owned(), false)
        );
        assert_ne!(
            sealed,
            ring.seal("openai-prod", "sk-live-123").unwrap(),
            "a fresh nonce each time"
        );
        assert!(matches!(
            ring.open("other-name", &sealed),
            Err(OpenError::Failed { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.replace_range(tampered.len() - 3.., "AAA");
        assert!(ring.open("openai-prod", &tampered).is_err());
        assert_eq!(ring.open("x", "plain"), Err(OpenError::Malformed));
    }

    #[test]
    fn another_key_is_named_and_a_previous_one_still_opens() {
        let old = ring(A, None);
        let sealed = old.seal("n", "secret").unwrap();
        let other = ring(B, None);
        let e = other.open("n", &sealed).unwrap_err();
        assert!(matches!(e, OpenError::UnknownKey { .. }));
        assert!(e.to_string().contains(old.key_id()), "{e}");
        let rotating = ring(B, Some(A));
        assert_eq!(
            rotating.open("n", &sealed).unwrap(),
            ("secret".to_owned(), true)
        );
    }

    #[test]
    fn rejects_keys_of_the_wrong_size() {
        for bad in ["short", "AAAA", &A[..62]] {
            let bad = bad.to_owned();
            let r = Keyring::from_env(&move |v| (v == KEY_VAR).then(|| bad.clone()));
            let e = r.err().unwrap();
            assert!(e.contains(KEY_VAR), "{e}");
        }
        assert!(Keyring::from_env(&|_| None).unwrap().is_none());
    }
}

//! Responses API answers kept in memory, so that a client can refer to them: a request's
//! `previous_response_id` and `item_reference` items (brought in by
//! `switchyard_protocol::openai::kept_responses::bring_in`) and `GET`/`DELETE
//! /v1/responses/{id}`. Each is kept for `server.keep_responses_for` and only for the caller
//! that made it (its virtual key, or the master key); once they hold
//! `server.keep_responses_bytes`, the oldest go first. One process's memory: replicas do not
//! share them, and a restart forgets them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchyard_protocol::openai::kept_responses::Kept;

/// Who may read a kept response: the virtual key that made it, or `None` for the master key.
pub type Owner = Option<String>;

pub struct KeptResponses {
    keep_for: Option<Duration>,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    /// Ids in the order they were kept (each is kept once), with when each expires.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

struct Entry {
    kept: Kept,
    owner: Owner,
    expires: Instant,
}

impl Inner {
    /// Drops what has expired, then the oldest until `bytes` fit under `max`.
    fn trim(&mut self, now: Instant, max: usize) {
        while let Some((expires, id)) = self.order.front() {
            if *expires > now && self.bytes <= max {
                break;
            }
            let id = id.clone();
            self.order.pop_front();
            if let Some(entry) = self.by_id.remove(&id) {
                self.bytes -= entry.kept.request.len() + entry.kept.response.len();
            }
        }
    }
}

impl KeptResponses {
    pub fn new(keep_for: Option<Duration>, max_bytes: usize) -> Self {
        Self {
            keep_for,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether answers are kept at all.
    pub fn enabled(&self) -> bool {
        self.keep_for.is_some()
    }

    pub fn keep(&self, id: String, kept: Kept, owner: Owner) {
        let Some(keep_for) = self.keep_for else {
            return;
        };
        let size = kept.request.len() + kept.response.len();
        if size > self.max_bytes {
            return;
        }
        let now = Instant::now();
        let expires = now + keep_for;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.by_id.insert(
            id.clone(),
            Entry {
                kept,
                owner,
                expires,
            },
        ) {
            inner.bytes -= old.kept.request.len() + old.kept.response.len();
        }
        inner.bytes += size;
        inner.order.push_back((expires, id));
        inner.trim(now, self.max_bytes);
    }

    /// The response `id` if it is kept and `owner` made it.
    pub fn get(&self, id: &str, owner: &Owner) -> Option<Kept> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.trim(now, self.max_bytes);
        let entry = inner.by_id.get(id)?;
        (entry.owner == *owner && entry.expires > now).then(|| entry.kept.clone())
    }

    /// How many answers are kept, and the bytes they take (for `GET /metrics`).
    pub fn counts(&self) -> (u64, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.trim(Instant::now(), self.max_bytes);
        (inner.by_id.len() as u64, inner.bytes as u64)
    }

    /// Forgets the response `id` if `owner` made it; whether there was one.
    pub fn remove(&self, id: &str, owner: &Owner) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.by_id.get(id).is_none_or(|e| e.owner != *owner) {
            return false;
        }
        if let Some(entry) = inner.by_id.remove(id) {
            inner.bytes -= entry.kept.request.len() + entry.kept.response.len();
        }
        // Its place in `order` goes when it comes to the front.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kept(n: usize) -> Kept {
        Kept {
            request: Bytes::from(vec![b'x'; n]),
            response: Bytes::new(),
        }
    }

    #[test]
    fn a_response_is_kept_for_its_owner_until_it_expires_or_is_removed() {
        let store = KeptResponses::new(Some(Duration::from_millis(50)), 1 << 20);
        let alice: Owner = Some("key_a".into());
        store.keep("resp_1".into(), kept(10), alice.clone());
        assert!(store.get("resp_1", &alice).is_some());
        assert!(store.get("resp_1", &None).is_none(), "another caller");
        assert!(store.get("resp_1", &Some("key_b".into())).is_none());
        assert!(!store.remove("resp_1", &None));
        assert!(store.remove("resp_1", &alice));
        assert!(store.get("resp_1", &alice).is_none());
        store.keep("resp_2".into(), kept(10), alice.clone());
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.get("resp_2", &alice).is_none(), "expired");
        assert_eq!(store.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn the_oldest_go_first_beyond_the_memory_bound() {
        let store = KeptResponses::new(Some(Duration::from_secs(60)), 100);
        for i in 0..5 {
            store.keep(format!("resp_{i}"), kept(30), None);
        }
        let kept_ids: Vec<usize> = (0..5)
            .filter(|i| store.get(&format!("resp_{i}"), &None).is_some())
            .collect();
        assert_eq!(kept_ids, [2, 3, 4]);
        assert_eq!(store.counts(), (3, 90));
        // One larger than the whole bound is not kept, and evicts nothing.
        store.keep("huge".into(), kept(101), None);
        assert!(store.get("huge", &None).is_none());
        assert!(store.get("resp_4", &None).is_some());
        // Nothing is kept when keeping is off.
        let off = KeptResponses::new(None, 100);
        off.keep("resp_x".into(), kept(1), None);
        assert!(off.get("resp_x", &None).is_none());
    }
}

//! Responses API answers kept in memory, so that a client can refer to them: a request's
//! `previous_response_id` and `item_reference` items (brought in by
//! `switchyard_protocol::openai::kept_responses::bring_in`) and `GET`/`DELETE
//! /v1/responses/{id}`. Each is kept for `server.keep_responses_for` and only for the caller
//! that made it (its virtual key, or the master key); once they hold
//! `server.keep_responses_bytes`, the oldest go first. With `shared:`, each is also kept in Redis
//! for as long, so that a request referring to it may reach any replica: one that does not hold
//! it asks Redis before reading the request, and adopts what it finds. A restart forgets what
//! only one process held.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_protocol::openai::kept_responses::Kept;

use crate::governance::shared::Shared;

/// The longest single wait for a kept answer another replica is still writing (waits double
/// from 20 ms up to this).
const FETCH_PATIENCE: Duration = Duration::from_millis(160);

/// Who may read a kept response: the virtual key that made it, or `None` for the master key.
pub type Owner = Option<String>;

pub struct KeptResponses {
    keep_for: Option<Duration>,
    max_bytes: usize,
    inner: Mutex<Inner>,
    /// Where replicas keep them for each other, when configured.
    shared: Option<Arc<Shared>>,
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
    pub fn new(keep_for: Option<Duration>, max_bytes: usize, shared: Option<Arc<Shared>>) -> Self {
        Self {
            keep_for,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            shared,
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
        if let Some(shared) = &self.shared
            && kept.request.len() + kept.response.len() <= self.max_bytes
        {
            // Off the answer's path; a replica that cannot reach Redis still keeps its own copy.
            let (shared, id, value) = (shared.clone(), id.clone(), encode(&kept, &owner));
            tokio::spawn(async move {
                if let Err(e) = shared.kept_put(&id, value, keep_for).await {
                    tracing::warn!("cannot keep a response for the other replicas: {e}");
                }
            });
        }
        self.insert(id, kept, owner, keep_for);
    }

    fn insert(&self, id: String, kept: Kept, owner: Owner, keep_for: Duration) {
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

    /// With shared state, brings response `id` here from Redis when another replica kept it and
    /// this one does not hold it, and drops this replica's copy when a replica deleted it, so
    /// that `get` answers as every replica would. Quiet when Redis has nothing or cannot be
    /// reached (this replica's own copies then answer).
    pub async fn fetch(&self, id: &str) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut found = shared.kept_get(id).await;
        // The replica that answered writes it to Redis just after its answer went out: a client
        // quick to name it elsewhere may ask before it lands. A miss would fail the request, so
        // it waits a little for it (about a third of a second at most) before it does.
        let mut wait = Duration::from_millis(20);
        while matches!(found, Ok(None)) && !self.holds(id) && wait <= FETCH_PATIENCE {
            tokio::time::sleep(wait).await;
            wait *= 2;
            found = shared.kept_get(id).await;
        }
        match found {
            Ok(Some((value, _))) if value.is_empty() => {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = inner.by_id.remove(id) {
                    inner.bytes -= entry.kept.request.len() + entry.kept.response.len();
                }
            }
            Ok(Some((value, left))) if !left.is_zero() && !self.holds(id) => {
                if let Some((kept, owner)) = decode(&value) {
                    self.insert(id.to_owned(), kept, owner, left);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot read the responses other replicas kept: {e}"),
        }
    }

    fn holds(&self, id: &str) -> bool {
        let now = Instant::now();
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_id.get(id).is_some_and(|e| e.expires > now)
    }

    /// Forgets the response `id` if `owner` made it, here and (with shared state) for every
    /// replica; whether there was one.
    pub async fn forget(&self, id: &str, owner: &Owner) -> bool {
        self.fetch(id).await;
        let removed = self.remove(id, owner);
        if removed
            && let (Some(shared), Some(keep_for)) = (&self.shared, self.keep_for)
            && let Err(e) = shared.kept_delete(id, keep_for).await
        {
            tracing::warn!("cannot forget a response the other replicas keep: {e}");
        }
        removed
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

/// A kept response and its owner as one value for Redis: the owner (a flag, then its length and
/// bytes), the request's length and bytes, then the response.
fn encode(kept: &Kept, owner: &Owner) -> Vec<u8> {
    let owner = owner.as_deref().unwrap_or_default().as_bytes();
    let mut out = Vec::with_capacity(9 + owner.len() + kept.request.len() + kept.response.len());
    out.push(u8::from(!owner.is_empty()));
    out.extend_from_slice(&(owner.len() as u32).to_le_bytes());
    out.extend_from_slice(owner);
    out.extend_from_slice(&(kept.request.len() as u32).to_le_bytes());
    out.extend_from_slice(&kept.request);
    out.extend_from_slice(&kept.response);
    out
}

/// `encode`'s value read back; `None` for anything else.
fn decode(value: &[u8]) -> Option<(Kept, Owner)> {
    fn take<'a>(value: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = value.split_at_checked(n)?;
        *value = rest;
        Some(head)
    }
    fn length(value: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(value, 4)?.try_into().ok()?) as usize)
    }
    let mut rest = value;
    let has_owner = take(&mut rest, 1)?[0] == 1;
    let n = length(&mut rest)?;
    let owner = std::str::from_utf8(take(&mut rest, n)?).ok()?;
    let owner = has_owner.then(|| owner.to_owned());
    let n = length(&mut rest)?;
    let request = bytes::Bytes::copy_from_slice(take(&mut rest, n)?);
    let response = bytes::Bytes::copy_from_slice(rest);
    Some((Kept { request, response }, owner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_kept_response_and_its_owner_survive_the_trip_through_redis() {
        let kept = Kept {
            request: Bytes::from_static(br#"{"input":"hi"}"#),
            response: Bytes::from_static(br#"{"id":"resp_1"}"#),
        };
        for owner in [None, Some("key_a".to_owned())] {
            let (back, back_owner) = decode(&encode(&kept, &owner)).unwrap();
            assert_eq!(back.request, kept.request);
            assert_eq!(back.response, kept.response);
            assert_eq!(back_owner, owner);
        }
        let whole = encode(&kept, &Some("key_a".into()));
        for cut in 0..9 + 5 {
            assert!(decode(&whole[..cut]).is_none(), "cut at {cut}");
        }
    }

    fn kept(n: usize) -> Kept {
        Kept {
            request: Bytes::from(vec![b'x'; n]),
            response: Bytes::new(),
        }
    }

    #[test]
    fn a_response_is_kept_for_its_owner_until_it_expires_or_is_removed() {
        let store = KeptResponses::new(Some(Duration::from_millis(50)), 1 << 20, None);
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
        let store = KeptResponses::new(Some(Duration::from_secs(60)), 100, None);
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
        let off = KeptResponses::new(None, 100, None);
        off.keep("resp_x".into(), kept(1), None);
        assert!(off.get("resp_x", &None).is_none());
    }
}

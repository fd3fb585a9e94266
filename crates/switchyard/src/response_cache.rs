//! The exact response cache (`cache:`): a complete answer, as the client's dialect wrote it, kept
//! for `ttl` and served again to a request whose body is byte for byte the same, through the same
//! ingress, from the same organisation (else team, else key, else the master key). A hit calls no
//! provider and costs nothing; its record says it was a hit.
//!
//! A stream is kept as the events its client got (the pipeline gathers them as they pass), and
//! replayed at once. Left out, so that a hit never changes what a request would have meant:
//! requests an experiment or configuration version applies to, Responses API requests (their
//! answers are kept under their ids), and answers that did not end normally (an error, a
//! stream that broke off, a content filter). A client asks for a fresh answer with `x-switchyard-cache: no-cache` (the
//! new answer is then kept) or `no-store` (nothing read or kept).
//!
//! With shared state, a kept answer also goes to Redis ([`to_shared`]: a line of JSON with its
//! usage and route, then the body), where another replica finds it on a miss and adopts it for
//! what is left of its lifetime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sha2::{Digest, Sha256};
use switchyard_protocol::canonical::Usage;

use crate::telemetry::Caller;

/// The request header with which a client steers the cache, and the answer's header that says
/// whether it came from the cache (`hit`) or was kept for the next request (`miss`).
pub const CACHE_HEADER_NAME: &str = "x-switchyard-cache";
pub const CACHE_HEADER: http::HeaderName = http::HeaderName::from_static(CACHE_HEADER_NAME);

/// One kept answer, until it expires.
pub struct Cached {
    answer: Answer,
    expires: Instant,
}

impl std::ops::Deref for Cached {
    type Target = Answer;

    fn deref(&self) -> &Answer {
        &self.answer
    }
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<[u8; 32], Arc<Cached>> for ByBytes {
    fn weight(&self, _key: &[u8; 32], value: &Arc<Cached>) -> u64 {
        // The body, and about what the rest of an entry holds.
        value.body.len() as u64 + 256
    }
}

/// What a request may do with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    ReadAndKeep,
    /// `no-cache`: a fresh answer, kept for the next request.
    KeepOnly,
    /// `no-store`.
    Neither,
}

impl Use {
    pub fn of(headers: &HeaderMap) -> Self {
        match headers.get(&CACHE_HEADER).and_then(|v| v.to_str().ok()) {
            Some(v) if v.eq_ignore_ascii_case("no-store") => Use::Neither,
            Some(v) if v.eq_ignore_ascii_case("no-cache") => Use::KeepOnly,
            _ => Use::ReadAndKeep,
        }
    }
}

pub struct ResponseCache {
    entries: quick_cache::sync::Cache<[u8; 32], Arc<Cached>, ByBytes>,
    ttl: Duration,
    max_bytes: u64,
}

impl ResponseCache {
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        // Sized for answers of a few kilobytes on average.
        let items = usize::try_from(max_bytes / 4096)
            .unwrap_or(usize::MAX)
            .max(16);
        Self {
            entries: quick_cache::sync::Cache::with_weighter(items, max_bytes, ByBytes),
            ttl,
            max_bytes,
        }
    }

    /// The key of a request: who asks (its organisation, else team, else key), through which
    /// ingress, what narrows who may share its answer (`narrowing`: the team or key a routing
    /// rule names, the customer of a semantic question, the headers sent on to the provider),
    /// and its body.
    pub fn key<'a>(
        caller: &Caller,
        ingress: &str,
        narrowing: impl IntoIterator<Item = &'a str>,
        body: &[u8],
    ) -> [u8; 32] {
        let scope = match (&caller.org, &caller.team, &caller.key_id) {
            (Some(org), _, _) => ("org", &**org),
            (None, Some(team), _) => ("team", &**team),
            (None, None, Some(key)) => ("key", &**key),
            (None, None, None) => ("master", ""),
        };
        let mut hash = Sha256::new();
        for part in [scope.0, scope.1, ingress] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        // Each part marked and its length given, then a mark for the body: no two lists of
        // parts hash alike.
        for part in narrowing {
            hash.update([1]);
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.update([0]);
        hash.update(body);
        hash.finalize().into()
    }

    /// The answer kept under `key`, while it lives.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Cached>> {
        let found = self.entries.get(key)?;
        if found.expires > Instant::now() {
            Some(found)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// An answer another replica kept (in the shared state), with `left` to live, kept here too.
    pub fn adopt(&self, key: [u8; 32], shared: &[u8], left: Duration) -> Option<Arc<Cached>> {
        let (head, body) = split_shared(shared)?;
        let head: SharedHead = serde_json::from_slice(head).ok()?;
        let [
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h,
            reasoning,
            searches,
            fetches,
        ] = head.usage;
        let entry = Arc::new(Cached {
            answer: Answer {
                body: body.to_vec(),
                usage: head.has_usage.then_some(Usage {
                    input_tokens: input,
                    output_tokens: output,
                    cache_read_tokens: cache_read,
                    cache_write_tokens: cache_write,
                    cache_write_1h_tokens: cache_write_1h,
                    reasoning_tokens: reasoning,
                    web_search_requests: searches,
                    web_fetch_requests: fetches,
                }),
                model: head.model,
                finish_reason: FINISH_REASONS
                    .iter()
                    .find(|r| **r == head.finish_reason)
                    .copied()
                    .unwrap_or("stop"),
                response_chars: head.response_chars,
                alias: head.alias,
                deployment: head.deployment,
            },
            expires: Instant::now() + left.min(self.ttl),
        });
        self.entries.insert(key, entry.clone());
        Some(entry)
    }

    /// How long answers are kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keeps an answer for the cache's lifetime.
    pub fn keep(&self, key: [u8; 32], answer: Answer) -> Arc<Cached> {
        let entry = Arc::new(Cached {
            answer,
            expires: Instant::now() + self.ttl,
        });
        self.entries.insert(key, entry.clone());
        entry
    }

    /// The most bytes one answer may take, so that one long stream cannot push out the rest.
    pub fn max_answer_bytes(&self) -> usize {
        usize::try_from(self.max_bytes / 8).unwrap_or(usize::MAX)
    }
}

/// An answer: its body as the client's dialect wrote it (a whole answer, or a stream's events)
/// and what its hits' records say.
pub struct Answer {
    pub body: Vec<u8>,
    pub usage: Option<Usage>,
    pub model: String,
    pub finish_reason: &'static str,
    pub response_chars: usize,
    pub alias: String,
    pub deployment: String,
}

/// The OpenAI finish reasons an answer kept elsewhere may name.
const FINISH_REASONS: [&str; 4] = ["stop", "length", "tool_calls", "content_filter"];

/// What goes to the shared state besides the body: one line of JSON, then the body.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedHead {
    has_usage: bool,
    usage: [u64; 8],
    model: String,
    finish_reason: String,
    response_chars: usize,
    alias: String,
    deployment: String,
}

/// An answer as the shared state keeps it (see [`SharedHead`]).
pub fn to_shared(entry: &Cached) -> Vec<u8> {
    let u = entry.usage.unwrap_or_default();
    let head = SharedHead {
        has_usage: entry.usage.is_some(),
        usage: [
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens,
            u.reasoning_tokens,
            u.web_search_requests,
            u.web_fetch_requests,
        ],
        model: entry.model.clone(),
        finish_reason: entry.finish_reason.to_owned(),
        response_chars: entry.response_chars,
        alias: entry.alias.clone(),
        deployment: entry.deployment.clone(),
    };
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(&entry.body);
    out
}

fn split_shared(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = value.iter().position(|b| *b == b'\n')?;
    Some((&value[..at], &value[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(org: Option<&str>, team: Option<&str>, key: Option<&str>) -> Caller {
        Caller {
            key_id: key.map(Into::into),
            team: team.map(Into::into),
            org: org.map(Into::into),
            ..Caller::default()
        }
    }

    #[test]
    fn keys_separate_scopes_ingresses_and_bodies() {
        let a = ResponseCache::key(&caller(None, None, Some("k1")), "openai", [], b"{}");
        assert_eq!(
            a,
            ResponseCache::key(&caller(None, None, Some("k1")), "openai", [], b"{}")
        );
        assert_ne!(
            a,
            ResponseCache::key(&caller(None, None, Some("k2")), "openai", [], b"{}")
        );
        assert_ne!(
            a,
            ResponseCache::key(&caller(None, None, Some("k1")), "anthropic", [], b"{}")
        );
        assert_ne!(
            a,
            ResponseCache::key(&caller(None, None, Some("k1")), "openai", [], b"{ }")
        );
        // Keys of one team share answers; the organisation is the widest scope.
        assert_eq!(
            ResponseCache::key(&caller(None, Some("t"), Some("k1")), "openai", [], b"{}"),
            ResponseCache::key(&caller(None, Some("t"), Some("k2")), "openai", [], b"{}"),
        );
        assert_eq!(
            ResponseCache::key(
                &caller(Some("o"), Some("t1"), Some("k1")),
                "openai",
                [],
                b"{}"
            ),
            ResponseCache::key(
                &caller(Some("o"), Some("t2"), Some("k2")),
                "openai",
                [],
                b"{}"
            ),
        );
        // Narrowed (a routing rule's team, a customer): not shared beyond it.
        assert_ne!(
            a,
            ResponseCache::key(&caller(None, None, Some("k1")), "openai", ["t=x"], b"{}")
        );
        assert_ne!(
            ResponseCache::key(
                &caller(None, None, Some("k1")),
                "openai",
                ["ab", "c"],
                b"{}"
            ),
            ResponseCache::key(
                &caller(None, None, Some("k1")),
                "openai",
                ["a", "bc"],
                b"{}"
            )
        );
        // A scope's name is not mistaken for another's.
        assert_ne!(
            ResponseCache::key(&caller(None, Some("x"), None), "openai", [], b"{}"),
            ResponseCache::key(&caller(None, None, Some("x")), "openai", [], b"{}"),
        );
    }

    #[test]
    fn an_answer_shared_through_redis_comes_back_whole() {
        let here = ResponseCache::new(Duration::from_secs(60), 1 << 20);
        let usage = Usage {
            input_tokens: 12,
            output_tokens: 7,
            reasoning_tokens: 2,
            ..Usage::default()
        };
        let kept = here.keep(
            [7; 32],
            Answer {
                body: b"{\"id\":\"x\"}\n".to_vec(),
                usage: Some(usage),
                model: "gpt-4o-mini".into(),
                finish_reason: "tool_calls",
                response_chars: 42,
                alias: "alias".into(),
                deployment: "p/m".into(),
            },
        );
        let there = ResponseCache::new(Duration::from_secs(60), 1 << 20);
        let adopted = there
            .adopt([7; 32], &to_shared(&kept), Duration::from_secs(5))
            .unwrap();
        assert_eq!(adopted.body, kept.body);
        assert_eq!(adopted.usage, Some(usage));
        assert_eq!(
            (adopted.finish_reason, adopted.response_chars),
            ("tool_calls", 42)
        );
        assert_eq!(
            (adopted.alias.as_str(), adopted.deployment.as_str()),
            ("alias", "p/m")
        );
        assert!(there.get(&[7; 32]).is_some(), "kept here too");
        assert!(
            there
                .adopt([8; 32], b"not a kept answer", Duration::from_secs(5))
                .is_none()
        );
    }

    #[test]
    fn answers_live_for_the_ttl_and_the_size_bound_holds() {
        let cache = ResponseCache::new(Duration::from_millis(50), 10_000);
        let keep = |cache: &ResponseCache, key: [u8; 32], bytes: usize| {
            cache.keep(
                key,
                Answer {
                    body: vec![b'x'; bytes],
                    usage: None,
                    model: "m".into(),
                    finish_reason: "stop",
                    response_chars: 1,
                    alias: "a".into(),
                    deployment: "p/m".into(),
                },
            )
        };
        keep(&cache, [1; 32], 100);
        assert_eq!(cache.get(&[1; 32]).unwrap().body.len(), 100);
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&[1; 32]).is_none());
        // Far more than fits: the cache stays within its bound.
        for i in 0..100u8 {
            keep(&cache, [i; 32], 1_000);
        }
        let kept = (0..100u8)
            .filter(|i| cache.get(&[*i; 32]).is_some())
            .count();
        assert!(
            kept > 0 && kept <= 10,
            "{kept} answers of 1,256 weight in 10,000"
        );
    }
}

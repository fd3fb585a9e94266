//! Sliding windows of request outcomes and latencies per alias and per deployment, kept in
//! memory from the records the recorder's writer hands over. Time is cut into slices; a window
//! is the sum of its recent slices, so memory per subject is bounded whatever the traffic, and
//! the p99 comes from a log-spaced latency histogram (within ~15 % of the true value, never above
//! the largest latency seen).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::config::AlertScope;
use crate::metrics::Known;
use crate::telemetry::{AttemptRecord, Outcome, RecordBatch, RecordObserver, RequestRecord};

/// Growth factor between latency bucket bounds.
const FACTOR: f64 = 1.15;
/// Bucket `i` holds latencies up to `FACTOR^i` ms; the last one is open-ended (~17 min).
const BUCKETS: usize = 100;
/// At most this many slices per subject, whatever the windows.
const MAX_SLICES: u64 = 600;

fn bucket_of(ms: f64) -> usize {
    if ms <= 1.0 || ms.is_nan() {
        return 0;
    }
    ((ms.ln() / FACTOR.ln()).ceil() as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> f64 {
    FACTOR.powi(bucket as i32)
}

#[derive(Debug, Clone)]
struct Slice {
    index: u64,
    requests: u64,
    errors: u64,
    max_ms: f64,
    latency: [u32; BUCKETS],
}

impl Slice {
    fn new(index: u64) -> Self {
        Self {
            index,
            requests: 0,
            errors: 0,
            max_ms: 0.0,
            latency: [0; BUCKETS],
        }
    }
}

/// What a window holds for one subject.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowStats {
    pub requests: u64,
    pub errors: u64,
    /// `None` without requests.
    pub p99_ms: Option<f64>,
}

impl WindowStats {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// Whether a request counts against its alias: `None` when it says nothing about the service
/// (refused as the client's fault, or abandoned by the client).
pub fn request_failed(r: &RequestRecord) -> Option<bool> {
    match r.outcome {
        Outcome::Success => Some(false),
        Outcome::StreamError => Some(true),
        // The provider refusing the request itself (400, context too long …) is the client's
        // fault; rate limits and 5xx are the service's.
        Outcome::UpstreamError => Some(!(400..500).contains(&r.status) || r.status == 429),
        Outcome::ClientError | Outcome::Cancelled => None,
    }
}

/// Whether an attempt counts against its deployment: `None` for a hedge that lost the race.
pub fn attempt_failed(a: &AttemptRecord) -> Option<bool> {
    if a.cancelled {
        return None;
    }
    Some(match a.error_class.as_deref() {
        None => false,
        // The deployment answered properly; the request was at fault.
        Some("invalid_request" | "context_window_exceeded" | "content_filtered") => false,
        Some(_) => true,
    })
}

/// The latency a request is judged by: time to first token for streams (when the client starts
/// receiving), the whole exchange otherwise.
fn request_latency_ms(r: &RequestRecord) -> f64 {
    match (r.stream, r.ttft_ms) {
        (true, Some(t)) => t,
        _ => r.duration_ms,
    }
}

pub struct Windows {
    known: Known,
    slice_ms: u64,
    keep: u64,
    subjects: Mutex<Subjects>,
}

/// Each subject's slices, oldest first, by scope and name (looked up by `&str`, so a record
/// costs no string copy). A subject's deque is given room for every slice a window keeps when
/// it first appears, so it takes its memory at once rather than growing over the longest
/// window's length.
#[derive(Default)]
struct Subjects {
    aliases: HashMap<String, VecDeque<Slice>>,
    deployments: HashMap<String, VecDeque<Slice>>,
}

impl Subjects {
    fn of(&self, scope: AlertScope) -> Option<&HashMap<String, VecDeque<Slice>>> {
        match scope {
            AlertScope::Alias => Some(&self.aliases),
            AlertScope::Deployment => Some(&self.deployments),
            AlertScope::Key | AlertScope::Team => None,
        }
    }
}

/// Drops a subject's slices older than slice `oldest`.
fn forget_before(slices: &mut VecDeque<Slice>, oldest: u64) {
    while slices.front().is_some_and(|s| s.index < oldest) {
        slices.pop_front();
    }
}

impl Windows {
    /// Windows able to answer for any span up to `longest`, at a resolution fit for `shortest`.
    pub fn new(known: Known, shortest: Duration, longest: Duration) -> Self {
        let longest_ms = (longest.as_millis() as u64).max(1);
        let shortest_ms = (shortest.as_millis() as u64).clamp(1, longest_ms);
        let slice_ms = (shortest_ms / 30).max(longest_ms / MAX_SLICES).max(10);
        Self {
            known,
            slice_ms,
            keep: longest_ms.div_ceil(slice_ms) + 1,
            subjects: Mutex::default(),
        }
    }

    fn add(
        &self,
        map: &mut HashMap<String, VecDeque<Slice>>,
        subject: &str,
        index: u64,
        failed: bool,
        latency_ms: f64,
    ) {
        if !map.contains_key(subject) {
            let room = VecDeque::with_capacity(self.keep as usize + 1);
            map.insert(subject.to_owned(), room);
        }
        let Some(slices) = map.get_mut(subject) else {
            return;
        };
        if slices.back().is_none_or(|s| s.index < index) {
            // Slices too old for any window go as new ones come, so the deque never outgrows
            // the room it was given (pruning between evaluations only drops idle subjects').
            forget_before(slices, index.saturating_sub(self.keep));
            slices.push_back(Slice::new(index));
        }
        // Batches arrive in order, so the newest slice is the one to fill.
        if let Some(s) = slices.back_mut() {
            s.requests += 1;
            s.errors += u64::from(failed);
            s.max_ms = s.max_ms.max(latency_ms);
            s.latency[bucket_of(latency_ms)] += 1;
        }
    }

    /// Adds a batch of records as seen at `now_ms` (monotonic milliseconds).
    pub fn observe_at(&self, records: &[RequestRecord], now_ms: u64) {
        let index = now_ms / self.slice_ms;
        let mut subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        let Subjects {
            aliases,
            deployments,
        } = &mut *subjects;
        for r in records {
            if let Some(alias) = r
                .alias
                .as_deref()
                .filter(|a| self.known.aliases.contains(*a))
                && let Some(failed) = request_failed(r)
            {
                self.add(aliases, alias, index, failed, request_latency_ms(r));
            }
            for a in &r.attempts {
                if !self.known.deployments.contains(&*a.deployment) {
                    continue;
                }
                if let Some(failed) = attempt_failed(a) {
                    self.add(deployments, &a.deployment, index, failed, a.latency_ms);
                }
            }
        }
    }

    /// Drops slices older than the longest window, and subjects left without any.
    pub fn prune(&self, now_ms: u64) {
        let oldest = (now_ms / self.slice_ms).saturating_sub(self.keep);
        let mut subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        let Subjects {
            aliases,
            deployments,
        } = &mut *subjects;
        for map in [aliases, deployments] {
            map.retain(|_, slices| {
                forget_before(slices, oldest);
                !slices.is_empty()
            });
        }
    }

    /// A subject's slices held and the room its deque has, for tests of its memory.
    #[cfg(test)]
    pub fn slices_held(&self, scope: AlertScope, subject: &str) -> Option<(usize, usize)> {
        let subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        let slices = subjects.of(scope)?.get(subject)?;
        Some((slices.len(), slices.capacity()))
    }

    /// Subjects of `scope` with data in the last `window`.
    pub fn subjects(&self, scope: AlertScope) -> Vec<String> {
        let subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<String> = subjects
            .of(scope)
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The sums over the last `window` ending at `now_ms` (whole slices: the oldest one counted
    /// may start up to one slice before the window).
    pub fn stats(
        &self,
        scope: AlertScope,
        subject: &str,
        window: Duration,
        now_ms: u64,
    ) -> WindowStats {
        let current = now_ms / self.slice_ms;
        let span = (window.as_millis() as u64).div_ceil(self.slice_ms).max(1);
        let first = (current + 1).saturating_sub(span);
        let subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slices) = subjects.of(scope).and_then(|map| map.get(subject)) else {
            return WindowStats::default();
        };
        let mut stats = WindowStats::default();
        let mut buckets = [0u64; BUCKETS];
        let mut max_ms: f64 = 0.0;
        for s in slices
            .iter()
            .filter(|s| s.index >= first && s.index <= current)
        {
            stats.requests += s.requests;
            stats.errors += s.errors;
            max_ms = max_ms.max(s.max_ms);
            for (total, n) in buckets.iter_mut().zip(s.latency.iter()) {
                *total += u64::from(*n);
            }
        }
        if stats.requests > 0 {
            let rank = ((stats.requests as f64) * 0.99).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    stats.p99_ms = Some(upper_bound(i).min(max_ms));
                    break;
                }
            }
        }
        stats
    }
}

impl RecordObserver for Windows {
    fn observe(&self, records: &RecordBatch) {
        self.observe_at(records, crate::routing::now_ms());
    }
}

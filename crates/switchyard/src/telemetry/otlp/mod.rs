//! OpenTelemetry trace export of request records over OTLP/HTTP (protobuf). The recorder's
//! writer hands every batch of records to [`OtlpObserver`], which only queues the shared batch
//! (no record is copied) for each configured exporter, bounded by records; a task per exporter
//! writes each record's spans as protobuf as soon as it takes the batch ([`spans`]), letting
//! the records go, and posts what gathered at most once per `interval` (sooner for a full
//! `max_batch` or [`SEND_AT_BYTES`] of spans), in the pieces it was written in, with our own
//! async HTTP client. Nothing here runs on the request path.
//!
//! Failure policy: a full queue drops the new records. An export that fails in a way the OTLP
//! specification calls retryable (no connection, a timeout, 429, 502, 503, 504) is sent again
//! after 1, 2 and 4 s, so a collector that restarts loses nothing; meanwhile new records wait
//! in the bounded queue. A batch that still fails, or is refused outright, is dropped. Drops
//! are counted in [`OtlpStats`] (`switchyard_otlp_*` on `/metrics`) and logged at most once a
//! minute per exporter (with the number of occurrences since the last line). The records
//! themselves are in the store either way.

mod protobuf;
pub mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, OtlpFile, Secret, traces_url};
use crate::routing::RoutingTable;
use crate::telemetry::recorder::hand_back_batch;
use crate::telemetry::{RecordBatch, RecordObserver, RequestRecord};
use crate::upstream::client::Pieces;
use spans::{Catalog, RandomIds};

/// How long shutdown waits for the exporters to send what is still queued.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Least time between two log lines about the same kind of failure of one exporter.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counters of one exporter.
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Spans the receiver accepted.
    pub exported_spans: AtomicU64,
    /// Spans the receiver reported as rejected (OTLP partial success).
    pub rejected_spans: AtomicU64,
    /// Export requests that failed (connection, timeout, non-2xx); their spans are dropped.
    pub failed_exports: AtomicU64,
    /// Spans lost with failed exports.
    pub dropped_spans: AtomicU64,
    /// Records never exported because the queue was full.
    pub dropped_records: AtomicU64,
    /// Exports sent again after a retryable failure.
    pub retried_exports: AtomicU64,
}

/// Waits before sending a failed export again: as many tries as waits, then it is dropped.
const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// The longest `Retry-After` a receiver's answer is waited out for: longer, the exporter's queue
/// would fill behind the wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why an export failed, whether the OTLP specification says to send it again, and the wait
/// the receiver asked for.
struct Failure {
    reason: String,
    retry: bool,
    asked: Option<Duration>,
}

/// Lets a log line through at most once per [`LOG_EVERY`], counting the ones held back.
struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    const fn new() -> Self {
        Self {
            last: None,
            held_back: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// The first `take` records of a batch, waiting for one exporter.
struct Queued {
    batch: RecordBatch,
    take: usize,
}

struct Queue {
    tx: mpsc::Sender<Queued>,
    /// Records waiting (received by the exporter is no longer waiting), at most `capacity`.
    waiting: Arc<AtomicUsize>,
    capacity: usize,
    url: String,
    stats: Arc<OtlpStats>,
    full_log: Mutex<Throttle>,
}

/// The record observer feeding every exporter's queue.
pub struct OtlpObserver {
    queues: Vec<Queue>,
}

impl RecordObserver for OtlpObserver {
    fn observe(&self, records: &RecordBatch) {
        for q in &self.queues {
            // Only the recorder's writer adds, so the room seen here cannot shrink meanwhile.
            let room = q.capacity.saturating_sub(q.waiting.load(Ordering::Acquire));
            let mut take = records.len().min(room);
            if take > 0 {
                q.waiting.fetch_add(take, Ordering::AcqRel);
                let queued = Queued {
                    batch: records.clone(),
                    take,
                };
                if q.tx.try_send(queued).is_err() {
                    q.waiting.fetch_sub(take, Ordering::AcqRel);
                    take = 0;
                }
            }
            let dropped = (records.len() - take) as u64;
            if dropped > 0 {
                q.stats
                    .dropped_records
                    .fetch_add(dropped, Ordering::Relaxed);
                if let Some(held_back) = q.full_log.lock().allow() {
                    tracing::warn!(
                        endpoint = %without_userinfo(&q.url), dropped, earlier_warnings_suppressed = held_back,
                        "OTLP export queue is full: request records not exported"
                    );
                }
            }
        }
    }
}

/// The running exporters: the observer to register with the recorder, and their tasks.
pub struct Exporters {
    observer: Arc<OtlpObserver>,
    tasks: Vec<JoinHandle<()>>,
    /// Each exporter's endpoint (without credentials) and counters.
    stats: Vec<(String, Arc<OtlpStats>)>,
}

/// Starts one export task per `telemetry.otlp` entry; `None` when there is none.
pub fn start(config: &Config, table: &RoutingTable) -> Result<Option<Exporters>, reqwest::Error> {
    if config.telemetry.otlp.is_empty() {
        return Ok(None);
    }
    let catalog = Arc::new(Catalog::build(config, table));
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    for file in &config.telemetry.otlp {
        // Every queued batch holds at least one record: the count bounds the channel first.
        let (tx, rx) = mpsc::channel(file.queue_capacity.max(1));
        let waiting = Arc::new(AtomicUsize::new(0));
        let exporter = Exporter::new(file, catalog.clone())?;
        let s = exporter.stats.clone();
        queues.push(Queue {
            tx,
            waiting: waiting.clone(),
            capacity: file.queue_capacity,
            url: exporter.url.clone(),
            stats: s.clone(),
            full_log: Mutex::new(Throttle::new()),
        });
        stats.push((without_userinfo(&exporter.url), s));
        tasks.push(tokio::spawn(exporter.run(
            rx,
            waiting,
            file.max_batch,
            file.interval,
        )));
    }
    Ok(Some(Exporters {
        observer: Arc::new(OtlpObserver { queues }),
        tasks,
        stats,
    }))
}

impl Exporters {
    pub fn observer(&self) -> Arc<dyn RecordObserver> {
        self.observer.clone()
    }

    /// One entry per configured exporter, in configuration order: its endpoint and counters.
    pub fn stats(&self) -> &[(String, Arc<OtlpStats>)] {
        &self.stats
    }

    /// A handle that finishes once `writer` (the recorder's task, which owns the other
    /// observer handle) has finished and the exporters have sent what was queued, or after
    /// [`SHUTDOWN_GRACE`] more.
    pub fn join_after(self, writer: JoinHandle<()>) -> JoinHandle<()> {
        let Exporters {
            observer, tasks, ..
        } = self;
        // The queues close when the writer drops the last observer handle.
        drop(observer);
        tokio::spawn(async move {
            let _ = writer.await;
            let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
            let all = futures::future::join_all(tasks);
            if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
                tracing::warn!(
                    "OTLP exporters did not finish sending within 5 s; the rest is dropped"
                );
                for a in aborts {
                    a.abort();
                }
            }
        })
    }
}

/// Spans are written in pieces of about this size, and a request's body is sent as those
/// pieces: a buffer this size is reused by the allocator, where one body of 256 short records
/// (about 370 KB) and its copy left about 1 MiB more resident after a load
/// (docs/PERFORMANCE.md, fifty-third round).
const PIECE_BYTES: usize = 64 * 1024;

/// Most bytes of spans in one request, whatever `max_batch`: with `capture_content` a record's
/// spans can come to hundreds of KiB, and receivers bound a request's size.
const SEND_AT_BYTES: usize = 4 * 1024 * 1024;

/// One exporter: where to send, how, and its counters.
struct Exporter {
    url: String,
    headers: Vec<(String, Secret)>,
    timeout: Duration,
    capture_content: bool,
    /// The encoded `Resource`, the same in every request.
    resource: Vec<u8>,
    catalog: Arc<Catalog>,
    client: reqwest::Client,
    stats: Arc<OtlpStats>,
    fail_log: Throttle,
    /// Spans written and not yet sent.
    pending: Pending,
    /// [`SEND_AT_BYTES`], lower in tests.
    send_at_bytes: usize,
    /// [`RETRY_AFTER`], shorter in tests.
    retry_after: &'static [Duration],
}

/// The spans of the records an exporter took and has not sent yet, as `spans` fields of a
/// `ScopeSpans` ([`spans::append_spans`]) in pieces of about [`PIECE_BYTES`].
#[derive(Default)]
struct Pending {
    written: Vec<Bytes>,
    /// The piece being written.
    piece: Vec<u8>,
    bytes: usize,
    spans: u64,
    records: usize,
}

impl Exporter {
    fn new(file: &OtlpFile, catalog: Arc<Catalog>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(file.timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Self {
            url: traces_url(&file.endpoint),
            headers: file
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: file.timeout,
            capture_content: file.capture_content,
            resource: spans::resource(&file.service_name, &file.resource),
            catalog,
            client,
            stats: Arc::new(OtlpStats::default()),
            fail_log: Throttle::new(),
            pending: Pending::default(),
            send_at_bytes: SEND_AT_BYTES,
            retry_after: &RETRY_AFTER,
        })
    }

    /// Sends what is queued, at most `max_batch` records per request, until the queue closes:
    /// a request at most every `interval`, or as soon as `max_batch` records or
    /// [`SEND_AT_BYTES`] of spans wait. Records are written out as they are taken, so what
    /// waits for the interval is their spans' bytes.
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Queued>,
        waiting: Arc<AtomicUsize>,
        max_batch: usize,
        interval: Duration,
    ) {
        let max_batch = max_batch.max(1);
        let mut next_send = tokio::time::Instant::now();
        loop {
            let part = if self.pending.records == 0 {
                match rx.recv().await {
                    Some(part) => part,
                    None => break,
                }
            } else {
                match tokio::time::timeout_at(next_send, rx.recv()).await {
                    Ok(Some(part)) => part,
                    // Closed (shutdown): what gathered goes now.
                    Ok(None) => break,
                    Err(_) => {
                        self.flush().await;
                        next_send = tokio::time::Instant::now() + interval;
                        continue;
                    }
                }
            };
            waiting.fetch_sub(part.take, Ordering::AcqRel);
            for record in &part.batch[..part.take] {
                self.add(record);
                if self.pending.records >= max_batch || self.pending.bytes >= self.send_at_bytes {
                    self.flush().await;
                    next_send = tokio::time::Instant::now() + interval;
                }
            }
            hand_back_batch(part.batch);
        }
        self.flush().await;
    }

    /// Writes the spans of `record` after those waiting to be sent.
    fn add(&mut self, record: &RequestRecord) {
        let pending = &mut self.pending;
        if pending.piece.capacity() == 0 {
            // Room for the records that take a piece past its size, most of them short.
            pending.piece = Vec::with_capacity(PIECE_BYTES + PIECE_BYTES / 8);
        }
        let before = pending.piece.len();
        pending.spans += spans::append_spans(
            &mut pending.piece,
            record,
            &self.catalog,
            self.capture_content,
            &mut RandomIds,
        );
        pending.bytes += pending.piece.len() - before;
        pending.records += 1;
        if pending.piece.len() >= PIECE_BYTES {
            pending
                .written
                .push(std::mem::take(&mut pending.piece).into());
        }
    }

    /// Sends the spans waiting, if any, in one request; the pieces go with it, so an idle
    /// exporter holds none.
    async fn flush(&mut self) {
        let Pending {
            written,
            piece,
            bytes,
            spans,
            ..
        } = std::mem::take(&mut self.pending);
        if spans == 0 {
            return;
        }
        let (head, tail) = spans::export_frame(&self.resource, bytes);
        let mut pieces = Vec::with_capacity(written.len() + 3);
        pieces.push(head.into());
        pieces.extend(written);
        if !piece.is_empty() {
            pieces.push(piece.into());
        }
        pieces.push(tail.into());
        self.send_spans(pieces, spans).await;
    }

    /// Sends the spans of `records` in one request, after any already waiting.
    #[cfg(test)]
    async fn export(&mut self, records: &[&RequestRecord]) {
        for record in records {
            self.add(record);
        }
        self.flush().await;
    }

    /// Posts `pieces`, holding `count` spans, again after a retryable failure, and counts what
    /// became of them.
    async fn send_spans(&mut self, pieces: Vec<Bytes>, count: u64) {
        let mut waits = self.retry_after.iter();
        let sent = loop {
            match self.send(Pieces::of(pieces.clone())).await {
                Err(Failure {
                    reason,
                    retry: true,
                    asked,
                }) => match waits.next() {
                    Some(wait) => {
                        self.stats.retried_exports.fetch_add(1, Ordering::Relaxed);
                        // The receiver's own `Retry-After` when it gives one (within reason),
                        // else the schedule; jittered, so exporters do not come back together.
                        let wait = asked.map_or(*wait, |a| a.min(MAX_RETRY_AFTER)).max(*wait);
                        let jitter = 0.8 + rand::random::<f64>() * 0.4;
                        tokio::time::sleep(wait.mul_f64(jitter)).await;
                    }
                    None => break Err(reason),
                },
                Err(Failure { reason, .. }) => break Err(reason),
                Ok(answer) => break Ok(answer),
            }
        };
        match sent {
            Ok(rejected) => {
                self.stats
                    .exported_spans
                    .fetch_add(count - rejected.0.min(count), Ordering::Relaxed);
                if rejected.0 > 0 {
                    self.stats
                        .rejected_spans
                        .fetch_add(rejected.0, Ordering::Relaxed);
                    if let Some(held_back) = self.fail_log.allow() {
                        tracing::warn!(
                            endpoint = %without_userinfo(&self.url), rejected = rejected.0, reason = %rejected.1,
                            earlier_warnings_suppressed = held_back,
                            "OTLP receiver rejected some spans"
                        );
                    }
                }
            }
            Err(reason) => {
                self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_spans.fetch_add(count, Ordering::Relaxed);
                if let Some(held_back) = self.fail_log.allow() {
                    tracing::warn!(
                        endpoint = %without_userinfo(&self.url), spans = count, %reason,
                        earlier_warnings_suppressed = held_back,
                        "OTLP trace export failed; the batch is dropped"
                    );
                }
            }
        }
    }

    /// Posts one body; on success returns the spans the receiver rejected and its message, on
    /// failure why and whether the OTLP specification says to retry it.
    async fn send(&self, body: Pieces) -> Result<(u64, String), Failure> {
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let response = request
            .body(reqwest::Body::wrap(body))
            .send()
            .await
            // No answer at all (refused, timed out, or the connection closed before one: a
            // receiver restarting) is sent again, as the OTLP specification asks.
            .map_err(|e| Failure {
                reason: without_url(&e),
                retry: !e.is_builder(),
                asked: None,
            })?;
        let status = response.status();
        let is_protobuf = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-protobuf"));
        let asked = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(|e| Failure {
            reason: without_url(&e),
            retry: true,
            asked: None,
        })?;
        if !status.is_success() {
            let excerpt: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return Err(Failure {
                reason: format!("HTTP {}: {excerpt}", status.as_u16()),
                retry: matches!(status.as_u16(), 429 | 502 | 503 | 504),
                asked,
            });
        }
        // A 2xx may still report a partial success; bodies that are not protobuf are ignored.
        let partial = is_protobuf
            .then(|| ExportTraceServiceResponse::decode(bytes.as_ref()).ok())
            .flatten()
            .and_then(|r| r.partial_success);
        Ok(partial.map_or((0, String::new()), |p| {
            (
                u64::try_from(p.rejected_spans).unwrap_or(0),
                p.error_message,
            )
        }))
    }
}

/// A URL without the user and password it may carry, for a metric's label and the logs.
fn without_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.find('@')) {
        (Some((scheme, rest)), Some(at))
            if at > scheme.len() && !rest[..at - scheme.len() - 3].contains('/') =>
        {
            format!("{scheme}://{}", &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The transport error without its URL (the URL is logged beside it once).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests;

//! The recorder: request records leave the hot path through a bounded channel to one background
//! writer that batches them into the store. When the store is slow or down, batches spill to a
//! local JSON-lines file and are replayed when it recovers (inserts are idempotent by id), so no
//! record is lost silently; only when the spill file reaches its configured cap are records
//! dropped, and every drop is counted.
//!
//! The queue is bounded twice: by records (`telemetry.queue_capacity`) and by the bytes of
//! content they carry (`telemetry.queue_max_bytes`). A record that would pass the byte bound is
//! still queued, without its prompt and response (counted as `content_shed`), so a flood of big
//! prompts costs content, never records, and never unbounded memory.
//!
//! After the first record of a batch the writer sleeps for [`BATCH_WINDOW`], then writes
//! everything queued, [`BATCH`] records per transaction: a request pays neither for a
//! transaction of its own nor for waking the writer (only the first record of a window does).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::record::RequestRecord;
use crate::store::{RecordStore, Store};

/// Largest batch written in one transaction.
const BATCH: usize = 512;
/// How long the writer lets records gather after the first record of a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Records the writer works through between the times it offers its CPU to a waiting thread.
const GIVE_WAY_EVERY: usize = 8;

/// Offers the writer's CPU to any thread waiting for it (`sched_yield`) after every
/// [`GIVE_WAY_EVERY`]th record of a batch. At full load a batch holds hundreds of records and
/// takes milliseconds to prepare and write, and a serving thread woken meanwhile on the same CPU
/// waited for the whole of it: the tail of requests at full load with records on
/// (docs/PERFORMANCE.md, forty-seventh round). A batch in pieces of some 100 µs keeps that wait
/// short; the writer keeps its share of the CPU (it only lets the scheduler choose), and the
/// call returns at once when nothing else is waiting.
pub(crate) fn give_way(index: usize) {
    if index % GIVE_WAY_EVERY == GIVE_WAY_EVERY - 1 {
        std::thread::yield_now();
    }
}
/// How long without records before the writer lets the spare text buffers go.
const SPARES_KEPT_IDLE: Duration = Duration::from_secs(1);
/// Bytes a record is counted for besides its content (ids, decision, attempts).
const RECORD_OVERHEAD: usize = 1024;
/// How long a store write may take before the batch spills.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed write, batches go straight to the spill file for this long.
const SINK_BACKOFF: Duration = Duration::from_millis(500);

/// Counters of the recorder, read by metrics and tests.
#[derive(Debug, Default)]
pub struct RecorderStats {
    pub enqueued: AtomicU64,
    pub written: AtomicU64,
    pub spilled: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Records queued without their content because the queue's byte bound was reached.
    pub content_shed: AtomicU64,
    /// Bytes of the records waiting in the queue or in the batch being written.
    pub queued_bytes: AtomicU64,
}

/// A batch of finished records, shared by the store's writer and the observers that keep
/// records beyond the call (exporters queue the batch instead of copying its records).
pub type RecordBatch = Arc<Vec<RequestRecord>>;

/// Lets go of one holder's share of a batch: the last holder (the writer, or an exporter still
/// at work on it when the writer is done) hands the records' texts' buffers back for the next
/// records ([`super::hand_back_texts`]). Returns whether this holder was the last.
/// `Arc::into_inner` gives the batch to exactly one of the holders letting go at once, where
/// `try_unwrap` may give it to neither.
pub fn hand_back_batch(batch: RecordBatch) -> bool {
    match Arc::into_inner(batch) {
        Some(batch) => {
            batch.into_iter().for_each(super::hand_back_texts);
            true
        }
        None => false,
    }
}

/// Sees every batch of records before it is stored (metrics, exporters).
pub trait RecordObserver: Send + Sync {
    fn observe(&self, records: &RecordBatch);
}

pub struct Recorder {
    /// `None` when records are switched off (`telemetry.records: false`).
    tx: Option<mpsc::Sender<RequestRecord>>,
    pub stats: Arc<RecorderStats>,
    capacity: usize,
    max_bytes: u64,
    /// An OpenTelemetry exporter turns the records into spans.
    traced: bool,
}

impl Recorder {
    /// Starts the writer task. It ends after the last `Recorder` handle is dropped and the queue
    /// is drained; `join` waits for that.
    pub fn start(
        store: Store,
        spill_path: PathBuf,
        spill_max_bytes: u64,
        capacity: usize,
        max_bytes: u64,
        observers: Vec<Arc<dyn RecordObserver>>,
        traced: bool,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(RecorderStats::default());
        let writer = Writer {
            rx,
            store,
            spill: Spill {
                // Known at start, then tracked, so the writer's loop asks no file system.
                holds_records: std::fs::metadata(&spill_path).is_ok_and(|m| m.len() > 0),
                path: spill_path,
                max_bytes: spill_max_bytes,
            },
            stats: stats.clone(),
            observers,
            down_until: None,
        };
        let handle = tokio::spawn(writer.run());
        (
            Self {
                tx: Some(tx),
                stats,
                capacity,
                max_bytes,
                traced,
            },
            handle,
        )
    }

    /// A recorder that keeps nothing (`telemetry.records: false`): records are dropped
    /// uncounted, and no writer runs.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            stats: Arc::default(),
            capacity: 0,
            max_bytes: 0,
            traced: false,
        }
    }

    /// Whether records are kept at all.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether records become trace spans: only then does a record carry what only spans show
    /// (`RequestRecord::sampling`).
    pub fn traced(&self) -> bool {
        self.traced && self.enabled()
    }

    /// Hands a record to the writer without waiting. A full queue means the writer cannot even
    /// spill fast enough: the record is dropped and counted.
    pub fn record(&self, mut record: RequestRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        let content = record.content_bytes();
        let mut size = (RECORD_OVERHEAD + content) as u64;
        let before = self.stats.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if content > 0 && before + size > self.max_bytes {
            // Over the byte bound: keep the record, shed its content.
            self.stats.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            record.prompt = None;
            record.response = None;
            record.mask_pending = false;
            size = RECORD_OVERHEAD as u64;
            self.stats.queued_bytes.fetch_add(size, Ordering::Relaxed);
            self.stats.content_shed.fetch_add(1, Ordering::Relaxed);
        }
        record.queued_bytes = size as usize;
        match tx.try_send(record) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("request record dropped: the recorder queue is full");
            }
        }
    }

    /// Records waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, |tx| self.capacity - tx.capacity())
    }
}

struct Spill {
    path: PathBuf,
    max_bytes: u64,
    /// Whether the file holds records to replay.
    holds_records: bool,
}

impl Spill {
    async fn size(&self) -> u64 {
        tokio::fs::metadata(&self.path).await.map_or(0, |m| m.len())
    }

    /// Appends records; returns how many had to be dropped because of the cap.
    async fn append(&mut self, records: &[RequestRecord]) -> std::io::Result<u64> {
        let mut size = self.size().await;
        let mut out = Vec::new();
        let mut dropped = 0;
        for r in records {
            let mut line = r.to_json().into_bytes();
            line.push(b'\n');
            if size + line.len() as u64 > self.max_bytes {
                dropped += 1;
                continue;
            }
            size += line.len() as u64;
            out.extend_from_slice(&line);
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        file.write_all(&out).await?;
        file.flush().await?;
        self.holds_records |= !out.is_empty();
        Ok(dropped)
    }

    async fn read(&self) -> Vec<RequestRecord> {
        match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn clear(&mut self) {
        let _ = tokio::fs::remove_file(&self.path).await;
        self.holds_records = false;
    }
}

struct Writer {
    rx: mpsc::Receiver<RequestRecord>,
    store: Store,
    spill: Spill,
    stats: Arc<RecorderStats>,
    observers: Vec<Arc<dyn RecordObserver>>,
    down_until: Option<Instant>,
}

impl Writer {
    async fn run(mut self) {
        // Records left over from a previous run go in first.
        self.replay().await;
        loop {
            let spilled = self.spill.holds_records;
            let next = if spilled {
                match tokio::time::timeout(Duration::from_millis(250), self.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.replay().await;
                        continue;
                    }
                }
            } else if super::spare::any() {
                // Records have stopped for a while: an idle gateway keeps no spare buffers.
                match tokio::time::timeout(SPARES_KEPT_IDLE, self.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        super::spare::let_go();
                        continue;
                    }
                }
            } else {
                self.rx.recv().await
            };
            let Some(first) = next else { break };
            // Sleep out the window instead of waiting on the queue: a waiting receiver is woken
            // by every record (a wake-up across threads per request), a sleeping one is not.
            tokio::time::sleep(BATCH_WINDOW).await;
            let mut first = Some(first);
            loop {
                // Each batch is a new vector: observers may keep it (see `RecordBatch`).
                let mut batch = Vec::with_capacity((self.rx.len() + 1).min(BATCH));
                batch.extend(first.take());
                while batch.len() < BATCH {
                    match self.rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let full = batch.len() == BATCH;
                self.flush(batch).await;
                if !full {
                    break;
                }
            }
        }
        // Shutting down: one more attempt to empty the spill file into the store.
        self.replay().await;
    }

    /// Prepares (see `prepare_record`), shows to the observers and stores one batch.
    async fn flush(&mut self, mut batch: Vec<RequestRecord>) {
        for (i, r) in batch.iter_mut().enumerate() {
            super::prepare_record(r);
            give_way(i);
        }
        let batch = Arc::new(batch);
        for o in &self.observers {
            o.observe(&batch);
        }
        self.write(&batch).await;
        let bytes: usize = batch.iter().map(|r| r.queued_bytes).sum();
        self.stats
            .queued_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
        hand_back_batch(batch);
    }

    async fn write(&mut self, batch: &[RequestRecord]) {
        let down = self.down_until.is_some_and(|t| Instant::now() < t);
        if !down {
            match tokio::time::timeout(WRITE_TIMEOUT, self.store.insert(batch)).await {
                Ok(Ok(())) => {
                    self.down_until = None;
                    self.stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "record store write failed; spilling to disk")
                }
                Err(_) => tracing::warn!("record store write timed out; spilling to disk"),
            }
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            self.down_until = Some(Instant::now() + SINK_BACKOFF);
        }
        match self.spill.append(batch).await {
            Ok(dropped) => {
                self.stats
                    .spilled
                    .fetch_add(batch.len() as u64 - dropped, Ordering::Relaxed);
                if dropped > 0 {
                    self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                    tracing::error!(dropped, "spill file is at its cap: request records dropped");
                }
            }
            Err(e) => {
                self.stats
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, records = batch.len(), "cannot spill request records: dropped");
            }
        }
    }

    async fn replay(&mut self) {
        if self.down_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let records = self.spill.read().await;
        if records.is_empty() {
            return;
        }
        for chunk in records.chunks(BATCH) {
            match tokio::time::timeout(WRITE_TIMEOUT, self.store.insert(chunk)).await {
                Ok(Ok(())) => {}
                _ => {
                    self.down_until = Some(Instant::now() + SINK_BACKOFF);
                    return;
                }
            }
        }
        self.spill.clear().await;
        self.down_until = None;
        self.stats
            .replayed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.stats
            .written
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        tracing::info!(records = records.len(), "replayed spilled request records");
    }
}

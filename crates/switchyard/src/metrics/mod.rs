//! Prometheus metrics, served at `GET /metrics` (every metric is listed in `docs/metrics.md`).
//!
//! Counters and histograms are fed by [`Metrics`] as a [`RecordObserver`]: the recorder's
//! background writer hands it every batch of request records, so the hot path never touches a
//! metric. Gauges (deployment health, recorder queue, active alerts) are read at scrape time into
//! a [`Snapshot`]. Labels are bounded by construction: aliases and deployments must be configured
//! ones (anything else is `unknown`), the rest are status codes, stable error codes, outcome and
//! error-class names, and teams; never request ids or client-supplied strings.
//! This module records and reports; it decides nothing.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::routing::{RoutingTable, now_ms};
use crate::telemetry::{Outcome, RecordBatch, RecordObserver, Recorder, RequestRecord};

#[cfg(test)]
mod tests;

/// Content type of the exposition (the OpenMetrics text format, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label value for an alias or deployment that is not in the configuration (or not known yet).
pub const UNKNOWN: &str = "unknown";
/// Label value for an absent attribute (no deployment called, no error, no team).
pub const NONE: &str = "none";

/// Histogram bounds in seconds, from a cached answer (5 ms) to a long generation (120 s).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    alias: String,
    deployment: String,
    status: u16,
    error_code: String,
    outcome: String,
    ingress: String,
    stream: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    alias: String,
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    deployment: String,
    error_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheHitLabels {
    alias: String,
    cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    alias: String,
    deployment: String,
    team: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    alias: String,
    deployment: String,
    team: String,
}

/// The configured names a label may take; anything else becomes [`UNKNOWN`].
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub aliases: HashSet<String>,
    pub deployments: HashSet<String>,
}

impl Known {
    pub fn from_table(table: &RoutingTable) -> Self {
        let mut known = Known::default();
        for (alias, d) in table.deployments() {
            known.aliases.insert(alias.to_owned());
            known.deployments.insert(d.id.to_string());
        }
        known.aliases.extend(table.aliases.iter().cloned());
        known
    }

    pub fn alias(&self, alias: Option<&str>) -> String {
        match alias {
            Some(a) if self.aliases.contains(a) => a.to_owned(),
            _ => UNKNOWN.to_owned(),
        }
    }

    pub fn deployment(&self, deployment: Option<&str>) -> String {
        match deployment {
            None => NONE.to_owned(),
            Some(d) if self.deployments.contains(d) => d.to_owned(),
            Some(_) => UNKNOWN.to_owned(),
        }
    }
}

/// A code-like label value (`snake_case`, short) or `other`: a guard so that no free text can
/// ever become a label, whatever a future producer puts in the field.
fn code_label(code: Option<&str>) -> String {
    match code {
        None => NONE.to_owned(),
        Some(c)
            if !c.is_empty()
                && c.len() <= 64
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }) =>
        {
            c.to_owned()
        }
        Some(_) => "other".to_owned(),
    }
}

/// The request metrics, updated from records by the recorder's writer.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    known: Known,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
    ttft: HistogramFamily<RouteLabels>,
    attempts: Family<AttemptLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<CostLabels, Counter>,
    cache_hits: Family<CacheHitLabels, Counter>,
}

impl Metrics {
    pub fn new(known: Known) -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        let ttft: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let attempts = Family::<AttemptLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost = Family::<CostLabels, Counter>::default();
        let cache_hits = Family::<CacheHitLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by alias, deployment, status, error code, outcome, ingress dialect and stream",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from the request's arrival to the end of its answer (streams: the last byte)",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register_with_unit(
            "time_to_first_token",
            "Time from a streamed request's arrival to its first output chunk",
            Unit::Seconds,
            ttft.clone(),
        );
        registry.register(
            "upstream_attempts",
            "HTTP exchanges with deployments by error class (none for a success, cancelled for a lost hedge)",
            attempts.clone(),
        );
        registry.register(
            "tokens",
            "Tokens by kind (input includes cache reads and writes; output includes reasoning)",
            tokens.clone(),
        );
        registry.register_with_unit(
            "cost",
            "Cost of requests in nano-dollars (1e-9 USD), for deployments with a price",
            Unit::Other("nanodollars".into()),
            cost.clone(),
        );
        registry.register(
            "cache_hits",
            "Requests answered from the response cache (exact) or by a similar question's answer (semantic)",
            cache_hits.clone(),
        );
        Self {
            registry,
            known,
            requests,
            duration,
            ttft,
            attempts,
            tokens,
            cost,
            cache_hits,
        }
    }

    /// Adds one batch's tally to the families.
    fn apply(&self, tally: Tally<'_>) {
        for (k, n) in tally.requests {
            self.requests
                .get_or_create(&RequestLabels {
                    alias: self.known.alias(k.route.alias),
                    deployment: self.known.deployment(k.route.deployment),
                    status: k.status,
                    error_code: code_label(k.error_code),
                    outcome: k.outcome.as_str().to_owned(),
                    ingress: code_label(Some(k.ingress)),
                    stream: k.stream,
                })
                .inc_by(n);
        }
        for ((deployment, class), n) in tally.attempts {
            self.attempts
                .get_or_create(&AttemptLabels {
                    deployment: self.known.deployment(Some(deployment)),
                    error_class: match class {
                        AttemptClass::Cancelled => "cancelled".to_owned(),
                        AttemptClass::Error(code) => code_label(code),
                    },
                })
                .inc_by(n);
        }
        for ((route, team, kind), n) in tally.tokens {
            self.tokens
                .get_or_create(&TokenLabels {
                    alias: self.known.alias(route.alias),
                    deployment: self.known.deployment(route.deployment),
                    team: team.unwrap_or(NONE).to_owned(),
                    kind: kind.to_owned(),
                })
                .inc_by(n);
        }
        for ((alias, cache), n) in tally.cache_hits {
            self.cache_hits
                .get_or_create(&CacheHitLabels {
                    alias: self.known.alias(alias),
                    cache: cache.to_owned(),
                })
                .inc_by(n);
        }
        for ((route, team), n) in tally.cost {
            self.cost
                .get_or_create(&CostLabels {
                    alias: self.known.alias(route.alias),
                    deployment: self.known.deployment(route.deployment),
                    team: team.unwrap_or(NONE).to_owned(),
                })
                .inc_by(n);
        }
    }

    fn route_labels(&self, route: RouteKey<'_>) -> RouteLabels {
        RouteLabels {
            alias: self.known.alias(route.alias),
            deployment: self.known.deployment(route.deployment),
        }
    }

    /// The exposition: the record-fed metrics, then the scrape-time gauges of `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut gauges = Registry::with_prefix("switchyard");
        gauges.register_collector(Box::new(snapshot));
        // Writing into a String cannot fail; an encoding error would only truncate the page.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &gauges);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

impl RecordObserver for Metrics {
    fn observe(&self, records: &RecordBatch) {
        let mut tally = Tally::default();
        for r in records.iter() {
            tally.count(self, r);
        }
        self.apply(tally);
    }
}

/// A batch of records counted per distinct set of raw values before anything reaches a family:
/// a batch mostly repeats a few such sets, and each family lookup builds owned labels, hashes
/// them and takes the family's lock. Histograms are looked up once per route and batch, and
/// observe every record's value as before.
#[derive(Default)]
struct Tally<'r> {
    requests: Totals<RequestKey<'r>>,
    durations: Vec<(RouteKey<'r>, Histogram)>,
    ttfts: Vec<(RouteKey<'r>, Histogram)>,
    attempts: Totals<(&'r str, AttemptClass<'r>)>,
    /// Route, team and kind of token.
    tokens: Totals<(RouteKey<'r>, Option<&'r str>, &'static str)>,
    /// Route and team.
    cost: Totals<(RouteKey<'r>, Option<&'r str>)>,
    /// Alias and which cache.
    cache_hits: Totals<(Option<&'r str>, &'static str)>,
}

/// A total per key, in the order the keys first came.
type Totals<K> = Vec<(K, u64)>;

#[derive(Clone, Copy, PartialEq)]
struct RouteKey<'r> {
    alias: Option<&'r str>,
    deployment: Option<&'r str>,
}

#[derive(PartialEq)]
struct RequestKey<'r> {
    route: RouteKey<'r>,
    status: u16,
    error_code: Option<&'r str>,
    outcome: Outcome,
    ingress: &'r str,
    stream: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum AttemptClass<'r> {
    Cancelled,
    Error(Option<&'r str>),
}

impl<'r> Tally<'r> {
    fn count(&mut self, metrics: &Metrics, r: &'r RequestRecord) {
        let route = RouteKey {
            alias: r.alias.as_deref(),
            deployment: r.deployment.as_deref(),
        };
        add(
            &mut self.requests,
            RequestKey {
                route,
                status: r.status,
                error_code: r.error_code.as_deref(),
                outcome: r.outcome,
                ingress: &r.ingress,
                stream: r.stream,
            },
            1,
        );
        // A kept answer took no provider any time and no tokens: counted as a hit, it would
        // otherwise pass for the deployment's own speed and usage.
        if r.cache_hit {
            let cache = match r.tags.get("cache").and_then(|v| v.as_str()) {
                Some("semantic") => "semantic",
                _ => "exact",
            };
            add(&mut self.cache_hits, (r.alias.as_deref(), cache), 1);
            return;
        }
        histogram(&mut self.durations, &metrics.duration, metrics, route)
            .observe(r.duration_ms / 1000.0);
        if let Some(ttft) = r.ttft_ms {
            histogram(&mut self.ttfts, &metrics.ttft, metrics, route).observe(ttft / 1000.0);
        }
        for a in &r.attempts {
            let class = if a.cancelled {
                AttemptClass::Cancelled
            } else {
                AttemptClass::Error(a.error_class.as_deref())
            };
            add(&mut self.attempts, (&*a.deployment, class), 1);
        }
        let team = r.caller.team.as_deref();
        if let Some(t) = r.tokens {
            for (kind, n) in [
                ("input", t.input),
                ("output", t.output),
                ("cache_read", t.cache_read),
                ("cache_write", t.cache_write),
                ("reasoning", t.reasoning),
            ] {
                if n > 0 {
                    add(&mut self.tokens, (route, team, kind), n);
                }
            }
        }
        if let Some(c) = r.cost_nanos.filter(|c| *c > 0) {
            add(&mut self.cost, (route, team), c as u64);
        }
    }
}

/// Adds `n` to `key`'s total. A linear search: a batch holds few distinct keys, and even a
/// batch of all-different ones costs no more than the lookups it replaces.
fn add<K: PartialEq>(totals: &mut Totals<K>, key: K, n: u64) {
    match totals.iter_mut().find(|(k, _)| *k == key) {
        Some((_, total)) => *total += n,
        None => totals.push((key, n)),
    }
}

/// The histogram of `route` in `family`, looked up in the family at its first use in the batch.
fn histogram<'t, 'r>(
    seen: &'t mut Vec<(RouteKey<'r>, Histogram)>,
    family: &HistogramFamily<RouteLabels>,
    metrics: &Metrics,
    route: RouteKey<'r>,
) -> &'t Histogram {
    let at = match seen.iter().position(|(k, _)| *k == route) {
        Some(at) => at,
        None => {
            let h = Histogram::clone(&family.get_or_create(&metrics.route_labels(route)));
            seen.push((route, h));
            seen.len() - 1
        }
    };
    &seen[at].1
}

/// Health of one deployment behind one alias at scrape time.
#[derive(Debug, Clone)]
pub struct DeploymentGauges {
    pub alias: String,
    pub deployment: String,
    pub in_flight: u32,
    pub cooling: bool,
    pub cooldown_remaining_s: f64,
    pub consecutive_failures: u32,
    pub recent_error_ratio: f64,
}

/// Recorder counters at scrape time.
#[derive(Debug, Clone, Default)]
pub struct RecorderCounts {
    pub queue_depth: u64,
    pub enqueued: u64,
    pub written: u64,
    pub spilled: u64,
    pub replayed: u64,
    pub dropped: u64,
    pub write_errors: u64,
    pub content_shed: u64,
    pub queued_bytes: u64,
}

impl RecorderCounts {
    pub fn read(recorder: &Recorder) -> Self {
        let s = &recorder.stats;
        Self {
            queue_depth: recorder.queue_depth() as u64,
            enqueued: s.enqueued.load(Ordering::Relaxed),
            written: s.written.load(Ordering::Relaxed),
            spilled: s.spilled.load(Ordering::Relaxed),
            replayed: s.replayed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            write_errors: s.write_errors.load(Ordering::Relaxed),
            content_shed: s.content_shed.load(Ordering::Relaxed),
            queued_bytes: s.queued_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Alerting state at scrape time.
#[derive(Debug, Clone, Default)]
pub struct AlertCounts {
    /// `(rule, kind, subjects firing)` for every configured rule.
    pub active: Vec<(String, &'static str, u64)>,
    pub notifications_delivered: u64,
    pub notifications_failed: u64,
}

/// Everything read at scrape time, encoded as gauges and constant counters.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub deployments: Vec<DeploymentGauges>,
    pub recorder: RecorderCounts,
    pub alerts: AlertCounts,
    /// Responses API answers kept in memory, and the bytes they take.
    pub kept_responses: (u64, u64),
    /// Questions the semantic cache remembers, when it is configured.
    pub semantic_questions: Option<u64>,
    /// Whether the last polls reached Redis (with `shared:`) and the shared store (with
    /// `store:`).
    pub shared_state_up: Option<bool>,
    pub store_up: Option<bool>,
    /// Each OpenTelemetry exporter's endpoint and counters.
    pub otlp: Vec<(String, OtlpCounts)>,
}

/// One OpenTelemetry exporter's counters, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct OtlpCounts {
    pub exported_spans: u64,
    pub rejected_spans: u64,
    pub dropped_spans: u64,
    pub failed_exports: u64,
    pub retried_exports: u64,
    pub dropped_records: u64,
}

impl OtlpCounts {
    pub fn read(s: &crate::telemetry::otlp::OtlpStats) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Self {
            exported_spans: s.exported_spans.load(Relaxed),
            rejected_spans: s.rejected_spans.load(Relaxed),
            dropped_spans: s.dropped_spans.load(Relaxed),
            failed_exports: s.failed_exports.load(Relaxed),
            retried_exports: s.retried_exports.load(Relaxed),
            dropped_records: s.dropped_records.load(Relaxed),
        }
    }
}

impl Snapshot {
    pub fn deployments_of(table: &RoutingTable) -> Vec<DeploymentGauges> {
        let now = now_ms();
        table
            .deployments()
            .map(|(alias, d)| {
                let h = d.health.snapshot(now);
                DeploymentGauges {
                    alias: alias.to_owned(),
                    deployment: d.id.to_string(),
                    in_flight: h.in_flight,
                    cooling: h.cooling,
                    cooldown_remaining_s: h.cooldown_left_ms as f64 / 1000.0,
                    consecutive_failures: h.consecutive_failures,
                    // The moving average never reaches exactly 0; print 0 rather than 1e-308.
                    recent_error_ratio: if h.error_rate < 1e-9 {
                        0.0
                    } else {
                        h.error_rate
                    },
                }
            })
            .collect()
    }
}

fn records_unit() -> Unit {
    Unit::Other("records".into())
}

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        /// A gauge family with one series per deployment behind an alias.
        fn per_deployment<V: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug>(
            encoder: &mut DescriptorEncoder,
            deployments: &[DeploymentGauges],
            (name, help, unit): (&str, &str, Option<Unit>),
            pick: fn(&DeploymentGauges) -> V,
        ) -> Result<(), std::fmt::Error> {
            if deployments.is_empty() {
                return Ok(());
            }
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for d in deployments {
                let labels = [
                    ("alias", d.alias.as_str()),
                    ("deployment", d.deployment.as_str()),
                ];
                ConstGauge::new(pick(d)).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        }
        let ds = &self.deployments;
        per_deployment(
            &mut encoder,
            ds,
            (
                "deployment_in_flight",
                "Requests in flight to the deployment.",
                Some(Unit::Other("requests".into())),
            ),
            |d| i64::from(d.in_flight),
        )?;
        per_deployment(
            &mut encoder,
            ds,
            (
                "deployment_cooling",
                "1 while the deployment is in cooldown (planned last), else 0.",
                None,
            ),
            |d| i64::from(d.cooling),
        )?;
        per_deployment(
            &mut encoder,
            ds,
            (
                "deployment_cooldown_remaining",
                "Time left in the deployment's cooldown.",
                Some(Unit::Seconds),
            ),
            |d| d.cooldown_remaining_s,
        )?;
        per_deployment(
            &mut encoder,
            ds,
            (
                "deployment_consecutive_failures",
                "Failed attempts in a row since the deployment's last success.",
                None,
            ),
            |d| i64::from(d.consecutive_failures),
        )?;
        per_deployment(
            &mut encoder,
            ds,
            (
                "deployment_recent_error",
                "Moving average of the deployment's attempt failures (0 to 1).",
                Some(Unit::Other("ratio".into())),
            ),
            |d| d.recent_error_ratio,
        )?;

        let r = &self.recorder;
        let unit = records_unit();
        ConstGauge::new(r.queue_depth as i64).encode(encoder.encode_descriptor(
            "recorder_queue_depth",
            "Request records waiting for the recorder's writer.",
            Some(&unit),
            MetricType::Gauge,
        )?)?;
        for (name, help, value) in [
            (
                "recorder_enqueued",
                "Request records handed to the recorder.",
                r.enqueued,
            ),
            (
                "recorder_written",
                "Request records written to the store.",
                r.written,
            ),
            (
                "recorder_spilled",
                "Request records spilled to the local file while the store was unavailable.",
                r.spilled,
            ),
            (
                "recorder_replayed",
                "Spilled request records written to the store after it recovered.",
                r.replayed,
            ),
            (
                "recorder_dropped",
                "Request records lost (queue full or spill file at its cap).",
                r.dropped,
            ),
            (
                "recorder_content_shed",
                "Request records queued without their prompt and response because the queue's byte bound was reached.",
                r.content_shed,
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                Some(&unit),
                MetricType::Counter,
            )?)?;
        }
        ConstGauge::new(i64::try_from(r.queued_bytes).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                "recorder_queue",
                "Bytes of request records waiting for the recorder's writer or being written.",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?,
        )?;
        ConstCounter::new(r.write_errors).encode(encoder.encode_descriptor(
            "recorder_write_errors",
            "Failed or timed-out writes of a batch of records to the store.",
            None,
            MetricType::Counter,
        )?)?;

        let (kept, kept_bytes) = self.kept_responses;
        ConstGauge::new(i64::try_from(kept).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                "kept_responses",
                "Responses API answers kept in memory for previous_response_id and retrieval.",
                None,
                MetricType::Gauge,
            )?,
        )?;
        ConstGauge::new(i64::try_from(kept_bytes).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                "kept_responses",
                "Memory the kept Responses API answers and their requests take.",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?,
        )?;

        for (up, name, help) in [
            (
                self.shared_state_up,
                "shared_state_up",
                "1 when this replica's last poll reached the Redis replicas share, else 0.",
            ),
            (
                self.store_up,
                "store_up",
                "1 when this replica's last poll reached the PostgreSQL store replicas share, else 0.",
            ),
        ] {
            if let Some(up) = up {
                ConstGauge::new(i64::from(up)).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Gauge,
                )?)?;
            }
        }

        if !self.otlp.is_empty() {
            type Family = (&'static str, &'static str, fn(&OtlpCounts) -> u64);
            let families: [Family; 6] = [
                (
                    "otlp_exported_spans",
                    "Spans an OpenTelemetry receiver accepted.",
                    |c| c.exported_spans,
                ),
                (
                    "otlp_rejected_spans",
                    "Spans an OpenTelemetry receiver reported as rejected.",
                    |c| c.rejected_spans,
                ),
                (
                    "otlp_dropped_spans",
                    "Spans lost with exports that failed after their retries, or were refused.",
                    |c| c.dropped_spans,
                ),
                (
                    "otlp_failed_exports",
                    "Trace exports that failed after their retries, or were refused.",
                    |c| c.failed_exports,
                ),
                (
                    "otlp_retried_exports",
                    "Trace exports sent again after a retryable failure.",
                    |c| c.retried_exports,
                ),
                (
                    "otlp_dropped_records",
                    "Request records never exported because the exporter's queue was full.",
                    |c| c.dropped_records,
                ),
            ];
            for (name, help, pick) in families {
                let mut family =
                    encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                // By place in the configuration too: two exporters to one endpoint (two
                // projects of one tracing service) are two series.
                for (i, (endpoint, counts)) in self.otlp.iter().enumerate() {
                    let exporter = i.to_string();
                    ConstCounter::new(pick(counts)).encode(family.encode_family(&[
                        ("endpoint", endpoint.as_str()),
                        ("exporter", exporter.as_str()),
                    ])?)?;
                }
            }
        }

        if let Some(questions) = self.semantic_questions {
            ConstGauge::new(i64::try_from(questions).unwrap_or(i64::MAX)).encode(
                encoder.encode_descriptor(
                    "semantic_cache_questions",
                    "Questions the semantic cache remembers (their embeddings and answers' keys).",
                    None,
                    MetricType::Gauge,
                )?,
            )?;
        }

        let a = &self.alerts;
        if !a.active.is_empty() {
            let mut family = encoder.encode_descriptor(
                "alerts_active",
                "Subjects (aliases or deployments) for which an alert rule is firing.",
                None,
                MetricType::Gauge,
            )?;
            for (rule, kind, n) in &a.active {
                let labels = [("rule", rule.as_str()), ("kind", *kind)];
                ConstGauge::new(*n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "alert_notifications",
            "Alert notifications by delivery result (failed: still failing after the retries).",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("delivered", a.notifications_delivered),
            ("failed", a.notifications_failed),
        ] {
            let labels = [("result", result)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

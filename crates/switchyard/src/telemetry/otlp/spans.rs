//! From request records to the protobuf body of an OTLP export request, with no IO: one
//! `CLIENT` span per request named `{gen_ai.operation.name} {gen_ai.request.model}` with the
//! GenAI attributes, the cost and the route decision, and one child span per upstream attempt.
//! Spans are written straight into the body ([`protobuf`](super::protobuf)), their text taken
//! from the record by reference.
//!
//! An attempt span is laid where the attempt started (the record's `offset_ms`); records from
//! before it was kept are laid out from the request's start in the order their attempts ran, a
//! hedged attempt placed to end with the attempt it raced. Usage and cost sit on the request span only, so backends that sum
//! them per span (Langfuse) count each request once.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::{Serialize, Serializer};

use super::protobuf::Writer;
use crate::config::Config;
use crate::routing::RoutingTable;
use crate::telemetry::genai as attr;
use crate::telemetry::record::{DecisionSummary, PromptMessage, Sampling};
use crate::telemetry::{Outcome, RequestRecord};

/// Longest text of one message part in captured content; the rest is cut.
const MAX_PART_BYTES: usize = 8 * 1024;
/// Most messages of a prompt in captured content (the latest are kept).
const MAX_MESSAGES: usize = 64;

/// W3C trace flag: sampled.
const FLAG_SAMPLED: u32 = 0x01;
/// OTLP span flags: whether the parent is remote is known (bit 8), and it is (bit 9).
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// What the configuration says about deployments and providers, which records name only by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Deployment id (`provider/model`) → the provider's model name.
    deployments: HashMap<String, String>,
    /// Provider name → how it is reported.
    providers: HashMap<String, ProviderInfo>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ProviderInfo {
    gen_ai_name: String,
    address: Option<String>,
    port: Option<u16>,
}

impl Catalog {
    pub fn build(config: &Config, table: &RoutingTable) -> Self {
        let mut catalog = Catalog::default();
        for p in &config.providers {
            catalog.add_provider(&p.name, &p.gen_ai_name, None);
        }
        // The routing table knows the resolved base URLs (the simulator's included).
        for alias in &table.aliases {
            let Some(route) = table.route(alias) else {
                continue;
            };
            for d in &route.deployments {
                catalog.add_deployment(&d.id, &d.model);
                if let Some(info) = catalog.providers.get_mut(&*d.provider.name) {
                    let (address, port) = host_port(&d.provider.base_url);
                    info.address = address;
                    info.port = port;
                }
            }
        }
        catalog
    }

    fn add_provider(&mut self, name: &str, gen_ai_name: &str, base_url: Option<&str>) {
        let (address, port) = base_url.map_or((None, None), host_port);
        self.providers.insert(
            name.to_owned(),
            ProviderInfo {
                gen_ai_name: gen_ai_name.to_owned(),
                address,
                port,
            },
        );
    }

    fn add_deployment(&mut self, id: &str, model: &str) {
        self.deployments.insert(id.to_owned(), model.to_owned());
    }
}

fn host_port(url: &str) -> (Option<String>, Option<u16>) {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let port = uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            });
            (uri.host().map(str::to_owned), port)
        }
        Err(_) => (None, None),
    }
}

/// Where span and trace ids come from (random in production, counted in tests).
pub trait Ids {
    fn trace_id(&mut self) -> [u8; 16];
    fn span_id(&mut self) -> [u8; 8];
}

pub struct RandomIds;

impl Ids for RandomIds {
    fn trace_id(&mut self) -> [u8; 16] {
        rand::random::<u128>().max(1).to_be_bytes()
    }
    fn span_id(&mut self) -> [u8; 8] {
        rand::random::<u64>().max(1).to_be_bytes()
    }
}

/// Field numbers of the OTLP messages written here (`opentelemetry/proto/collector/trace/v1`,
/// `trace/v1`, `common/v1`, `resource/v1`).
mod field {
    pub const EXPORT_RESOURCE_SPANS: u32 = 1;

    pub const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;

    pub const SCOPE_SPANS_SCOPE: u32 = 1;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SCOPE_SPANS_SCHEMA_URL: u32 = 3;

    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;

    pub const RESOURCE_ATTRIBUTES: u32 = 1;

    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_TRACE_STATE: u32 = 3;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_FLAGS: u32 = 16;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START_TIME: u32 = 7;
    pub const SPAN_END_TIME: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_STATUS: u32 = 15;

    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;

    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;

    pub const ANY_STRING: u32 = 1;
    pub const ANY_BOOL: u32 = 2;
    pub const ANY_INT: u32 = 3;
    pub const ANY_DOUBLE: u32 = 4;
    pub const ANY_ARRAY: u32 = 5;

    pub const ARRAY_VALUES: u32 = 1;
}

/// The attributes of one message, written as `KeyValue`s into its `field`.
struct Attrs<'w, 'b> {
    w: &'w mut Writer<'b>,
    field: u32,
}

impl Attrs<'_, '_> {
    /// One attribute; `value` writes the `AnyValue`'s one field.
    fn put(&mut self, key: &str, value: impl FnOnce(&mut Writer<'_>)) {
        self.w.nested(self.field, |kv| {
            kv.string(field::KEY_VALUE_KEY, key);
            kv.nested(field::KEY_VALUE_VALUE, value);
        });
    }
    fn str(&mut self, key: &str, value: &str) {
        self.put(key, |v| v.bytes_always(field::ANY_STRING, value.as_bytes()));
    }
    /// A string attribute whose text is `value` written as JSON.
    fn json(&mut self, key: &str, value: &impl Serialize) {
        self.put(key, |v| {
            v.nested(field::ANY_STRING, |s| {
                // Writing plain strings and sequences into a vector cannot fail.
                let _ = serde_json::to_writer(s.buffer(), value);
            });
        });
    }
    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.str(key, v);
        }
    }
    fn int(&mut self, key: &str, value: u64) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.put(key, |v| v.varint_always(field::ANY_INT, value as u64));
    }
    fn double(&mut self, key: &str, value: f64) {
        self.put(key, |v| v.double_always(field::ANY_DOUBLE, value));
    }
    fn bool(&mut self, key: &str, value: bool) {
        self.put(key, |v| v.bool_always(field::ANY_BOOL, value));
    }
    /// An array of strings, each the concatenation of its parts.
    fn strs<'s, const N: usize>(&mut self, key: &str, values: impl Iterator<Item = [&'s str; N]>) {
        self.put(key, |v| {
            v.nested(field::ANY_ARRAY, |array| {
                for parts in values {
                    array.nested(field::ARRAY_VALUES, |item| {
                        item.text_always(field::ANY_STRING, &parts);
                    });
                }
            });
        });
    }
}

/// Milliseconds (fractional) to nanoseconds, clamped at zero.
fn nanos(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1_000_000.0) as u64
    } else {
        0
    }
}

fn decode_hex<const N: usize>(hex_id: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_id, &mut out).ok()?;
    out.iter().any(|&b| b != 0).then_some(out)
}

/// Writes one `ExportTraceServiceRequest` holding the spans of `records` under `resource` (an
/// encoded `Resource`, see [`resource`]) into `out`; returns how many spans it holds.
pub fn export_request(
    out: &mut Vec<u8>,
    resource: &[u8],
    records: &[&RequestRecord],
    catalog: &Catalog,
    capture_content: bool,
    ids: &mut dyn Ids,
) -> u64 {
    let mut spans = Vec::new();
    let count = records
        .iter()
        .map(|r| append_spans(&mut spans, r, catalog, capture_content, ids))
        .sum();
    let (head, tail) = export_frame(resource, spans.len());
    out.reserve(head.len() + spans.len() + tail.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(&spans);
    out.extend_from_slice(&tail);
    count
}

/// Appends the spans of `record` to `spans` as the `spans` fields of a `ScopeSpans`, for
/// [`export_frame`] to make an export request of later; returns how many. A field's bytes are the
/// same wherever it stands, so records can be written as they come and let go.
pub fn append_spans(
    spans: &mut Vec<u8>,
    record: &RequestRecord,
    catalog: &Catalog,
    capture_content: bool,
    ids: &mut dyn Ids,
) -> u64 {
    record_spans(
        &mut Writer::new(spans),
        record,
        catalog,
        capture_content,
        ids,
    )
}

/// What goes before and after `spans_len` bytes of spans written by [`append_spans`] to make
/// them one `ExportTraceServiceRequest` under `resource`, so that the spans can be sent as
/// they were written, in pieces, without being copied into one body.
pub fn export_frame(resource: &[u8], spans_len: usize) -> (Vec<u8>, Vec<u8>) {
    let field_of = |write: &dyn Fn(&mut Writer<'_>)| {
        let mut out = Vec::new();
        write(&mut Writer::new(&mut out));
        out
    };
    let resource = field_of(&|w| w.nested(field::RESOURCE_SPANS_RESOURCE, |r| r.raw(resource)));
    let scope = field_of(&|w| {
        w.nested(field::SCOPE_SPANS_SCOPE, |scope| {
            scope.string(field::SCOPE_NAME, "switchyard");
            scope.string(field::SCOPE_VERSION, env!("CARGO_PKG_VERSION"));
        });
    });
    let scope_schema = field_of(&|w| w.string(field::SCOPE_SPANS_SCHEMA_URL, attr::SCHEMA_URL));
    let resource_schema =
        field_of(&|w| w.string(field::RESOURCE_SPANS_SCHEMA_URL, attr::SCHEMA_URL));
    let scope_spans_len = scope.len() + spans_len + scope_schema.len();
    let scope_spans_key = field_of(&|w| w.open(field::RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len));
    let resource_spans_len =
        resource.len() + scope_spans_key.len() + scope_spans_len + resource_schema.len();
    let mut head = Vec::new();
    let mut w = Writer::new(&mut head);
    w.open(field::EXPORT_RESOURCE_SPANS, resource_spans_len);
    w.raw(&resource);
    w.raw(&scope_spans_key);
    w.raw(&scope);
    let mut tail = scope_schema;
    tail.extend_from_slice(&resource_schema);
    (head, tail)
}

/// Writes the spans of one record, the request span first, then its attempts, as `spans`
/// fields of a `ScopeSpans`; returns how many. None when the caller's `traceparent` said the
/// trace is not sampled.
fn record_spans(
    w: &mut Writer<'_>,
    record: &RequestRecord,
    catalog: &Catalog,
    capture_content: bool,
    ids: &mut dyn Ids,
) -> u64 {
    let trace = record.trace.as_ref();
    if trace.is_some_and(|t| !t.sampled) {
        return 0;
    }
    let trace_id = trace
        .and_then(|t| decode_hex::<16>(&t.trace_id))
        .unwrap_or_else(|| ids.trace_id());
    let parent = trace
        .and_then(|t| t.parent_span_id.as_deref())
        .and_then(decode_hex::<8>);
    let trace_state = trace.and_then(|t| t.trace_state.as_deref());
    let span_id = ids.span_id();

    let op = if record.endpoint == "embeddings" {
        attr::OP_EMBEDDINGS
    } else {
        attr::OP_CHAT
    };
    let provider = record
        .provider
        .as_deref()
        .and_then(|p| catalog.providers.get(p));
    // The model sent upstream; where no provider was called (a refusal, a kept answer) the
    // client's name for it.
    let model = record
        .deployment
        .as_deref()
        .filter(|_| provider.is_some() && !record.cache_hit)
        .and_then(|d| catalog.deployments.get(d))
        .map_or(record.requested_model.as_str(), String::as_str);
    let error_type = request_error_type(record);
    let start = u64::try_from(record.started_at_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let end = start + nanos(record.duration_ms);
    let sampled = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;

    w.nested(field::SCOPE_SPANS_SPANS, |span| {
        span.bytes(field::SPAN_TRACE_ID, &trace_id);
        span.bytes(field::SPAN_SPAN_ID, &span_id);
        if let Some(state) = trace_state {
            span.string(field::SPAN_TRACE_STATE, state);
        }
        if let Some(p) = &parent {
            span.bytes(field::SPAN_PARENT_SPAN_ID, p);
        }
        // An inference span (CLIENT, `{operation} {model}`) only where a provider was called:
        // a request refused or answered before one was (a bad key, an unknown model, a budget,
        // the cache) is the gateway's own work, and its name carries no name the client made
        // up (one span name per made-up model would follow).
        if model.is_empty() || provider.is_none() {
            span.string(field::SPAN_NAME, op);
        } else {
            span.text_always(field::SPAN_NAME, &[op, " ", model]);
        }
        let kind = if provider.is_some() {
            SpanKind::Client
        } else {
            SpanKind::Internal
        };
        span.uint(field::SPAN_KIND, kind as u64);
        span.fixed64(field::SPAN_START_TIME, start);
        span.fixed64(field::SPAN_END_TIME, end);

        let mut a = Attrs {
            w: span,
            field: field::SPAN_ATTRIBUTES,
        };
        a.str(attr::OPERATION_NAME, op);
        if let Some(p) = provider {
            a.str(attr::PROVIDER_NAME, &p.gen_ai_name);
            a.str(attr::SYSTEM, &p.gen_ai_name);
            a.opt_str(attr::SERVER_ADDRESS, p.address.as_deref());
            if let Some(port) = p.port {
                a.int(attr::SERVER_PORT, u64::from(port));
            }
        }
        a.opt_str(attr::REQUEST_MODEL, Some(model));
        a.opt_str(attr::RESPONSE_MODEL, record.response_model.as_deref());
        a.opt_str(attr::RESPONSE_ID, record.response_id.as_deref());
        if op == attr::OP_CHAT {
            a.bool(attr::REQUEST_STREAM, record.stream);
        }
        if let Some(sampling) = &record.sampling {
            sampling_attributes(&mut a, sampling);
        }
        if let Some(reason) = &record.finish_reason {
            // One a choice: the answer's, then those of the further choices.
            a.strs(
                attr::RESPONSE_FINISH_REASONS,
                std::iter::once([reason.as_ref()])
                    .chain(record.more_finish_reasons.iter().map(|r| [*r])),
            );
        }
        if let Some(ttft) = record.ttft_ms {
            a.double(attr::RESPONSE_TIME_TO_FIRST_CHUNK, ttft / 1000.0);
        }
        if let Some(t) = record.tokens {
            a.int(attr::USAGE_INPUT_TOKENS, t.input);
            a.int(attr::USAGE_OUTPUT_TOKENS, t.output);
            if t.cache_read > 0 {
                a.int(attr::USAGE_CACHE_READ_INPUT_TOKENS, t.cache_read);
            }
            if t.cache_write > 0 {
                a.int(attr::USAGE_CACHE_CREATION_INPUT_TOKENS, t.cache_write);
            }
            if t.reasoning > 0 {
                a.int(attr::USAGE_REASONING_OUTPUT_TOKENS, t.reasoning);
            }
            if t.estimated {
                a.bool(attr::TOKENS_ESTIMATED, true);
            }
        }
        if let Some(nanos) = record.cost_nanos {
            a.double(attr::USAGE_COST, nanos as f64 / 1e9);
        }
        a.opt_str(attr::ERROR_TYPE, error_type.as_deref());

        a.str(attr::REQUEST_ID, &record.id);
        a.str(attr::INGRESS, &record.ingress);
        a.opt_str(attr::MODEL_ALIAS, Some(record.requested_model.as_str()));
        a.int(attr::STATUS_CODE, u64::from(record.status));
        a.str(attr::OUTCOME, record.outcome.as_str());
        a.opt_str(attr::PROVIDER, record.provider.as_deref());
        a.opt_str(attr::DEPLOYMENT, record.deployment.as_deref());
        a.int(attr::ATTEMPTS, record.attempts.len() as u64);
        if record.cache_hit {
            let cache = match record.tags.get("cache").and_then(|v| v.as_str()) {
                Some("semantic") => "semantic",
                _ => "exact",
            };
            a.str(attr::CACHE_HIT, cache);
        }
        a.opt_str(attr::ROUTE_ALIAS, record.alias.as_deref());
        // Read from the decision itself when the record carries it (every record of this
        // process), from its text otherwise (records replayed from the spill file).
        if let Some(decision) = &record.route_decision {
            route_summary(&DecisionSummary::of(decision), &mut a);
        } else if let Some(decision) = &record.decision {
            route_summary(&decision.summary(), &mut a);
        }
        a.opt_str(attr::VIRTUAL_KEY_ID, record.caller.key_id.as_deref());
        a.opt_str(attr::TEAM, record.caller.team.as_deref());
        a.opt_str(attr::ORG, record.caller.org.as_deref());
        a.opt_str(attr::CUSTOMER, record.customer.as_deref());
        a.opt_str(attr::CONFIG_NAME, record.config_name.as_deref());
        if let Some(v) = record.config_version {
            a.int(attr::CONFIG_VERSION, u64::from(v));
        }
        a.opt_str(attr::CONVERSATION_ID, record.session_id.as_deref());
        a.opt_str(attr::SESSION_ID, record.session_id.as_deref());
        a.opt_str(attr::EXPERIMENT_ID, record.experiment_id.as_deref());
        a.opt_str(attr::EXPERIMENT_VARIANT, record.variant.as_deref());
        if capture_content {
            if let Some(prompt) = &record.prompt {
                a.json(attr::INPUT_MESSAGES, &InputMessages(prompt));
            }
            if let Some(text) = &record.response {
                a.json(attr::OUTPUT_MESSAGES, &[output_message(text, record)]);
            }
        }
        status(span, error_type.as_deref(), record.error_code.as_deref());
        // Field 16, so last.
        span.fixed32(
            field::SPAN_FLAGS,
            if parent.is_some() {
                sampled | FLAG_IS_REMOTE
            } else {
                sampled
            },
        );
    });

    // Lay the attempts out in the order they ran (see the module comment).
    let mut cursor = start;
    let mut previous: Option<(u64, u64)> = None;
    for (i, at) in record.attempts.iter().enumerate() {
        let length = nanos(at.latency_ms);
        // Where it really started, when the record says; else laid after the one before.
        let begin = match (at.offset_ms, at.hedged, previous) {
            (Some(offset), ..) => start + nanos(offset),
            (None, true, Some((prev_start, prev_length))) => {
                prev_start + prev_length.saturating_sub(length)
            }
            _ => cursor,
        };
        cursor = cursor.max(begin + length);
        previous = Some((begin, length));
        let attempt_id = ids.span_id();
        // A hedge that lost the race was cancelled on purpose: not an error.
        let error = at.error_class.as_deref().filter(|_| !at.cancelled);

        w.nested(field::SCOPE_SPANS_SPANS, |span| {
            span.bytes(field::SPAN_TRACE_ID, &trace_id);
            span.bytes(field::SPAN_SPAN_ID, &attempt_id);
            if let Some(state) = trace_state {
                span.string(field::SPAN_TRACE_STATE, state);
            }
            span.bytes(field::SPAN_PARENT_SPAN_ID, &span_id);
            span.text_always(field::SPAN_NAME, &["attempt ", &at.deployment]);
            span.uint(field::SPAN_KIND, SpanKind::Client as u64);
            span.fixed64(field::SPAN_START_TIME, begin);
            span.fixed64(field::SPAN_END_TIME, begin + length);

            let mut a = Attrs {
                w: span,
                field: field::SPAN_ATTRIBUTES,
            };
            a.int(attr::ATTEMPT_INDEX, i as u64);
            a.str(attr::DEPLOYMENT, &at.deployment);
            a.str(attr::PROVIDER, &at.provider);
            a.str(attr::ROUTE_ALIAS, &at.alias);
            if let Some(m) = catalog.deployments.get(&*at.deployment) {
                a.str(attr::ATTEMPT_MODEL, m);
            }
            if let Some(p) = catalog.providers.get(&*at.provider) {
                a.opt_str(attr::SERVER_ADDRESS, p.address.as_deref());
                if let Some(port) = p.port {
                    a.int(attr::SERVER_PORT, u64::from(port));
                }
            }
            if let Some(s) = at.status {
                a.int(attr::HTTP_RESPONSE_STATUS_CODE, u64::from(s));
            }
            a.bool(attr::ATTEMPT_RETRY, at.retry);
            a.bool(attr::ATTEMPT_HEDGED, at.hedged);
            a.bool(attr::ATTEMPT_CANCELLED, at.cancelled);
            a.bool(attr::ATTEMPT_FELL_BACK, at.fell_back);
            a.opt_str(attr::ERROR_TYPE, error);
            status(span, error, None);
            span.fixed32(field::SPAN_FLAGS, sampled);
        });
    }
    1 + record.attempts.len() as u64
}

/// `error.type` of a failed request: the gateway's stable error code (documented and
/// low-cardinality), `cancelled` when the client went away.
fn request_error_type(record: &RequestRecord) -> Option<Cow<'_, str>> {
    match record.outcome {
        Outcome::Success => None,
        Outcome::Cancelled => Some(Cow::Borrowed("cancelled")),
        _ => Some(
            record
                .error_code
                .as_deref()
                .map_or_else(|| Cow::Owned(record.status.to_string()), Cow::Borrowed),
        ),
    }
}

/// A span's status: an error, with `message` or else the error type, or nothing (unset).
fn status(span: &mut Writer<'_>, error_type: Option<&str>, message: Option<&str>) {
    if let Some(e) = error_type {
        span.nested(field::SPAN_STATUS, |status| {
            status.string(field::STATUS_MESSAGE, message.unwrap_or(e));
            status.uint(field::STATUS_CODE, StatusCode::Error as u64);
        });
    }
}

/// The route decision as a few attributes: strategy, rule, the plan's order, what was skipped
/// and the fallbacks.
/// The request's sampling settings as the conventions' `gen_ai.request.*` attributes, each only
/// when the request gave it (`choice.count` only when not 1).
fn sampling_attributes(a: &mut Attrs<'_, '_>, s: &Sampling) {
    if let Some(n) = s.max_tokens {
        a.int(attr::REQUEST_MAX_TOKENS, n.into());
    }
    for (key, value) in [
        (attr::REQUEST_TEMPERATURE, s.temperature),
        (attr::REQUEST_TOP_P, s.top_p),
        (attr::REQUEST_TOP_K, s.top_k.map(f64::from)),
        (attr::REQUEST_FREQUENCY_PENALTY, s.frequency_penalty),
        (attr::REQUEST_PRESENCE_PENALTY, s.presence_penalty),
    ] {
        if let Some(value) = value {
            a.double(key, value);
        }
    }
    if let Some(seed) = s.seed {
        a.put(attr::REQUEST_SEED, |v| {
            v.varint_always(field::ANY_INT, seed as u64)
        });
    }
    if !s.stop_sequences.is_empty() {
        a.strs(
            attr::REQUEST_STOP_SEQUENCES,
            s.stop_sequences.iter().map(|stop| [stop.as_str()]),
        );
    }
    if let Some(n) = s.choices.filter(|n| *n != 1) {
        a.int(attr::REQUEST_CHOICE_COUNT, n.into());
    }
    a.opt_str(attr::OUTPUT_TYPE, s.output_type);
}

fn route_summary(d: &DecisionSummary<'_>, a: &mut Attrs<'_, '_>) {
    a.opt_str(attr::ROUTE_STRATEGY, d.strategy.as_deref());
    a.opt_str(attr::ROUTE_RULE, d.rule.as_deref());
    if !d.candidates.is_empty() {
        let candidates = d.candidates.iter().map(|c| [c.deployment.as_ref()]);
        a.strs(attr::ROUTE_CANDIDATES, candidates);
    }
    if !d.skipped.is_empty() {
        let skipped = d.skipped.iter().map(|s| {
            [
                s.deployment.as_ref(),
                ": ",
                s.reason.as_deref().unwrap_or(""),
            ]
        });
        a.strs(attr::ROUTE_SKIPPED, skipped);
    }
    if !d.fallbacks.is_empty() {
        let fallbacks = d.fallbacks.iter().map(|f| [f.as_ref()]);
        a.strs(attr::ROUTE_FALLBACKS, fallbacks);
    }
}

/// A message part's text, cut after [`MAX_PART_BYTES`].
fn cut(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_PART_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_PART_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[truncated]", &text[..end]))
}

/// One message in the conventions' input/output message schema, with one text part.
#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    parts: [TextPart<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct TextPart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    content: Cow<'a, str>,
}

fn text_message<'a>(
    role: &'a str,
    text: &'a str,
    finish_reason: Option<&'a str>,
) -> ChatMessage<'a> {
    ChatMessage {
        role,
        parts: [TextPart {
            kind: "text",
            content: cut(text),
        }],
        finish_reason,
    }
}

/// The record's prompt in the input-message schema (the latest [`MAX_MESSAGES`]).
struct InputMessages<'a>(&'a [PromptMessage]);

impl Serialize for InputMessages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let skip = self.0.len().saturating_sub(MAX_MESSAGES);
        serializer.collect_seq(
            self.0[skip..]
                .iter()
                .map(|m| text_message(&m.role, &m.content, None)),
        )
    }
}

fn output_message<'a>(text: &'a str, record: &'a RequestRecord) -> ChatMessage<'a> {
    let finish = record
        .finish_reason
        .as_deref()
        .unwrap_or(match record.outcome {
            Outcome::Success => "stop",
            _ => "error",
        });
    text_message("assistant", text, Some(finish))
}

/// The encoded `Resource` describing the exporting process: `service.name`, version and
/// configured attributes. Written once per exporter.
pub fn resource(service_name: &str, extra: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    let mut a = Attrs {
        w: &mut w,
        field: field::RESOURCE_ATTRIBUTES,
    };
    a.str(attr::SERVICE_NAME, service_name);
    a.str(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION"));
    for (k, v) in extra {
        a.str(k, v);
    }
    out
}

#[cfg(test)]
impl Catalog {
    pub(super) fn for_tests(
        providers: &[(&str, &str, &str)],
        deployments: &[(&str, &str)],
    ) -> Self {
        let mut c = Catalog::default();
        for (name, gen_ai, url) in providers {
            c.add_provider(name, gen_ai, Some(url));
        }
        for (id, model) in deployments {
            c.add_deployment(id, model);
        }
        c
    }
}

//! From a request record to OTLP spans, with no IO: one `CLIENT` span per request named
//! `{gen_ai.operation.name} {gen_ai.request.model}` with the GenAI attributes, the cost and the
//! route decision, and one child span per upstream attempt.
//!
//! The record keeps each attempt's duration but not its start, so attempt spans are laid out
//! from the request's start in the order they ran; a hedged attempt is placed to end with the
//! attempt it raced. Back-off pauses between retries are not recorded, so later attempts can
//! appear slightly early. Usage and cost sit on the request span only, so backends that sum
//! them per span (Langfuse) count each request once.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use serde_json::{Value, json};

use crate::config::Config;
use crate::routing::RoutingTable;
use crate::telemetry::genai as attr;
use crate::telemetry::record::{DecisionJson, PromptMessage};
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
                if let Some(info) = catalog.providers.get_mut(&d.provider.name) {
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

/// Attributes under construction.
#[derive(Default)]
struct Attrs(Vec<KeyValue>);

fn any(value: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

impl Attrs {
    fn put(&mut self, key: &str, value: any_value::Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: any(value),
            ..KeyValue::default()
        });
    }
    fn str(&mut self, key: &str, value: impl Into<String>) {
        self.put(key, any_value::Value::StringValue(value.into()));
    }
    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.str(key, v);
        }
    }
    fn int(&mut self, key: &str, value: u64) {
        self.put(
            key,
            any_value::Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }
    fn double(&mut self, key: &str, value: f64) {
        self.put(key, any_value::Value::DoubleValue(value));
    }
    fn bool(&mut self, key: &str, value: bool) {
        self.put(key, any_value::Value::BoolValue(value));
    }
    fn strs(&mut self, key: &str, values: Vec<String>) {
        let values = values
            .into_iter()
            .map(|v| AnyValue {
                value: Some(any_value::Value::StringValue(v)),
            })
            .collect();
        self.put(key, any_value::Value::ArrayValue(ArrayValue { values }));
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

/// The spans of one record: the request span first, then its attempts. Empty when the caller's
/// `traceparent` said the trace is not sampled.
pub fn record_spans(
    record: &RequestRecord,
    catalog: &Catalog,
    capture_content: bool,
    ids: &mut dyn Ids,
) -> Vec<Span> {
    let trace = record.trace.as_ref();
    if trace.is_some_and(|t| !t.sampled) {
        return Vec::new();
    }
    let trace_id = trace
        .and_then(|t| decode_hex::<16>(&t.trace_id))
        .unwrap_or_else(|| ids.trace_id());
    let parent = trace
        .and_then(|t| t.parent_span_id.as_deref())
        .and_then(decode_hex::<8>);
    let span_id = ids.span_id();

    let op = if record.endpoint == "embeddings" {
        attr::OP_EMBEDDINGS
    } else {
        attr::OP_CHAT
    };
    // The model sent upstream; before routing only the client's name for it is known.
    let model = record
        .deployment
        .as_deref()
        .and_then(|d| catalog.deployments.get(d))
        .map_or(record.requested_model.as_str(), String::as_str);
    let name = if model.is_empty() {
        op.to_owned()
    } else {
        format!("{op} {model}")
    };
    let provider = record
        .provider
        .as_deref()
        .and_then(|p| catalog.providers.get(p));

    let mut a = Attrs::default();
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
    if op == attr::OP_CHAT {
        a.bool(attr::REQUEST_STREAM, record.stream);
    }
    if let Some(reason) = &record.finish_reason {
        a.strs(attr::RESPONSE_FINISH_REASONS, vec![reason.clone()]);
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
    let error_type = request_error_type(record);
    a.opt_str(attr::ERROR_TYPE, error_type.as_deref());

    a.str(attr::REQUEST_ID, &record.id);
    a.str(attr::INGRESS, &*record.ingress);
    a.opt_str(attr::MODEL_ALIAS, Some(record.requested_model.as_str()));
    a.int(attr::STATUS_CODE, u64::from(record.status));
    a.str(attr::OUTCOME, record.outcome.as_str());
    a.opt_str(attr::PROVIDER, record.provider.as_deref());
    a.opt_str(attr::DEPLOYMENT, record.deployment.as_deref());
    a.int(attr::ATTEMPTS, record.attempts.len() as u64);
    a.opt_str(attr::ROUTE_ALIAS, record.alias.as_deref());
    if let Some(decision) = &record.decision {
        route_summary(decision, &mut a);
    }
    a.opt_str(attr::VIRTUAL_KEY_ID, record.caller.key_id.as_deref());
    a.opt_str(attr::TEAM, record.caller.team.as_deref());
    a.opt_str(attr::ORG, record.caller.org.as_deref());
    a.opt_str(attr::CUSTOMER, record.customer.as_deref());
    a.opt_str(attr::CONFIG_NAME, record.config_name.as_deref());
    if let Some(v) = record.config_version {
        a.int(attr::CONFIG_VERSION, u64::from(v));
    }
    a.opt_str(attr::EXPERIMENT_ID, record.experiment_id.as_deref());
    a.opt_str(attr::EXPERIMENT_VARIANT, record.variant.as_deref());
    if capture_content {
        if let Some(prompt) = &record.prompt {
            a.str(attr::INPUT_MESSAGES, input_messages(prompt));
        }
        if let Some(text) = &record.response {
            a.str(attr::OUTPUT_MESSAGES, output_messages(text, record));
        }
    }

    let start = u64::try_from(record.started_at_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let end = start + nanos(record.duration_ms);
    let sampled = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
    let mut spans = Vec::with_capacity(1 + record.attempts.len());
    spans.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: if parent.is_some() {
            sampled | FLAG_IS_REMOTE
        } else {
            sampled
        },
        name,
        kind: SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: a.0,
        status: status(error_type, record.error_code.as_deref()),
        ..Span::default()
    });

    // Lay the attempts out in the order they ran (see the module comment).
    let mut cursor = start;
    let mut previous: Option<(u64, u64)> = None;
    for (i, at) in record.attempts.iter().enumerate() {
        let length = nanos(at.latency_ms);
        let begin = match (at.hedged, previous) {
            (true, Some((prev_start, prev_length))) => {
                prev_start + prev_length.saturating_sub(length)
            }
            _ => cursor,
        };
        cursor = cursor.max(begin + length);
        previous = Some((begin, length));

        let mut a = Attrs::default();
        a.int(attr::ATTEMPT_INDEX, i as u64);
        a.str(attr::DEPLOYMENT, &at.deployment);
        a.str(attr::PROVIDER, &at.provider);
        a.str(attr::ROUTE_ALIAS, &at.alias);
        if let Some(m) = catalog.deployments.get(&at.deployment) {
            a.str(attr::ATTEMPT_MODEL, m);
        }
        if let Some(p) = catalog.providers.get(&at.provider) {
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
        // A hedge that lost the race was cancelled on purpose: not an error.
        let error = at.error_class.clone().filter(|_| !at.cancelled);
        a.opt_str(attr::ERROR_TYPE, error.as_deref());
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: ids.span_id().to_vec(),
            parent_span_id: span_id.to_vec(),
            flags: sampled,
            name: format!("attempt {}", at.deployment),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: begin,
            end_time_unix_nano: begin + length,
            attributes: a.0,
            status: status(error, None),
            ..Span::default()
        });
    }
    spans
}

/// `error.type` of a failed request: the gateway's stable error code (documented and
/// low-cardinality), `cancelled` when the client went away.
fn request_error_type(record: &RequestRecord) -> Option<String> {
    match record.outcome {
        Outcome::Success => None,
        Outcome::Cancelled => Some("cancelled".to_owned()),
        _ => Some(
            record
                .error_code
                .clone()
                .unwrap_or_else(|| record.status.to_string()),
        ),
    }
}

fn status(error_type: Option<String>, message: Option<&str>) -> Option<Status> {
    error_type.map(|e| Status {
        message: message.unwrap_or(&e).to_owned(),
        code: StatusCode::Error as i32,
    })
}

/// The route decision as a few attributes: strategy, rule, the plan's order, what was skipped
/// and the fallbacks.
fn route_summary(decision: &DecisionJson, a: &mut Attrs) {
    let d = decision.summary();
    a.opt_str(attr::ROUTE_STRATEGY, d.strategy.as_deref());
    a.opt_str(attr::ROUTE_RULE, d.rule.as_deref());
    if !d.candidates.is_empty() {
        let candidates = d.candidates.iter().map(|c| c.deployment.to_string());
        a.strs(attr::ROUTE_CANDIDATES, candidates.collect());
    }
    if !d.skipped.is_empty() {
        let skipped = d
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.deployment, s.reason.as_deref().unwrap_or("")));
        a.strs(attr::ROUTE_SKIPPED, skipped.collect());
    }
    if !d.fallbacks.is_empty() {
        let fallbacks = d.fallbacks.iter().map(|f| f.to_string());
        a.strs(attr::ROUTE_FALLBACKS, fallbacks.collect());
    }
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_PART_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_PART_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated]", &text[..end])
}

/// The record's prompt (`[{role, content}]`) in the conventions' input-message schema.
fn input_messages(messages: &[PromptMessage]) -> String {
    let skip = messages.len().saturating_sub(MAX_MESSAGES);
    let out: Vec<Value> = messages
        .iter()
        .skip(skip)
        .map(|m| {
            json!({
                "role": m.role,
                "parts": [{"type": "text", "content": cut(&m.content)}],
            })
        })
        .collect();
    Value::Array(out).to_string()
}

fn output_messages(text: &str, record: &RequestRecord) -> String {
    let finish = record
        .finish_reason
        .as_deref()
        .unwrap_or(match record.outcome {
            Outcome::Success => "stop",
            _ => "error",
        });
    json!([{
        "role": "assistant",
        "parts": [{"type": "text", "content": cut(text)}],
        "finish_reason": finish,
    }])
    .to_string()
}

/// What describes the exporting process: `service.name`, version and configured attributes.
pub fn resource(
    service_name: &str,
    extra: &std::collections::BTreeMap<String, String>,
) -> Resource {
    let mut a = Attrs::default();
    a.str(attr::SERVICE_NAME, service_name);
    a.str(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION"));
    for (k, v) in extra {
        a.str(k, v.as_str());
    }
    Resource {
        attributes: a.0,
        ..Resource::default()
    }
}

/// One `ResourceSpans` holding `spans` under the gateway's instrumentation scope.
pub fn resource_spans(resource: Resource, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(resource),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "switchyard".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..InstrumentationScope::default()
            }),
            spans,
            schema_url: attr::SCHEMA_URL.into(),
        }],
        schema_url: attr::SCHEMA_URL.into(),
    }
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

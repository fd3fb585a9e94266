use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value as V};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde_json::json;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::spans::{Catalog, Ids};
use super::*;
use crate::telemetry::trace_context::TraceContext;
use crate::telemetry::{AttemptRecord, Caller, Outcome, PromptMessage, TokenCounts};

/// Ids counting up from 1, so spans are predictable.
struct Counted(u64);

impl Ids for Counted {
    fn trace_id(&mut self) -> [u8; 16] {
        self.0 += 1;
        u128::from(self.0).to_be_bytes()
    }
    fn span_id(&mut self) -> [u8; 8] {
        self.0 += 1;
        self.0.to_be_bytes()
    }
}

fn catalog() -> Catalog {
    Catalog::for_tests(
        &[
            ("p-openai", "openai", "https://api.openai.com/v1"),
            ("p-backup", "anthropic", "http://127.0.0.1:9000"),
        ],
        &[
            ("p-openai/gpt-4o-mini", "gpt-4o-mini"),
            ("p-backup/claude-x", "claude-x"),
        ],
    )
}

fn record() -> RequestRecord {
    RequestRecord {
        id: "0190a0a0a0a0a0a0a0a0a0a0a0a0a0a0".into(),
        started_at_ms: 1_700_000_000_000,
        duration_ms: 250.0,
        ttft_ms: Some(40.0),
        ingress: "openai".into(),
        endpoint: "chat".into(),
        requested_model: "smart".into(),
        alias: Some("smart".into()),
        deployment: Some("p-openai/gpt-4o-mini".into()),
        provider: Some("p-openai".into()),
        stream: true,
        status: 200,
        outcome: Outcome::Success,
        error_code: None,
        error_message: None,
        caller: Caller {
            key_id: Some("key-1".into()),
            team: Some("research".into()),
            ..Caller::default()
        },
        customer: Some("cust-9".into()),
        tags: serde_json::Map::new(),
        decision: crate::telemetry::record::DecisionJson::of(&json!({
            "requested": "smart", "alias": "smart", "strategy": "weighted", "rule": "cheap-first",
            "candidates": [
                {"alias": "smart", "deployment": "p-backup/claude-x", "cooling": false},
                {"alias": "smart", "deployment": "p-openai/gpt-4o-mini", "cooling": false}
            ],
            "skipped": [{"alias": "smart", "deployment": "p-x/y", "reason": "no tools"}],
            "fallbacks": ["other"]
        })),
        attempts: vec![
            AttemptRecord {
                alias: "smart".into(),
                deployment: "p-backup/claude-x".into(),
                provider: "p-backup".into(),
                status: Some(429),
                error_class: Some("rate_limited".into()),
                latency_ms: 30.0,
                ..AttemptRecord::default()
            },
            AttemptRecord {
                alias: "smart".into(),
                deployment: "p-openai/gpt-4o-mini".into(),
                provider: "p-openai".into(),
                status: Some(200),
                latency_ms: 50.0,
                ..AttemptRecord::default()
            },
        ],
        tokens: Some(TokenCounts {
            input: 120,
            output: 30,
            cache_read: 100,
            cache_write: 0,
            cache_write_1h: 0,
            reasoning: 7,
            estimated: false,
        }),
        cost_nanos: Some(1_500_000),
        prompt: Some(vec![
            PromptMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            PromptMessage {
                role: "user".into(),
                content: "hi <EMAIL>".into(),
            },
        ]),
        response: Some("hello".into()),
        mask_pending: false,
        route_decision: None,
        queued_bytes: 0,
        trace: None,
        response_model: Some("gpt-4o-mini-2024-07-18".into()),
        finish_reason: Some("stop".into()),
        more_finish_reasons: Vec::new(),
        sampling: None,
        response_id: None,
        cache_hit: false,
        config_name: Some("support".into()),
        config_version: Some(3),
        experiment_id: Some("exp_1".into()),
        variant: Some("b".into()),
        assignment: Some("customer".into()),
        session_id: None,
    }
}

/// Decodes what the exporter writes, checking on the way that it is written exactly as prost
/// writes the same message.
fn decode(body: &[u8]) -> ExportTraceServiceRequest {
    let decoded = ExportTraceServiceRequest::decode(body).unwrap();
    assert_eq!(
        decoded.encode_to_vec(),
        body,
        "not written as prost writes it"
    );
    decoded
}

/// The spans of one record, as a receiver reads them.
fn record_spans(
    record: &RequestRecord,
    catalog: &Catalog,
    capture_content: bool,
    ids: &mut dyn Ids,
) -> Vec<Span> {
    let mut body = Vec::new();
    let resource = spans::resource("gw", &BTreeMap::new());
    let count = spans::export_request(
        &mut body,
        &resource,
        &[record],
        catalog,
        capture_content,
        ids,
    );
    let spans: Vec<Span> = decode(&body)
        .resource_spans
        .into_iter()
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect();
    assert_eq!(count, spans.len() as u64);
    spans
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a V> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn s<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(span, key) {
        Some(V::StringValue(v)) => v,
        other => panic!("{key}: {other:?}"),
    }
}

fn i(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(V::IntValue(v)) => *v,
        other => panic!("{key}: {other:?}"),
    }
}

fn strings(span: &Span, key: &str) -> Vec<String> {
    match attr(span, key) {
        Some(V::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(V::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn request_span_carries_the_genai_attributes() {
    let spans = record_spans(&record(), &catalog(), false, &mut Counted(0));
    assert_eq!(spans.len(), 3);
    let root = &spans[0];
    assert_eq!(root.name, "chat gpt-4o-mini");
    assert_eq!(root.kind, SpanKind::Client as i32);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(root.end_time_unix_nano, 1_700_000_000_250_000_000);
    assert!(root.status.is_none(), "success leaves the status unset");
    assert_eq!(s(root, "gen_ai.operation.name"), "chat");
    assert_eq!(s(root, "gen_ai.provider.name"), "openai");
    assert_eq!(s(root, "gen_ai.system"), "openai");
    assert_eq!(s(root, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(s(root, "gen_ai.response.model"), "gpt-4o-mini-2024-07-18");
    assert_eq!(strings(root, "gen_ai.response.finish_reasons"), ["stop"]);
    // A request without sampling settings has none of their attributes.
    for key in [
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop_sequences",
        "choice.count",
    ] {
        assert!(
            attr(root, &format!("gen_ai.request.{key}")).is_none(),
            "{key}"
        );
    }
    for key in [
        "gen_ai.output.type",
        "gen_ai.conversation.id",
        "session.id",
        "gen_ai.response.id",
    ] {
        assert!(attr(root, key).is_none(), "{key}");
    }
    assert_eq!(i(root, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(i(root, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(i(root, "gen_ai.usage.cache_read.input_tokens"), 100);
    assert!(attr(root, "gen_ai.usage.cache_creation.input_tokens").is_none());
    assert_eq!(i(root, "gen_ai.usage.reasoning.output_tokens"), 7);
    assert_eq!(
        attr(root, "gen_ai.usage.cost"),
        Some(&V::DoubleValue(0.0015))
    );
    assert_eq!(
        attr(root, "gen_ai.response.time_to_first_chunk"),
        Some(&V::DoubleValue(0.04))
    );
    assert_eq!(
        attr(root, "gen_ai.request.stream"),
        Some(&V::BoolValue(true))
    );
    assert_eq!(s(root, "server.address"), "api.openai.com");
    assert_eq!(i(root, "server.port"), 443);
    assert!(attr(root, "error.type").is_none());
    assert_eq!(s(root, "gateway.model.alias"), "smart");
    assert_eq!(s(root, "gateway.route.strategy"), "weighted");
    assert_eq!(s(root, "gateway.route.rule"), "cheap-first");
    assert_eq!(
        strings(root, "gateway.route.candidates"),
        ["p-backup/claude-x", "p-openai/gpt-4o-mini"]
    );
    assert_eq!(strings(root, "gateway.route.skipped"), ["p-x/y: no tools"]);
    assert_eq!(strings(root, "gateway.route.fallbacks"), ["other"]);
    assert_eq!(i(root, "gateway.attempts"), 2);
    assert_eq!(s(root, "gateway.virtual_key.id"), "key-1");
    assert_eq!(s(root, "gateway.customer"), "cust-9");
    assert_eq!(s(root, "gateway.config.name"), "support");
    assert_eq!(i(root, "gateway.config.version"), 3);
    assert_eq!(s(root, "gateway.experiment.id"), "exp_1");
    assert_eq!(s(root, "gateway.experiment.variant"), "b");
    // Content stays out unless asked for.
    assert!(attr(root, "gen_ai.input.messages").is_none());
    assert!(attr(root, "gen_ai.output.messages").is_none());
}

/// A record of this process carries its route decision beside the decision's text; the span
/// reads the decision itself and shows exactly what it shows from the text alone.
#[test]
fn the_route_reads_the_same_from_the_decision_as_from_its_text() {
    use crate::routing::{RouteDecision, ScoredCandidate, SkippedDeployment};
    let candidate = |deployment: &str| ScoredCandidate {
        alias: "smart".into(),
        deployment: deployment.into(),
        score: Some(0.5),
        cooling: false,
    };
    let decision = RouteDecision {
        requested: "smart".into(),
        alias: "smart".into(),
        rule: Some("cheap-first".into()),
        strategy: "weighted",
        candidates: vec![
            candidate("p-backup/claude-x"),
            candidate("p-openai/gpt-4o-mini"),
        ],
        skipped: vec![SkippedDeployment {
            alias: "smart".into(),
            deployment: "p-x/y".into(),
            reason: "no tools".into(),
        }],
        fallbacks: vec!["other".into()],
    };
    let mut carried = record();
    carried.decision = None;
    carried.route_decision = Some(Box::new(decision));
    crate::telemetry::prepare_record(&mut carried);
    assert!(
        carried.decision.is_some(),
        "the writer still writes the text"
    );
    let mut text_only = carried.clone();
    text_only.route_decision = None;
    let [from_decision, from_text] = [&carried, &text_only]
        .map(|r| record_spans(r, &catalog(), false, &mut Counted(0)).remove(0));
    for key in [
        "gateway.route.candidates",
        "gateway.route.skipped",
        "gateway.route.fallbacks",
    ] {
        assert_eq!(
            strings(&from_decision, key),
            strings(&from_text, key),
            "{key}"
        );
    }
    assert_eq!(s(&from_decision, "gateway.route.strategy"), "weighted");
    assert_eq!(s(&from_decision, "gateway.route.rule"), "cheap-first");
    assert_eq!(
        strings(&from_decision, "gateway.route.skipped"),
        ["p-x/y: no tools"]
    );
    assert_eq!(from_decision.attributes, from_text.attributes);
}

#[test]
fn attempts_are_children_laid_out_in_order() {
    let spans = record_spans(&record(), &catalog(), false, &mut Counted(0));
    let (root, failed, won) = (&spans[0], &spans[1], &spans[2]);
    for child in [failed, won] {
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.parent_span_id, root.span_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(child.kind, SpanKind::Client as i32);
    }
    assert_eq!(failed.name, "attempt p-backup/claude-x");
    assert_eq!(s(failed, "error.type"), "rate_limited");
    assert_eq!(i(failed, "http.response.status_code"), 429);
    assert_eq!(s(failed, "gateway.attempt.model"), "claude-x");
    assert_eq!(s(failed, "server.address"), "127.0.0.1");
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(won.name, "attempt p-openai/gpt-4o-mini");
    assert!(won.status.is_none());
    assert_eq!(failed.start_time_unix_nano, root.start_time_unix_nano);
    assert_eq!(won.start_time_unix_nano, failed.end_time_unix_nano);
    assert_eq!(
        won.end_time_unix_nano - won.start_time_unix_nano,
        50_000_000
    );
    // Usage and cost are counted once, on the request span.
    assert!(attr(won, "gen_ai.usage.input_tokens").is_none());
    assert!(attr(won, "gen_ai.usage.cost").is_none());
}

/// An attempt whose start the record kept is laid where it really started: a fallback after a
/// back-off starts later than the failure before it ended.
#[test]
fn an_attempt_is_laid_where_it_started() {
    let mut r = record();
    r.attempts[0].offset_ms = Some(0.0);
    r.attempts[1].offset_ms = Some(38.5);
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    let (root, failed, won) = (&spans[0], &spans[1], &spans[2]);
    assert_eq!(failed.start_time_unix_nano, root.start_time_unix_nano);
    assert_eq!(
        won.start_time_unix_nano - root.start_time_unix_nano,
        38_500_000
    );
    assert_eq!(
        won.end_time_unix_nano - won.start_time_unix_nano,
        50_000_000
    );
}

#[test]
fn a_hedge_ends_with_the_attempt_it_raced() {
    let mut r = record();
    r.attempts[0].latency_ms = 100.0;
    r.attempts[0].cancelled = true;
    r.attempts[0].error_class = Some("timeout".into());
    r.attempts[0].status = None;
    r.attempts[1].hedged = true;
    r.attempts[1].latency_ms = 40.0;
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    let (first, hedge) = (&spans[1], &spans[2]);
    assert_eq!(hedge.end_time_unix_nano, first.end_time_unix_nano);
    assert_eq!(
        hedge.start_time_unix_nano,
        first.start_time_unix_nano + 60_000_000
    );
    // Losing the race is no error.
    assert!(first.status.is_none());
    assert!(attr(first, "error.type").is_none());
    assert_eq!(
        attr(first, "gateway.attempt.cancelled"),
        Some(&V::BoolValue(true))
    );
}

#[test]
fn incoming_trace_context_is_honoured() {
    let mut r = record();
    r.trace =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    assert_eq!(
        hex::encode(&spans[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(hex::encode(&spans[0].parent_span_id), "00f067aa0ba902b7");
    assert_eq!(spans[0].flags, 0x301, "sampled, with a remote parent");
    assert_eq!(spans[1].flags, 0x101, "sampled, with a local parent");
    assert!(spans.iter().all(|s| s.trace_id == spans[0].trace_id));
    assert!(spans.iter().all(|s| s.trace_state.is_empty()));

    // The caller's tracestate is carried on by every span of the request.
    r.trace = Some(TraceContext::from_header_or_new(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("vendor=abc,other=1"),
    ));
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    assert!(spans.len() > 1);
    assert!(spans.iter().all(|s| s.trace_state == "vendor=abc,other=1"));
    // Without a valid traceparent there is no caller's state to carry.
    assert_eq!(
        TraceContext::from_header_or_new(None, Some("vendor=abc")).trace_state,
        None
    );

    // The caller decided not to sample this trace: nothing is exported.
    r.trace =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert!(record_spans(&r, &catalog(), false, &mut Counted(0)).is_empty());

    // A trace the gateway started has no parent.
    r.trace = Some(TraceContext::new_root());
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    assert_eq!(
        hex::encode(&spans[0].trace_id),
        r.trace
            .as_ref()
            .map(|t| t.trace_id.clone())
            .unwrap_or_default()
    );
    assert!(spans[0].parent_span_id.is_empty());
}

#[test]
fn failures_set_error_type_and_status() {
    let mut r = record();
    r.outcome = Outcome::UpstreamError;
    r.status = 502;
    r.error_code = Some("upstream_error".into());
    r.tokens = None;
    r.cost_nanos = None;
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    assert_eq!(s(&spans[0], "error.type"), "upstream_error");
    assert_eq!(i(&spans[0], "gateway.status_code"), 502);
    let status = spans[0].status.clone().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert!(attr(&spans[0], "gen_ai.usage.input_tokens").is_none());

    r.outcome = Outcome::Cancelled;
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    assert_eq!(s(&spans[0], "error.type"), "cancelled");
}

#[test]
fn a_request_refused_before_any_provider_is_the_gateways_own_span_named_by_its_operation() {
    let mut r = record();
    r.deployment = None;
    r.provider = None;
    r.attempts.clear();
    r.decision = None;
    r.requested_model = "unknown-model".into();
    r.endpoint = "embeddings".into();
    let spans = record_spans(&r, &catalog(), false, &mut Counted(0));
    assert_eq!(spans.len(), 1);
    // No made-up model in the name, and no inference span without a provider.
    assert_eq!(spans[0].name, "embeddings");
    assert_eq!(spans[0].kind, SpanKind::Internal as i32);
    assert_eq!(s(&spans[0], "gen_ai.request.model"), "unknown-model");
    assert!(attr(&spans[0], "gen_ai.provider.name").is_none());
    assert!(attr(&spans[0], "gen_ai.request.stream").is_none());
    // One a provider answered is an inference span.
    let answered = record_spans(&record(), &catalog(), false, &mut Counted(0));
    assert_eq!(answered[0].kind, SpanKind::Client as i32);
}

#[test]
fn content_is_captured_in_the_message_schema_when_asked() {
    let mut r = record();
    r.response = Some("é".repeat(10_000));
    let spans = record_spans(&r, &catalog(), true, &mut Counted(0));
    let input: serde_json::Value =
        serde_json::from_str(s(&spans[0], "gen_ai.input.messages")).unwrap();
    assert_eq!(
        input,
        json!([
            {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
            {"role": "user", "parts": [{"type": "text", "content": "hi <EMAIL>"}]}
        ])
    );
    let output: serde_json::Value =
        serde_json::from_str(s(&spans[0], "gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["finish_reason"], "stop");
    let text = output[0]["parts"][0]["content"].as_str().unwrap();
    assert!(
        text.ends_with("…[truncated]") && text.len() < 8300,
        "{}",
        text.len()
    );
}

#[test]
fn the_export_request_holds_resource_scope_and_every_record() {
    let mut extra = BTreeMap::new();
    extra.insert("deployment.environment.name".to_owned(), "test".to_owned());
    let resource = spans::resource("gw", &extra);
    let mut unsampled = record();
    unsampled.trace = Some(TraceContext {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        parent_span_id: None,
        sampled: false,
        trace_state: None,
    });
    let mut long = record();
    long.response = Some("x".repeat(100_000));
    let records = [&record(), &unsampled, &long];
    let mut body = Vec::new();
    let count = spans::export_request(
        &mut body,
        &resource,
        &records,
        &catalog(),
        true,
        &mut Counted(0),
    );
    assert_eq!(count, 6);
    let decoded = decode(&body);
    let rs = &decoded.resource_spans[0];
    assert_eq!(rs.schema_url, "https://opentelemetry.io/schemas/1.42.0");
    let attrs = &rs.resource.as_ref().unwrap().attributes;
    let value = |key: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    assert_eq!(value("service.name"), Some(V::StringValue("gw".into())));
    assert_eq!(
        value("deployment.environment.name"),
        Some(V::StringValue("test".into()))
    );
    let scope = &rs.scope_spans[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "switchyard");
    assert_eq!(scope.schema_url, rs.schema_url);
    let mut one_by_one = record_spans(&record(), &catalog(), true, &mut Counted(0));
    one_by_one.extend(record_spans(&long, &catalog(), true, &mut Counted(4)));
    assert_eq!(scope.spans, one_by_one);
}

fn otlp_file(endpoint: String) -> OtlpFile {
    serde_json::from_value(json!({"endpoint": endpoint, "timeout": "2s"})).unwrap()
}

const QUICK_RETRIES: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(10)];

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_then_counted() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let file = otlp_file(format!("http://127.0.0.1:{port}"));
    let mut exporter = Exporter::new(&file, Arc::new(catalog())).unwrap();
    exporter.retry_after = &QUICK_RETRIES;
    exporter.export(&[&record(), &record()]).await;
    exporter.export(&[&record()]).await;
    let stats = &exporter.stats;
    assert_eq!(stats.retried_exports.load(Ordering::Relaxed), 4);
    assert_eq!(stats.failed_exports.load(Ordering::Relaxed), 2);
    assert_eq!(stats.dropped_spans.load(Ordering::Relaxed), 9);
    assert_eq!(stats.exported_spans.load(Ordering::Relaxed), 0);
}

/// A collector that answers 503 while it restarts loses nothing: the export is sent again; a
/// refusal that will not change (400) is not.
#[tokio::test]
async fn a_retryable_failure_is_sent_again_and_a_refusal_is_not() {
    use axum::routing::post;
    use std::sync::atomic::AtomicUsize;
    let calls = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(vec![503u16, 200, 400]));
    let app = axum::Router::new().route(
        "/v1/traces",
        post({
            let (calls, statuses) = (calls.clone(), statuses.clone());
            move || {
                calls.fetch_add(1, Ordering::Relaxed);
                let status = statuses.lock().remove(0);
                async move { http::StatusCode::from_u16(status).unwrap() }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut exporter =
        Exporter::new(&otlp_file(format!("http://{addr}/")), Arc::new(catalog())).unwrap();
    exporter.retry_after = &QUICK_RETRIES;
    exporter.export(&[&record()]).await;
    let stats = exporter.stats.clone();
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(stats.exported_spans.load(Ordering::Relaxed), 3);
    assert_eq!(stats.retried_exports.load(Ordering::Relaxed), 1);
    exporter.export(&[&record()]).await;
    assert_eq!(calls.load(Ordering::Relaxed), 3, "a 400 is not sent again");
    assert_eq!(stats.failed_exports.load(Ordering::Relaxed), 1);
    assert_eq!(stats.dropped_spans.load(Ordering::Relaxed), 3);
    server.abort();
}

/// A receiver that closes the connection without answering (it is restarting) gets the batch
/// again, as the OTLP specification asks.
#[tokio::test]
async fn an_export_the_receiver_closed_unanswered_is_sent_again() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        for answer in [false, true] {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let _ = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await;
            if answer {
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
            drop(conn);
        }
    });
    let mut exporter =
        Exporter::new(&otlp_file(format!("http://{addr}/")), Arc::new(catalog())).unwrap();
    exporter.retry_after = &QUICK_RETRIES;
    exporter.export(&[&record()]).await;
    let stats = &exporter.stats;
    assert_eq!(stats.retried_exports.load(Ordering::Relaxed), 1);
    assert_eq!(stats.exported_spans.load(Ordering::Relaxed), 3);
    assert_eq!(stats.failed_exports.load(Ordering::Relaxed), 0);
    server.abort();
}

/// An OTLP receiver on a free port answering every export with `reply`; yields each request's
/// `authorization` header and body.
async fn receiver(
    reply: ExportTraceServiceResponse,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    JoinHandle<std::io::Result<()>>,
) {
    use axum::routing::post;
    let (tx, rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let tx = tx.clone();
            let reply = reply.encode_to_vec();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send((auth, body.to_vec()));
                (
                    [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                    reply,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx, server)
}

#[tokio::test]
async fn a_receiver_gets_protobuf_and_partial_success_is_counted() {
    let (addr, mut rx, server) = receiver(ExportTraceServiceResponse {
        partial_success: Some(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "one too many".into(),
            },
        ),
    })
    .await;

    let mut file = otlp_file(format!("http://{addr}/"));
    file.headers
        .insert("authorization".into(), Secret::new("Bearer t0ken".into()));
    let mut exporter = Exporter::new(&file, Arc::new(catalog())).unwrap();
    exporter.export(&[&record()]).await;
    let (auth, body) = rx.recv().await.unwrap();
    assert_eq!(auth, "Bearer t0ken");
    let request = decode(&body);
    let names: Vec<_> = request.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "chat gpt-4o-mini",
            "attempt p-backup/claude-x",
            "attempt p-openai/gpt-4o-mini"
        ]
    );
    assert_eq!(exporter.stats.exported_spans.load(Ordering::Relaxed), 2);
    assert_eq!(exporter.stats.rejected_spans.load(Ordering::Relaxed), 1);
    server.abort();
}

#[test]
fn the_throttle_lets_one_line_through_per_period() {
    let mut t = Throttle::new();
    assert_eq!(t.allow(), Some(0));
    assert_eq!(t.allow(), None);
    assert_eq!(t.allow(), None);
    t.last = Instant::now().checked_sub(LOG_EVERY);
    assert_eq!(t.allow(), Some(2));
}

/// An observer feeding `exporter`'s queue alone, `capacity` records long, and that queue.
fn queue_for(exporter: &Exporter, capacity: usize) -> (OtlpObserver, mpsc::Receiver<Queued>) {
    let (tx, rx) = mpsc::channel(8);
    let observer = OtlpObserver {
        queues: vec![Queue {
            tx,
            waiting: Arc::new(AtomicUsize::new(0)),
            capacity,
            url: exporter.url.clone(),
            stats: exporter.stats.clone(),
            full_log: Mutex::new(Throttle::new()),
        }],
    };
    (observer, rx)
}

/// A batch of records with these ids, as the recorder hands one over.
fn batch_of<S: AsRef<str>>(ids: &[S]) -> RecordBatch {
    Arc::new(
        ids.iter()
            .map(|id| RequestRecord {
                id: id.as_ref().into(),
                ..record()
            })
            .collect(),
    )
}

/// The ids of the records whose spans one export request holds, in order.
fn record_ids(body: &[u8]) -> Vec<String> {
    decode(body).resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .map(|span| s(span, "gateway.request.id").to_owned())
        .collect()
}

/// The record ids of each export request `rx` holds now.
fn requests_sent(rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>) -> Vec<Vec<String>> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|(_, body)| record_ids(&body))
        .collect()
}

#[tokio::test]
async fn the_queue_shares_batches_bounded_by_records_and_requests_hold_at_most_max_batch() {
    let (addr, mut rx, server) = receiver(ExportTraceServiceResponse::default()).await;
    let file = otlp_file(format!("http://{addr}"));
    let exporter = Exporter::new(&file, Arc::new(catalog())).unwrap();
    let stats = exporter.stats.clone();
    let (observer, queue_rx) = queue_for(&exporter, 5);
    let waiting = observer.queues[0].waiting.clone();
    // Two batches before the exporter runs: 3 records fit, then 2 of the next 4.
    let first = batch_of(&["first-0", "first-1", "first-2"]);
    let second = batch_of(&["second-0", "second-1", "second-2", "second-3"]);
    observer.observe(&first);
    observer.observe(&second);
    assert_eq!(waiting.load(Ordering::Relaxed), 5);
    assert_eq!(stats.dropped_records.load(Ordering::Relaxed), 2);
    // Shared, not copied: the queue holds the batches themselves.
    assert_eq!(Arc::strong_count(&second), 2);

    drop(observer);
    exporter
        .run(queue_rx, waiting.clone(), 2, Duration::ZERO)
        .await;
    assert_eq!(waiting.load(Ordering::Relaxed), 0);
    assert_eq!(Arc::strong_count(&second), 1);
    // Batches already waiting when a request is sent share the next one.
    assert_eq!(
        requests_sent(&mut rx),
        [
            vec!["first-0", "first-1"],
            vec!["first-2", "second-0"],
            vec!["second-1"]
        ]
    );
    assert_eq!(stats.exported_spans.load(Ordering::Relaxed), 15);
    server.abort();
}

#[tokio::test]
async fn records_gather_for_the_interval_unless_a_full_batch_waits_or_the_queue_closes() {
    let (addr, mut rx, server) = receiver(ExportTraceServiceResponse::default()).await;
    let file = otlp_file(format!("http://{addr}"));
    let exporter = Exporter::new(&file, Arc::new(catalog())).unwrap();
    let (observer, queue_rx) = queue_for(&exporter, 100);
    let waiting = observer.queues[0].waiting.clone();
    // An interval no test outlives: whatever is sent before the queue closes was sent for a
    // full batch or as the first request.
    let task = tokio::spawn(exporter.run(queue_rx, waiting.clone(), 3, Duration::from_secs(3600)));
    let settle = || tokio::time::sleep(Duration::from_millis(200));

    // The first request goes at once: no request came before it.
    observer.observe(&batch_of(&["a"]));
    let (_, first) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the first export is sent at once")
        .unwrap();
    assert_eq!(record_ids(&first), ["a"]);

    // Four records come, more than a batch: a full one goes without waiting for the interval,
    // the fourth record's spans wait.
    observer.observe(&batch_of(&["b"]));
    observer.observe(&batch_of(&["c0", "c1", "c2"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = Vec::new();
    while sent.is_empty() && Instant::now() < deadline {
        settle().await;
        sent.extend(requests_sent(&mut rx));
    }
    assert_eq!(sent, [vec!["b", "c0", "c1"]]);
    settle().await;
    assert!(
        requests_sent(&mut rx).is_empty(),
        "less than a batch waits for the interval"
    );

    // Taken from the queue and written out, a record no longer counts against its room.
    observer.observe(&batch_of(&["d"]));
    settle().await;
    assert!(requests_sent(&mut rx).is_empty());
    assert_eq!(waiting.load(Ordering::Relaxed), 0);
    // What waits goes as soon as the queue closes (shutdown), and the task ends after it.
    drop(observer);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("a closed queue ends the exporter without waiting for the interval")
        .unwrap();
    assert_eq!(requests_sent(&mut rx), [vec!["c2", "d"]]);
    server.abort();
}

#[tokio::test]
async fn spans_past_the_size_bound_are_sent_without_waiting_for_the_interval() {
    let (addr, mut rx, server) = receiver(ExportTraceServiceResponse::default()).await;
    let file = otlp_file(format!("http://{addr}"));
    let mut exporter = Exporter::new(&file, Arc::new(catalog())).unwrap();
    // Lower than the real bound, and more than two pieces: each body is sent in pieces.
    const BOUND: usize = 150 * 1024;
    exporter.send_at_bytes = BOUND;
    let (observer, queue_rx) = queue_for(&exporter, 1000);
    let task = tokio::spawn(exporter.run(
        queue_rx,
        observer.queues[0].waiting.clone(),
        10_000,
        Duration::from_secs(3600),
    ));
    let ids: Vec<String> = (0..400).map(|i| format!("r{i}")).collect();
    observer.observe(&batch_of(&ids));
    // Far fewer records than a batch, an interval no test outlives: only the size sends.
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bodies.extend(std::iter::from_fn(|| rx.try_recv().ok()).map(|(_, body)| body));
    }
    assert!(bodies.len() >= 2, "spans past the bound are sent at once");
    // Each request holds the records up to the one that took its spans past the bound, and
    // reads as prost writes it (`decode`, below) though it was sent in pieces.
    for body in &bodies {
        assert!(body.len() >= BOUND);
        assert!(body.len() < BOUND + 8 * 1024);
    }
    drop(observer);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    bodies.extend(std::iter::from_fn(|| rx.try_recv().ok()).map(|(_, body)| body));
    let sent: Vec<String> = bodies.iter().flat_map(|body| record_ids(body)).collect();
    assert_eq!(sent, ids, "every record once, in order");
    server.abort();
}

#[test]
fn the_last_holder_of_a_batch_hands_its_texts_back_whichever_it_is() {
    // The writer lets go first while the exporter still holds the batch, then the exporter.
    let batch: RecordBatch = Arc::new(vec![record()]);
    let exporter_share = batch.clone();
    assert!(!hand_back_batch(batch));
    assert!(hand_back_batch(exporter_share));
    // Both at once, from two threads: exactly one hands the texts back.
    for _ in 0..100 {
        let batch: RecordBatch = Arc::new(vec![record()]);
        let other = batch.clone();
        let theirs = std::thread::spawn(move || hand_back_batch(other));
        let ours = hand_back_batch(batch);
        assert!(ours ^ theirs.join().unwrap());
    }
}

/// The request's sampling settings become the conventions' `gen_ai.request.*` attributes, each
/// only when given (`choice.count` only when not 1), and an answer with several choices lists a
/// finish reason for each.
#[test]
fn sampling_settings_and_every_choices_finish_reason_are_attributes() {
    let several = RequestRecord {
        sampling: Some(Box::new(crate::telemetry::record::Sampling {
            max_tokens: Some(256),
            temperature: Some(0.25),
            top_p: Some(0.5),
            top_k: Some(40),
            frequency_penalty: None,
            presence_penalty: Some(-0.5),
            seed: Some(-7),
            stop_sequences: vec!["END".into(), "\n\n".into()],
            choices: Some(3),
            output_type: Some("json"),
        })),
        more_finish_reasons: vec!["length", "tool_calls"],
        session_id: Some("s-42".into()),
        response_id: Some("chatcmpl-9".into()),
        ..record()
    };
    let spans = record_spans(&several, &catalog(), false, &mut Counted(0));
    let root = &spans[0];
    assert_eq!(i(root, "gen_ai.request.max_tokens"), 256);
    assert_eq!(
        attr(root, "gen_ai.request.temperature"),
        Some(&V::DoubleValue(0.25))
    );
    assert_eq!(
        attr(root, "gen_ai.request.top_p"),
        Some(&V::DoubleValue(0.5))
    );
    assert_eq!(
        attr(root, "gen_ai.request.top_k"),
        Some(&V::DoubleValue(40.0))
    );
    assert!(attr(root, "gen_ai.request.frequency_penalty").is_none());
    assert_eq!(
        attr(root, "gen_ai.request.presence_penalty"),
        Some(&V::DoubleValue(-0.5))
    );
    assert_eq!(attr(root, "gen_ai.request.seed"), Some(&V::IntValue(-7)));
    assert_eq!(
        strings(root, "gen_ai.request.stop_sequences"),
        ["END", "\n\n"]
    );
    assert_eq!(i(root, "gen_ai.request.choice.count"), 3);
    assert_eq!(s(root, "gen_ai.output.type"), "json");
    assert_eq!(s(root, "gen_ai.conversation.id"), "s-42");
    assert_eq!(s(root, "session.id"), "s-42");
    assert_eq!(s(root, "gen_ai.response.id"), "chatcmpl-9");
    assert_eq!(
        strings(root, "gen_ai.response.finish_reasons"),
        ["stop", "length", "tool_calls"]
    );
    // One choice is the default, not an attribute.
    let one = RequestRecord {
        sampling: Some(Box::new(crate::telemetry::record::Sampling {
            choices: Some(1),
            ..Default::default()
        })),
        ..record()
    };
    let spans = record_spans(&one, &catalog(), false, &mut Counted(0));
    assert!(attr(&spans[0], "gen_ai.request.choice.count").is_none());
}

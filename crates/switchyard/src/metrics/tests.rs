use super::*;
use crate::telemetry::{AttemptRecord, Outcome, TokenCounts};

fn known() -> Known {
    Known {
        aliases: ["chat".to_owned()].into(),
        deployments: ["p/m".to_owned(), "p/backup".to_owned()].into(),
    }
}

pub fn record(
    alias: Option<&str>,
    deployment: Option<&str>,
    status: u16,
    outcome: Outcome,
) -> RequestRecord {
    RequestRecord {
        duration_ms: 200.0,
        requested_model: alias.unwrap_or("whatever").into(),
        alias: alias.map(Into::into),
        deployment: deployment.map(Into::into),
        provider: deployment.map(|_| "p".into()),
        status,
        outcome,
        ..RequestRecord::new(
            "0190a0a0a0a0a0a0a0a0a0a0a0a0a0a0".into(),
            1_700_000_000_000,
            "openai",
            "chat",
        )
    }
}

fn attempt(deployment: &str, error_class: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        alias: "chat".into(),
        deployment: deployment.into(),
        provider: "p".into(),
        status: Some(if error_class.is_some() { 500 } else { 200 }),
        error_class: error_class.map(str::to_owned),
        latency_ms: 50.0,
        ..AttemptRecord::default()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn records_become_labelled_counters_and_histograms() {
    let m = Metrics::new(known());
    let mut ok = record(Some("chat"), Some("p/m"), 200, Outcome::Success);
    ok.attempts = vec![
        attempt("p/backup", Some("server_error")),
        attempt("p/m", None),
    ];
    ok.tokens = Some(TokenCounts {
        input: 10,
        output: 20,
        cache_read: 4,
        reasoning: 5,
        ..TokenCounts::default()
    });
    ok.cost_nanos = Some(1_500);
    let mut streamed = record(Some("chat"), Some("p/m"), 200, Outcome::Success);
    streamed.stream = true;
    streamed.ttft_ms = Some(30.0);
    streamed.caller.team = Some("research".into());
    streamed.tokens = Some(TokenCounts {
        input: 1,
        output: 2,
        ..TokenCounts::default()
    });
    let mut unknown = record(Some("gpt-\"evil\"\n"), None, 404, Outcome::ClientError);
    unknown.error_code = Some("model_not_found".into());
    m.observe(&std::sync::Arc::new(vec![ok, streamed, unknown]));

    let text = m.render(Snapshot::default());
    let l = lines(&text);
    for expected in [
        r#"switchyard_requests_total{alias="chat",deployment="p/m",status="200",error_code="none",outcome="success",ingress="openai",stream="false"} 1"#,
        r#"switchyard_requests_total{alias="chat",deployment="p/m",status="200",error_code="none",outcome="success",ingress="openai",stream="true"} 1"#,
        r#"switchyard_requests_total{alias="unknown",deployment="none",status="404",error_code="model_not_found",outcome="client_error",ingress="openai",stream="false"} 1"#,
        r#"switchyard_upstream_attempts_total{deployment="p/backup",error_class="server_error"} 1"#,
        r#"switchyard_upstream_attempts_total{deployment="p/m",error_class="none"} 1"#,
        r#"switchyard_tokens_total{alias="chat",deployment="p/m",team="none",kind="input"} 10"#,
        r#"switchyard_tokens_total{alias="chat",deployment="p/m",team="none",kind="cache_read"} 4"#,
        r#"switchyard_tokens_total{alias="chat",deployment="p/m",team="none",kind="reasoning"} 5"#,
        r#"switchyard_tokens_total{alias="chat",deployment="p/m",team="research",kind="output"} 2"#,
        r#"switchyard_cost_nanodollars_total{alias="chat",deployment="p/m",team="none"} 1500"#,
        r#"switchyard_request_duration_seconds_count{alias="chat",deployment="p/m"} 2"#,
        r#"switchyard_time_to_first_token_seconds_count{alias="chat",deployment="p/m"} 1"#,
        "# TYPE switchyard_requests counter",
        "# TYPE switchyard_request_duration_seconds histogram",
        "# UNIT switchyard_request_duration_seconds seconds",
    ] {
        assert!(l.contains(&expected), "missing {expected} in\n{text}");
    }
    // Zero counts create no series, and the client's model string never becomes a label.
    assert!(!text.contains("cache_write"), "{text}");
    assert!(!text.contains("evil"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

/// A batch is counted per distinct set of values before it reaches the families: whatever it
/// repeats or mixes, the exposition is the one its records give one at a time.
#[test]
fn a_batch_counts_as_its_records_one_by_one() {
    let mut records = Vec::new();
    for i in 0..40_u32 {
        let alias = ["chat", "other-1", "other-2"][(i % 3) as usize];
        let deployment = [Some("p/m"), Some("p/backup"), None, Some("x/y")][(i % 4) as usize];
        let outcome = if i % 5 == 0 {
            Outcome::UpstreamError
        } else {
            Outcome::Success
        };
        let mut r = record(
            Some(alias),
            deployment,
            if i % 5 == 0 { 502 } else { 200 },
            outcome,
        );
        r.duration_ms = f64::from(i) * 7.5;
        r.ttft_ms = (i % 2 == 0).then_some(f64::from(i));
        r.stream = i % 2 == 0;
        r.error_code = (i % 5 == 0).then(|| "upstream_error".to_owned());
        r.caller.team = (i % 3 == 1).then(|| "t".into());
        r.attempts = vec![attempt("p/m", (i % 5 == 0).then_some("server_error"))];
        r.attempts[0].cancelled = i % 7 == 0;
        r.tokens = Some(TokenCounts {
            input: u64::from(i),
            output: u64::from(i % 4),
            cache_write: u64::from(i % 2),
            ..TokenCounts::default()
        });
        r.cost_nanos = Some(i64::from(i) * 10 - 50);
        records.push(r);
    }
    let batched = Metrics::new(known());
    batched.observe(&std::sync::Arc::new(records.clone()));
    let one_by_one = Metrics::new(known());
    for r in records {
        one_by_one.observe(&std::sync::Arc::new(vec![r]));
    }
    let (a, b) = (
        batched.render(Snapshot::default()),
        one_by_one.render(Snapshot::default()),
    );
    let (mut a, mut b) = (lines(&a), lines(&b));
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert!(a.iter().any(|l| l.contains("alias=\"unknown\"")));
}

#[test]
fn scrape_time_gauges_and_recorder_counters() {
    let m = Metrics::new(known());
    let snapshot = Snapshot {
        deployments: vec![DeploymentGauges {
            alias: "chat".into(),
            deployment: "p/m".into(),
            in_flight: 3,
            cooling: true,
            cooldown_remaining_s: 1.5,
            consecutive_failures: 4,
            recent_error_ratio: 0.25,
        }],
        recorder: RecorderCounts {
            queue_depth: 7,
            dropped: 2,
            write_errors: 1,
            ..RecorderCounts::default()
        },
        alerts: AlertCounts {
            active: vec![("errors".into(), "error_rate", 1)],
            notifications_delivered: 5,
            notifications_failed: 0,
        },
        kept_responses: (3, 4096),
        semantic_questions: Some(7),
        shared_state_up: Some(false),
        store_up: Some(true),
        otlp: vec![(
            "http://collector:4318/v1/traces".into(),
            OtlpCounts {
                exported_spans: 40,
                dropped_spans: 3,
                failed_exports: 1,
                retried_exports: 2,
                ..OtlpCounts::default()
            },
        )],
    };
    let text = m.render(snapshot);
    let l = lines(&text);
    for expected in [
        r#"switchyard_deployment_in_flight_requests{alias="chat",deployment="p/m"} 3"#,
        r#"switchyard_deployment_cooling{alias="chat",deployment="p/m"} 1"#,
        r#"switchyard_deployment_cooldown_remaining_seconds{alias="chat",deployment="p/m"} 1.5"#,
        r#"switchyard_deployment_consecutive_failures{alias="chat",deployment="p/m"} 4"#,
        r#"switchyard_deployment_recent_error_ratio{alias="chat",deployment="p/m"} 0.25"#,
        "switchyard_recorder_queue_depth_records 7",
        "switchyard_recorder_dropped_records_total 2",
        "switchyard_recorder_spilled_records_total 0",
        "switchyard_recorder_write_errors_total 1",
        "switchyard_kept_responses 3",
        "switchyard_kept_responses_bytes 4096",
        "switchyard_semantic_cache_questions 7",
        "switchyard_shared_state_up 0",
        "switchyard_store_up 1",
        r#"switchyard_otlp_exported_spans_total{endpoint="http://collector:4318/v1/traces",exporter="0"} 40"#,
        r#"switchyard_otlp_dropped_spans_total{endpoint="http://collector:4318/v1/traces",exporter="0"} 3"#,
        r#"switchyard_otlp_retried_exports_total{endpoint="http://collector:4318/v1/traces",exporter="0"} 2"#,
        r#"switchyard_otlp_dropped_records_total{endpoint="http://collector:4318/v1/traces",exporter="0"} 0"#,
        r#"switchyard_alerts_active{rule="errors",kind="error_rate"} 1"#,
        r#"switchyard_alert_notifications_total{result="delivered"} 5"#,
        "# TYPE switchyard_deployment_cooling gauge",
    ] {
        assert!(l.contains(&expected), "missing {expected} in\n{text}");
    }
    assert_eq!(text.matches("# EOF").count(), 1);
}

#[test]
fn free_text_never_becomes_a_label() {
    assert_eq!(code_label(Some("upstream_timeout")), "upstream_timeout");
    assert_eq!(code_label(Some("Bad Thing")), "other");
    // The ingresses' own names keep their hyphen.
    assert_eq!(code_label(Some("openai-responses")), "openai-responses");
    assert_eq!(code_label(Some("")), "other");
    assert_eq!(code_label(None), "none");
    let k = known();
    assert_eq!(k.alias(Some("chat")), "chat");
    assert_eq!(k.alias(Some("nope")), "unknown");
    assert_eq!(k.alias(None), "unknown");
    assert_eq!(k.deployment(None), "none");
    assert_eq!(k.deployment(Some("x/y")), "unknown");
}

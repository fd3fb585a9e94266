use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::config::{AlertKind, AlertRule, AlertScope, WebhookFormat};
use crate::telemetry::{AttemptRecord, Outcome, RequestRecord};

fn known() -> Known {
    Known {
        aliases: ["chat".to_owned()].into(),
        deployments: ["p/primary".to_owned(), "p/backup".to_owned()].into(),
    }
}

fn request(
    outcome: Outcome,
    status: u16,
    latency_ms: f64,
    attempts: &[(&str, Option<&str>)],
) -> RequestRecord {
    RequestRecord {
        duration_ms: latency_ms,
        requested_model: "chat".into(),
        alias: Some("chat".into()),
        deployment: attempts.last().map(|(d, _)| (*d).into()),
        status,
        outcome,
        attempts: attempts
            .iter()
            .map(|(d, class)| AttemptRecord {
                alias: "chat".into(),
                deployment: (*d).into(),
                provider: "p".into(),
                error_class: class.map(str::to_owned),
                latency_ms,
                ..AttemptRecord::default()
            })
            .collect(),
        ..RequestRecord::new("id".into(), 0, "openai", "chat")
    }
}

fn rule(kind: AlertKind, threshold: f64, min_requests: u64, window: Duration) -> AlertRule {
    AlertRule {
        name: crate::config::kind_name(kind).to_owned(),
        kind,
        threshold,
        min_requests,
        window,
        per: vec![AlertScope::Alias, AlertScope::Deployment],
        resolve_after: Duration::ZERO,
    }
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn window_sums_recent_slices_and_forgets_old_ones() {
    let w = Windows::new(known(), MIN, MIN);
    let ok = request(Outcome::Success, 200, 100.0, &[("p/primary", None)]);
    let failed = request(
        Outcome::UpstreamError,
        502,
        100.0,
        &[("p/primary", Some("server_error"))],
    );
    w.observe_at(&vec![ok.clone(); 30], 1_000);
    w.observe_at(&vec![failed; 10], 30_000);
    let s = w.stats(AlertScope::Alias, "chat", MIN, 30_000);
    assert_eq!((s.requests, s.errors), (40, 10));
    assert_eq!(s.error_rate(), Some(0.25));
    let d = w.stats(AlertScope::Deployment, "p/primary", MIN, 30_000);
    assert_eq!((d.requests, d.errors), (40, 10));

    // 70 s later the first batch has left the window, the second not yet.
    let s = w.stats(AlertScope::Alias, "chat", MIN, 71_000);
    assert_eq!((s.requests, s.errors), (10, 10));
    // After two minutes nothing is left, and pruning forgets the subject.
    w.prune(200_000);
    assert!(w.subjects(AlertScope::Alias).is_empty());
    assert_eq!(
        w.stats(AlertScope::Alias, "chat", MIN, 200_000),
        window::WindowStats::default()
    );
}

#[test]
fn a_subjects_memory_is_taken_at_its_first_request_and_never_grows() {
    let w = Windows::new(known(), MIN, MIN);
    let ok = request(Outcome::Success, 200, 100.0, &[("p/primary", None)]);
    w.observe_at(std::slice::from_ref(&ok), 0);
    let (held, room) = w.slices_held(AlertScope::Alias, "chat").unwrap();
    assert_eq!(held, 1);
    // A request every half second for five windows, never pruned: old slices go as new ones
    // come, and the deque keeps the room it was given.
    for t in 1..600u64 {
        w.observe_at(std::slice::from_ref(&ok), t * 500);
        let (held, now) = w.slices_held(AlertScope::Alias, "chat").unwrap();
        assert!(
            held <= room,
            "{held} slices in a deque with room for {room}"
        );
        assert_eq!(now, room, "the deque grew at {} ms", t * 500);
    }
    // The last minute still counts every request in it (120, one slice's worth more at most).
    let s = w.stats(AlertScope::Alias, "chat", MIN, 299_500);
    assert!((120..=122).contains(&s.requests), "{}", s.requests);
    let d = w.stats(AlertScope::Deployment, "p/primary", MIN, 299_500);
    assert_eq!(d.requests, s.requests);
}

#[test]
fn client_faults_and_lost_hedges_do_not_count() {
    let w = Windows::new(known(), MIN, MIN);
    let mut hedge = request(
        Outcome::Success,
        200,
        100.0,
        &[("p/primary", None), ("p/backup", None)],
    );
    hedge.attempts[1].cancelled = true;
    w.observe_at(
        &[
            request(Outcome::ClientError, 400, 1.0, &[]),
            request(Outcome::Cancelled, 499, 1.0, &[("p/primary", None)]),
            // The provider refused the request itself: not the service's fault.
            request(
                Outcome::UpstreamError,
                400,
                1.0,
                &[("p/primary", Some("context_window_exceeded"))],
            ),
            request(
                Outcome::UpstreamError,
                429,
                1.0,
                &[("p/primary", Some("rate_limited"))],
            ),
            hedge,
        ],
        1_000,
    );
    let s = w.stats(AlertScope::Alias, "chat", MIN, 1_000);
    assert_eq!((s.requests, s.errors), (3, 1));
    let d = w.stats(AlertScope::Deployment, "p/primary", MIN, 1_000);
    // The cancelled request's attempt still tells about the deployment; the lost hedge does not.
    assert_eq!((d.requests, d.errors), (4, 1));
    assert_eq!(
        w.stats(AlertScope::Deployment, "p/backup", MIN, 1_000)
            .requests,
        0
    );
}

#[test]
fn p99_is_close_and_never_above_the_slowest() {
    let w = Windows::new(known(), MIN, MIN);
    let mut batch = vec![request(Outcome::Success, 200, 100.0, &[]); 99];
    batch.push(request(Outcome::Success, 200, 5_000.0, &[]));
    w.observe_at(&batch, 1_000);
    let p99 = w
        .stats(AlertScope::Alias, "chat", MIN, 1_000)
        .p99_ms
        .unwrap();
    assert!((100.0..=115.0).contains(&p99), "{p99}");
    w.observe_at(
        &vec![request(Outcome::Success, 200, 3_000.0, &[]); 10],
        2_000,
    );
    let p99 = w
        .stats(AlertScope::Alias, "chat", MIN, 2_000)
        .p99_ms
        .unwrap();
    assert!((3_000.0..=3_450.0).contains(&p99), "{p99}");
    let w = Windows::new(known(), MIN, MIN);
    w.observe_at(&[request(Outcome::Success, 200, 1234.0, &[])], 0);
    assert_eq!(
        w.stats(AlertScope::Alias, "chat", MIN, 0).p99_ms,
        Some(1234.0)
    );
}

#[test]
fn error_rate_fires_once_and_resolves_once() {
    let w = Windows::new(known(), MIN, MIN);
    let rules = vec![rule(AlertKind::ErrorRate, 0.05, 20, MIN)];
    let mut state = State::default();
    let failed = request(
        Outcome::UpstreamError,
        502,
        10.0,
        &[("p/primary", Some("server_error"))],
    );
    let ok = request(Outcome::Success, 200, 10.0, &[("p/primary", None)]);

    // Below the minimum request count nothing fires, however bad.
    w.observe_at(&vec![failed.clone(); 10], 1_000);
    let notes = state.apply(
        &rules,
        rules::evaluate(&rules, &w, &[], &[], 1_000),
        1_000_000,
    );
    assert!(notes.is_empty(), "{notes:?}");

    w.observe_at(&vec![failed; 10], 2_000);
    w.observe_at(&vec![ok.clone(); 20], 2_000);
    let notes = state.apply(
        &rules,
        rules::evaluate(&rules, &w, &[], &[], 2_000),
        1_002_000,
    );
    let subjects: Vec<(&str, &str, Status)> = notes
        .iter()
        .map(|n| (n.scope, n.subject.as_str(), n.status))
        .collect();
    assert_eq!(
        subjects,
        [
            ("alias", "chat", Status::Firing),
            ("deployment", "p/primary", Status::Firing)
        ]
    );
    assert_eq!(notes[0].value, Some(0.5));
    assert_eq!(notes[0].requests, Some(40));
    assert_eq!(notes[0].errors, Some(20));
    assert_eq!(notes[0].since, "1970-01-01T00:16:42Z");

    // Still failing: no second notification, the value is refreshed.
    let notes = state.apply(
        &rules,
        rules::evaluate(&rules, &w, &[], &[], 3_000),
        1_003_000,
    );
    assert!(notes.is_empty());
    assert_eq!(state.active().count(), 2);

    // Traffic recovers: enough successes bring the rate under the threshold.
    w.observe_at(&vec![ok; 400], 4_000);
    let notes = state.apply(
        &rules,
        rules::evaluate(&rules, &w, &[], &[], 4_000),
        1_004_000,
    );
    assert_eq!(notes.len(), 2);
    assert!(notes.iter().all(|n| n.status == Status::Resolved));
    assert_eq!(
        notes[0].resolved_at.as_deref(),
        Some("1970-01-01T00:16:44Z")
    );
    assert_eq!(state.active().count(), 0);
    assert!(
        state
            .apply(
                &rules,
                rules::evaluate(&rules, &w, &[], &[], 5_000),
                1_005_000
            )
            .is_empty()
    );
}

#[test]
fn an_empty_window_resolves_with_no_value() {
    let w = Windows::new(known(), MIN, MIN);
    let mut r = rule(AlertKind::ErrorRate, 0.05, 1, MIN);
    r.per = vec![AlertScope::Alias];
    let rules = vec![r];
    let mut state = State::default();
    w.observe_at(&[request(Outcome::StreamError, 200, 10.0, &[])], 0);
    assert_eq!(
        state
            .apply(&rules, rules::evaluate(&rules, &w, &[], &[], 0), 0)
            .len(),
        1
    );
    w.prune(500_000);
    let notes = state.apply(
        &rules,
        rules::evaluate(&rules, &w, &[], &[], 500_000),
        500_000,
    );
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].status, Status::Resolved);
    assert_eq!(notes[0].value, None);
    assert!(
        notes[0].summary.contains("had no requests"),
        "{}",
        notes[0].summary
    );
}

#[test]
fn latency_rule_uses_its_threshold_in_milliseconds() {
    let w = Windows::new(known(), MIN, MIN);
    let mut r = rule(AlertKind::LatencyP99, 2000.0, 5, MIN);
    r.per = vec![AlertScope::Deployment];
    let rules = vec![r];
    w.observe_at(
        &vec![request(Outcome::Success, 200, 2500.0, &[("p/backup", None)]); 5],
        0,
    );
    let findings = rules::evaluate(&rules, &w, &[], &[], 0);
    assert_eq!(findings.len(), 1);
    assert!(findings[0].firing);
    assert_eq!(findings[0].value, Some(2500.0));
    assert_eq!(findings[0].subject, "p/backup");
}

#[test]
fn cooldown_fires_per_deployment_and_budgets_fire_over_their_threshold() {
    let w = Windows::new(known(), MIN, MIN);
    let mut cooldown = rule(AlertKind::DeploymentCooldown, 0.0, 0, MIN);
    cooldown.per = vec![AlertScope::Deployment];
    let mut budget = rule(AlertKind::BudgetUtilisation, 0.8, 0, MIN);
    budget.per = vec![AlertScope::Key, AlertScope::Team];
    let rules = vec![cooldown, budget];
    let cooling = [
        Cooling {
            deployment: "p/primary".into(),
            remaining_s: 3.0,
        },
        Cooling {
            deployment: "p/primary".into(),
            remaining_s: 7.0,
        },
    ];
    let mut state = State::default();
    let notes = state.apply(&rules, rules::evaluate(&rules, &w, &cooling, &[], 0), 0);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, "deployment_cooldown");
    assert_eq!(notes[0].value, Some(7.0));
    assert_eq!(
        notes[0].summary,
        "deployment p/primary is in cooldown (7 s left): it is tried only after the other deployments"
    );
    let notes = state.apply(&rules, rules::evaluate(&rules, &w, &[], &[], 1_000), 1_000);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].summary, "deployment p/primary is out of cooldown");
    let budgets = [
        rules::BudgetUse {
            scope: AlertScope::Key,
            subject: "key_a".into(),
            ratio: 0.85,
            threshold: None,
        },
        rules::BudgetUse {
            scope: AlertScope::Team,
            subject: "team_b".into(),
            ratio: 0.5,
            threshold: None,
        },
        rules::BudgetUse {
            scope: AlertScope::Key,
            subject: "key_soft".into(),
            ratio: 0.5,
            threshold: Some(0.4),
        },
    ];
    let notes = state.apply(
        &rules,
        rules::evaluate(&rules, &w, &[], &budgets, 2_000),
        2_000,
    );
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(
        (notes[0].kind, notes[0].subject.as_str()),
        ("budget_utilisation", "key_a")
    );
    // A key's soft budget replaces the rule's threshold for it.
    assert_eq!(
        (notes[1].subject.as_str(), notes[1].threshold),
        ("key_soft", 0.4)
    );
    assert!(
        notes[1].summary.ends_with("above 40.0%"),
        "{}",
        notes[1].summary
    );
    // Still above: no second notification within the period.
    assert!(
        state
            .apply(
                &rules,
                rules::evaluate(&rules, &w, &[], &budgets, 3_000),
                3_000
            )
            .is_empty()
    );
}

fn firing_note() -> Notification {
    let rules = [rule(
        AlertKind::ErrorRate,
        0.05,
        20,
        Duration::from_secs(300),
    )];
    let alert = ActiveAlert {
        rule: "error_rate".into(),
        kind: "error_rate",
        scope: "deployment",
        subject: "p/primary".into(),
        value: Some(0.45),
        threshold: 0.05,
        requests: Some(40),
        errors: Some(18),
        window: Some("5m".into()),
        since_ms: 1_764_450_000_000,
    };
    Notification::new(Status::Firing, &rules[0], &alert, None)
}

#[test]
fn slack_text_says_what_fired_and_since_when() {
    let n = firing_note();
    assert_eq!(
        n.slack_text(),
        ":rotating_light: *[FIRING]* `error_rate`: error rate of deployment p/primary is 45.0% over the last 5m (18 of 40 attempts failed), above 5.0% (since 2025-11-29T21:00:00Z)"
    );
    let body: Value = serde_json::from_slice(&n.body(WebhookFormat::Slack)).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1);
    assert_eq!(body["text"], n.slack_text());

    let rules = [rule(
        AlertKind::ErrorRate,
        0.05,
        20,
        Duration::from_secs(300),
    )];
    let alert = ActiveAlert {
        rule: "error_rate".into(),
        kind: "error_rate",
        scope: "deployment",
        subject: "p/primary".into(),
        value: Some(0.0),
        threshold: 0.05,
        requests: Some(40),
        errors: Some(0),
        window: Some("5m".into()),
        since_ms: 1_764_450_000_000,
    };
    let resolved = Notification::new(Status::Resolved, &rules[0], &alert, Some(1_764_450_125_000));
    assert_eq!(
        resolved.slack_text(),
        ":white_check_mark: *[RESOLVED]* `error_rate`: error rate of deployment p/primary is 0.0% over the last 5m, back within 5.0% after 2m 5s"
    );
    // Resolved because the window holds too few requests to judge: not said to be healthy.
    let starved = ActiveAlert {
        value: Some(1.0),
        requests: Some(4),
        errors: Some(4),
        ..alert
    };
    let resolved = Notification::new(
        Status::Resolved,
        &rules[0],
        &starved,
        Some(1_764_450_125_000),
    );
    assert_eq!(
        resolved.summary,
        "error rate of deployment p/primary is 100.0% over the last 5m, but from only 4 requests, fewer than the 20 it takes to judge: resolved for want of traffic, not back within 5.0%"
    );
}

#[test]
fn json_body_has_the_documented_fields() {
    let body: Value = serde_json::from_slice(&firing_note().body(WebhookFormat::Json)).unwrap();
    assert_eq!(body["status"], "firing");
    assert_eq!(body["rule"], "error_rate");
    assert_eq!(body["kind"], "error_rate");
    assert_eq!(body["scope"], "deployment");
    assert_eq!(body["subject"], "p/primary");
    assert_eq!(body["value"], 0.45);
    assert_eq!(body["threshold"], 0.05);
    assert_eq!(body["unit"], "ratio");
    assert_eq!(body["requests"], 40);
    assert_eq!(body["errors"], 18);
    assert_eq!(body["window"], "5m");
    assert_eq!(body["since"], "2025-11-29T21:00:00Z");
    assert!(body.get("resolved_at").is_none());
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .starts_with("error rate of deployment p/primary")
    );
}

#[test]
fn alerts_config_defaults_and_errors() {
    let base = "server: {master_key: k}\nproviders: [{name: p, kind: simulator}]\nmodels: [{alias: a, deployments: [{provider: p, model: m}]}]\n";
    let c = crate::config::load(base, &|_| None).unwrap();
    let kinds: Vec<AlertKind> = c.alerts.rules.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::ErrorRate,
            AlertKind::LatencyP99,
            AlertKind::DeploymentCooldown,
            AlertKind::BudgetUtilisation
        ]
    );
    assert_eq!(c.alerts.interval, Duration::from_secs(10));
    assert_eq!(c.alerts.rules[0].threshold, 0.05);
    assert_eq!(c.alerts.rules[0].min_requests, 20);
    assert_eq!(c.alerts.rules[0].window, Duration::from_secs(300));
    assert_eq!(c.alerts.rules[1].threshold, 2000.0);
    assert_eq!(c.alerts.rules[2].per, [AlertScope::Deployment]);

    let text = format!(
        "{base}alerts:\n  interval: 200ms\n  window: 2s\n  webhooks: [{{url: 'https://hooks.example/T0/secret', format: slack}}]\n  rules:\n    - {{kind: error_rate, threshold: 0.5, per: [deployment]}}\n    - {{kind: budget_utilization}}\n"
    );
    let c = crate::config::load(&text, &|_| None).unwrap();
    assert_eq!(c.alerts.interval, Duration::from_millis(200));
    assert_eq!(c.alerts.rules[0].per, [AlertScope::Deployment]);
    assert_eq!(c.alerts.rules[0].window, Duration::from_secs(2));
    assert_eq!(c.alerts.rules[1].kind, AlertKind::BudgetUtilisation);
    assert_eq!(c.alerts.rules[1].threshold, 0.8);
    assert_eq!(c.alerts.webhooks[0].format, WebhookFormat::Slack);
    assert!(!format!("{:?}", c.alerts).contains("secret"));

    let bad = format!(
        "{base}alerts:\n  webhooks: [{{url: 'ftp://x/secret'}}]\n  rules:\n    - {{kind: error_rate, threshold: 5}}\n    - {{kind: error_rate}}\n    - {{kind: deployment_cooldown, per: [alias], threshold: 1}}\n"
    );
    let errors = crate::config::load(&bad, &|_| None).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for path in [
        "alerts.webhooks[0].url",
        "alerts.rules[0].threshold",
        "alerts.rules[1].name",
        "alerts.rules[2].threshold",
        "alerts.rules[2].per[0]",
    ] {
        assert!(
            text.iter().any(|e| e.starts_with(path)),
            "{path} missing from {text:?}"
        );
    }
    assert!(!text.iter().any(|e| e.contains("secret")), "{text:?}");
}

/// A deployment cooling again and again (or a rate hovering at its threshold) is one alert: it
/// resolves only once back within bounds for the rule's `resolve_after`, and keeps its `since`.
#[test]
fn an_alert_that_flaps_stays_one_alert_until_it_has_been_quiet_long_enough() {
    let mut r = rule(AlertKind::DeploymentCooldown, 0.0, 1, MIN);
    r.per = vec![AlertScope::Deployment];
    r.resolve_after = Duration::from_secs(60);
    let rules = vec![r];
    let w = Windows::new(known(), MIN, MIN);
    let cooling = [Cooling {
        deployment: "p/primary".into(),
        remaining_s: 5.0,
    }];
    let mut state = State::default();
    let mut at = |cooling: &[Cooling], now: i64| {
        state.apply(&rules, rules::evaluate(&rules, &w, cooling, &[], 0), now)
    };
    let notes = at(&cooling, 1_000_000);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].status, Status::Firing);
    // Out of cooldown for a moment, cooling again: nothing said.
    assert!(at(&[], 1_002_000).is_empty());
    assert!(at(&cooling, 1_004_000).is_empty());
    assert!(at(&[], 1_010_000).is_empty());
    assert!(at(&[], 1_069_000).is_empty());
    // A minute out of cooldown: resolved, once.
    let notes = at(&[], 1_070_000);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].status, Status::Resolved);
    assert_eq!(notes[0].since, "1970-01-01T00:16:40Z");
    assert!(at(&[], 1_080_000).is_empty());
}

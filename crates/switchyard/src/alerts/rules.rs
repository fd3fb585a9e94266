//! Rule evaluation and alert state, both pure: [`evaluate`] turns windows and cooldowns into
//! findings; [`State::apply`] compares them with the alerts already firing and yields exactly one
//! firing notification per alert until it resolves (once back within bounds for its rule's
//! `resolve_after`), then one resolved notification.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::notify::{Notification, Status};
use super::window::Windows;
use crate::config::{AlertKind, AlertRule, AlertScope, kind_name, scope_name};

/// One rule's verdict on one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Index into the rules.
    pub rule: usize,
    pub scope: AlertScope,
    pub subject: String,
    /// `None` when there is nothing to measure (no requests in the window).
    pub value: Option<f64>,
    pub requests: Option<u64>,
    pub errors: Option<u64>,
    pub firing: bool,
    /// The subject's own threshold, when it sets one (a key's or team's `soft_budget`).
    pub threshold: Option<f64>,
}

/// A deployment in cooldown.
#[derive(Debug, Clone, PartialEq)]
pub struct Cooling {
    pub deployment: String,
    pub remaining_s: f64,
}

/// How much of its budget a key or team has used.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetUse {
    pub scope: AlertScope,
    pub subject: String,
    /// Spent in the current period over the budget.
    pub ratio: f64,
    /// The entity's `soft_budget`, which replaces the rule's threshold for it.
    pub threshold: Option<f64>,
}

/// Every rule over every subject that has data (or is cooling).
pub fn evaluate(
    rules: &[AlertRule],
    windows: &Windows,
    cooling: &[Cooling],
    budgets: &[BudgetUse],
    now_ms: u64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match rule.kind {
            AlertKind::ErrorRate | AlertKind::LatencyP99 => {
                for &scope in &rule.per {
                    for subject in windows.subjects(scope) {
                        let stats = windows.stats(scope, &subject, rule.window, now_ms);
                        let value = match rule.kind {
                            AlertKind::ErrorRate => stats.error_rate(),
                            _ => stats.p99_ms,
                        };
                        let enough = stats.requests >= rule.min_requests.max(1);
                        out.push(Finding {
                            rule: i,
                            scope,
                            subject,
                            value,
                            requests: Some(stats.requests),
                            errors: (rule.kind == AlertKind::ErrorRate).then_some(stats.errors),
                            firing: enough && value.is_some_and(|v| v > rule.threshold),
                            threshold: None,
                        });
                    }
                }
            }
            AlertKind::DeploymentCooldown => {
                // A deployment listed under several aliases has one health per alias: it is
                // cooling if any of them is, for as long as the longest.
                let mut by_id: BTreeMap<&str, f64> = BTreeMap::new();
                for c in cooling {
                    let e = by_id.entry(c.deployment.as_str()).or_insert(0.0);
                    *e = e.max(c.remaining_s);
                }
                for (deployment, remaining) in by_id {
                    out.push(Finding {
                        rule: i,
                        scope: AlertScope::Deployment,
                        subject: deployment.to_owned(),
                        value: Some(remaining),
                        requests: None,
                        errors: None,
                        firing: true,
                        threshold: None,
                    });
                }
            }
            AlertKind::BudgetUtilisation => {
                for b in budgets.iter().filter(|b| rule.per.contains(&b.scope)) {
                    out.push(Finding {
                        rule: i,
                        scope: b.scope,
                        subject: b.subject.clone(),
                        value: Some(b.ratio),
                        requests: None,
                        errors: None,
                        firing: b.ratio > b.threshold.unwrap_or(rule.threshold),
                        threshold: b.threshold,
                    });
                }
            }
        }
    }
    out
}

/// An alert that is firing, as `GET /admin/alerts` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActiveAlert {
    pub rule: String,
    pub kind: &'static str,
    pub scope: &'static str,
    pub subject: String,
    pub value: Option<f64>,
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Span of records the rule looks at (`5m`), for windowed rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Unix milliseconds when it started firing.
    pub since_ms: i64,
}

type Key = (String, AlertScope, String);

/// The alerts firing now.
#[derive(Debug, Default)]
pub struct State {
    active: BTreeMap<Key, ActiveAlert>,
    /// Firing alerts back within bounds, since when (Unix milliseconds): they resolve once
    /// their rule's `resolve_after` has passed so.
    quiet_since: HashMap<Key, i64>,
}

fn window_of(rule: &AlertRule) -> Option<Duration> {
    matches!(rule.kind, AlertKind::ErrorRate | AlertKind::LatencyP99).then_some(rule.window)
}

impl State {
    pub fn active(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.active.values()
    }

    /// Subjects firing per rule name.
    pub fn count_by_rule(&self) -> HashMap<&str, u64> {
        let mut out = HashMap::new();
        for (rule, _, _) in self.active.keys() {
            *out.entry(rule.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// Applies one evaluation made at `now_unix_ms`; returns the notifications it causes.
    pub fn apply(
        &mut self,
        rules: &[AlertRule],
        findings: Vec<Finding>,
        now_unix_ms: i64,
    ) -> Vec<Notification> {
        let mut notes = Vec::new();
        let mut quiet: HashMap<Key, Finding> = HashMap::new();
        let mut firing = std::collections::HashSet::new();
        for f in findings {
            let Some(rule) = rules.get(f.rule) else {
                continue;
            };
            let key = (rule.name.clone(), f.scope, f.subject.clone());
            if !f.firing {
                quiet.insert(key, f);
                continue;
            }
            firing.insert(key.clone());
            self.quiet_since.remove(&key);
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.value = f.value;
                    a.requests = f.requests;
                    a.errors = f.errors;
                }
                None => {
                    let alert = ActiveAlert {
                        rule: rule.name.clone(),
                        kind: kind_name(rule.kind),
                        scope: scope_name(f.scope),
                        subject: f.subject,
                        value: f.value,
                        threshold: f.threshold.unwrap_or(rule.threshold),
                        requests: f.requests,
                        errors: f.errors,
                        window: window_of(rule).map(|w| humantime::format_duration(w).to_string()),
                        since_ms: now_unix_ms,
                    };
                    notes.push(Notification::new(Status::Firing, rule, &alert, None));
                    self.active.insert(key, alert);
                }
            }
        }
        let ended: Vec<Key> = self
            .active
            .keys()
            .filter(|k| !firing.contains(*k))
            .cloned()
            .collect();
        for key in ended {
            let rule = rules.iter().find(|r| r.name == key.0);
            let since = *self.quiet_since.entry(key.clone()).or_insert(now_unix_ms);
            let held = rule.map_or(Duration::ZERO, |r| r.resolve_after);
            let now = quiet.remove(&key);
            if now_unix_ms - since < held.as_millis() as i64 {
                // Back within bounds, not for long enough yet: still firing, the value as it is.
                if let Some(alert) = self.active.get_mut(&key) {
                    alert.value = now.as_ref().and_then(|f| f.value);
                    alert.requests = now.as_ref().and_then(|f| f.requests);
                    alert.errors = now.as_ref().and_then(|f| f.errors);
                }
                continue;
            }
            self.quiet_since.remove(&key);
            let Some(mut alert) = self.active.remove(&key) else {
                continue;
            };
            alert.value = now.as_ref().and_then(|f| f.value);
            alert.requests = now.as_ref().and_then(|f| f.requests);
            alert.errors = now.as_ref().and_then(|f| f.errors);
            // A rule removed from the configuration cannot be described; it just goes quiet.
            if let Some(rule) = rule {
                notes.push(Notification::new(
                    Status::Resolved,
                    rule,
                    &alert,
                    Some(now_unix_ms),
                ));
            }
        }
        notes
    }
}

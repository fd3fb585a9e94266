//! The `alerts:` section resolved: defaults filled in per rule kind, every rule checked (unique
//! names, thresholds in range, scopes that make sense for the kind), webhook URLs kept as
//! secrets because chat webhooks carry their token in the URL.

use std::collections::HashSet;
use std::time::Duration;

use super::file::{AlertKind, AlertRuleFile, AlertScope, AlertsFile, WebhookFormat};
use super::{ConfigError, Secret, err};

/// Default `error_rate` threshold: 5 % of requests failing.
pub const DEFAULT_ERROR_RATE: f64 = 0.05;
/// Default `latency_p99` threshold in milliseconds.
pub const DEFAULT_LATENCY_P99_MS: f64 = 2000.0;
/// Default `budget_utilisation` threshold: 80 % of the budget spent.
pub const DEFAULT_BUDGET_UTILISATION: f64 = 0.8;
/// Default least number of requests in the window before a rate or latency rule may fire.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Secret,
    pub format: WebhookFormat,
    pub timeout: Duration,
}

/// How long a firing alert is back within bounds before it resolves, unless its rule says.
const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub kind: AlertKind,
    /// Fraction for rates and utilisation, milliseconds for latency, 0 for cooldown.
    pub threshold: f64,
    pub min_requests: u64,
    pub window: Duration,
    /// Sorted, without duplicates, never empty.
    pub per: Vec<AlertScope>,
    /// How long a firing alert is back within bounds before it resolves.
    pub resolve_after: Duration,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub enabled: bool,
    pub interval: Duration,
    pub webhooks: Vec<Webhook>,
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        resolve_alerts(AlertsFile::default(), &mut Vec::new())
    }
}

impl AlertsConfig {
    /// The longest window any rule looks at.
    pub fn max_window(&self) -> Duration {
        self.rules
            .iter()
            .map(|r| r.window)
            .max()
            .unwrap_or_default()
    }
}

fn default_rules() -> Vec<AlertRuleFile> {
    [
        AlertKind::ErrorRate,
        AlertKind::LatencyP99,
        AlertKind::DeploymentCooldown,
        AlertKind::BudgetUtilisation,
    ]
    .into_iter()
    .map(|kind| AlertRuleFile {
        name: None,
        kind,
        threshold: None,
        min_requests: None,
        window: None,
        per: Vec::new(),
        resolve_after: None,
    })
    .collect()
}

pub fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::ErrorRate => "error_rate",
        AlertKind::LatencyP99 => "latency_p99",
        AlertKind::DeploymentCooldown => "deployment_cooldown",
        AlertKind::BudgetUtilisation => "budget_utilisation",
    }
}

pub fn scope_name(scope: AlertScope) -> &'static str {
    match scope {
        AlertScope::Alias => "alias",
        AlertScope::Deployment => "deployment",
        AlertScope::Key => "key",
        AlertScope::Team => "team",
    }
}

/// Scopes a kind may be evaluated per, the first ones being its default.
fn scopes_of(kind: AlertKind) -> (&'static [AlertScope], &'static str) {
    match kind {
        AlertKind::ErrorRate | AlertKind::LatencyP99 => (
            &[AlertScope::Alias, AlertScope::Deployment],
            "alias or deployment",
        ),
        AlertKind::DeploymentCooldown => (&[AlertScope::Deployment], "deployment"),
        AlertKind::BudgetUtilisation => (&[AlertScope::Key, AlertScope::Team], "key or team"),
    }
}

pub fn resolve_alerts(file: AlertsFile, errors: &mut Vec<ConfigError>) -> AlertsConfig {
    if file.interval.is_zero() {
        err(errors, "alerts.interval", "must be greater than 0");
    }
    if file.window.is_zero() {
        err(errors, "alerts.window", "must be greater than 0");
    }
    let mut webhooks = Vec::new();
    for (i, w) in file.webhooks.into_iter().enumerate() {
        let path = format!("alerts.webhooks[{i}]");
        let url_ok = (w.url.starts_with("http://") || w.url.starts_with("https://"))
            && w.url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if !url_ok {
            // The URL itself is not echoed: chat webhooks carry their token in it.
            err(
                errors,
                format!("{path}.url"),
                "must be an http:// or https:// URL",
            );
        }
        if w.timeout.is_zero() {
            err(errors, format!("{path}.timeout"), "must be greater than 0");
        }
        webhooks.push(Webhook {
            url: Secret::new(w.url),
            format: w.format,
            timeout: w.timeout,
        });
    }
    let mut names = HashSet::new();
    let mut rules = Vec::new();
    for (i, r) in file
        .rules
        .unwrap_or_else(default_rules)
        .into_iter()
        .enumerate()
    {
        let path = format!("alerts.rules[{i}]");
        let name = r
            .name
            .clone()
            .unwrap_or_else(|| kind_name(r.kind).to_owned());
        if name.is_empty() {
            err(errors, format!("{path}.name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            err(
                errors,
                format!("{path}.name"),
                format!("duplicate rule name '{name}' (give each rule of the same kind a name)"),
            );
        }
        let windowed = matches!(r.kind, AlertKind::ErrorRate | AlertKind::LatencyP99);
        if !windowed {
            for (field, given) in [
                ("min_requests", r.min_requests.is_some()),
                ("window", r.window.is_some()),
            ] {
                if given {
                    err(
                        errors,
                        format!("{path}.{field}"),
                        format!("not used by kind {}", kind_name(r.kind)),
                    );
                }
            }
        }
        let threshold = match (r.kind, r.threshold) {
            (AlertKind::DeploymentCooldown, Some(_)) => {
                err(
                    errors,
                    format!("{path}.threshold"),
                    "not used by kind deployment_cooldown",
                );
                0.0
            }
            (AlertKind::DeploymentCooldown, None) => 0.0,
            (AlertKind::ErrorRate, t) => {
                let t = t.unwrap_or(DEFAULT_ERROR_RATE);
                if !(t > 0.0 && t <= 1.0) {
                    err(
                        errors,
                        format!("{path}.threshold"),
                        "must be a fraction in (0, 1]",
                    );
                }
                t
            }
            (AlertKind::LatencyP99, t) => {
                let t = t.unwrap_or(DEFAULT_LATENCY_P99_MS);
                if !(t > 0.0 && t.is_finite()) {
                    err(
                        errors,
                        format!("{path}.threshold"),
                        "must be milliseconds greater than 0",
                    );
                }
                t
            }
            (AlertKind::BudgetUtilisation, t) => {
                let t = t.unwrap_or(DEFAULT_BUDGET_UTILISATION);
                if !(t > 0.0 && t.is_finite()) {
                    err(
                        errors,
                        format!("{path}.threshold"),
                        "must be a fraction greater than 0",
                    );
                }
                t
            }
        };
        let window = r.window.unwrap_or(file.window);
        if window.is_zero() {
            err(errors, format!("{path}.window"), "must be greater than 0");
        }
        let (allowed, described) = scopes_of(r.kind);
        let mut per = r.per.clone();
        for (j, scope) in per.iter().enumerate() {
            if !allowed.contains(scope) {
                err(
                    errors,
                    format!("{path}.per[{j}]"),
                    format!("kind {} is evaluated per {described}", kind_name(r.kind)),
                );
            }
        }
        if per.is_empty() {
            per = allowed.to_vec();
        }
        per.sort();
        per.dedup();
        rules.push(AlertRule {
            name,
            kind: r.kind,
            threshold,
            min_requests: r.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
            window,
            per,
            resolve_after: r.resolve_after.unwrap_or(DEFAULT_RESOLVE_AFTER),
        });
    }
    AlertsConfig {
        enabled: file.enabled,
        interval: file.interval,
        webhooks,
        rules,
    }
}

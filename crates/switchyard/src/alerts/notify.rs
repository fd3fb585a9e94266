//! Alert notifications: what they say (a plain JSON body, or a Slack-compatible `{"text"}`
//! body) and their delivery to webhooks by a background task per webhook, with a timeout per
//! try and two retries. Evaluation hands notifications over without waiting; if the queue is full they are
//! counted as failed and logged, never allowed to slow anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use super::rules::ActiveAlert;
use crate::config::{AlertKind, AlertRule, Webhook, WebhookFormat};

/// Notifications waiting for delivery before new ones are dropped (and counted).
const QUEUE: usize = 256;
/// Pauses before the second and third try.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

/// The JSON body of a notification (`format: json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub status: Status,
    pub rule: String,
    pub kind: &'static str,
    pub scope: &'static str,
    pub subject: String,
    /// The measured value (`null` when nothing was measured, e.g. no requests any more).
    pub value: Option<f64>,
    pub threshold: f64,
    /// Unit of `value` and `threshold`: `ratio`, `ms` or `s`.
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// RFC 3339 time the alert started firing.
    pub since: String,
    /// RFC 3339 time it resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// One human sentence.
    pub summary: String,
    /// Milliseconds between firing and resolving.
    #[serde(skip)]
    pub fired_for: Option<i64>,
}

pub fn rfc3339(unix_ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unit_of(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::ErrorRate | AlertKind::BudgetUtilisation => "ratio",
        AlertKind::LatencyP99 => "ms",
        AlertKind::DeploymentCooldown => "s",
    }
}

fn show(kind: AlertKind, v: f64) -> String {
    match kind {
        AlertKind::ErrorRate | AlertKind::BudgetUtilisation => format!("{:.1}%", v * 100.0),
        AlertKind::LatencyP99 => format!("{v:.0} ms"),
        AlertKind::DeploymentCooldown => format!("{v:.0} s"),
    }
}

fn summary(status: Status, rule: &AlertRule, a: &ActiveAlert) -> String {
    let who = format!("{} {}", a.scope, a.subject);
    let over = a
        .window
        .as_deref()
        .map(|w| format!(" over the last {w}"))
        .unwrap_or_default();
    let threshold = show(rule.kind, a.threshold);
    let measured = |what: &str| match a.value {
        Some(v) => format!("{what} of {who} is {}{over}", show(rule.kind, v)),
        None => format!("{who} had no requests{over}"),
    };
    match (rule.kind, status) {
        (AlertKind::DeploymentCooldown, Status::Firing) => format!(
            "{who} is in cooldown ({} left): it is tried only after the other deployments",
            show(rule.kind, a.value.unwrap_or(0.0))
        ),
        (AlertKind::DeploymentCooldown, Status::Resolved) => format!("{who} is out of cooldown"),
        (kind, Status::Firing) => {
            let what = match kind {
                AlertKind::ErrorRate => "error rate",
                AlertKind::LatencyP99 => "p99 latency",
                _ => "budget use",
            };
            // A deployment is measured by its attempts (a fallback hides its failures from
            // the requests), an alias by its requests.
            let unit = if a.scope == "deployment" {
                "attempts"
            } else {
                "requests"
            };
            let counts = match (a.errors, a.requests) {
                (Some(e), Some(n)) => format!(" ({e} of {n} {unit} failed)"),
                (None, Some(n)) => format!(" ({n} {unit})"),
                _ => String::new(),
            };
            format!("{}{counts}, above {threshold}", measured(what))
        }
        (kind, Status::Resolved) => {
            let what = match kind {
                AlertKind::ErrorRate => "error rate",
                AlertKind::LatencyP99 => "p99 latency",
                _ => "budget use",
            };
            // Resolved with the figure still above the threshold: too few requests were left in
            // the window to judge by, which is not the same as healthy.
            match (a.value, a.requests) {
                (Some(v), Some(n)) if v > a.threshold => format!(
                    "{}, but from only {n} requests, fewer than the {} it takes to judge: \
                     resolved for want of traffic, not back within {threshold}",
                    measured(what),
                    rule.min_requests.max(1)
                ),
                _ => format!("{}, back within {threshold}", measured(what)),
            }
        }
    }
}

impl Notification {
    pub fn new(
        status: Status,
        rule: &AlertRule,
        alert: &ActiveAlert,
        resolved_ms: Option<i64>,
    ) -> Self {
        Self {
            status,
            rule: alert.rule.clone(),
            kind: alert.kind,
            scope: alert.scope,
            subject: alert.subject.clone(),
            value: alert.value,
            threshold: alert.threshold,
            unit: unit_of(rule.kind),
            requests: alert.requests,
            errors: alert.errors,
            window: alert.window.clone(),
            since: rfc3339(alert.since_ms),
            resolved_at: resolved_ms.map(rfc3339),
            summary: summary(status, rule, alert),
            fired_for: resolved_ms.map(|r| (r - alert.since_ms).max(0)),
        }
    }

    /// The line a chat channel shows.
    pub fn slack_text(&self) -> String {
        match self.status {
            Status::Firing => format!(
                ":rotating_light: *[FIRING]* `{}`: {} (since {})",
                self.rule, self.summary, self.since
            ),
            Status::Resolved => {
                let lasted = self
                    .fired_for
                    .map(|ms| {
                        let secs = Duration::from_secs((ms as u64).div_ceil(1000));
                        format!(" after {}", humantime::format_duration(secs))
                    })
                    .unwrap_or_default();
                format!(
                    ":white_check_mark: *[RESOLVED]* `{}`: {}{lasted}",
                    self.rule, self.summary
                )
            }
        }
    }

    /// The request body for a webhook of `format`.
    pub fn body(&self, format: WebhookFormat) -> Vec<u8> {
        let value = match format {
            WebhookFormat::Json => serde_json::to_value(self).unwrap_or_default(),
            WebhookFormat::Slack => serde_json::json!({ "text": self.slack_text() }),
        };
        value.to_string().into_bytes()
    }
}

/// Delivery counts, exported as metrics.
#[derive(Debug, Default)]
pub struct NotifyStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// The handle evaluation sends notifications through.
pub struct Notifier {
    /// One queue per webhook, each with its own delivery task: a slow or dead webhook holds
    /// up its own notifications only.
    queues: Vec<mpsc::Sender<Notification>>,
    pub stats: Arc<NotifyStats>,
}

impl Notifier {
    /// Starts a delivery task per webhook. They end when the notifier is dropped.
    pub fn start(webhooks: Vec<Webhook>) -> Self {
        let stats = Arc::new(NotifyStats::default());
        if webhooks.is_empty() {
            return Self {
                queues: Vec::new(),
                stats,
            };
        }
        let client = match reqwest::Client::builder()
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client: alert notifications are off");
                return Self {
                    queues: Vec::new(),
                    stats,
                };
            }
        };
        let queues = webhooks
            .into_iter()
            .map(|hook| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(rx, hook, client.clone(), stats.clone()));
                tx
            })
            .collect();
        Self { queues, stats }
    }

    /// Queues a notification for every webhook, without waiting.
    pub fn send(&self, n: Notification) {
        for tx in &self.queues {
            if tx.try_send(n.clone()).is_err() {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!("alert notification dropped: a webhook's queue is full");
            }
        }
    }
}

/// Delivers one webhook's notifications, one at a time: firing before resolved, in order.
async fn run(
    mut rx: mpsc::Receiver<Notification>,
    hook: Webhook,
    client: reqwest::Client,
    stats: Arc<NotifyStats>,
) {
    while let Some(n) = rx.recv().await {
        match deliver(&client, &hook, n.body(hook.format), hook.timeout).await {
            Ok(()) => stats.delivered.fetch_add(1, Ordering::Relaxed),
            Err(()) => stats.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Scheme and host of a webhook, for logs (the path may hold a token).
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| Some(format!("{}://{}", u.scheme_str()?, u.authority()?)))
        .unwrap_or_else(|| "<invalid url>".into())
}

async fn deliver(
    client: &reqwest::Client,
    hook: &Webhook,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), ()> {
    let url = hook.url.expose();
    let mut last = String::new();
    for attempt in 0..=BACKOFF.len() {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF[attempt - 1]).await;
        }
        let sent = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status().as_u16()),
            // Without the URL: reqwest's message would include the path and its token.
            Err(e) => {
                last = if e.is_timeout() {
                    "timed out".into()
                } else {
                    "could not connect or send".into()
                }
            }
        }
    }
    tracing::error!(webhook = %host_of(url), error = %last, "alert notification could not be delivered after 3 tries");
    Err(())
}

//! Alerting: rules from the `alerts:` configuration evaluated every `interval` over in-memory
//! sliding windows of request records ([`window`]) and over deployment health, a state that
//! de-duplicates (one firing notification per alert until it resolves, then one resolved
//! notification; [`rules`]) and webhook delivery off every request path ([`notify`]).
//!
//! Records reach the windows through the recorder's writer (a [`RecordObserver`]); the store is
//! never queried. Budget rules read the governance ledgers: the share of each key's and team's
//! budget spent this period, against the entity's own `soft_budget` when it sets one.

pub mod notify;
pub mod rules;
pub mod window;

#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{AlertsConfig, kind_name};
use crate::metrics::{AlertCounts, Known};
use crate::routing::{Deployment, RoutingTable, now_ms};
use crate::telemetry::RecordObserver;

pub use notify::{Notification, Notifier, Status};
pub use rules::{ActiveAlert, Cooling, Finding, State};
pub use window::Windows;

pub struct Alerts {
    config: AlertsConfig,
    windows: Arc<Windows>,
    deployments: Vec<(String, Arc<Deployment>)>,
    state: Mutex<State>,
    notifier: Notifier,
    /// Where budget use comes from, once governance is up.
    budgets: std::sync::OnceLock<Arc<crate::governance::Governance>>,
}

impl Alerts {
    /// Builds the alerting state and, when enabled, starts the evaluation task (which ends once
    /// the returned handle is dropped) and the webhook delivery task.
    pub fn start(config: AlertsConfig, table: &RoutingTable, known: Known) -> Arc<Self> {
        let shortest = config
            .rules
            .iter()
            .map(|r| r.window)
            .min()
            .unwrap_or_default();
        let windows = Arc::new(Windows::new(known, shortest, config.max_window()));
        let notifier = Notifier::start(if config.enabled {
            config.webhooks.clone()
        } else {
            Vec::new()
        });
        let alerts = Arc::new(Self {
            deployments: table
                .deployments()
                .map(|(alias, d)| (alias.to_owned(), d.clone()))
                .collect(),
            windows,
            state: Mutex::new(State::default()),
            notifier,
            budgets: std::sync::OnceLock::new(),
            config,
        });
        if alerts.config.enabled && !alerts.config.rules.is_empty() {
            let weak = Arc::downgrade(&alerts);
            let every = alerts.config.interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let Some(alerts) = weak.upgrade() else { break };
                    alerts.evaluate(now_ms(), notify::unix_ms_now());
                }
            });
        }
        alerts
    }

    /// The observer feeding the windows, when alerting is on.
    pub fn observer(&self) -> Option<Arc<dyn RecordObserver>> {
        (self.config.enabled && !self.config.rules.is_empty())
            .then(|| self.windows.clone() as Arc<dyn RecordObserver>)
    }

    /// Connects the budget-utilisation rules to the governance ledgers.
    pub fn watch_budgets(&self, governance: Arc<crate::governance::Governance>) {
        let _ = self.budgets.set(governance);
    }

    /// One evaluation round at `now_ms` (monotonic) / `now_unix_ms` (wall clock).
    pub fn evaluate(&self, now_ms: u64, now_unix_ms: i64) {
        self.windows.prune(now_ms);
        let cooling: Vec<Cooling> = self
            .deployments
            .iter()
            .filter_map(|(_, d)| {
                let h = d.health.snapshot(now_ms);
                h.cooling.then(|| Cooling {
                    deployment: d.id.to_string(),
                    remaining_s: h.cooldown_left_ms as f64 / 1000.0,
                })
            })
            .collect();
        let budgets: Vec<rules::BudgetUse> = self
            .budgets
            .get()
            .map(|g| {
                g.utilisation()
                    .into_iter()
                    .filter_map(|(level, ratio, soft)| {
                        let (scope, subject) = match level {
                            crate::governance::ledger::Level::Key(id) => {
                                (crate::config::AlertScope::Key, id)
                            }
                            crate::governance::ledger::Level::Team(id) => {
                                (crate::config::AlertScope::Team, id)
                            }
                            _ => return None,
                        };
                        Some(rules::BudgetUse {
                            scope,
                            subject,
                            ratio,
                            threshold: soft,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let findings = rules::evaluate(
            &self.config.rules,
            &self.windows,
            &cooling,
            &budgets,
            now_ms,
        );
        let notes = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(&self.config.rules, findings, now_unix_ms);
        for n in notes {
            match n.status {
                Status::Firing => {
                    tracing::warn!(rule = %n.rule, kind = n.kind, subject = %n.subject, value = ?n.value, "alert firing: {}", n.summary);
                }
                Status::Resolved => {
                    tracing::info!(rule = %n.rule, kind = n.kind, subject = %n.subject, "alert resolved: {}", n.summary);
                }
            }
            self.notifier.send(n);
        }
    }

    /// The alerts firing now, oldest first.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<ActiveAlert> = state.active().cloned().collect();
        out.sort_by(|a, b| {
            a.since_ms
                .cmp(&b.since_ms)
                .then_with(|| a.rule.cmp(&b.rule))
        });
        out
    }

    /// For the metrics page: firing subjects per rule and delivery counts.
    pub fn counts(&self) -> AlertCounts {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let by_rule = state.count_by_rule();
        AlertCounts {
            active: self
                .config
                .rules
                .iter()
                .map(|r| {
                    let n = by_rule.get(r.name.as_str()).copied().unwrap_or(0);
                    (r.name.clone(), kind_name(r.kind), n)
                })
                .collect(),
            notifications_delivered: self.notifier.stats.delivered.load(Ordering::Relaxed),
            notifications_failed: self.notifier.stats.failed.load(Ordering::Relaxed),
        }
    }
}

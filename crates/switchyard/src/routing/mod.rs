//! Where a request goes: the routing table (alias → deployments → provider), deployment health
//! (in flight, consecutive failures, cooldown) and the route plan for one request. Planning is a
//! pure function of the table, a health snapshot and a random source, so it is unit-testable.

mod health;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_protocol::dialect::{Capabilities, ProviderDialect, provider_dialect};

use crate::config::{Config, RoutingFile, Secret, TimeoutsFile};

pub use health::{Health, HealthSnapshot, now_ms};

/// One upstream endpoint with its dialect and credentials.
pub struct Provider {
    pub name: String,
    pub dialect: Box<dyn ProviderDialect>,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub api_version: Option<String>,
    pub timeouts: TimeoutsFile,
    /// Own connection pool, so one provider's connect timeout and pool never affect another.
    pub client: reqwest::Client,
}

/// One callable target behind an alias.
pub struct Deployment {
    /// `provider/model`, stable across restarts; used in headers, logs and metrics.
    pub id: String,
    pub provider: Arc<Provider>,
    pub model: String,
    pub weight: u32,
    pub health: Health,
}

pub struct Route {
    pub alias: String,
    pub deployments: Vec<Arc<Deployment>>,
    pub fallbacks: Vec<String>,
    pub num_retries: u32,
}

/// What a request needs from a deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub tools: bool,
    pub images: bool,
    pub json_schema: bool,
    pub embeddings: bool,
}

impl Needs {
    fn met_by(&self, c: Capabilities) -> bool {
        (!self.tools || c.tools)
            && (!self.images || c.images)
            && (!self.json_schema || c.json_schema)
            && (!self.embeddings || c.embeddings)
    }
}

/// One planned attempt: which deployment, reached through which alias.
#[derive(Clone)]
pub struct PlannedAttempt {
    pub alias: String,
    pub deployment: Arc<Deployment>,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    UnknownAlias(String),
    /// Deployments exist but none can serve what the request needs.
    Unsupported { alias: String, needs: String },
}

pub struct RoutingTable {
    routes: HashMap<String, Arc<Route>>,
    /// Aliases in configuration order, for `/v1/models`.
    pub aliases: Vec<String>,
    pub policy: RoutingFile,
}

impl RoutingTable {
    /// Builds the table. `sim_base_url` is where the in-process simulator listens, if started.
    pub fn build(config: &Config, sim_base_url: Option<&str>) -> Result<Self, reqwest::Error> {
        let providers: Vec<Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| {
                let base_url = match (p.simulated, sim_base_url) {
                    (Some(dialect), Some(sim)) => simulator_base_url(dialect, sim),
                    _ => p.base_url.clone(),
                };
                Ok(Arc::new(Provider {
                    name: p.name.clone(),
                    dialect: provider_dialect(&p.kind),
                    base_url,
                    api_key: p.api_key.clone(),
                    api_version: p.api_version.clone(),
                    timeouts: p.timeouts,
                    client: crate::upstream::client_for(p.timeouts.connect)?,
                }))
            })
            .collect::<Result<_, reqwest::Error>>()?;
        let mut routes = HashMap::new();
        let mut aliases = Vec::new();
        for m in &config.models {
            let deployments = m
                .deployments
                .iter()
                .filter_map(|d| {
                    let provider = providers.get(d.provider)?.clone();
                    Some(Arc::new(Deployment {
                        id: format!("{}/{}", provider.name, d.model),
                        provider,
                        model: d.model.clone(),
                        weight: d.weight,
                        health: Health::default(),
                    }))
                })
                .collect();
            aliases.push(m.alias.clone());
            routes.insert(
                m.alias.clone(),
                Arc::new(Route {
                    alias: m.alias.clone(),
                    deployments,
                    fallbacks: m.fallbacks.clone(),
                    num_retries: m.num_retries,
                }),
            );
        }
        Ok(Self {
            routes,
            aliases,
            policy: config.routing,
        })
    }

    pub fn route(&self, alias: &str) -> Option<&Arc<Route>> {
        self.routes.get(alias)
    }

    pub fn deployments(&self) -> impl Iterator<Item = (&str, &Arc<Deployment>)> {
        self.aliases.iter().filter_map(|a| self.routes.get(a)).flat_map(|r| {
            r.deployments.iter().map(move |d| (r.alias.as_str(), d))
        })
    }

    /// The ordered attempts for a request to `alias`: the alias's healthy deployments (weighted
    /// random order), then each fallback alias's, without repeats; deployments in cooldown come
    /// last of all, as a last resort with no retries.
    pub fn plan(
        &self,
        alias: &str,
        needs: Needs,
        now_ms: u64,
        rng: &mut dyn FnMut(u32) -> u32,
    ) -> Result<Vec<PlannedAttempt>, PlanError> {
        let route = self
            .routes
            .get(alias)
            .ok_or_else(|| PlanError::UnknownAlias(alias.to_owned()))?;
        let mut out: Vec<PlannedAttempt> = Vec::new();
        // Cooled deployments are a last resort, after every healthy one of every fallback.
        let mut last_resort: Vec<PlannedAttempt> = Vec::new();
        let mut visited = vec![alias.to_owned()];
        let mut queue = vec![route.clone()];
        while let Some(route) = queue.pop() {
            let candidates: Vec<&Arc<Deployment>> = route
                .deployments
                .iter()
                .filter(|d| needs.met_by(d.provider.dialect.capabilities()))
                .filter(|d| {
                    !out.iter()
                        .chain(&last_resort)
                        .any(|a| a.deployment.id == d.id)
                })
                .collect();
            let (healthy, cooled): (Vec<_>, Vec<_>) = candidates
                .into_iter()
                .partition(|d| !d.health.snapshot(now_ms).cooling);
            for d in weighted_order(healthy, rng) {
                out.push(PlannedAttempt {
                    alias: route.alias.clone(),
                    deployment: d.clone(),
                    retries: route.num_retries,
                });
            }
            for d in cooled {
                last_resort.push(PlannedAttempt {
                    alias: route.alias.clone(),
                    deployment: d.clone(),
                    retries: 0,
                });
            }
            // Fallbacks are tried in order: push them reversed onto the stack.
            let mut next = Vec::new();
            for f in &route.fallbacks {
                if !visited.contains(f)
                    && let Some(r) = self.routes.get(f)
                {
                    visited.push(f.clone());
                    next.push(r.clone());
                }
            }
            queue.extend(next.into_iter().rev());
        }
        out.extend(last_resort);
        if out.is_empty() {
            return Err(PlanError::Unsupported {
                alias: alias.to_owned(),
                needs: describe(needs),
            });
        }
        Ok(out)
    }
}

fn describe(needs: Needs) -> String {
    let mut parts = Vec::new();
    if needs.tools {
        parts.push("tools");
    }
    if needs.images {
        parts.push("images");
    }
    if needs.json_schema {
        parts.push("JSON schema output");
    }
    if needs.embeddings {
        parts.push("embeddings");
    }
    parts.join(", ")
}

/// Weighted random order without replacement: each pick is proportional to the remaining weights.
fn weighted_order<'a>(
    mut items: Vec<&'a Arc<Deployment>>,
    rng: &mut dyn FnMut(u32) -> u32,
) -> Vec<&'a Arc<Deployment>> {
    let mut out = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let total: u32 = items.iter().map(|d| d.weight.max(1)).sum();
        let mut pick = rng(total);
        let mut idx = items.len() - 1;
        for (i, d) in items.iter().enumerate() {
            let w = d.weight.max(1);
            if pick < w {
                idx = i;
                break;
            }
            pick -= w;
        }
        out.push(items.remove(idx));
    }
    out
}

/// The simulator serves every dialect on one port, at each provider's own paths.
fn simulator_base_url(dialect: crate::config::SimDialectFile, sim: &str) -> String {
    use crate::config::SimDialectFile as D;
    match dialect {
        D::Openai => format!("{sim}/v1"),
        D::Azure | D::Anthropic => sim.to_owned(),
        D::Gemini => format!("{sim}/v1beta"),
    }
}

/// Cooldown policy applied after each attempt.
pub fn record_failure(d: &Deployment, policy: &RoutingFile, retry_after: Option<Duration>, now_ms: u64) {
    d.health.failure(policy.allowed_fails, policy.cooldown, retry_after, now_ms);
}

//! Where a request goes: the routing table (alias → deployments → provider), routing rules,
//! selection strategies, deployment health (in flight, failures, cooldown, latency, usage) and
//! the route planner that yields one attempt after another, expanding fallback aliases by the
//! class of the last failure. Ordering is a pure function of the table, health snapshots and a
//! random source, so it is unit-testable; every decision is recorded in a [`RouteDecision`].

mod health;
mod restrict;
mod rules;
pub mod shared_health;
pub mod strategy;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use switchyard_protocol::canonical::ErrorClass;
use switchyard_protocol::dialect::{Capabilities, ProviderDialect, provider_dialect};

use crate::NameMap;
use crate::config::{
    Attributes, Config, Fallbacks, Hedge, RoutingFile, RuleFile, Secret, StrategyFile,
    StreamBufferFile, TimeoutsFile,
};

pub use health::{Health, HealthSnapshot, ms_at, now_ms};
pub use restrict::Restrictions;
pub use rules::glob_match;
use strategy::{Candidate, OrderInput};

/// An alias's, a deployment's or a provider's name: set when the table is built and shared
/// by every request, record and log line that names it, so naming it copies nothing.
pub type Name = Arc<str>;

/// Where a provider's credential comes from.
pub enum ProviderAuth {
    None,
    /// `api_key` in the configuration.
    Static(Arc<Secret>),
    /// A stored credential, read from the vault on every attempt.
    Stored {
        name: String,
        vault: Arc<crate::credentials::Vault>,
    },
}

/// One upstream endpoint with its dialect and credentials.
pub struct Provider {
    pub name: Name,
    pub dialect: Box<dyn ProviderDialect>,
    pub base_url: String,
    pub auth: ProviderAuth,
    pub api_version: Option<String>,
    pub timeouts: TimeoutsFile,
    /// Bedrock with AWS credentials: each request is signed with the current ones (Signature
    /// Version 4).
    pub aws: Option<Arc<crate::upstream::aws_credentials::AwsAuth>>,
    /// Own connection pools, so one provider's connect timeout and pool never affect another:
    /// one per serving worker (see [`crate::upstream::worker_slot`]) plus one for everything
    /// else, so a connection's I/O stays on the thread that uses it.
    pub clients: Box<[crate::upstream::client::HttpClient]>,
}

impl Provider {
    /// The connection pool of the current thread's worker.
    pub fn client(&self) -> &crate::upstream::client::HttpClient {
        &self.clients[crate::upstream::worker_slot() % self.clients.len()]
    }

    /// The credential to send now; an error (naming no secret) when a stored one is missing.
    pub fn api_key(&self) -> Result<Option<Arc<Secret>>, String> {
        match &self.auth {
            ProviderAuth::None => Ok(None),
            ProviderAuth::Static(s) => Ok(Some(s.clone())),
            ProviderAuth::Stored { name, vault } => vault.get(name).map(Some),
        }
    }
}

/// One callable target behind an alias.
pub struct Deployment {
    /// `provider/model`, stable across restarts; used in headers, logs and metrics.
    pub id: Name,
    pub provider: Arc<Provider>,
    pub model: String,
    pub weight: u32,
    pub priority: u32,
    /// US dollars per million input / output tokens.
    pub price: Option<(f64, f64)>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub context_window: Option<u64>,
    /// Region, risk level, data classification and free-form attributes.
    pub attributes: Attributes,
    /// What a token costs here: the configured price, else the compiled-in table's.
    pub billing: Option<crate::pricing::Price>,
    pub health: Health,
    /// The provider URLs this deployment's requests go to, parsed once (see [`UrlCache::get`]).
    pub urls: UrlCache,
}

/// Up to two parsed request URLs (a dialect may use one for streams and one for whole
/// answers), so requests through a proxy (sent with reqwest, which takes a parsed URL) do not
/// parse the same URL every time. Lock-free: each slot is set once; a third distinct URL is
/// parsed per request.
#[derive(Default)]
pub struct UrlCache([std::sync::OnceLock<(http::Uri, reqwest::Url)>; 2]);

impl UrlCache {
    /// `uri` as a parsed URL, from the cache when it holds it.
    pub fn get(&self, uri: &http::Uri) -> Result<reqwest::Url, String> {
        let parse = || reqwest::Url::parse(&uri.to_string()).map_err(|e| e.to_string());
        for slot in &self.0 {
            match slot.get() {
                Some((cached, url)) if cached == uri => return Ok(url.clone()),
                Some(_) => continue,
                None => {
                    let url = parse()?;
                    let _ = slot.set((uri.clone(), url.clone()));
                    return Ok(url);
                }
            }
        }
        parse()
    }
}

pub struct Route {
    pub alias: Name,
    pub deployments: Vec<Arc<Deployment>>,
    pub strategy: StrategyFile,
    pub fallbacks: Fallbacks,
    pub num_retries: u32,
    pub hedge: Option<Hedge>,
    pub stream_buffer: Option<StreamBufferFile>,
    /// The alias's own guardrails, in place of the top-level ones.
    pub guardrails: Option<crate::config::file::GuardrailsFile>,
    /// Vocabulary prompt estimates use: `cl100k` only when every deployment's model uses it.
    pub encoding: crate::tokens::Encoding,
    tick: AtomicU64,
    requests: AtomicU64,
    hedged: AtomicU64,
}

impl Route {
    /// Counts a request for the hedge share.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a hedge slot if the share allows one.
    pub fn try_hedge(&self, max_share: f64) -> bool {
        let requests = self.requests.load(Ordering::Relaxed).max(1);
        let hedged = self.hedged.load(Ordering::Relaxed);
        if (hedged + 1) as f64 > max_share * requests as f64 {
            return false;
        }
        self.hedged.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// What a request needs from a deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub tools: bool,
    pub images: bool,
    pub documents: bool,
    pub json_schema: bool,
    pub embeddings: bool,
    /// Several answers asked for (OpenAI `n` above 1).
    pub several_choices: bool,
}

impl Needs {
    fn met_by(&self, c: Capabilities) -> bool {
        (!self.tools || c.tools)
            && (!self.images || c.images)
            && (!self.documents || c.documents)
            && (!self.json_schema || c.json_schema)
            && (!self.embeddings || c.embeddings)
            && (!self.several_choices || c.several_choices)
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.tools {
            parts.push("tools");
        }
        if self.images {
            parts.push("images");
        }
        if self.documents {
            parts.push("documents");
        }
        if self.json_schema {
            parts.push("JSON schema output");
        }
        if self.embeddings {
            parts.push("embeddings");
        }
        if self.several_choices {
            parts.push("several choices ('n' above 1)");
        }
        parts.join(", ")
    }
}

/// The facts about a request that routing may look at.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub model: String,
    pub metadata: Option<Map<String, Value>>,
    /// Estimated prompt size in tokens.
    pub input_tokens: u64,
    /// The request's output-token limit, if it set one.
    pub max_output_tokens: Option<u64>,
    pub messages: usize,
    pub needs: Needs,
    /// Per-request cost ceiling in US dollars (`x-switchyard-max-cost` header).
    pub max_cost: Option<f64>,
    /// The caller's team and key ids, for rules that match on them.
    pub team: Option<Name>,
    pub key: Option<Name>,
    /// What the caller's key, team, organisation and customer allow.
    pub restrictions: Restrictions,
}

/// One planned attempt: which deployment, reached through which alias.
#[derive(Clone)]
pub struct PlannedAttempt {
    pub route: Arc<Route>,
    pub deployment: Arc<Deployment>,
    pub retries: u32,
}

impl PlannedAttempt {
    /// The alias the deployment was reached through.
    pub fn alias(&self) -> &Name {
        &self.route.alias
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    UnknownAlias(String),
    /// Deployments exist but none can serve what the request needs.
    Unsupported {
        alias: String,
        needs: String,
    },
    /// The caller's restrictions leave no deployment of the alias or its fallbacks.
    NotAllowed(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredCandidate {
    pub alias: Name,
    pub deployment: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub cooling: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedDeployment {
    pub alias: Name,
    pub deployment: Name,
    pub reason: String,
}

/// Everything routing decided for one request, for the response header, logs and records.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RouteDecision {
    /// The model the client asked for.
    pub requested: String,
    /// The alias the request was routed to (after rules).
    pub alias: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub strategy: &'static str,
    /// Deployments in the order they would be tried, with their scores.
    pub candidates: Vec<ScoredCandidate>,
    pub skipped: Vec<SkippedDeployment>,
    /// Fallback aliases expanded, in order.
    pub fallbacks: Vec<Name>,
}

pub struct RoutingTable {
    routes: NameMap<String, Arc<Route>>,
    /// Per alias, the highest price a request to it could meet (see `max_price`).
    max_prices: NameMap<String, Option<crate::pricing::Price>>,
    /// Aliases in configuration order, for `/v1/models`.
    pub aliases: Vec<String>,
    pub policy: RoutingFile,
    /// Whether routing reads the prompt's token estimate (context windows, deployment TPM,
    /// cost-based strategies, rules on token counts or cost): when not, and no budget or TPM
    /// limit applies either, requests skip the tokenizer.
    tokens_matter: bool,
    /// Whether a routing rule names teams, or keys: then who asks decides where a request goes,
    /// and the response cache shares answers no wider.
    rules_name_teams: bool,
    rules_name_keys: bool,
}

impl RoutingTable {
    /// Builds the table. `sim_base_url` is where the in-process simulator listens, if started;
    /// `vault` holds the stored credentials providers may name.
    pub fn build(
        config: &Config,
        sim_base_url: Option<&str>,
        vault: &Arc<crate::credentials::Vault>,
    ) -> Result<Self, crate::upstream::client::ClientSetupError> {
        let transport = crate::upstream::client::Transport::from_env()?;
        let providers: Vec<Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| {
                let base_url = match (p.simulated, sim_base_url) {
                    (Some(dialect), Some(sim)) => simulator_base_url(dialect, sim),
                    _ => p.base_url.clone(),
                };
                let proxied = transport.proxied(&base_url);
                if proxied {
                    tracing::info!(provider = %p.name, "reached through the proxy the environment names");
                }
                let clients = (0..=config.server.workers)
                    .map(|_| transport.client(proxied, p.timeouts.connect))
                    .collect::<Result<_, _>>()?;
                Ok(Arc::new(Provider {
                    name: p.name.as_str().into(),
                    dialect: provider_dialect(&p.kind),
                    base_url,
                    auth: match (&p.credential, &p.api_key) {
                        (Some(name), _) => ProviderAuth::Stored {
                            name: name.clone(),
                            vault: vault.clone(),
                        },
                        (None, Some(key)) => ProviderAuth::Static(Arc::new(key.clone())),
                        (None, None) => ProviderAuth::None,
                    },
                    api_version: p.api_version.clone(),
                    timeouts: p.timeouts,
                    aws: p.aws.clone(),
                    clients,
                }))
            })
            .collect::<Result<_, crate::upstream::client::ClientSetupError>>()?;
        let mut routes = NameMap::default();
        let mut aliases = Vec::new();
        for m in &config.models {
            let deployments = m
                .deployments
                .iter()
                .filter_map(|d| {
                    let provider = providers.get(d.provider)?.clone();
                    let billing = match &d.price {
                        Some(p) => Some(p.price(&d.model)),
                        None => crate::pricing::lookup(&d.model),
                    };
                    if billing.is_none() {
                        tracing::warn!(
                            alias = %m.alias,
                            provider = %provider.name,
                            model = %d.model,
                            "deployment has no price: its requests cost nothing in budgets and \
                             records (give it a `price` block)"
                        );
                    }
                    Some(Arc::new(Deployment {
                        id: format!("{}/{}", provider.name, d.model).into(),
                        provider,
                        model: d.model.clone(),
                        weight: d.weight,
                        priority: d.priority,
                        price: billing
                            .map(|p| (p.rates.input as f64 / 1e6, p.rates.output as f64 / 1e6)),
                        billing,
                        rpm: d.rpm,
                        tpm: d.tpm,
                        context_window: d.context_window,
                        attributes: d.attributes.clone(),
                        health: Health::default(),
                        urls: UrlCache::default(),
                    }))
                })
                .collect();
            let encoding = if !m.deployments.is_empty()
                && m.deployments.iter().all(|d| {
                    crate::tokens::Encoding::for_model(&d.model) == crate::tokens::Encoding::Cl100k
                }) {
                crate::tokens::Encoding::Cl100k
            } else {
                crate::tokens::Encoding::O200k
            };
            aliases.push(m.alias.clone());
            routes.insert(
                m.alias.clone(),
                Arc::new(Route {
                    alias: m.alias.as_str().into(),
                    deployments,
                    strategy: m.strategy,
                    fallbacks: m.fallbacks.clone(),
                    num_retries: m.num_retries,
                    hedge: m.hedge,
                    stream_buffer: m.stream_buffer,
                    guardrails: m.guardrails,
                    encoding,
                    tick: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    hedged: AtomicU64::new(0),
                }),
            );
        }
        let tokens_matter = config.routing.rules.iter().any(|r| {
            r.when.min_input_tokens.is_some()
                || r.when.max_input_tokens.is_some()
                || r.route.max_cost.is_some()
        }) || routes.values().any(|r| {
            matches!(
                r.strategy,
                StrategyFile::LowestCost | StrategyFile::UsageAware
            ) || r
                .deployments
                .iter()
                .any(|d| d.context_window.is_some() || d.tpm.is_some())
        });
        let max_prices = routes
            .keys()
            .map(|alias| (alias.clone(), Self::reachable_max_price(&routes, alias)))
            .collect();
        Ok(Self {
            routes,
            max_prices,
            aliases,
            policy: config.routing.clone(),
            tokens_matter,
            rules_name_teams: config
                .routing
                .rules
                .iter()
                .any(|r| !r.when.teams.is_empty()),
            rules_name_keys: config.routing.rules.iter().any(|r| !r.when.keys.is_empty()),
        })
    }

    /// Whether routing rules name teams and keys (see the fields).
    pub fn rules_name(&self) -> (bool, bool) {
        (self.rules_name_teams, self.rules_name_keys)
    }

    /// A deployment by its id, under any alias.
    pub fn deployment(&self, id: &str) -> Option<&Arc<Deployment>> {
        self.deployments().map(|(_, d)| d).find(|d| *d.id == *id)
    }

    /// See the field: whether any routing decision depends on the prompt's token estimate.
    pub fn tokens_matter(&self) -> bool {
        self.tokens_matter
    }

    pub fn route(&self, alias: &str) -> Option<&Arc<Route>> {
        self.routes.get(alias)
    }

    /// The AWS credentials of every Bedrock provider some alias reaches, by provider name.
    pub fn aws_auths(&self) -> Vec<(String, Arc<crate::upstream::aws_credentials::AwsAuth>)> {
        let mut out: Vec<(String, Arc<crate::upstream::aws_credentials::AwsAuth>)> = Vec::new();
        for d in self.routes.values().flat_map(|r| &r.deployments) {
            if let Some(aws) = &d.provider.aws
                && !out.iter().any(|(name, _)| **name == *d.provider.name)
            {
                out.push((d.provider.name.to_string(), aws.clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every vocabulary some alias estimates with.
    pub fn encodings(&self) -> Vec<crate::tokens::Encoding> {
        let mut v = Vec::new();
        for r in self.routes.values() {
            if !v.contains(&r.encoding) {
                v.push(r.encoding);
            }
        }
        v
    }

    /// The vocabulary to estimate prompts for `alias` with (`o200k` for unknown aliases).
    pub fn encoding(&self, alias: &str) -> crate::tokens::Encoding {
        self.routes
            .get(alias)
            .map_or(crate::tokens::Encoding::O200k, |r| r.encoding)
    }

    /// The highest price among the deployments a request to `alias` could reach (its own and
    /// every fallback's), for budget reservations. Worked out once per alias when the table is
    /// built: prices and fallbacks do not change while it serves.
    pub fn max_price(&self, alias: &str) -> Option<crate::pricing::Price> {
        self.max_prices.get(alias).copied().flatten()
    }

    fn reachable_max_price(
        routes: &NameMap<String, Arc<Route>>,
        alias: &str,
    ) -> Option<crate::pricing::Price> {
        let mut seen = vec![alias.to_owned()];
        let mut queue = vec![alias.to_owned()];
        let mut best: Option<crate::pricing::Price> = None;
        while let Some(a) = queue.pop() {
            let Some(route) = routes.get(&a) else {
                continue;
            };
            for d in &route.deployments {
                if let Some(p) = d.billing {
                    best = Some(best.map_or(p, |b| b.max(p)));
                }
            }
            for f in route.fallbacks.all() {
                if !seen.contains(f) {
                    seen.push(f.clone());
                    queue.push(f.clone());
                }
            }
        }
        best
    }

    pub fn deployments(&self) -> impl Iterator<Item = (&str, &Arc<Deployment>)> {
        self.aliases
            .iter()
            .filter_map(|a| self.routes.get(a))
            .flat_map(|r| r.deployments.iter().map(move |d| (&*r.alias, d)))
    }

    /// Starts planning a request: applies the first matching rule, then ranks the target
    /// alias's deployments.
    pub fn planner(
        &self,
        facts: RequestFacts,
        now_ms: u64,
        rng: &mut dyn FnMut(u32) -> u32,
    ) -> Result<Planner<'_>, PlanError> {
        let rule = rules::first_match(&self.policy.rules, &facts);
        let target = rule
            .and_then(|r| r.route.alias.as_deref())
            .unwrap_or(&facts.model);
        let route = self
            .routes
            .get(target)
            .cloned()
            .ok_or_else(|| PlanError::UnknownAlias(facts.model.clone()))?;
        let mut planner = Planner {
            table: self,
            decision: RouteDecision {
                requested: facts.model.clone(),
                alias: route.alias.clone(),
                rule: rule.map(|r| r.name.clone()),
                strategy: strategy::name(route.strategy),
                ..RouteDecision::default()
            },
            facts,
            rule,
            queue: VecDeque::new(),
            last_resort: Vec::new(),
            pending: VecDeque::new(),
            expanded: VecDeque::new(),
            visited: Vec::new(),
            claimed_probes: Vec::new(),
            now_ms,
        };
        planner.rank(&route, rng);
        planner.expand_later(&route);
        if planner.queue.is_empty() && planner.last_resort.is_empty() {
            let restrictions = &planner.facts.restrictions;
            if !restrictions.is_empty() && !self.usable(&route.alias, restrictions) {
                return Err(PlanError::NotAllowed(restrictions.explain(
                    &route.alias,
                    route.deployments.iter().map(|d| (&*d.id, &d.attributes)),
                )));
            }
            if route.fallbacks.all().next().is_none() {
                return Err(PlanError::Unsupported {
                    alias: route.alias.to_string(),
                    needs: planner.facts.needs.describe(),
                });
            }
        }
        Ok(planner)
    }

    /// The alias a request with these facts is routed to: the first matching rule's, else the
    /// model it names.
    pub fn routed_alias<'f>(&'f self, facts: &'f RequestFacts) -> &'f str {
        rules::first_match(&self.policy.rules, facts)
            .and_then(|r| r.route.alias.as_deref())
            .unwrap_or(&facts.model)
    }

    /// Whether one of `alias`'s own deployments serves embeddings. A fallback's does not
    /// count: vectors of another model are in another space, and mixed into an index they
    /// would match nothing they should.
    pub fn embeds(&self, alias: &str) -> bool {
        self.routes.get(alias).is_some_and(|route| {
            route
                .deployments
                .iter()
                .any(|d| d.provider.dialect.capabilities().embeddings)
        })
    }

    /// Whether `alias` or one of its fallbacks (transitively) has a deployment the
    /// restrictions allow.
    pub fn usable(&self, alias: &str, restrictions: &Restrictions) -> bool {
        let mut seen = vec![alias.to_owned()];
        let mut queue = vec![alias.to_owned()];
        while let Some(a) = queue.pop() {
            let Some(route) = self.routes.get(&a) else {
                continue;
            };
            if route
                .deployments
                .iter()
                .any(|d| restrictions.rejects(&d.attributes).is_none())
            {
                return true;
            }
            for f in route.fallbacks.all() {
                if !seen.contains(f) {
                    seen.push(f.clone());
                    queue.push(f.clone());
                }
            }
        }
        false
    }

    /// The whole plan when every failure is of an unknown class (tests and tools).
    pub fn plan(
        &self,
        alias: &str,
        needs: Needs,
        now_ms: u64,
        rng: &mut dyn FnMut(u32) -> u32,
    ) -> Result<Vec<PlannedAttempt>, PlanError> {
        let facts = RequestFacts {
            model: alias.to_owned(),
            needs,
            ..RequestFacts::default()
        };
        let mut planner = self.planner(facts, now_ms, rng)?;
        let mut out = Vec::new();
        while let Some(a) = planner.next(None, rng) {
            out.push(a);
        }
        Ok(out)
    }
}

/// Output tokens a request without `max_tokens` is costed at, for `lowest_cost` and cost
/// ceilings: a typical answer's length.
pub const ASSUMED_OUTPUT_TOKENS: u64 = 256;

/// Yields the attempts of one request in order; fallback aliases are expanded lazily so the
/// class of the last failure can choose them.
pub struct Planner<'t> {
    table: &'t RoutingTable,
    pub decision: RouteDecision,
    facts: RequestFacts,
    rule: Option<&'t RuleFile>,
    queue: VecDeque<PlannedAttempt>,
    /// Deployments in cooldown: tried only after every healthy one, without retries.
    last_resort: Vec<PlannedAttempt>,
    /// Fallback routes not ranked yet.
    pending: VecDeque<Arc<Route>>,
    /// Ranked routes whose fallbacks are not expanded yet.
    expanded: VecDeque<Arc<Route>>,
    /// Fallback aliases taken so far (the one routed to is `decision.alias`).
    visited: Vec<Name>,
    /// Probes this plan claimed: given back when the plan ends if nothing gave a verdict on
    /// the deployment meanwhile (the request was refused after routing, or its client left
    /// before the probe answered). A verdict (an answer, a failure) moved the cooldown, and
    /// the give-back then changes nothing.
    claimed_probes: Vec<ClaimedProbe>,
    now_ms: u64,
}

struct ClaimedProbe {
    deployment: Arc<Deployment>,
    claimed_until: u64,
    was: u64,
    verdicts: u64,
}

impl Drop for Planner<'_> {
    fn drop(&mut self) {
        for p in self.claimed_probes.drain(..) {
            p.deployment
                .health
                .release_probe(p.claimed_until, p.was, p.verdicts);
        }
    }
}

impl Planner<'_> {
    pub fn facts(&self) -> &RequestFacts {
        &self.facts
    }

    /// Returns an attempt taken with `next` but not used (a hedge that was not needed).
    pub fn push_front(&mut self, attempt: PlannedAttempt) {
        self.queue.push_front(attempt);
    }

    /// Keeps a ranked route for its fallbacks, if it has any (most aliases have none, and
    /// their plans then hold no queue of routes).
    fn expand_later(&mut self, route: &Arc<Route>) {
        if route.fallbacks.all().next().is_some() {
            self.expanded.push_back(route.clone());
        }
    }

    fn already_planned(&self, id: &str) -> bool {
        self.queue
            .iter()
            .chain(&self.last_resort)
            .any(|a| *a.deployment.id == *id)
            || self
                .decision
                .candidates
                .iter()
                .any(|c| *c.deployment == *id)
    }

    fn skip(&mut self, alias: &Name, d: &Deployment, reason: String) {
        self.decision.skipped.push(SkippedDeployment {
            alias: alias.clone(),
            deployment: d.id.clone(),
            reason,
        });
    }

    /// Filters a route's deployments and orders them with its strategy.
    fn rank(&mut self, route: &Arc<Route>, rng: &mut dyn FnMut(u32) -> u32) {
        // A rule's deployment subset and weights apply to the alias it routed to.
        let overrides = self
            .rule
            .filter(|r| r.route.alias.as_deref().is_none_or(|a| *a == *route.alias))
            .map(|r| &r.route);
        let output = self.facts.max_output_tokens.unwrap_or(0);
        // What the answer is assumed to cost when the request sets no limit: an output price
        // left out would rank a cheap-input, dear-output deployment first and let it past a
        // cost ceiling it then breaks.
        let costed_output = self
            .facts
            .max_output_tokens
            .unwrap_or(ASSUMED_OUTPUT_TOKENS);
        let max_cost = self
            .facts
            .max_cost
            .into_iter()
            .chain(overrides.and_then(|o| o.max_cost))
            .reduce(f64::min);
        let mut healthy = Vec::new();
        let mut cooled = Vec::new();
        let mut probes = Vec::new();
        for (index, d) in route.deployments.iter().enumerate() {
            if self.already_planned(&d.id) {
                continue;
            }
            if let Some((_, why)) = self.facts.restrictions.rejects(&d.attributes) {
                self.skip(&route.alias, d, why);
                continue;
            }
            if let Some(o) = overrides
                && !o.deployments.is_empty()
                && !o.deployments.iter().any(|id| **id == *d.id)
            {
                self.skip(
                    &route.alias,
                    d,
                    "not in the rule's deployment subset".into(),
                );
                continue;
            }
            if !self.facts.needs.met_by(d.provider.dialect.capabilities()) {
                let needs = self.facts.needs.describe();
                self.skip(&route.alias, d, format!("cannot serve {needs}"));
                continue;
            }
            if let Some(window) = d.context_window
                && self.facts.input_tokens + output > window
            {
                let need = self.facts.input_tokens + output;
                self.skip(
                    &route.alias,
                    d,
                    format!("needs ~{need} tokens, context window is {window}"),
                );
                continue;
            }
            if let (Some(limit), Some(cost)) = (
                max_cost,
                strategy::estimated_cost(d.price, self.facts.input_tokens, costed_output),
            ) && cost > limit
            {
                self.skip(
                    &route.alias,
                    d,
                    format!("estimated cost ${cost:.6} exceeds max_cost ${limit:.6}"),
                );
                continue;
            }
            let snapshot = d.health.snapshot_for_routing(self.now_ms);
            let admitted = if snapshot.cooling {
                health::Admitted::Cooling
            } else {
                d.health.admit(self.now_ms, self.table.policy.cooldown)
            };
            let candidate = Candidate {
                index,
                weight: overrides
                    .and_then(|o| o.weights.get(&*d.id).copied())
                    .unwrap_or(d.weight),
                priority: d.priority,
                price: d.price,
                rpm: d.rpm,
                tpm: d.tpm,
                health: snapshot,
            };
            match admitted {
                health::Admitted::Healthy => healthy.push(candidate),
                health::Admitted::Probe {
                    claimed_until,
                    was,
                    verdicts,
                } => {
                    self.claimed_probes.push(ClaimedProbe {
                        deployment: d.clone(),
                        claimed_until,
                        was,
                        verdicts,
                    });
                    probes.push(candidate);
                }
                health::Admitted::Cooling => cooled.push(candidate),
            }
        }
        let input = OrderInput {
            input_tokens: self.facts.input_tokens,
            output_tokens: costed_output,
            tick: route.tick.fetch_add(1, Ordering::Relaxed),
            exploration: self.table.policy.exploration,
        };
        // A deployment whose cooldown ran out is probed by this request, first, whatever the
        // strategy would say: its one probe must be sent to tell whether it recovered.
        let probed = probes.into_iter().map(|c| (c, None));
        for (c, score) in probed.chain(strategy::order(route.strategy, healthy, &input, rng)) {
            let d = route.deployments[c.index].clone();
            self.decision.candidates.push(ScoredCandidate {
                alias: route.alias.clone(),
                deployment: d.id.clone(),
                score,
                cooling: false,
            });
            self.queue.push_back(PlannedAttempt {
                route: route.clone(),
                deployment: d,
                retries: route.num_retries,
            });
        }
        for c in cooled {
            let d = route.deployments[c.index].clone();
            self.decision.candidates.push(ScoredCandidate {
                alias: route.alias.clone(),
                deployment: d.id.clone(),
                score: None,
                cooling: true,
            });
            self.last_resort.push(PlannedAttempt {
                route: route.clone(),
                deployment: d,
                retries: 0,
            });
        }
    }

    /// The next attempt, or `None` when the plan is exhausted. `last_failure` is the class of the
    /// failure that made the previous attempts give up; it chooses the fallback aliases.
    pub fn next(
        &mut self,
        last_failure: Option<ErrorClass>,
        rng: &mut dyn FnMut(u32) -> u32,
    ) -> Option<PlannedAttempt> {
        loop {
            if let Some(a) = self.queue.pop_front() {
                return Some(a);
            }
            if let Some(route) = self.pending.pop_front() {
                self.decision.fallbacks.push(route.alias.clone());
                self.rank(&route, rng);
                self.expand_later(&route);
                continue;
            }
            if let Some(route) = self.expanded.pop_front() {
                for alias in route.fallbacks.for_class(last_failure) {
                    if *alias != *self.decision.alias
                        && !self.visited.iter().any(|v| **v == **alias)
                        && let Some(r) = self.table.routes.get(alias)
                    {
                        self.visited.push(r.alias.clone());
                        self.pending.push_back(r.clone());
                    }
                }
                continue;
            }
            if self.last_resort.is_empty() {
                return None;
            }
            return Some(self.last_resort.remove(0));
        }
    }
}

/// The simulator serves every dialect on one port, at each provider's own paths.
fn simulator_base_url(dialect: crate::config::SimDialectFile, sim: &str) -> String {
    use crate::config::SimDialectFile as D;
    match dialect {
        D::Openai => format!("{sim}/v1"),
        D::Azure | D::Anthropic => sim.to_owned(),
        D::Gemini => format!("{sim}/v1beta"),
        D::Bedrock => sim.to_owned(),
    }
}

/// Cooldown policy applied after each failed attempt.
pub fn record_failure(
    d: &Deployment,
    policy: &RoutingFile,
    class: ErrorClass,
    retry_after: Option<Duration>,
    now_ms: u64,
) {
    // A hang will not get better within a second: cool at once so it costs at most one timeout.
    // Resets and refusals are fast to detect and can be transient (a stale pooled connection),
    // so they count towards `allowed_fails` like other failures.
    let immediate = class == ErrorClass::Timeout;
    let cooled = d.health.failure(
        policy.allowed_fails,
        policy.cooldown,
        retry_after,
        immediate,
        now_ms,
    );
    if let Some(until_ms) = cooled {
        shared_health::announce(&d.id, until_ms);
    }
}

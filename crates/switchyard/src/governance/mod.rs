//! Governance decides whether a request may go ahead and accounts for money: virtual keys
//! (stored as keyed hashes), teams, organisations and customers, model allow-lists, RPM/TPM and
//! parallel limits, and budgets by reservation (see [`ledger`]). Entities live in the store;
//! the hot path reads an immutable in-memory snapshot swapped atomically after each change.

pub mod ledger;
pub mod model;
pub mod shared;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchyard_protocol::canonical::CacheTtl;

use crate::NameMap;
use crate::error::GatewayError;
use crate::pricing;
use crate::pricing::Price;
use crate::routing::{Restrictions, glob_match};
use crate::store::{AuditEntry, SpendColumn, Store};
use crate::telemetry::Caller;
use ledger::{Ask, Ledger, Level, Shortfall};
use model::{Customer, Limits, Org, Role, StoredKey, Team, VirtualKey};

/// Who is calling, as far as governance is concerned.
#[derive(Debug, Clone)]
pub struct Principal {
    pub caller: Caller,
    pub role: Role,
    /// The master key: no limits, every permission.
    pub master: bool,
    pub key: Option<Arc<VirtualKey>>,
}

impl Principal {
    /// The team a reader below the admin role is kept to (its keys, its request records);
    /// `None` for the master key, admins and readers of no team, who read everything.
    pub fn reader_team(&self) -> Option<&str> {
        (!self.master && self.role < Role::Admin)
            .then_some(self.caller.team.as_deref())
            .flatten()
    }

    pub fn actor(&self) -> String {
        if self.master {
            "master key".into()
        } else {
            self.key.as_ref().map_or_else(
                || "unknown".into(),
                |k| format!("key {} ({})", k.id, k.name),
            )
        }
    }
}

/// In-memory view of every entity, rebuilt after each change.
#[derive(Default)]
struct Snapshot {
    /// Secret hash → key (a rotated key's previous hash maps here too, with its deadline).
    by_hash: NameMap<String, (Arc<VirtualKey>, Option<i64>)>,
    keys: NameMap<String, Arc<VirtualKey>>,
    /// Per key id, the caller its requests are recorded under, built once per snapshot so a
    /// request shares its names instead of copying them.
    callers: NameMap<String, Caller>,
    teams: NameMap<String, Team>,
    orgs: NameMap<String, Org>,
    customers: NameMap<String, Customer>,
    ledgers: Ledgers,
    /// The entities as stored, `(kind, id, JSON)`: with shared state, what this replica brings
    /// back should Redis lose them (every replica knows them all, whichever made them).
    stored: Vec<(String, String, String)>,
}

/// Every entity's ledger, one map per level, so that admitting a request looks its levels up
/// by the ids it holds instead of building a `Level` (and a copy of the id) for each.
#[derive(Default)]
struct Ledgers {
    keys: NameMap<String, Arc<Ledger>>,
    teams: NameMap<String, Arc<Ledger>>,
    orgs: NameMap<String, Arc<Ledger>>,
    customers: NameMap<String, Arc<Ledger>>,
}

impl Ledgers {
    fn level<'a>(&'a self, level: &'a Level) -> (&'a NameMap<String, Arc<Ledger>>, &'a str) {
        match level {
            Level::Key(id) => (&self.keys, id),
            Level::Team(id) => (&self.teams, id),
            Level::Org(id) => (&self.orgs, id),
            Level::Customer(id) => (&self.customers, id),
        }
    }

    fn get<'a>(&'a self, level: &'a Level) -> Option<&'a Arc<Ledger>> {
        let (map, id) = self.level(level);
        map.get(id)
    }

    fn insert(&mut self, level: Level, ledger: Arc<Ledger>) {
        let (map, id) = match level {
            Level::Key(id) => (&mut self.keys, id),
            Level::Team(id) => (&mut self.teams, id),
            Level::Org(id) => (&mut self.orgs, id),
            Level::Customer(id) => (&mut self.customers, id),
        };
        map.insert(id, ledger);
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Ledger>> {
        self.keys
            .values()
            .chain(self.teams.values())
            .chain(self.orgs.values())
            .chain(self.customers.values())
    }
}

pub struct Governance {
    store: Store,
    /// State shared with the other replicas (entities, ledgers), when configured.
    shared: Option<Arc<shared::Shared>>,
    hasher: KeyHasher,
    snapshot: ArcSwap<Snapshot>,
    settled: tokio::sync::Notify,
    /// Admissions listening to `settled`: a settle notifies only when there are any, since
    /// `notify_waiters` takes a lock every serving worker shares.
    waiting: AtomicUsize,
    /// Output cap assumed when a request sets none (for the worst case of its reservation).
    pub default_max_tokens: u32,
    /// How long a request waits for in-flight reservations to settle before it is refused.
    pub max_wait: Duration,
    /// Held by each admin change from reading the entity to storing it, so that two changes
    /// at once do not each write their own copy and lose the other's (a block, a rotation).
    pub changes: tokio::sync::Mutex<()>,
}

/// With shared state, how often a request waiting for in-flight reservations looks again.
const SHARED_RECHECK: Duration = Duration::from_millis(20);

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a request may cost at most, for its reservation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Demand {
    /// The prompt's estimated tokens (leaning high).
    pub input_tokens: u64,
    /// The caller's output cap, if any.
    pub max_tokens: Option<u32>,
    /// Without the caller's cap, room for reasoning on top of the default one: a thinking
    /// budget must fit below the cap the request is sent with.
    pub reasoning_tokens: u32,
    /// The longest-lived prompt cache the request may write: its input may be billed at that
    /// write rate rather than at the input rate.
    pub cache_writes: Option<CacheTtl>,
    /// Answers asked for (OpenAI `n`), each up to the output cap; 0 reads as 1. The prompt is
    /// billed once.
    pub answers: u32,
}

/// A reservation to settle exactly once, with the real cost, when the request ends.
pub struct Admission {
    gov: Arc<Governance>,
    levels: Vec<Arc<Ledger>>,
    reserved: i64,
    /// When it was admitted: its cost belongs to the budget period it was admitted in, as its
    /// record (dated from the request's start) says after a restart.
    admitted_ms: i64,
    done: bool,
}

impl Admission {
    pub fn settle(mut self, cost_nanos: i64, output_tokens: u64) {
        self.finish(cost_nanos, output_tokens);
    }

    fn finish(&mut self, cost_nanos: i64, output_tokens: u64) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(shared) = self.gov.shared.clone() {
            // Off the caller's path; retried, since a reservation left standing would hold
            // budget until Redis is cleared.
            let levels = std::mem::take(&mut self.levels);
            let (reserved, admitted_ms) = (self.reserved, self.admitted_ms);
            let settle = async move {
                let now = now_unix_ms();
                for attempt in 0..20u32 {
                    match shared
                        .settle(
                            &levels,
                            reserved,
                            cost_nanos,
                            output_tokens,
                            now,
                            admitted_ms,
                        )
                        .await
                    {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(
                                attempt,
                                "cannot settle a reservation in the shared state: {e}"
                            );
                            tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                        }
                    }
                }
                tracing::error!(
                    reserved,
                    cost_nanos,
                    "gave up settling a reservation in the shared state"
                );
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(settle);
                }
                Err(_) => tracing::error!(
                    reserved,
                    cost_nanos,
                    "a reservation ended outside the runtime and could not be settled"
                ),
            }
        } else {
            ledger::settle(
                &self.levels,
                self.reserved,
                cost_nanos,
                output_tokens,
                now_unix_ms(),
                self.admitted_ms,
            );
        }
        // Pairs with `Listening::new`: an admission counted before it looked at the ledgers
        // is seen here if its look missed this settle (both go through the ledgers' locks).
        if self.gov.waiting.load(Ordering::SeqCst) > 0 {
            self.gov.settled.notify_waiters();
        }
    }
}

/// An admission listening for settles while budget held in flight stands in its way.
struct Listening<'a> {
    notified: Pin<Box<tokio::sync::futures::Notified<'a>>>,
    waiting: &'a AtomicUsize,
}

impl<'a> Listening<'a> {
    /// Counted and registered before the ledgers are looked at again, so a settle between
    /// the two looks is not missed.
    fn new(gov: &'a Governance) -> Self {
        gov.waiting.fetch_add(1, Ordering::SeqCst);
        let mut notified = Box::pin(gov.settled.notified());
        notified.as_mut().enable();
        Listening {
            notified,
            waiting: &gov.waiting,
        }
    }
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Never settled (a path that ended early): release the reservation, nothing spent.
        self.finish(0, 0);
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("reserved", &self.reserved)
            .finish()
    }
}

fn allowed_by(limits: &Limits, alias: &str) -> bool {
    limits.models.is_empty() || limits.models.iter().any(|p| glob_match(p, alias))
}

impl Governance {
    pub async fn load(
        store: Store,
        shared: Option<shared::Shared>,
        secret: Vec<u8>,
        default_max_tokens: u32,
        max_wait: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let gov = Arc::new(Self {
            store,
            shared: shared.map(Arc::new),
            hasher: KeyHasher::new(&secret),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            settled: tokio::sync::Notify::new(),
            waiting: AtomicUsize::new(0),
            default_max_tokens,
            max_wait,
            changes: tokio::sync::Mutex::new(()),
        });
        if let Some(shared) = &gov.shared {
            // The first replica to use a Redis brings the keys it already has.
            let local = gov.store.entities().await?;
            if shared.entities().await?.is_empty() && shared.seed_entities(&local).await? {
                tracing::info!(
                    entities = local.len(),
                    "shared state seeded with this replica's entities"
                );
            }
        }
        gov.reload().await?;
        if gov.shared.is_some() {
            tokio::spawn(keep_in_step(Arc::downgrade(&gov)));
        }
        Ok(gov)
    }

    /// Brings back what Redis lost (it restarted without persistence, or was flushed): the
    /// entities this replica's store holds, and every ledger's spend this period as the
    /// request records say. Until then it would know no key, and budgets would start from
    /// nothing. Reservations it held are gone with it; their settles free nothing.
    async fn reseed(&self, shared: &shared::Shared) -> anyhow::Result<()> {
        // What this replica knew (every entity, whichever replica made it), and what its store
        // holds: entities made since through another replica whose poll it has not seen yet
        // are brought back by that replica.
        let mut local = self.snapshot.load().stored.clone();
        local.extend(self.store.entities().await?);
        tracing::warn!(
            entities = local.len(),
            "the shared state is empty (Redis restarted without persistence, or was flushed): \
             bringing back this replica's entities and the spend its records show"
        );
        shared.seed_entities(&local).await?;
        let now = now_unix_ms();
        let ledgers: Vec<Arc<Ledger>> = self.snapshot.load().ledgers.values().cloned().collect();
        for ledger in ledgers {
            let (column, id) = match &ledger.level {
                Level::Key(id) => (SpendColumn::Key, id),
                Level::Team(id) => (SpendColumn::Team, id),
                Level::Org(id) => (SpendColumn::Org, id),
                Level::Customer(id) => (SpendColumn::Customer, id),
            };
            let since = ledger.period_start(now);
            let spent = self.store.spent_since(column, id, since).await?;
            shared.seed_spent(&ledger, since, spent).await?;
        }
        Ok(())
    }

    /// The state shared with other replicas, when configured.
    pub fn shared(&self) -> Option<&Arc<shared::Shared>> {
        self.shared.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Keyed hash of a secret.
    pub fn hash(&self, secret: &str) -> String {
        self.hasher.hash(secret)
    }

    /// Rebuilds the snapshot from the store (the shared one, when configured), keeping the
    /// ledgers' running totals.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let now = now_unix_ms();
        let old = self.snapshot.load_full();
        let mut snap = Snapshot::default();
        let entities = match &self.shared {
            Some(shared) => shared.entities().await?,
            None => self.store.entities().await?,
        };
        for (kind, id, body) in &entities {
            let id = id.clone();
            match kind.as_str() {
                "key" => {
                    if let Ok(stored) = serde_json::from_str::<StoredKey>(body) {
                        let mut key = stored.key;
                        key.hash = stored.hash.clone();
                        key.previous_hash = stored.previous_hash.clone();
                        key.earlier_hashes = stored.earlier.clone();
                        let key = Arc::new(key);
                        snap.by_hash
                            .insert(stored.hash.clone(), (key.clone(), None));
                        if let Some(prev) = stored.previous_hash {
                            snap.by_hash
                                .insert(prev, (key.clone(), key.previous_valid_until_ms));
                        }
                        for (earlier, until) in stored.earlier {
                            snap.by_hash.insert(earlier, (key.clone(), Some(until)));
                        }
                        snap.keys.insert(id, key);
                    }
                }
                "team" => {
                    if let Ok(t) = serde_json::from_str(body) {
                        snap.teams.insert(id, t);
                    }
                }
                "org" => {
                    if let Ok(o) = serde_json::from_str(body) {
                        snap.orgs.insert(id, o);
                    }
                }
                "customer" => {
                    if let Ok(c) = serde_json::from_str(body) {
                        snap.customers.insert(id, c);
                    }
                }
                _ => {}
            }
        }
        let mut wanted: Vec<(Level, Limits, SpendColumn, String)> = Vec::new();
        for k in snap.keys.values() {
            wanted.push((
                Level::Key(k.id.clone()),
                k.limits.clone(),
                SpendColumn::Key,
                k.id.clone(),
            ));
        }
        for t in snap.teams.values() {
            wanted.push((
                Level::Team(t.id.clone()),
                t.limits.clone(),
                SpendColumn::Team,
                t.id.clone(),
            ));
        }
        for o in snap.orgs.values() {
            wanted.push((
                Level::Org(o.id.clone()),
                o.limits.clone(),
                SpendColumn::Org,
                o.id.clone(),
            ));
        }
        for c in snap.customers.values() {
            wanted.push((
                Level::Customer(c.id.clone()),
                c.limits.clone(),
                SpendColumn::Customer,
                c.id.clone(),
            ));
        }
        for (level, limits, column, id) in wanted {
            let ledger = match old.ledgers.get(&level) {
                Some(l) if **l.limits() == limits => l.clone(),
                Some(l) => {
                    // Changed limits: the same ledger, so that what requests in flight reserved
                    // and will settle stays where admissions read it. A new budget period's
                    // spend is summed again from the records.
                    let respent = if l.limits().budget_period == limits.budget_period {
                        None
                    } else {
                        let since = ledger::period_start(limits.budget_period, now);
                        Some((since, self.store.spent_since(column, &id, since).await?))
                    };
                    l.update(limits, respent.map(|(_, spent)| spent), now);
                    if let (Some(shared), Some((since, spent))) = (&self.shared, respent) {
                        shared.seed_spent(l, since, spent).await?;
                    }
                    l.clone()
                }
                None => {
                    // First sight of this entity: its spend so far comes from the request records
                    // (with shared state, only where no replica has booked any yet).
                    let since = ledger::period_start(limits.budget_period, now);
                    let spent = self.store.spent_since(column, &id, since).await?;
                    let ledger = Ledger::new(level.clone(), limits, spent, now);
                    if let Some(shared) = &self.shared {
                        shared.seed_spent(&ledger, since, spent).await?;
                    }
                    ledger
                }
            };
            snap.ledgers.insert(level, ledger);
        }
        if let Some(shared) = &self.shared {
            let ledgers: Vec<Arc<Ledger>> = snap.ledgers.values().cloned().collect();
            shared.refresh(&ledgers, now).await?;
        }
        if snap.ledgers.values().any(|l| l.limits().meters_tokens()) {
            // Requests of these callers will need a token estimate: build the default
            // vocabulary now, off the request path.
            crate::tokens::prepare([crate::tokens::Encoding::O200k]);
        }
        if self.shared.is_some() {
            snap.stored = entities;
        }
        snap.callers = snap
            .keys
            .iter()
            .map(|(id, key)| (id.clone(), caller_of(key, &snap.teams)))
            .collect();
        self.snapshot.store(Arc::new(snap));
        Ok(())
    }

    /// Resolves a presented secret. `None` for anything that must not pass; the caller answers
    /// 401 without saying why.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let hash = self.hash(secret);
        let snap = self.snapshot.load();
        let (stored, (key, valid_until)) = snap.by_hash.get_key_value(&hash)?;
        // The map lookup found it by this very hash; compare anyway in constant time.
        if !constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
            return None;
        }
        let now = now_unix_ms();
        if key.blocked
            || key.expires_at_ms.is_some_and(|t| t <= now)
            || valid_until.is_some_and(|t| t <= now)
        {
            return None;
        }
        Some(Principal {
            caller: match snap.callers.get(&key.id) {
                Some(caller) => caller.clone(),
                None => caller_of(key, &snap.teams),
            },
            role: key.role,
            master: false,
            key: Some(key.clone()),
        })
    }

    /// The limits of every level the caller belongs to: key, team, org, customer. An iterator
    /// over a fixed array, since three lookups per request would otherwise each build a vector.
    fn limits_chain<'a>(
        &self,
        snap: &'a Snapshot,
        p: &Principal,
        customer: Option<&str>,
    ) -> impl Iterator<Item = &'a Limits> + use<'a> {
        [
            p.caller
                .key_id
                .as_deref()
                .and_then(|id| snap.keys.get(id))
                .map(|k| &k.limits),
            p.caller
                .team
                .as_deref()
                .and_then(|id| snap.teams.get(id))
                .map(|t| &t.limits),
            p.caller
                .org
                .as_deref()
                .and_then(|id| snap.orgs.get(id))
                .map(|o| &o.limits),
            customer
                .and_then(|id| snap.customers.get(id))
                .map(|c| &c.limits),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether every level's allow-list admits the alias.
    pub fn model_allowed(&self, p: &Principal, customer: Option<&str>, alias: &str) -> bool {
        if p.master {
            return true;
        }
        let snap = self.snapshot.load();
        self.limits_chain(&snap, p, customer)
            .all(|l| allowed_by(l, alias))
    }

    /// Whether any level the caller belongs to has a budget or a TPM limit, the limits that
    /// reserve by the prompt's token estimate.
    pub fn meters_tokens(&self, p: &Principal, customer: Option<&str>) -> bool {
        if p.master {
            return false;
        }
        let snap = self.snapshot.load();
        self.limits_chain(&snap, p, customer)
            .any(|l| l.meters_tokens())
    }

    /// The deployment restrictions of every level the caller belongs to, merged.
    pub fn restrictions(&self, p: &Principal, customer: Option<&str>) -> Restrictions {
        let mut out = Restrictions::default();
        if p.master {
            return out;
        }
        let snap = self.snapshot.load();
        for l in self.limits_chain(&snap, p, customer) {
            out.add(
                &l.allowed_regions,
                l.max_risk_level,
                &l.allowed_data_classifications,
            );
        }
        out
    }

    /// Reserves the request's worst-case cost and its rate-limit share at every level, waiting
    /// (bounded) for in-flight reservations when only they stand in the way. When the caller
    /// set no `max_tokens` and a budget applies, returns the output cap the request must be
    /// sent with so that its answer cannot cost more than was reserved: the default, or lower
    /// when the budget cannot pay the default.
    pub async fn admit(
        self: &Arc<Self>,
        p: &Principal,
        customer: Option<&str>,
        price: Option<Price>,
        demand: Demand,
    ) -> Result<(Option<Admission>, Option<u32>), GatewayError> {
        if p.master {
            return Ok((None, None));
        }
        let levels: Vec<Arc<Ledger>> = {
            let snap = self.snapshot.load();
            let ledgers = &snap.ledgers;
            [
                p.caller
                    .key_id
                    .as_deref()
                    .and_then(|id| ledgers.keys.get(id)),
                p.caller
                    .team
                    .as_deref()
                    .and_then(|id| ledgers.teams.get(id)),
                p.caller.org.as_deref().and_then(|id| ledgers.orgs.get(id)),
                customer.and_then(|id| ledgers.customers.get(id)),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
        };
        if levels.is_empty() {
            return Ok((None, None));
        }
        let Demand {
            input_tokens,
            max_tokens,
            reasoning_tokens,
            cache_writes,
            answers,
        } = demand;
        // The long-context tier's rates when the estimate (which leans high) passes it.
        let price = price.unwrap_or_default().rates_for(input_tokens);
        // In pico-dollars (the rates' unit), reserved in whole nano-dollars rounded up.
        let input_cost = u128::from(input_tokens) * u128::from(price.input_at_most(cache_writes));
        let cap =
            max_tokens.unwrap_or_else(|| self.default_max_tokens.saturating_add(reasoning_tokens));
        // Each answer is billed its own output: a token of the cap costs that many times over.
        let output_rate = u128::from(price.output) * u128::from(answers.max(1));
        let ask = Ask {
            worst: pricing::nanos_at_least(input_cost + u128::from(cap) * output_rate),
            least: pricing::nanos_at_least(input_cost + output_rate),
            tokens: input_tokens,
            may_cap: max_tokens.is_none(),
        };
        let deadline = Instant::now() + self.max_wait;
        // Only a request refused for budget held in flight listens for settles (and looks
        // again before it waits): the common one takes no lock shared with other workers.
        let mut listening: Option<Listening> = None;
        loop {
            let admitted_ms = now_unix_ms();
            let reserved = match &self.shared {
                Some(shared) => shared
                    .reserve(&levels, ask, admitted_ms)
                    .await
                    .map_err(|e| GatewayError::SharedStateUnavailable(e.to_string()))?,
                None => ledger::reserve(&levels, ask, admitted_ms),
            };
            match reserved {
                Ok(granted) => {
                    let capped = match granted.capped_to {
                        Some(free) => {
                            let free = u128::try_from(free).unwrap_or(0) * 1000;
                            let out = match output_rate {
                                0 => u128::from(cap),
                                rate => free.saturating_sub(input_cost) / rate,
                            };
                            Some(out.clamp(1, u128::from(cap)) as u32)
                        }
                        // An uncapped answer could cost more than was reserved.
                        None if granted.budgeted && max_tokens.is_none() => Some(cap),
                        None => None,
                    };
                    return Ok((
                        Some(Admission {
                            gov: self.clone(),
                            levels,
                            reserved: granted.reserved,
                            admitted_ms,
                            done: false,
                        }),
                        capped,
                    ));
                }
                Err(Shortfall::InFlight(level)) => {
                    let Some(mut listened) = listening.take() else {
                        listening = Some(Listening::new(self));
                        continue;
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Other replicas' settles wake nobody here: with shared state, look again
                    // every few milliseconds as well.
                    let wait = match &self.shared {
                        Some(_) => left.min(SHARED_RECHECK),
                        None => left,
                    };
                    let woken = !left.is_zero()
                        && tokio::time::timeout(wait, listened.notified.as_mut())
                            .await
                            .is_ok();
                    if !woken && self.shared.is_some() && !left.is_zero() {
                        listening = Some(listened);
                        continue;
                    }
                    if !woken {
                        return Err(GatewayError::BudgetExceeded {
                            message: format!(
                                "The budget of {} is held by requests in flight; it did not free up within {} ms.",
                                level.describe(),
                                self.max_wait.as_millis()
                            ),
                            retry_after_secs: Some(1),
                        });
                    }
                }
                Err(
                    ref shortfall @ (Shortfall::Exhausted(ref level)
                    | Shortfall::BeyondBudget(ref level)),
                ) => {
                    let period = levels
                        .iter()
                        .find(|l| l.level == *level)
                        .map_or(model::Period::None, |l| l.limits().budget_period);
                    let now = now_unix_ms();
                    let next = ledger::next_period_start(period, now);
                    return Err(GatewayError::BudgetExceeded {
                        message: match next {
                            _ if matches!(shortfall, Shortfall::BeyondBudget(_)) => format!(
                                "The budget of {} has less left than this request could cost (its prompt and its max_tokens of output); a smaller max_tokens may fit.",
                                level.describe()
                            ),
                            Some(_) => format!(
                                "The budget of {} is exhausted for this period; it starts over with the next {} period.",
                                level.describe(),
                                period.as_str()
                            ),
                            None => format!("The budget of {} is exhausted.", level.describe()),
                        },
                        retry_after_secs: next.map(|t| ((t - now).max(1000) / 1000) as u64),
                    });
                }
                Err(Shortfall::RateLimited {
                    level,
                    what,
                    limit,
                    remaining,
                    retry_after_secs,
                }) => {
                    return Err(GatewayError::RateLimited {
                        message: format!(
                            "Rate limit of {} reached: {limit} {what}.",
                            level.describe()
                        ),
                        limit,
                        remaining,
                        kind: what,
                        retry_after_secs,
                    });
                }
            }
        }
    }

    /// Spent, reserved and budget of one entity, for the admin API.
    pub fn budget_of(&self, level: &Level) -> Option<(i64, i64, Option<i64>, i64)> {
        self.snapshot
            .load()
            .ledgers
            .get(level)
            .map(|l| l.usage(now_unix_ms()))
    }

    /// Share of its budget each entity with a budget has spent this period, with its
    /// `soft_budget`. Reservations are left out: they come and go with every request, and an
    /// alert on them would fire and resolve again and again instead of once per period.
    pub fn utilisation(&self) -> Vec<(Level, f64, Option<f64>)> {
        let now = now_unix_ms();
        self.snapshot
            .load()
            .ledgers
            .values()
            .filter_map(|l| {
                let (spent, _, max, _) = l.usage(now);
                let max = max.filter(|m| *m > 0)?;
                Some((
                    l.level.clone(),
                    spent as f64 / max as f64,
                    l.limits().soft_budget,
                ))
            })
            .collect()
    }

    pub fn keys(&self) -> Vec<Arc<VirtualKey>> {
        let mut v: Vec<_> = self.snapshot.load().keys.values().cloned().collect();
        v.sort_by_key(|k| k.created_at_ms);
        v
    }

    pub fn key(&self, id: &str) -> Option<Arc<VirtualKey>> {
        self.snapshot.load().keys.get(id).cloned()
    }

    pub fn teams(&self) -> Vec<Team> {
        self.snapshot.load().teams.values().cloned().collect()
    }

    pub fn team(&self, id: &str) -> Option<Team> {
        self.snapshot.load().teams.get(id).cloned()
    }

    pub fn orgs(&self) -> Vec<Org> {
        self.snapshot.load().orgs.values().cloned().collect()
    }

    pub fn org(&self, id: &str) -> Option<Org> {
        self.snapshot.load().orgs.get(id).cloned()
    }

    pub fn customers(&self) -> Vec<Customer> {
        self.snapshot.load().customers.values().cloned().collect()
    }

    pub fn customer(&self, id: &str) -> Option<Customer> {
        self.snapshot.load().customers.get(id).cloned()
    }

    /// Stores an entity (or deletes it with `None`) with its audit entry, then reloads.
    pub async fn write(
        &self,
        kind: &str,
        id: &str,
        body: Option<String>,
        audit: AuditEntry,
    ) -> anyhow::Result<()> {
        if let Some(shared) = &self.shared {
            shared.put_entity(kind, id, body.as_deref()).await?;
        }
        self.store
            .put_entity(kind, id, body.as_deref(), &audit)
            .await?;
        self.reload().await
    }
}

/// With shared state: reloads when another replica changed an entity, and refreshes the
/// ledgers' mirrors, every `shared::POLL_EVERY`, for as long as the governance lives.
async fn keep_in_step(gov: std::sync::Weak<Governance>) {
    let mut seen = None;
    // Looks for stopped replicas' reservations about twice per `ALIVE_FOR`.
    let release_every =
        (shared::ALIVE_FOR.as_millis() / 2 / shared::POLL_EVERY.as_millis()).max(1) as u64;
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(shared::POLL_EVERY).await;
        polls += 1;
        let Some(gov) = gov.upgrade() else {
            return;
        };
        let Some(shared) = gov.shared.clone() else {
            return;
        };
        let result = async {
            shared.say_alive().await?;
            if polls.is_multiple_of(release_every) {
                shared.release_stopped().await?;
            }
            let version = match shared.version().await? {
                Some(version) => version,
                None => {
                    gov.reseed(&shared).await?;
                    shared.version().await?.unwrap_or(0)
                }
            };
            if seen != Some(version) {
                gov.reload().await?;
                seen = Some(version);
            } else {
                let ledgers: Vec<Arc<Ledger>> =
                    gov.snapshot.load().ledgers.values().cloned().collect();
                shared.refresh(&ledgers, now_unix_ms()).await?;
            }
            anyhow::Ok(())
        }
        .await;
        shared.note_reached(result.is_ok());
        if let Err(e) = result {
            tracing::warn!("cannot read the shared state: {e}");
        }
    }
}

/// Who a key's requests are recorded and limited as: the key, its team and the team's
/// organisation.
fn caller_of(key: &VirtualKey, teams: &NameMap<String, Team>) -> Caller {
    let org = (key.team_id.as_ref())
        .and_then(|t| teams.get(t))
        .and_then(|t| t.org_id.as_deref());
    Caller {
        key_id: Some(key.id.as_str().into()),
        key_name: Some(key.name.as_str().into()),
        team: key.team_id.as_deref().map(Into::into),
        org: org.map(Into::into),
    }
}

/// The stored form of a key: hex HMAC-SHA-256 of the presented secret under the hashing secret.
pub fn key_hash(hashing_secret: &[u8], presented: &str) -> String {
    KeyHasher::new(hashing_secret).hash(presented)
}

/// HMAC-SHA-256 under the hashing secret, with the secret's two padded blocks hashed once: each
/// key hash then starts from a copy of that state, two of its four compressions fewer.
pub struct KeyHasher {
    /// `None` only if HMAC refused the key, which it never does (any length is accepted).
    prepared: Option<Hmac<Sha256>>,
}

impl KeyHasher {
    pub fn new(hashing_secret: &[u8]) -> Self {
        Self {
            prepared: Hmac::<Sha256>::new_from_slice(hashing_secret).ok(),
        }
    }

    /// Hex HMAC-SHA-256 of `presented`.
    pub fn hash(&self, presented: &str) -> String {
        let Some(prepared) = &self.prepared else {
            return String::new();
        };
        let mut mac = prepared.clone();
        mac.update(presented.as_bytes());
        crate::encoding::lower_hex(&mac.finalize().into_bytes())
    }
}

/// Equal-length comparison whose time does not depend on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A hashing secret derived from another secret and a purpose (HMAC-SHA-256).
pub fn derive_secret(from: &str, purpose: &str) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(from.as_bytes()) {
        Ok(mut mac) => {
            mac.update(purpose.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => from.as_bytes().to_vec(),
    }
}

/// A new secret: `sk-sy-` and 40 random base-62 characters (~238 bits).
pub fn new_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::from("sk-sy-");
    for _ in 0..40 {
        s.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// `sk-sy-AbCd…wXyZ`: recognisable, useless to an attacker.
pub fn display_of(secret: &str) -> String {
    let head: String = secret.chars().take(10).collect();
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    #[test]
    fn a_key_hash_is_the_lowercase_hex_of_its_hmac() {
        for (secret, key) in [
            (&b"hashing secret"[..], "sk-sy-abc"),
            (b"", ""),
            (b"\x00\xff", "ключ with ✓ and spaces"),
        ] {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(key.as_bytes());
            let expected: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(super::key_hash(secret, key), expected);
            // A prepared hasher gives the same hash however often it is used.
            let hasher = super::KeyHasher::new(secret);
            assert_eq!(hasher.hash(key), expected);
            assert_eq!(hasher.hash(key), expected);
        }
    }

    #[test]
    fn a_keys_caller_names_the_key_its_team_and_the_teams_organisation() {
        let key = |team: Option<&str>| -> super::VirtualKey {
            serde_json::from_value(serde_json::json!({
                "id": "key_1", "name": "ci", "display": "sk-sy-Ab…yZ", "team_id": team,
                "created_at_ms": 0,
            }))
            .unwrap()
        };
        let mut teams = crate::NameMap::default();
        let team = serde_json::json!({"id": "team_1", "name": "research", "org_id": "org_1"});
        teams.insert("team_1".to_owned(), serde_json::from_value(team).unwrap());
        let names = |c: crate::telemetry::Caller| {
            [c.key_id, c.key_name, c.team, c.org].map(|n| n.map(|n| n.to_string()))
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            names(super::caller_of(&key(Some("team_1")), &teams)),
            [some("key_1"), some("ci"), some("team_1"), some("org_1")]
        );
        assert_eq!(
            names(super::caller_of(&key(None), &teams)),
            [some("key_1"), some("ci"), None, None]
        );
        // A team the snapshot does not hold names no organisation.
        assert_eq!(
            names(super::caller_of(&key(Some("gone")), &teams)),
            [some("key_1"), some("ci"), some("gone"), None]
        );
    }
}

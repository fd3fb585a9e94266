//! Governance state shared by replicas through Redis (`shared.redis_url`): the entities (keys,
//! teams, organisations, customers) and, per entity, its budget ledger and rate-limit windows.
//!
//! * Entities: one hash of JSON documents, and a version counter that every write bumps;
//!   each replica polls the counter and reloads on change, so a key made through one replica
//!   works on all of them within a poll.
//! * Reservations and settlements are Lua scripts, so that checking every level and reserving
//!   at all of them is one atomic step across replicas, as the in-process ledger is within one
//!   (`ledger.rs`, whose rules the scripts follow). Each level has a hash with `reserved`,
//!   `in_flight` and `spent@{period start}`, and per minute a window hash (`req`, `tok`) that
//!   expires. A request that needs a budget or limit checked costs one round trip to Redis.
//! * Each replica notes what it holds in flight (per ledger, its reservations and parallel
//!   slots) in a hash of its own, and says it is alive with a key that expires unless renewed
//!   every poll. A replica that stops without settling (killed, its host lost) stops renewing;
//!   the others then release what it held, so a crash cannot hold budget and parallel slots
//!   forever. A settle of a reservation so released frees nothing again.
//! * What the admin API and the budget alerts read is a local mirror of the shared figures,
//!   refreshed with every script's answer and by the poll.
//! * Each serving worker has its own connection, so a request's round trip does not cross
//!   threads.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::ledger::{Ask, Granted, Ledger, Level, Shortfall};
use super::model::OverBudget;

/// How often a replica looks for entity changes and refreshes its mirror of the ledgers.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// A window hash outlives its minute and the next (the sliding estimate reads both).
const WINDOW_TTL_SECS: i64 = 180;
/// How long a replica counts as alive after it last said so (it says so every poll): past
/// this, the others release what it holds in flight.
pub const ALIVE_FOR: Duration = Duration::from_secs(5);
/// Lua's numbers are doubles: whole numbers are exact up to 2^53 (nine million dollars in
/// nano-dollars), so a larger worst case (a saturated estimate) is passed as that.
const LUA_EXACT: i64 = 1 << 53;

/// Atomic multi-level reservation; see `ledger::reserve` for the rules it follows.
///
/// KEYS: per level, its ledger hash, this minute's window and the previous minute's window;
/// then the entities' version, whose absence means Redis lost its state (`{"lost"}`: nothing
/// is reserved on ledgers that forgot what was spent, until a replica brings it back), and
/// this replica's hash of what it holds in flight.
/// ARGV: levels, worst, least, tokens, may_cap, fraction of the minute gone, window TTL; then per
/// level: has budget, budget, spent field, refuses to cap, parallel limit, rpm, tpm (-1: none).
/// Returns `{"ok", reserved, capped_to (-1: not capped), budgeted, spent.., reserved..}` or
/// `{"rate", level, what, limit, remaining, last minute's count, this minute's count}`,
/// `{"exhausted", level}`, `{"inflight", level}`.
const RESERVE: &str = r#"
local n = tonumber(ARGV[1])
local worst = tonumber(ARGV[2])
local least = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local may_cap = ARGV[5] == '1'
local into = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local function arg(i, k) return ARGV[7 + (i - 1) * 7 + k] end
local function num(v) return tonumber(v) or 0 end
if redis.call('EXISTS', KEYS[3 * n + 1]) == 0 then
  return {'lost'}
end
for i = 1, n do
  local ledger, cur, prev = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local parallel, rpm, tpm = tonumber(arg(i, 5)), tonumber(arg(i, 6)), tonumber(arg(i, 7))
  if parallel >= 0 and num(redis.call('HGET', ledger, 'in_flight')) >= parallel then
    return {'rate', i, 'parallel requests', parallel, 0}
  end
  local function limited(field, what, limit, weight)
    local last, this = num(redis.call('HGET', prev, field)), num(redis.call('HGET', cur, field))
    local used = last * (1 - into) + this
    if used + weight > limit then
      return {'rate', i, what, limit, math.floor(math.max(limit - used, 0)),
        string.format('%d', last), string.format('%d', this)}
    end
  end
  if rpm >= 0 then
    local refused = limited('req', 'requests per minute', rpm, 1)
    if refused then return refused end
  end
  if tpm >= 0 then
    local refused = limited('tok', 'tokens per minute', tpm, tokens)
    if refused then return refused end
  end
end
local free, free_settled, tightest, refuse_cap = nil, nil, 0, false
for i = 1, n do
  if arg(i, 1) == '1' then
    local ledger = KEYS[3 * i - 2]
    local max = tonumber(arg(i, 2))
    local spent = num(redis.call('HGET', ledger, arg(i, 3)))
    local f = max - spent - num(redis.call('HGET', ledger, 'reserved'))
    if free == nil or f < free then free = f; tightest = i end
    if free_settled == nil or max - spent < free_settled then free_settled = max - spent end
    if arg(i, 4) == '1' then refuse_cap = true end
  end
end
local amount, capped = worst, -1
if free ~= nil then
  may_cap = may_cap and not refuse_cap
  if worst <= free then
    amount = worst
  elseif least > free_settled then
    return {'exhausted', tightest}
  elseif may_cap and least <= free then
    -- Half of what is free, at least a sixteenth of the request's own output room; below that
    -- only because of reservations in flight, wait for them; else what is left
    -- (ledger::capped_share).
    local floor = least + math.floor((worst - least) / 16)
    amount = math.max(math.floor(free / 2), floor)
    if amount > free then
      if floor <= free_settled then return {'inflight', tightest} end
      amount = free
    end
    capped = amount
  elseif worst <= free_settled or may_cap then
    return {'inflight', tightest}
  else
    return {'beyond', tightest}
  end
end
local out = {'ok', string.format('%d', amount), string.format('%d', capped), free ~= nil and 1 or 0}
local held = KEYS[3 * n + 2]
for i = 1, n do
  local ledger, cur = KEYS[3 * i - 2], KEYS[3 * i - 1]
  local reserved = redis.call('HINCRBY', ledger, 'reserved', string.format('%d', amount))
  redis.call('HINCRBY', ledger, 'in_flight', 1)
  redis.call('HINCRBY', held, 'r:' .. ledger, string.format('%d', amount))
  redis.call('HINCRBY', held, 'f:' .. ledger, 1)
  redis.call('HINCRBY', cur, 'req', 1)
  redis.call('HINCRBY', cur, 'tok', string.format('%d', tokens))
  redis.call('EXPIRE', cur, ttl)
  table.insert(out, string.format('%d', num(redis.call('HGET', ledger, arg(i, 3)))))
  table.insert(out, string.format('%d', reserved))
end
return out
"#;

/// Releases a reservation and books the cost at every level, in the budget period the request
/// was admitted in.
///
/// KEYS: per level, its ledger hash and this minute's window; then this replica's hash of what
/// it holds (a reservation no longer there was released as a stopped replica's, or lost with
/// Redis's state: it frees nothing). ARGV: levels, the reservation
/// negated (a plain integer even when it is 0: Redis refuses "-0" as an increment), cost,
/// extra tokens, window TTL; then per level the admission period's spent field and the current
/// period's. Returns per level its current period's spent and its reserved figures.
const SETTLE: &str = r#"
local n = tonumber(ARGV[1])
local held = KEYS[2 * n + 1]
local out = {}
for i = 1, n do
  local ledger, cur = KEYS[2 * i - 1], KEYS[2 * i]
  local booked, current = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local reserved
  if redis.call('HEXISTS', held, 'f:' .. ledger) == 1 then
    reserved = redis.call('HINCRBY', ledger, 'reserved', ARGV[2])
    if reserved < 0 then
      redis.call('HSET', ledger, 'reserved', 0)
      reserved = 0
    end
    if tonumber(redis.call('HINCRBY', ledger, 'in_flight', -1)) < 0 then
      redis.call('HSET', ledger, 'in_flight', 0)
    end
    redis.call('HINCRBY', held, 'r:' .. ledger, ARGV[2])
    if redis.call('HINCRBY', held, 'f:' .. ledger, -1) <= 0 then
      redis.call('HDEL', held, 'f:' .. ledger, 'r:' .. ledger)
    end
  else
    reserved = tonumber(redis.call('HGET', ledger, 'reserved') or '0')
  end
  local spent = redis.call('HINCRBY', ledger, booked, ARGV[3])
  if booked ~= current then
    spent = tonumber(redis.call('HGET', ledger, current) or '0')
  end
  if ARGV[4] ~= '0' then
    redis.call('HINCRBY', cur, 'tok', ARGV[4])
    redis.call('EXPIRE', cur, tonumber(ARGV[5]))
  end
  table.insert(out, spent)
  table.insert(out, reserved)
end
return out
"#;

/// Releases what a replica that stopped saying it is alive held in flight, at every ledger.
/// KEYS: its hash of what it holds, its alive key. Returns 1 when it released anything.
const RELEASE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  local ledger = string.sub(field, 3)
  local member = string.sub(field, 1, 1) == 'r' and 'reserved' or 'in_flight'
  -- Redis refuses "-0" as an increment: a free model's reservation holds nothing to free.
  if value ~= '0' and tonumber(redis.call('HINCRBY', ledger, member, '-' .. value)) < 0 then
    redis.call('HSET', ledger, member, 0)
  end
end
redis.call('DEL', KEYS[1])
return #all > 0 and 1 or 0
"#;

/// The Redis side of governance.
pub struct Shared {
    client: redis::Client,
    config: redis::aio::ConnectionManagerConfig,
    /// One connection per serving worker (made on first use, on that worker's runtime, so its
    /// I/O stays on the thread that waits for it) and one, index 0, for everything else.
    connections: Vec<tokio::sync::OnceCell<ConnectionManager>>,
    prefix: String,
    reserve: redis::Script,
    settle: redis::Script,
    release: redis::Script,
    /// This replica's name among the replicas, for what it holds in flight.
    replica: String,
    /// The keys every reservation names besides its levels' (the entities' version, this
    /// replica's hash of what it holds), made once rather than per request.
    version_key: String,
    own_held_key: String,
    /// Whether the last poll reached Redis (`switchyard_shared_state_up`).
    reachable: std::sync::atomic::AtomicBool,
}

type RedisResult<T> = Result<T, redis::RedisError>;

impl Shared {
    /// Connects (failing the start when Redis cannot be reached: a replica that cannot see the
    /// shared budgets must not serve). `workers` is the number of serving workers.
    pub async fn connect(url: &str, prefix: &str, workers: usize) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        // A request waits for Redis at most a couple of seconds; reconnecting is retried a
        // few times quickly, then again on the next request.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let replica = format!("{:016x}", rand::random::<u64>());
        let shared = Self {
            client,
            config,
            connections: (0..=workers)
                .map(|_| tokio::sync::OnceCell::new())
                .collect(),
            prefix: prefix.to_owned(),
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
            release: redis::Script::new(RELEASE),
            own_held_key: format!("{prefix}:held:{replica}"),
            replica,
            version_key: format!("{prefix}:entities:version"),
            reachable: std::sync::atomic::AtomicBool::new(true),
        };
        shared.say_alive().await?;
        Ok(shared)
    }

    fn alive_key(&self, replica: &str) -> String {
        format!("{}:alive:{replica}", self.prefix)
    }

    /// Says this replica is alive for another `ALIVE_FOR` (every poll does).
    pub async fn say_alive(&self) -> RedisResult<()> {
        redis::cmd("SET")
            .arg(self.alive_key(&self.replica))
            .arg(1)
            .arg("PX")
            .arg(ALIVE_FOR.as_millis() as u64)
            .query_async::<()>(&mut self.conn().await?)
            .await
    }

    /// Releases what replicas that stopped saying they are alive held in flight; how many.
    pub async fn release_stopped(&self) -> RedisResult<usize> {
        let mut conn = self.conn().await?;
        let pattern = format!("{}:held:*", self.prefix);
        let prefix_len = pattern.len() - 1;
        let mut held: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut conn)
                .await?;
            held.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut released = 0;
        for key in held {
            let Some(replica) = key.get(prefix_len..) else {
                continue;
            };
            if replica == self.replica {
                continue;
            }
            let done: i64 = self
                .release
                .key(&key)
                .key(self.alive_key(replica))
                .invoke_async(&mut conn)
                .await?;
            if done == 1 {
                tracing::warn!(
                    replica,
                    "released what a replica that stopped without settling held in flight"
                );
                released += 1;
            }
        }
        Ok(released)
    }

    /// Whether the last poll reached Redis.
    pub fn reachable(&self) -> bool {
        self.reachable.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes whether a poll reached Redis.
    pub fn note_reached(&self, reached: bool) {
        self.reachable
            .store(reached, std::sync::atomic::Ordering::Relaxed);
    }

    /// This thread's connection.
    async fn conn(&self) -> RedisResult<ConnectionManager> {
        let slot = crate::upstream::worker_slot().min(self.connections.len().saturating_sub(1));
        let cell = &self.connections[slot];
        let conn = cell
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            })
            .await?;
        Ok(conn.clone())
    }

    fn entities_key(&self) -> String {
        format!("{}:entities", self.prefix)
    }

    fn ledger_key(&self, level: &Level) -> String {
        format!("{}:ledger:{}", self.prefix, tag(level))
    }

    fn window_key(&self, level: &Level, minute: i64) -> String {
        format!("{}:window:{}:{minute}", self.prefix, tag(level))
    }

    /// Every entity as `(kind, id, JSON)`.
    pub async fn entities(&self) -> RedisResult<Vec<(String, String, String)>> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.entities_key())
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(field, body)| {
                let (kind, id) = field.split_once('/')?;
                Some((kind.to_owned(), id.to_owned(), body))
            })
            .collect())
    }

    /// Stores (or with `None` deletes) an entity and bumps the version replicas poll.
    pub async fn put_entity(&self, kind: &str, id: &str, body: Option<&str>) -> RedisResult<()> {
        let field = format!("{kind}/{id}");
        let mut pipe = redis::pipe();
        pipe.atomic();
        match body {
            Some(body) => pipe.hset(self.entities_key(), field, body).ignore(),
            None => pipe.hdel(self.entities_key(), field).ignore(),
        };
        pipe.incr(&self.version_key, 1).ignore();
        pipe.query_async::<()>(&mut self.conn().await?).await
    }

    /// Stores entities only where none are stored yet (a first replica brings its own), and
    /// marks the shared state as holding them (the version replicas poll, which a Redis that
    /// lost its state no longer has).
    pub async fn seed_entities(&self, entities: &[(String, String, String)]) -> RedisResult<bool> {
        if entities.is_empty() {
            redis::cmd("INCR")
                .arg(&self.version_key)
                .query_async::<()>(&mut self.conn().await?)
                .await?;
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        for (kind, id, body) in entities {
            pipe.cmd("HSETNX")
                .arg(self.entities_key())
                .arg(format!("{kind}/{id}"))
                .arg(body)
                .ignore();
        }
        pipe.incr(&self.version_key, 1).ignore();
        pipe.query_async::<()>(&mut self.conn().await?).await?;
        Ok(true)
    }

    /// The entities' version; `None` when Redis holds none, so lost what replicas had put in
    /// it (restarted without persistence, or flushed).
    pub async fn version(&self) -> RedisResult<Option<i64>> {
        redis::cmd("GET")
            .arg(&self.version_key)
            .query_async(&mut self.conn().await?)
            .await
    }

    /// Raises a level's spend for a period to at least `spent` (what the request records say
    /// it spent): a first replica's records, or the records again after Redis lost its state.
    /// Never lowers it, since other replicas' records may not be written yet.
    pub async fn seed_spent(
        &self,
        ledger: &Ledger,
        period_start: i64,
        spent: i64,
    ) -> RedisResult<()> {
        static AT_LEAST: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') < tonumber(ARGV[2]) then
                    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
                  end
                  return 0",
            )
        });
        if spent <= 0 {
            return Ok(());
        }
        AT_LEAST
            .key(self.ledger_key(&ledger.level))
            .arg(spent_field(period_start))
            .arg(spent)
            .invoke_async::<i64>(&mut self.conn().await?)
            .await
            .map(|_| ())
    }

    /// Reserves `ask` at every level at once, across replicas.
    pub async fn reserve(
        &self,
        levels: &[std::sync::Arc<Ledger>],
        ask: Ask,
        now_ms: i64,
    ) -> RedisResult<Result<Granted, Shortfall>> {
        let minute = now_ms.div_euclid(60_000);
        let into = now_ms.rem_euclid(60_000) as f64 / 60_000.0;
        let mut call = self.reserve.prepare_invoke();
        call.arg(levels.len())
            .arg(ask.worst.min(LUA_EXACT))
            .arg(ask.least.min(LUA_EXACT))
            .arg(ask.tokens.min(LUA_EXACT as u64))
            .arg(u8::from(ask.may_cap))
            .arg(into)
            .arg(WINDOW_TTL_SECS);
        for l in levels {
            let limits = l.limits();
            call.key(self.ledger_key(&l.level))
                .key(self.window_key(&l.level, minute))
                .key(self.window_key(&l.level, minute - 1));
            call.arg(u8::from(limits.max_budget_nanos.is_some()))
                .arg(limits.max_budget_nanos.unwrap_or(0))
                .arg(spent_field(l.period_start(now_ms)))
                .arg(u8::from(limits.over_budget == OverBudget::Refuse))
                .arg(limits.max_parallel.map_or(-1, i64::from))
                .arg(limits.rpm.map_or(-1, |v| v as i64))
                .arg(limits.tpm.map_or(-1, |v| v as i64));
        }
        call.key(&self.version_key).key(&self.own_held_key);
        let reply: Vec<redis::Value> = call.invoke_async(&mut self.conn().await?).await?;
        let text = |i: usize| -> String {
            match reply.get(i) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::SimpleString(s)) => s.clone(),
                Some(redis::Value::Int(n)) => n.to_string(),
                _ => String::new(),
            }
        };
        let number = |i: usize| text(i).parse::<i64>().unwrap_or(0);
        let level = |i: usize| {
            let at = usize::try_from(number(i)).unwrap_or(0);
            levels
                .get(at.saturating_sub(1))
                .map_or(Level::Key(String::new()), |l| l.level.clone())
        };
        Ok(match text(0).as_str() {
            "lost" => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "Redis lost the shared state (restarted without persistence, or flushed); \
                     the replicas are bringing it back",
                )));
            }
            "ok" => {
                for (i, l) in levels.iter().enumerate() {
                    l.mirror(number(4 + 2 * i), number(5 + 2 * i), now_ms);
                }
                let capped = number(2);
                Ok(Granted {
                    reserved: number(1),
                    capped_to: (capped >= 0).then_some(capped),
                    budgeted: number(3) == 1,
                })
            }
            "rate" => Err(Shortfall::RateLimited {
                level: level(1),
                what: match text(2).as_str() {
                    "parallel requests" => "parallel requests",
                    "requests per minute" => "requests per minute",
                    _ => "tokens per minute",
                },
                limit: number(3) as u64,
                remaining: number(4) as u64,
                retry_after_secs: match text(2).as_str() {
                    "parallel requests" => 1,
                    what => super::ledger::sliding_retry_after_secs(
                        number(5).max(0) as u64,
                        number(6).max(0) as u64,
                        now_ms,
                        if what == "requests per minute" {
                            1
                        } else {
                            ask.tokens
                        },
                        number(3).max(0) as u64,
                    ),
                },
            }),
            "inflight" => Err(Shortfall::InFlight(level(1))),
            "beyond" => Err(Shortfall::BeyondBudget(level(1))),
            _ => Err(Shortfall::Exhausted(level(1))),
        })
    }

    /// Releases a reservation made at `admitted_ms` and books the cost in that period, across
    /// replicas.
    pub async fn settle(
        &self,
        levels: &[std::sync::Arc<Ledger>],
        reserved: i64,
        cost: i64,
        extra_tokens: u64,
        now_ms: i64,
        admitted_ms: i64,
    ) -> RedisResult<()> {
        let minute = now_ms.div_euclid(60_000);
        let mut call = self.settle.prepare_invoke();
        call.arg(levels.len())
            .arg(-reserved)
            .arg(cost)
            .arg(extra_tokens)
            .arg(WINDOW_TTL_SECS);
        for l in levels {
            call.key(self.ledger_key(&l.level))
                .key(self.window_key(&l.level, minute));
            call.arg(spent_field(l.period_start(admitted_ms)))
                .arg(spent_field(l.period_start(now_ms)));
        }
        call.key(&self.own_held_key);
        let figures: Vec<i64> = call.invoke_async(&mut self.conn().await?).await?;
        for (l, pair) in levels.iter().zip(figures.chunks(2)) {
            if let [spent, reserved] = pair {
                l.mirror(*spent, *reserved, now_ms);
            }
        }
        Ok(())
    }

    /// Refreshes every ledger's mirror from Redis (what other replicas spent and hold).
    pub async fn refresh(
        &self,
        ledgers: &[std::sync::Arc<Ledger>],
        now_ms: i64,
    ) -> RedisResult<()> {
        if ledgers.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for l in ledgers {
            pipe.cmd("HMGET")
                .arg(self.ledger_key(&l.level))
                .arg(spent_field(l.period_start(now_ms)))
                .arg("reserved");
        }
        let figures: Vec<(Option<i64>, Option<i64>)> =
            pipe.query_async(&mut self.conn().await?).await?;
        for (l, (spent, reserved)) in ledgers.iter().zip(figures) {
            l.mirror(spent.unwrap_or(0), reserved.unwrap_or(0), now_ms);
        }
        Ok(())
    }
}

impl Shared {
    fn cache_key(&self, key: &[u8; 32]) -> String {
        format!("{}:cache:{}", self.prefix, hex::encode(key))
    }

    /// A kept answer and how long it has left, if another replica (or this one) kept it.
    pub async fn cache_get(&self, key: &[u8; 32]) -> RedisResult<Option<(Vec<u8>, Duration)>> {
        self.get_with_ttl(&self.cache_key(key)).await
    }

    /// A value and how long it has left.
    async fn get_with_ttl(&self, name: &str) -> RedisResult<Option<(Vec<u8>, Duration)>> {
        let (value, left): (Option<Vec<u8>>, i64) = redis::pipe()
            .get(name)
            .cmd("PTTL")
            .arg(name)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(value.map(|v| (v, Duration::from_millis(left.max(0) as u64))))
    }

    /// Sets a value that expires after `ttl`.
    async fn set_for(&self, name: &str, value: Vec<u8>, ttl: Duration) -> RedisResult<()> {
        redis::cmd("SET")
            .arg(name)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut self.conn().await?)
            .await
    }

    /// Keeps an answer for every replica, for `ttl`.
    pub async fn cache_put(
        &self,
        key: &[u8; 32],
        value: Vec<u8>,
        ttl: Duration,
    ) -> RedisResult<()> {
        self.set_for(&self.cache_key(key), value, ttl).await
    }
}

impl Shared {
    fn kept_key(&self, id: &str) -> String {
        format!("{}:kept:{id}", self.prefix)
    }

    /// Keeps a Responses API answer (encoded with its owner) for every replica, for `ttl`,
    /// unless it was deleted already (its id's tombstone stays).
    pub async fn kept_put(&self, id: &str, value: Vec<u8>, ttl: Duration) -> RedisResult<()> {
        redis::cmd("SET")
            .arg(self.kept_key(id))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut self.conn().await?)
            .await
    }

    /// A kept answer and how long it has left.
    pub async fn kept_get(&self, id: &str) -> RedisResult<Option<(Vec<u8>, Duration)>> {
        self.get_with_ttl(&self.kept_key(id)).await
    }

    /// Marks a kept answer deleted for every replica: an empty value (a tombstone) for as long
    /// as it could have been kept, so replicas holding a copy drop it and a late write of it
    /// cannot bring it back.
    pub async fn kept_delete(&self, id: &str, keep_for: Duration) -> RedisResult<()> {
        self.set_for(&self.kept_key(id), Vec::new(), keep_for).await
    }
}

impl Shared {
    fn cooldown_key(&self, deployment: &str) -> String {
        format!("{}:cooldown:{deployment}", self.prefix)
    }

    /// Says that `deployment` cools until `until_ms`, for `left_ms` (unless another replica
    /// set a later end).
    pub async fn cooldown_put(
        &self,
        deployment: &str,
        until_ms: u64,
        left_ms: u64,
    ) -> RedisResult<()> {
        // A later end wins: SET with GET would race; a script keeps the larger.
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"local now = tonumber(redis.call('GET', KEYS[1]) or '0')
                  if tonumber(ARGV[1]) > now then
                    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                  end
                  return 0",
            )
        });
        SCRIPT
            .key(self.cooldown_key(deployment))
            .arg(until_ms)
            .arg(left_ms.max(1))
            .invoke_async::<i64>(&mut self.conn().await?)
            .await
            .map(|_| ())
    }

    /// The ends of the cooldowns set for `deployments`, in their order.
    pub async fn cooldowns(&self, deployments: &[String]) -> RedisResult<Vec<Option<u64>>> {
        let keys: Vec<String> = deployments.iter().map(|d| self.cooldown_key(d)).collect();
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn().await?)
            .await
    }
}

/// A level as it appears in Redis keys.
fn tag(level: &Level) -> String {
    match level {
        Level::Org(id) => format!("org:{id}"),
        Level::Team(id) => format!("team:{id}"),
        Level::Key(id) => format!("key:{id}"),
        Level::Customer(id) => format!("customer:{id}"),
    }
}

fn spent_field(period_start: i64) -> String {
    format!("spent@{period_start}")
}

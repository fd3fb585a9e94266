//! The configuration file as written: serde types that mirror the YAML exactly. Unknown keys are
//! errors. Nothing here is validated beyond its shape; `load` resolves these into the runtime
//! [`Config`](super::Config).

use std::time::Duration;

use serde::Deserialize;

/// `server:` — how the gateway listens and authenticates callers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Address to listen on, e.g. `127.0.0.1:4000` (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Key that authenticates every request until virtual keys exist (Bearer or `x-api-key`).
    pub master_key: Option<String>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long in-flight requests (streams included) may take to finish after SIGTERM.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a client connection may wait for its next request's headers (idle between
    /// requests, or sending them slowly) before it is closed; 0 never closes it.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Directory of the embedded store (SQLite) and the record spill file; created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Threads that serve requests, each with its own event loop and upstream connection
    /// pools, fed connections by one acceptor; 0 (the default) means one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// Nice value of the threads that work in the background (the record writer and its
    /// SQLite connection, exporters, alerts, evaluation runs), 0–19, on Linux: when the CPUs are
    /// all busy the serving threads come first. Off (0) by default: under sustained saturation
    /// the writer then falls behind, and records past the queue's byte bound lose their prompt
    /// and response (a priority once lowered cannot be raised again without privileges).
    #[serde(default)]
    pub background_nice: u8,
    /// How long a Responses API answer is kept in memory for `previous_response_id`,
    /// `item_reference` and `GET /v1/responses/{id}` (unless its request says `store: false`);
    /// 0 keeps none.
    #[serde(default = "default_keep_responses_for", with = "humantime_serde")]
    pub keep_responses_for: Duration,
    /// Most memory the kept responses may take, in bytes; the oldest go first beyond it.
    #[serde(default = "default_keep_responses_bytes")]
    pub keep_responses_bytes: usize,
    /// Web origins whose pages may call the gateway from a browser (CORS): `*` for any,
    /// as the providers' own APIs allow, or a list such as `https://app.example.com`;
    /// an empty list answers no browser.
    #[serde(default = "default_cors_origins")]
    pub cors_origins: Vec<String>,
    /// Images and documents a client gives by URL, fetched by the gateway for providers that
    /// take them only inline (Bedrock's Converse; OpenAI's documents).
    #[serde(default)]
    pub fetch_media: FetchMedia,
}

/// `server.fetch_media`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FetchMedia {
    /// Off: such a part to such a provider is refused with a 400 that says to send it inline.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fetch from loopback, private and link-local addresses too. Off by default: a client
    /// could otherwise have the gateway read what only the gateway's network can reach.
    #[serde(default)]
    pub private_networks: bool,
    /// Largest file fetched, in bytes.
    #[serde(default = "default_fetch_max_bytes")]
    pub max_bytes: usize,
    /// Longest a fetch may take, connection and redirects included.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_fetch_max_bytes() -> usize {
    20 * 1024 * 1024
}

fn default_fetch_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for FetchMedia {
    fn default() -> Self {
        Self {
            enabled: true,
            private_networks: false,
            max_bytes: default_fetch_max_bytes(),
            timeout: default_fetch_timeout(),
        }
    }
}

fn default_cors_origins() -> Vec<String> {
    vec!["*".into()]
}

fn default_keep_responses_for() -> Duration {
    Duration::from_secs(3600)
}

fn default_keep_responses_bytes() -> usize {
    64 * 1024 * 1024
}

pub fn default_data_dir() -> String {
    "switchyard-data".into()
}

pub fn default_listen() -> String {
    "127.0.0.1:4000".into()
}

pub fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_drain() -> Duration {
    Duration::from_secs(30)
}

/// Longer than the idle expiry of the common clients' pools (a few seconds), so a client
/// rarely reuses a connection the gateway is closing at that moment.
fn default_idle_timeout() -> Duration {
    Duration::from_secs(75)
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            master_key: None,
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace: default_drain(),
            idle_timeout: default_idle_timeout(),
            data_dir: default_data_dir(),
            workers: 0,
            background_nice: 0,
            keep_responses_for: default_keep_responses_for(),
            keep_responses_bytes: default_keep_responses_bytes(),
            cors_origins: default_cors_origins(),
            fetch_media: FetchMedia::default(),
        }
    }
}

/// Per-provider timeouts.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// TCP + TLS connection establishment.
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect: Duration,
    /// Until the response headers (non-stream: the whole answer) arrive.
    #[serde(default = "default_first_byte", with = "humantime_serde")]
    pub first_byte: Duration,
    /// Longest silence between two stream chunks.
    #[serde(default = "default_stall", with = "humantime_serde")]
    pub stall: Duration,
    /// The whole exchange, body included.
    #[serde(default = "default_total", with = "humantime_serde")]
    pub total: Duration,
}

fn default_connect() -> Duration {
    Duration::from_secs(5)
}
fn default_first_byte() -> Duration {
    Duration::from_secs(120)
}
fn default_stall() -> Duration {
    Duration::from_secs(60)
}
fn default_total() -> Duration {
    Duration::from_secs(600)
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            first_byte: default_first_byte(),
            stall: default_stall(),
            total: default_total(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KindFile {
    Openai,
    OpenaiCompatible,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    Simulator,
}

/// Wire format the in-process simulator speaks for a `kind: simulator` provider.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SimDialectFile {
    #[default]
    Openai,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

/// Differences of one OpenAI-compatible server.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct QuirksFile {
    /// `max_tokens` (default for compatible servers) or `max_completion_tokens`.
    pub max_tokens_field: Option<String>,
    /// `seed` (default) or e.g. `random_seed` (Mistral).
    pub seed_field: Option<String>,
    /// Ask for usage on streams with `stream_options.include_usage` (default true).
    pub stream_usage: Option<bool>,
    /// The server understands the `developer` role (default false: sent as `system`).
    pub developer_role: Option<bool>,
    /// Top-level request members the server refuses, left out of every request.
    pub unsupported_fields: Option<Vec<String>>,
    /// Send a tool loop's reasoning back as `reasoning_content` (DeepSeek's thinking mode).
    pub reasoning_history: Option<bool>,
    /// The member reasoning goes back in (`reasoning_content`, or `reasoning` for Ollama).
    pub reasoning_field: Option<String>,
    /// Send tool call ids as 9 letters and digits (Mistral).
    pub short_tool_call_ids: Option<bool>,
}

/// `providers[]` — one upstream endpoint with its credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    pub name: String,
    pub kind: KindFile,
    /// Defaults per kind (official endpoints); required for `openai_compatible` and `azure`.
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    /// Name of a credential stored through `POST /admin/credentials` (encrypted at rest) to use
    /// instead of `api_key`; read again whenever it changes, without a restart.
    pub credential: Option<String>,
    /// Azure `api-version` for classic deployment URLs; omit to use Azure's v1 API.
    pub api_version: Option<String>,
    /// For `kind: simulator`: which provider's wire format it speaks.
    pub dialect: Option<SimDialectFile>,
    pub quirks: Option<QuirksFile>,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// For `kind: bedrock`: the AWS region (`us-east-1`), which names the default endpoint and
    /// signs requests.
    pub region: Option<String>,
    /// For `kind: bedrock`: AWS credentials to sign requests with (Signature Version 4), instead
    /// of a Bedrock API key in `api_key`.
    pub aws: Option<AwsFile>,
}

/// `providers[].aws`: an access key, its secret and, for temporary credentials, a session
/// token (empty: none); or the `profile` of AWS's shared files to read them from. Without the
/// block (and without an `api_key`), AWS's default chain finds them.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
}

/// Price of a deployment in US dollars per million tokens (for budgets, records, `lowest_cost`
/// routing and `max_cost` ceilings). Cache rates left out cost what input costs.
#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
    pub cache_read_per_mtok: Option<f64>,
    /// Five-minute cache writes (Anthropic's default).
    pub cache_write_per_mtok: Option<f64>,
    /// One-hour cache writes; absent, what five-minute writes cost.
    pub cache_write_1h_per_mtok: Option<f64>,
    /// US dollars per search of the provider's own web search tool (Anthropic: 0.01); absent,
    /// the compiled-in table's figure for the model.
    pub web_search_per_call: Option<f64>,
    /// The provider's long-context tier: the whole request at these rates once its input
    /// (cached or not) passes `above_input_tokens`.
    pub long_context: Option<LongContextFile>,
}

/// `price.long_context`.
#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct LongContextFile {
    pub above_input_tokens: u64,
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
    pub cache_read_per_mtok: Option<f64>,
    pub cache_write_per_mtok: Option<f64>,
    pub cache_write_1h_per_mtok: Option<f64>,
}

/// The rates of a price block or of its long-context tier, in US dollars per million tokens.
#[derive(Debug, Clone, Copy)]
pub struct RatesFile {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cache_read_per_mtok: Option<f64>,
    pub cache_write_per_mtok: Option<f64>,
    pub cache_write_1h_per_mtok: Option<f64>,
}

impl RatesFile {
    /// The rates given; cache rates left out follow `like` (the table's rates for the model)
    /// in proportion to input, or cost what input costs when the table does not know it.
    pub fn rates(self, like: Option<crate::pricing::Rates>) -> crate::pricing::Rates {
        let base = crate::pricing::Rates::per_mtok(self.input_per_mtok, self.output_per_mtok);
        let like = like.filter(|t| t.input > 0);
        // `like`'s rate for a kind, scaled by this block's input against the table's.
        let scaled = |kind: fn(&crate::pricing::Rates) -> u64| {
            like.map(|t| {
                (u128::from(base.input) * u128::from(kind(&t)) / u128::from(t.input)) as u64
            })
        };
        let given = |usd: Option<f64>| usd.map(crate::pricing::usd_per_mtok);
        let cache_write = given(self.cache_write_per_mtok)
            .or_else(|| scaled(|r| r.cache_write))
            .unwrap_or(base.input);
        crate::pricing::Rates {
            cache_read: given(self.cache_read_per_mtok)
                .or_else(|| scaled(|r| r.cache_read))
                .unwrap_or(base.input),
            cache_write,
            cache_write_1h: given(self.cache_write_1h_per_mtok)
                .or_else(|| scaled(|r| r.cache_write_1h))
                .unwrap_or(cache_write),
            ..base
        }
    }

    /// Every figure given, for validation.
    pub fn figures(self) -> impl Iterator<Item = f64> {
        [self.input_per_mtok, self.output_per_mtok]
            .into_iter()
            .chain(self.cache_read_per_mtok)
            .chain(self.cache_write_per_mtok)
            .chain(self.cache_write_1h_per_mtok)
    }
}

impl PriceFile {
    fn rates(&self) -> RatesFile {
        RatesFile {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cache_read_per_mtok: self.cache_read_per_mtok,
            cache_write_per_mtok: self.cache_write_per_mtok,
            cache_write_1h_per_mtok: self.cache_write_1h_per_mtok,
        }
    }

    /// The price of a deployment of `model` with this block. What it leaves out follows the
    /// table's price for the model: cache rates in proportion to the block's input, and the
    /// table's long-context tier (its rates scaled the same way) when the block has none.
    pub fn price(&self, model: &str) -> crate::pricing::Price {
        let table = crate::pricing::lookup(model);
        let rates = self.rates().rates(table.map(|t| t.rates));
        let long_context = match (self.long_context, table.and_then(|t| t.long_context)) {
            (Some(tier), table_tier) => Some(crate::pricing::LongContext {
                above_input_tokens: tier.above_input_tokens,
                rates: tier.rates().rates(table_tier.map(|t| t.rates)),
            }),
            (None, Some(table_tier)) => table.map(|t| crate::pricing::LongContext {
                above_input_tokens: table_tier.above_input_tokens,
                rates: table_tier.rates.scaled(t.rates, rates),
            }),
            (None, None) => None,
        };
        crate::pricing::Price {
            rates,
            long_context,
            web_search: self.web_search_per_call.map_or_else(
                || crate::pricing::web_search_price(model),
                crate::pricing::usd_nanos,
            ),
        }
    }

    /// Every figure given, for validation.
    pub fn figures(&self) -> impl Iterator<Item = f64> {
        self.rates()
            .figures()
            .chain(self.web_search_per_call)
            .chain(
                self.long_context
                    .into_iter()
                    .flat_map(|t| t.rates().figures()),
            )
    }
}

impl LongContextFile {
    fn rates(&self) -> RatesFile {
        RatesFile {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cache_read_per_mtok: self.cache_read_per_mtok,
            cache_write_per_mtok: self.cache_write_per_mtok,
            cache_write_1h_per_mtok: self.cache_write_1h_per_mtok,
        }
    }
}

/// `models[].deployments[]` — one callable target behind an alias.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFile {
    pub provider: String,
    /// The provider's model name (Azure: the deployment name).
    pub model: String,
    /// Share of traffic under the `weighted` strategy (and within a tier under `priority`).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Tier under the `priority` strategy: lower tiers are used first.
    #[serde(default)]
    pub priority: u32,
    pub price: Option<PriceFile>,
    /// Requests per minute this deployment may take (for `usage_aware`).
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment may take (for `usage_aware`).
    pub tpm: Option<u64>,
    /// Context window in tokens: requests that cannot fit are never sent here.
    pub context_window: Option<u64>,
    /// Where the deployment runs (e.g. `eu`, `us-east`); keys and teams may restrict it.
    pub region: Option<String>,
    /// How risky sending data here is; keys and teams may set a maximum.
    pub risk_level: Option<RiskLevel>,
    /// The most sensitive data this deployment may receive (e.g. `public`, `internal`,
    /// `confidential`); keys and teams may list the ones they accept.
    pub data_classification: Option<String>,
    /// Free-form attributes, shown in the admin API.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Ordered risk of a deployment: `low` < `medium` < `high`.
#[derive(
    Debug, Deserialize, serde::Serialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StrategyFile {
    #[default]
    Weighted,
    RoundRobin,
    LeastBusy,
    LowestLatency,
    LowestCost,
    UsageAware,
    Priority,
}

/// Fallback aliases: a list for every error, or lists per error class with a `default`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum FallbacksFile {
    All(Vec<String>),
    ByClass(std::collections::BTreeMap<String, Vec<String>>),
}

impl Default for FallbacksFile {
    fn default() -> Self {
        FallbacksFile::All(Vec::new())
    }
}

/// When to start a second, competing attempt.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum HedgeAfterFile {
    #[serde(with = "humantime_serde")]
    Fixed(Duration),
    /// `p95`: the first deployment's observed 95th-percentile time to first byte.
    Percentile(String),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HedgeFile {
    pub after: HedgeAfterFile,
    /// Largest share of this alias's requests that may be hedged (default 0.1).
    #[serde(default = "default_hedge_share")]
    pub max_share: f64,
}

fn default_hedge_share() -> f64 {
    0.1
}

/// Hold a stream's first output back until this much is buffered (or this long has passed), so
/// failures in that window can still fall back.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct StreamBufferFile {
    #[serde(default)]
    pub max_bytes: usize,
    #[serde(default, with = "humantime_serde")]
    pub max_delay: Duration,
}

/// `models[]` — an alias clients ask for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub alias: String,
    pub deployments: Vec<DeploymentFile>,
    /// How deployments are ordered for each request.
    #[serde(default)]
    pub strategy: StrategyFile,
    /// Aliases tried, in order, when every deployment of this one failed: a list, or lists per
    /// error class (`context_window_exceeded`, `content_filtered`, `rate_limited`, … and
    /// `default`).
    #[serde(default)]
    pub fallbacks: FallbacksFile,
    /// Extra tries on the same deployment for retryable errors before moving on.
    #[serde(default)]
    pub num_retries: u32,
    pub hedge: Option<HedgeFile>,
    pub stream_buffer: Option<StreamBufferFile>,
    /// Replaces the top-level `guardrails` for requests that name this alias.
    pub guardrails: Option<GuardrailsFile>,
}

/// `routing.rules[].match`: every given condition must hold.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleMatchFile {
    /// Glob on the requested model (`*` and `?`).
    pub model: Option<String>,
    /// Request metadata (OpenAI `metadata`) values that must be equal.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    pub min_input_tokens: Option<u64>,
    pub max_input_tokens: Option<u64>,
    /// At most this many messages (a simple "short conversation" test).
    pub max_messages: Option<usize>,
    /// Capabilities the request needs (`tools`, `images`, `json_schema`); `[]` matches any.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The request must not use tools (for "simple prompt" rules).
    pub no_tools: Option<bool>,
    /// The caller's team must be one of these (team ids).
    #[serde(default)]
    pub teams: Vec<String>,
    /// The caller's key must be one of these (key ids).
    #[serde(default)]
    pub keys: Vec<String>,
}

/// `routing.rules[].route`: what a matching rule does.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleRouteFile {
    /// Send the request to this alias instead.
    pub alias: Option<String>,
    /// Only these deployments (`provider/model` ids) of the target alias.
    #[serde(default)]
    pub deployments: Vec<String>,
    /// Weights to use instead of the configured ones (`provider/model` → weight).
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, u32>,
    /// Skip deployments whose estimated cost (US dollars) exceeds this.
    pub max_cost: Option<f64>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub name: String,
    #[serde(rename = "match", default)]
    pub when: RuleMatchFile,
    pub route: RuleRouteFile,
}

/// Bounds retries (same-deployment re-tries and hedges) to a share of requests, so a failing
/// provider cannot multiply load.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetFile {
    /// Retries allowed per request, on average (default 0.2).
    #[serde(default = "default_retry_ratio")]
    pub ratio: f64,
    /// Retries always allowed per second, whatever the traffic (default 10).
    #[serde(default = "default_min_retries")]
    pub min_per_sec: u32,
}

fn default_retry_ratio() -> f64 {
    0.2
}
fn default_min_retries() -> u32 {
    10
}

impl Default for RetryBudgetFile {
    fn default() -> Self {
        Self {
            ratio: default_retry_ratio(),
            min_per_sec: default_min_retries(),
        }
    }
}

/// `routing:` — health defaults shared by all deployments, rules and the retry budget.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// Consecutive failures that put a deployment in cooldown.
    #[serde(default = "default_allowed_fails")]
    pub allowed_fails: u32,
    /// How long a cooled deployment is skipped before it is probed again.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
    /// Upper bound on honouring an upstream `retry-after` before retrying.
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
    #[serde(default)]
    pub retry_budget: RetryBudgetFile,
    /// Share of `lowest_latency` requests sent to a random deployment so a recovered or
    /// unmeasured one gets measured again (default 0.05).
    #[serde(default = "default_exploration")]
    pub exploration: f64,
    /// Evaluated in order before the strategy; the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
}

fn default_exploration() -> f64 {
    0.05
}

fn default_allowed_fails() -> u32 {
    3
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(5)
}

impl Default for RoutingFile {
    fn default() -> Self {
        Self {
            allowed_fails: default_allowed_fails(),
            cooldown: default_cooldown(),
            max_retry_after: default_max_retry_after(),
            retry_budget: RetryBudgetFile::default(),
            exploration: default_exploration(),
            rules: Vec::new(),
        }
    }
}

/// `simulator:` — settings of the in-process simulator behind `kind: simulator` providers.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SimulatorFile {
    /// Delay before the first byte of each answer, in milliseconds.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub ttft_ms: u64,
    /// Delay between stream chunks, in milliseconds.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub token_ms: u64,
}

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `logging:`
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `switchyard=debug` (`RUST_LOG` wins when set).
    pub level: Option<String>,
}

/// Accepts `5` or `"5"`, so numbers can come from `${VAR}` interpolation (which yields strings).
fn number_or_numeric_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is not a whole number"))),
    }
}

/// How much of prompts and responses request records keep.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContentMode {
    Off,
    /// E-mail addresses, phone and card numbers, IBANs, IPs and secrets become placeholders.
    #[default]
    Masked,
    Full,
}

/// `telemetry:` — request records.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TelemetryFile {
    /// Keep request records at all (default true). Off, requests are still settled against
    /// budgets, but nothing is stored, and what is fed from records (request metrics, alert
    /// windows, trace export) sees no requests.
    #[serde(default = "default_records")]
    pub records: bool,
    #[serde(default)]
    pub content: ContentMode,
    /// Most bytes of prompt text (all messages together) and of response text one record
    /// keeps; longer texts keep their head and tail around a marker.
    #[serde(
        default = "default_content_max",
        deserialize_with = "number_or_numeric_string"
    )]
    pub content_max_bytes: u64,
    /// Records waiting for the writer before new ones are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Bytes of record content waiting for the writer; past it, records still queue but
    /// without their prompt and response.
    #[serde(
        default = "default_queue_max_bytes",
        deserialize_with = "number_or_numeric_string"
    )]
    pub queue_max_bytes: u64,
    /// Cap of the spill file used while the store is down.
    #[serde(default = "default_spill_max")]
    pub spill_max_bytes: u64,
    /// OpenTelemetry trace exporters (OTLP/HTTP), each fed every request record.
    #[serde(default)]
    pub otlp: Vec<super::otlp::OtlpFile>,
}

fn default_records() -> bool {
    true
}
fn default_queue() -> usize {
    65_536
}
fn default_content_max() -> u64 {
    16 * 1024
}
fn default_queue_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_spill_max() -> u64 {
    1024 * 1024 * 1024
}

impl Default for TelemetryFile {
    fn default() -> Self {
        Self {
            records: default_records(),
            content: ContentMode::default(),
            content_max_bytes: default_content_max(),
            queue_capacity: default_queue(),
            queue_max_bytes: default_queue_max_bytes(),
            spill_max_bytes: default_spill_max(),
            otlp: Vec::new(),
        }
    }
}

/// `alerts:` — rules evaluated over recent request records and deployment health, and the
/// webhooks that hear when an alert fires or resolves.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// Evaluate the rules at all (default true).
    #[serde(default = "default_alerts_enabled")]
    pub enabled: bool,
    /// How often the rules are evaluated (default 10s).
    #[serde(default = "default_alert_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Sliding window of records a rule looks at, unless the rule sets its own (default 5m).
    #[serde(default = "default_alert_window", with = "humantime_serde")]
    pub window: Duration,
    /// Where firing and resolved notifications are sent.
    #[serde(default)]
    pub webhooks: Vec<WebhookFile>,
    /// The rules; when omitted: `error_rate`, `latency_p99`, `deployment_cooldown` and
    /// `budget_utilisation` with their default thresholds.
    pub rules: Option<Vec<AlertRuleFile>>,
}

fn default_alerts_enabled() -> bool {
    true
}
fn default_alert_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_alert_window() -> Duration {
    Duration::from_secs(300)
}

impl Default for AlertsFile {
    fn default() -> Self {
        Self {
            enabled: default_alerts_enabled(),
            interval: default_alert_interval(),
            window: default_alert_window(),
            webhooks: Vec::new(),
            rules: None,
        }
    }
}

/// Body shape of a webhook notification.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{status, rule, kind, scope, subject, value, threshold, since, …}`.
    #[default]
    Json,
    /// `{"text": "…"}`, accepted by Slack incoming webhooks and compatible chat tools.
    Slack,
}

/// `alerts.webhooks[]`
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Per delivery attempt (default 5s); a failed delivery is retried twice.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

/// What an alert rule watches.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Share of failed requests (per alias) or failed attempts (per deployment) in the window.
    ErrorRate,
    /// 99th-percentile latency in milliseconds over the window.
    LatencyP99,
    /// A deployment is in cooldown.
    DeploymentCooldown,
    /// Share of a key's or team's budget spent this period (above the entity's `soft_budget`
    /// when it sets one).
    #[serde(alias = "budget_utilization")]
    BudgetUtilisation,
}

/// What an alert rule is evaluated per.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AlertScope {
    Alias,
    Deployment,
    Key,
    Team,
}

/// `alerts.rules[]`
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleFile {
    /// Unique; defaults to the kind.
    pub name: Option<String>,
    pub kind: AlertKind,
    /// Fires above this: a fraction for `error_rate` (default 0.05) and `budget_utilisation`
    /// (default 0.8), milliseconds for `latency_p99` (default 2000); unused by
    /// `deployment_cooldown`.
    pub threshold: Option<f64>,
    /// Fewer requests than this in the window never fire (default 20; rate and latency rules).
    pub min_requests: Option<u64>,
    /// Overrides `alerts.window` for this rule (rate and latency rules).
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// `alias` and/or `deployment` (rate and latency rules, default both), `deployment`
    /// (cooldown), `key` and/or `team` (budget, default both).
    #[serde(default)]
    pub per: Vec<AlertScope>,
    /// How long a firing alert must be back within bounds before it resolves (default 1m): a
    /// value hovering at the threshold, or a deployment cooling again and again, stays one
    /// alert instead of a notification every evaluation.
    #[serde(default, with = "humantime_serde")]
    pub resolve_after: Option<Duration>,
}

/// `guardrails:` — checks on prompts before they reach a provider and on answers after.
#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsFile {
    #[serde(default)]
    pub pii: PiiMode,
    #[serde(default)]
    pub injection: InjectionMode,
    #[serde(default)]
    pub schema: SchemaMode,
}

/// Personal data and secrets in prompts.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    #[default]
    Off,
    /// Replaced by placeholders before the request leaves.
    Redact,
    /// The request is refused.
    Block,
}

/// Prompt injection phrasings in the users' texts.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InjectionMode {
    #[default]
    Off,
    /// Let through, marked in the record's tags.
    Flag,
    Block,
}

/// Answers to requests with a JSON schema answer format.
#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SchemaMode {
    #[default]
    Off,
    /// An answer that does not validate is an error (502).
    Enforce,
}

/// `cache:` — the exact response cache: a complete answer served again, without a provider
/// call, to a request whose body is byte for byte the same, from the same organisation (else
/// team, else key).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// How long an answer is kept.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Most bytes of answers kept; the least recently useful go first.
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: u64,
    /// Answers for questions worded differently, when set.
    pub semantic: Option<SemanticCacheFile>,
}

/// `cache.semantic:` — a request that misses the exact cache is answered with a kept answer to
/// a question whose embedding lies within `threshold` (cosine similarity) of its own, asked in
/// the same conversation with the same parameters.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SemanticCacheFile {
    /// The embedding model alias (one of `models[]`) the questions are embedded with.
    pub model: String,
    /// Least cosine similarity of two questions' embeddings for one's answer to serve the
    /// other.
    #[serde(default = "default_semantic_threshold")]
    pub threshold: f32,
    /// Most questions remembered; the oldest go first.
    #[serde(default = "default_semantic_entries")]
    pub max_entries: usize,
}

fn default_semantic_threshold() -> f32 {
    0.95
}

fn default_semantic_entries() -> usize {
    10_000
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_cache_bytes() -> u64 {
    64 << 20
}

/// `shared:` — state the replicas of one deployment share, so that they act as one gateway:
/// keys, teams, organisations and customers, budgets and rate limits.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SharedFile {
    /// The Redis server (`redis://[:password@]host:port/db`).
    pub redis_url: String,
    /// Prefix of every Redis key, so that several deployments can share one server.
    #[serde(default = "default_shared_prefix")]
    pub prefix: String,
}

fn default_shared_prefix() -> String {
    "switchyard".into()
}

/// `store:` — where records, reports, the audit log, experiments, evaluations and stored
/// credentials live, when not in the data directory's SQLite file: a PostgreSQL database the
/// replicas of one deployment share.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `postgres://user:password@host:5432/database` (libpq's URL form, with its `sslmode`,
    /// `sslrootcert` and other parameters).
    pub url: String,
    /// Connections this replica keeps open at most.
    #[serde(default = "default_store_connections")]
    pub max_connections: u32,
}

fn default_store_connections() -> u32 {
    8
}

/// `governance:` — virtual keys and budgets.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct GovernanceFile {
    /// Secret for hashing virtual keys (HMAC-SHA-256). Defaults to one derived from the master
    /// key; set it so the master key can be rotated without invalidating virtual keys.
    pub hash_secret: Option<String>,
    /// Output cap assumed for a request without `max_tokens` when reserving its worst case.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// How long a request may wait for in-flight reservations to settle before it is refused.
    #[serde(default = "default_budget_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

fn default_max_tokens() -> u32 {
    4096
}
fn default_budget_wait() -> Duration {
    Duration::from_secs(10)
}

impl Default for GovernanceFile {
    fn default() -> Self {
        Self {
            hash_secret: None,
            default_max_tokens: default_max_tokens(),
            max_wait: default_budget_wait(),
        }
    }
}

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

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            master_key: None,
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace: default_drain(),
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
    /// Azure `api-version` for classic deployment URLs; omit to use Azure's v1 API.
    pub api_version: Option<String>,
    /// For `kind: simulator`: which provider's wire format it speaks.
    pub dialect: Option<SimDialectFile>,
    pub quirks: Option<QuirksFile>,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

/// `models[].deployments[]` — one callable target behind an alias.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFile {
    pub provider: String,
    /// The provider's model name (Azure: the deployment name).
    pub model: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// `models[]` — an alias clients ask for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub alias: String,
    pub deployments: Vec<DeploymentFile>,
    /// Aliases tried, in order, when every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Extra tries on the same deployment for retryable errors before moving on.
    #[serde(default)]
    pub num_retries: u32,
}

/// `routing:` — health defaults shared by all deployments.
#[derive(Debug, Deserialize, Clone, Copy)]
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

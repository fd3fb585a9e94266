//! Configuration in two layers: [`file`] mirrors the YAML; [`load`] interpolates `${VAR}`
//! references, checks every field and cross-reference (collecting all errors with their paths)
//! and resolves the result into the runtime [`Config`], which has no unchecked states.
//! No file means the embedded demo configuration ([`DEMO_CONFIG`]).

mod alerts;
pub mod file;
mod interpolate;
mod otlp;
mod secret;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchyard_protocol::ProviderKind;
use switchyard_protocol::dialect::OpenAiQuirks;

pub use alerts::{AlertRule, AlertsConfig, Webhook, kind_name, scope_name};
pub use file::{AlertKind, AlertScope, FetchMedia, WebhookFormat};
pub use file::{
    ContentMode, GovernanceFile, HedgeAfterFile, LogFormat, LoggingFile, PriceFile,
    RetryBudgetFile, RiskLevel, RoutingFile, RuleFile, SimDialectFile, SimulatorFile, StrategyFile,
    StreamBufferFile, TelemetryFile, TimeoutsFile,
};
pub use otlp::{OtlpFile, traces_url};
pub use secret::Secret;
use switchyard_protocol::canonical::ErrorClass;

use file::{FallbacksFile, HedgeFile, KindFile, ModelFile, ProviderFile, ServerFile};

/// The configuration the demo runs: simulated providers of each wire format behind a few aliases.
pub const DEMO_CONFIG: &str = include_str!("demo.yaml");

/// One problem in a configuration file, with the path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub master_key: Option<Secret>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// A client connection's longest wait for its next request's headers; `None`: no limit.
    pub idle_timeout: Option<Duration>,
    pub data_dir: std::path::PathBuf,
    /// Request-serving threads (resolved: at least 1).
    pub workers: usize,
    /// Nice value of the background threads (0–19; 0 leaves them as the serving threads).
    pub background_nice: u8,
    /// How long Responses API answers are kept; `None` keeps none.
    pub keep_responses_for: Option<Duration>,
    pub keep_responses_bytes: usize,
    /// Which web origins' pages may call the gateway from a browser.
    pub cors: CorsOrigins,
    /// How media given by URL is fetched for providers that take it only inline; `None`: it
    /// is not.
    pub fetch_media: Option<FetchMedia>,
}

/// The web origins answered with CORS headers (`server.cors_origins`).
#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigins {
    /// No browser page of another origin may call the gateway.
    None,
    /// Any origin (`*`).
    Any,
    /// These origins only, each as a browser writes it (`https://app.example.com`).
    List(Vec<http::HeaderValue>),
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// `Some` for `kind: simulator`: the base URL is only known once the simulator is started.
    pub simulated: Option<SimDialectFile>,
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// A stored credential used instead of `api_key` (its name).
    pub credential: Option<String>,
    pub api_version: Option<String>,
    pub timeouts: TimeoutsFile,
    /// How telemetry names this provider (`gen_ai.provider.name`).
    pub gen_ai_name: String,
    /// Bedrock with AWS credentials (given, or to be found): requests are signed with them.
    pub aws: Option<std::sync::Arc<crate::upstream::aws_credentials::AwsAuth>>,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    /// Index into `Config::providers`.
    pub provider: usize,
    pub model: String,
    pub weight: u32,
    pub priority: u32,
    pub price: Option<PriceFile>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub context_window: Option<u64>,
    pub attributes: Attributes,
}

/// What a deployment is, for the restrictions keys and teams may set.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Attributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<RiskLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_classification: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, String>,
}

/// Fallback aliases, chosen by the class of the last failure.
#[derive(Debug, Clone, Default)]
pub struct Fallbacks {
    pub default: Vec<String>,
    pub by_class: Vec<(ErrorClass, Vec<String>)>,
}

impl Fallbacks {
    pub fn for_class(&self, class: Option<ErrorClass>) -> &[String] {
        class
            .and_then(|c| self.by_class.iter().find(|(k, _)| *k == c))
            .map_or(&self.default, |(_, v)| v)
    }

    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.default
            .iter()
            .chain(self.by_class.iter().flat_map(|(_, v)| v))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum HedgeAfter {
    Fixed(Duration),
    /// The first deployment's observed p95 time to first byte.
    P95,
}

#[derive(Debug, Clone, Copy)]
pub struct Hedge {
    pub after: HedgeAfter,
    pub max_share: f64,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub alias: String,
    pub deployments: Vec<DeploymentConfig>,
    pub strategy: StrategyFile,
    pub fallbacks: Fallbacks,
    pub num_retries: u32,
    pub hedge: Option<Hedge>,
    pub stream_buffer: Option<StreamBufferFile>,
    pub guardrails: Option<file::GuardrailsFile>,
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub routing: RoutingFile,
    pub simulator: SimulatorFile,
    pub logging: LoggingFile,
    pub telemetry: TelemetryFile,
    pub alerts: AlertsConfig,
    pub governance: GovernanceFile,
    /// State shared by replicas, when set.
    pub shared: Option<file::SharedFile>,
    /// A PostgreSQL store, when set (else SQLite in the data directory).
    pub store: Option<file::StoreFile>,
    /// The exact response cache, when set.
    pub cache: Option<file::CacheFile>,
    pub guardrails: file::GuardrailsFile,
}

impl Config {
    pub fn uses_simulator(&self) -> bool {
        self.providers.iter().any(|p| p.simulated.is_some())
    }
}

const TOP_LEVEL: &[&str] = &[
    "server",
    "providers",
    "models",
    "routing",
    "simulator",
    "logging",
    "telemetry",
    "alerts",
    "governance",
    "shared",
    "store",
    "cache",
    "guardrails",
];

/// Parses, interpolates (with `env`) and validates a configuration text.
pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigError>> {
    // YAML 1.2's booleans only: `off` (a documented value), `no` (Norway's region code), `y` and
    // `on` are words, as they read, not the YAML 1.1 booleans that refused them as strings.
    let options = serde_saphyr::options! { strict_booleans: true };
    // Without the parser's snippet of the text: the line it quotes may hold a secret.
    let mut value: Value = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let said = e.without_snippet().to_string();
        // The parser's advice about its own options is none a user can take.
        let said = said
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or_default()
            .to_owned();
        vec![ConfigError {
            path: String::new(),
            message: format!("not valid YAML: {said}"),
        }]
    })?;
    let mut errors = Vec::new();
    interpolate::interpolate(&mut value, "", env, &mut errors);
    let mut top = match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => {
            errors.push(ConfigError {
                path: String::new(),
                message: "the configuration must be a mapping".into(),
            });
            return Err(errors);
        }
    };
    for key in top.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            errors.push(ConfigError {
                path: key.clone(),
                message: format!("unknown key (expected one of: {})", TOP_LEVEL.join(", ")),
            });
        }
    }
    let server: ServerFile = section(&mut top, "server", &mut errors).unwrap_or_default();
    let routing: RoutingFile = section(&mut top, "routing", &mut errors).unwrap_or_default();
    let simulator: SimulatorFile = section(&mut top, "simulator", &mut errors).unwrap_or_default();
    let logging: LoggingFile = section(&mut top, "logging", &mut errors).unwrap_or_default();
    let telemetry: TelemetryFile = section(&mut top, "telemetry", &mut errors).unwrap_or_default();
    let governance: GovernanceFile =
        section(&mut top, "governance", &mut errors).unwrap_or_default();
    let shared: Option<file::SharedFile> = section(&mut top, "shared", &mut errors);
    let store: Option<file::StoreFile> = section(&mut top, "store", &mut errors);
    // A bare `cache:` turns the cache on with its defaults, as the section's presence says.
    if let Some(bare @ Value::Null) = top.get_mut("cache") {
        *bare = Value::Object(Map::new());
    }
    let cache: Option<file::CacheFile> = section(&mut top, "cache", &mut errors);
    let guardrails: file::GuardrailsFile =
        section(&mut top, "guardrails", &mut errors).unwrap_or_default();
    if let Some(cache) = &cache
        && (cache.ttl.is_zero() || cache.max_bytes == 0)
    {
        err(
            &mut errors,
            "cache",
            "ttl and max_bytes must be above zero (leave the section out for no cache)",
        );
    }
    if let Some(semantic) = cache.as_ref().and_then(|c| c.semantic.as_ref()) {
        if !(semantic.threshold > 0.0 && semantic.threshold <= 1.0) {
            err(
                &mut errors,
                "cache.semantic.threshold",
                "a cosine similarity above 0 and at most 1 (e.g. 0.95)",
            );
        }
        if semantic.max_entries == 0 {
            err(
                &mut errors,
                "cache.semantic.max_entries",
                "must be at least 1",
            );
        }
    }
    if let Some(shared) = &shared
        && !(shared.redis_url.starts_with("redis://") || shared.redis_url.starts_with("unix://"))
    {
        err(
            &mut errors,
            "shared.redis_url",
            "a redis:// (or unix://) URL, e.g. redis://127.0.0.1:6379/0",
        );
    }
    if let Some(store) = &store {
        if !(store.url.starts_with("postgres://") || store.url.starts_with("postgresql://")) {
            err(
                &mut errors,
                "store.url",
                "a postgres:// URL, e.g. postgres://switchyard:secret@127.0.0.1:5432/switchyard \
                 (leave the section out for SQLite in the data directory)",
            );
        }
        if store.max_connections == 0 {
            err(&mut errors, "store.max_connections", "must be at least 1");
        }
    }
    if telemetry.queue_capacity == 0 {
        err(
            &mut errors,
            "telemetry.queue_capacity",
            "must be greater than 0",
        );
    }
    otlp::check(&telemetry.otlp, &mut errors);
    if !telemetry.records && !telemetry.otlp.is_empty() {
        err(
            &mut errors,
            "telemetry.otlp",
            "exports request records: it needs telemetry.records to be true",
        );
    }
    let alerts: file::AlertsFile = section(&mut top, "alerts", &mut errors).unwrap_or_default();
    let alerts = alerts::resolve_alerts(alerts, &mut errors);
    let providers: Vec<Option<ProviderFile>> = list(&mut top, "providers", &mut errors);
    let models: Vec<Option<ModelFile>> = list(&mut top, "models", &mut errors);

    let server = resolve_server(server, &mut errors);
    let providers = resolve_providers(&providers, &mut errors);
    let models = resolve_models(models, &providers, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    if !(0.0..=1.0).contains(&routing.exploration) {
        errors.push(ConfigError {
            path: "routing.exploration".into(),
            message: "must be between 0 and 1".into(),
        });
    }
    if routing.retry_budget.ratio.is_nan() || routing.retry_budget.ratio < 0.0 {
        errors.push(ConfigError {
            path: "routing.retry_budget.ratio".into(),
            message: "must not be negative".into(),
        });
    }
    let config = Config {
        server,
        providers: providers.into_iter().flatten().collect(),
        models,
        routing,
        simulator,
        logging,
        telemetry,
        alerts,
        governance,
        shared,
        store,
        cache,
        guardrails,
    };
    resolve_rules(&config, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(config)
}

/// Reads and loads a file, with the process environment for interpolation.
pub fn load_file(path: &std::path::Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    load(&text, &|name| std::env::var(name).ok())
}

fn deserialize<T: DeserializeOwned>(
    mut value: Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // Each error's field is taken out and the rest read again, so that every bad field of a
    // section is reported at once (serde stops at the first), and the fields that are fine
    // (defaults standing in for the bad ones) still get their own checks.
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        let (inner, message, segments) = match serde_path_to_error::deserialize(value.clone()) {
            Ok(v) => return Some(v),
            Err(e) => {
                let segments: Vec<String> = e
                    .path()
                    .iter()
                    .map(|s| match s {
                        serde_path_to_error::Segment::Map { key } => key.clone(),
                        other => format!("\u{0}{other}"),
                    })
                    .collect();
                (e.path().to_string(), e.into_inner().to_string(), segments)
            }
        };
        let full = if inner == "." || inner.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{inner}")
        };
        // A required field taken out for being bad is reported already, not as missing.
        let echo = message.starts_with("missing field")
            && removed
                .iter()
                .any(|r| message.contains(&format!("`{}`", r.rsplit('.').next().unwrap_or(r))));
        if !echo {
            errors.push(ConfigError {
                message: without_secret(&full, message),
                path: full.clone(),
            });
        }
        if echo || !remove_field(&mut value, &segments) {
            return None;
        }
        removed.push(full);
    }
    None
}

/// Takes the field at `segments` (map keys only) out of `value`; false when it cannot.
fn remove_field(value: &mut Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        match at.as_object_mut().and_then(|m| m.get_mut(key)) {
            Some(next) => at = next,
            None => return false,
        }
    }
    at.as_object_mut()
        .is_some_and(|m| m.remove(last.as_str()).is_some())
}

/// An error's message, without the value it quotes when the field holds a secret (a key, a
/// token, a password): errors are printed, and secrets never are.
fn without_secret(path: &str, message: String) -> String {
    let field = path.rsplit('.').next().unwrap_or(path).to_ascii_lowercase();
    let secret = ["key", "secret", "token", "password"]
        .iter()
        .any(|word| field.contains(word));
    if secret && message.starts_with("invalid") {
        "invalid value (not shown: the field holds a secret); expected text".to_owned()
    } else {
        message
    }
}

fn section<T: DeserializeOwned>(
    top: &mut Map<String, Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = top.remove(key)?;
    if value.is_null() {
        return None;
    }
    deserialize(value, key, errors)
}

fn list<T: DeserializeOwned>(
    top: &mut Map<String, Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<T>> {
    match top.remove(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| deserialize(v, &format!("{key}[{i}]"), errors))
            .collect(),
        Some(_) => {
            errors.push(ConfigError {
                path: key.into(),
                message: "must be a list".into(),
            });
            Vec::new()
        }
    }
}

fn err(errors: &mut Vec<ConfigError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(ConfigError {
        path: path.into(),
        message: message.into(),
    });
}

fn resolve_server(server: ServerFile, errors: &mut Vec<ConfigError>) -> ServerConfig {
    if server.listen.parse::<std::net::SocketAddr>().is_err() {
        err(
            errors,
            "server.listen",
            format!("'{}' is not an address like 127.0.0.1:4000", server.listen),
        );
    }
    let master_key = server.master_key.filter(|k| !k.is_empty()).map(Secret::new);
    // One given that could not be read is reported as such already.
    if master_key.is_none() && !errors.iter().any(|e| e.path == "server.master_key") {
        err(
            errors,
            "server.master_key",
            "required: every request must authenticate (set it, e.g. master_key: ${SWITCHYARD_MASTER_KEY})",
        );
    }
    if server.max_body_bytes == 0 {
        err(errors, "server.max_body_bytes", "must be greater than 0");
    }
    if server.background_nice > 19 {
        err(
            errors,
            "server.background_nice",
            "must be 0 to 19 (a nice value; higher runs background work at a lower priority)",
        );
    }
    ServerConfig {
        listen: server.listen,
        master_key,
        max_body_bytes: server.max_body_bytes,
        shutdown_grace: server.shutdown_grace,
        idle_timeout: Some(server.idle_timeout).filter(|t| !t.is_zero()),
        data_dir: std::path::PathBuf::from(server.data_dir),
        workers: match server.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        },
        background_nice: server.background_nice,
        keep_responses_for: Some(server.keep_responses_for).filter(|t| !t.is_zero()),
        keep_responses_bytes: server.keep_responses_bytes,
        cors: cors_origins(server.cors_origins, errors),
        fetch_media: fetch_media(server.fetch_media, errors),
    }
}

fn fetch_media(settings: FetchMedia, errors: &mut Vec<ConfigError>) -> Option<FetchMedia> {
    if settings.max_bytes == 0 {
        err(errors, "server.fetch_media.max_bytes", "must be above 0");
    }
    if settings.timeout.is_zero() {
        err(errors, "server.fetch_media.timeout", "must be above 0");
    }
    settings.enabled.then_some(settings)
}

fn cors_origins(origins: Vec<String>, errors: &mut Vec<ConfigError>) -> CorsOrigins {
    if origins.is_empty() {
        return CorsOrigins::None;
    }
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            err(
                errors,
                "server.cors_origins",
                "`*` already allows every origin: list it alone or name the origins",
            );
        }
        return CorsOrigins::Any;
    }
    let mut list = Vec::with_capacity(origins.len());
    for (i, origin) in origins.iter().enumerate() {
        // A browser's Origin header is the scheme, host and port, nothing more.
        let well_formed = origin.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', '@', ' '])
        });
        match http::HeaderValue::from_str(origin) {
            Ok(value) if well_formed => list.push(value),
            _ => err(
                errors,
                format!("server.cors_origins[{i}]"),
                format!(
                    "`{origin}` is not a web origin: write it as a browser sends it, scheme, host and port only (https://app.example.com, http://localhost:3000)"
                ),
            ),
        }
    }
    CorsOrigins::List(list)
}

fn default_base_url(kind: KindFile) -> Option<&'static str> {
    match kind {
        KindFile::Openai => Some("https://api.openai.com/v1"),
        KindFile::Anthropic => Some("https://api.anthropic.com"),
        KindFile::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
        // Named after the region (`bedrock_base_url`).
        KindFile::OpenaiCompatible | KindFile::Azure | KindFile::Bedrock | KindFile::Simulator => {
            None
        }
    }
}

fn resolve_providers(
    providers: &[Option<ProviderFile>],
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<ProviderConfig>> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(providers.len());
    for (i, p) in providers.iter().enumerate() {
        let Some(p) = p else {
            out.push(None);
            continue;
        };
        let path = format!("providers[{i}]");
        if p.name.is_empty() {
            err(errors, format!("{path}.name"), "must not be empty");
        } else if !names.insert(p.name.clone()) {
            err(
                errors,
                format!("{path}.name"),
                format!("duplicate provider name '{}'", p.name),
            );
        }
        if p.dialect.is_some() && p.kind != KindFile::Simulator {
            err(
                errors,
                format!("{path}.dialect"),
                "only allowed with kind: simulator",
            );
        }
        if p.quirks.is_some() && p.kind != KindFile::OpenaiCompatible {
            err(
                errors,
                format!("{path}.quirks"),
                "only allowed with kind: openai_compatible",
            );
        }
        if p.api_version.is_some() && p.kind != KindFile::Azure {
            err(
                errors,
                format!("{path}.api_version"),
                "only allowed with kind: azure",
            );
        }
        for (name, given) in [("region", p.region.is_some()), ("aws", p.aws.is_some())] {
            if given && p.kind != KindFile::Bedrock {
                err(
                    errors,
                    format!("{path}.{name}"),
                    "only allowed with kind: bedrock",
                );
            }
        }
        let region = p.region.clone().filter(|r| !r.is_empty());
        if p.kind == KindFile::Bedrock && region.is_none() {
            err(
                errors,
                format!("{path}.region"),
                "required for kind: bedrock (the AWS region, e.g. us-east-1)",
            );
        }
        if p.aws.is_some() && (p.api_key.is_some() || p.credential.is_some()) {
            err(
                errors,
                format!("{path}.aws"),
                "give either aws credentials or an api_key (a Bedrock API key), not both",
            );
        }
        let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        if let Some(aws) = &p.aws {
            let keys = (given(&aws.access_key_id), given(&aws.secret_access_key));
            if keys.0 != keys.1 {
                err(
                    errors,
                    format!("{path}.aws"),
                    "give both access_key_id and secret_access_key (neither, to find them)",
                );
            }
            if (keys.0 || keys.1) && given(&aws.profile) {
                err(
                    errors,
                    format!("{path}.aws.profile"),
                    "give either access keys or a profile, not both",
                );
            }
        }
        let needs_key = matches!(
            p.kind,
            KindFile::Openai | KindFile::Azure | KindFile::Anthropic | KindFile::Gemini
        );
        let api_key = p.api_key.clone().filter(|k| !k.is_empty());
        let credential = p.credential.clone();
        match (&api_key, &credential) {
            (Some(_), Some(_)) => err(
                errors,
                format!("{path}.credential"),
                "give either api_key or credential, not both",
            ),
            (_, Some(name)) if !crate::credentials::valid_name(name) => err(
                errors,
                format!("{path}.credential"),
                "a credential name is 1 to 64 letters, digits, '-', '_' or '.'",
            ),
            (None, None) if needs_key => err(
                errors,
                format!("{path}.api_key"),
                "required for this provider kind (or name a stored credential with `credential`)",
            ),
            _ => {}
        }
        let base_url = match (&p.base_url, p.kind) {
            (Some(url), KindFile::Simulator) => {
                err(
                    errors,
                    format!("{path}.base_url"),
                    "not allowed with kind: simulator (it runs in-process)",
                );
                url.clone()
            }
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, KindFile::Simulator) => String::new(),
            (None, KindFile::Bedrock) => region
                .as_deref()
                .map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
                .unwrap_or_default(),
            (None, kind) => match default_base_url(kind) {
                Some(u) => u.to_owned(),
                None => {
                    err(
                        errors,
                        format!("{path}.base_url"),
                        "required for this provider kind",
                    );
                    String::new()
                }
            },
        };
        if !base_url.is_empty()
            && !base_url.starts_with("http://")
            && !base_url.starts_with("https://")
        {
            err(
                errors,
                format!("{path}.base_url"),
                "must start with http:// or https://",
            );
        } else if !base_url.is_empty() && base_url.parse::<http::Uri>().is_err() {
            err(errors, format!("{path}.base_url"), "is not a valid URL");
        }
        let t = p.timeouts;
        for (name, d) in [
            ("connect", t.connect),
            ("first_byte", t.first_byte),
            ("stall", t.stall),
            ("total", t.total),
        ] {
            if d.is_zero() {
                err(
                    errors,
                    format!("{path}.timeouts.{name}"),
                    "must be greater than 0",
                );
            }
        }
        let kind = match p.kind {
            KindFile::Openai => ProviderKind::OpenAi,
            KindFile::OpenaiCompatible => {
                let q = p.quirks.clone().unwrap_or_default();
                let d = OpenAiQuirks::compatible_for(p.base_url.as_deref().unwrap_or_default());
                ProviderKind::OpenAiCompatible(OpenAiQuirks {
                    max_tokens_field: q.max_tokens_field.unwrap_or(d.max_tokens_field),
                    seed_field: q.seed_field.unwrap_or(d.seed_field),
                    stream_usage: q.stream_usage.unwrap_or(d.stream_usage),
                    developer_role: q.developer_role.unwrap_or(d.developer_role),
                    responses_members: d.responses_members,
                    finish_reason_always: d.finish_reason_always,
                    unsupported_fields: q.unsupported_fields.unwrap_or(d.unsupported_fields),
                    reasoning_history: q.reasoning_history.unwrap_or(d.reasoning_history),
                    reasoning_field: q.reasoning_field.clone().unwrap_or(d.reasoning_field),
                    short_tool_call_ids: q.short_tool_call_ids.unwrap_or(d.short_tool_call_ids),
                })
            }
            KindFile::Azure => ProviderKind::Azure,
            KindFile::Anthropic => ProviderKind::Anthropic,
            KindFile::Gemini => ProviderKind::Gemini,
            KindFile::Bedrock => ProviderKind::Bedrock,
            KindFile::Simulator => match p.dialect.unwrap_or_default() {
                SimDialectFile::Openai => ProviderKind::OpenAi,
                SimDialectFile::Azure => ProviderKind::Azure,
                SimDialectFile::Anthropic => ProviderKind::Anthropic,
                SimDialectFile::Gemini => ProviderKind::Gemini,
                SimDialectFile::Bedrock => ProviderKind::Bedrock,
            },
        };
        let simulated = (p.kind == KindFile::Simulator).then(|| p.dialect.unwrap_or_default());
        out.push(Some(ProviderConfig {
            name: p.name.clone(),
            kind,
            simulated,
            base_url,
            // The simulator accepts any key; a fixed one keeps auth headers on the wire realistic.
            api_key: api_key
                .or_else(|| {
                    simulated
                        .filter(|_| credential.is_none())
                        .map(|_| "sim-key".to_owned())
                })
                .map(Secret::new),
            credential,
            api_version: match (simulated, &p.api_version) {
                (Some(SimDialectFile::Azure), None) => Some("2024-10-21".to_owned()),
                (_, v) => v.clone(),
            },
            timeouts: p.timeouts,
            gen_ai_name: otlp::gen_ai_provider_name(p.kind, simulated, &p.name),
            aws: aws_auth(p, region.clone().unwrap_or_default()),
        }));
    }
    out
}

/// A Bedrock provider's AWS credentials: given, from a named profile, or (with neither an
/// `aws` block nor an API key) from AWS's default chain. `None` for other kinds and for
/// Bedrock API keys.
fn aws_auth(
    p: &ProviderFile,
    region: String,
) -> Option<std::sync::Arc<crate::upstream::aws_credentials::AwsAuth>> {
    use crate::upstream::aws_credentials::{AwsAuth, AwsSource};
    if p.kind != KindFile::Bedrock {
        return None;
    }
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let auth = match &p.aws {
        None if p.api_key.as_deref().is_some_and(|k| !k.is_empty()) || p.credential.is_some() => {
            return None;
        }
        None => AwsAuth::to_find(region, AwsSource::Chain),
        Some(aws) => match (
            nonempty(&aws.access_key_id),
            nonempty(&aws.secret_access_key),
            nonempty(&aws.profile),
        ) {
            (Some(access_key_id), Some(secret), _) => {
                AwsAuth::given(crate::upstream::sigv4::AwsCredentials {
                    region,
                    access_key_id,
                    secret_access_key: Secret::new(secret),
                    session_token: nonempty(&aws.session_token).map(Secret::new),
                })
            }
            (_, _, Some(profile)) => AwsAuth::to_find(region, AwsSource::Profile(profile)),
            _ => AwsAuth::to_find(region, AwsSource::Chain),
        },
    };
    Some(std::sync::Arc::new(auth))
}

fn resolve_models(
    models: Vec<Option<ModelFile>>,
    providers: &[Option<ProviderConfig>],
    errors: &mut Vec<ConfigError>,
) -> Vec<ModelConfig> {
    let aliases: HashSet<String> = models.iter().flatten().map(|m| m.alias.clone()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, m) in models.into_iter().enumerate() {
        let Some(m) = m else { continue };
        let path = format!("models[{i}]");
        if m.alias.is_empty() {
            err(errors, format!("{path}.alias"), "must not be empty");
        } else if !seen.insert(m.alias.clone()) {
            err(
                errors,
                format!("{path}.alias"),
                format!("duplicate alias '{}'", m.alias),
            );
        }
        if m.deployments.is_empty() {
            err(
                errors,
                format!("{path}.deployments"),
                "an alias needs at least one deployment",
            );
        }
        let mut deployments = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            let dpath = format!("{path}.deployments[{j}]");
            let provider = providers
                .iter()
                .flatten()
                .position(|p| p.name == d.provider);
            // Indices count only providers that resolved; a broken provider already has its error.
            match provider {
                Some(idx) => deployments.push(DeploymentConfig {
                    provider: idx,
                    model: d.model.clone(),
                    weight: d.weight,
                    priority: d.priority,
                    price: d.price,
                    rpm: d.rpm,
                    tpm: d.tpm,
                    context_window: d.context_window,
                    attributes: Attributes {
                        region: d.region.clone(),
                        risk_level: d.risk_level,
                        data_classification: d.data_classification.clone(),
                        extra: d.attributes.clone(),
                    },
                }),
                None if providers.iter().any(Option::is_none) => {}
                None => err(
                    errors,
                    format!("{dpath}.provider"),
                    format!("unknown provider '{}'", d.provider),
                ),
            }
            if d.model.is_empty() {
                err(errors, format!("{dpath}.model"), "must not be empty");
            }
            for (name, v) in [
                ("region", &d.region),
                ("data_classification", &d.data_classification),
            ] {
                if v.as_deref().is_some_and(str::is_empty) {
                    err(errors, format!("{dpath}.{name}"), "must not be empty");
                }
            }
            if d.weight == 0 {
                err(errors, format!("{dpath}.weight"), "must be greater than 0");
            }
            if let Some(p) = d.price
                && p.figures().any(|usd| usd < 0.0 || !usd.is_finite())
            {
                err(
                    errors,
                    format!("{dpath}.price"),
                    "prices must be finite and not negative",
                );
            }
            for (name, v) in [
                ("rpm", d.rpm),
                ("tpm", d.tpm),
                ("context_window", d.context_window),
            ] {
                if v == Some(0) {
                    err(errors, format!("{dpath}.{name}"), "must be greater than 0");
                }
            }
        }
        let fallbacks = resolve_fallbacks(
            &m.fallbacks,
            &m.alias,
            &aliases,
            &format!("{path}.fallbacks"),
            errors,
        );
        let hedge = m
            .hedge
            .as_ref()
            .and_then(|h| resolve_hedge(h, &format!("{path}.hedge"), errors));
        out.push(ModelConfig {
            alias: m.alias,
            deployments,
            strategy: m.strategy,
            fallbacks,
            num_retries: m.num_retries,
            hedge,
            stream_buffer: m.stream_buffer,
            guardrails: m.guardrails,
        });
    }
    out
}

fn check_aliases(
    list: &[String],
    own: &str,
    aliases: &HashSet<String>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    for (j, f) in list.iter().enumerate() {
        if f == own {
            err(
                errors,
                format!("{path}[{j}]"),
                "an alias cannot fall back to itself",
            );
        } else if !aliases.contains(f) {
            err(
                errors,
                format!("{path}[{j}]"),
                format!("unknown alias '{f}'"),
            );
        }
    }
}

fn resolve_fallbacks(
    file: &FallbacksFile,
    own: &str,
    aliases: &HashSet<String>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Fallbacks {
    match file {
        FallbacksFile::All(list) => {
            check_aliases(list, own, aliases, path, errors);
            Fallbacks {
                default: list.clone(),
                by_class: Vec::new(),
            }
        }
        FallbacksFile::ByClass(map) => {
            let mut out = Fallbacks::default();
            for (class, list) in map {
                let cpath = format!("{path}.{class}");
                check_aliases(list, own, aliases, &cpath, errors);
                if class == "default" {
                    out.default = list.clone();
                } else if let Some(c) = ErrorClass::parse(class) {
                    out.by_class.push((c, list.clone()));
                } else {
                    err(
                        errors,
                        cpath,
                        "unknown error class (use default, context_window_exceeded, content_filtered, rate_limited, timeout, server_error, overloaded, connect, auth_failed, not_found, stream_interrupted, malformed_response)",
                    );
                }
            }
            out
        }
    }
}

fn resolve_hedge(h: &HedgeFile, path: &str, errors: &mut Vec<ConfigError>) -> Option<Hedge> {
    let after = match &h.after {
        HedgeAfterFile::Fixed(d) => HedgeAfter::Fixed(*d),
        HedgeAfterFile::Percentile(p) if p == "p95" => HedgeAfter::P95,
        HedgeAfterFile::Percentile(p) => {
            err(
                errors,
                format!("{path}.after"),
                format!("'{p}' is neither a duration nor p95"),
            );
            return None;
        }
    };
    if !(h.max_share > 0.0 && h.max_share <= 1.0) {
        err(errors, format!("{path}.max_share"), "must be in (0, 1]");
        return None;
    }
    Some(Hedge {
        after,
        max_share: h.max_share,
    })
}

fn resolve_rules(config: &Config, errors: &mut Vec<ConfigError>) {
    if let Some(semantic) = config.cache.as_ref().and_then(|c| c.semantic.as_ref()) {
        match config.models.iter().find(|m| m.alias == semantic.model) {
            None => err(
                errors,
                "cache.semantic.model",
                format!(
                    "unknown alias '{}': name the embedding model of one of models[]",
                    semantic.model
                ),
            ),
            // Anthropic's API serves no embeddings: every question's embedding would fail,
            // and the semantic cache never answer.
            Some(m)
                if m.deployments.iter().all(|d| {
                    config.providers.get(d.provider).is_some_and(|p| {
                        p.kind == ProviderKind::Anthropic
                            || p.simulated == Some(file::SimDialectFile::Anthropic)
                    })
                }) =>
            {
                err(
                    errors,
                    "cache.semantic.model",
                    format!(
                        "'{}' cannot embed (its deployments speak Anthropic's API, which serves no embeddings): name an embedding model",
                        semantic.model
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (i, rule) in config.routing.rules.iter().enumerate() {
        let path = format!("routing.rules[{i}]");
        if rule.name.is_empty() {
            err(errors, format!("{path}.name"), "must not be empty");
        }
        for (j, need) in rule.when.needs.iter().enumerate() {
            if !["tools", "images", "documents", "json_schema"].contains(&need.as_str()) {
                err(
                    errors,
                    format!("{path}.match.needs[{j}]"),
                    "must be tools, images, documents or json_schema",
                );
            }
        }
        let target = match &rule.route.alias {
            Some(alias) => match config.models.iter().find(|m| &m.alias == alias) {
                Some(m) => Some(m),
                None => {
                    err(
                        errors,
                        format!("{path}.route.alias"),
                        format!("unknown alias '{alias}'"),
                    );
                    None
                }
            },
            None => None,
        };
        let ids: Vec<String> = match target {
            Some(m) => m
                .deployments
                .iter()
                .map(|d| format!("{}/{}", config.providers[d.provider].name, d.model))
                .collect(),
            None => config
                .models
                .iter()
                .flat_map(|m| {
                    m.deployments
                        .iter()
                        .map(|d| format!("{}/{}", config.providers[d.provider].name, d.model))
                })
                .collect(),
        };
        for (j, id) in rule.route.deployments.iter().enumerate() {
            if !ids.contains(id) {
                err(
                    errors,
                    format!("{path}.route.deployments[{j}]"),
                    format!("unknown deployment '{id}' (write provider/model)"),
                );
            }
        }
        for (id, weight) in &rule.route.weights {
            if !ids.contains(id) {
                err(
                    errors,
                    format!("{path}.route.weights.{id}"),
                    "unknown deployment (write provider/model)",
                );
            } else if *weight == 0 {
                // Weights only share traffic out; a deployment a rule keeps off is left out of
                // `route.deployments`.
                err(
                    errors,
                    format!("{path}.route.weights.{id}"),
                    "must be greater than 0 (leave the deployment out of route.deployments instead)",
                );
            }
        }
        if rule.route.max_cost.is_some_and(|c| c.is_nan() || c < 0.0) {
            err(
                errors,
                format!("{path}.route.max_cost"),
                "must not be negative",
            );
        }
    }
}

#[cfg(test)]
mod tests;

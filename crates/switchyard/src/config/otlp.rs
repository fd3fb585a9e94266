//! `telemetry.otlp[]`: OpenTelemetry trace exporters as written in the file, their checks, and
//! the `gen_ai.provider.name` each configured provider kind is reported as.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::file::{KindFile, SimDialectFile};
use super::{ConfigError, Secret};

/// `telemetry.otlp[]` — one OTLP/HTTP (protobuf) trace receiver: a collector, Phoenix, MLflow,
/// Langfuse …
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct OtlpFile {
    /// Base URL of the receiver, e.g. `http://127.0.0.1:4318`; `/v1/traces` is appended unless
    /// the URL already ends with it.
    pub endpoint: String,
    /// Extra HTTP headers sent with every export (authentication, `x-mlflow-experiment-id` …).
    /// Their values never appear in logs.
    #[serde(default, deserialize_with = "secret_values")]
    pub headers: BTreeMap<String, Secret>,
    /// `service.name` of the exported resource (default `switchyard`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More resource attributes, e.g. `deployment.environment.name` or Phoenix's
    /// `openinference.project.name`.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Also export prompt and response, as the records keep them (masked unless
    /// `telemetry.content: full`), as `gen_ai.input.messages` / `gen_ai.output.messages`
    /// (default false).
    #[serde(default)]
    pub capture_content: bool,
    /// Records waiting for this exporter; when it is full, new records are not exported and
    /// are counted (default 4096).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Most records (each a request span with its attempt spans) in one export request
    /// (default 256).
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Shortest time between two export requests (default 1s): records gather until it is up,
    /// until `max_batch` of them wait or until their spans come to 4 MiB, whichever comes
    /// first. About one request a second rather than one for each of the recorder's batches
    /// (twenty a second under steady traffic) spares the receiver most of the requests' fixed
    /// cost, as OpenTelemetry's own batching processors do; `0s` sends each batch as it comes.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Limit of one export request (default 10s); a batch that fails in a retryable way is
    /// sent again a few times before it is dropped and counted.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_service_name() -> String {
    "switchyard".into()
}
fn default_queue() -> usize {
    4096
}
fn default_batch() -> usize {
    256
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn secret_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Secret>, D::Error> {
    let plain = BTreeMap::<String, String>::deserialize(d)?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect())
}

/// The OTLP/HTTP traces URL of an endpoint setting.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Checks every exporter, adding errors with their paths.
pub(super) fn check(exporters: &[OtlpFile], errors: &mut Vec<ConfigError>) {
    let mut err = |path: String, message: &str| {
        errors.push(ConfigError {
            path,
            message: message.to_owned(),
        })
    };
    for (i, e) in exporters.iter().enumerate() {
        let path = format!("telemetry.otlp[{i}]");
        let url = traces_url(&e.endpoint);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            err(
                format!("{path}.endpoint"),
                "must start with http:// or https://",
            );
        } else if !url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some()) {
            err(format!("{path}.endpoint"), "is not a valid URL");
        }
        for (name, value) in &e.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                err(
                    format!("{path}.headers.{name}"),
                    "is not a valid header name",
                );
            } else if http::HeaderValue::from_str(value.expose()).is_err() {
                err(
                    format!("{path}.headers.{name}"),
                    "is not a valid header value",
                );
            }
        }
        if e.service_name.is_empty() {
            err(format!("{path}.service_name"), "must not be empty");
        }
        if e.queue_capacity == 0 {
            err(format!("{path}.queue_capacity"), "must be greater than 0");
        }
        if e.max_batch == 0 {
            err(format!("{path}.max_batch"), "must be greater than 0");
        }
        if e.timeout.is_zero() {
            err(format!("{path}.timeout"), "must be greater than 0");
        }
    }
}

/// `gen_ai.provider.name` of a provider: the conventions' well-known value for its kind, or the
/// provider's own name for an OpenAI-compatible server (the conventions allow custom values).
/// A simulated provider reports the provider whose wire format it speaks.
pub(super) fn gen_ai_provider_name(
    kind: KindFile,
    simulated: Option<SimDialectFile>,
    name: &str,
) -> String {
    let known = match (kind, simulated) {
        (KindFile::Openai, _) | (KindFile::Simulator, Some(SimDialectFile::Openai) | None) => {
            "openai"
        }
        (KindFile::Azure, _) | (KindFile::Simulator, Some(SimDialectFile::Azure)) => {
            "azure.ai.openai"
        }
        (KindFile::Anthropic, _) | (KindFile::Simulator, Some(SimDialectFile::Anthropic)) => {
            "anthropic"
        }
        (KindFile::Gemini, _) | (KindFile::Simulator, Some(SimDialectFile::Gemini)) => "gcp.gemini",
        (KindFile::Bedrock, _) | (KindFile::Simulator, Some(SimDialectFile::Bedrock)) => {
            "aws.bedrock"
        }
        (KindFile::OpenaiCompatible, _) => return name.to_owned(),
    };
    known.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(
            traces_url("https://cloud.langfuse.com/api/public/otel"),
            "https://cloud.langfuse.com/api/public/otel/v1/traces"
        );
        assert_eq!(traces_url("http://h/v1/traces"), "http://h/v1/traces");
    }

    const BASE: &str = "server: {master_key: k}\nproviders: [{name: s, kind: simulator, dialect: gemini}]\nmodels: [{alias: a, deployments: [{provider: s, model: m}]}]\n";

    #[test]
    fn exporters_load_with_defaults_and_secret_headers() {
        let text = format!(
            "{BASE}telemetry:\n  otlp:\n    - endpoint: http://127.0.0.1:6006\n      headers: {{authorization: Bearer s3cr3t}}\n"
        );
        let c = crate::config::load(&text, &|_| None).unwrap();
        let e = &c.telemetry.otlp[0];
        assert_eq!(traces_url(&e.endpoint), "http://127.0.0.1:6006/v1/traces");
        assert_eq!(e.service_name, "switchyard");
        assert!(!e.capture_content);
        assert_eq!((e.queue_capacity, e.max_batch), (4096, 256));
        assert_eq!(e.interval, Duration::from_secs(1));
        assert_eq!(e.timeout, Duration::from_secs(10));
        assert_eq!(e.headers["authorization"].expose(), "Bearer s3cr3t");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "header values never print"
        );
        assert_eq!(c.providers[0].gen_ai_name, "gcp.gemini");
    }

    #[test]
    fn bad_exporters_are_reported_with_their_paths() {
        let text = format!(
            "{BASE}telemetry:\n  otlp:\n    - {{endpoint: collector:4318, max_batch: 0}}\n    - {{endpoint: http://h, headers: {{\"bad header\": x}}, timeout: 0s, queue_capacity: 0}}\n"
        );
        let errors = crate::config::load(&text, &|_| None).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "telemetry.otlp[0].endpoint",
                "telemetry.otlp[0].max_batch",
                "telemetry.otlp[1].headers.bad header",
                "telemetry.otlp[1].queue_capacity",
                "telemetry.otlp[1].timeout",
            ]
        );
    }

    #[test]
    fn provider_names_follow_the_conventions() {
        assert_eq!(gen_ai_provider_name(KindFile::Openai, None, "x"), "openai");
        assert_eq!(
            gen_ai_provider_name(KindFile::Azure, None, "x"),
            "azure.ai.openai"
        );
        assert_eq!(
            gen_ai_provider_name(KindFile::Gemini, None, "x"),
            "gcp.gemini"
        );
        assert_eq!(
            gen_ai_provider_name(KindFile::OpenaiCompatible, None, "mistral"),
            "mistral"
        );
        assert_eq!(
            gen_ai_provider_name(KindFile::Simulator, Some(SimDialectFile::Anthropic), "sim"),
            "anthropic"
        );
    }
}

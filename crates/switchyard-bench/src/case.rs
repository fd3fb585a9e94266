//! Bench cases as data: one directory per case under `cases/`, holding `case.yaml` (the load
//! profile) and `gateway.yaml` (the gateway configuration, with `${SIM_URL}`-style variables the
//! harness sets in the gateway's environment). This module reads and validates them and knows
//! how `--smoke` shrinks a profile; it sends nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Upper bounds that keep every run finite whatever a case file says.
const MAX_RATE: f64 = 20_000.0;
const MAX_CONCURRENCY: u32 = 256;
const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_WARMUP: Duration = Duration::from_secs(60);
const MAX_REQUESTS: u64 = 1_000_000;

/// Requests measured per run in `--smoke` mode (fewer at low rates, see [`Case::smoke`]).
const SMOKE_REQUESTS: u64 = 200;
/// Warm-up of every run in `--smoke` mode.
const SMOKE_WARMUP: Duration = Duration::from_millis(200);

/// What a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// OpenAI Chat Completions, not streamed.
    Chat,
    /// OpenAI Chat Completions with `stream: true`: time to first token and inter-chunk gaps.
    ChatStream,
    /// OpenAI Embeddings.
    Embeddings,
    /// Anthropic Messages from the client; the gateway translates to an OpenAI provider.
    AnthropicToOpenai,
    /// The same with `stream: true` (as Claude Code sends every turn): the provider's OpenAI
    /// stream written as Anthropic events; time to first token and inter-chunk gaps.
    AnthropicStreamToOpenai,
    /// OpenAI Chat Completions of an agent's turn: a tool, the assistant's call of it and the
    /// tool's result, which carries the prompt (a file the agent read), not streamed.
    ChatTools,
    /// The same turn in Anthropic Messages form (`tool_use`, `tool_result`), translated to an
    /// OpenAI provider.
    AnthropicToolsToOpenai,
    /// OpenAI Chat Completions of a question about an inline image (a `data:` URI) whose
    /// base64 text is as long as the case's prompt would be, not streamed.
    ChatImage,
    /// The same in Anthropic Messages form (a `base64` image block), translated to an OpenAI
    /// provider.
    AnthropicImageToOpenai,
    /// A computer-use agent's turn in Anthropic Messages form: its screenshot tool called, and
    /// the result a short text and the screenshot (a `base64` image block as long as the case's
    /// prompt would be), translated to an OpenAI provider.
    AnthropicScreenshotToOpenai,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::ChatStream => "chat_stream",
            Kind::Embeddings => "embeddings",
            Kind::AnthropicToOpenai => "anthropic_to_openai",
            Kind::AnthropicStreamToOpenai => "anthropic_stream_to_openai",
            Kind::ChatTools => "chat_tools",
            Kind::AnthropicToolsToOpenai => "anthropic_tools_to_openai",
            Kind::ChatImage => "chat_image",
            Kind::AnthropicImageToOpenai => "anthropic_image_to_openai",
            Kind::AnthropicScreenshotToOpenai => "anthropic_screenshot_to_openai",
        }
    }

    /// The reply is a stream, read event by event (time to first token, gaps).
    pub fn streams(self) -> bool {
        matches!(self, Kind::ChatStream | Kind::AnthropicStreamToOpenai)
    }

    /// The model a request names when the case does not say; the case's `gateway.yaml` must
    /// have an alias of that name.
    fn default_model(self) -> &'static str {
        match self {
            Kind::Chat | Kind::ChatStream | Kind::ChatTools | Kind::ChatImage => "gpt-4o-mini",
            Kind::Embeddings => "text-embedding-3-small",
            Kind::AnthropicToOpenai
            | Kind::AnthropicStreamToOpenai
            | Kind::AnthropicToolsToOpenai
            | Kind::AnthropicImageToOpenai
            | Kind::AnthropicScreenshotToOpenai => "claude-sonnet-4-5",
        }
    }
}

/// The gateway features a case switches on. Cumulative: each set has everything of the one
/// before it. The case's `gateway.yaml` switches the gateway's side on (records, exporters);
/// the harness does its own part (a virtual key for `keys` and above, the OTLP sink for `otel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSet {
    /// Plain proxying: master-key authentication, routing, translation; request records off.
    #[default]
    Bare,
    /// + a virtual key with RPM and TPM limits and a budget too large ever to refuse.
    Keys,
    /// + request records (stored in SQLite, prompts masked) and the metrics fed from them.
    Records,
    /// + OpenTelemetry trace export over OTLP/HTTP to a sink the harness runs.
    Otel,
}

impl FeatureSet {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureSet::Bare => "bare",
            FeatureSet::Keys => "keys",
            FeatureSet::Records => "records",
            FeatureSet::Otel => "otel",
        }
    }

    /// Requests authenticate with a virtual key the harness creates (limits and budget set).
    pub fn virtual_key(self) -> bool {
        self >= FeatureSet::Keys
    }

    /// The gateway exports traces to the harness's OTLP sink.
    pub fn otlp(self) -> bool {
        self >= FeatureSet::Otel
    }

    /// Request records are on: the cases the added-p99 target is read from (keys, budgets and
    /// records on).
    pub fn records(self) -> bool {
        self >= FeatureSet::Records
    }
}

/// Prompt size of every request of a case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSize {
    /// One short sentence.
    #[default]
    Small,
    /// About 50,000 tokens (200 KB of text).
    Large,
    /// The large prompt in lines of about sixty characters with a quoted word now and then, as
    /// code or a document is: a line break or quote to escape in most 64-byte stretches.
    Lines,
    /// 200 KB of sentences of a thousand made-up words, common ones more often, which compress
    /// as prose and code do (LZ4: about 1.6 times): where the work depends on the text's
    /// variety, as storing a record's kept prompt compressed does, the large prompt's twenty
    /// repeated words (some 70 times) would overstate it.
    Prose,
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Open loop: requests start on a fixed schedule whatever the replies do; latency counts
    /// from the scheduled start, so a slow reply cannot hide the queue it causes.
    Rate(f64),
    /// Closed loop: this many requests in flight, each sent when the previous one ended.
    Concurrency(u32),
}

/// When the measured part of a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    Duration(#[serde(with = "secs")] Duration),
    Requests(u64),
}

/// A validated case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub features: FeatureSet,
    pub prompt: PromptSize,
    pub model: String,
    pub load: Load,
    pub stop: Stop,
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// The gateway configuration file of this case.
    #[serde(skip)]
    pub gateway_config: PathBuf,
}

/// `case.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    description: String,
    kind: Kind,
    #[serde(default)]
    features: FeatureSet,
    #[serde(default)]
    prompt: PromptSize,
    #[serde(default)]
    model: Option<String>,
    load: LoadFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFile {
    /// Open loop, requests per second.
    #[serde(default)]
    rate: Option<f64>,
    /// Closed loop, requests in flight.
    #[serde(default)]
    concurrency: Option<u32>,
    /// Measured time, e.g. `10s`.
    #[serde(default)]
    duration: Option<String>,
    /// Measured requests.
    #[serde(default)]
    requests: Option<u64>,
    /// Unmeasured load before the measured part, e.g. `2s`.
    #[serde(default)]
    warmup: Option<String>,
}

impl Case {
    /// Reads `dir/case.yaml` and checks that `dir/gateway.yaml` exists.
    pub fn load(dir: &Path) -> anyhow::Result<Case> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("case directory has no UTF-8 name")?
            .to_owned();
        let path = dir.join("case.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: CaseFile =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let gateway_config = dir.join("gateway.yaml");
        if !gateway_config.is_file() {
            bail!("case {name}: {} is missing", gateway_config.display());
        }
        let l = file.load;
        let load = match (l.rate, l.concurrency) {
            (Some(r), None) if r > 0.0 && r <= MAX_RATE => Load::Rate(r),
            (None, Some(c)) if (1..=MAX_CONCURRENCY).contains(&c) => Load::Concurrency(c),
            (Some(_), None) => bail!("case {name}: load.rate must be in (0, {MAX_RATE}]"),
            (None, Some(_)) => {
                bail!("case {name}: load.concurrency must be in 1..={MAX_CONCURRENCY}")
            }
            _ => bail!("case {name}: give exactly one of load.rate and load.concurrency"),
        };
        let stop = match (l.duration.as_deref(), l.requests) {
            (Some(d), None) => {
                let d = parse_duration(d).with_context(|| format!("case {name}: load.duration"))?;
                if !measurable(d) {
                    bail!("case {name}: load.duration must be in (0, {MAX_DURATION:?}]");
                }
                Stop::Duration(d)
            }
            (None, Some(n)) if (1..=MAX_REQUESTS).contains(&n) => Stop::Requests(n),
            (None, Some(_)) => bail!("case {name}: load.requests must be in 1..={MAX_REQUESTS}"),
            _ => bail!("case {name}: give exactly one of load.duration and load.requests"),
        };
        let warmup = match l.warmup.as_deref() {
            Some(w) => parse_duration(w).with_context(|| format!("case {name}: load.warmup"))?,
            None => Duration::from_secs(2),
        };
        if warmup > MAX_WARMUP {
            bail!("case {name}: load.warmup must be at most {MAX_WARMUP:?}");
        }
        Ok(Case {
            model: file
                .model
                .unwrap_or_else(|| file.kind.default_model().to_owned()),
            name,
            description: file.description,
            kind: file.kind,
            features: file.features,
            prompt: file.prompt,
            load,
            stop,
            warmup,
            gateway_config,
        })
    }

    /// The same case shrunk for `--smoke`: a short warm-up and at most [`SMOKE_REQUESTS`]
    /// measured requests; an open loop keeps its rate but measures at most one second of it
    /// (and at least 50 requests).
    pub fn smoke(&self) -> Case {
        let stop = match self.load {
            Load::Rate(r) => Stop::Requests((r.round() as u64).clamp(50, SMOKE_REQUESTS)),
            Load::Concurrency(_) => Stop::Requests(SMOKE_REQUESTS),
        };
        Case {
            stop,
            warmup: self.warmup.min(SMOKE_WARMUP),
            ..self.clone()
        }
    }

    /// The case measured for `duration` whatever its own stop (`--duration`; see
    /// [`measurable`]).
    pub fn measured_for(&self, duration: Duration) -> Case {
        Case {
            stop: Stop::Duration(duration),
            ..self.clone()
        }
    }

    /// The most time the measured part can take, used for hard deadlines.
    pub fn measure_limit(&self) -> Duration {
        match (self.stop, self.load) {
            (Stop::Duration(d), _) => d,
            (Stop::Requests(n), Load::Rate(r)) => Duration::from_secs_f64(n as f64 / r),
            // A closed loop with a request count ends when the count is reached; bound it anyway.
            (Stop::Requests(_), Load::Concurrency(_)) => MAX_DURATION,
        }
    }

    /// One line describing the load, e.g. `open loop 500 req/s for 10 s after 2 s warm-up`.
    pub fn load_summary(&self) -> String {
        let load = match self.load {
            Load::Rate(r) => format!("open loop {r} req/s"),
            Load::Concurrency(c) => format!("closed loop, concurrency {c}"),
        };
        let stop = match self.stop {
            Stop::Duration(d) => format!("for {}", fmt_duration(d)),
            Stop::Requests(n) => format!("for {n} requests"),
        };
        format!("{load} {stop} after {} warm-up", fmt_duration(self.warmup))
    }
}

/// Loads every case directory under `root` (sorted by name), or only those named in `only`.
pub fn load_all(root: &Path, only: &[String]) -> anyhow::Result<Vec<Case>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root)
        .with_context(|| format!("reading the cases directory {}", root.display()))?
    {
        let path = entry?.path();
        if path.join("case.yaml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    let mut cases = Vec::new();
    for dir in dirs {
        cases.push(Case::load(&dir)?);
    }
    if only.is_empty() {
        return Ok(cases);
    }
    let mut picked = Vec::new();
    for name in only {
        match cases.iter().find(|c| &c.name == name) {
            Some(c) => picked.push(c.clone()),
            None => {
                let known: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
                bail!("no case named {name}; known: {}", known.join(", "));
            }
        }
    }
    Ok(picked)
}

/// Whether a measured part may last `d`: above zero and at most [`MAX_DURATION`].
pub fn measurable(d: Duration) -> bool {
    !d.is_zero() && d <= MAX_DURATION
}

/// The bounds of [`measurable`], for messages.
pub fn measurable_range() -> String {
    format!("above zero and at most {}", fmt_duration(MAX_DURATION))
}

/// Parses `250ms`, `10s`, `1.5s`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .with_context(|| format!("`{text}` has no unit (ms, s, m or h)"))?;
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a number followed by a unit"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("`{text}`: unknown unit `{other}` (use ms, s, m or h)"),
    };
    Duration::try_from_secs_f64(secs).with_context(|| format!("`{text}` is out of range"))
}

/// `2 s`, `250 ms`, `1.5 s`.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// Serialises durations as seconds (a float) in the JSON report.
mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    fn write_case(dir: &Path, case_yaml: &str) -> PathBuf {
        let case = dir.join("c");
        std::fs::create_dir_all(&case).unwrap();
        std::fs::write(case.join("case.yaml"), case_yaml).unwrap();
        std::fs::write(case.join("gateway.yaml"), "server: {}\n").unwrap();
        case
    }

    #[test]
    fn feature_sets_are_cumulative() {
        assert!(!FeatureSet::Bare.virtual_key());
        assert!(FeatureSet::Keys.virtual_key() && !FeatureSet::Keys.otlp());
        assert!(FeatureSet::Records.virtual_key() && !FeatureSet::Records.otlp());
        assert!(FeatureSet::Records.records() && FeatureSet::Otel.records());
        assert!(!FeatureSet::Keys.records() && !FeatureSet::Bare.records());
        assert!(FeatureSet::Otel.virtual_key() && FeatureSet::Otel.otlp());
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_case(
            tmp.path(),
            "description: d\nkind: chat\nfeatures: otel\nload: {rate: 1, requests: 5}\n",
        );
        assert_eq!(Case::load(&dir).unwrap().features, FeatureSet::Otel);
    }

    #[test]
    fn case_files_are_validated() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = write_case(
            tmp.path(),
            "description: d\nkind: chat_stream\nprompt: large\nload: {rate: 100, duration: 3s}\n",
        );
        let case = Case::load(&ok).unwrap();
        assert_eq!(case.kind, Kind::ChatStream);
        assert_eq!(case.model, "gpt-4o-mini");
        assert_eq!(case.load, Load::Rate(100.0));
        assert_eq!(case.stop, Stop::Duration(Duration::from_secs(3)));
        assert_eq!(case.warmup, Duration::from_secs(2));
        assert_eq!(case.features, FeatureSet::Bare);
        let smoke = case.smoke();
        assert_eq!(smoke.stop, Stop::Requests(100));
        assert_eq!(smoke.warmup, SMOKE_WARMUP);

        for bad in [
            "description: d\nkind: chat\nload: {rate: 1, concurrency: 2, duration: 1s}\n",
            "description: d\nkind: chat\nload: {rate: 1}\n",
            "description: d\nkind: chat\nload: {concurrency: 0, requests: 5}\n",
            "description: d\nkind: chat\nfeatures: budgets\nload: {rate: 1, requests: 5}\n",
            "description: d\nkind: chat\nfeatures: [keys]\nload: {rate: 1, requests: 5}\n",
            "description: d\nkind: chat\nload: {rate: 1, requests: 5, burst: 3}\n",
            "description: d\nkind: chat\nload: {rate: 1, duration: 2h}\n",
        ] {
            let dir = write_case(tmp.path(), bad);
            assert!(Case::load(&dir).is_err(), "accepted: {bad}");
        }
    }
}

//! The request record: the one account of a request, filled in by the pipeline stages and
//! handed to the recorder when the request is over (success, upstream error, refusal or
//! client disconnect). Persisted as JSON; the store indexes the fields queries filter on.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use switchyard_protocol::json;

use crate::routing::Name;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Rejected before any provider was called (bad input, auth, unknown model …).
    ClientError,
    /// Every attempt failed.
    UpstreamError,
    /// A stream failed after its first byte reached the client.
    StreamError,
    /// The request ended before its answer was complete: the client went away (status 499),
    /// or the gateway's shutdown closed its connection (error code `gateway_shutdown`).
    Cancelled,
}

impl RequestRecord {
    /// A request's record as it starts: what it is and when it began, everything else empty or
    /// zero until the request fills it in.
    pub fn new(
        id: String,
        started_at_ms: i64,
        ingress: &'static str,
        endpoint: &'static str,
    ) -> Self {
        Self {
            id,
            started_at_ms,
            duration_ms: 0.0,
            ttft_ms: None,
            ingress: Cow::Borrowed(ingress),
            endpoint: Cow::Borrowed(endpoint),
            requested_model: String::new(),
            alias: None,
            deployment: None,
            provider: None,
            stream: false,
            status: 0,
            outcome: Outcome::ClientError,
            error_code: None,
            error_message: None,
            caller: Caller::default(),
            customer: None,
            tags: Map::new(),
            decision: None,
            route_decision: None,
            attempts: Vec::new(),
            tokens: None,
            cost_nanos: None,
            prompt: None,
            response: None,
            mask_pending: false,
            queued_bytes: 0,
            trace: None,
            response_model: None,
            finish_reason: None,
            more_finish_reasons: Vec::new(),
            sampling: None,
            response_id: None,
            cache_hit: false,
            config_name: None,
            config_version: None,
            experiment_id: None,
            variant: None,
            assignment: None,
            session_id: None,
        }
    }

    /// Bytes of prompt and response text the record carries.
    pub fn content_bytes(&self) -> usize {
        let prompt = self
            .prompt
            .iter()
            .flatten()
            .map(|m| m.content.len())
            .sum::<usize>();
        prompt + self.response.as_ref().map_or(0, String::len)
    }

    /// The record as JSON text, as the store and the spill file keep it: byte for byte what
    /// `serde_json` writes from the derived `Serialize` (same field order, escapes and number
    /// forms), written straight into one buffer. serde_json escaped every key and string
    /// through a byte-by-byte loop and a write call per piece, most of a record's serialization.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(self.json_capacity());
        self.write_json(&mut out, None);
        // Only text and JSON written from text went in: never fails.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`to_json`](Self::to_json) with its long texts left out: each prompt message's content
    /// and the response whose JSON string (quotes included) is `min_bytes` or longer is not
    /// written, and comes back as its text with the place in the JSON where its string goes, in
    /// order. A store may keep such a text once for every record that carries it, and finds it
    /// by its text: a text it keeps already is never escaped again.
    pub fn to_json_apart(&self, min_bytes: usize) -> (String, Vec<TextApart<'_>>) {
        let mut apart = Apart {
            min_bytes,
            texts: Vec::new(),
        };
        let mut out = Vec::with_capacity(self.json_capacity_apart(min_bytes));
        self.write_json(&mut out, Some(&mut apart));
        (String::from_utf8(out).unwrap_or_default(), apart.texts)
    }

    /// Room for the whole JSON, so that it is written without growing: the fixed fields (names,
    /// ids, numbers and keys) come to well under a kilobyte.
    fn json_capacity(&self) -> usize {
        self.json_capacity_apart(usize::MAX)
    }

    /// [`json_capacity`](Self::json_capacity) without the texts surely left out (see
    /// [`to_json_apart`](Self::to_json_apart)).
    fn json_capacity_apart(&self, min_bytes: usize) -> usize {
        let decision = self.decision.as_ref().map_or(0, |d| d.text().len());
        let written = |text: &str| {
            if surely_apart(text, min_bytes) {
                0
            } else {
                text.len()
            }
        };
        let prompt: usize = self
            .prompt
            .iter()
            .flatten()
            .map(|m| written(&m.content))
            .sum();
        let response = self.response.as_deref().map_or(0, written);
        1024 + prompt + response + decision + 192 * self.attempts.len()
    }

    fn write_json<'a>(&'a self, out: &mut Vec<u8>, mut texts: Option<&mut Apart<'a>>) {
        out.extend_from_slice(b"{\"id\":");
        json::write_str(out, &self.id);
        number_field(out, b",\"started_at_ms\":", self.started_at_ms);
        number_field(out, b",\"duration_ms\":", self.duration_ms);
        if let Some(ttft) = self.ttft_ms {
            number_field(out, b",\"ttft_ms\":", ttft);
        }
        str_field(out, b",\"ingress\":", &self.ingress);
        str_field(out, b",\"endpoint\":", &self.endpoint);
        str_field(out, b",\"requested_model\":", &self.requested_model);
        optional_str(out, b",\"alias\":", &self.alias);
        optional_str(out, b",\"deployment\":", &self.deployment);
        optional_str(out, b",\"provider\":", &self.provider);
        bool_field(out, b",\"stream\":", self.stream);
        number_field(out, b",\"status\":", self.status);
        str_field(out, b",\"outcome\":", self.outcome.as_str());
        optional_str(out, b",\"error_code\":", &self.error_code);
        optional_str(out, b",\"error_message\":", &self.error_message);
        out.extend_from_slice(b",\"caller\":");
        self.caller.write_json(out);
        optional_str(out, b",\"customer\":", &self.customer);
        if !self.tags.is_empty() {
            out.extend_from_slice(b",\"tags\":");
            // Writing a `Value` into a vector cannot fail: its keys are strings, its numbers
            // finite.
            let _ = json::write_object(out, &self.tags);
        }
        if let Some(decision) = &self.decision {
            out.extend_from_slice(b",\"decision\":");
            out.extend_from_slice(decision.text().as_bytes());
        }
        out.extend_from_slice(b",\"attempts\":[");
        for (i, attempt) in self.attempts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            attempt.write_json(out);
        }
        out.push(b']');
        if let Some(tokens) = &self.tokens {
            out.extend_from_slice(b",\"tokens\":");
            tokens.write_json(out);
        }
        if let Some(cost) = self.cost_nanos {
            number_field(out, b",\"cost_nanos\":", cost);
        }
        if let Some(prompt) = &self.prompt {
            out.extend_from_slice(b",\"prompt\":[");
            for (i, message) in prompt.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                str_field(out, b"{\"role\":", &message.role);
                text_field(
                    out,
                    b",\"content\":",
                    &message.content,
                    texts.as_deref_mut(),
                );
                out.push(b'}');
            }
            out.push(b']');
        }
        if let Some(response) = &self.response {
            text_field(out, b",\"response\":", response, texts);
        }
        if let Some(trace) = &self.trace {
            str_field(out, b",\"trace\":{\"trace_id\":", &trace.trace_id);
            optional_str(out, b",\"parent_span_id\":", &trace.parent_span_id);
            bool_field(out, b",\"sampled\":", trace.sampled);
            optional_str(out, b",\"trace_state\":", &trace.trace_state);
            out.push(b'}');
        }
        optional_str(out, b",\"response_model\":", &self.response_model);
        optional_str(out, b",\"finish_reason\":", &self.finish_reason);
        if self.cache_hit {
            bool_field(out, b",\"cache_hit\":", true);
        }
        optional_str(out, b",\"config_name\":", &self.config_name);
        if let Some(version) = self.config_version {
            number_field(out, b",\"config_version\":", version);
        }
        optional_str(out, b",\"experiment_id\":", &self.experiment_id);
        optional_str(out, b",\"variant\":", &self.variant);
        optional_str(out, b",\"assignment\":", &self.assignment);
        optional_str(out, b",\"session_id\":", &self.session_id);
        out.push(b'}');
    }
}

impl Caller {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (key, value) in [
            ("key_id", &self.key_id),
            ("key_name", &self.key_name),
            ("team", &self.team),
            ("org", &self.org),
        ] {
            if let Some(value) = value {
                if !first {
                    out.push(b',');
                }
                first = false;
                json::write_str(out, key);
                out.push(b':');
                json::write_str(out, value);
            }
        }
        out.push(b'}');
    }
}

impl AttemptRecord {
    fn write_json(&self, out: &mut Vec<u8>) {
        str_field(out, b"{\"alias\":", &self.alias);
        str_field(out, b",\"deployment\":", &self.deployment);
        str_field(out, b",\"provider\":", &self.provider);
        if let Some(status) = self.status {
            number_field(out, b",\"status\":", status);
        }
        optional_str(out, b",\"error_class\":", &self.error_class);
        optional_str(out, b",\"error_message\":", &self.error_message);
        if let Some(offset) = self.offset_ms {
            number_field(out, b",\"offset_ms\":", offset);
        }
        number_field(out, b",\"latency_ms\":", self.latency_ms);
        bool_field(out, b",\"retry\":", self.retry);
        bool_field(out, b",\"hedged\":", self.hedged);
        bool_field(out, b",\"cancelled\":", self.cancelled);
        bool_field(out, b",\"fell_back\":", self.fell_back);
        out.push(b'}');
    }
}

impl TokenCounts {
    fn write_json(&self, out: &mut Vec<u8>) {
        number_field(out, b"{\"input\":", self.input);
        number_field(out, b",\"output\":", self.output);
        number_field(out, b",\"cache_read\":", self.cache_read);
        number_field(out, b",\"cache_write\":", self.cache_write);
        number_field(out, b",\"cache_write_1h\":", self.cache_write_1h);
        number_field(out, b",\"reasoning\":", self.reasoning);
        bool_field(out, b",\"estimated\":", self.estimated);
        out.push(b'}');
    }
}

// Each field writer takes its key with the separator before it and the colon after it, as
// constant bytes: `b",\"name\":"`.

fn str_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    json::write_str(out, value);
}

/// A long text [`RequestRecord::to_json_apart`] left out of a record's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextApart<'a> {
    /// Where its JSON string goes in the JSON written.
    pub place: usize,
    pub text: &'a str,
}

/// The long texts left out of a record's JSON as it is written.
struct Apart<'a> {
    min_bytes: usize,
    texts: Vec<TextApart<'a>>,
}

/// Whether `text`'s JSON string is `min_bytes` or longer whatever its escapes: it is at least
/// the text and two quotes.
fn surely_apart(text: &str, min_bytes: usize) -> bool {
    text.len().saturating_add(2) >= min_bytes
}

/// A prompt's or response's text, left out when long. A text short of the bound by its own
/// length may still reach it by its escapes: written to see, then taken back out.
fn text_field<'a>(out: &mut Vec<u8>, key: &[u8], value: &'a str, texts: Option<&mut Apart<'a>>) {
    out.extend_from_slice(key);
    let start = out.len();
    let Some(texts) = texts else {
        json::write_str(out, value);
        return;
    };
    if !surely_apart(value, texts.min_bytes) {
        json::write_str(out, value);
        if out.len() - start < texts.min_bytes {
            return;
        }
        out.truncate(start);
    }
    texts.texts.push(TextApart {
        place: start,
        text: value,
    });
}

/// The field when there is a value.
fn optional_str(out: &mut Vec<u8>, key: &[u8], value: &Option<impl AsRef<str>>) {
    if let Some(value) = value {
        str_field(out, key, value.as_ref());
    }
}

fn bool_field(out: &mut Vec<u8>, key: &[u8], value: bool) {
    out.extend_from_slice(key);
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// A number as serde_json writes it (a float that is not finite as `null`).
fn number_field(out: &mut Vec<u8>, key: &[u8], value: impl Serialize) {
    out.extend_from_slice(key);
    // Writing a number into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::UpstreamError,
        Outcome::StreamError,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::StreamError => "stream_error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AttemptRecord {
    pub alias: Name,
    pub deployment: Name,
    pub provider: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// What the provider (or the gateway, for a timeout or a broken connection) said, masked;
    /// never a provider's text about the gateway's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When it started, in milliseconds after the request did (its trace span is laid there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<f64>,
    pub latency_ms: f64,
    pub retry: bool,
    pub hedged: bool,
    pub cancelled: bool,
    pub fell_back: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Of `cache_write`, the writes to a cache that lives an hour (billed higher).
    #[serde(default)]
    pub cache_write_1h: u64,
    pub reasoning: u64,
    /// The provider reported no usage; these counts are the gateway's estimate.
    pub estimated: bool,
}

/// Who called. Until virtual keys exist every caller is the master key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Caller {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<Name>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    /// Time-ordered (UUIDv7, simple form).
    pub id: String,
    /// Unix milliseconds when the request arrived.
    pub started_at_ms: i64,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// `openai` or `anthropic`.
    pub ingress: Cow<'static, str>,
    /// `chat` or `embeddings`.
    pub endpoint: Cow<'static, str>,
    pub requested_model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Name>,
    pub stream: bool,
    pub status: u16,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub caller: Caller,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Request metadata (OpenAI `metadata`), used as tags.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    /// The route decision: candidates, rule, strategy, scores, skipped deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionJson>,
    /// The decision itself, as routing made it: the record writer writes it out as `decision`,
    /// and exporters in this process read it rather than parse that text back. Absent in
    /// records read back from the store or the spill file.
    #[serde(skip)]
    pub route_decision: Option<Box<crate::routing::RouteDecision>>,
    pub attempts: Vec<AttemptRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenCounts>,
    /// Cost in nano-dollars (10⁻⁹ USD), when the deployment's price is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<i64>,
    /// Prompt and response as stored under the content setting (`masked` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Vec<PromptMessage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Prompt and response still need masking: done by the record writer, off the hot path,
    /// before any observer or the store sees them.
    #[serde(skip)]
    pub mask_pending: bool,
    /// Bytes this record was counted for in the recorder's queue (see `Recorder::record`).
    #[serde(skip)]
    pub queued_bytes: usize,
    /// The W3C trace the request belongs to: the caller's (`traceparent`) or a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<super::trace_context::TraceContext>,
    /// The model that answered, as the provider named it (not known for streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// Why the model stopped, in OpenAI's vocabulary (not known for streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// A word of the OpenAI vocabulary, borrowed when the gateway wrote it.
    pub finish_reason: Option<Cow<'static, str>>,
    /// Why each further choice stopped, when the request asked for several (spans list them
    /// after `finish_reason`); not stored.
    #[serde(skip)]
    pub more_finish_reasons: Vec<&'static str>,
    /// The request's sampling settings, for the spans' `gen_ai.request.*` attributes: set only
    /// when records become spans, and not stored.
    #[serde(skip)]
    pub sampling: Option<Box<Sampling>>,
    /// The provider's id of a whole answer (`gen_ai.response.id`): set only when records
    /// become spans, and not stored.
    #[serde(skip)]
    pub response_id: Option<String>,
    /// Answered from the exact response cache, without a provider call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_hit: bool,
    /// The configuration version that shaped the request (`x-switchyard-config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u32>,
    /// The experiment that chose the version, and the variant it assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How the variant was assigned: `customer`, `key`, `session`, `request`, or
    /// `request (no customer)` when the experiment's unit was missing; `not_allowed` when the
    /// caller may not use the variant's model and got the default version instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// The `x-switchyard-session-id` header (feedback may target a session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// The sampling settings a request gave (those it left out are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub seed: Option<i64>,
    pub stop_sequences: Vec<String>,
    /// Answers asked for (`n`).
    pub choices: Option<u32>,
    /// `text` or `json`, when the request named a response format.
    pub output_type: Option<&'static str>,
}

impl Sampling {
    /// The settings `request` gave, `None` when it gave none.
    pub fn of(request: &switchyard_protocol::canonical::ChatRequest) -> Option<Box<Self>> {
        let sampling = Self {
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            frequency_penalty: request.frequency_penalty,
            presence_penalty: request.presence_penalty,
            seed: request.seed,
            stop_sequences: request.stop.clone(),
            choices: request.n,
            output_type: request.response_format.as_ref().map(|format| match format {
                switchyard_protocol::canonical::ResponseFormat::Text => "text",
                _ => "json",
            }),
        };
        (sampling != Self::default()).then(|| Box::new(sampling))
    }
}

/// One prompt message as a record keeps it: the role, and the text of its parts together (an
/// image or a tool call as a short note), capped and masked as the content setting says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: Cow<'static, str>,
    pub content: String,
}

/// A route decision as JSON text. The record writer writes it straight from the decision (no
/// tree of values in between), and the store and the admin API carry the text as it is; what
/// reads its fields parses a [`DecisionSummary`] from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DecisionJson(Box<RawValue>);

impl PartialEq for DecisionJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl DecisionJson {
    /// The decision (or any value of the same shape) as JSON text.
    pub fn of<T: Serialize + ?Sized>(decision: &T) -> Option<Self> {
        serde_json::value::to_raw_value(decision).ok().map(Self)
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The fields records show of a decision; empty for text of another shape.
    pub fn summary(&self) -> DecisionSummary<'_> {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl<'a> DecisionSummary<'a> {
    /// The same fields borrowed from the decision itself, for a record that still carries it.
    pub fn of(decision: &'a crate::routing::RouteDecision) -> Self {
        let named = |deployment: &'a str, reason: Option<&'a str>| DeploymentNamed {
            deployment: Cow::Borrowed(deployment),
            reason: reason.map(Cow::Borrowed),
        };
        Self {
            strategy: Some(Cow::Borrowed(decision.strategy)),
            rule: decision.rule.as_deref().map(Cow::Borrowed),
            candidates: (decision.candidates.iter())
                .map(|c| named(&c.deployment, None))
                .collect(),
            skipped: (decision.skipped.iter())
                .map(|s| named(&s.deployment, Some(&s.reason)))
                .collect(),
            fallbacks: decision
                .fallbacks
                .iter()
                .map(|f| Cow::Borrowed(&**f))
                .collect(),
        }
    }
}

/// What spans and the command line show of a route decision, borrowed from its text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecisionSummary<'a> {
    #[serde(borrow)]
    pub strategy: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub rule: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub candidates: Vec<DeploymentNamed<'a>>,
    #[serde(borrow)]
    pub skipped: Vec<DeploymentNamed<'a>>,
    #[serde(borrow)]
    pub fallbacks: Vec<Cow<'a, str>>,
}

/// A candidate or skipped deployment of a [`DecisionSummary`]; `reason` only for skipped ones.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeploymentNamed<'a> {
    #[serde(borrow)]
    pub deployment: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{RouteDecision, ScoredCandidate, SkippedDeployment};
    use crate::telemetry::TraceContext;

    fn decision() -> RouteDecision {
        let candidate = |deployment: &str| ScoredCandidate {
            alias: "smart".into(),
            deployment: deployment.into(),
            score: Some(0.5),
            cooling: false,
        };
        RouteDecision {
            requested: "smart".into(),
            alias: "smart".into(),
            rule: Some("code \"tasks\"".into()),
            strategy: "lowest_latency",
            candidates: vec![candidate("p/a"), candidate("p/b")],
            skipped: vec![SkippedDeployment {
                alias: "smart".into(),
                deployment: "p/c".into(),
                reason: "no tools".into(),
            }],
            fallbacks: vec!["backup".into()],
        }
    }

    /// A record with every optional field set, its strings full of what JSON escapes.
    fn full_record() -> RequestRecord {
        let odd = "q\"b\\s/\n\r\t\u{1}\u{1f}\u{7f} é 日本 🎉 </script>";
        let mut tags = Map::new();
        tags.insert("team \"x\"".into(), Value::from(odd));
        tags.insert(
            "n".into(),
            serde_json::json!([1, 2.5, -3, null, true, {"k": "v"}]),
        );
        RequestRecord {
            id: "0193a1b2c3d4e5f60718293a4b5c6d7e".into(),
            started_at_ms: 1_733_000_000_123,
            duration_ms: 12.345_678_9,
            ttft_ms: Some(0.000_1),
            ingress: "anthropic".into(),
            endpoint: Cow::Owned("chat".into()),
            requested_model: format!("smart{odd}"),
            alias: Some("smart".into()),
            deployment: Some("openai/gpt-4o-mini".into()),
            provider: Some("openai".into()),
            stream: true,
            status: 502,
            outcome: Outcome::UpstreamError,
            error_code: Some("upstream_timeout".into()),
            error_message: Some(odd.into()),
            caller: Caller {
                key_id: Some("key_1".into()),
                key_name: Some(odd.into()),
                team: Some("t".into()),
                org: Some("o".into()),
            },
            customer: Some("cust".into()),
            tags,
            decision: DecisionJson::of(&decision()),
            route_decision: None,
            attempts: vec![
                AttemptRecord {
                    alias: "smart".into(),
                    deployment: "openai/gpt-4o-mini".into(),
                    provider: "openai".into(),
                    status: Some(429),
                    error_class: Some("rate_limited".into()),
                    error_message: Some(odd.into()),
                    offset_ms: Some(0.25),
                    latency_ms: 1e-7,
                    retry: false,
                    hedged: true,
                    cancelled: false,
                    fell_back: true,
                },
                AttemptRecord {
                    latency_ms: 1.5e300,
                    retry: true,
                    cancelled: true,
                    ..AttemptRecord::default()
                },
            ],
            tokens: Some(TokenCounts {
                input: u64::MAX,
                output: 0,
                cache_read: 7,
                cache_write: 8,
                cache_write_1h: 3,
                reasoning: 9,
                estimated: true,
            }),
            cost_nanos: Some(-42),
            prompt: Some(vec![
                PromptMessage {
                    role: "system".into(),
                    content: odd.into(),
                },
                PromptMessage {
                    role: Cow::Owned("user".into()),
                    content: String::new(),
                },
            ]),
            response: Some(odd.repeat(3)),
            mask_pending: true,
            queued_bytes: 99,
            trace: Some(TraceContext {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                parent_span_id: Some("00f067aa0ba902b7".into()),
                sampled: false,
                trace_state: Some(odd.into()),
            }),
            response_model: Some("gpt-4o-mini-2024-07-18".into()),
            finish_reason: Some("tool_calls".into()),
            more_finish_reasons: Vec::new(),
            sampling: None,
            response_id: None,
            cache_hit: true,
            config_name: Some("support".into()),
            config_version: Some(u32::MAX),
            experiment_id: Some("exp".into()),
            variant: Some("b".into()),
            assignment: Some("request (no customer)".into()),
            session_id: Some(odd.into()),
        }
    }

    /// The record's own writer writes what serde's derive writes, for every shape a record
    /// takes: each optional field set or not, each outcome, floats of every form (and `null`
    /// for the ones JSON cannot hold), strings that need every kind of escape.
    #[test]
    fn record_json_is_what_serde_writes() {
        let full = full_record();
        let mut cases = vec![full.clone()];
        let mut bare: RequestRecord = serde_json::from_str(
            r#"{"id": "r1", "started_at_ms": -1, "duration_ms": 0.0, "ingress": "openai",
                "endpoint": "embeddings", "requested_model": "", "stream": false, "status": 0,
                "outcome": "success", "caller": {}, "attempts": []}"#,
        )
        .unwrap();
        cases.push(bare.clone());
        for outcome in [
            Outcome::ClientError,
            Outcome::StreamError,
            Outcome::Cancelled,
        ] {
            bare.outcome = outcome;
            cases.push(bare.clone());
        }
        bare.duration_ms = f64::NAN;
        bare.ttft_ms = Some(f64::INFINITY);
        cases.push(bare.clone());
        // Each caller field alone (the commas between them).
        for field in 0..4 {
            let mut r = bare.clone();
            let value = Some(format!("c{field}").into());
            match field {
                0 => r.caller.key_id = value,
                1 => r.caller.key_name = value,
                2 => r.caller.team = value,
                _ => r.caller.org = value,
            }
            cases.push(r);
        }
        let mut partial = full.clone();
        partial.trace.as_mut().unwrap().parent_span_id = None;
        partial.trace.as_mut().unwrap().sampled = true;
        partial.prompt = Some(Vec::new());
        partial.tokens.as_mut().unwrap().estimated = false;
        partial.stream = false;
        partial.decision = None;
        cases.push(partial);
        for record in &cases {
            let expected = serde_json::to_string(record).unwrap();
            assert_eq!(record.to_json(), expected);
        }
        // And it reads back as the record it was written from.
        let back: RequestRecord = serde_json::from_str(&full.to_json()).unwrap();
        assert_eq!(back.response, full.response);
        assert_eq!(back.tags, full.tags);
    }

    /// What spans and the command line read from a decision's text is what was decided, names
    /// with escapes included.
    #[test]
    fn a_decision_reads_back_from_its_text() {
        let json = DecisionJson::of(&decision()).unwrap();
        let d = json.summary();
        assert_eq!(d.strategy.as_deref(), Some("lowest_latency"));
        assert_eq!(d.rule.as_deref(), Some("code \"tasks\""));
        let candidates: Vec<&str> = d.candidates.iter().map(|c| &*c.deployment).collect();
        assert_eq!(candidates, ["p/a", "p/b"]);
        assert_eq!(d.skipped[0].deployment, "p/c");
        assert_eq!(d.skipped[0].reason.as_deref(), Some("no tools"));
        assert_eq!(d.fallbacks, ["backup"]);
        // The text is the decision's JSON, carried as it is inside a record's.
        let value: Value = serde_json::from_str(json.text()).unwrap();
        assert_eq!(value, serde_json::to_value(decision()).unwrap());
    }

    /// A record with a decision and a prompt goes to text and back unchanged (store, spill file,
    /// admin API), the prompt as `[{"role", "content"}]`.
    #[test]
    fn a_record_keeps_its_decision_and_prompt_through_text() {
        let mut record: RequestRecord = serde_json::from_str(
            r#"{"id": "r1", "started_at_ms": 1, "duration_ms": 2.0, "ingress": "openai",
                "endpoint": "chat", "requested_model": "smart", "stream": false, "status": 200,
                "outcome": "success", "caller": {}, "attempts": []}"#,
        )
        .unwrap();
        record.decision = DecisionJson::of(&decision());
        record.prompt = Some(vec![PromptMessage {
            role: "user".into(),
            content: "hi <EMAIL>".into(),
        }]);
        let text = serde_json::to_string(&record).unwrap();
        let back: RequestRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["decision"]["skipped"][0]["reason"], "no tools");
        assert_eq!(
            value["prompt"],
            serde_json::json!([{"role": "user", "content": "hi <EMAIL>"}])
        );
    }
}

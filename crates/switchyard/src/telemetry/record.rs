//! The request record: the one account of a request, filled in by the pipeline stages and
//! handed to the recorder when the request is over (success, upstream error, refusal or
//! client disconnect). Persisted as JSON; the store indexes the fields queries filter on.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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
    /// The client went away before the answer was complete.
    Cancelled,
}

impl RequestRecord {
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
}

impl Outcome {
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
    pub alias: String,
    pub deployment: String,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
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
    pub reasoning: u64,
    /// The provider reported no usage; these counts are the gateway's estimate.
    pub estimated: bool,
}

/// Who called. Until virtual keys exist every caller is the master key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Caller {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
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
    pub alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
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
    /// The decision itself until the record writer writes it out as `decision`.
    #[serde(skip)]
    pub pending_decision: Option<Box<crate::routing::RouteDecision>>,
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

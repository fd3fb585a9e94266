//! Simulator configuration: latency, auth, reply size, embedding size and the fault rules the
//! server starts with. Read from YAML by the binary, built in code by tests.

use serde::{Deserialize, Serialize};

use crate::fault::FaultSpec;

/// Words in a plain reply when the request sets no lower output limit.
pub const DEFAULT_REPLY_WORDS: u32 = 12;
/// Vector length of simulated embeddings when the request asks for none.
pub const DEFAULT_EMBEDDING_DIMENSIONS: u32 = 16;
/// Requests kept in the stats log; older ones are dropped first.
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;

/// How the simulator behaves. `Default` is a zero-latency, auth-checking server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Delay before the response starts (headers and first body byte), in milliseconds.
    pub ttft_ms: u64,
    /// Delay between stream chunks, in milliseconds; a non-streamed reply waits this long per
    /// output token on top of `ttft_ms`.
    pub token_ms: u64,
    /// Check each provider's credential header (any non-empty value passes, unless
    /// `api_keys` lists the accepted ones).
    pub require_auth: bool,
    /// When not empty, the only credentials accepted; any other gets 401.
    pub api_keys: Vec<String>,
    /// Words in a plain text reply before `max_tokens` or stop sequences cut it.
    pub reply_words: u32,
    /// Embedding length when the request does not ask for one.
    pub embedding_dimensions: u32,
    /// Model ids listed by `GET /v1/models`.
    pub models: Vec<String>,
    /// Entries kept in the per-request stats log.
    pub log_capacity: usize,
    /// Fault rules in force at start; runtime rules are added to the same list.
    pub faults: Vec<FaultRule>,
    /// Scripted replies: the first rule that matches a chat request replaces its generated text.
    pub replies: Vec<ReplyRule>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            ttft_ms: 0,
            token_ms: 0,
            require_auth: true,
            api_keys: Vec::new(),
            reply_words: DEFAULT_REPLY_WORDS,
            embedding_dimensions: DEFAULT_EMBEDDING_DIMENSIONS,
            models: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
                .into_iter()
                .map(String::from)
                .collect(),
            log_capacity: DEFAULT_LOG_CAPACITY,
            faults: Vec::new(),
            replies: Vec::new(),
        }
    }
}

/// A canned text reply for chat requests whose model matches `model` (a glob with `*` and `?`)
/// and, when `prompt_contains` is set, whose last user message contains that text. In `reply`,
/// `{prompt}` stands for the last user message, so `reply: "{prompt}"` echoes it; `{images}`
/// stands for its images (data URIs or URLs) and `{documents}` for its documents (an inline one
/// as `<media type>:<decoded bytes>`, one by URL as its URL, an OpenAI file id as
/// `file_id:<id>`), each list space-separated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_contains: Option<String>,
    pub reply: String,
}

impl ReplyRule {
    /// Replies `reply` to every chat request for models matching `model`.
    pub fn new(model: impl Into<String>, reply: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt_contains: None,
            reply: reply.into(),
        }
    }

    /// Only when the last user message contains `text`.
    pub fn when_prompt_contains(mut self, text: impl Into<String>) -> Self {
        self.prompt_contains = Some(text.into());
        self
    }
}

/// A fault applied to requests whose model matches `model` (a glob with `*` and `?`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Model glob, e.g. `gpt-4o*` or `*`.
    pub model: String,
    /// What to do; see the crate documentation for the grammar.
    pub fault: FaultSpec,
    /// Number of requests the rule applies to before it expires; `None` means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

impl FaultRule {
    /// A rule for every request to models matching `model`.
    pub fn new(model: impl Into<String>, fault: FaultSpec) -> Self {
        Self {
            model: model.into(),
            fault,
            times: None,
        }
    }

    /// Limits the rule to the next `times` matching requests.
    pub fn times(mut self, times: u64) -> Self {
        self.times = Some(times);
        self
    }
}

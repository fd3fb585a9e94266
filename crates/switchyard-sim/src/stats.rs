//! What reached the simulator: request counts per endpoint and model, tokens served, and a
//! bounded per-request log. Counters are atomics; one mutex guards the per-model map and the
//! log together, so a request takes it once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The provider API a request spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

impl Api {
    const ALL: [Api; 5] = [
        Api::OpenAi,
        Api::Azure,
        Api::Anthropic,
        Api::Gemini,
        Api::Bedrock,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Azure => "azure",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
            Api::Bedrock => "bedrock",
        }
    }
}

/// The kind of endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Embeddings,
    Models,
    CountTokens,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::Chat,
        Endpoint::Embeddings,
        Endpoint::Models,
        Endpoint::CountTokens,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// One request as the simulator answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Model from the body, the Azure deployment or the Gemini or Bedrock path (decoded); empty
    /// when unknown.
    pub model: String,
    /// `openai`, `azure`, `anthropic`, `gemini` or `bedrock`.
    pub provider_kind: String,
    /// `chat`, `embeddings`, `models` or `count_tokens`.
    pub endpoint: String,
    pub stream: bool,
    /// HTTP status sent; 0 when no response was sent (`hang`, `reset`).
    pub status: u16,
    pub input_tokens: u64,
    /// Output tokens actually sent (a cut stream counts only the chunks that went out).
    pub output_tokens: u64,
    /// The fault applied, in spec form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Anthropic: the request's `anthropic-version` and `anthropic-beta` headers, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_beta: Option<String>,
}

/// `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Requests received on provider endpoints.
    pub requests: u64,
    /// Requests per `<provider_kind>_<endpoint>`, e.g. `anthropic_chat`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Requests per model.
    pub by_model: BTreeMap<String, u64>,
    /// Input tokens of requests answered with 200.
    pub input_tokens: u64,
    /// Output tokens sent.
    pub output_tokens: u64,
    /// Requests that had a fault applied.
    pub faults_injected: u64,
    /// The most recent requests, oldest first.
    pub log: Vec<LogEntry>,
}

struct Shared {
    by_model: HashMap<String, u64>,
    log: VecDeque<LogEntry>,
}

pub(crate) struct Stats {
    by_endpoint: [AtomicU64; Api::ALL.len() * Endpoint::ALL.len()],
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    faults: AtomicU64,
    capacity: usize,
    shared: Mutex<Shared>,
}

fn slot(api: Api, endpoint: Endpoint) -> usize {
    api as usize * Endpoint::ALL.len() + endpoint as usize
}

impl Stats {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            by_endpoint: std::array::from_fn(|_| AtomicU64::new(0)),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            capacity,
            shared: Mutex::new(Shared {
                by_model: HashMap::new(),
                log: VecDeque::new(),
            }),
        }
    }

    pub(crate) fn record(&self, api: Api, endpoint: Endpoint, entry: LogEntry) {
        self.by_endpoint[slot(api, endpoint)].fetch_add(1, Ordering::Relaxed);
        if entry.status == 200 {
            self.input_tokens
                .fetch_add(entry.input_tokens, Ordering::Relaxed);
        }
        self.output_tokens
            .fetch_add(entry.output_tokens, Ordering::Relaxed);
        if entry.fault.is_some() {
            self.faults.fetch_add(1, Ordering::Relaxed);
        }
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match shared.by_model.get_mut(entry.model.as_str()) {
            Some(n) => *n += 1,
            None => {
                shared.by_model.insert(entry.model.clone(), 1);
            }
        }
        if self.capacity == 0 {
            return;
        }
        if shared.log.len() == self.capacity {
            shared.log.pop_front();
        }
        shared.log.push_back(entry);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut by_endpoint = BTreeMap::new();
        let mut requests = 0;
        for api in Api::ALL {
            for endpoint in Endpoint::ALL {
                let n = self.by_endpoint[slot(api, endpoint)].load(Ordering::Relaxed);
                requests += n;
                if n > 0 {
                    by_endpoint.insert(format!("{}_{}", api.as_str(), endpoint.as_str()), n);
                }
            }
        }
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        StatsSnapshot {
            requests,
            by_endpoint,
            by_model: shared
                .by_model
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            faults_injected: self.faults.load(Ordering::Relaxed),
            log: shared.log.iter().cloned().collect(),
        }
    }

    pub(crate) fn reset(&self) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for c in &self.by_endpoint {
            c.store(0, Ordering::Relaxed);
        }
        self.input_tokens.store(0, Ordering::Relaxed);
        self.output_tokens.store(0, Ordering::Relaxed);
        self.faults.store(0, Ordering::Relaxed);
        shared.by_model.clear();
        shared.log.clear();
    }
}

use super::request::{ContentPart, Extras};

/// Token counts of one exchange, in OpenAI's convention: `input_tokens` includes cached-read and
/// cache-write tokens, `output_tokens` includes reasoning tokens. Dialects whose wire counts are
/// disjoint (Anthropic, Gemini) convert at their boundary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written to a cache that lives an hour (Anthropic's
    /// `ttl: "1h"`), which are billed higher than the default five minutes' writes.
    pub cache_write_1h_tokens: u64,
    pub reasoning_tokens: u64,
    /// Web searches the provider ran itself and bills per search (Anthropic's web search
    /// server tool, `server_tool_use.web_search_requests`).
    pub web_search_requests: u64,
    /// Pages the provider fetched itself (Anthropic's web fetch server tool), billed as the
    /// input tokens they add, not per fetch.
    pub web_fetch_requests: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Input tokens that were neither read from nor written to a prompt cache.
    pub fn uncached_input(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// Folds a later (possibly partial) report into this one: non-zero fields win.
    pub fn merge(&mut self, later: &Usage) {
        if later.input_tokens != 0 {
            self.input_tokens = later.input_tokens;
        }
        if later.output_tokens != 0 {
            self.output_tokens = later.output_tokens;
        }
        if later.cache_read_tokens != 0 {
            self.cache_read_tokens = later.cache_read_tokens;
        }
        if later.cache_write_tokens != 0 {
            self.cache_write_tokens = later.cache_write_tokens;
        }
        if later.cache_write_1h_tokens != 0 {
            self.cache_write_1h_tokens = later.cache_write_1h_tokens;
        }
        if later.reasoning_tokens != 0 {
            self.reasoning_tokens = later.reasoning_tokens;
        }
        if later.web_search_requests != 0 {
            self.web_search_requests = later.web_search_requests;
        }
        if later.web_fetch_requests != 0 {
            self.web_fetch_requests = later.web_fetch_requests;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    /// Stopped on one of the request's stop sequences (Anthropic reports which).
    StopSequence(Option<String>),
    Length,
    ToolCalls,
    ContentFilter,
    /// A provider reason with no equivalent elsewhere (e.g. Anthropic `pause_turn`), kept verbatim.
    Other(String),
}

impl FinishReason {
    /// The OpenAI `finish_reason` vocabulary.
    pub fn as_openai(&self) -> &'static str {
        match self {
            FinishReason::Other(other) if other == "model_context_window_exceeded" => "length",
            FinishReason::Stop | FinishReason::StopSequence(_) | FinishReason::Other(_) => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    /// The model that answered, as the provider named it.
    pub model: String,
    /// Unix seconds.
    pub created: i64,
    /// Output in order: reasoning, text and tool calls.
    pub content: Vec<ContentPart>,
    pub finish_reason: FinishReason,
    /// `None` when the provider did not report usage (never invented).
    pub usage: Option<Usage>,
    pub extras: Extras,
    /// The further answers to the same request when the client asked for several (OpenAI `n`,
    /// Gemini `candidateCount`), in order; the answer above is the first. Usage covers all.
    pub more_choices: Vec<Choice>,
}

/// One further answer of a response that holds several: as the first's fields of those names.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub content: Vec<ContentPart>,
    pub finish_reason: FinishReason,
    pub extras: Extras,
}

impl ChatResponse {
    /// Leaves out every tool call after the first, in each answer: see
    /// [`crate::dialect::FirstToolCallOnly`].
    pub fn keep_first_tool_call(&mut self) {
        let keep = |content: &mut Vec<ContentPart>| {
            let mut calls = 0;
            content.retain(|p| {
                if matches!(p, ContentPart::ToolCall { .. }) {
                    calls += 1;
                    calls == 1
                } else {
                    true
                }
            });
        };
        keep(&mut self.content);
        for choice in &mut self.more_choices {
            keep(&mut choice.content);
        }
    }

    pub fn text(&self) -> String {
        ContentPart::concat_text(&self.content)
    }

    /// The length in bytes of [`ChatResponse::text`], without building it.
    pub fn text_len(&self) -> usize {
        self.content
            .iter()
            .map(|p| match p {
                ContentPart::Text { text, .. } => text.len(),
                _ => 0,
            })
            .sum()
    }

    /// Bytes of the answer's texts and tool calls' arguments, with some room for each call's
    /// members: a start for the capacity of its encoding, so that the output grows rarely.
    pub fn encoded_len_hint(&self) -> usize {
        self.content
            .iter()
            .map(|p| match p {
                ContentPart::Text { text, .. } => text.len(),
                ContentPart::Reasoning { text, .. } => text.len(),
                ContentPart::ToolCall { arguments, .. } => arguments.len() + 64,
                _ => 0,
            })
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingResponse {
    pub model: String,
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    pub usage: Option<Usage>,
}

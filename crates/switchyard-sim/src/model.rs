//! The simulated model, shared by every dialect: a conversation summary in, a deterministic
//! output out (plain text, a JSON document or tool calls), plus the helpers that make the
//! output and its token counts reproducible (schema synthesis, chunking, embeddings, ids).
//!
//! Token accounting: input tokens are `ceil(characters / 4)` over all message text; a plain
//! text reply costs one token per word; JSON text and tool-call arguments cost
//! `ceil(len / 4)` per streamed fragment, and each tool call one more for its name.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::config::ReplyRule;
use crate::fault::glob_match;

/// Characters per streamed fragment of JSON text or tool arguments.
pub(crate) const FRAGMENT_CHARS: usize = 12;

const FILLER: [&str; 12] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
];

/// User words quoted at the start of a reply.
const QUOTED_WORDS: usize = 6;

/// What the dialect parsers extract from a chat request.
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// OpenAI's `obfuscation` on stream chunks: on unless `stream_options.include_obfuscation`
    /// is false.
    pub stream_obfuscation: bool,
    /// Anthropic `thinking` enabled, or Gemini's thought summaries asked for
    /// (`includeThoughts`): the answer opens with its thinking ([`thought`]).
    pub thinking: bool,
    /// Answers asked for (OpenAI `n`, Gemini `candidateCount`); 0 reads as 1.
    pub choices: u32,
    /// OpenAI `logprobs` / `top_logprobs`: when asked for, how many likeliest tokens to list
    /// beside each token of a text answer.
    pub logprobs: Option<u8>,
    /// Text of the last user message (tool results excluded).
    pub last_user_text: String,
    /// Text of the system instructions (system and developer messages, the system prompt).
    pub system_text: String,
    /// Images of the last user message (those of its tool results included), each as a data
    /// URI (`data:<type>;base64,<data>`, as rebuilt from an inline image) or its URL: what a
    /// scripted reply's `{images}` echoes.
    pub last_user_images: Vec<String>,
    /// Documents of the last user message (those of its tool results included), each as
    /// [`inline_document`] shows inline data,
    /// `file_id:<id>` for an OpenAI file id, or its URL: what a scripted reply's `{documents}`
    /// echoes.
    pub last_user_documents: Vec<String>,
    /// Characters of all message text, system prompt, tool calls and tool results.
    pub input_chars: usize,
    /// Set when the conversation ends with tool results: their text, joined.
    pub tool_results: Option<String>,
    /// Names of the tools the assistant called earlier in the conversation, in order.
    pub called_tools: Vec<String>,
    /// Bedrock: the model's own response fields asked for
    /// (`additionalModelResponseFieldPaths`, such as Claude's `/stop_sequence`).
    pub response_field_paths: Vec<String>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub json: Option<JsonMode>,
    pub max_output_tokens: Option<u64>,
    pub stop: Vec<String>,
    /// Anthropic: the citations a text answer carries, one for each text document and search
    /// result of the last user message that has citations enabled (in the provider's own form);
    /// Bedrock: one for each text document of the request with citations enabled.
    pub citations: Vec<Value>,
    /// Bedrock: documents read so far, which a citation's `documentIndex` counts.
    pub documents_seen: usize,
    /// Anthropic: the query of the web search the answer runs first, when the request offers
    /// the web search server tool and ends with the user's words.
    pub web_search: Option<String>,
    /// Anthropic and Bedrock: the prefix up to the request's last breakpoint (`cache_control`,
    /// `cachePoint`).
    pub cache_mark: Option<CacheMark>,
    /// What the prompt cache did with that prefix, once the handler has asked it.
    pub cache: CacheUse,
    /// Bedrock: the latency its answer reports (`metrics.latencyMs`), set by the handler to the
    /// time the simulator takes: `ttft_ms` plus `token_ms` per output token.
    pub latency_ms: u64,
}

impl Conversation {
    pub(crate) fn input_tokens(&self) -> u64 {
        estimate_tokens(self.input_chars)
    }

    /// Input tokens neither read from the prompt cache nor written to it.
    pub(crate) fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens() - self.cache.read - self.cache.written
    }
}

/// A request's prefix up to a prompt-cache breakpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheMark {
    /// A hash of the model and the prefix as sent.
    pub key: u64,
    /// Input characters of the prefix.
    pub chars: usize,
    /// Cached for an hour (`ttl: "1h"`) rather than five minutes.
    pub hour: bool,
}

/// Input tokens the prompt cache served or stored for one request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CacheUse {
    pub read: u64,
    pub written: u64,
    /// The write was for an hour.
    pub hour: bool,
}

/// Prefixes written to the simulated prompt cache, with when each expires. A breakpoint's
/// prefix of at least [`MIN_CACHED_TOKENS`] is written on first sight and read while it lives
/// (each read renews it), as Anthropic's cache behaves.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    entries: std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>,
}

/// The shortest prefix the cache keeps (Claude Sonnet's and Opus's minimum).
pub(crate) const MIN_CACHED_TOKENS: u64 = 1024;

/// Entries beyond which expired ones are swept.
const CACHE_SWEEP_AT: usize = 10_000;

impl PromptCache {
    pub(crate) fn apply(&self, mark: Option<CacheMark>) -> CacheUse {
        let Some(mark) = mark else {
            return CacheUse::default();
        };
        let tokens = estimate_tokens(mark.chars);
        if tokens < MIN_CACHED_TOKENS {
            return CacheUse::default();
        }
        let now = std::time::Instant::now();
        let life = std::time::Duration::from_secs(if mark.hour { 3_600 } else { 300 });
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_SWEEP_AT {
            entries.retain(|_, expires| *expires > now);
        }
        let hit = entries.get(&mark.key).is_some_and(|expires| *expires > now);
        entries.insert(mark.key, now + life);
        if hit {
            CacheUse {
                read: tokens,
                ..CacheUse::default()
            }
        } else {
            CacheUse {
                written: tokens,
                hour: mark.hour,
                ..CacheUse::default()
            }
        }
    }
}

/// A hash of the model and a request's prefix up to a prompt-cache breakpoint: the system prompt
/// (up to the block when the breakpoint is in it), the messages before the breakpoint's and that
/// message's blocks up to it. Anthropic's and Bedrock's requests share the shape it reads (a
/// system value, messages with a `content` list).
pub(crate) fn prefix_key(
    model: &str,
    system: Option<&Value>,
    messages: &[Value],
    message: Option<usize>,
    block: usize,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut hasher);
    let blocks_to = |content: Option<&Value>| match content {
        Some(Value::Array(blocks)) => Value::from(blocks.get(..=block).unwrap_or(blocks)),
        other => other.cloned().unwrap_or(Value::Null),
    };
    match message {
        None => blocks_to(system).to_string().hash(&mut hasher),
        Some(i) => {
            system.map(Value::to_string).hash(&mut hasher);
            Value::from(&messages[..i]).to_string().hash(&mut hasher);
            blocks_to(messages[i].get("content"))
                .to_string()
                .hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[derive(Debug)]
pub(crate) struct Tool {
    pub name: String,
    pub schema: Value,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug)]
pub(crate) struct JsonMode {
    pub schema: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    StopSequence(String),
}

/// A stretch of output text sent as one stream chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub start: usize,
    pub end: usize,
    pub tokens: u32,
}

#[derive(Debug)]
pub(crate) struct ToolCall {
    pub name: String,
    pub arguments: Value,
    /// `arguments` serialised compactly.
    pub arguments_json: String,
}

impl ToolCall {
    /// Argument fragments as streamed, each with its token cost.
    pub(crate) fn fragments(&self) -> Vec<Piece> {
        fragments(&self.arguments_json)
    }

    pub(crate) fn tokens(&self) -> u64 {
        1 + self
            .fragments()
            .iter()
            .map(|p| u64::from(p.tokens))
            .sum::<u64>()
    }
}

#[derive(Debug)]
pub(crate) enum Output {
    Text {
        text: String,
        pieces: Vec<Piece>,
        finish: Finish,
    },
    ToolCalls(Vec<ToolCall>),
}

impl Output {
    pub(crate) fn tokens(&self) -> u64 {
        match self {
            Output::Text { pieces, .. } => pieces.iter().map(|p| u64::from(p.tokens)).sum(),
            Output::ToolCalls(calls) => calls.iter().map(ToolCall::tokens).sum(),
        }
    }
}

pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// How `{documents}` shows a document sent inline: `<media type>:<size in bytes>`, the size
/// that of the decoded data. `None` when the data is not base64, which the providers refuse.
pub(crate) fn inline_document(media_type: &str, base64_data: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_data)
        .ok()?;
    Some(format!("{media_type}:{}", bytes.len()))
}

/// The text of the first scripted reply rule that matches the conversation, with `{prompt}`
/// replaced by the last user message's text, `{images}` by its images and `{documents}` by its
/// documents (each list space-separated).
pub(crate) fn scripted_reply(rules: &[ReplyRule], conv: &Conversation) -> Option<String> {
    rules
        .iter()
        .find(|r| {
            glob_match(&r.model, &conv.model)
                && r.prompt_contains
                    .as_deref()
                    .is_none_or(|t| conv.last_user_text.contains(t))
        })
        .map(|r| {
            r.reply
                .replace("{prompt}", &conv.last_user_text)
                .replace("{images}", &conv.last_user_images.join(" "))
                .replace("{documents}", &conv.last_user_documents.join(" "))
        })
}

/// The least `thinking.budget_tokens` Claude takes.
const MIN_THINKING_BUDGET: u64 = 1024;

/// How a request asked Claude to think.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ThinkingMode {
    /// `enabled`, with a token budget.
    Budget,
    /// `adaptive` (Claude 4.6 and later): the model decides whether and how much to think.
    Adaptive,
}

/// What Claude checks of a request's extended thinking, on Anthropic's API and on Bedrock alike.
pub(crate) struct ClaudeThinking<'a> {
    /// The `thinking` object, if the request has one.
    pub thinking: Option<&'a Value>,
    pub model: &'a str,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_k: bool,
    /// The tool choice forces a tool.
    pub forced_tool: bool,
}

impl ClaudeThinking<'_> {
    /// Whether and how thinking is on; a budget and the settings it rules out refused in
    /// Claude's words.
    pub(crate) fn mode(&self) -> Result<Option<ThinkingMode>, String> {
        let Some(thinking) = self.thinking.filter(|t| !t.is_null()) else {
            return Ok(None);
        };
        match thinking.get("type").and_then(Value::as_str) {
            Some("disabled") => return Ok(None),
            Some("adaptive") => return Ok(Some(ThinkingMode::Adaptive)),
            Some("enabled") if thinks_only_adaptively(self.model) => {
                return Err(format!(
                    "thinking.type.enabled is not supported for {}: use thinking.type.adaptive \
                     with output_config.effort",
                    self.model
                ));
            }
            Some("enabled") => {}
            other => {
                return Err(format!(
                    "thinking: Input tag '{}' found using 'type' does not match any of the \
                     expected tags: 'adaptive', 'disabled', 'enabled'",
                    other.unwrap_or("")
                ));
            }
        }
        let budget = thinking
            .get("budget_tokens")
            .and_then(Value::as_u64)
            .ok_or("thinking.enabled.budget_tokens: Field required")?;
        if budget < MIN_THINKING_BUDGET {
            return Err(format!(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to \
                 {MIN_THINKING_BUDGET}"
            ));
        }
        if self.max_tokens.is_some_and(|max| budget >= max) {
            return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
        }
        if self.temperature.is_some_and(|t| t != 1.0) {
            return Err("`temperature` may only be set to 1 when thinking is enabled".into());
        }
        if self.top_k {
            return Err("`top_k` may not be set when thinking is enabled".into());
        }
        if self.forced_tool {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
        }
        Ok(Some(ThinkingMode::Budget))
    }
}

/// Whether a Claude model id (Anthropic's or Bedrock's) is of a version that thinks only
/// adaptively (4.7 and later): its version is the first number after `claude-` and the
/// one-digit number after it, if any.
pub(crate) fn thinks_only_adaptively(model: &str) -> bool {
    let Some((_, name)) = model.split_once("claude-") else {
        return false;
    };
    let mut numbers = name
        .split(['-', ':', '.', '@'])
        .skip_while(|part| part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()));
    let Some(major) = numbers.next().and_then(|m| m.parse::<u32>().ok()) else {
        return false;
    };
    let minor = numbers
        .next()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    (major, minor) >= (4, 7)
}

/// The thinking an answer opens with when the request asks to see it: a few words on the
/// user's last message, or on the tool results it goes on from.
pub(crate) fn thought(conv: &Conversation) -> String {
    if conv.tool_results.is_some() {
        return "The tool answered; I can reply now.".to_owned();
    }
    let asked: Vec<&str> = conv.last_user_text.split_whitespace().take(8).collect();
    format!("The user asks: {}. A short reply will do.", asked.join(" "))
}

/// Decides the reply: tool results are quoted, offered tools are called, a scripted reply
/// replaces the text (a quote of tool results included), JSON mode gets a document, anything
/// else a text reply of `reply_words` words. `variant` tells several answers to one request
/// apart: a plain text reply's filler starts that many words further on.
pub(crate) fn respond(
    conv: &Conversation,
    reply_words: u32,
    scripted: Option<&str>,
    variant: usize,
) -> Output {
    // A model told to call a tool calls one even after tool results: the one named, or else
    // one it has not called yet in the conversation (an agent's final-answer tool, say).
    let forced = !conv.tools.is_empty()
        && matches!(
            conv.tool_choice,
            ToolChoice::Required | ToolChoice::Named(_)
        );
    if let Some(results) = conv.tool_results.as_ref().filter(|_| !forced) {
        if let Some(text) = scripted {
            return limit_text(text.to_owned(), conv);
        }
        let mut words = vec!["Simulated", "reply", "from", conv.model.as_str(), "with"];
        words.extend(["tool", "result:"]);
        let quoted = format!(
            "\"{}\"",
            results.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        words.extend(quoted.split_whitespace());
        return text_output(words, conv, reply_words, variant);
    }
    if !conv.tools.is_empty() && conv.tool_choice != ToolChoice::None {
        let chosen: Vec<&Tool> = match &conv.tool_choice {
            ToolChoice::Named(name) => conv
                .tools
                .iter()
                .filter(|t| &t.name == name)
                .take(1)
                .collect(),
            _ if conv.parallel_tool_calls
                && conv.tools.len() >= 2
                && mentions_parallel(&conv.last_user_text) =>
            {
                conv.tools.iter().take(2).collect()
            }
            _ if conv.tool_results.is_some() => conv
                .tools
                .iter()
                .find(|t| !conv.called_tools.contains(&t.name))
                .or(conv.tools.first())
                .into_iter()
                .collect(),
            _ => conv.tools.iter().take(1).collect(),
        };
        // A named tool that is not offered falls back to the first one.
        let chosen = if chosen.is_empty() {
            conv.tools.iter().take(1).collect()
        } else {
            chosen
        };
        return Output::ToolCalls(
            chosen
                .into_iter()
                .map(|tool| {
                    let arguments = synthesize(&tool.schema, false);
                    ToolCall {
                        name: tool.name.clone(),
                        arguments_json: arguments.to_string(),
                        arguments,
                    }
                })
                .collect(),
        );
    }
    if let Some(text) = scripted {
        return limit_text(text.to_owned(), conv);
    }
    // JSON asked for with a format, or in words: a model then answers with a JSON object, one
    // of the JSON schema the instructions or the question spell out, if they do (clients such
    // as instructor write the schema into the prompt).
    let asked_in_words = conv.system_text.contains("JSON object")
        || ((conv.system_text.contains("JSON") || conv.last_user_text.contains("JSON"))
            && written_schema(conv).is_some());
    let json_mode = match &conv.json {
        Some(mode) => Some(mode.schema.clone().or_else(|| written_schema(conv))),
        None if asked_in_words => Some(written_schema(conv)),
        None => None,
    };
    if let Some(schema) = json_mode {
        let document = match &schema {
            Some(schema) => synthesize(schema, true),
            None => json!({ "model": conv.model, "reply": reply_words_text(conv, reply_words) }),
        };
        let mut text = document.to_string();
        let mut pieces = fragments(&text);
        // Cut at the output limit as any answer is: JSON that does not close, as a model's.
        let mut finish = Finish::Stop;
        if let Some(max) = conv.max_output_tokens {
            let mut used = 0u64;
            let kept = pieces
                .iter()
                .take_while(|p| {
                    used += u64::from(p.tokens);
                    used <= max
                })
                .count();
            if kept < pieces.len() {
                pieces.truncate(kept);
                text.truncate(pieces.last().map_or(0, |p| p.end));
                finish = Finish::Length;
            }
        }
        return Output::Text {
            text,
            pieces,
            finish,
        };
    }
    let mut words = vec!["Simulated", "reply", "from", conv.model.as_str(), "to:"];
    words.extend(conv.last_user_text.split_whitespace().take(QUOTED_WORDS));
    text_output(words, conv, reply_words, variant)
}

/// A JSON schema (an object with `properties`) written out in the system instructions or the
/// last user message: the first of the first few objects there that is one.
fn written_schema(conv: &Conversation) -> Option<Value> {
    const TRIED: usize = 16;
    [&conv.system_text, &conv.last_user_text]
        .into_iter()
        .flat_map(|text| {
            text.match_indices('{')
                .take(TRIED)
                .filter_map(move |(at, _)| {
                    serde_json::Deserializer::from_str(&text[at..])
                        .into_iter::<Value>()
                        .next()?
                        .ok()
                })
        })
        .find(|value| value.get("properties").is_some_and(Value::is_object))
}

fn reply_words_text(conv: &Conversation, reply_words: u32) -> String {
    let mut words = vec!["Simulated", "reply", "from", conv.model.as_str(), "to:"];
    words.extend(conv.last_user_text.split_whitespace().take(QUOTED_WORDS));
    words.truncate(reply_words as usize);
    words.join(" ")
}

fn mentions_parallel(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("parallel"))
}

/// Pads `words` with filler to `reply_words`, then applies stop sequences and the output limit.
fn text_output(
    mut words: Vec<&str>,
    conv: &Conversation,
    reply_words: u32,
    variant: usize,
) -> Output {
    let target = reply_words as usize;
    let mut filler = FILLER.iter().cycle().skip(variant);
    while words.len() < target {
        match filler.next() {
            Some(w) => words.push(w),
            None => break,
        }
    }
    // Tool results are quoted in full; a plain reply stops at the configured length.
    if conv.tool_results.is_none() {
        words.truncate(target);
    }
    limit_text(words.join(" "), conv)
}

/// Applies stop sequences and the output limit to a reply's text.
fn limit_text(mut text: String, conv: &Conversation) -> Output {
    let mut finish = Finish::Stop;
    let earliest_stop = conv
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, seq)) = earliest_stop {
        text.truncate(at);
        text.truncate(text.trim_end().len());
        finish = Finish::StopSequence(seq.clone());
    }
    let mut pieces = word_pieces(&text);
    if let Some(max) = conv.max_output_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if pieces.len() > max {
            pieces.truncate(max);
            text.truncate(pieces.last().map_or(0, |p| p.end));
            finish = Finish::Length;
        }
    }
    Output::Text {
        text,
        pieces,
        finish,
    }
}

/// Splits text into word chunks, each but the first carrying its leading whitespace.
pub(crate) fn word_pieces(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_ws = true;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws && seen_word {
            pieces.push(Piece {
                start,
                end: i,
                tokens: 1,
            });
            start = i;
        }
        if !ws {
            seen_word = true;
        }
        prev_ws = ws;
    }
    if seen_word {
        pieces.push(Piece {
            start,
            end: text.len(),
            tokens: 1,
        });
    }
    pieces
}

/// Splits text into fragments of `FRAGMENT_CHARS` characters costing `ceil(len / 4)` each.
pub(crate) fn fragments(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, _) in text.char_indices() {
        if count == FRAGMENT_CHARS {
            pieces.push(fragment(text, start, i));
            start = i;
            count = 0;
        }
        count += 1;
    }
    if start < text.len() {
        pieces.push(fragment(text, start, text.len()));
    }
    pieces
}

fn fragment(text: &str, start: usize, end: usize) -> Piece {
    let chars = text[start..end].chars().count();
    Piece {
        start,
        end,
        tokens: u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX),
    }
}

/// Builds a value matching a JSON schema (also Gemini's upper-case OpenAPI subset). Objects get
/// their required properties, or all of them when `all_properties` or when none is required; strings are `"sample"`,
/// numbers 1, booleans true, enums their first value, arrays one element.
pub(crate) fn synthesize(schema: &Value, all_properties: bool) -> Value {
    synth(schema, schema, all_properties, 0)
}

const MAX_SCHEMA_DEPTH: usize = 16;

fn synth(schema: &Value, root: &Value, all: bool, depth: usize) -> Value {
    if depth > MAX_SCHEMA_DEPTH {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return json!("sample");
    };
    if let Some(target) = obj
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
    {
        return synth(target, root, all, depth + 1);
    }
    if let Some(value) = obj.get("const") {
        return value.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = obj.get(key).and_then(Value::as_array).and_then(|v| {
            v.iter()
                .find(|s| s.get("type").and_then(Value::as_str) != Some("null"))
        }) {
            return synth(first, root, all, depth + 1);
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .map(str::to_ascii_lowercase),
        _ => None,
    };
    let ty = ty.unwrap_or_else(|| {
        if obj.contains_key("properties") {
            "object".into()
        } else if obj.contains_key("items") {
            "array".into()
        } else {
            "string".into()
        }
    });
    match ty.as_str() {
        "object" => {
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    // An object that requires nothing is still filled, as a model would.
                    if all || required.is_empty() || required.contains(&name.as_str()) {
                        out.insert(name.clone(), synth(prop, root, all, depth + 1));
                    }
                }
            }
            for name in required {
                if !out.contains_key(name) {
                    out.insert(name.to_owned(), json!("sample"));
                }
            }
            Value::Object(out)
        }
        "array" => match obj.get("items") {
            Some(items) => Value::Array(vec![synth(items, root, all, depth + 1)]),
            None => Value::Array(Vec::new()),
        },
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!("sample"),
    }
}

/// A unit-length vector derived from the text, the same on every call. Texts are bags of words
/// here, as a real model's embeddings roughly are: texts with the same words (in any case,
/// order or punctuation) get the same vector, and texts sharing most of their words lie close.
pub(crate) fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut values = unnormalized_embedding(text, dimensions);
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for v in &mut values {
            *v /= norm;
        }
    }
    values
}

/// The vector [`embedding`] scales to unit length: the mean of its words' vectors (the whole
/// text's for a text without words), each component in `[-1, 1)`. It serves requests that ask
/// for no normalization (Titan's `normalize: false`).
pub(crate) fn unnormalized_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return hashed_vector(text, dimensions);
    }
    let mut sum = vec![0.0f32; dimensions];
    for word in &words {
        for (total, v) in sum.iter_mut().zip(hashed_vector(word, dimensions)) {
            *total += v;
        }
    }
    let n = words.len() as f32;
    sum.into_iter().map(|v| v / n).collect()
}

/// A pseudo-random vector seeded by the text, each component in `[-1, 1)`.
fn hashed_vector(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a seeds a splitmix64 sequence.
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        seed ^= u64::from(b);
        seed = seed.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dimensions)
        .map(|_| {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let x = mix(seed);
            // Top 24 bits mapped onto [-1, 1).
            ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Provider-looking ids: a per-server counter scrambled into base-62 characters, so ids are
/// unique within a run and the same across runs.
#[derive(Debug, Default)]
pub(crate) struct IdGen {
    next: AtomicU64,
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl IdGen {
    /// `prefix` followed by `len` base-62 characters.
    pub(crate) fn make(&self, prefix: &str, len: usize) -> String {
        let mut state = self.next_state();
        let mut out = String::with_capacity(prefix.len() + len);
        out.push_str(prefix);
        let mut left = 0;
        for _ in 0..len {
            if left == 0 {
                state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
                left = 10;
            }
            out.push(BASE62[(state % 62) as usize] as char);
            state /= 62;
            left -= 1;
        }
        out
    }

    /// A UUID in version 4's form (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lowercase hex),
    /// as Cohere's response ids are.
    pub(crate) fn uuid(&self) -> String {
        let high = self.next_state();
        let low = mix(high.wrapping_add(0x9e37_79b9_7f4a_7c15));
        let hex = format!("{high:016x}{low:016x}");
        let variant = ['8', '9', 'a', 'b'][(low >> 62) as usize];
        format!(
            "{}-{}-4{}-{variant}{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..],
        )
    }

    fn next_state(&self) -> u64 {
        mix(self.next.fetch_add(1, Ordering::Relaxed) ^ 0x5157_5f53_494d)
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! Serde types of the Anthropic Messages API, named as in its API reference, plus the small
//! conversions between their vocabularies (usage, stop reasons, error types) and the canonical
//! model. These types never leave the `anthropic` folder.
//!
//! The same types serve both directions: the ingress deserialises requests and serialises
//! messages; the provider serialises requests and deserialises messages. Request fields are all
//! optional here so the ingress can name a missing required field itself.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::canonical::{self, ErrorClass, FinishReason};

/// The `anthropic-version` header value; still the only version of the Messages API.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `POST /v1/messages` body (`MessageCreateParams`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MessageCreateParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageParam>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<TextOrBlocks<ContentBlockParam>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolUnion>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfigParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Fields this dialect does not model (`service_tier`, `container`, `mcp_servers`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// One turn of the conversation (`MessageParam`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessageParam {
    /// Kept as text so the ingress can explain a wrong role (`system` belongs at top level).
    pub role: String,
    pub content: TextOrBlocks<ContentBlockParam>,
}

/// A string, or an array of blocks: the shape of message `content`, `system` and
/// `tool_result.content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum TextOrBlocks<T> {
    Text(String),
    Blocks(Vec<T>),
}

// Written by hand rather than `#[serde(untagged)]`: an untagged enum buffers its input, which
// loses the JSON path of an error inside a block and replaces the message with "did not match
// any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOrBlocks<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrBlocksVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for TextOrBlocksVisitor<T> {
            type Value = TextOrBlocks<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOrBlocks::Text(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TextOrBlocks::Text(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(TextOrBlocks::Blocks(blocks))
            }
        }

        deserializer.deserialize_any(TextOrBlocksVisitor(PhantomData))
    }
}

/// Request content blocks (`ContentBlockParam`). Server tools' blocks in an assistant's
/// history are kept whole; block types unknown here are refused by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlockParam {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
        /// The citations of an earlier answer's text, sent back with the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
    Image {
        source: ImageSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Document {
        source: DocumentSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<TextOrBlocks<ContentBlockParam>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// Retrieved content the model can cite (`SearchResultBlockParam`): in a user message or a
    /// tool result, its `content` text blocks only.
    SearchResult {
        source: String,
        title: String,
        content: Vec<ContentBlockParam>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    // Server tools' calls and results, as the provider wrote them but for the `type`, which
    // names the variant (see `is_server_tool`).
    ServerToolUse(Map<String, Value>),
    WebSearchToolResult(Map<String, Value>),
    WebFetchToolResult(Map<String, Value>),
    CodeExecutionToolResult(Map<String, Value>),
    BashCodeExecutionToolResult(Map<String, Value>),
    TextEditorCodeExecutionToolResult(Map<String, Value>),
    ToolSearchToolResult(Map<String, Value>),
    ContainerUpload(Map<String, Value>),
    McpToolUse(Map<String, Value>),
    McpToolResult(Map<String, Value>),
}

impl ContentBlockParam {
    /// The block's `cache_control` marker, for the block types that can carry one.
    pub fn cache_control_mut(&mut self) -> Option<&mut Option<Value>> {
        match self {
            ContentBlockParam::Text { cache_control, .. }
            | ContentBlockParam::Image { cache_control, .. }
            | ContentBlockParam::Document { cache_control, .. }
            | ContentBlockParam::ToolUse { cache_control, .. }
            | ContentBlockParam::ToolResult { cache_control, .. }
            | ContentBlockParam::SearchResult { cache_control, .. } => Some(cache_control),
            ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking { .. } => None,
            // Kept whole, markers included.
            _ => None,
        }
    }

    /// A server tool's call or result (which only assistant messages hold).
    pub fn is_server_tool(&self) -> bool {
        use ContentBlockParam as B;
        matches!(
            self,
            B::ServerToolUse(_)
                | B::WebSearchToolResult(_)
                | B::WebFetchToolResult(_)
                | B::CodeExecutionToolResult(_)
                | B::BashCodeExecutionToolResult(_)
                | B::TextEditorCodeExecutionToolResult(_)
                | B::ToolSearchToolResult(_)
                | B::ContainerUpload(_)
                | B::McpToolUse(_)
                | B::McpToolResult(_)
        )
    }
}

/// `image.source` (`Base64ImageSource` | `URLImageSource`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

/// `document.source` (`Base64PDFSource` | `URLPDFSource` | `PlainTextSource` |
/// `ContentBlockSource`). An Anthropic `file` id is refused by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum DocumentSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    Text {
        media_type: String,
        data: String,
    },
    /// A document of the client's own chunks: a string or text blocks (image blocks are
    /// refused), each block citable on its own.
    Content {
        content: TextOrBlocks<ContentBlockParam>,
    },
}

/// An entry of `tools`: a client tool (`Tool`, `type` absent or `custom`) or one of Anthropic's
/// server or versioned tools (`web_search_20250305`, `bash_20250124`, …), kept verbatim.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum ToolUnion {
    Custom(Tool),
    Server(Map<String, Value>),
}

impl<'de> Deserialize<'de> for ToolUnion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Map::<String, Value>::deserialize(deserializer)?;
        match object.get("type").and_then(Value::as_str) {
            None | Some("custom") => serde_json::from_value(Value::Object(object))
                .map(ToolUnion::Custom)
                .map_err(de::Error::custom),
            Some(_) => Ok(ToolUnion::Server(object)),
        }
    }
}

/// A client tool (`Tool`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice` (`ToolChoiceAuto` | `ToolChoiceAny` | `ToolChoiceTool` | `ToolChoiceNone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

/// `thinking` (`ThinkingConfigParam`). Configurations the canonical model has no words for
/// (e.g. `adaptive`) are kept verbatim in `Other`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ThinkingConfigParam {
    Enabled { budget_tokens: u32 },
    Disabled,
    Other(Map<String, Value>),
}

#[derive(Deserialize)]
struct ThinkingEnabled {
    budget_tokens: u32,
}

impl Serialize for ThinkingConfigParam {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = Map::new();
        match self {
            ThinkingConfigParam::Enabled { budget_tokens } => {
                object.insert("type".into(), "enabled".into());
                object.insert("budget_tokens".into(), (*budget_tokens).into());
            }
            ThinkingConfigParam::Disabled => {
                object.insert("type".into(), "disabled".into());
            }
            ThinkingConfigParam::Other(other) => object.clone_from(other),
        }
        object.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ThinkingConfigParam {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Map::<String, Value>::deserialize(deserializer)?;
        match object.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let enabled: ThinkingEnabled =
                    serde_json::from_value(Value::Object(object)).map_err(de::Error::custom)?;
                Ok(ThinkingConfigParam::Enabled {
                    budget_tokens: enabled.budget_tokens,
                })
            }
            Some("disabled") => Ok(ThinkingConfigParam::Disabled),
            Some(_) => Ok(ThinkingConfigParam::Other(object)),
            None => Err(de::Error::missing_field("type")),
        }
    }
}

/// `metadata` (`Metadata`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `output_config` (`OutputConfig`): the structured-output `format`, plus members this dialect
/// does not model (e.g. `effort`), kept for same-dialect passthrough.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutputConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `output_config.format` (`JSONOutputFormat`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutputFormat {
    JsonSchema { schema: Value },
}

/// A complete answer (`Message`), also the skeleton inside `message_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default = "assistant_role")]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Members this dialect does not model (`container`, `context_management`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn message_type() -> String {
    "message".to_owned()
}

fn assistant_role() -> String {
    "assistant".to_owned()
}

/// Response content blocks (`ContentBlock`). Server tools' blocks (`server_tool_use`,
/// `web_search_tool_result`, …) are kept whole; block types added later decode as `Other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
        /// Where the text's claim comes from in the request's documents or search results;
        /// null or absent when it cites nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    // Server tools' calls and results, as the provider wrote them but for the `type`, which
    // names the variant (see `server_tool`).
    ServerToolUse(Map<String, Value>),
    WebSearchToolResult(Map<String, Value>),
    WebFetchToolResult(Map<String, Value>),
    CodeExecutionToolResult(Map<String, Value>),
    BashCodeExecutionToolResult(Map<String, Value>),
    TextEditorCodeExecutionToolResult(Map<String, Value>),
    ToolSearchToolResult(Map<String, Value>),
    ContainerUpload(Map<String, Value>),
    McpToolUse(Map<String, Value>),
    McpToolResult(Map<String, Value>),
    #[serde(other)]
    Other,
}

impl ContentBlock {
    /// A server tool's call or result, whole (its `type` included), for the canonical part.
    pub fn server_tool(&self) -> Option<Value> {
        use ContentBlock as B;
        match self {
            B::ServerToolUse(_)
            | B::WebSearchToolResult(_)
            | B::WebFetchToolResult(_)
            | B::CodeExecutionToolResult(_)
            | B::BashCodeExecutionToolResult(_)
            | B::TextEditorCodeExecutionToolResult(_)
            | B::ToolSearchToolResult(_)
            | B::ContainerUpload(_)
            | B::McpToolUse(_)
            | B::McpToolResult(_) => serde_json::to_value(self).ok(),
            _ => None,
        }
    }
}

/// `usage` (`Usage`, and `MessageDeltaUsage` in streams, where every member may be absent).
/// Anthropic's counts are disjoint: `input_tokens` excludes cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// The cache writes by the cache's lifetime (`CacheCreation`), null when not told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation: Option<CacheCreation>,
    /// The server tools' requests (`ServerToolUsage`), null when none ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tool_use: Option<ServerToolUsage>,
}

/// `usage.cache_creation`: of `cache_creation_input_tokens`, those cached for five minutes and
/// for an hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheCreation {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: u64,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: u64,
}

/// `usage.server_tool_use`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerToolUsage {
    #[serde(default)]
    pub web_search_requests: u64,
    #[serde(default)]
    pub web_fetch_requests: u64,
}

impl ServerToolUsage {
    /// The counts of `usage`, when any server tool ran.
    fn of(usage: &canonical::Usage) -> Option<Self> {
        (usage.web_search_requests != 0 || usage.web_fetch_requests != 0).then_some(Self {
            web_search_requests: usage.web_search_requests,
            web_fetch_requests: usage.web_fetch_requests,
        })
    }
}

impl Usage {
    /// Every member set, as a complete `Message` reports it.
    pub fn full(usage: &canonical::Usage) -> Self {
        Self {
            input_tokens: Some(usage.uncached_input()),
            output_tokens: Some(usage.output_tokens),
            cache_creation_input_tokens: Some(usage.cache_write_tokens),
            cache_read_input_tokens: Some(usage.cache_read_tokens),
            cache_creation: Some(CacheCreation {
                ephemeral_5m_input_tokens: usage
                    .cache_write_tokens
                    .saturating_sub(usage.cache_write_1h_tokens),
                ephemeral_1h_input_tokens: usage.cache_write_1h_tokens,
            }),
            server_tool_use: ServerToolUsage::of(usage),
        }
    }

    /// Writes the usage as serde writes it (a member that is `None` left out), without a
    /// serializer.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut members = 0;
        let mut key = |out: &mut Vec<u8>, key: &[u8]| {
            out.push(if members == 0 { b'{' } else { b',' });
            members += 1;
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
        };
        let counts = [
            (&b"input_tokens"[..], self.input_tokens),
            (b"output_tokens", self.output_tokens),
            (
                b"cache_creation_input_tokens",
                self.cache_creation_input_tokens,
            ),
            (b"cache_read_input_tokens", self.cache_read_input_tokens),
        ];
        for (name, count) in counts {
            if let Some(count) = count {
                key(out, name);
                crate::json::write_uint(out, count);
            }
        }
        // The two nested objects, each of two counts: the head up to the first count, the
        // second's key, the counts.
        let pairs = [
            self.cache_creation.map(|c| {
                (
                    &b"cache_creation\":{\"ephemeral_5m_input_tokens"[..],
                    &b"ephemeral_1h_input_tokens"[..],
                    c.ephemeral_5m_input_tokens,
                    c.ephemeral_1h_input_tokens,
                )
            }),
            self.server_tool_use.map(|s| {
                (
                    &b"server_tool_use\":{\"web_search_requests"[..],
                    &b"web_fetch_requests"[..],
                    s.web_search_requests,
                    s.web_fetch_requests,
                )
            }),
        ];
        for (head, second, a, b) in pairs.into_iter().flatten() {
            key(out, head);
            crate::json::write_uint(out, a);
            out.extend_from_slice(b",\"");
            out.extend_from_slice(second);
            out.extend_from_slice(b"\":");
            crate::json::write_uint(out, b);
            out.push(b'}');
        }
        if members == 0 {
            out.push(b'{');
        }
        out.push(b'}');
    }

    /// The counts a stream's `message_delta` carries: `MessageDeltaUsage` has no
    /// `cache_creation`.
    pub fn streamed(usage: &canonical::Usage) -> Self {
        Self {
            cache_creation: None,
            ..Self::full(usage)
        }
    }

    /// Canonical counts: input includes cache reads and writes.
    pub fn to_canonical(self) -> canonical::Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0);
        canonical::Usage {
            // Saturating: the counts come from the wire and must not overflow into a panic.
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            // Never more than the writes themselves, whatever the wire says.
            cache_write_1h_tokens: self
                .cache_creation
                .map_or(0, |c| c.ephemeral_1h_input_tokens.min(cache_write)),
            reasoning_tokens: 0,
            web_search_requests: self.server_tool_use.map_or(0, |s| s.web_search_requests),
            web_fetch_requests: self.server_tool_use.map_or(0, |s| s.web_fetch_requests),
        }
    }

    /// Whether any input-side member is present (stream `message_delta` usage may carry only
    /// `output_tokens`).
    pub fn has_input_side(&self) -> bool {
        self.input_tokens.is_some()
            || self.cache_creation_input_tokens.is_some()
            || self.cache_read_input_tokens.is_some()
            || self.cache_creation.is_some()
    }
}

/// The Anthropic `stop_reason` (and `stop_sequence`) of a turn ending for `reason`, having
/// called tools or not: OpenAI (and servers copying it) end a turn whose tool a named
/// `tool_choice` forced with `stop`, where Claude says `tool_use`, the reason agent loops read
/// to run the tools.
pub(crate) fn turn_stop_reason(reason: &FinishReason, called_tools: bool) -> (&str, Option<&str>) {
    match reason {
        FinishReason::Stop if called_tools => ("tool_use", None),
        other => stop_reason(other),
    }
}

/// The Anthropic `stop_reason` (and `stop_sequence`) for a canonical finish reason.
pub(crate) fn stop_reason(reason: &FinishReason) -> (&str, Option<&str>) {
    match reason {
        FinishReason::Stop => ("end_turn", None),
        FinishReason::StopSequence(sequence) => ("stop_sequence", sequence.as_deref()),
        FinishReason::Length => ("max_tokens", None),
        FinishReason::ToolCalls => ("tool_use", None),
        FinishReason::ContentFilter => ("refusal", None),
        // Anthropic's own reasons pass; another provider's (Gemini's `MALFORMED_FUNCTION_CALL`,
        // say) is none of the values a Messages client knows: the turn simply ended.
        FinishReason::Other(other) => match other.as_str() {
            own @ ("pause_turn" | "refusal" | CONTEXT_WINDOW_EXCEEDED) => (own, None),
            _ => ("end_turn", None),
        },
    }
}

/// Anthropic's stop reason for an answer the context window cut: a length stop to other
/// dialects, itself to an Anthropic client.
pub(crate) const CONTEXT_WINDOW_EXCEEDED: &str = "model_context_window_exceeded";

/// The canonical finish reason for an Anthropic `stop_reason`. A missing reason reads as a
/// normal end of turn; `model_context_window_exceeded` is kept (a length stop to other
/// dialects).
pub(crate) fn finish_reason(
    stop_reason: Option<&str>,
    stop_sequence: Option<&str>,
) -> FinishReason {
    match stop_reason {
        None | Some("end_turn") => FinishReason::Stop,
        Some("stop_sequence") => FinishReason::StopSequence(stop_sequence.map(str::to_owned)),
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

/// One event of a streamed answer (`RawMessageStreamEvent`), plus `ping` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum MessageStreamEvent {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: ContentBlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorObject,
    },
    /// Event types added after this code was written; the versioning policy allows new ones.
    #[serde(other)]
    Unknown,
}

/// `content_block_delta.delta` (`RawContentBlockDelta`). Later delta types decode as `Other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    /// One citation to add to the text block's `citations`.
    CitationsDelta {
        citation: Value,
    },
    #[serde(other)]
    Other,
}

/// `message_delta.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// An error body (`ErrorResponse`): `{"type":"error","error":{"type":…,"message":…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorResponse {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorObject,
}

/// `error` inside an error body or an in-stream `error` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorObject {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// The error class of an Anthropic error type (API errors page), `None` for types this code
/// does not know. `billing_error` means the deployment's account cannot pay: like a credential
/// problem, retrying the same deployment cannot help.
pub(crate) fn error_class(kind: &str, message: &str) -> Option<ErrorClass> {
    Some(match kind {
        // Too large for this provider (its byte limit), like a prompt too long for its context
        // window: another deployment may take it.
        "invalid_request_error" if is_context_too_long(message) => ErrorClass::ContextTooLong,
        "request_too_large" => ErrorClass::ContextTooLong,
        "invalid_request_error" => ErrorClass::InvalidRequest,
        "authentication_error" | "permission_error" | "billing_error" => ErrorClass::AuthFailed,
        "not_found_error" => ErrorClass::NotFound,
        "rate_limit_error" => ErrorClass::RateLimited,
        "api_error" => ErrorClass::ServerError,
        "overloaded_error" => ErrorClass::Overloaded,
        "timeout_error" => ErrorClass::Timeout,
        _ => return None,
    })
}

/// Anthropic reports an oversized prompt as a plain `invalid_request_error`; only the message
/// tells it apart ("prompt is too long: 208310 tokens > 200000 maximum", "input length and
/// `max_tokens` exceed context limit: …").
fn is_context_too_long(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "context limit",
        "context window",
        "context length",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// The Anthropic error type for a canonical error class (in-stream errors relayed to clients).
pub(crate) fn error_type_of_class(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::InvalidRequest | ErrorClass::ContextTooLong | ErrorClass::ContentFiltered => {
            "invalid_request_error"
        }
        ErrorClass::AuthFailed => "authentication_error",
        ErrorClass::NotFound => "not_found_error",
        ErrorClass::RateLimited => "rate_limit_error",
        ErrorClass::Overloaded => "overloaded_error",
        ErrorClass::Timeout => "timeout_error",
        ErrorClass::Connect
        | ErrorClass::ServerError
        | ErrorClass::StreamInterrupted
        | ErrorClass::MalformedResponse => "api_error",
    }
}

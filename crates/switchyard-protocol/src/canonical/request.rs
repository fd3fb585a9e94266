use serde_json::{Map, Value};

use super::Text;
use crate::DialectId;

/// Fields a dialect did not model, kept verbatim so a same-dialect round trip loses nothing.
/// They are re-emitted only when the provider speaks the dialect they came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    pub dialect: Option<DialectId>,
    pub fields: Map<String, Value>,
}

impl Extras {
    pub fn new(dialect: DialectId, fields: Map<String, Value>) -> Self {
        Self {
            dialect: Some(dialect),
            fields,
        }
    }

    /// The kept fields when the target speaks `dialect`, else nothing.
    pub fn for_dialect(&self, dialect: DialectId) -> Option<&Map<String, Value>> {
        (self.dialect == Some(dialect) && !self.fields.is_empty()).then_some(&self.fields)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Keeps `value` under `key` for `dialect`; fields kept for another dialect are dropped.
    pub fn insert(&mut self, dialect: DialectId, key: &str, value: Value) {
        if self.dialect != Some(dialect) {
            *self = Self::new(dialect, Map::new());
        }
        self.fields.insert(key.to_owned(), value);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    /// OpenAI's `developer` role; other providers treat it as a system instruction.
    Developer,
    User,
    Assistant,
    /// A message that only carries tool results (OpenAI `role: tool`).
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Url(String),
    /// `data` is the base64 text: an inline image is often most of its request, so when it
    /// was read from the client's body it shares that body's bytes, as a long prompt does.
    Base64 {
        media_type: String,
        data: Text,
    },
}

impl ImageSource {
    /// Splits a `data:<mime>;base64,<data>` URI into a base64 source; other URLs stay URLs.
    pub fn from_url(url: &str) -> Self {
        match split_data_uri(url) {
            Some((media_type, at)) => ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: Text::from(&url[at..]),
            },
            None => ImageSource::Url(url.to_owned()),
        }
    }

    /// [`ImageSource::from_url`] for a URL read as a [`Text`]: a data URI's base64 text is
    /// the URL's own tail, shared rather than copied.
    pub fn from_url_text(url: &Text) -> Self {
        match split_data_uri(url) {
            Some((media_type, at)) => ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: url.tail_from(at),
            },
            None => ImageSource::Url(url.as_str().to_owned()),
        }
    }
}

/// A `data:<mime>;base64,<data>` URI's media type and where its data starts.
fn split_data_uri(url: &str) -> Option<(&str, usize)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, _) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, "data:".len() + meta.len() + 1))
}

/// Where a document's content is. Which forms a provider takes differs (OpenAI Chat
/// Completions: PDF data or a file id; Anthropic: PDF data, a URL or plain text; Gemini: inline
/// data of any type or a URL); a form a provider cannot take is refused when its request is
/// built, naming the part.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentSource {
    /// The document's bytes as base64 text with their media type (`application/pdf`,
    /// `text/plain`, …). A `Text`, as an image's: the one-pass readers share it with the
    /// client's body, and a provider's request splices it in rather than copying it.
    Base64 { media_type: String, data: Text },
    /// A document the provider fetches itself (Anthropic's URL source, a PDF).
    Url(String),
    /// The document's own text, not encoded (Anthropic's `text` source).
    Text { media_type: String, data: Text },
    /// A file uploaded to OpenAI's Files API beforehand, by its id (`file-…`).
    FileId(String),
}

impl DocumentSource {
    /// The document's media type, where its form names one (a URL document is a PDF).
    pub fn media_type(&self) -> Option<&str> {
        match self {
            DocumentSource::Base64 { media_type, .. } | DocumentSource::Text { media_type, .. } => {
                Some(media_type)
            }
            DocumentSource::Url(_) => Some(PDF),
            DocumentSource::FileId(_) => None,
        }
    }

    /// Splits a `data:<mime>;base64,<data>` URI into a base64 source, the base64 text shared
    /// with the URI; anything else is not a document's data.
    pub fn from_data_uri(uri: &Text) -> Option<Self> {
        let (media_type, at) = split_data_uri(uri)?;
        Some(DocumentSource::Base64 {
            media_type: media_type.to_owned(),
            data: uri.tail_from(at),
        })
    }
}

/// The media type of a PDF document.
pub const PDF: &str = "application/pdf";

#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text {
        text: Text,
        /// Provider-specific markers on the part (e.g. Anthropic `cache_control`), passed on
        /// to providers that understand them.
        cache_control: Option<Value>,
        /// Anthropic's `citations` of the text: where in the request's documents or search
        /// results a claim comes from. Set on answers and on the history a client sends back;
        /// kept as the provider wrote them and re-emitted to Anthropic (an OpenAI client's
        /// whole answer gets its web pages as `url_citation` annotations).
        citations: Option<Value>,
    },
    Image {
        source: ImageSource,
        /// OpenAI's `detail` hint (`auto`, `low`, `high`).
        detail: Option<String>,
    },
    /// A document the model reads (a PDF, a text file): input only, in user messages and in
    /// tool results.
    Document {
        source: DocumentSource,
        /// OpenAI's `filename` / Anthropic's `title`.
        title: Option<String>,
        /// Anthropic's `context`: about the document, shown to the model beside it.
        context: Option<String>,
        /// Dialect-only fields of the part (Anthropic's `citations`), re-emitted to the same
        /// dialect.
        extras: Extras,
    },
    ToolCall {
        id: String,
        name: String,
        /// The arguments as JSON text, as OpenAI carries them.
        arguments: String,
        /// Provider data that must come back on the next turn (e.g. Gemini `thoughtSignature`).
        extras: Extras,
    },
    ToolResult {
        tool_call_id: String,
        /// Gemini matches results by function name; carried when known.
        name: Option<String>,
        content: Vec<ContentPart>,
        is_error: bool,
    },
    Reasoning {
        text: String,
        signature: Option<String>,
    },
    RedactedReasoning {
        data: String,
    },
    /// A server tool's call or result in an Anthropic answer (`server_tool_use`,
    /// `web_search_tool_result`, `code_execution_tool_result`, …): the provider ran the tool
    /// itself. Kept whole as the provider wrote it and written only to Anthropic clients and
    /// providers; other dialects have no place for it, and the answer's text says what it
    /// found.
    ServerTool {
        block: Value,
    },
}

impl ContentPart {
    pub fn text(text: impl Into<Text>) -> Self {
        ContentPart::Text {
            text: text.into(),
            cache_control: None,
            citations: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
    /// OpenAI's participant `name`.
    pub name: Option<String>,
    pub extras: Extras,
}

impl ContentPart {
    /// Concatenated text of the text parts among `parts`.
    pub fn concat_text(parts: &[ContentPart]) -> String {
        let mut out = String::new();
        for part in parts {
            if let ContentPart::Text { text, .. } = part {
                out.push_str(text);
            }
        }
        out
    }
}

impl Message {
    /// Concatenated text of the message's text parts.
    pub fn text(&self) -> String {
        ContentPart::concat_text(&self.content)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    pub strict: Option<bool>,
    pub cache_control: Option<Value>,
}

/// A web search the provider runs itself, as OpenAI's hosted `web_search` tool asks: offered
/// to providers that have a search of their own (Anthropic's web search server tool) and left
/// out for the others, whose model then answers without searching.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebSearch {
    /// Only results from these domains (and their subdomains); empty for any domain.
    pub allowed_domains: Vec<String>,
    /// Where the user is, roughly: `{type: "approximate", city, region, country, timezone}`,
    /// one shape in both APIs.
    pub user_location: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`, Gemini `ANY`).
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Value,
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reasoning {
    /// OpenAI `reasoning_effort`: `minimal`, `low`, `medium`, `high`, …
    pub effort: Option<String>,
    /// Anthropic `thinking.budget_tokens` / Gemini `thinkingBudget`.
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The model name the client asked for (an alias at ingress, the upstream model at egress).
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    /// A search the provider runs, where it has one (see [`WebSearch`]).
    pub web_search: Option<WebSearch>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    /// Upper bound on generated tokens (OpenAI `max_completion_tokens`/`max_tokens`).
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub reasoning: Option<Reasoning>,
    /// End-user identifier (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// OpenAI `metadata` (string map), also used for routing tags.
    pub metadata: Option<Map<String, Value>>,
    pub stream: bool,
    /// The client asked for a usage chunk at the end of the stream.
    pub include_usage: bool,
    pub n: Option<u32>,
    pub extras: Extras,
}

/// How long a prompt cache written by a request lives, which sets what its writes cost
/// (Anthropic bills five-minute writes at 1.25 times input, hour-long ones at twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheTtl {
    FiveMinutes,
    Hour,
}

impl CacheTtl {
    /// The lifetime a `cache_control` marker asks for (`{"type": "ephemeral", "ttl": "1h"}`);
    /// five minutes when it names none.
    fn of_marker(marker: &Value) -> Self {
        match marker.get("ttl").and_then(Value::as_str) {
            Some("1h") => Self::Hour,
            _ => Self::FiveMinutes,
        }
    }
}

impl ChatRequest {
    /// The longest-lived prompt cache the request's `cache_control` markers ask to write
    /// (none without markers): on a part, a tool, a block kept in a message's extras, or the
    /// whole request (Anthropic's automatic caching). What a budget must reserve for input
    /// depends on it, since a cache write costs more than plain input.
    pub fn cache_writes(&self) -> Option<CacheTtl> {
        fn marked_parts(parts: &[ContentPart], longest: &mut Option<CacheTtl>) {
            for part in parts {
                match part {
                    ContentPart::Text {
                        cache_control: Some(marker),
                        ..
                    } => *longest = (*longest).max(Some(CacheTtl::of_marker(marker))),
                    ContentPart::ToolResult { content, .. } => marked_parts(content, longest),
                    _ => {}
                }
            }
        }
        let mut longest = None;
        let mut see = |marker: &Value| longest = longest.max(Some(CacheTtl::of_marker(marker)));
        if let Some(marker) = self.extras.fields.get("cache_control") {
            see(marker);
        }
        for marker in self.tools.iter().filter_map(|t| t.cache_control.as_ref()) {
            see(marker);
        }
        for message in &self.messages {
            if let Some(Value::Object(markers)) = message
                .extras
                .fields
                .get(crate::anthropic::BLOCK_CACHE_CONTROL)
            {
                markers.values().for_each(&mut see);
            }
        }
        for message in &self.messages {
            marked_parts(&message.content, &mut longest);
        }
        longest
    }

    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| {
            m.content.iter().any(|p| match p {
                ContentPart::Image { .. } => true,
                ContentPart::ToolResult { content, .. } => content
                    .iter()
                    .any(|c| matches!(c, ContentPart::Image { .. })),
                _ => false,
            })
        })
    }

    pub fn has_documents(&self) -> bool {
        self.documents().next().is_some()
    }

    /// Every document part, a message's or a tool result's, with its path in the request
    /// (`messages[i].content[j]`, `messages[i].content[j].content[k]` in a tool result) and
    /// whether it stands where a document may: in a user message, or in a tool's result.
    pub fn documents(&self) -> impl Iterator<Item = (String, bool, &DocumentSource)> {
        self.messages.iter().enumerate().flat_map(|(i, m)| {
            m.content.iter().enumerate().flat_map(move |(j, p)| {
                let in_result = match p {
                    ContentPart::ToolResult { content, .. } => &content[..],
                    _ => &[],
                };
                let own = match p {
                    ContentPart::Document { source, .. } => Some((
                        format!("messages[{i}].content[{j}]"),
                        m.role == Role::User,
                        source,
                    )),
                    _ => None,
                };
                own.into_iter()
                    .chain(
                        in_result
                            .iter()
                            .enumerate()
                            .filter_map(move |(k, c)| match c {
                                ContentPart::Document { source, .. } => Some((
                                    format!("messages[{i}].content[{j}].content[{k}]"),
                                    true,
                                    source,
                                )),
                                _ => None,
                            }),
                    )
            })
        })
    }

    /// Rough size of the prompt in characters, for estimates that need no tokenizer.
    pub fn prompt_chars(&self) -> usize {
        let mut n = 0;
        for m in &self.messages {
            for p in &m.content {
                n += match p {
                    ContentPart::Text { text, .. } => text.len(),
                    ContentPart::ToolCall {
                        arguments, name, ..
                    } => arguments.len() + name.len(),
                    ContentPart::ToolResult { content, .. } => content
                        .iter()
                        .map(|c| match c {
                            ContentPart::Text { text, .. } => text.len(),
                            _ => 0,
                        })
                        .sum(),
                    ContentPart::Reasoning { text, .. } => text.len(),
                    ContentPart::Document {
                        source: DocumentSource::Text { data, .. },
                        ..
                    } => data.len(),
                    _ => 0,
                };
            }
        }
        for t in &self.tools {
            n += t.name.len() + t.description.as_deref().map_or(0, str::len);
            n += t.parameters.to_string().len();
        }
        n
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Texts(t) => t.len(),
            EmbeddingInput::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// True when the client sent a single input rather than an array.
    pub single: bool,
    pub dimensions: Option<u32>,
    pub encoding_format: EncodingFormat,
    pub user: Option<String>,
    pub extras: Extras,
}

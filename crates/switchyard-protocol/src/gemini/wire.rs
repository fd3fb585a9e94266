//! Gemini `generateContent` and `batchEmbedContents` wire types, named as in the official API
//! reference (camelCase on the wire). Requests are only serialised and replies only read, so
//! each type derives what its direction needs. Reply fields we do not model are ignored; request
//! fields we do not model (`safetySettings`, `cachedContent`, …) come from same-dialect extras,
//! merged into the serialised body by the provider.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::canonical::Text;

/// `GenerateContentRequest` body (the model is in the URL, not the body).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'r> {
    pub contents: Vec<RequestContent<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<RequestContent<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
}

/// `Content`: one turn. `role` is `user` or `model`; absent on `systemInstruction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// A request's `Content`: its text parts borrowed from the canonical request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestContent<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    pub parts: Vec<RequestPart<'r>>,
}

/// A request's `Part`: a text borrowed from the canonical request (so that a long prompt read
/// without escapes is spliced into the body rather than copied), or any other part.
#[derive(Debug, Clone)]
pub enum RequestPart<'r> {
    Text {
        text: &'r Text,
        thought_signature: Option<String>,
    },
    /// A function's response of one text that is not a JSON object:
    /// `{"functionResponse": {"id", "name", "response": {key: text}}}`, `key` being `result`, or
    /// `error` for a failed call (borrowed, as a text part's, since a tool's result can be long).
    FunctionResult {
        id: Option<&'r str>,
        name: &'r str,
        key: &'static str,
        text: &'r Text,
    },
    /// An inline image or document, `{"inlineData": {"mimeType", "data"}}`, its base64 text
    /// borrowed (an image or a PDF is often most of its request).
    InlineData { mime_type: &'r str, data: &'r Text },
    /// A function's response with the result's inline images in its `parts`, their base64
    /// texts borrowed (a screenshot is most of an agent's turn). Boxed: rare and large.
    FunctionResponse(Box<FunctionResponseWithMedia<'r>>),
    /// Boxed: a part of another kind is rare, and four times the size of a text.
    Other(Box<Part>),
}

/// [`FunctionResponse`] whose `parts` are inline images borrowed from the canonical request.
#[derive(Debug, Clone)]
pub struct FunctionResponseWithMedia<'r> {
    pub id: Option<&'r str>,
    pub name: &'r str,
    pub response: Map<String, Value>,
    pub media: InlineMedia<'r>,
}

/// Inline images, in order: each one's media type and base64 text.
pub type InlineMedia<'r> = Vec<(&'r str, &'r Text)>;

/// Written as the [`Part`] with that text and signature would be.
impl Serialize for RequestPart<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestPart::Text {
                text,
                thought_signature,
            } => {
                let mut part = serializer.serialize_struct("Part", 2)?;
                part.serialize_field("text", text.as_str())?;
                if let Some(signature) = thought_signature {
                    part.serialize_field("thoughtSignature", signature)?;
                }
                part.end()
            }
            RequestPart::FunctionResult {
                id,
                name,
                key,
                text,
            } => {
                let mut part = serializer.serialize_struct("Part", 1)?;
                part.serialize_field(
                    "functionResponse",
                    &FunctionResultOut {
                        id: *id,
                        name,
                        response: std::iter::once((*key, text.as_str())).collect(),
                    },
                )?;
                part.end()
            }
            RequestPart::InlineData { mime_type, data } => {
                let mut part = serializer.serialize_struct("Part", 1)?;
                part.serialize_field(
                    "inlineData",
                    &BlobOut {
                        mime_type,
                        data: data.as_str(),
                    },
                )?;
                part.end()
            }
            RequestPart::FunctionResponse(with_media) => {
                let mut part = serializer.serialize_struct("Part", 1)?;
                part.serialize_field(
                    "functionResponse",
                    &FunctionResponseOut {
                        id: with_media.id,
                        name: with_media.name,
                        response: &with_media.response,
                        parts: with_media
                            .media
                            .iter()
                            .map(|(mime_type, data)| MediaOut {
                                inline_data: BlobOut {
                                    mime_type,
                                    data: data.as_str(),
                                },
                            })
                            .collect(),
                    },
                )?;
                part.end()
            }
            RequestPart::Other(part) => part.serialize(serializer),
        }
    }
}

/// [`FunctionResponse`] with borrowed fields, for [`RequestPart::FunctionResponse`].
#[derive(Serialize)]
struct FunctionResponseOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    name: &'a str,
    response: &'a Map<String, Value>,
    parts: Vec<MediaOut<'a>>,
}

/// [`FunctionResponsePart`] with borrowed fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MediaOut<'a> {
    inline_data: BlobOut<'a>,
}

/// [`Blob`] with borrowed fields, for [`RequestPart::InlineData`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlobOut<'a> {
    mime_type: &'a str,
    data: &'a str,
}

/// [`FunctionResponse`] with borrowed fields, for [`RequestPart::FunctionResult`].
#[derive(Serialize)]
struct FunctionResultOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    name: &'a str,
    response: std::collections::BTreeMap<&'static str, &'a str>,
}

/// `Part`: exactly one data field (`text`, `inlineData`, `fileData`, `functionCall`,
/// `functionResponse`, …) plus the `thought` flag and `thoughtSignature` metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// The part is a thought summary, not answer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque signature of the model's reasoning; must come back unchanged on the next turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
}

/// `Blob` (`inlineData`): base64 bytes with their IANA media type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    pub data: String,
}

/// `FileData`: data by URI. `mimeType` is optional in the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub file_uri: String,
}

/// `FunctionCall`: `args` is a JSON object, not text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

/// `FunctionResponse`: the result of a function call, matched by `id` when present, else by
/// `name` and order. `response` must be a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub response: Map<String, Value>,
    /// Media the function returned (a screenshot), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<FunctionResponsePart>,
}

/// `FunctionResponsePart`: inline bytes (`FunctionResponseBlob`, the fields of a `Blob`); the
/// reference's `fileData` here is not supported by the Gemini API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponsePart {
    pub inline_data: Blob,
}

/// `Tool`: we only declare functions; built-in tools (`googleSearch`, `codeExecution`) arrive
/// through extras.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// `FunctionDeclaration`. `parametersJsonSchema` takes JSON Schema as is, where `parameters`
/// would take only Google's OpenAPI subset; the two are mutually exclusive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_json_schema: Option<Value>,
}

/// `ToolConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub function_calling_config: FunctionCallingConfig,
}

/// `FunctionCallingConfig`: `mode` is `AUTO`, `ANY` or `NONE`; `allowedFunctionNames` only
/// with `ANY`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_function_names: Vec<String>,
}

/// `GenerationConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    /// JSON Schema for the answer; the alternative `responseSchema` takes only the OpenAPI
    /// subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig {
    pub fn is_empty(&self) -> bool {
        self == &GenerationConfig::default()
    }
}

/// `ThinkingConfig`. `thinkingBudget` and `thinkingLevel` must not both be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    /// `MINIMAL`, `LOW`, `MEDIUM` or `HIGH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<&'static str>,
}

/// `GenerateContentResponse`, also each chunk of a stream.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
}

/// `Candidate`. `content` is absent when the candidate was blocked.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

/// `PromptFeedback`: `blockReason` is set when the prompt itself was refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// `UsageMetadata`. The counts are disjoint: `promptTokenCount` includes cached content, but
/// `candidatesTokenCount` excludes `thoughtsTokenCount`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub cached_content_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub tool_use_prompt_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
    #[serde(default)]
    pub total_token_count: u64,
}

/// One SSE chunk of `streamGenerateContent`: a response, or an in-band `error` object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamChunk {
    #[serde(default)]
    pub error: Option<Status>,
    #[serde(flatten)]
    pub response: GenerateContentResponse,
}

/// `google.rpc.Status`, the `error` of Google's `{"error": …}` envelope, as rendered in JSON: numeric HTTP `code`, `message`, the
/// canonical `status` name and typed `details`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<Value>,
}

/// `BatchEmbedContentsRequest` body.
#[derive(Debug, Clone, Serialize)]
pub struct BatchEmbedContentsRequest {
    pub requests: Vec<EmbedContentRequest>,
}

/// `EmbedContentRequest`: `model` repeats the URL's model as `models/{model}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedContentRequest {
    pub model: String,
    pub content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u32>,
    /// Same-dialect extras (`taskType`, `title`), applied to every request of the batch.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `BatchEmbedContentsResponse`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEmbedContentsResponse {
    #[serde(default)]
    pub embeddings: Vec<ContentEmbedding>,
    #[serde(default)]
    pub usage_metadata: Option<EmbeddingUsageMetadata>,
}

/// `ContentEmbedding`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentEmbedding {
    #[serde(default)]
    pub values: Vec<f32>,
}

/// `EmbeddingUsageMetadata`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingUsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
}

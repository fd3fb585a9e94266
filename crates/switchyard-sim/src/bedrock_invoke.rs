//! Amazon Bedrock InvokeModel (`POST /model/{modelId}/invoke`) for embedding models, with the
//! request and response bodies of Bedrock's model parameter pages: Amazon Titan Text
//! Embeddings V2 (`amazon.titan-embed-text-v2…`) and G1 (`amazon.titan-embed-text-v1…`), and
//! Cohere Embed (`cohere.embed-…`). Bodies are checked as Bedrock's JSON-schema validation
//! checks them and refused in its words (`Malformed input request: #/dimensions: 100 is not a
//! valid enum value, …`). Credentials, faults, stats and the error shape are those of Converse
//! (see `bedrock`); other models' InvokeModel bodies are not simulated, and the server answers
//! their `invoke` as an unknown operation.

use std::fmt::Display;

use http::HeaderMap;
use http::header::HeaderValue;
use serde_json::{Map, Value, json};

use crate::bedrock::validation;
use crate::handler::{EmbedInput, EmbedRequest, SimError};
use crate::model::{IdGen, embedding, unnormalized_embedding};

/// Titan Text Embeddings V2's accepted `dimensions`.
const TITAN_V2_DIMENSIONS: [usize; 3] = [1024, 512, 256];
const TITAN_V2_DEFAULT_DIMENSIONS: usize = 1024;
const TITAN_G1_DIMENSIONS: usize = 1536;
const COHERE_DIMENSIONS: usize = 1024;
/// Cohere Embed v4's accepted `output_dimension`, 1536 by default.
const COHERE_V4_DIMENSIONS: [usize; 4] = [1536, 1024, 512, 256];

const TITAN_V2_FIELDS: [&str; 4] = ["inputText", "dimensions", "normalize", "embeddingTypes"];
const TITAN_G1_FIELDS: [&str; 1] = ["inputText"];
const TITAN_TYPES: [&str; 2] = ["float", "binary"];

/// `images` is a known member, refused with its own message rather than as extraneous.
const COHERE_FIELDS: [&str; 5] = [
    "texts",
    "input_type",
    "truncate",
    "embedding_types",
    "images",
];
const COHERE_INPUT_TYPES: [&str; 4] = [
    "search_document",
    "search_query",
    "classification",
    "clustering",
];
const COHERE_TRUNCATE: [&str; 3] = ["NONE", "START", "END"];
/// v4 also takes an output size and a token limit, and truncates from the left or right.
const COHERE_V4_FIELDS: [&str; 7] = [
    "texts",
    "input_type",
    "truncate",
    "embedding_types",
    "images",
    "output_dimension",
    "max_tokens",
];
const COHERE_V4_TRUNCATE: [&str; 3] = ["NONE", "LEFT", "RIGHT"];
const COHERE_TYPES: [&str; 5] = ["float", "int8", "uint8", "binary", "ubinary"];
const COHERE_MAX_TEXTS: usize = 96;
const COHERE_MAX_TEXT_CHARS: usize = 2048;

/// The embedding models whose InvokeModel bodies the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmbeddingModel {
    TitanV2,
    TitanG1,
    /// Cohere Embed v3 (English, multilingual).
    Cohere,
    /// Cohere Embed v4: an output size to choose.
    CohereV4,
}

impl EmbeddingModel {
    /// The model behind an id: a foundation-model id (`amazon.titan-embed-text-v2:0`), the same
    /// behind a geography prefix (`us.cohere.embed-v4:0`), or an ARN ending in either.
    pub(crate) fn of(model_id: &str) -> Option<Self> {
        let id = model_id.rsplit_once('/').map_or(model_id, |(_, id)| id);
        let unprefixed = id.split_once('.').map_or(id, |(_, rest)| rest);
        [id, unprefixed].into_iter().find_map(|id| {
            if id.starts_with("amazon.titan-embed-text-v2") {
                Some(Self::TitanV2)
            } else if id.starts_with("amazon.titan-embed-text-v1") {
                Some(Self::TitanG1)
            } else if id.starts_with("cohere.embed-v4") {
                Some(Self::CohereV4)
            } else if id.starts_with("cohere.embed-") {
                Some(Self::Cohere)
            } else {
                None
            }
        })
    }
}

/// What an InvokeModel embedding answer holds besides the vectors' texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvokeEmbedding {
    pub model: EmbeddingModel,
    pub dimensions: usize,
    /// Titan V2's `normalize`; always true otherwise.
    pub normalize: bool,
    /// The asked embedding types, deduplicated: Titan V2's default is `["float"]`, G1 has none,
    /// and for Cohere `None` means none were asked, which selects the `embeddings_floats`
    /// answer.
    pub types: Option<Vec<&'static str>>,
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A schema violation as Bedrock's InvokeModel validation words it; `at` is a JSON pointer in
/// its `#/…` form.
fn malformed(at: &str, problem: impl Display) -> SimError {
    validation(format!(
        "Malformed input request: {at}: {problem}, please reformat your input and try again."
    ))
}

fn required(key: &str) -> SimError {
    malformed("#", format!("required key [{key}] not found"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

fn wrong_type(at: &str, expected: &str, found: &Value) -> SimError {
    malformed(
        at,
        format!("expected type: {expected}, found: {}", type_name(found)),
    )
}

/// A string value as the validator shows it (unquoted), any other as JSON.
fn not_in_enum(at: &str, value: &Value) -> SimError {
    let shown = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    malformed(at, format!("{shown} is not a valid enum value"))
}

fn reject_extraneous(obj: &Map<String, Value>, known: &[&str]) -> Result<(), SimError> {
    match obj.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(malformed(
            "#",
            format!("extraneous key [{key}] is not permitted"),
        )),
        None => Ok(()),
    }
}

/// An optional enum string member.
fn enum_member<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, SimError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(other) => Err(not_in_enum(&format!("#/{key}"), other)),
    }
}

/// A list of embedding types (`embeddingTypes`, `embedding_types`): at least one, each from
/// `allowed`; repeats count once.
fn embedding_types(
    obj: &Map<String, Value>,
    key: &str,
    allowed: &[&'static str],
) -> Result<Option<Vec<&'static str>>, SimError> {
    let at = format!("#/{key}");
    let items = match obj.get(key) {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type(&at, "JSONArray", other)),
    };
    if items.is_empty() {
        return Err(malformed(&at, "expected minimum item count: 1, found: 0"));
    }
    let mut types = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(known) = allowed.iter().find(|t| item.as_str() == Some(**t)) else {
            return Err(not_in_enum(&format!("{at}/{i}"), item));
        };
        if !types.contains(known) {
            types.push(*known);
        }
    }
    Ok(Some(types))
}

/// Parses an InvokeModel body for the embedding model `model_id` (decoded from the path).
pub(crate) fn parse(body: Value, model_id: &str) -> Result<EmbedRequest, SimError> {
    let Some(model) = EmbeddingModel::of(model_id) else {
        // The server answers other models before their body is read; this keeps the parser
        // total.
        return Err(validation(format!(
            "The simulator's InvokeModel serves only Amazon Titan Text Embeddings and Cohere \
             Embed models, not {model_id}."
        )));
    };
    let Value::Object(obj) = body else {
        return Err(wrong_type("#", "JSONObject", &body));
    };
    let (invoke, texts) = match model {
        EmbeddingModel::TitanV2 | EmbeddingModel::TitanG1 => parse_titan(&obj, model)?,
        EmbeddingModel::Cohere | EmbeddingModel::CohereV4 => parse_cohere(&obj, model)?,
    };
    let inputs = texts
        .into_iter()
        .map(|text| EmbedInput::text(text.to_owned()))
        .collect();
    Ok(EmbedRequest {
        model: model_id.to_owned(),
        inputs,
        dimensions: Some(invoke.dimensions),
        base64: false,
        bedrock: Some(invoke),
    })
}

/// A Titan body: the embedding's settings and its one text.
fn parse_titan(
    obj: &Map<String, Value>,
    model: EmbeddingModel,
) -> Result<(InvokeEmbedding, Vec<&str>), SimError> {
    let v2 = model == EmbeddingModel::TitanV2;
    let known: &[&str] = if v2 {
        &TITAN_V2_FIELDS
    } else {
        &TITAN_G1_FIELDS
    };
    reject_extraneous(obj, known)?;
    let text = match obj.get("inputText") {
        None => return Err(required("inputText")),
        Some(Value::String(text)) if text.is_empty() => {
            return Err(malformed("#/inputText", "expected minLength: 1, actual: 0"));
        }
        Some(Value::String(text)) => text.as_str(),
        Some(other) => return Err(wrong_type("#/inputText", "String", other)),
    };
    if !v2 {
        let invoke = InvokeEmbedding {
            model,
            dimensions: TITAN_G1_DIMENSIONS,
            normalize: true,
            types: None,
        };
        return Ok((invoke, vec![text]));
    }
    let dimensions = match obj.get("dimensions") {
        None => TITAN_V2_DEFAULT_DIMENSIONS,
        Some(value) if !value.is_i64() && !value.is_u64() => {
            return Err(wrong_type("#/dimensions", "Integer", value));
        }
        Some(value) => match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if TITAN_V2_DIMENSIONS.contains(&n) => n,
            _ => return Err(not_in_enum("#/dimensions", value)),
        },
    };
    let normalize = match obj.get("normalize") {
        None => true,
        Some(Value::Bool(normalize)) => *normalize,
        Some(other) => return Err(wrong_type("#/normalize", "Boolean", other)),
    };
    let types = embedding_types(obj, "embeddingTypes", &TITAN_TYPES)?;
    let invoke = InvokeEmbedding {
        model,
        dimensions,
        normalize,
        types: Some(types.unwrap_or_else(|| vec!["float"])),
    };
    Ok((invoke, vec![text]))
}

fn images_refused() -> SimError {
    validation(
        "The simulator embeds texts only: send `texts` with a text `input_type` instead of \
         `images`.",
    )
}

/// A Cohere body: the embeddings' settings and the texts, in order.
fn parse_cohere(
    obj: &Map<String, Value>,
    model: EmbeddingModel,
) -> Result<(InvokeEmbedding, Vec<&str>), SimError> {
    let v4 = model == EmbeddingModel::CohereV4;
    if v4 {
        reject_extraneous(obj, &COHERE_V4_FIELDS)?;
    } else {
        reject_extraneous(obj, &COHERE_FIELDS)?;
    }
    if obj.contains_key("images") || obj.get("input_type").and_then(Value::as_str) == Some("image")
    {
        return Err(images_refused());
    }
    let texts = match obj.get("texts") {
        None => return Err(required("texts")),
        Some(Value::Array(texts)) => texts,
        Some(other) => return Err(wrong_type("#/texts", "JSONArray", other)),
    };
    if texts.len() > COHERE_MAX_TEXTS {
        return Err(malformed(
            "#/texts",
            format!(
                "expected maximum item count: {COHERE_MAX_TEXTS}, found: {}",
                texts.len()
            ),
        ));
    }
    let mut strings = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let at = format!("#/texts/{i}");
        let Some(text) = text.as_str() else {
            return Err(wrong_type(&at, "String", text));
        };
        let chars = text.chars().count();
        if chars > COHERE_MAX_TEXT_CHARS {
            return Err(malformed(
                &at,
                format!("expected maxLength: {COHERE_MAX_TEXT_CHARS}, actual: {chars}"),
            ));
        }
        strings.push(text);
    }
    if enum_member(obj, "input_type", &COHERE_INPUT_TYPES)?.is_none() {
        return Err(required("input_type"));
    }
    // 2,048 characters make at most 512 tokens, Cohere's input limit, so no mode ever cuts.
    enum_member(
        obj,
        "truncate",
        if v4 {
            &COHERE_V4_TRUNCATE
        } else {
            &COHERE_TRUNCATE
        },
    )?;
    let dimensions = if v4 {
        match obj.get("output_dimension") {
            None => COHERE_V4_DIMENSIONS[0],
            Some(value) => match value.as_u64() {
                Some(d) if COHERE_V4_DIMENSIONS.contains(&(d as usize)) => d as usize,
                Some(_) => return Err(not_in_enum("#/output_dimension", value)),
                None => return Err(wrong_type("#/output_dimension", "Integer", value)),
            },
        }
    } else {
        COHERE_DIMENSIONS
    };
    if let Some(limit) = obj.get("max_tokens")
        && limit.as_u64().is_none()
    {
        return Err(wrong_type("#/max_tokens", "Integer", limit));
    }
    let invoke = InvokeEmbedding {
        model,
        dimensions,
        normalize: true,
        types: embedding_types(obj, "embedding_types", &COHERE_TYPES)?,
    };
    Ok((invoke, strings))
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// The answer body for `inputs` (one for Titan, the texts in order for Cohere).
pub(crate) fn render(ids: &IdGen, invoke: &InvokeEmbedding, inputs: &[EmbedInput]) -> Value {
    let vector = |text: &str| {
        if invoke.normalize {
            embedding(text, invoke.dimensions)
        } else {
            unnormalized_embedding(text, invoke.dimensions)
        }
    };
    match invoke.model {
        EmbeddingModel::Cohere | EmbeddingModel::CohereV4 => {
            render_cohere(ids, invoke, inputs, vector)
        }
        EmbeddingModel::TitanV2 | EmbeddingModel::TitanG1 => {
            // A Titan request has exactly one input.
            let (text, tokens) = inputs
                .first()
                .map_or(("", 0), |input| (input.text.as_str(), input.tokens));
            let floats = vector(text);
            let mut body = json!({
                "embedding": floats,
                "inputTextTokenCount": tokens,
            });
            // V2 always answers `embeddingsByType`; G1 has none.
            if let Some(types) = &invoke.types {
                let by_type: Map<String, Value> = types
                    .iter()
                    .map(|kind| {
                        let values = match *kind {
                            "binary" => json!(signs(&floats)),
                            _ => json!(floats),
                        };
                        ((*kind).to_owned(), values)
                    })
                    .collect();
                body["embeddingsByType"] = Value::Object(by_type);
            }
            body
        }
    }
}

fn render_cohere(
    ids: &IdGen,
    invoke: &InvokeEmbedding,
    inputs: &[EmbedInput],
    vector: impl Fn(&str) -> Vec<f32>,
) -> Value {
    let floats: Vec<Vec<f32>> = inputs.iter().map(|input| vector(&input.text)).collect();
    let texts: Vec<&str> = inputs.iter().map(|input| input.text.as_str()).collect();
    let Some(types) = &invoke.types else {
        return json!({
            "id": ids.uuid(),
            "response_type": "embeddings_floats",
            "embeddings": floats,
            "texts": texts,
        });
    };
    let by_type: Map<String, Value> = types
        .iter()
        .map(|kind| {
            let converted: Value = match *kind {
                "int8" => json!(floats.iter().map(|v| int8(v)).collect::<Vec<_>>()),
                "uint8" => json!(
                    floats
                        .iter()
                        .map(|v| int8(v).into_iter().map(|q| q + 128).collect())
                        .collect::<Vec<Vec<i32>>>()
                ),
                "ubinary" => json!(floats.iter().map(|v| packed_signs(v)).collect::<Vec<_>>()),
                "binary" => json!(
                    floats
                        .iter()
                        .map(|v| packed_signs(v).into_iter().map(|b| b - 128).collect())
                        .collect::<Vec<Vec<i32>>>()
                ),
                _ => json!(floats),
            };
            ((*kind).to_owned(), converted)
        })
        .collect();
    json!({
        "id": ids.uuid(),
        "response_type": "embeddings_by_type",
        "embeddings": by_type,
        "texts": texts,
    })
}

/// Titan's binary embedding: 1 for a positive component, else 0.
fn signs(values: &[f32]) -> Vec<u8> {
    values.iter().map(|v| u8::from(*v > 0.0)).collect()
}

/// Cohere's `int8`: each component scaled by the largest magnitude onto `-127..=127`.
fn int8(values: &[f32]) -> Vec<i32> {
    let largest = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    values
        .iter()
        .map(|v| {
            if largest > 0.0 {
                (v / largest * 127.0).round() as i32
            } else {
                0
            }
        })
        .collect()
}

/// Cohere's `ubinary`: the components' signs packed eight to a byte, the first in the high bit.
fn packed_signs(values: &[f32]) -> Vec<i32> {
    values
        .chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(|(bit, _)| 0x80 >> bit)
                .sum()
        })
        .collect()
}

/// The token counts InvokeModel reports in headers; embeddings produce no output tokens.
pub(crate) fn insert_token_headers(headers: &mut HeaderMap, input_tokens: u64) {
    headers.insert(
        "x-amzn-bedrock-input-token-count",
        HeaderValue::from(input_tokens),
    );
    headers.insert("x-amzn-bedrock-output-token-count", HeaderValue::from(0u64));
}

//! Bedrock embeddings through InvokeModel (`POST /model/{id}/invoke`), whose body is the model
//! family's own: Amazon Titan Text Embeddings (one text a call, `inputText`) and Cohere Embed
//! (up to 96 `texts`). Other families have no embeddings here.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::canonical::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse, Usage};
use crate::error::DecodeError;

/// Texts one Cohere Embed call takes.
const COHERE_TEXTS_PER_CALL: usize = 96;
/// The Cohere input type sent when the client names none: OpenAI's API has no such field, and
/// embeddings kept for search are the common use.
const DEFAULT_INPUT_TYPE: &str = "search_document";

/// The embedding model families InvokeModel is asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// `amazon.titan-embed-text-v2…`: `dimensions` 256, 512 or 1024.
    TitanV2,
    /// `amazon.titan-embed-text-v1`, Titan Embeddings G1: text only.
    TitanG1,
    /// `cohere.embed-v4…`: `output_dimension`.
    CohereV4,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`.
    CohereV3,
}

impl Family {
    /// The family of a model id (an inference profile's region prefix allowed).
    pub(super) fn of(model: &str) -> Option<Self> {
        if model.contains("amazon.titan-embed-text-v2") {
            Some(Self::TitanV2)
        } else if model.contains("amazon.titan-embed-text-v1")
            || model.contains("amazon.titan-embed-g1-text")
        {
            Some(Self::TitanG1)
        } else if model.contains("cohere.embed-v4") {
            Some(Self::CohereV4)
        } else if model.contains("cohere.embed-") {
            Some(Self::CohereV3)
        } else {
            None
        }
    }

    pub(super) fn texts_per_call(self) -> usize {
        match self {
            Self::TitanV2 | Self::TitanG1 => 1,
            Self::CohereV4 | Self::CohereV3 => COHERE_TEXTS_PER_CALL,
        }
    }
}

/// The InvokeModel body for `request` (at most `texts_per_call` inputs: the gateway splits).
pub(super) fn build_body(request: &EmbeddingRequest, model: &str) -> Result<Value, DecodeError> {
    let family = Family::of(model).ok_or_else(|| {
        DecodeError::new(
            format!(
                "Bedrock embeddings are served for Amazon Titan Text Embeddings and Cohere Embed \
                 models; `{model}` is neither"
            ),
            Some("model"),
        )
    })?;
    let texts = match &request.input {
        EmbeddingInput::Texts(texts) => texts,
        EmbeddingInput::Tokens(_) => {
            return Err(DecodeError::new(
                "Bedrock embeds text only; token-array inputs are not supported",
                Some("input"),
            ));
        }
    };
    if texts.is_empty() || texts.len() > family.texts_per_call() {
        return Err(DecodeError::new(
            format!(
                "one call to {model} embeds 1 to {} texts",
                family.texts_per_call()
            ),
            Some("input"),
        ));
    }
    let no_dimensions = |family: &str| {
        DecodeError::new(
            format!("{family} models on Bedrock have one size of embedding: leave out dimensions"),
            Some("dimensions"),
        )
    };
    let mut body = Map::new();
    match family {
        Family::TitanV2 | Family::TitanG1 => {
            body.insert("inputText".into(), json!(texts[0]));
            match (family, request.dimensions) {
                (Family::TitanV2, Some(d)) => {
                    body.insert("dimensions".into(), json!(d));
                }
                (_, Some(_)) => return Err(no_dimensions("Titan Embeddings G1")),
                _ => {}
            }
        }
        Family::CohereV4 | Family::CohereV3 => {
            body.insert("texts".into(), json!(texts));
            // Cohere's own field, passed on when an OpenAI client adds it.
            let input_type = request
                .extras
                .fields
                .get("input_type")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_INPUT_TYPE);
            body.insert("input_type".into(), json!(input_type));
            body.insert("embedding_types".into(), json!(["float"]));
            match (family, request.dimensions) {
                (Family::CohereV4, Some(d)) => {
                    body.insert("output_dimension".into(), json!(d));
                }
                (_, Some(_)) => return Err(no_dimensions("Cohere Embed v3")),
                _ => {}
            }
        }
    }
    Ok(Value::Object(body))
}

/// Titan's `{embedding, inputTextTokenCount}` or Cohere's `{embeddings}` (a list of vectors, or
/// by type with `float` among them).
pub(super) fn parse(body: &[u8]) -> Result<EmbeddingResponse, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        embedding: Option<Vec<f32>>,
        input_text_token_count: Option<u64>,
        #[serde(rename = "embeddings")]
        embeddings: Option<CohereEmbeddings>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CohereEmbeddings {
        Floats(Vec<Vec<f32>>),
        ByType { float: Vec<Vec<f32>> },
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let vectors = match (answer.embedding, answer.embeddings) {
        (Some(one), _) => vec![one],
        (None, Some(CohereEmbeddings::Floats(all) | CohereEmbeddings::ByType { float: all })) => {
            all
        }
        (None, None) => return Err("no `embedding` or `embeddings`".into()),
    };
    Ok(EmbeddingResponse {
        model: String::new(),
        vectors,
        usage: answer.input_text_token_count.map(|tokens| Usage {
            input_tokens: tokens,
            ..Usage::default()
        }),
    })
}

use serde_json::{Value, json};

use super::bedrock::{AMZ_DATE, SIGNED_HEADERS, credential, refusal, signature, sigv4};
use super::{Reply, client, send, start, start_default, with_json};
use crate::model::embedding;
use crate::{FaultRule, SimConfig, SimServer};

const TITAN_V2: &str = "amazon.titan-embed-text-v2:0";
const TITAN_G1: &str = "amazon.titan-embed-text-v1";
const COHERE: &str = "cohere.embed-english-v3";

/// The `invoke` URL with the model id percent-encoded as AWS clients encode it.
fn invoke_url(sim: &SimServer, model_id: &str) -> String {
    let encoded = model_id.replace(':', "%3A").replace('/', "%2F");
    format!("{}/model/{encoded}/invoke", sim.base_url())
}

/// InvokeModel with a Bedrock API key.
fn invoke(sim: &SimServer, model_id: &str, body: &Value) -> reqwest::RequestBuilder {
    with_json(
        client()
            .post(invoke_url(sim, model_id))
            .bearer_auth("bedrock-api-key"),
        body,
    )
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn length(vector: &[f32]) -> f32 {
    vector.iter().map(|v| v * v).sum::<f32>().sqrt()
}

fn tokens(text: &str) -> u64 {
    text.chars().count().div_ceil(4) as u64
}

fn token_headers(reply: &Reply) -> (Option<&str>, Option<&str>) {
    (
        reply.header("x-amzn-bedrock-input-token-count"),
        reply.header("x-amzn-bedrock-output-token-count"),
    )
}

// ---------------------------------------------------------------------------------------------
// Titan Text Embeddings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn titan_v2_embeds_at_the_asked_dimensions() {
    let sim = start_default().await;
    let text = "The quick brown fox jumps";
    let reply = send(invoke(
        &sim,
        TITAN_V2,
        &json!({ "inputText": text, "dimensions": 256 }),
    ))
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let count = tokens(text).to_string();
    assert_eq!(token_headers(&reply), (Some(count.as_str()), Some("0")));
    let body = reply.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["embedding", "embeddingsByType", "inputTextTokenCount"]
    );
    assert_eq!(body["inputTextTokenCount"], tokens(text));
    let vector = floats(&body["embedding"]);
    assert_eq!(vector, embedding(text, 256));
    assert!((length(&vector) - 1.0).abs() < 1e-4);
    // `embeddingsByType` is always there, with the float vector when no type is asked.
    assert_eq!(
        body["embeddingsByType"],
        json!({ "float": body["embedding"] })
    );

    // 1024 by default, and the same text always gives the same vector.
    let plain = send(invoke(&sim, TITAN_V2, &json!({ "inputText": text })))
        .await
        .json();
    assert_eq!(floats(&plain["embedding"]), embedding(text, 1024));
    let again = send(invoke(&sim, TITAN_V2, &json!({ "inputText": text })))
        .await
        .json();
    assert_eq!(again["embedding"], plain["embedding"]);
}

#[tokio::test]
async fn titan_v2_answers_the_asked_types_and_normalization() {
    let sim = start_default().await;
    let body = send(invoke(
        &sim,
        TITAN_V2,
        &json!({ "inputText": "binary please", "dimensions": 512, "embeddingTypes": ["binary", "float"] }),
    ))
    .await
    .json();
    let by_type = body["embeddingsByType"].as_object().unwrap();
    assert_eq!(by_type.len(), 2);
    let float = floats(&by_type["float"]);
    let bits: Vec<u64> = by_type["binary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .collect();
    assert_eq!(bits.len(), 512);
    let signs: Vec<u64> = float.iter().map(|v| u64::from(*v > 0.0)).collect();
    assert_eq!(bits, signs);
    // `embedding` is the float vector whatever types are asked.
    assert_eq!(floats(&body["embedding"]), float);

    let binary_only = send(invoke(
        &sim,
        TITAN_V2,
        &json!({ "inputText": "binary please", "dimensions": 512, "embeddingTypes": ["binary"] }),
    ))
    .await
    .json();
    let keys: Vec<&String> = binary_only["embeddingsByType"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["binary"]);

    // Without normalization the vector keeps its direction but not unit length.
    let raw = send(invoke(
        &sim,
        TITAN_V2,
        &json!({ "inputText": "binary please", "dimensions": 512, "normalize": false }),
    ))
    .await
    .json();
    let raw = floats(&raw["embedding"]);
    let raw_length = length(&raw);
    assert!((raw_length - 1.0).abs() > 0.1, "{raw_length}");
    let cosine: f32 = raw.iter().zip(&float).map(|(a, b)| a * b).sum::<f32>() / raw_length;
    assert!((cosine - 1.0).abs() < 1e-4, "{cosine}");
}

#[tokio::test]
async fn titan_g1_takes_only_input_text() {
    let sim = start_default().await;
    let reply = send(invoke(
        &sim,
        TITAN_G1,
        &json!({ "inputText": "hello there" }),
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(token_headers(&reply), (Some("3"), Some("0")));
    let body = reply.json();
    assert_eq!(body.as_object().unwrap().len(), 2);
    assert_eq!(body["inputTextTokenCount"], 3);
    assert_eq!(floats(&body["embedding"]), embedding("hello there", 1536));

    // V2's parameters are extraneous to G1.
    let reply = send(invoke(
        &sim,
        TITAN_G1,
        &json!({ "inputText": "hello", "dimensions": 256 }),
    ))
    .await;
    let (status, name, message) = refusal(&reply);
    assert_eq!((status, name.as_str()), (400, "ValidationException"));
    assert!(
        message.contains("extraneous key [dimensions] is not permitted"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Cohere Embed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cohere_embeds_texts_in_order() {
    let sim = start_default().await;
    let texts = ["first text", "the second one", "third"];
    let reply = send(invoke(
        &sim,
        COHERE,
        &json!({ "texts": texts, "input_type": "search_document", "truncate": "END" }),
    ))
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let total: u64 = texts.iter().map(|t| tokens(t)).sum();
    let total = total.to_string();
    assert_eq!(token_headers(&reply), (Some(total.as_str()), Some("0")));
    let body = reply.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["embeddings", "id", "response_type", "texts"]);
    assert_eq!(body["response_type"], "embeddings_floats");
    assert_eq!(body["texts"], json!(texts));
    let embeddings = body["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 3);
    for (vector, text) in embeddings.iter().zip(texts) {
        assert_eq!(floats(vector), embedding(text, 1024));
    }
    // A UUID, as Cohere's ids are.
    let id = body["id"].as_str().unwrap();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
    assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));

    // A v4 id behind a geography prefix speaks the same body; no texts are allowed too.
    let body = send(invoke(
        &sim,
        "us.cohere.embed-v4:0",
        &json!({ "texts": [], "input_type": "search_query" }),
    ))
    .await
    .json();
    assert_eq!(body["embeddings"], json!([]));
    assert_ne!(body["id"].as_str().unwrap(), id);

    // v4 chooses its size (1,536 by default); v3 knows no such field.
    let sized = |model: &str, dimension: Option<u64>| {
        let mut body = json!({ "texts": ["alpha"], "input_type": "search_document" });
        if let Some(d) = dimension {
            body["output_dimension"] = json!(d);
        }
        send(invoke(&sim, model, &body))
    };
    let body = sized("cohere.embed-v4:0", None).await.json();
    assert_eq!(floats(&body["embeddings"][0]), embedding("alpha", 1536));
    let body = sized("cohere.embed-v4:0", Some(256)).await.json();
    assert_eq!(floats(&body["embeddings"][0]), embedding("alpha", 256));
    assert_eq!(sized("cohere.embed-v4:0", Some(300)).await.status, 400);
    assert_eq!(sized(COHERE, Some(256)).await.status, 400);
}

#[tokio::test]
async fn cohere_answers_embeddings_by_type_when_types_are_asked() {
    let sim = start_default().await;
    let texts = ["alpha", "beta"];
    let body = send(invoke(
        &sim,
        COHERE,
        &json!({ "texts": texts, "input_type": "classification", "embedding_types": ["float"] }),
    ))
    .await
    .json();
    assert_eq!(body["response_type"], "embeddings_by_type");
    let by_type = body["embeddings"].as_object().unwrap();
    assert_eq!(by_type.len(), 1);
    let float = by_type["float"].as_array().unwrap();
    assert_eq!(float.len(), 2);
    assert_eq!(floats(&float[1]), embedding("beta", 1024));
    assert_eq!(body["texts"], json!(texts));

    let body = send(invoke(
        &sim,
        COHERE,
        &json!({
            "texts": texts,
            "input_type": "clustering",
            "embedding_types": ["int8", "uint8", "binary", "ubinary"]
        }),
    ))
    .await
    .json();
    let by_type = body["embeddings"].as_object().unwrap();
    assert_eq!(by_type.len(), 4);
    let ints = |kind: &str, i: usize| -> Vec<i64> {
        by_type[kind][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let alpha = embedding("alpha", 1024);
    let int8 = ints("int8", 0);
    assert_eq!(int8.len(), 1024);
    assert!(int8.iter().all(|q| (-127..=127).contains(q)));
    assert!(int8.iter().any(|q| q.abs() == 127));
    assert!(
        int8.iter()
            .zip(&alpha)
            .all(|(q, v)| *q == 0 || (*q > 0) == (*v > 0.0))
    );
    let uint8 = ints("uint8", 0);
    assert!(uint8.iter().zip(&int8).all(|(u, q)| *u == q + 128));
    let ubinary = ints("ubinary", 0);
    assert_eq!(ubinary.len(), 128);
    let first_byte = alpha[..8]
        .iter()
        .fold(0, |byte, v| (byte << 1) | i64::from(*v > 0.0));
    assert_eq!(ubinary[0], first_byte);
    let binary = ints("binary", 0);
    assert!(binary.iter().zip(&ubinary).all(|(b, u)| *b == u - 128));
    assert_ne!(ints("ubinary", 1), ubinary);
}

// ---------------------------------------------------------------------------------------------
// Validation, other models
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_bodies_get_validation_exceptions() {
    let sim = start_default().await;
    let many: Vec<String> = (0..97).map(|i| format!("text {i}")).collect();
    let cases = [
        (
            TITAN_V2,
            json!({ "dimensions": 256 }),
            "#: required key [inputText] not found",
        ),
        (
            TITAN_V2,
            json!({ "inputText": 7 }),
            "#/inputText: expected type: String, found: Integer",
        ),
        (
            TITAN_V2,
            json!({ "inputText": "" }),
            "#/inputText: expected minLength: 1",
        ),
        (
            TITAN_V2,
            json!({ "inputText": "x", "dimensions": 384 }),
            "#/dimensions: 384 is not a valid enum value",
        ),
        (
            TITAN_V2,
            json!({ "inputText": "x", "dimensions": "256" }),
            "#/dimensions: expected type: Integer",
        ),
        (
            TITAN_V2,
            json!({ "inputText": "x", "normalize": "yes" }),
            "#/normalize: expected type: Boolean",
        ),
        (
            TITAN_V2,
            json!({ "inputText": "x", "embeddingTypes": ["int8"] }),
            "#/embeddingTypes/0: int8 is not a valid enum value",
        ),
        (
            TITAN_V2,
            json!({ "inputText": "x", "foo": 1 }),
            "#: extraneous key [foo] is not permitted",
        ),
        (
            TITAN_V2,
            json!(["x"]),
            "#: expected type: JSONObject, found: JSONArray",
        ),
        (
            COHERE,
            json!({ "input_type": "search_query" }),
            "#: required key [texts] not found",
        ),
        (
            COHERE,
            json!({ "texts": many, "input_type": "search_query" }),
            "#/texts: expected maximum item count: 96, found: 97",
        ),
        (
            COHERE,
            json!({ "texts": ["a".repeat(2049)], "input_type": "search_query" }),
            "#/texts/0: expected maxLength: 2048, actual: 2049",
        ),
        (
            COHERE,
            json!({ "texts": ["a", 2], "input_type": "search_query" }),
            "#/texts/1: expected type: String",
        ),
        (
            COHERE,
            json!({ "texts": ["a"] }),
            "#: required key [input_type] not found",
        ),
        (
            COHERE,
            json!({ "texts": ["a"], "input_type": "search" }),
            "#/input_type: search is not a valid enum value",
        ),
        (
            COHERE,
            json!({ "texts": ["a"], "input_type": "clustering", "truncate": "MIDDLE" }),
            "#/truncate: MIDDLE is not a valid enum value",
        ),
        (
            COHERE,
            json!({ "texts": ["a"], "input_type": "clustering", "embedding_types": ["float", "int4"] }),
            "#/embedding_types/1: int4 is not a valid enum value",
        ),
        (
            COHERE,
            json!({ "texts": ["a"], "input_type": "clustering", "foo": true }),
            "#: extraneous key [foo] is not permitted",
        ),
        (
            COHERE,
            json!({ "images": ["data:image/png;base64,AAAA"], "input_type": "image" }),
            "embeds texts only",
        ),
    ];
    for (model, body, expected) in &cases {
        let reply = send(invoke(&sim, model, body)).await;
        let (status, name, message) = refusal(&reply);
        assert_eq!(
            (status, name.as_str()),
            (400, "ValidationException"),
            "{body}"
        );
        assert!(message.contains(expected), "{body}: {message}");
        assert!(
            message.starts_with("Malformed input request: ") || *expected == "embeds texts only"
        );
        assert_eq!(token_headers(&reply), (None, None));
    }
    let reply = send(
        client()
            .post(invoke_url(&sim, COHERE))
            .bearer_auth("k")
            .body("{not json"),
    )
    .await;
    assert_eq!(refusal(&reply).1, "ValidationException");
    assert_eq!(sim.stats().input_tokens, 0);
}

#[tokio::test]
async fn invoke_serves_only_embedding_models() {
    let sim = start_default().await;
    let claude = "anthropic.claude-3-haiku-20240307-v1:0";
    let reply = send(invoke(
        &sim,
        claude,
        &json!({ "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [] }),
    ))
    .await;
    let (status, name, message) = refusal(&reply);
    assert_eq!((status, name.as_str()), (404, "UnknownOperationException"));
    assert!(
        message.contains(&format!("not `invoke` for {claude}")),
        "{message}"
    );
    assert!(message.contains("cohere.embed-"), "{message}");
    // Embedding models do not stream on Bedrock, nor here.
    let url = invoke_url(&sim, COHERE).replace("/invoke", "/invoke-with-response-stream");
    let reply = send(client().post(url).bearer_auth("k").body("{}")).await;
    assert_eq!(refusal(&reply).1, "UnknownOperationException");
    assert_eq!(sim.stats().requests, 0);
}

// ---------------------------------------------------------------------------------------------
// Stats, faults, credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stats_count_invocations_as_embeddings() {
    let sim = start_default().await;
    send(invoke(&sim, TITAN_V2, &json!({ "inputText": "12345678" }))).await;
    send(invoke(
        &sim,
        COHERE,
        &json!({ "texts": ["abcd", "abcde"], "input_type": "search_query" }),
    ))
    .await;
    send(invoke(&sim, COHERE, &json!({ "texts": ["a"] }))).await;

    let stats = sim.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.by_endpoint["bedrock_embeddings"], 3);
    assert_eq!(stats.by_model[TITAN_V2], 1);
    assert_eq!(stats.by_model[COHERE], 2);
    // 2 for Titan, 1 + 2 for Cohere; the refused request counts none.
    assert_eq!(stats.input_tokens, 5);
    assert_eq!(stats.output_tokens, 0);
    let entry = &stats.log[0];
    assert_eq!(entry.model, TITAN_V2);
    assert_eq!(entry.provider_kind, "bedrock");
    assert_eq!(entry.endpoint, "embeddings");
    assert_eq!((entry.status, entry.input_tokens), (200, 2));
    assert_eq!((stats.log[1].status, stats.log[1].input_tokens), (200, 3));
    assert_eq!(stats.log[2].status, 400);
}

#[tokio::test]
async fn faults_apply_to_invocations() {
    let sim = start_default().await;
    let titan = json!({ "inputText": "hello" });
    let reply = send(invoke(&sim, TITAN_V2, &titan).header("x-sim-fault", "status=429")).await;
    assert_eq!(
        refusal(&reply),
        (
            429,
            "ThrottlingException".to_owned(),
            "Too many requests, please wait before trying again.".to_owned()
        )
    );
    assert_eq!(token_headers(&reply), (None, None));
    let reply = send(invoke(&sim, TITAN_V2, &titan).header("x-sim-fault", "context_length")).await;
    assert_eq!(
        refusal(&reply),
        (
            400,
            "ValidationException".to_owned(),
            "Input is too long for requested model.".to_owned()
        )
    );

    // Rules match the decoded model id by glob.
    sim.add_faults([FaultRule::new("cohere.embed-*", "status=503".parse().unwrap()).times(1)]);
    let cohere = json!({ "texts": ["hi"], "input_type": "search_query" });
    let reply = send(invoke(&sim, "cohere.embed-v4:0", &cohere)).await;
    assert_eq!(refusal(&reply).1, "ServiceUnavailableException");
    assert_eq!(
        send(invoke(&sim, "cohere.embed-v4:0", &cohere))
            .await
            .status,
        200
    );
    assert_eq!(send(invoke(&sim, TITAN_V2, &titan)).await.status, 200);

    let stats = sim.stats();
    assert_eq!(stats.faults_injected, 3);
    assert_eq!(stats.log[0].fault.as_deref(), Some("status=429"));
    assert_eq!(stats.log[2].fault.as_deref(), Some("status=503"));
}

#[tokio::test]
async fn credentials_are_checked_as_for_converse() {
    let sim = start(SimConfig {
        api_keys: vec!["ABSKgood".into(), "AKIDGOOD".into()],
        ..SimConfig::default()
    })
    .await;
    let body = json!({ "inputText": "signed" });
    let unsigned = || with_json(client().post(invoke_url(&sim, TITAN_V2)), &body);

    let reply = send(unsigned()).await;
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/")
    );
    assert_eq!(
        reply.json(),
        json!({ "Message": "Authorization header is missing" })
    );
    let reply = send(unsigned().header("authorization", "Basic dXNlcjpwYXNz")).await;
    assert_eq!(refusal(&reply).1, "IncompleteSignatureException");
    let reply = send(unsigned().bearer_auth("ABSKother")).await;
    assert_eq!(refusal(&reply).1, "UnrecognizedClientException");
    assert_eq!(send(unsigned().bearer_auth("ABSKgood")).await.status, 200);

    let signed = sigv4(&credential("AKIDGOOD"), SIGNED_HEADERS, &signature());
    let reply = send(
        unsigned()
            .header("authorization", &signed)
            .header("x-amz-date", AMZ_DATE),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = send(unsigned().header("authorization", &signed)).await;
    assert_eq!(refusal(&reply).1, "IncompleteSignatureException");
    let reply = send(
        unsigned()
            .header("authorization", &signed)
            .header("x-amz-date", AMZ_DATE)
            .header("x-amz-content-sha256", "0".repeat(64)),
    )
    .await;
    assert_eq!(refusal(&reply).1, "InvalidSignatureException");
    // Only the two accepted requests count their input.
    assert_eq!(sim.stats().input_tokens, 2 * tokens("signed"));
}

#[tokio::test]
async fn open_simulators_need_no_credential() {
    let sim = start(SimConfig {
        require_auth: false,
        ..SimConfig::default()
    })
    .await;
    let reply = send(with_json(
        client().post(invoke_url(&sim, TITAN_G1)),
        &json!({ "inputText": "open" }),
    ))
    .await;
    assert_eq!(reply.status, 200);
}

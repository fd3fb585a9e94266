use serde_json::{Value, json};
use sha2::Digest;

use super::{
    bedrock, bedrock_url, client, read_until_error, send, start, start_default, with_json,
};
use crate::{FaultRule, ReplyRule, SimConfig, event_stream_frame};

/// An inference-profile id: its `:` travels as `%3A`.
const MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn hello() -> Value {
    json!({
        "system": [{ "text": "Be brief." }],
        "messages": [{ "role": "user", "content": [{ "text": "Hello Bedrock, tell me something" }] }],
        "inferenceConfig": { "maxTokens": 1024 }
    })
}

fn weather_tools() -> Value {
    json!({
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "inputSchema": { "json": {
                        "type": "object",
                        "properties": { "city": { "type": "string" }, "days": { "type": "number" } },
                        "required": ["city", "days"]
                    } }
                }
            },
            {
                "toolSpec": {
                    "name": "get_time",
                    "inputSchema": { "json": {
                        "type": "object",
                        "properties": { "zone": { "type": "string" } },
                        "required": ["zone"]
                    } }
                }
            }
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// An event-stream decoder of its own, so the simulator's framing is checked, not trusted.
// ---------------------------------------------------------------------------------------------

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[derive(Debug)]
struct Frame {
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!("payload is not JSON ({e}): {:?}", self.payload);
        })
    }
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}

/// Decodes whole messages, checking both CRCs and that every header is a string.
fn decode(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 16, "a truncated message: {bytes:?}");
        let total = be32(&bytes[0..]) as usize;
        let headers_len = be32(&bytes[4..]) as usize;
        assert_eq!(be32(&bytes[8..]), crc32(&bytes[..8]), "prelude CRC");
        assert!(total >= 16 + headers_len && total <= bytes.len());
        let message = &bytes[..total];
        assert_eq!(
            be32(&message[total - 4..]),
            crc32(&message[..total - 4]),
            "message CRC"
        );
        let mut rest = &message[12..12 + headers_len];
        let mut headers = Vec::new();
        while !rest.is_empty() {
            let name_len = rest[0] as usize;
            let name = String::from_utf8(rest[1..1 + name_len].to_vec()).unwrap();
            rest = &rest[1 + name_len..];
            assert_eq!(rest[0], 7, "header {name} is not a string");
            let value_len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            let value = String::from_utf8(rest[3..3 + value_len].to_vec()).unwrap();
            rest = &rest[3 + value_len..];
            headers.push((name, value));
        }
        frames.push(Frame {
            headers,
            payload: message[12 + headers_len..total - 4].to_vec(),
        });
        bytes = &bytes[total..];
    }
    frames
}

fn event_types(frames: &[Frame]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| {
            f.header(":event-type")
                .or(f.header(":exception-type"))
                .unwrap()
        })
        .collect()
}

#[test]
fn the_test_decoder_reads_a_hand_built_frame() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let frame = event_stream_frame(&[(":message-type", "event")], b"{}");
    // 16 bytes of overhead, a 1 + 13 + 1 + 2 + 5 byte header, a 2-byte payload.
    assert_eq!(frame.len(), 16 + 22 + 2);
    let decoded = decode(&frame);
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].header(":message-type"), Some("event"));
    assert_eq!(decoded[0].payload, b"{}");
}

// ---------------------------------------------------------------------------------------------
// Converse
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn converse_has_the_documented_shape() {
    let sim = start_default().await;
    let reply = send(bedrock(&sim, MODEL, false, &hello())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let message = &body["output"]["message"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"].as_array().unwrap().len(), 1);
    assert!(
        message["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "Simulated reply from {MODEL} to: Hello Bedrock, tell me something"
            ))
    );
    assert_eq!(body["stopReason"], "end_turn");
    let input = ("Be brief.".len() + "Hello Bedrock, tell me something".len()).div_ceil(4) as u64;
    assert_eq!(
        body["usage"],
        json!({
            "inputTokens": input,
            "outputTokens": 12,
            "totalTokens": input + 12,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 0,
        })
    );
    assert_eq!(body["metrics"], json!({ "latencyMs": 0 }));

    // The decoded model id is what stats and fault rules see; an ARN's `/` arrives as `%2F`.
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0";
    let body = send(bedrock(&sim, arn, false, &hello())).await.json();
    assert!(
        body["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains(arn)
    );
    let stats = sim.stats();
    assert_eq!(stats.by_endpoint["bedrock_chat"], 2);
    assert_eq!(stats.log[0].model, MODEL);
    assert_eq!(stats.log[0].provider_kind, "bedrock");
    assert_eq!(stats.log[1].model, arn);
}

#[tokio::test]
async fn other_operations_get_a_bedrock_shaped_404() {
    let sim = start_default().await;
    let url = bedrock_url(&sim, MODEL, false).replace("/converse", "/invoke");
    let reply = send(client().post(url).bearer_auth("k").body("{}")).await;
    assert_eq!(reply.status, 404);
    assert!(
        reply
            .header("x-amzn-errortype")
            .unwrap()
            .starts_with("UnknownOperationException:")
    );
    assert!(reply.json()["message"].as_str().unwrap().contains("invoke"));
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

pub(super) const AMZ_DATE: &str = "20261204T101500Z";
pub(super) const SIGNED_HEADERS: &str = "content-type;host;x-amz-content-sha256;x-amz-date";

pub(super) fn credential(access_key: &str) -> String {
    format!("{access_key}/20261204/us-east-1/bedrock/aws4_request")
}

pub(super) fn sigv4(credential: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed_headers}, \
         Signature={signature}"
    )
}

pub(super) fn signature() -> String {
    "0f1e2d3c".repeat(8)
}

/// Sends `hello()` with `headers` (and a JSON content type) but no credential of its own.
async fn converse_with(sim: &crate::SimServer, headers: &[(&str, &str)]) -> super::Reply {
    let mut request = client()
        .post(bedrock_url(sim, MODEL, false))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(serde_json::to_vec(&hello()).unwrap())).await
}

fn body_sha256() -> String {
    hex::encode(sha2::Sha256::digest(serde_json::to_vec(&hello()).unwrap()))
}

/// The refusal's status, exception name (checked against the header form) and message.
pub(super) fn refusal(reply: &super::Reply) -> (u16, String, String) {
    let header = reply.header("x-amzn-errortype").unwrap();
    let (name, namespace) = header.split_once(':').unwrap();
    assert!(namespace.starts_with("http://internal.amazon.com/coral/"));
    let body = reply.json();
    let message = body["message"]
        .as_str()
        .or(body["Message"].as_str())
        .unwrap()
        .to_owned();
    (reply.status, name.to_owned(), message)
}

#[tokio::test]
async fn api_keys_and_sigv4_are_accepted() {
    let sim = start_default().await;
    let reply = converse_with(&sim, &[("authorization", "Bearer ABSKbedrockkey")]).await;
    assert_eq!(reply.status, 200);

    let authorization = sigv4(&credential("AKIDEXAMPLE"), SIGNED_HEADERS, &signature());
    let hash = body_sha256();
    let reply = converse_with(
        &sim,
        &[
            ("authorization", &authorization),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-content-sha256", &hash),
        ],
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Without a stated payload hash, and with a session token, SigV4 passes too.
    let reply = converse_with(
        &sim,
        &[
            ("authorization", &authorization),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-security-token", "FwoGZXIvYXdzEXAMPLE"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn missing_and_malformed_credentials_get_403() {
    let sim = start_default().await;
    let reply = converse_with(&sim, &[]).await;
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/")
    );
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json(),
        json!({ "Message": "Authorization header is missing" })
    );

    let good = credential("AKIDEXAMPLE");
    let cases = [
        (
            sigv4(
                &good.replace("/bedrock/", "/s3/"),
                SIGNED_HEADERS,
                &signature(),
            ),
            "correct service",
        ),
        (
            sigv4(
                &good.replace("aws4_request", "aws4"),
                SIGNED_HEADERS,
                &signature(),
            ),
            "terminator",
        ),
        (
            sigv4(
                "AKIDEXAMPLE/us-east-1/bedrock/aws4_request",
                SIGNED_HEADERS,
                &signature(),
            ),
            "Credential should be",
        ),
        (
            sigv4(&good, "content-type;x-amz-date", &signature()),
            "'host' must be a 'SignedHeader'",
        ),
        (
            sigv4(&good, "content-type;host", &signature()),
            "'x-amz-date' must be a 'SignedHeader'",
        ),
        (sigv4(&good, SIGNED_HEADERS, "abc123"), "64 hexadecimal"),
        (
            format!("AWS4-HMAC-SHA256 Credential={good}, SignedHeaders={SIGNED_HEADERS}"),
            "requires 'Signature' parameter",
        ),
        (
            sigv4(&good, SIGNED_HEADERS, &signature())
                .replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
            "Unsupported AWS 'algorithm'",
        ),
        ("Basic dXNlcjpwYXNz".to_owned(), "Bearer"),
    ];
    for (authorization, expected) in &cases {
        let reply = converse_with(
            &sim,
            &[("authorization", authorization), ("x-amz-date", AMZ_DATE)],
        )
        .await;
        let (status, name, message) = refusal(&reply);
        assert_eq!(status, 403, "{authorization}");
        assert_eq!(name, "IncompleteSignatureException", "{authorization}");
        assert!(message.contains(expected), "{authorization}: {message}");
    }

    let authorization = sigv4(&good, SIGNED_HEADERS, &signature());
    let reply = converse_with(&sim, &[("authorization", &authorization)]).await;
    let (status, name, message) = refusal(&reply);
    assert_eq!(
        (status, name.as_str()),
        (403, "IncompleteSignatureException")
    );
    assert!(message.contains("'X-Amz-Date'"), "{message}");
    let reply = converse_with(
        &sim,
        &[
            ("authorization", &authorization),
            ("x-amz-date", "2026-12-04T10:15:00Z"),
        ],
    )
    .await;
    assert_eq!(refusal(&reply).1, "IncompleteSignatureException");
    // A date outside the credential's scope, and a body that is not the one hashed, are
    // signatures AWS would not match.
    let reply = converse_with(
        &sim,
        &[
            ("authorization", &authorization),
            ("x-amz-date", "20261205T000000Z"),
        ],
    )
    .await;
    let (status, name, message) = refusal(&reply);
    assert_eq!((status, name.as_str()), (403, "InvalidSignatureException"));
    assert!(message.contains("'20261204' != '20261205'"), "{message}");
    let reply = converse_with(
        &sim,
        &[
            ("authorization", &authorization),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-content-sha256", &"0".repeat(64)),
        ],
    )
    .await;
    let (status, name, message) = refusal(&reply);
    assert_eq!((status, name.as_str()), (403, "InvalidSignatureException"));
    assert!(message.contains(&body_sha256()), "{message}");
}

#[tokio::test]
async fn api_keys_limit_keys_and_access_key_ids() {
    let sim = start(SimConfig {
        api_keys: vec!["ABSKgood".into(), "AKIDGOOD".into()],
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        converse_with(&sim, &[("authorization", "Bearer ABSKgood")])
            .await
            .status,
        200
    );
    let reply = converse_with(&sim, &[("authorization", "Bearer ABSKother")]).await;
    assert_eq!(
        refusal(&reply),
        (
            403,
            "UnrecognizedClientException".to_owned(),
            "The security token included in the request is invalid.".to_owned()
        )
    );
    let signed = |akid: &str| sigv4(&credential(akid), SIGNED_HEADERS, &signature());
    let good = signed("AKIDGOOD");
    assert_eq!(
        converse_with(&sim, &[("authorization", &good), ("x-amz-date", AMZ_DATE)])
            .await
            .status,
        200
    );
    let other = signed("AKIDOTHER");
    let reply = converse_with(&sim, &[("authorization", &other), ("x-amz-date", AMZ_DATE)]).await;
    assert_eq!(refusal(&reply).1, "UnrecognizedClientException");

    let open = start(SimConfig {
        require_auth: false,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(converse_with(&open, &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Sends `body` and returns the `ValidationException` message.
async fn rejected(sim: &crate::SimServer, body: &Value) -> String {
    let reply = send(bedrock(sim, MODEL, false, body)).await;
    let (status, name, message) = refusal(&reply);
    assert_eq!(
        reply.header("x-amzn-errortype").unwrap(),
        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    );
    assert_eq!((status, name.as_str()), (400, "ValidationException"));
    message
}

fn user(text: &str) -> Value {
    json!({ "role": "user", "content": [{ "text": text }] })
}

fn assistant(text: &str) -> Value {
    json!({ "role": "assistant", "content": [{ "text": text }] })
}

#[tokio::test]
async fn malformed_conversations_get_validation_exceptions() {
    let sim = start_default().await;
    let with_messages = |messages: Value| {
        let mut body = hello();
        body["messages"] = messages;
        body
    };
    let message = rejected(
        &sim,
        &with_messages(json!([assistant("Hi"), user("Hello")])),
    )
    .await;
    assert!(message.starts_with("A conversation must start with a user message."));
    let message = rejected(&sim, &with_messages(json!([]))).await;
    assert!(message.starts_with("A conversation must start with a user message."));
    let message = rejected(&sim, &with_messages(json!([user("Hi"), user("Again")]))).await;
    assert!(message.starts_with("A conversation must alternate between user and assistant roles."));
    let message = rejected(
        &sim,
        &with_messages(json!([user("Hi"), assistant("Hello"), assistant("Again")])),
    )
    .await;
    assert!(message.contains("alternate"));
    let message = rejected(&sim, &with_messages(json!([user("   ")]))).await;
    assert_eq!(
        message,
        "The text field in the ContentBlock object at messages.0.content.0 is blank. Add text to \
         the text field, and try again."
    );
    let message = rejected(
        &sim,
        &with_messages(json!([{ "role": "system", "content": [{ "text": "x" }] }])),
    )
    .await;
    assert!(message.contains("[user, assistant]"), "{message}");

    // Bedrock takes only the fields it knows.
    let mut body = hello();
    body["temperature"] = json!(0.2);
    let message = rejected(&sim, &body).await;
    assert!(
        message.contains("extraneous key [temperature]"),
        "{message}"
    );

    let mut body = hello();
    body["inferenceConfig"]["maxTokens"] = json!(0);
    let message = rejected(&sim, &body).await;
    assert!(message.contains("'inferenceConfig.maxTokens'"), "{message}");
    assert!(message.contains("greater than or equal to 1"), "{message}");

    let image = |format: &str, bytes: &str| {
        with_messages(json!([{ "role": "user", "content": [
            { "text": "What is this?" },
            { "image": { "format": format, "source": { "bytes": bytes } } }
        ] }]))
    };
    let message = rejected(&sim, &image("bmp", "aGVsbG8=")).await;
    assert!(message.contains("[png, jpeg, gif, webp]"), "{message}");
    let message = rejected(&sim, &image("png", "not base64!")).await;
    assert!(message.contains("base64"), "{message}");
    assert_eq!(
        send(bedrock(&sim, MODEL, false, &image("png", "aGVsbG8=")))
            .await
            .status,
        200
    );
}

/// A conversation in which the assistant called `get_weather` with `id`, answered with
/// `result_id`.
fn tool_round(id: &str, result_id: &str) -> Value {
    let mut body = hello();
    body["toolConfig"] = weather_tools();
    body["messages"] = json!([
        user("Weather in Paris?"),
        { "role": "assistant", "content": [
            { "text": "Let me check." },
            { "toolUse": { "toolUseId": id, "name": "get_weather", "input": { "city": "Paris", "days": 1 } } }
        ] },
        { "role": "user", "content": [
            { "toolResult": { "toolUseId": result_id, "content": [{ "text": "It is 22C" }], "status": "success" } }
        ] }
    ]);
    body
}

#[tokio::test]
async fn tool_use_pairing_is_enforced() {
    let sim = start_default().await;
    let id = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q";
    assert_eq!(
        send(bedrock(&sim, MODEL, false, &tool_round(id, id)))
            .await
            .status,
        200
    );

    let message = rejected(&sim, &tool_round(id, "tooluse_other")).await;
    assert_eq!(
        message,
        format!("Expected toolResult blocks at messages.2.content for the following Ids: {id}")
    );
    let mut unanswered = tool_round(id, id);
    unanswered["messages"][2] = user("Never mind.");
    let message = rejected(&sim, &unanswered).await;
    assert!(message.starts_with("Expected toolResult blocks at messages.2.content"));
    let mut extra = tool_round(id, id);
    extra["messages"][2]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "toolResult": { "toolUseId": "tooluse_2", "content": [{ "json": { "ok": true } }] } }));
    let message = rejected(&sim, &extra).await;
    assert_eq!(
        message,
        "The number of toolResult blocks at messages.2.content exceeds the number of toolUse \
         blocks of previous turn."
    );
    let message = rejected(&sim, &tool_round("bad id!", "bad id!")).await;
    assert!(message.contains("[a-zA-Z0-9_-]+"), "{message}");
    assert!(message.contains("toolUse.toolUseId"), "{message}");
    let long = "t".repeat(65);
    let message = rejected(&sim, &tool_round(&long, &long)).await;
    assert!(message.contains("less than or equal to 64"), "{message}");
    let mut no_config = tool_round(id, id);
    no_config.as_object_mut().unwrap().remove("toolConfig");
    let message = rejected(&sim, &no_config).await;
    assert!(
        message.starts_with("The toolConfig field must be defined"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tools, limits, JSON mode, media
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tool_use_round_trip() {
    let sim = start_default().await;
    let mut request = hello();
    request["toolConfig"] = weather_tools();
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(body["stopReason"], "tool_use");
    let content = body["output"]["message"]["content"].clone();
    let tool_use = &content[0]["toolUse"];
    let id = tool_use["toolUseId"].as_str().unwrap();
    assert!(id.starts_with("tooluse_"));
    assert_eq!(id.len(), "tooluse_".len() + 22);
    assert_eq!(tool_use["name"], "get_weather");
    assert_eq!(tool_use["input"], json!({ "city": "sample", "days": 1 }));

    // The assistant's answer goes back as it came, the result in the next user message.
    request["messages"] = json!([
        user("Hello Bedrock, tell me something"),
        { "role": "assistant", "content": content },
        { "role": "user", "content": [
            { "toolResult": { "toolUseId": id, "content": [{ "json": { "temperature": "22C" } }] } }
        ] }
    ]);
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(body["stopReason"], "end_turn");
    let text = body["output"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains(r#""{"temperature":"22C"}""#), "{text}");

    let mut request = hello();
    request["toolConfig"] = weather_tools();
    request["toolConfig"]["toolChoice"] = json!({ "tool": { "name": "get_time" } });
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(
        body["output"]["message"]["content"][0]["toolUse"]["name"],
        "get_time"
    );
    request["toolConfig"]["toolChoice"] = json!({ "any": {} });
    request["messages"][0]["content"][0]["text"] = json!("both in parallel");
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(
        body["output"]["message"]["content"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn limits_report_max_tokens_and_stop_sequence() {
    let sim = start_default().await;
    let mut request = hello();
    request["inferenceConfig"]["maxTokens"] = json!(4);
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(body["stopReason"], "max_tokens");
    assert_eq!(body["usage"]["outputTokens"], 4);

    let mut request = hello();
    request["inferenceConfig"]["stopSequences"] = json!(["us.anthropic"]);
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(body["stopReason"], "stop_sequence");
    assert_eq!(
        body["output"]["message"]["content"][0]["text"],
        "Simulated reply from"
    );
    let frames = decode(&send(bedrock(&sim, MODEL, true, &request)).await.body);
    let stop = frames
        .iter()
        .find(|f| f.header(":event-type") == Some("messageStop"))
        .unwrap();
    assert_eq!(stop.json()["stopReason"], "stop_sequence");
}

#[tokio::test]
async fn output_config_asks_for_json() {
    let sim = start_default().await;
    let schema = json!({
        "type": "object",
        "properties": { "answer": { "type": "string" }, "score": { "type": "number" } },
        "required": ["answer"],
        "additionalProperties": false
    });
    let mut request = hello();
    request["outputConfig"] = json!({
        "textFormat": {
            "type": "json_schema",
            "structure": { "jsonSchema": { "schema": schema.to_string(), "name": "answer" } }
        }
    });
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    let text = body["output"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    let document: Value = serde_json::from_str(text).unwrap();
    assert_eq!(document, json!({ "answer": "sample", "score": 1 }));
}

#[tokio::test]
async fn images_and_documents_of_the_last_user_turn_reach_scripted_replies() {
    let sim = start(SimConfig {
        replies: vec![ReplyRule::new(
            "us.anthropic.*",
            "images: {images} documents: {documents}",
        )],
        ..SimConfig::default()
    })
    .await;
    let mut request = hello();
    request["messages"] = json!([{ "role": "user", "content": [
        { "text": "Describe these" },
        { "image": { "format": "png", "source": { "bytes": "aGVsbG8=" } } },
        { "image": { "format": "jpeg", "source": { "s3Location": { "uri": "s3://bucket/cat.jpg" } } } },
        { "document": { "format": "pdf", "name": "report", "source": { "bytes": "JVBERi0=" } } },
        { "document": { "format": "txt", "name": "notes", "source": { "text": "abc" } } }
    ] }]);
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    assert_eq!(
        body["output"]["message"]["content"][0]["text"],
        "images: data:image/png;base64,aGVsbG8= s3://bucket/cat.jpg documents: application/pdf:5 \
         text/plain:3"
    );
}

// ---------------------------------------------------------------------------------------------
// ConverseStream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_is_event_stream_messages() {
    let sim = start_default().await;
    let full = send(bedrock(&sim, MODEL, false, &hello())).await.json();
    let reply = send(bedrock(&sim, MODEL, true, &hello())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let frames = decode(&reply.body);
    for frame in &frames {
        assert_eq!(frame.header(":message-type"), Some("event"));
        assert_eq!(frame.header(":content-type"), Some("application/json"));
        // Bedrock pads each payload with a run of letters and digits, which clients ignore.
        let padding = frame.json()["p"].as_str().unwrap().to_owned();
        assert!(!padding.is_empty());
        assert!(padding.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    let types = event_types(&frames);
    assert_eq!(types[0], "messageStart");
    assert_eq!(
        &types[types.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    assert!(
        types[1..types.len() - 3]
            .iter()
            .all(|t| *t == "contentBlockDelta")
    );
    assert_eq!(types.len(), 12 + 4);
    assert_eq!(frames[0].json()["role"], "assistant");
    let text: String = frames[1..frames.len() - 3]
        .iter()
        .map(|f| {
            let delta = f.json();
            assert_eq!(delta["contentBlockIndex"], 0);
            delta["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        text,
        full["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
    );
    assert_eq!(frames[frames.len() - 3].json()["contentBlockIndex"], 0);
    assert_eq!(frames[frames.len() - 2].json()["stopReason"], "end_turn");
    let metadata = frames[frames.len() - 1].json();
    assert_eq!(metadata["usage"], full["usage"]);
    assert_eq!(metadata["metrics"]["latencyMs"], 0);
    assert_eq!(sim.stats().log[1].output_tokens, 12);
    assert!(sim.stats().log[1].stream);
}

#[tokio::test]
async fn a_paced_stream_sends_the_same_messages_one_by_one() {
    let sim = start(SimConfig {
        token_ms: 2,
        ..SimConfig::default()
    })
    .await;
    let mut response = bedrock(&sim, MODEL, true, &hello()).send().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks.push(chunk);
    }
    let frames = decode(&chunks.concat());
    assert_eq!(frames.len(), 16);
    // Each message went out on its own (the client may still merge reads).
    assert!(chunks.len() > 1);
    let metadata = frames.last().unwrap().json();
    assert_eq!(metadata["metrics"]["latencyMs"], 2 * 12);
}

#[tokio::test]
async fn streamed_tool_use_starts_its_block_and_splits_the_input() {
    let sim = start_default().await;
    let mut request = hello();
    request["toolConfig"] = weather_tools();
    let full = send(bedrock(&sim, MODEL, false, &request)).await.json();
    let frames = decode(&send(bedrock(&sim, MODEL, true, &request)).await.body);
    let types = event_types(&frames);
    assert_eq!(&types[..2], ["messageStart", "contentBlockStart"]);
    let start = frames[1].json();
    assert_eq!(start["contentBlockIndex"], 0);
    let tool_use = &start["start"]["toolUse"];
    assert!(
        tool_use["toolUseId"]
            .as_str()
            .unwrap()
            .starts_with("tooluse_")
    );
    assert_eq!(tool_use["name"], "get_weather");
    let fragments: Vec<String> = frames
        .iter()
        .filter(|f| f.header(":event-type") == Some("contentBlockDelta"))
        .map(|f| {
            f.json()["delta"]["toolUse"]["input"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(fragments.len() > 1);
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({ "city": "sample", "days": 1 }));
    let stop = frames
        .iter()
        .find(|f| f.header(":event-type") == Some("messageStop"))
        .unwrap();
    assert_eq!(stop.json()["stopReason"], "tool_use");
    let metadata = frames.last().unwrap().json();
    assert_eq!(metadata["usage"], full["usage"]);
}

#[tokio::test]
async fn stream_faults_end_with_bedrock_frames() {
    let sim = start_default().await;
    let with_fault =
        |fault: &'static str| bedrock(&sim, MODEL, true, &hello()).header("x-sim-fault", fault);

    // An error mid-stream is an exception message after the content sent so far.
    let frames = decode(&send(with_fault("error_after=2")).await.body);
    assert_eq!(
        event_types(&frames),
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "modelStreamErrorException"
        ]
    );
    let exception = frames.last().unwrap();
    assert_eq!(exception.header(":message-type"), Some("exception"));
    assert_eq!(exception.header(":content-type"), Some("application/json"));
    assert!(exception.json()["message"].is_string());

    let frames = decode(&send(with_fault("premature_end_after=3")).await.body);
    assert_eq!(frames.len(), 4);
    assert!(
        !event_types(&frames).contains(&"messageStop"),
        "no terminal event"
    );

    // An unreadable event: well framed, its payload not JSON.
    let frames = decode(&send(with_fault("malformed_after=1")).await.body);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].payload, b"{not json");

    let response = with_fault("cut_after=2").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (body, errored) = read_until_error(response).await;
    assert!(errored, "the connection is cut mid-body");
    assert_eq!(decode(&body).len(), 3);
}

#[tokio::test]
async fn errors_before_the_stream_use_the_aws_error_shape() {
    let sim = start_default().await;
    let cases = [
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
        (400, "ValidationException"),
        (404, "ResourceNotFoundException"),
        (408, "ModelTimeoutException"),
        (424, "ModelErrorException"),
    ];
    for (status, name) in cases {
        for stream in [false, true] {
            let reply = send(
                bedrock(&sim, MODEL, stream, &hello())
                    .header("x-sim-fault", format!("status={status}")),
            )
            .await;
            assert_eq!(reply.status, status);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(
                reply.header("x-amzn-errortype").unwrap(),
                format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/")
            );
            assert!(reply.json()["message"].is_string());
        }
    }
    let reply =
        send(bedrock(&sim, MODEL, false, &hello()).header("x-sim-fault", "context_length")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({ "message": "Input is too long for requested model." })
    );

    // Fault rules match the decoded model id.
    sim.add_faults([FaultRule::new("us.anthropic.*-v1:0", "status=429".parse().unwrap()).times(1)]);
    let reply = send(bedrock(&sim, MODEL, true, &hello())).await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.json()["message"],
        "Too many requests, please wait before trying again."
    );
    assert_eq!(send(bedrock(&sim, MODEL, true, &hello())).await.status, 200);

    let reply = send(
        client()
            .post(bedrock_url(&sim, MODEL, false))
            .bearer_auth("k")
            .body("{not json"),
    )
    .await;
    assert_eq!(refusal(&reply).1, "ValidationException");
}

// ---------------------------------------------------------------------------------------------
// Prompt caching
// ---------------------------------------------------------------------------------------------

/// A request whose system prompt (long enough to cache) ends with a cache point.
fn cached_system(text: &str, ttl: Option<&str>, question: &str) -> Value {
    let mut point = json!({ "type": "default" });
    if let Some(ttl) = ttl {
        point["ttl"] = json!(ttl);
    }
    json!({
        "system": [{ "text": text }, { "cachePoint": point }],
        "messages": [user(question)]
    })
}

#[tokio::test]
async fn cache_points_write_the_prefix_once_then_read_it() {
    let sim = start_default().await;
    let policy = "policy ".repeat(700);
    let prefix = policy.len().div_ceil(4) as u64;
    let total = |question: &str| (policy.len() + question.len()).div_ceil(4) as u64;

    let first = send(bedrock(
        &sim,
        MODEL,
        false,
        &cached_system(&policy, None, "First question"),
    ))
    .await
    .json();
    let usage = &first["usage"];
    assert_eq!(usage["cacheWriteInputTokens"], prefix);
    assert_eq!(usage["cacheReadInputTokens"], 0);
    assert_eq!(
        usage["cacheDetails"],
        json!([{ "ttl": "5m", "inputTokens": prefix }])
    );
    assert_eq!(usage["inputTokens"], total("First question") - prefix);
    assert_eq!(
        usage["totalTokens"],
        total("First question") + usage["outputTokens"].as_u64().unwrap()
    );

    // The same prefix with another question after it is read, streamed or not.
    let second = send(bedrock(
        &sim,
        MODEL,
        false,
        &cached_system(&policy, None, "Second one"),
    ))
    .await
    .json();
    assert_eq!(second["usage"]["cacheReadInputTokens"], prefix);
    assert_eq!(second["usage"]["cacheWriteInputTokens"], 0);
    assert!(second["usage"].get("cacheDetails").is_none());
    assert_eq!(second["usage"]["inputTokens"], total("Second one") - prefix);
    let frames = decode(
        &send(bedrock(
            &sim,
            MODEL,
            true,
            &cached_system(&policy, None, "Third"),
        ))
        .await
        .body,
    );
    assert_eq!(
        frames.last().unwrap().json()["usage"]["cacheReadInputTokens"],
        prefix
    );

    // An hour-long cache point is written as such; a short prefix is never cached.
    let rules = "rules ".repeat(800);
    let hour = send(bedrock(
        &sim,
        MODEL,
        false,
        &cached_system(&rules, Some("1h"), "Q"),
    ))
    .await
    .json();
    assert_eq!(
        hour["usage"]["cacheDetails"],
        json!([{ "ttl": "1h", "inputTokens": rules.len().div_ceil(4) }])
    );
    let short = send(bedrock(
        &sim,
        MODEL,
        false,
        &cached_system("Be brief.", None, "Q"),
    ))
    .await
    .json();
    assert_eq!(short["usage"]["cacheWriteInputTokens"], 0);
    assert_eq!(short["usage"]["cacheReadInputTokens"], 0);

    let mut bad = cached_system(&policy, Some("10m"), "Q");
    let message = rejected(&sim, &bad).await;
    assert!(message.contains("[5m, 1h]"), "{message}");
    bad["system"][1]["cachePoint"] = json!({ "type": "ephemeral" });
    let message = rejected(&sim, &bad).await;
    assert!(message.contains("[default]"), "{message}");
}

#[tokio::test]
async fn a_cache_point_in_the_messages_caches_the_conversation_up_to_it() {
    let sim = start_default().await;
    let context = "context ".repeat(600);
    let turn = |last: &str| {
        json!({
            "messages": [
                { "role": "user", "content": [{ "text": context }, { "cachePoint": { "type": "default" } }] },
                assistant("Noted."),
                user(last)
            ]
        })
    };
    let prefix = context.len().div_ceil(4) as u64;
    let first = send(bedrock(&sim, MODEL, false, &turn("a"))).await.json();
    assert_eq!(first["usage"]["cacheWriteInputTokens"], prefix);
    let second = send(bedrock(&sim, MODEL, false, &turn("b"))).await.json();
    assert_eq!(second["usage"]["cacheReadInputTokens"], prefix);
}

#[tokio::test]
async fn count_tokens_counts_the_conversation_as_converse_would() {
    let sim = start_default().await;
    let whole = send(bedrock(&sim, MODEL, false, &hello())).await.json();
    // Counted for the profile's foundation model, named bare: the profile is refused.
    let profile = bedrock_url(&sim, MODEL, false).replace("/converse", "/count-tokens");
    let refused = send(with_json(
        client().post(&profile).bearer_auth("bedrock-api-key"),
        &json!({"input": {"converse": {"messages": hello()["messages"].clone()}}}),
    ))
    .await;
    assert_eq!(refused.status, 400);
    let foundation = MODEL.trim_start_matches("us.");
    let url = bedrock_url(&sim, foundation, false).replace("/converse", "/count-tokens");
    let counted =
        |body: Value| with_json(client().post(&url).bearer_auth("bedrock-api-key"), &body);
    let mut conversation = hello();
    conversation
        .as_object_mut()
        .unwrap()
        .remove("inferenceConfig");
    let reply = send(counted(json!({"input": {"converse": conversation}}))).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json()["inputTokens"],
        whole["usage"]["inputTokens"],
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Only messages and system may be counted; another input is refused.
    let reply = send(counted(json!({"input": {"converse": hello()}}))).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = send(counted(json!({"input": {"invokeModel": {"body": "{}"}}}))).await;
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// Claude's thinking in the model's own fields: a signed `reasoningContent` block first, whole
/// or streamed (its text in deltas, then its signature, as block 0), its tokens counted as
/// output; a budget below Claude's least is refused, and so is a tool loop that leaves the
/// turn's reasoning out.
#[tokio::test]
async fn claudes_thinking_opens_the_answer() {
    let sim = start_default().await;
    let plain = send(bedrock(&sim, MODEL, false, &hello())).await.json();
    let mut request = hello();
    request["additionalModelRequestFields"] =
        json!({"thinking": {"type": "enabled", "budget_tokens": 1024}});
    request["inferenceConfig"]["maxTokens"] = json!(2048);
    let body = send(bedrock(&sim, MODEL, false, &request)).await.json();
    let content = &body["output"]["message"]["content"];
    let reasoning = &content[0]["reasoningContent"]["reasoningText"];
    let thought = reasoning["text"].as_str().unwrap();
    assert!(thought.contains("Hello Bedrock"), "{body}");
    assert!(!reasoning["signature"].as_str().unwrap().is_empty());
    assert_eq!(content[1], plain["output"]["message"]["content"][0]);
    let tokens = thought.split_whitespace().count() as u64;
    assert_eq!(
        body["usage"]["outputTokens"].as_u64().unwrap(),
        plain["usage"]["outputTokens"].as_u64().unwrap() + tokens
    );

    let frames = decode(&send(bedrock(&sim, MODEL, true, &request)).await.body);
    let deltas: Vec<Value> = frames
        .iter()
        .map(|f| f.json())
        .filter(|p| p["contentBlockIndex"] == 0 && p.get("delta").is_some())
        .map(|p| p["delta"]["reasoningContent"].clone())
        .collect();
    let streamed: String = deltas.iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(streamed, thought);
    assert_eq!(
        deltas.iter().filter(|d| d["signature"].is_string()).count(),
        1
    );
    assert!(frames.iter().any(|f| f.json()["contentBlockIndex"] == 1));

    request["additionalModelRequestFields"]["thinking"]["budget_tokens"] = json!(512);
    assert_eq!(
        send(bedrock(&sim, MODEL, false, &request)).await.status,
        400
    );

    let mut loop_request = hello();
    loop_request["additionalModelRequestFields"] =
        json!({"thinking": {"type": "enabled", "budget_tokens": 1024}});
    loop_request["inferenceConfig"]["maxTokens"] = json!(2048);
    loop_request["toolConfig"] = weather_tools();
    let turn = send(bedrock(&sim, MODEL, false, &loop_request))
        .await
        .json();
    let blocks = turn["output"]["message"]["content"].clone();
    let call = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b.get("toolUse").is_some())
        .unwrap();
    let id = call["toolUse"]["toolUseId"].clone();
    let next = |assistant: Value| {
        let mut next = loop_request.clone();
        next["messages"] = json!([hello()["messages"][0], {"role": "assistant", "content": assistant},
            {"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "Sunny"}]}}]}]);
        next
    };
    assert_eq!(
        send(bedrock(&sim, MODEL, false, &next(blocks.clone())))
            .await
            .status,
        200
    );
    assert_eq!(
        send(bedrock(&sim, MODEL, false, &next(json!([call]))))
            .await
            .status,
        400
    );
}

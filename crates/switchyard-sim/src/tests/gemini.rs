use serde_json::{Value, json};

use super::{client, gemini, send, start_default, with_json};

const MODEL: &str = "gemini-2.5-flash";

fn hello() -> Value {
    json!({
        "systemInstruction": { "parts": [{ "text": "Be brief." }] },
        "contents": [{ "role": "user", "parts": [{ "text": "Hello Gemini, what is new" }] }]
    })
}

fn tools() -> Value {
    json!([{
        "functionDeclarations": [
            {
                "name": "get_weather",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "city": { "type": "STRING" },
                        "unit": { "type": "STRING", "enum": ["C", "F"] }
                    },
                    "required": ["city", "unit"]
                }
            },
            {
                "name": "get_time",
                "parametersJsonSchema": {
                    "type": "object",
                    "properties": { "zone": { "type": "string" } },
                    "required": ["zone"]
                }
            }
        ]
    }])
}

#[tokio::test]
async fn generate_content_has_the_documented_shape() {
    let sim = start_default().await;
    let reply = send(gemini(&sim, MODEL, "generateContent", &hello())).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["index"], 0);
    let text = candidate["content"]["parts"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Simulated reply from gemini-2.5-flash to: Hello Gemini, what is new")
    );
    let usage = &body["usageMetadata"];
    let chars = "Be brief.".len() + "Hello Gemini, what is new".len();
    let input = chars.div_ceil(4) as u64;
    assert_eq!(usage["promptTokenCount"], input);
    assert_eq!(usage["candidatesTokenCount"], 12);
    assert_eq!(usage["totalTokenCount"], input + 12);
    assert_eq!(body["modelVersion"], MODEL);
    assert!(body["responseId"].is_string());
}

#[tokio::test]
async fn stream_chunks_end_with_finish_reason() {
    let sim = start_default().await;
    let full = send(gemini(&sim, MODEL, "generateContent", &hello()))
        .await
        .json();
    let reply = send(gemini(&sim, MODEL, "streamGenerateContent", &hello())).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chunks = reply.data();
    assert_eq!(chunks.len(), 13);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(
        text,
        full["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
    );
    for chunk in &chunks[..12] {
        assert!(chunk["candidates"][0].get("finishReason").is_none());
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"], full["usageMetadata"]);

    // Without alt=sse the simulator refuses rather than sending a JSON array.
    let no_sse = with_json(
        client()
            .post(format!(
                "{}/v1beta/models/{MODEL}:streamGenerateContent",
                sim.base_url()
            ))
            .header("x-goog-api-key", "k"),
        &hello(),
    );
    assert_eq!(send(no_sse).await.status, 400);
}

#[tokio::test]
async fn function_call_round_trip() {
    let sim = start_default().await;
    let mut request = hello();
    request["tools"] = tools();
    let body = send(gemini(&sim, MODEL, "generateContent", &request))
        .await
        .json();
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    let call = &candidate["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["args"], json!({ "city": "sample", "unit": "C" }));
    assert!(call["id"].is_string());

    let mut follow_up = request.clone();
    follow_up["contents"] = json!([
        request["contents"][0],
        { "role": "model", "parts": [{ "functionCall": call }] },
        { "role": "user", "parts": [{ "functionResponse": {
            "id": call["id"], "name": "get_weather", "response": { "temperature": 22 }
        } }] }
    ]);
    let body = send(gemini(&sim, MODEL, "generateContent", &follow_up))
        .await
        .json();
    let text = body["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains(r#"{"temperature":22}"#), "{text}");

    // Modes: ANY with an allowed name, NONE; "parallel" calls two functions.
    request["toolConfig"] = json!({
        "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": ["get_time"] }
    });
    let body = send(gemini(&sim, MODEL, "generateContent", &request))
        .await
        .json();
    let call = &body["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "get_time");
    assert_eq!(call["args"], json!({ "zone": "sample" }));
    request["toolConfig"]["functionCallingConfig"] = json!({ "mode": "NONE" });
    let body = send(gemini(&sim, MODEL, "generateContent", &request))
        .await
        .json();
    assert!(body["candidates"][0]["content"]["parts"][0]["text"].is_string());
    request.as_object_mut().unwrap().remove("toolConfig");
    request["contents"][0]["parts"][0]["text"] = json!("call them in parallel");
    let body = send(gemini(&sim, MODEL, "streamGenerateContent", &request))
        .await
        .data();
    let parts = body[0]["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        body.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
}

#[tokio::test]
async fn json_mode_and_max_output_tokens() {
    let sim = start_default().await;
    let mut request = hello();
    request["generationConfig"] = json!({
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "title": { "type": "STRING" },
                "pages": { "type": "INTEGER" },
                "draft": { "type": "BOOLEAN" }
            }
        }
    });
    let body = send(gemini(&sim, MODEL, "generateContent", &request))
        .await
        .json();
    let text = body["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    let document: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        document,
        json!({ "title": "sample", "pages": 1, "draft": true })
    );

    let mut request = hello();
    request["generationConfig"] = json!({ "maxOutputTokens": 5, "stopSequences": ["zzz"] });
    let body = send(gemini(&sim, MODEL, "generateContent", &request))
        .await
        .json();
    assert_eq!(body["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 5);
}

#[tokio::test]
async fn embeddings_and_count_tokens() {
    let sim = start_default().await;
    let batch = json!({
        "requests": [
            { "model": "models/text-embedding-004", "content": { "parts": [{ "text": "one" }] }, "outputDimensionality": 6 },
            { "model": "models/text-embedding-004", "content": { "parts": [{ "text": "two" }] } }
        ]
    });
    let reply = send(gemini(
        &sim,
        "text-embedding-004",
        "batchEmbedContents",
        &batch,
    ))
    .await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    let embeddings = body["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    assert_eq!(embeddings[0]["values"].as_array().unwrap().len(), 6);
    assert_ne!(embeddings[0], embeddings[1]);

    let single = json!({ "content": { "parts": [{ "text": "one" }] }, "outputDimensionality": 6 });
    let body = send(gemini(&sim, "text-embedding-004", "embedContent", &single))
        .await
        .json();
    assert_eq!(body["embedding"], embeddings[0]);

    let body = send(gemini(&sim, MODEL, "countTokens", &hello()))
        .await
        .json();
    let chars = "Be brief.".len() + "Hello Gemini, what is new".len();
    assert_eq!(body["totalTokens"], chars.div_ceil(4) as u64);
}

#[tokio::test]
async fn key_and_method_are_checked() {
    let sim = start_default().await;
    let no_key = with_json(
        client().post(format!(
            "{}/v1beta/models/{MODEL}:generateContent",
            sim.base_url()
        )),
        &hello(),
    );
    let reply = send(no_key).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["status"], "PERMISSION_DENIED");

    let query_key = with_json(
        client().post(format!(
            "{}/v1beta/models/{MODEL}:generateContent?key=abc",
            sim.base_url()
        )),
        &hello(),
    );
    assert_eq!(send(query_key).await.status, 200);

    let reply = send(gemini(&sim, MODEL, "explode", &hello())).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["status"], "NOT_FOUND");

    let reply = send(gemini(
        &sim,
        MODEL,
        "generateContent",
        &json!({ "contents": [] }),
    ))
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["status"], "INVALID_ARGUMENT");
}

/// `candidateCount` asks for several candidates: each with its index, told apart by their
/// filler, the usage counting all.
#[tokio::test]
async fn several_candidates_are_answered_each() {
    let sim = start_default().await;
    let mut request = hello();
    request["generationConfig"] = json!({"candidateCount": 2});
    let body = send(gemini(
        &sim,
        "gemini-2.5-flash",
        "generateContent",
        &request,
    ))
    .await
    .json();
    let candidates = body["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    assert_eq!(
        (&candidates[0]["index"], &candidates[1]["index"]),
        (&json!(0), &json!(1))
    );
    assert_ne!(
        candidates[0]["content"]["parts"][0]["text"],
        candidates[1]["content"]["parts"][0]["text"]
    );
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 24);
}

/// `includeThoughts` puts a thought summary first in the candidate, whole or word by word ahead
/// of the text when streamed; its tokens are `thoughtsTokenCount`, left out of the candidates'
/// count and counted in the total.
#[tokio::test]
async fn thought_summaries_come_first_when_asked_for() {
    let sim = start_default().await;
    let plain = send(gemini(
        &sim,
        "gemini-2.5-flash",
        "generateContent",
        &hello(),
    ))
    .await
    .json();
    let mut request = hello();
    request["generationConfig"] = json!({"thinkingConfig": {"includeThoughts": true}});
    let body = send(gemini(
        &sim,
        "gemini-2.5-flash",
        "generateContent",
        &request,
    ))
    .await
    .json();
    let parts = body["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts[0]["thought"], true);
    let thought = parts[0]["text"].as_str().unwrap();
    assert_eq!(parts[1], plain["candidates"][0]["content"]["parts"][0]);
    let tokens = thought.split_whitespace().count() as u64;
    let usage = &body["usageMetadata"];
    assert_eq!(usage["thoughtsTokenCount"], tokens);
    assert_eq!(
        usage["candidatesTokenCount"],
        plain["usageMetadata"]["candidatesTokenCount"]
    );
    assert_eq!(
        usage["totalTokenCount"].as_u64().unwrap(),
        plain["usageMetadata"]["totalTokenCount"].as_u64().unwrap() + tokens
    );

    let chunks = send(gemini(
        &sim,
        "gemini-2.5-flash",
        "streamGenerateContent",
        &request,
    ))
    .await
    .data();
    let (mut thoughts, mut text, mut seen_text) = (String::new(), String::new(), false);
    for chunk in &chunks {
        for part in chunk["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
        {
            if part["thought"] == true {
                assert!(!seen_text, "a thought after the text: {chunk}");
                thoughts.push_str(part["text"].as_str().unwrap());
            } else {
                seen_text |= !part["text"].as_str().unwrap_or("").is_empty();
                text.push_str(part["text"].as_str().unwrap_or(""));
            }
        }
    }
    assert_eq!(thoughts, thought);
    assert_eq!(
        text,
        plain["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        chunks.last().unwrap()["usageMetadata"]["thoughtsTokenCount"],
        tokens
    );
}

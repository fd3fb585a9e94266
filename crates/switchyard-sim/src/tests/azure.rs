use serde_json::json;

use super::{azure, client, send, start_default, with_json};

fn body() -> serde_json::Value {
    json!({ "messages": [{ "role": "user", "content": "Hi from Azure" }] })
}

#[tokio::test]
async fn deployment_chat_adds_filter_results() {
    let sim = start_default().await;
    let reply = send(azure(&sim, "my-gpt4o", &body())).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["model"], "my-gpt4o");
    assert_eq!(body["object"], "chat.completion");
    let prompt = &body["prompt_filter_results"][0];
    assert_eq!(prompt["prompt_index"], 0);
    assert_eq!(prompt["content_filter_results"]["hate"]["filtered"], false);
    assert_eq!(
        prompt["content_filter_results"]["violence"]["severity"],
        "safe"
    );
    let choice = &body["choices"][0];
    assert_eq!(
        choice["content_filter_results"]["sexual"]["filtered"],
        false
    );
    assert!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Simulated reply from my-gpt4o to: Hi from Azure")
    );
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn stream_opens_with_prompt_filter_results() {
    let sim = start_default().await;
    let mut request = body();
    request["stream"] = json!(true);
    let reply = send(azure(&sim, "dep", &request)).await;
    assert_eq!(reply.status, 200);
    let chunks = reply.data();
    assert_eq!(chunks[0]["choices"], json!([]));
    assert!(chunks[0]["prompt_filter_results"].is_array());
    assert_eq!(chunks[1]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["model"], "dep");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply.events().last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn api_version_and_api_key_are_required() {
    let sim = start_default().await;
    let no_version = with_json(
        client()
            .post(format!(
                "{}/openai/deployments/dep/chat/completions",
                sim.base_url()
            ))
            .header("api-key", "k"),
        &body(),
    );
    let reply = send(no_version).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json(),
        json!({ "error": { "code": "404", "message": "Resource not found" } })
    );

    let no_key = with_json(
        client().post(format!(
            "{}/openai/deployments/dep/chat/completions?api-version=2024-10-21",
            sim.base_url()
        )),
        &body(),
    );
    let reply = send(no_key).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["code"], "401");
}

#[tokio::test]
async fn v1_path_and_embeddings() {
    let sim = start_default().await;
    let mut request = body();
    request["model"] = json!("gpt-4o-deploy");
    let v1 = with_json(
        client()
            .post(format!("{}/openai/v1/chat/completions", sim.base_url()))
            .header("api-key", "k"),
        &request,
    );
    let reply = send(v1).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["model"], "gpt-4o-deploy");

    let embed = with_json(
        client()
            .post(format!(
                "{}/openai/deployments/emb/embeddings?api-version=2024-10-21",
                sim.base_url()
            ))
            .header("api-key", "k"),
        &json!({ "input": "hello", "dimensions": 4 }),
    );
    let body = send(embed).await.json();
    assert_eq!(body["model"], "emb");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(sim.stats().by_endpoint["azure_embeddings"], 1);
}

//! Images and documents given by URL to providers that take them only inline (Bedrock; OpenAI's
//! Chat Completions for documents): the gateway fetches them, once a request, from public
//! addresses only unless configured otherwise, and a URL it cannot fetch is a 400 naming the
//! part. The files are served by a small server of the test's own on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::{Value, json};
use switchyard_sim::{ReplyRule, SimConfig};

use crate::harness::{Env, Gateway, KEY, start_sim};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";

/// Serves the test's files and counts the requests for each.
#[derive(Clone, Default)]
struct Files {
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Files {
    async fn start() -> (Files, String) {
        let files = Files::default();
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state(files.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (files, base)
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn serve(State(files): State<Files>, Path(name): Path<String>) -> Response {
    *files.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    let typed = |media_type: &'static str, body: Vec<u8>| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, media_type.parse().unwrap());
        (headers, body).into_response()
    };
    match name.as_str() {
        // Served as a generic type, as object stores often do: the bytes say what it is.
        "cat.png" => typed("application/octet-stream", PNG.to_vec()),
        "report.pdf" => typed("application/pdf", PDF.to_vec()),
        "page.html" => typed("text/html; charset=utf-8", b"<html>cat</html>".to_vec()),
        "huge.png" => typed("image/png", [PNG, &vec![0u8; 300_000]].concat()),
        "moved.png" => Redirect::temporary("/cat.png").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A gateway over a simulator that echoes the images and documents it received, with
/// `fetch_media` set as given.
async fn echoing(fetch_media: &str) -> Env {
    let sim = start_sim(SimConfig {
        replies: vec![ReplyRule::new("*", "{images}|{documents}")],
        ..SimConfig::default()
    })
    .await;
    let base = sim.base_url();
    let config = format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
  fetch_media: {fetch_media}
providers:
  - {{name: p-openai, kind: openai, base_url: "{base}/v1", api_key: sk-upstream-openai}}
  - {{name: p-anthropic, kind: anthropic, base_url: "{base}", api_key: sk-ant-upstream}}
  - {{name: p-gemini, kind: gemini, base_url: "{base}/v1beta", api_key: gemini-upstream}}
  - name: p-bedrock
    kind: bedrock
    base_url: "{base}"
    region: us-east-1
    aws: {{access_key_id: AKIDUPSTREAMEXAMPLE, secret_access_key: bedrock-upstream-secret}}
models:
  - {{alias: openai, deployments: [{{provider: p-openai, model: gpt-4o-mini}}]}}
  - {{alias: anthropic, deployments: [{{provider: p-anthropic, model: claude-sonnet-4-5}}]}}
  - {{alias: gemini, deployments: [{{provider: p-gemini, model: gemini-2.5-flash}}]}}
  - {{alias: bedrock, deployments: [{{provider: p-bedrock, model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}}]}}
  - alias: bedrock-twice
    strategy: priority
    deployments:
      - {{provider: p-bedrock, model: bedrock-first, priority: 0}}
      - {{provider: p-bedrock, model: bedrock-second, priority: 1}}
"#
    );
    Env {
        sim,
        gw: Gateway::start(&config).await,
        http: reqwest::Client::new(),
    }
}

fn with_image(model: &str, url: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
}

fn answer(r: &crate::harness::Reply) -> String {
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_refused(r: &crate::harness::Reply, param: &str, says: &str) {
    assert_eq!(r.status, 400, "{}", r.text);
    let error = &r.json()["error"];
    assert_eq!(error["param"], param, "{}", r.text);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

#[tokio::test]
async fn media_by_url_is_fetched_for_providers_that_take_it_inline_only() {
    let (files, base) = Files::start().await;
    let env = echoing("{private_networks: true, max_bytes: 100000}").await;
    let png = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(PNG)
    );

    // An OpenAI client's image by URL reaches Bedrock as its bytes, typed by them; through a
    // redirect too. Anthropic takes the URL itself: nothing is fetched for it.
    let r = env
        .post(
            "/v1/chat/completions",
            &with_image("bedrock", &format!("{base}/cat.png")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(answer(&r), format!("{png}|"));
    let r = env
        .post(
            "/v1/chat/completions",
            &with_image("bedrock", &format!("{base}/moved.png")),
        )
        .await;
    assert_eq!(answer(&r), format!("{png}|"), "{}", r.text);
    assert_eq!(files.hits("cat.png"), 2);
    let r = env
        .post(
            "/v1/chat/completions",
            &with_image("anthropic", &format!("{base}/cat.png")),
        )
        .await;
    assert_eq!(answer(&r), format!("{base}/cat.png|"), "{}", r.text);
    assert_eq!(
        files.hits("cat.png"),
        2,
        "fetched for a provider that fetches"
    );

    // An Anthropic client's PDF by URL reaches OpenAI (whose Chat Completions takes no
    // document by URL) and Bedrock as its bytes.
    for model in ["openai", "bedrock"] {
        let r = env
            .post_anthropic(&json!({"model": model, "max_tokens": 100,
                "messages": [{"role": "user", "content": [
                    {"type": "document", "source": {"type": "url", "url": format!("{base}/report.pdf")}},
                    {"type": "text", "text": "Summarize it."}]}]}))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        assert_eq!(
            r.json()["content"][0]["text"],
            format!("|application/pdf:{}", PDF.len()),
            "{model}"
        );
    }

    // A tool's screenshot by URL: Gemini's function responses take media inline only, so it
    // is fetched for Gemini; Anthropic's tool results take the URL.
    for (model, echoed) in [
        ("gemini", png.clone()),
        ("anthropic", format!("{base}/cat.png")),
    ] {
        let r = env
            .post_anthropic(&json!({"model": model, "max_tokens": 100,
                "tools": [{"name": "screenshot", "input_schema": {"type": "object"}}],
                "messages": [
                    {"role": "user", "content": "Look at the page."},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "The page:"},
                            {"type": "image", "source": {"type": "url", "url": format!("{base}/cat.png")}}]}]}]}))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        assert_eq!(
            r.json()["content"][0]["text"],
            format!("{echoed}|"),
            "{model}"
        );
    }

    // A request whose first deployment fails fetches its image once for both attempts.
    env.fault("bedrock-first", "status=500", None).await;
    let before = files.hits("cat.png");
    let r = env
        .post(
            "/v1/chat/completions",
            &with_image("bedrock-twice", &format!("{base}/cat.png")),
        )
        .await;
    assert_eq!(answer(&r), format!("{png}|"), "{}", r.text);
    assert!(
        r.headers["x-switchyard-route"]
            .to_str()
            .unwrap()
            .contains("attempts=2"),
        "{:?}",
        r.headers
    );
    assert_eq!(files.hits("cat.png") - before, 1);

    // What cannot be fetched, or is not what the part says, is the client's mistake: a 400
    // naming the part and saying why, and no provider call.
    let calls = env.sim_stats().await["requests"].clone();
    for (name, says) in [
        ("missing.png", "HTTP 404"),
        ("page.html", "not an image (text/html)"),
        ("huge.png", "larger than 100000 bytes"),
    ] {
        let r = env
            .post(
                "/v1/chat/completions",
                &with_image("bedrock", &format!("{base}/{name}")),
            )
            .await;
        assert_refused(&r, "messages[0].content[1]", says);
    }
    assert_eq!(env.sim_stats().await["requests"], calls);

    // An S3 object is Converse's own to read.
    let r = env
        .post(
            "/v1/chat/completions",
            &with_image("bedrock", "s3://shots/cat.png"),
        )
        .await;
    assert_eq!(answer(&r), "s3://shots/cat.png|", "{}", r.text);
}

#[tokio::test]
async fn private_addresses_are_not_fetched_unless_allowed() {
    let (files, base) = Files::start().await;
    let env = echoing("{}").await;
    for url in [
        format!("{base}/cat.png"),
        "http://localhost:9/cat.png".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]:9/cat.png".to_owned(),
    ] {
        let r = env
            .post("/v1/chat/completions", &with_image("bedrock", &url))
            .await;
        assert_refused(&r, "messages[0].content[1]", "private address");
    }
    assert_eq!(files.hits("cat.png"), 0);

    // Switched off, the provider's own refusal stands.
    let env = echoing("{enabled: false}").await;
    let r = env
        .post(
            "/v1/chat/completions",
            &with_image("bedrock", &format!("{base}/cat.png")),
        )
        .await;
    assert_refused(&r, "messages[0].content[1]", "base64");
    assert_eq!(files.hits("cat.png"), 0);
}

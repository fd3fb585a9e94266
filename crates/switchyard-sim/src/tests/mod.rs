//! Tests: pure helpers here and in `model`, then each dialect, faults and stats against a
//! server started on port 0 and driven with a plain HTTP client.

mod anthropic;
mod azure;
mod bedrock;
mod bedrock_invoke;
mod faults;
mod gemini;
mod model;
mod openai;
mod stats;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use switchyard_protocol::sse::{SseEvent, SseParser};

use crate::{SimConfig, SimServer};

pub(crate) async fn start(config: SimConfig) -> SimServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    SimServer::start(config, addr).await.unwrap()
}

pub(crate) async fn start_default() -> SimServer {
    start(SimConfig::default()).await
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A finished exchange: status, headers and the whole body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn events(&self) -> Vec<SseEvent> {
        parse_sse(&self.body)
    }

    /// `data` of every event parsed as JSON, skipping `[DONE]`.
    pub(crate) fn data(&self) -> Vec<Value> {
        self.events()
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) fn parse_sse(body: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.push(body, &mut events).unwrap();
    events
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// Reads a body chunk by chunk; returns what arrived and whether it ended in an error.
pub(crate) async fn read_until_error(response: reqwest::Response) -> (Vec<u8>, bool) {
    let mut response = response;
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return (body, false),
            Err(_) => return (body, true),
        }
    }
}

pub(crate) fn with_json(request: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
}

/// OpenAI chat request builder with a bearer key.
pub(crate) fn openai(sim: &SimServer, body: &Value) -> reqwest::RequestBuilder {
    with_json(
        client()
            .post(format!("{}/v1/chat/completions", sim.base_url()))
            .bearer_auth("sk-test"),
        body,
    )
}

pub(crate) fn anthropic(sim: &SimServer, body: &Value) -> reqwest::RequestBuilder {
    with_json(
        client()
            .post(format!("{}/v1/messages", sim.base_url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01"),
        body,
    )
}

pub(crate) fn gemini(
    sim: &SimServer,
    model: &str,
    method: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let query = if method == "streamGenerateContent" {
        "?alt=sse"
    } else {
        ""
    };
    with_json(
        client()
            .post(format!(
                "{}/v1beta/models/{model}:{method}{query}",
                sim.base_url()
            ))
            .header("x-goog-api-key", "AIza-test"),
        body,
    )
}

/// Bedrock Converse (or ConverseStream) request builder with an API key; the model id is
/// percent-encoded as AWS clients encode it (`:` and `/`).
pub(crate) fn bedrock(
    sim: &SimServer,
    model_id: &str,
    stream: bool,
    body: &Value,
) -> reqwest::RequestBuilder {
    with_json(
        client()
            .post(bedrock_url(sim, model_id, stream))
            .bearer_auth("bedrock-api-key"),
        body,
    )
}

pub(crate) fn bedrock_url(sim: &SimServer, model_id: &str, stream: bool) -> String {
    let operation = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    let encoded = model_id.replace(':', "%3A").replace('/', "%2F");
    format!("{}/model/{encoded}/{operation}", sim.base_url())
}

pub(crate) fn azure(sim: &SimServer, deployment: &str, body: &Value) -> reqwest::RequestBuilder {
    with_json(
        client()
            .post(format!(
                "{}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21",
                sim.base_url()
            ))
            .header("api-key", "azure-test"),
        body,
    )
}

/// A weather tool and a time tool, in OpenAI's shape.
pub(crate) fn openai_tools() -> Value {
    serde_json::json!([
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": { "type": "string" },
                        "days": { "type": "integer" },
                        "unit": { "type": "string", "enum": ["celsius", "fahrenheit"] },
                        "note": { "type": "string" }
                    },
                    "required": ["city", "days", "unit"]
                }
            }
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {
                    "type": "object",
                    "properties": { "zone": { "type": "string" }, "exact": { "type": "boolean" } },
                    "required": ["zone", "exact"]
                }
            }
        }
    ])
}

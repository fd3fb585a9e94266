//! OpenTelemetry export against a real receiver: Arize Phoenix, started once on free loopback
//! ports in a temp dir, ingests the gateway's OTLP/HTTP spans and hands them back through its
//! REST API. Checks span names, parentage (an incoming `traceparent` included), attempt child
//! spans, token counts, cost and captured (masked) content.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_sim::SimConfig;

use crate::harness::{
    Env, Gateway, LocalServer, Reply, chat, standard_config_with, start_sim, wait_ready,
};

/// Phoenix project the gateway's spans go to (resource attribute `openinference.project.name`).
const PROJECT: &str = "switchyard-it";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

const MODELS: &str = r#"
  - alias: priced
    deployments:
      - {provider: p-openai, model: traced-primary, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
    fallbacks: [priced-backup]
  - alias: priced-backup
    deployments:
      - {provider: p-anthropic, model: traced-backup, price: {input_per_mtok: 3, output_per_mtok: 15}}
"#;

/// The Python that has Phoenix installed (set by `scripts/test`).
fn python() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_PHOENIX") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "SWITCHYARD_TEST_PHOENIX is not set under CI: run the suite through scripts/test"
                );
            }
            eprintln!(
                "\n!!! SKIPPING the OpenTelemetry export test: SWITCHYARD_TEST_PHOENIX is not set.\n!!! Run ./scripts/test to install the trace receiver (Arize Phoenix) and run it.\n"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Phoenix {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Phoenix {
    /// The project's spans, once at least `count` have arrived.
    async fn spans(&self, http: &reqwest::Client, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = http
                .get(format!(
                    "{}/v1/projects/{PROJECT}/spans?limit=1000",
                    self.url
                ))
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                let body: Value = r.json().await.unwrap();
                let spans = body["data"].as_array().cloned().unwrap_or_default();
                if spans.len() >= count {
                    return spans;
                }
                assert!(
                    Instant::now() < deadline,
                    "only {} of {count} spans arrived: {spans:#?}",
                    spans.len()
                );
            } else {
                assert!(Instant::now() < deadline, "no spans: {}", r.status());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl LocalServer for Phoenix {
    const NAME: &'static str = "Phoenix";
    const HEALTH: &'static str = "/healthz";

    /// Starts the server; `wait_ready` waits for it.
    fn spawn(python: &str) -> Phoenix {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("phoenix.log")).unwrap();
        let child = Command::new(python)
            .args(["-m", "phoenix.server.main", "serve"])
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", port.to_string())
            // Its gRPC receiver is not used; port 0 keeps it off any fixed port.
            .env("PHOENIX_GRPC_PORT", "0")
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Phoenix");
        Phoenix {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("phoenix.log")
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request_id(r: &Reply) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// The request span of a request and its children (attempts), in attempt order.
fn spans_of<'a>(spans: &'a [Value], id: &str) -> (&'a Value, Vec<&'a Value>) {
    let root = spans
        .iter()
        .find(|s| s["attributes"]["gateway.request.id"] == id)
        .unwrap_or_else(|| panic!("no span for request {id}: {spans:#?}"));
    let span_id = &root["context"]["span_id"];
    let mut children: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent_id"] == *span_id)
        .collect();
    children.sort_by_key(|s| s["attributes"]["gateway.attempt.index"].as_u64());
    (root, children)
}

#[tokio::test]
async fn spans_reach_a_real_receiver() {
    let Some(python) = python() else { return };
    assert!(
        Path::new(&python).exists(),
        "SWITCHYARD_TEST_PHOENIX={python} does not exist"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Phoenix starts slowly: start it first, the gateway meanwhile.
    let mut phoenix = Phoenix::spawn(&python);
    let sim = start_sim(SimConfig::default()).await;
    let config = format!(
        "{}\ntelemetry:\n  otlp:\n    - endpoint: {}\n      capture_content: true\n      resource: {{openinference.project.name: {PROJECT}}}\n",
        standard_config_with(&sim.base_url(), MODELS, "allowed_fails: 3\n  cooldown: 2s"),
        phoenix.url,
    );
    let gw = Gateway::start(&config).await;
    let env = Env { sim, gw, http };
    wait_ready(&mut phoenix, &python, &env.http).await;

    // 1. In the caller's trace; the primary fails once, the fallback answers.
    env.fault("traced-primary", "status=500", Some(1)).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let traced = env
        .post_with(
            "/v1/chat/completions",
            &chat("priced", "hello"),
            &[
                ("authorization", &format!("Bearer {}", crate::harness::KEY)),
                ("traceparent", &traceparent),
            ],
        )
        .await;
    assert_eq!(traced.status, 200, "{}", traced.text);
    // 2. A new trace, with content captured (masked as the record keeps it), sampling
    // settings and two answers.
    let mut body = chat("openai", "mail me at jane@example.com");
    body["temperature"] = json!(0.3);
    body["max_tokens"] = json!(50);
    body["stop"] = json!(["zzz"]);
    body["n"] = json!(2);
    body["response_format"] = json!({"type": "json_object"});
    let plain = env
        .post_with(
            "/v1/chat/completions",
            &body,
            &[
                ("authorization", &format!("Bearer {}", crate::harness::KEY)),
                ("x-switchyard-session-id", "support-chat-7"),
            ],
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    // 3. A stream, which measures time to first chunk.
    let mut body = chat("anthropic", "a story");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let streamed = env.post("/v1/chat/completions", &body).await;
    assert_eq!(streamed.status, 200);
    // 4. Embeddings.
    let embedded = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(embedded.status, 200, "{}", embedded.text);

    // 3 + 2 + 2 + 2 spans.
    let spans = phoenix.spans(&env.http, 9).await;

    let (root, attempts) = spans_of(&spans, &request_id(&traced));
    assert_eq!(root["name"], "chat traced-backup");
    assert_eq!(root["context"]["trace_id"], TRACE_ID);
    assert_eq!(
        root["parent_id"], PARENT_ID,
        "the request span joins the caller's trace"
    );
    let a = &root["attributes"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.provider.name"], "anthropic");
    assert_eq!(a["gen_ai.request.model"], "traced-backup");
    let usage = &traced.json()["usage"];
    assert_eq!(a["gen_ai.usage.input_tokens"], usage["prompt_tokens"]);
    assert_eq!(a["gen_ai.usage.output_tokens"], usage["completion_tokens"]);
    let cost = usage["prompt_tokens"].as_f64().unwrap() * 3e-6
        + usage["completion_tokens"].as_f64().unwrap() * 15e-6;
    let exported = a["gen_ai.usage.cost"].as_f64().unwrap();
    assert!((exported - cost).abs() < 1e-9, "cost {exported} != {cost}");
    assert_eq!(a["gateway.route.fallbacks"], json!(["priced-backup"]));
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0]["name"], "attempt p-openai/traced-primary");
    assert_eq!(attempts[0]["attributes"]["error.type"], "server_error");
    assert_eq!(attempts[0]["attributes"]["http.response.status_code"], 500);
    assert_eq!(attempts[0]["status_code"], "ERROR");
    assert_eq!(attempts[1]["name"], "attempt p-anthropic/traced-backup");
    assert_eq!(attempts[1]["attributes"]["gateway.attempt.fell_back"], true);
    for at in &attempts {
        assert_eq!(at["context"]["trace_id"], TRACE_ID);
    }

    let (root, attempts) = spans_of(&spans, &request_id(&plain));
    assert_eq!(root["name"], "chat gpt-4o-mini");
    assert_ne!(root["context"]["trace_id"], TRACE_ID);
    assert!(root["parent_id"].is_null(), "{root:#}");
    let a = &root["attributes"];
    assert_eq!(a["gen_ai.provider.name"], "openai");
    let usage = &plain.json()["usage"];
    assert_eq!(a["gen_ai.usage.input_tokens"], usage["prompt_tokens"]);
    assert_eq!(a["gen_ai.usage.output_tokens"], usage["completion_tokens"]);
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["stop", "stop"]));
    assert_eq!(a["gen_ai.request.temperature"], 0.3, "{a:#}");
    assert_eq!(a["gen_ai.request.max_tokens"], 50, "{a:#}");
    assert_eq!(a["gen_ai.request.stop_sequences"], json!(["zzz"]), "{a:#}");
    assert_eq!(a["gen_ai.request.choice.count"], 2, "{a:#}");
    assert_eq!(a["gen_ai.output.type"], "json", "{a:#}");
    assert_eq!(a["gen_ai.conversation.id"], "support-chat-7", "{a:#}");
    assert!(
        a["gen_ai.response.id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "{a:#}"
    );
    assert!(a["gen_ai.response.model"].is_string(), "{a:#}");
    let input = a["gen_ai.input.messages"].as_str().unwrap();
    assert!(
        input.contains("[EMAIL]") && !input.contains("jane@example.com"),
        "{input}"
    );
    assert!(
        a["gen_ai.output.messages"]
            .as_str()
            .unwrap()
            .contains("assistant")
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["name"], "attempt p-openai/gpt-4o-mini");

    let (root, attempts) = spans_of(&spans, &request_id(&streamed));
    assert_eq!(root["name"], "chat claude-sonnet-4-5");
    let a = &root["attributes"];
    assert_eq!(a["gen_ai.request.stream"], true);
    assert!(a["gen_ai.response.time_to_first_chunk"].as_f64().unwrap() > 0.0);
    assert!(a["gen_ai.usage.output_tokens"].as_u64().unwrap() > 0);
    // A stream's answer is named as a whole answer's is: its id, model and finish reason.
    assert!(
        a["gen_ai.response.id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")),
        "{a:#}"
    );
    assert_eq!(a["gen_ai.response.model"], "claude-sonnet-4-5", "{a:#}");
    assert_eq!(
        a["gen_ai.response.finish_reasons"],
        json!(["stop"]),
        "{a:#}"
    );
    assert_eq!(attempts.len(), 1);

    let (root, attempts) = spans_of(&spans, &request_id(&embedded));
    assert_eq!(root["name"], "embeddings text-embedding-3-small");
    assert_eq!(root["attributes"]["gen_ai.operation.name"], "embeddings");
    assert_eq!(attempts.len(), 1);
}

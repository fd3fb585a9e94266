//! Starts the simulator and the gateway binary, and offers small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_sim::{SimConfig, SimServer};

pub const KEY: &str = "sk-test-master-key";

/// One provider of each kind, all backed by the simulator, behind aliases named after the kind.
pub const KINDS: &[&str] = &[
    "openai",
    "compat",
    "azure",
    "anthropic",
    "gemini",
    "bedrock",
];

pub fn standard_config(sim: &str, extra_models: &str) -> String {
    standard_config_with(sim, extra_models, "allowed_fails: 3\n  cooldown: 2s")
}

pub fn standard_config_with(sim: &str, extra_models: &str, routing: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  max_body_bytes: 1048576
  shutdown_grace: 10s
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-openai, kind: openai, base_url: "{sim}/v1", api_key: sk-upstream-openai-secret}}
  - {{name: p-compat, kind: openai_compatible, base_url: "{sim}/v1", api_key: sk-upstream-compat-secret}}
  - {{name: p-azure, kind: azure, base_url: "{sim}", api_key: azure-upstream-secret, api_version: "2024-10-21"}}
  - {{name: p-anthropic, kind: anthropic, base_url: "{sim}", api_key: sk-ant-upstream-secret}}
  - {{name: p-gemini, kind: gemini, base_url: "{sim}/v1beta", api_key: gemini-upstream-secret}}
  - name: p-bedrock
    kind: bedrock
    base_url: "{sim}"
    region: us-east-1
    aws: {{access_key_id: AKIDUPSTREAMEXAMPLE, secret_access_key: bedrock-upstream-secret, session_token: bedrock-session-token}}
  - name: p-fast
    kind: openai
    base_url: "{sim}/v1"
    api_key: sk-upstream-fast-secret
    timeouts: {{first_byte: 500ms, stall: 500ms, total: 5s}}
models:
  - {{alias: openai, deployments: [{{provider: p-openai, model: gpt-4o-mini}}]}}
  - {{alias: compat, deployments: [{{provider: p-compat, model: llama-3-8b}}]}}
  - {{alias: azure, deployments: [{{provider: p-azure, model: gpt-4o-deploy}}]}}
  - {{alias: anthropic, deployments: [{{provider: p-anthropic, model: claude-sonnet-4-5}}]}}
  - {{alias: gemini, deployments: [{{provider: p-gemini, model: gemini-2.5-flash}}]}}
  - {{alias: bedrock, deployments: [{{provider: p-bedrock, model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}}]}}
  - {{alias: embed, deployments: [{{provider: p-openai, model: text-embedding-3-small}}]}}
  - {{alias: fast, deployments: [{{provider: p-fast, model: fast-model}}]}}
{extra_models}
routing:
  {routing}
"#
    )
}

pub struct Gateway {
    child: Child,
    pub url: String,
    dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Writes `config` to a temp file and starts `switchyard serve` on it.
    pub async fn start(config: &str) -> Gateway {
        Self::start_in(config, tempfile::tempdir().unwrap()).await
    }

    /// Like `start`, in a given directory (to restart on the same data).
    pub async fn start_in(config: &str, dir: tempfile::TempDir) -> Gateway {
        let path = dir.path().join("switchyard.yaml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve").arg("--config").arg(&path);
        Self::spawn(cmd, dir).await
    }

    /// Starts the binary with `args` and waits for its "listening" line.
    pub async fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Gateway {
        cmd.env("RUST_LOG", "error")
            .env("SWITCHYARD_DATA_DIR", dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start switchyard");
        let stdout = child.stdout.take().unwrap();
        let url = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let url = loop {
                let line = lines
                    .next()
                    .expect("switchyard exited before listening")
                    .unwrap();
                if let Some(url) = line.strip_prefix("switchyard listening on ") {
                    break url.trim().to_owned();
                }
            };
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            url
        });
        let url = tokio::time::timeout(Duration::from_secs(30), url)
            .await
            .expect("switchyard did not start within 30 s")
            .unwrap();
        Gateway {
            child,
            url,
            dir: Some(dir),
        }
    }

    /// The gateway's data directory (store and spill file).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().join("data"))
            .unwrap_or_default()
    }

    /// Stops the process and hands back its directory (config and data).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (after a signal) and returns its exit status.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Like `wait`, handing back the directory (to restart on the same data).
    pub fn wait_keeping_dir(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let status = self.child.wait().unwrap();
        (status, self.dir.take().unwrap())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Env {
    pub sim: SimServer,
    pub gw: Gateway,
    pub http: reqwest::Client,
}

pub async fn start_sim(config: SimConfig) -> SimServer {
    SimServer::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// The simulator plus a gateway with one alias per provider kind.
pub async fn env() -> Env {
    env_with("").await
}

pub async fn env_with(extra_models: &str) -> Env {
    env_with_routing(extra_models, "allowed_fails: 3\n  cooldown: 2s").await
}

pub async fn env_with_routing(extra_models: &str, routing: &str) -> Env {
    env_with_sections(extra_models, routing, "").await
}

/// The standard environment with more top-level sections (e.g. `telemetry:`) in its config.
pub async fn env_with_sections(extra_models: &str, routing: &str, sections: &str) -> Env {
    env_with_sim(SimConfig::default(), extra_models, routing, sections).await
}

/// [`env_with_sections`] over a simulator of the caller's configuration.
pub async fn env_with_sim(
    sim: SimConfig,
    extra_models: &str,
    routing: &str,
    sections: &str,
) -> Env {
    let sim = start_sim(sim).await;
    let config = format!(
        "{}
{sections}",
        standard_config_with(&sim.base_url(), extra_models, routing)
    );
    let gw = Gateway::start(&config).await;
    Env {
        sim,
        gw,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The SSE `data:` payloads, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.text
            .split("\n\n")
            .filter_map(|frame| {
                let data: Vec<&str> = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .collect()
    }

    /// The SSE `event:` names, in order.
    pub fn sse_events(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
            .collect()
    }
}

impl Env {
    pub async fn post_key(&self, path: &str, body: &Value, key: &str) -> Reply {
        self.post_with(path, body, &[("authorization", &format!("Bearer {key}"))])
            .await
    }

    pub async fn get_key(&self, path: &str, key: &str) -> Reply {
        let resp = self
            .http
            .get(format!("{}{path}", self.gw.url))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Reply {
            status,
            headers,
            text: resp.text().await.unwrap(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, body, &[("authorization", &format!("Bearer {KEY}"))])
            .await
    }

    pub async fn post_anthropic(&self, body: &Value) -> Reply {
        self.post_with(
            "/v1/messages",
            body,
            &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        )
        .await
    }

    pub async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.post_raw(path, body.to_string().into_bytes(), headers)
            .await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.gw.url))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        let resp = self
            .http
            .get(format!("{}{path}", self.gw.url))
            .header("authorization", format!("Bearer {KEY}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Reply {
            status,
            headers,
            text: resp.text().await.unwrap(),
        }
    }

    /// Installs a runtime fault rule in the simulator for one upstream model.
    pub async fn fault(&self, model: &str, fault: &str, times: Option<u32>) {
        let mut rule = json!({"model": model, "fault": fault});
        if let Some(t) = times {
            rule["times"] = json!(t);
        }
        let resp = self
            .http
            .post(format!("{}/_sim/faults", self.sim.base_url()))
            .json(&json!([rule]))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "sim rejected fault {fault}");
    }

    pub async fn clear_faults(&self) {
        self.http
            .delete(format!("{}/_sim/faults", self.sim.base_url()))
            .send()
            .await
            .unwrap();
    }

    pub async fn sim_stats(&self) -> Value {
        self.http
            .get(format!("{}/_sim/stats", self.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A server a test starts as a child process on a port chosen free (MLflow, Phoenix).
pub trait LocalServer: Sized {
    /// Its name in failure messages.
    const NAME: &'static str;
    /// The path of its health check.
    const HEALTH: &'static str;
    fn spawn(python: &str) -> Self;
    fn child(&mut self) -> &mut Child;
    fn url(&self) -> &str;
    /// The file its output goes to.
    fn log(&self) -> PathBuf;

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Waits up to 300 s for `server` to answer its health check (such servers migrate a database
/// first, which takes a while on a busy machine). Its port was free when chosen, but the server
/// binds it seconds later and another test may take it meanwhile: a server that exits having
/// lost its port is started again on a new one, up to three times.
pub async fn wait_ready<S: LocalServer>(server: &mut S, python: &str, http: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut restarts = 0;
    loop {
        // Asked before the port is: once the server has gone, whatever answers there is not it.
        if let Ok(Some(status)) = server.child().try_wait() {
            let log = server.log_tail();
            if restarts < 3 && log.to_ascii_lowercase().contains("address already in use") {
                restarts += 1;
                *server = S::spawn(python);
                continue;
            }
            panic!("{} exited ({status}):\n{log}", S::NAME);
        }
        if let Ok(r) = http
            .get(format!("{}{}", server.url(), S::HEALTH))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not become ready within 300 s:\n{}",
            S::NAME,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Loopback `port` bound but not listened on, held while the returned socket lives: a
/// connection to it is refused, and no other test's server can be given the port meanwhile. (A
/// port let go can be, and that server then answers in its place.) `None` when something else
/// holds the port already.
pub fn hold_port(port: u16) -> Option<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(([127, 0, 0, 1], port).into()).ok()?;
    Some(socket)
}

/// A port of its own choosing held as [`hold_port`] holds one, and its number.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = hold_port(0).expect("a loopback port");
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// The record of request `id` from the admin API, once the writer has stored it.
pub async fn record(env: &Env, id: &str) -> Value {
    for _ in 0..100 {
        let r = env.get(&format!("/admin/requests/{id}")).await;
        if r.status == 200 {
            return r.json();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no record for request {id}");
}

pub fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// A client for tests that talk to several gateways (replicas) at once.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A request to `gw` with `key`: its status, its JSON body (null when it has none) and its
/// headers.
pub async fn send_to(
    http: &reqwest::Client,
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(key);
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    if let Some(body) = body {
        r = r.json(body);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

/// `POST path` with a JSON body and `key`: status and JSON body.
pub async fn post_to(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let (status, body, _) =
        send_to(http, gw, reqwest::Method::POST, path, key, Some(body), &[]).await;
    (status, body)
}

/// `GET path` with the master key: status and JSON body.
pub async fn get_from(http: &reqwest::Client, gw: &Gateway, path: &str) -> (u16, Value) {
    let (status, body, _) = send_to(http, gw, reqwest::Method::GET, path, KEY, None, &[]).await;
    (status, body)
}

/// Whether `gw`'s `/metrics` comes to hold `line` (a whole line) within about five seconds.
pub async fn metrics_come_to_say(http: &reqwest::Client, gw: &Gateway, line: &str) -> bool {
    let line = format!("\n{line}\n");
    for _ in 0..50 {
        let text = http
            .get(format!("{}/metrics", gw.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&line) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

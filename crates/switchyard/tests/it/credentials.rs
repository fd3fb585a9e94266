//! Provider credentials through the real binary: stored through the admin API, encrypted at rest
//! (the database never holds the secret), used for upstream auth at once (the simulator accepts
//! only the listed keys), rotated without a restart, kept across restarts, and a wrong or
//! missing master key answered with clear errors instead of a crash.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::SimConfig;

use crate::harness::{Env, Gateway, KEY, chat, start_sim};

const FIRST: &str = "sk-upstream-first-0123456789abcdef";
const SECOND: &str = "sk-upstream-second-fedcba9876543210";
const WRONG: &str = "sk-upstream-revoked-00000000000000";
const MASTER: &str = "0000000000000000000000000000000000000000000000000000000000000042";
const OTHER_MASTER: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn config(sim: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-vault, kind: openai, base_url: "{sim}/v1", credential: upstream-openai}}
models:
  - {{alias: vaulted, deployments: [{{provider: p-vault, model: vault-model}}]}}
"#
    )
}

async fn start(dir: tempfile::TempDir, master: Option<&str>) -> Gateway {
    let path = dir.path().join("switchyard.yaml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("serve").arg("--config").arg(&path);
    cmd.env_remove("SWITCHYARD_ENCRYPTION_KEY");
    if let Some(m) = master {
        cmd.env("SWITCHYARD_ENCRYPTION_KEY", m);
    }
    Gateway::spawn(cmd, dir).await
}

async fn put(env: &Env, name: &str, value: &str) -> (u16, Value) {
    let r = env
        .post(
            "/admin/credentials",
            &json!({"name": name, "value": value, "description": "OpenAI production"}),
        )
        .await;
    let body = serde_json::from_str(&r.text).unwrap_or(Value::Null);
    (r.status, body)
}

/// Every file of the data directory, as text (SQLite main file and write-ahead log).
fn data_files(dir: &std::path::Path) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn stored_credentials_authenticate_upstream_and_never_rest_in_plaintext() {
    let sim = start_sim(SimConfig {
        api_keys: vec![FIRST.into(), SECOND.into()],
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("switchyard.yaml"), config(&sim.base_url())).unwrap();
    let gw = start(dir, Some(MASTER)).await;
    let env = Env {
        sim,
        gw,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    let hello = chat("vaulted", "hello");
    let ask = || env.post("/v1/chat/completions", &hello);

    // Not stored yet: a clear error, nothing sent upstream.
    let r = ask().await;
    assert_eq!(r.status, 503, "{}", r.text);
    let e = r.json();
    assert_eq!(e["error"]["code"], "credential_unavailable");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no credential named 'upstream-openai'"),
        "{e}"
    );
    assert_eq!(env.sim_stats().await["requests"], 0);

    // Only the admin role may manage credentials.
    let viewer = env
        .post("/admin/keys", &json!({"name": "v", "role": "viewer"}))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.get_key("/admin/credentials", &viewer).await.status, 403);
    let r = env
        .post_key(
            "/admin/credentials",
            &json!({"name": "x", "value": FIRST}),
            &viewer,
        )
        .await;
    assert_eq!(r.status, 403);
    let r = env
        .post(
            "/admin/credentials",
            &json!({"name": "bad name", "value": "v"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "name");

    // Stored: used at once, shown only by its tail.
    let (status, view) = put(&env, "upstream-openai", FIRST).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["hint"], "…cdef");
    assert_eq!(view["used_by"], json!(["p-vault"]));
    assert_eq!(view["status"], "ready");
    assert!(!view.to_string().contains(FIRST));
    assert_eq!(ask().await.status, 200);

    // Rotated to a key the provider refuses, then to another it accepts: each takes effect
    // with the next request, without a restart.
    assert_eq!(put(&env, "upstream-openai", WRONG).await.0, 200);
    let r = ask().await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "upstream_auth_failed");
    assert!(!r.text.contains(WRONG));
    assert_eq!(put(&env, "upstream-openai", SECOND).await.0, 200);
    assert_eq!(ask().await.status, 200);

    let list = env.get("/admin/credentials").await;
    assert_eq!(list.status, 200);
    let listed = list.json();
    assert_eq!(listed["data"][0]["name"], "upstream-openai");
    assert_eq!(listed["data"][0]["hint"], "…3210");
    let audit = env.get("/admin/audit?limit=50").await;
    let entries: Vec<Value> = audit.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "credential")
        .cloned()
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rotate", "rotate", "create"]);
    for secret in [FIRST, SECOND, WRONG] {
        assert!(!list.text.contains(secret) && !audit.text.contains(secret));
    }

    // At rest: encrypted, in the database file and its log alike.
    let Env { sim, gw, http } = env;
    let data = gw.data_dir();
    let stored = data_files(&data);
    assert!(stored.contains("v1:"), "the envelope is stored");
    for secret in [FIRST, SECOND, WRONG] {
        assert!(
            !stored.contains(secret),
            "plaintext secret in the data directory"
        );
    }

    // A restart with the same master key uses the stored credential.
    let gw = start(gw.stop(), Some(MASTER)).await;
    let env = Env { sim, gw, http };
    assert_eq!(
        env.post("/v1/chat/completions", &chat("vaulted", "again"))
            .await
            .status,
        200
    );

    // Another master key: the gateway runs, and says what is wrong.
    let Env { sim, gw, http } = env;
    let gw = start(gw.stop(), Some(OTHER_MASTER)).await;
    let env = Env { sim, gw, http };
    let r = env
        .post("/v1/chat/completions", &chat("vaulted", "wrong key"))
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("cannot be decrypted") && message.contains("encrypted under key id"),
        "{message}"
    );
    let listed = env.get("/admin/credentials").await.json();
    assert!(
        listed["data"][0]["status"]
            .as_str()
            .unwrap()
            .contains("encrypted under key id"),
        "{listed}"
    );
    assert_eq!(env.get("/health/live").await.status, 200);

    // No master key: listing works, storing is refused with a clear error.
    let Env { sim, gw, http } = env;
    let gw = start(gw.stop(), None).await;
    let env = Env { sim, gw, http };
    let (status, body) = put(&env, "upstream-openai", FIRST).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "encryption_not_configured");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHYARD_ENCRYPTION_KEY")
    );
    assert_eq!(
        env.get("/admin/credentials").await.json()["encryption_configured"],
        false
    );
}

#[tokio::test]
async fn a_malformed_master_key_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, config("http://127.0.0.1:9")).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("SWITCHYARD_DATA_DIR", dir.path().join("data"))
            .env("SWITCHYARD_ENCRYPTION_KEY", "too-short-to-be-a-key")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SWITCHYARD_ENCRYPTION_KEY must be 32 random bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short-to-be-a-key"));
    assert!(!stderr.contains("panicked"));
}

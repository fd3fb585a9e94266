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

/// Where the fake AWS endpoints stand: ECS/EKS's container endpoint, EC2's instance metadata
/// service and STS, each counting the credentials it handed out.
#[derive(Default)]
struct AwsEndpoints {
    container: std::sync::atomic::AtomicU32,
    imds: std::sync::atomic::AtomicU32,
    sts: std::sync::atomic::AtomicU32,
}

async fn aws_endpoints() -> (String, std::sync::Arc<AwsEndpoints>) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post, put};
    use std::sync::Arc;
    use std::sync::atomic::Ordering::SeqCst;

    type Shared = State<Arc<AwsEndpoints>>;
    fn expiring_in(secs: u64) -> String {
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(secs))
            .to_string()
    }
    let counts = Arc::new(AwsEndpoints::default());
    let app = axum::Router::new()
        .route(
            "/creds",
            get(|State(c): Shared, headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("pod-token") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                // Short-lived, so the gateway renews them within the test.
                let n = c.container.fetch_add(1, SeqCst) + 1;
                let doc = json!({
                    "AccessKeyId": format!("AKIDCONTAINER{n}"),
                    "SecretAccessKey": "container-secret",
                    "Token": "container-session",
                    "Expiration": expiring_in(4),
                });
                (StatusCode::OK, doc.to_string())
            }),
        )
        .route(
            "/latest/api/token",
            put(|headers: HeaderMap| async move {
                match headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(_) => (StatusCode::OK, "imds-session"),
                    None => (StatusCode::BAD_REQUEST, ""),
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/{*role}",
            get(
                |State(c): Shared,
                 axum::extract::Path(role): axum::extract::Path<String>,
                 headers: HeaderMap| async move {
                    if headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok())
                        != Some("imds-session")
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    if role.is_empty() {
                        return (StatusCode::OK, "gateway-role\n".to_owned());
                    }
                    assert_eq!(role, "gateway-role");
                    c.imds.fetch_add(1, SeqCst);
                    let doc = json!({
                        "Code": "Success",
                        "LastUpdated": expiring_in(0),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": "AKIDIMDS",
                        "SecretAccessKey": "imds-secret",
                        "Token": "imds-session-token",
                        "Expiration": expiring_in(3600),
                    });
                    (StatusCode::OK, doc.to_string())
                },
            ),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/",
            get(|headers: HeaderMap| async move {
                match headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok()) {
                    Some("imds-session") => (StatusCode::OK, "gateway-role\n"),
                    _ => (StatusCode::UNAUTHORIZED, ""),
                }
            }),
        )
        .route(
            "/sts/",
            post(|State(c): Shared, body: String| async move {
                let form: std::collections::HashMap<String, String> =
                    form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                if form.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity")
                    || form.get("WebIdentityToken").map(String::as_str) != Some("oidc-token")
                    || form.get("RoleArn").map(String::as_str)
                        != Some("arn:aws:iam::123456789012:role/gateway")
                {
                    return (StatusCode::FORBIDDEN, format!("<ErrorResponse><Error><Message>bad request: {body}</Message></Error></ErrorResponse>"));
                }
                c.sts.fetch_add(1, SeqCst);
                let xml = format!(
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><SessionToken>sts-session</SessionToken><SecretAccessKey>sts-secret</SecretAccessKey><Expiration>{}</Expiration><AccessKeyId>AKIDSTS</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                    expiring_in(3600)
                );
                (StatusCode::OK, xml)
            }),
        )
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, counts)
}

/// A Bedrock provider without keys in its configuration finds them as AWS's tools do, through
/// the real binary: the container endpoint (renewed before they expire), the instance metadata
/// service, a web identity token exchanged with STS; and with none of them, the start stops with
/// a message saying what was tried. The simulator accepts only the keys those sources hand out.
#[tokio::test]
async fn bedrock_finds_aws_credentials_as_aws_tools_do() {
    use std::sync::atomic::Ordering::SeqCst;
    let sim = start_sim(SimConfig {
        api_keys: vec!["AKIDCONTAINER2".into(), "AKIDIMDS".into(), "AKIDSTS".into()],
        ..SimConfig::default()
    })
    .await;
    let (aws, counts) = aws_endpoints().await;
    let config = format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-chain, kind: bedrock, base_url: "{}", region: us-west-2}}
models:
  - {{alias: chained, deployments: [{{provider: p-chain, model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}}]}}
"#,
        sim.base_url()
    );
    let http = reqwest::Client::new();
    let command = |dir: &tempfile::TempDir, vars: &[(&str, String)]| {
        let path = dir.path().join("switchyard.yaml");
        std::fs::write(&path, &config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve").arg("--config").arg(&path);
        // Only what the case sets: no keys of the machine's, no shared files, no real IMDS.
        for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
            cmd.env_remove(name);
        }
        cmd.env("HOME", dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SWITCHYARD_DATA_DIR", dir.path().join("data"));
        for (name, value) in vars {
            cmd.env(name, value);
        }
        cmd
    };
    let ask = |gw: &Gateway| {
        let request = http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(KEY)
            .json(&chat("chained", "Who signs this?"));
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // EKS Pod Identity: a full URI and a token file. The first keys (AKIDCONTAINER1) live four
    // seconds and the simulator does not take them; the renewed ones (AKIDCONTAINER2) it does.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("pod-token");
    std::fs::write(&token_file, "pod-token\n").unwrap();
    let gw = Gateway::spawn(
        command(
            &dir,
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{aws}/creds")),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    token_file.display().to_string(),
                ),
            ],
        ),
        dir,
    )
    .await;
    assert_eq!(counts.container.load(SeqCst), 1);
    let mut renewed = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if counts.container.load(SeqCst) >= 2 {
            renewed = true;
            break;
        }
    }
    assert!(
        renewed,
        "the container's credentials were renewed before they expired"
    );
    let (status, text) = ask(&gw).await;
    assert_eq!(status, 200, "signed with the renewed keys: {text}");
    drop(gw);

    // EC2: IMDSv2's session token, the instance's role, its credentials.
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn(
        command(
            &dir,
            &[
                ("AWS_EC2_METADATA_DISABLED", "false".into()),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", aws.clone()),
            ],
        ),
        dir,
    )
    .await;
    let (status, text) = ask(&gw).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(counts.imds.load(SeqCst), 1);
    drop(gw);

    // EKS IAM roles for service accounts: the token file's token exchanged with STS.
    let dir = tempfile::tempdir().unwrap();
    let oidc = dir.path().join("oidc-token");
    std::fs::write(&oidc, "oidc-token").unwrap();
    let gw = Gateway::spawn(
        command(
            &dir,
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", oidc.display().to_string()),
                (
                    "AWS_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/gateway".into(),
                ),
                ("AWS_ENDPOINT_URL_STS", format!("{aws}/sts")),
            ],
        ),
        dir,
    )
    .await;
    let (status, text) = ask(&gw).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(counts.sts.load(SeqCst), 1);
    drop(gw);

    // None at all: the start stops and says what was tried.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&dir, &[]);
    let out = tokio::task::spawn_blocking(move || {
        let out = cmd.output().unwrap();
        drop(dir);
        out
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("provider 'p-chain'"), "{stderr}");
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

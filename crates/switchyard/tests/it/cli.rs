//! The command line as a new user meets it: help, check-config, demo.

use std::process::Command;

use serde_json::json;

use crate::harness::{Gateway, Reply};

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn help_explains_each_subcommand() {
    let out = switchyard().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["demo", "serve", "check-config"] {
        assert!(text.contains(sub), "{text}");
    }
}

#[test]
fn check_config_prints_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "server: {master_key: k, listen: nowhere}\nproviders: [{name: p, kind: openai}]\nmodels: [{alias: a, deployments: [{provider: q, model: m}], extra: 1}]\n",
    )
    .unwrap();
    let out = switchyard()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in ["server.listen", "providers[0].api_key", "models[0]"] {
        assert!(err.contains(path), "{path} missing from:\n{err}");
    }

    // Every bad field of a section, not only its first; a secret's value never printed, nor
    // the line of the text that holds it; and no error made up by the others.
    let checked = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = switchyard()
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = checked(
        "many.yaml",
        "server: {master_key: 98765432109876543210, idle_timeout: -5s, workers: many}\nproviders: [{name: p, kind: simulator, timeouts: {connect: 5, first_byte: 10x}}]\nmodels: [{alias: a, deployments: [{provider: p, model: m, weight: 0}]}]\n",
    );
    for path in [
        "server.idle_timeout",
        "server.workers",
        "server.master_key: invalid value (not shown",
        "providers[0].timeouts.connect",
        "providers[0].timeouts.first_byte",
        "models[0].deployments[0].weight",
    ] {
        assert!(err.contains(path), "{path} missing from:\n{err}");
    }
    assert!(
        !err.contains("98765432109876543210") && !err.contains("9.87"),
        "{err}"
    );
    assert!(!err.contains("required"), "{err}");
    let err = checked(
        "unclosed.yaml",
        "server:\n  master_key: \"sk-master-SECRET123\n  listen: 1\n",
    );
    assert!(
        err.contains("not valid YAML") && err.contains("line 2"),
        "{err}"
    );
    assert!(!err.contains("SECRET123"), "{err}");

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "server: {master_key: k}\nproviders: [{name: p, kind: simulator}]\nmodels: [{alias: a, deployments: [{provider: p, model: m}]}]\n").unwrap();
    let out = switchyard()
        .arg("check-config")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn demo_answers_without_keys_or_network() {
    let mut cmd = switchyard();
    cmd.arg("demo").arg("--listen").arg("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::spawn(cmd, dir).await;
    let http = reqwest::Client::new();

    // A second process on the same data directory would share its store but not its state in
    // memory: it does not start, and says why.
    let second = tokio::task::spawn_blocking(move || {
        let mut child = switchyard()
            .args(["demo", "--listen", "127.0.0.1:0"])
            .env("SWITCHYARD_DATA_DIR", &data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                return Some(child.wait_with_output().unwrap());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap()
    .expect("the second process exits");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another Switchyard process is using the data directory"),
        "{stderr}"
    );
    for model in [
        "gpt-4o-mini",
        "claude-sonnet",
        "gemini-flash",
        "claude-bedrock",
    ] {
        let resp = http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth("sk-sy-demo-0000000000000000")
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hello!"}]}))
            .send()
            .await
            .unwrap();
        let r = Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        };
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        assert!(
            r.json()["choices"][0]["message"]["content"]
                .as_str()
                .is_some()
        );
    }
}

/// A stream still running when the shutdown's grace period runs out is cut, and its record
/// says the gateway's shutdown did it, not its client.
#[cfg(unix)]
#[tokio::test]
async fn a_stream_the_shutdown_cuts_short_is_recorded_as_such() {
    use sqlx::Connection;
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig {
        token_ms: 200,
        reply_words: 100,
        ..Default::default()
    })
    .await;
    let config = crate::harness::standard_config(&sim.base_url(), "").replacen(
        "shutdown_grace: 10s",
        "shutdown_grace: 300ms",
        1,
    );
    let gw = Gateway::start(&config).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(crate::harness::KEY)
        .json(&json!({"model": "openai", "stream": true, "messages": [{"role": "user", "content": "story"}]}))
        .send()
        .await
        .unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(gw.pid().to_string())
        .status()
        .unwrap();
    let text = response.text().await.unwrap_or_default();
    assert!(!text.contains("[DONE]"), "{text}");
    let (status, dir) = tokio::task::spawn_blocking(move || gw.wait_keeping_dir())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let db = dir.path().join("data").join("switchyard.db");
    // The store holds prompts and answers: its owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (outcome, code): (String, Option<String>) =
        sqlx::query_as("SELECT outcome, error_code FROM requests")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        (outcome.as_str(), code.as_deref()),
        ("cancelled", Some("gateway_shutdown"))
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_a_stream_in_flight() {
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig {
        token_ms: 100,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&crate::harness::standard_config(&sim.base_url(), "")).await;
    let url = gw.url.clone();
    let http = reqwest::Client::new();
    let request = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(crate::harness::KEY)
        .json(&json!({"model": "openai", "stream": true, "messages": [{"role": "user", "content": "story"}]}))
        .send();
    let response = request.await.unwrap();
    // The stream is under way (headers arrived); now ask the gateway to stop.
    let pid = gw.pid();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream was cut by shutdown:\n{text}"
    );
    let status = tokio::task::spawn_blocking(move || gw.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// mimalloc asks for huge pages; the gateway opts out so its memory follows its use.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_gateway_opts_out_of_transparent_huge_pages() {
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig::default()).await;
    let gw = Gateway::start(&crate::harness::standard_config(&sim.base_url(), "")).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    // Kernels before 5.0 do not report the flag; nothing to check there.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{status}");
    }
}

/// `server.workers` threads serve; connections spread over them, and every request on every
/// connection (plain and streamed) is answered whole.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connections_spread_over_the_serving_workers() {
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig::default()).await;
    let config = crate::harness::standard_config(&sim.base_url(), "").replace(
        "  shutdown_grace: 10s\n",
        "  shutdown_grace: 10s\n  workers: 3\n",
    );
    let gw = Gateway::start(&config).await;
    // The workers start right after the address is printed: give them a moment.
    let workers = || {
        std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("switchyard-work"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while workers() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(workers(), 3);
    let mut calls = Vec::new();
    for i in 0..24 {
        // A client each: a connection each, handed to the workers in turn.
        let http = reqwest::Client::new();
        let url = gw.url.clone();
        calls.push(tokio::spawn(async move {
            let stream = i % 2 == 0;
            let response = http
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(crate::harness::KEY)
                .json(&json!({"model": "openai", "stream": stream, "messages": [{"role": "user", "content": format!("hello {i}")}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let text = response.text().await.unwrap();
            if stream {
                assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
            } else {
                let body: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(body["choices"][0]["message"]["content"].is_string(), "{text}");
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
}

/// Reads one HTTP/1.1 response with a `content-length` from a raw connection; `None` if the
/// gateway closed the connection first.
async fn read_response(conn: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap();
            if buf.len() >= end + 4 + length {
                return Some(text);
            }
        }
        let n = conn.read(&mut chunk).await.unwrap();
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A client connection is kept open between requests, and closed once it has waited longer than
/// `server.idle_timeout` for the next one, as is one that never sends a request at all.
#[tokio::test]
async fn idle_client_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig::default()).await;
    let config = crate::harness::standard_config(&sim.base_url(), "").replace(
        "  shutdown_grace: 10s\n",
        "  shutdown_grace: 10s\n  idle_timeout: 1s\n",
    );
    let gw = Gateway::start(&config).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let request = format!("GET /health/live HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for _ in 0..3 {
        conn.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut conn)
            .await
            .expect("answered on the same connection");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // Now idle: the gateway closes it (a read sees the end) well before this bound.
    let bound = std::time::Duration::from_secs(20);
    let closed = tokio::time::timeout(bound, read_response(&mut conn)).await;
    assert_eq!(closed, Ok(None), "the idle connection was not closed");
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let closed = tokio::time::timeout(bound, read_response(&mut silent)).await;
    assert_eq!(
        closed,
        Ok(None),
        "a connection that never sent a request was not closed"
    );
}

//! Metrics, alerts and the admin CLI against the real binary: a mixed load with a failing
//! deployment shows up in `/metrics` (parsed as Prometheus text), fires and resolves an
//! error-rate alert at a webhook receiver in the test, and is readable with `switchyard requests`
//! and `switchyard spend`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::harness::{Env, Gateway, KEY, chat, standard_config_with, start_sim};

const MODELS: &str = r#"
  - alias: obs
    strategy: priority
    deployments:
      - {provider: p-fast, model: obs-primary, priority: 0}
      - {provider: p-openai, model: obs-backup, priority: 1, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
  - {alias: obs-solo, deployments: [{provider: p-openai, model: obs-broken}]}
"#;

/// Bodies received, with the path they were posted to (`json` or `slack`).
pub(crate) type Inbox = Arc<Mutex<Vec<(String, Value)>>>;

async fn receive(
    State(inbox): State<Inbox>,
    Path(kind): Path<String>,
    body: String,
) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    inbox.lock().unwrap().push((kind, value));
    "ok"
}

/// A webhook receiver on a free loopback port.
pub(crate) async fn webhook_receiver() -> (SocketAddr, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = axum::Router::new()
        .route("/hook/{kind}", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, inbox)
}

/// Polls `check` until it returns `Some`, for up to 15 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Parses the text exposition strictly enough to catch malformed output: every line is a
/// `# HELP`/`# TYPE`/`# UNIT` comment, the final `# EOF`, or `name{label="value",…} number`
/// whose family was declared by a `# TYPE` line. Returns series → value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    let mut families: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no EOF marker");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&keyword),
                "bad comment: {line}"
            );
            assert!(name_ok(name), "bad metric name: {line}");
            if keyword == "TYPE" {
                let kind = parts.next().unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "bad type: {line}"
                );
                families.push(name.to_owned());
            }
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = key.split('{').next().unwrap();
        assert!(name_ok(name), "bad series name: {line}");
        assert!(
            families.iter().any(|f| name == f
                || ["_total", "_bucket", "_sum", "_count", "_created"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str()))),
            "series of an undeclared family: {line}"
        );
        let labels = &key[name.len()..];
        if !labels.is_empty() {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix("\"}"));
            let inner = inner.unwrap_or_else(|| panic!("bad label set: {line}"));
            for pair in inner.split("\",") {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(name_ok(k), "bad label name: {line}");
                assert!(
                    !v.contains('"') || v.contains("\\\""),
                    "unescaped quote: {line}"
                );
            }
        }
        assert!(
            series.insert(key.to_owned(), value).is_none(),
            "duplicate series: {line}"
        );
    }
    series
}

async fn scrape(env: &Env) -> (String, HashMap<String, f64>) {
    // No key: Prometheus scrapes without one.
    let resp = env
        .http
        .get(format!("{}/metrics", env.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let series = parse_exposition(&text);
    (text, series)
}

/// Runs the `switchyard` binary with `args` (off the async runtime); returns (status, stdout,
/// stderr).
async fn cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .env_remove("SWITCHYARD_KEY")
        .env_remove("SWITCHYARD_MASTER_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hooks_of<'a>(inbox: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    inbox
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test]
async fn metrics_alerts_and_cli_after_a_faulty_load() {
    let (hook, inbox) = webhook_receiver().await;
    // A webhook that takes connections and never answers: the others' notifications do not
    // wait for it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_hook = silent.local_addr().unwrap();
    let sim = start_sim(switchyard_sim::SimConfig::default()).await;
    let config = format!(
        "{}\nalerts:\n  interval: 100ms\n  window: 1500ms\n  webhooks:\n    - {{url: 'http://{silent_hook}/hook/silent', timeout: 10s}}\n    - {{url: 'http://{hook}/hook/json'}}\n    - {{url: 'http://{hook}/hook/slack', format: slack, timeout: 2s}}\n  rules:\n    - {{name: errors, kind: error_rate, threshold: 0.5, min_requests: 3, resolve_after: 300ms}}\n    - {{kind: deployment_cooldown, resolve_after: 300ms}}\n",
        standard_config_with(&sim.base_url(), MODELS, "allowed_fails: 3\n  cooldown: 60s")
    );
    let gw = Gateway::start(&config).await;
    let env = Env {
        sim,
        gw,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    let env = &env;
    let inbox = &inbox;
    env.fault("obs-primary", "status=500", None).await;
    env.fault("obs-broken", "status=500", None).await;

    // The mixed load, one request at a time so cooldown counts are exact.
    for i in 0..20 {
        let mut body = chat("obs", "hello metrics");
        if i % 2 == 1 {
            body["stream"] = json!(true);
        }
        assert_eq!(env.post("/v1/chat/completions", &body).await.status, 200);
    }
    for _ in 0..6 {
        assert_eq!(
            env.post("/v1/chat/completions", &chat("obs-solo", "x"))
                .await
                .status,
            502
        );
    }
    for _ in 0..2 {
        let r = env
            .post("/v1/chat/completions", &chat("no-such-model", "x"))
            .await;
        assert_eq!(r.status, 404);
    }
    let last = env
        .post("/v1/chat/completions", &chat("openai", "the last one"))
        .await;
    assert_eq!(last.status, 200);
    // Still ready (a provider's outage is every replica's: a load balancer must not take them
    // all out), and the body says what cannot be served now: obs-solo, whose one deployment
    // cools; not obs, whose backup serves.
    let ready = env.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let ready = ready.json();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["aliases_without_usable_deployment"],
        json!(["obs-solo"]),
        "{ready}"
    );
    let last_id = last.headers["x-request-id"].to_str().unwrap().to_owned();

    // Metrics: counters arrive through the recorder, gauges are live.
    let (text, series) = eventually("metrics of every request", move || async move {
        let (text, series) = scrape(env).await;
        let total: f64 = series
            .iter()
            .filter(|(k, _)| k.starts_with("switchyard_requests_total{"))
            .map(|(_, v)| v)
            .sum();
        (total == 29.0).then_some((text, series))
    })
    .await;
    for (key, value) in [
        (
            r#"switchyard_upstream_attempts_total{deployment="p-fast/obs-primary",error_class="server_error"}"#,
            3.0,
        ),
        (
            r#"switchyard_upstream_attempts_total{deployment="p-openai/obs-backup",error_class="none"}"#,
            20.0,
        ),
        (
            r#"switchyard_deployment_cooling{alias="obs",deployment="p-fast/obs-primary"}"#,
            1.0,
        ),
        (
            r#"switchyard_deployment_cooling{alias="obs",deployment="p-openai/obs-backup"}"#,
            0.0,
        ),
        (
            r#"switchyard_deployment_consecutive_failures{alias="obs",deployment="p-fast/obs-primary"}"#,
            3.0,
        ),
        (
            r#"switchyard_deployment_in_flight_requests{alias="obs",deployment="p-fast/obs-primary"}"#,
            0.0,
        ),
        (
            r#"switchyard_requests_total{alias="obs",deployment="p-openai/obs-backup",status="200",error_code="none",outcome="success",ingress="openai",stream="true"}"#,
            10.0,
        ),
        (
            r#"switchyard_requests_total{alias="obs-solo",deployment="p-openai/obs-broken",status="502",error_code="upstream_unavailable",outcome="upstream_error",ingress="openai",stream="false"}"#,
            6.0,
        ),
        (
            r#"switchyard_requests_total{alias="unknown",deployment="none",status="404",error_code="model_not_found",outcome="client_error",ingress="openai",stream="false"}"#,
            2.0,
        ),
        (
            r#"switchyard_request_duration_seconds_count{alias="obs",deployment="p-openai/obs-backup"}"#,
            20.0,
        ),
        (
            r#"switchyard_time_to_first_token_seconds_count{alias="obs",deployment="p-openai/obs-backup"}"#,
            10.0,
        ),
        ("switchyard_recorder_dropped_records_total", 0.0),
        ("switchyard_recorder_queue_depth_records", 0.0),
    ] {
        assert_eq!(series.get(key), Some(&value), "{key} in\n{text}");
    }
    let cost = series[r#"switchyard_cost_nanodollars_total{alias="obs",deployment="p-openai/obs-backup",team="none"}"#];
    assert!(cost > 0.0, "{text}");
    assert!(series.keys().any(|k| k.starts_with(r#"switchyard_tokens_total{alias="obs",deployment="p-openai/obs-backup",team="none",kind="output"}"#)));
    assert!(
        !text.contains("no-such-model"),
        "a client string became a label:\n{text}"
    );

    // The error-rate alert fired for the failing deployment and the failing alias, once each,
    // in both formats.
    let firing = eventually("firing notifications", move || async move {
        let inbox = inbox.lock().unwrap().clone();
        let json = hooks_of(&inbox, "json");
        let got = |subject: &str| {
            json.iter().any(|b| {
                b["status"] == "firing" && b["rule"] == "errors" && b["subject"] == subject
            })
        };
        (got("p-fast/obs-primary") && got("obs-solo") && hooks_of(&inbox, "slack").len() >= 2)
            .then_some(inbox)
    })
    .await;
    let primary: Vec<&Value> = hooks_of(&firing, "json")
        .into_iter()
        .filter(|b| {
            b["status"] == "firing" && b["rule"] == "errors" && b["subject"] == "p-fast/obs-primary"
        })
        .collect();
    assert_eq!(primary.len(), 1, "{primary:?}");
    let b = primary[0];
    assert_eq!(b["kind"], "error_rate");
    assert_eq!(b["scope"], "deployment");
    assert_eq!(b["value"], 1.0);
    assert_eq!(b["threshold"], 0.5);
    assert_eq!(b["requests"], 3);
    assert!(b["since"].as_str().unwrap().ends_with('Z'));
    let slack: Vec<String> = hooks_of(&firing, "slack")
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        slack
            .iter()
            .any(|t| t.contains("*[FIRING]* `errors`")
                && t.contains("deployment p-fast/obs-primary")),
        "{slack:?}"
    );

    // The admin view lists what fires, for the master key only.
    let alerts = env.get("/admin/alerts").await.json();
    assert!(
        alerts["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "deployment_cooldown" && a["subject"] == "p-fast/obs-primary"),
        "{alerts}"
    );
    let anonymous = env
        .http
        .get(format!("{}/admin/alerts", env.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Fault cleared, window passed: the error-rate alerts resolve, once.
    env.clear_faults().await;
    let resolved = eventually("resolved notification", move || async move {
        let inbox = inbox.lock().unwrap().clone();
        // Each webhook is delivered on its own, so wait for both formats.
        let json_resolved = hooks_of(&inbox, "json").iter().any(|b| {
            b["status"] == "resolved"
                && b["rule"] == "errors"
                && b["subject"] == "p-fast/obs-primary"
        });
        let slack_resolved = hooks_of(&inbox, "slack").iter().any(|b| {
            b["text"].as_str().is_some_and(|t| {
                t.contains("*[RESOLVED]* `errors`") && t.contains("p-fast/obs-primary")
            })
        });
        (json_resolved && slack_resolved).then_some(inbox)
    })
    .await;
    let firing_again = hooks_of(&resolved, "json")
        .iter()
        .filter(|b| {
            b["status"] == "firing" && b["subject"] == "p-fast/obs-primary" && b["rule"] == "errors"
        })
        .count();
    assert_eq!(firing_again, 1);

    // The CLI reads the same records.
    let url = env.gw.url.clone();
    let path = format!("/admin/requests/{last_id}");
    let path = &path;
    eventually("the last record stored", move || async move {
        (env.get(path).await.status == 200).then_some(())
    })
    .await;
    let (code, out, err) = cli(
        &["requests", "tail", "--url", &url, "--limit", "3"],
        &[("SWITCHYARD_KEY", KEY)],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for column in [
        "TIME",
        "ID",
        "ALIAS",
        "DEPLOYMENT",
        "STATUS",
        "OUTCOME",
        "LATENCY_MS",
        "COST_USD",
    ] {
        assert!(lines[0].contains(column), "{out}");
    }
    // Oldest first: the last request is the last line.
    let newest: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(newest[1], last_id, "{out}");
    assert_eq!(
        &newest[2..6],
        ["openai", "p-openai/gpt-4o-mini", "200", "success"],
        "{out}"
    );

    let (code, out, err) = cli(
        &[
            "requests", "tail", "--url", &url, "--key", KEY, "--alias", "obs-solo", "--limit", "50",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "{out}");
    assert!(
        rows.iter()
            .all(|r| r.contains(" 502 ") && r.contains("upstream_error")),
        "{out}"
    );

    let (code, out, err) = cli(
        &["requests", "show", &last_id, "--url", &url],
        &[("SWITCHYARD_MASTER_KEY", KEY)],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("id         {last_id}")), "{out}");
    assert!(
        out.contains("openai -> openai (p-openai/gpt-4o-mini"),
        "{out}"
    );
    assert!(out.contains("attempts"), "{out}");

    let (code, out, err) = cli(
        &[
            "spend", "--by", "alias", "--since", "1d", "--url", &url, "--key", KEY,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(out.lines().next().unwrap().contains("ALIAS"), "{out}");
    let obs = row("obs");
    assert_eq!(obs[1], "20", "{out}");
    assert_ne!(obs[4], "$0.000000", "{out}");
    assert_eq!(row("obs-solo")[1], "6", "{out}");
    assert_eq!(row("TOTAL")[1], "29", "{out}");

    // Errors from the API are printed as they come, with a failing exit code; a refused key
    // with what to give instead.
    let (code, _, err) = cli(&["requests", "tail", "--url", &url, "--key", "wrong"], &[]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("refused the key")
            && err.contains("--key or SWITCHYARD_KEY")
            && err.contains("401"),
        "{err}"
    );
    let (code, _, err) = cli(
        &["spend", "--by", "colour", "--url", &url, "--key", KEY],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("'by' must be"), "{err}");
    let (code, _, err) = cli(
        &["requests", "show", "nope", "--url", &url, "--key", KEY],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("404"), "{err}");
}

/// `switchyard requests tail --follow --json` on `env`'s gateway, looking every `interval`,
/// its output piped.
fn follow(env: &Env, interval: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "requests",
            "tail",
            "--url",
            &env.gw.url,
            "--key",
            KEY,
            "--follow",
            "--json",
            "--limit",
            "1",
            "--interval",
            interval,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines `child` prints, gathered as they come.
fn lines_of(child: &mut std::process::Child) -> Arc<Mutex<Vec<String>>> {
    let stdout = child.stdout.take().unwrap();
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let lines = printed.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            lines.lock().unwrap().push(line);
        }
    });
    printed
}

#[tokio::test]
async fn following_the_records_misses_none_when_more_than_a_page_comes_between_looks() {
    let env = crate::harness::env().await;
    let mut child = follow(&env, "6s");
    let printed = lines_of(&mut child);
    // Its first look happens before these: more than a page (1,000) comes before its next.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = chat("openai", "x");
    let mut ids = Vec::new();
    for _ in 0..11 {
        let batch = (0..100).map(|_| env.post("/v1/chat/completions", &body));
        for r in futures::future::join_all(batch).await {
            assert_eq!(r.status, 200, "{}", r.text);
            ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
        }
    }
    let mut missing = ids.len();
    for _ in 0..100 {
        let seen: std::collections::HashSet<String> = printed
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        missing = ids.iter().filter(|id| !seen.contains(*id)).count();
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(missing, 0, "{missing} of {} records never shown", ids.len());
}

/// Records from before it started, more than a page of them, are history, not news: following
/// prints the newest one it was asked for, then only what comes.
#[tokio::test]
async fn following_the_records_prints_no_history_as_news() {
    let env = crate::harness::env().await;
    let body = chat("openai", "x");
    for _ in 0..11 {
        let batch = (0..100).map(|_| env.post("/v1/chat/completions", &body));
        for r in futures::future::join_all(batch).await {
            assert_eq!(r.status, 200, "{}", r.text);
        }
    }
    // Every one of them recorded before following starts.
    let mut recorded = 0;
    for _ in 0..100 {
        let page = env.get("/admin/requests?limit=1000").await.json();
        recorded = page["data"].as_array().unwrap().len();
        if recorded == 1000 && page["next_cursor"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recorded, 1000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut child = follow(&env, "300ms");
    let printed = lines_of(&mut child);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut news = Vec::new();
    for _ in 0..3 {
        let r = env.post("/v1/chat/completions", &body).await;
        news.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    for _ in 0..50 {
        if printed.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = child.kill();
    let _ = child.wait();
    let printed: Vec<String> = printed
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(printed.len(), 4, "{printed:?}");
    assert_eq!(printed[1..], news[..]);
}

#[tokio::test]
async fn the_cli_ends_quietly_when_its_reader_goes_away() {
    let env = crate::harness::env().await;
    assert_eq!(
        env.post("/v1/chat/completions", &chat("openai", "x"))
            .await
            .status,
        200
    );
    let mut child = follow(&env, "200ms");
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    assert!(first.contains("\"id\""), "{first}");
    // The reader is gone (as `| head -1` leaves): the next record printed has nowhere to go.
    for _ in 0..3 {
        env.post("/v1/chat/completions", &chat("openai", "x")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

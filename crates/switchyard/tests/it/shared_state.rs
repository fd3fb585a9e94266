//! Replicas sharing state through a real Redis server (started here on a free loopback port):
//! a key made through one replica works on the other, and a budget holds across both under
//! concurrency, never more and never less than it can pay for.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::SimConfig;

use crate::harness::{
    Gateway, KEY, chat, client, get_from as get, metrics_come_to_say, post_to as post, send_to,
    start_sim,
};

struct Redis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis server of its own, or `None` (with a loud message) where none is installed and the
/// suite is not running under CI.
async fn start_redis() -> Option<Redis> {
    let Ok(path) = which("redis-server") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("redis-server is not installed under CI: .ci/run installs it");
        }
        eprintln!(
            "\n!!! SKIPPING the shared-state test: redis-server is not installed (Debian: apt install redis-server).\n"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Some(redis_on(&path, port).await)
}

/// A Redis server without persistence on `port`: started again on the same port, it has lost
/// everything, as a production Redis without `appendonly` does when it restarts.
async fn redis_on(path: &std::path::Path, port: u16) -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(path)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start redis-server");
    let redis = Redis {
        child,
        url: format!("redis://127.0.0.1:{port}/0"),
        _dir: dir,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return redis;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not listen on port {port}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

fn config(sim: &str, redis: &str) -> String {
    config_with(sim, redis, "")
}

fn config_with(sim: &str, redis: &str, sections: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-openai, kind: openai, base_url: "{sim}/v1", api_key: sk-upstream}}
models:
  - alias: shared
    deployments:
      - {{provider: p-openai, model: shared-model, price: {{input_per_mtok: 2.5, output_per_mtok: 10}}}}
shared:
  redis_url: "{redis}"
{sections}"#
    )
}

/// A simulator and two replicas sharing `redis`.
async fn two_replicas(redis: &Redis) -> (switchyard_sim::SimServer, Gateway, Gateway) {
    let sim = start_sim(SimConfig::default()).await;
    let a = Gateway::start(&config(&sim.base_url(), &redis.url)).await;
    let b = Gateway::start(&config(&sim.base_url(), &redis.url)).await;
    (sim, a, b)
}

/// Posts `body` to `gw`'s chat endpoint every `every` until it is answered with `wanted`, at
/// most `tries` times, each other answer one of `meanwhile`; the last answer.
async fn chat_until(
    (http, gw, key): (&reqwest::Client, &Gateway, &str),
    body: &Value,
    wanted: u16,
    meanwhile: &[u16],
    (tries, every): (u32, Duration),
) -> (u16, Value) {
    let mut answer = (0, Value::Null);
    for _ in 0..tries {
        answer = post(http, gw, "/v1/chat/completions", key, body).await;
        if answer.0 == wanted {
            break;
        }
        assert!(meanwhile.contains(&answer.0), "{} {}", answer.0, answer.1);
        tokio::time::sleep(every).await;
    }
    answer
}

/// A key made through `made_on` with `body`, once `known_on` knows it too: its secret and id.
async fn key_on_both(
    http: &reqwest::Client,
    made_on: &Gateway,
    known_on: &Gateway,
    body: Value,
) -> (String, String) {
    let (status, made) = post(http, made_on, "/admin/keys", KEY, &body).await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(
        knows_key(http, known_on, &id).await,
        "the other replica learnt the key"
    );
    (key, id)
}

/// Whether `gw` comes to know key `id` (made through another replica) within three seconds.
async fn knows_key(http: &reqwest::Client, gw: &Gateway, id: &str) -> bool {
    for _ in 0..60 {
        if get(http, gw, &format!("/admin/keys/{id}")).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn replicas_share_keys_and_budgets_through_redis() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let (sim, a, b) = two_replicas(&redis).await;
    let http = client();

    // What one request costs, through a probe key made on A.
    let (status, probe) = post(&http, &a, "/admin/keys", KEY, &json!({"name": "probe"})).await;
    assert_eq!(status, 201, "{probe}");
    let probe_key = probe["key"].as_str().unwrap().to_owned();
    let probe_id = probe["id"].as_str().unwrap().to_owned();
    let body = chat("shared", "How much does this cost?");
    let (status, answer) = post(&http, &a, "/v1/chat/completions", &probe_key, &body).await;
    assert_eq!(status, 200, "{answer}");
    let mut cost = 0;
    for _ in 0..50 {
        let (_, k) = get(&http, &a, &format!("/admin/keys/{probe_id}")).await;
        cost = k["budget"]["spent_nanos"].as_i64().unwrap_or(0);
        if cost > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cost > 0);

    // A key made through A works on B once B has polled.
    let (status, made) = post(
        &http,
        &a,
        "/admin/keys",
        KEY,
        &json!({"name": "ten", "max_budget_usd": (10 * cost) as f64 / 1e9}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(
        knows_key(&http, &b, &id).await,
        "replica B learnt the key made through A"
    );

    // 100 concurrent requests, half to each replica, on a budget that pays for exactly 10.
    let before = sim_requests(&http, &sim.base_url()).await;
    let sends = (0..100).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (http, key, body) = (&http, &key, &body);
        async move { post(http, gw, "/v1/chat/completions", key, body).await }
    });
    let results = futures::future::join_all(sends).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    for (status, body) in &results {
        assert!(
            *status == 200 || (*status == 429 && body["error"]["code"] == "budget_exceeded"),
            "{status} {body}"
        );
    }
    assert_eq!(
        ok, 10,
        "exactly what the budget pays for, across both replicas"
    );
    let reached = sim_requests(&http, &sim.base_url()).await - before;
    assert_eq!(reached, 10, "only paid-for requests reached the provider");

    // Both replicas show the same spend, within the budget, with nothing left reserved.
    let budget = 10 * cost;
    let mut seen = Vec::new();
    for gw in [&a, &b] {
        let mut figures = (0, -1);
        for _ in 0..40 {
            let (_, k) = get(&http, gw, &format!("/admin/keys/{id}")).await;
            figures = (
                k["budget"]["spent_nanos"].as_i64().unwrap_or(0),
                k["budget"]["reserved_nanos"].as_i64().unwrap_or(-1),
            );
            if figures.1 == 0 && figures.0 > 9 * cost {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen.push(figures);
    }
    assert_eq!(seen[0], seen[1], "both replicas see one ledger");
    assert!(
        seen[0].0 <= budget && seen[0].0 > 9 * cost && seen[0].1 == 0,
        "spent {:?} of {budget}",
        seen[0]
    );

    // A rate limit is one limit across the replicas too.
    let (limited, _) = key_on_both(&http, &a, &b, json!({"name": "rpm", "rpm": 4})).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &a } else { &b };
        statuses.push(
            post(&http, gw, "/v1/chat/completions", &limited, &body)
                .await
                .0,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);

    // A replica that loses Redis refuses budgeted requests rather than guess.
    drop(redis);
    let (status, refused) = post(&http, &b, "/v1/chat/completions", &key, &body).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(
        refused["error"]["code"], "shared_state_unavailable",
        "{refused}"
    );
    // And says so on /metrics once its poll fails.
    let down = metrics_come_to_say(&http, &b, "switchyard_shared_state_up 0").await;
    assert!(down, "switchyard_shared_state_up went to 0");
    // And is not ready: its keys' requests are refused.
    let (status, ready) = get(&http, &b, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["shared_state"], "unreachable", "{ready}");
}

async fn sim_requests(http: &reqwest::Client, sim: &str) -> u64 {
    let stats: Value = http
        .get(format!("{sim}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["by_model"]["shared-model"].as_u64().unwrap_or(0)
}

/// A replica configured to share state that cannot reach Redis does not start, and says why
/// without the URL's password.
#[tokio::test]
async fn a_replica_without_its_redis_does_not_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(
        &path,
        config(
            "http://127.0.0.1:9",
            &format!("redis://:hunter2-secret@127.0.0.1:{port}/0"),
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("SWITCHYARD_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the shared state"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// With a cache and shared state, an answer kept by one replica is served by the other.
#[tokio::test]
async fn replicas_share_the_response_cache() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let sim = start_sim(SimConfig::default()).await;
    let config = config_with(&sim.base_url(), &redis.url, "cache:\n  ttl: 1m\n");
    let a = Gateway::start(&config).await;
    let b = Gateway::start(&config).await;
    let http = reqwest::Client::new();
    let body = chat("shared", "Which river runs through Paris?");
    let ask = |gw: &Gateway| {
        let request = http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(KEY)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            let cache = r.headers()["x-switchyard-cache"]
                .to_str()
                .unwrap()
                .to_owned();
            (cache, r.text().await.unwrap())
        }
    };
    let before = sim_requests(&http, &sim.base_url()).await;
    let (first, answer) = ask(&a).await;
    assert_eq!(first, "miss");
    // A shares what it kept right after answering; give that a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cache, text) = ask(&b).await;
    assert_eq!(cache, "hit");
    assert_eq!(text, answer, "B served A's answer");
    // B found it in Redis once; it is B's own now too.
    assert_eq!(ask(&b).await.0, "hit");
    assert_eq!(sim_requests(&http, &sim.base_url()).await - before, 1);
}

#[tokio::test]
async fn a_kept_response_is_found_deleted_and_refused_on_every_replica() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let (_sim, a, b) = two_replicas(&redis).await;
    let http = client();
    let (status, made) = post(&http, &a, "/admin/keys", KEY, &json!({"name": "talker"})).await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let key_id = made["id"].as_str().unwrap().to_owned();
    assert!(knows_key(&http, &b, &key_id).await);
    use reqwest::Method;

    // Answered through A; the conversation goes on through B.
    let first = json!({"model": "shared", "input": "Hello, who are you?"});
    let (status, answer) = post(&http, &a, "/v1/responses", &key, &first).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let next = json!({"model": "shared", "previous_response_id": id, "input": "And then?"});
    let (status, follow) = post(&http, &b, "/v1/responses", &key, &next).await;
    assert_eq!(status, 200, "B continues A's conversation: {follow}");
    assert!(
        follow["usage"]["input_tokens"].as_u64().unwrap()
            > answer["usage"]["input_tokens"].as_u64().unwrap(),
        "the earlier turn was sent along: {follow}"
    );
    let path = format!("/v1/responses/{id}");
    let (status, read, _) = send_to(&http, &b, Method::GET, &path, &key, None, &[]).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], id.as_str());
    // Only its caller sees it, on any replica.
    let (status, _, _) = send_to(&http, &b, Method::GET, &path, KEY, None, &[]).await;
    assert_eq!(status, 404);

    // Deleted through B, it is gone from A too, which held its own copy.
    let (status, deleted, _) = send_to(&http, &b, Method::DELETE, &path, &key, None, &[]).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], true);
    let (status, _, _) = send_to(&http, &a, Method::GET, &path, &key, None, &[]).await;
    assert_eq!(status, 404, "A forgot it");
    let (status, refused) = post(&http, &a, "/v1/responses", &key, &next).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn a_provider_one_replica_saw_fail_is_left_alone_by_the_others() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let sim = start_sim(SimConfig::default()).await;
    let text = format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-openai, kind: openai, base_url: "{sim}/v1", api_key: sk-upstream}}
models:
  - alias: steady
    strategy: priority
    deployments:
      - {{provider: p-openai, model: shaky-model, priority: 1}}
      - {{provider: p-openai, model: backup-model, priority: 2}}
routing:
  allowed_fails: 1
  cooldown: 30s
shared:
  redis_url: "{redis}"
"#,
        sim = sim.base_url(),
        redis = redis.url
    );
    let a = Gateway::start(&text).await;
    // Replicas started at different times: a cooldown lasts as long on each.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = Gateway::start(&text).await;
    let http = client();
    let route = |gw: &Gateway| {
        let http = &http;
        let url = format!("{}/v1/chat/completions", gw.url);
        async move {
            let r = http
                .post(url)
                .bearer_auth(KEY)
                .json(&chat("steady", "Are you there?"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-switchyard-route"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };

    // Both replicas start on the preferred deployment.
    assert!(route(&b).await.contains("deployment=p-openai/shaky-model"));
    // It fails once through A, which falls back and cools it.
    let faults = json!([{"model": "shaky-model", "fault": "status=500", "times": 1}]);
    let r = http
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let on_a = route(&a).await;
    assert!(
        on_a.contains("deployment=p-openai/backup-model") && on_a.contains("attempts=2"),
        "{on_a}"
    );
    // B learns of it from Redis (it reads twice a second) and goes straight to the backup,
    // though the preferred one would answer it now (the fault was spent).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let on_b = route(&b).await;
    assert!(
        on_b.contains("deployment=p-openai/backup-model") && on_b.contains("attempts=1"),
        "{on_b}"
    );
    let (_, deployments) = get(&http, &b, "/admin/deployments").await;
    let shaky = deployments["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "p-openai/shaky-model")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(shaky["state"], "cooling", "{deployments}");
    let left = shaky["cooldown_remaining_ms"].as_u64().unwrap();
    assert!(
        (25_000..=30_000).contains(&left),
        "a 30 s cooldown has {left} ms left"
    );
}

#[tokio::test]
async fn the_shared_ledger_books_a_request_in_its_admission_period_and_refusals_say_when_to_return()
{
    use switchyard::governance::ledger::{Ask, Ledger, Level, Shortfall};
    use switchyard::governance::model::{Limits, Period};
    use switchyard::governance::shared::Shared;

    let Some(redis) = start_redis().await else {
        return;
    };
    let shared = Shared::connect(&redis.url, "periods", 1).await.unwrap();
    // As a replica's start does: the state now holds what replicas put in it.
    shared.seed_entities(&[]).await.unwrap();
    let day = 86_400_000;
    let midnight = 20_500 * day;
    let budgeted = Ledger::new(
        Level::Key("daily".into()),
        Limits {
            max_budget_nanos: Some(1_000),
            budget_period: Period::Daily,
            ..Limits::default()
        },
        0,
        midnight - 1_000,
    );
    let levels = vec![budgeted.clone()];
    let ask = |worst| Ask {
        worst,
        least: 10,
        tokens: 5,
        may_cap: false,
    };

    // Admitted a second before midnight, ended a second after: the old day pays for it, and
    // the new day starts with its whole budget.
    let admitted = midnight - 1_000;
    let granted = shared
        .reserve(&levels, ask(100), admitted)
        .await
        .unwrap()
        .unwrap();
    shared
        .settle(&levels, granted.reserved, 60, 0, midnight + 1_000, admitted)
        .await
        .unwrap();
    assert_eq!(
        budgeted.usage(midnight + 1_000).0,
        0,
        "the new day spent nothing"
    );
    assert_eq!(
        budgeted.usage(midnight + 1_000).1,
        0,
        "nothing left reserved"
    );
    let whole_day = shared
        .reserve(&levels, ask(1_000), midnight + 2_000)
        .await
        .unwrap();
    assert!(
        whole_day.is_ok(),
        "the new day's whole budget: {whole_day:?}"
    );
    shared
        .settle(&levels, 1_000, 0, 0, midnight + 3_000, midnight + 2_000)
        .await
        .unwrap();
    // A request whose own max_tokens the budget cannot pay is told a smaller one may fit, as a
    // replica alone tells it; one the gateway may cap, for which less than a sixteenth of its
    // output room is free only because of another in flight, waits for it.
    let beyond = shared
        .reserve(&levels, ask(5_000), midnight + 4_000)
        .await
        .unwrap();
    assert!(
        matches!(beyond, Err(Shortfall::BeyondBudget(_))),
        "{beyond:?}"
    );
    let held = shared
        .reserve(&levels, ask(900), midnight + 4_000)
        .await
        .unwrap()
        .unwrap();
    let capped = |worst| Ask {
        worst,
        least: 10,
        tokens: 5,
        may_cap: true,
    };
    let waits = shared
        .reserve(&levels, capped(5_000), midnight + 4_000)
        .await
        .unwrap();
    assert!(matches!(waits, Err(Shortfall::InFlight(_))), "{waits:?}");
    shared
        .settle(
            &levels,
            held.reserved,
            0,
            0,
            midnight + 5_000,
            midnight + 4_000,
        )
        .await
        .unwrap();
    shared.refresh(&levels, midnight - 500).await.unwrap();
    assert_eq!(
        budgeted.usage(midnight - 500).0,
        60,
        "the old day holds the cost"
    );

    // Four a minute, all four taken ten seconds into a minute: the fifth fits once a quarter
    // of that minute has slid out of the window, 15 s into the next: 65 s on.
    let limited = vec![Ledger::new(
        Level::Key("rpm".into()),
        Limits {
            rpm: Some(4),
            ..Limits::default()
        },
        0,
        midnight,
    )];
    let at = midnight + 10_000;
    for _ in 0..4 {
        let granted = shared.reserve(&limited, ask(0), at).await.unwrap().unwrap();
        shared
            .settle(&limited, granted.reserved, 0, 0, at, at)
            .await
            .unwrap();
    }
    match shared.reserve(&limited, ask(0), at).await.unwrap() {
        Err(Shortfall::RateLimited {
            what,
            remaining,
            retry_after_secs,
            ..
        }) => {
            assert_eq!(what, "requests per minute");
            assert_eq!(remaining, 0);
            assert_eq!(
                retry_after_secs, 65,
                "when the sliding window admits one more"
            );
        }
        other => panic!("the fifth request in a minute was not refused: {other:?}"),
    }
    // And 40 s into the next minute three quarters have slid out: 3 of 4 still counted,
    // so one more fits now, exactly as the in-process window would say.
    let later = midnight + 60_000 + 40_000;
    assert!(
        shared
            .reserve(&limited, ask(0), later)
            .await
            .unwrap()
            .is_ok()
    );
}

/// A model that costs nothing (a local one) reserves nothing; its requests must still settle,
/// or the parallel limit they hold stays taken on every replica.
#[tokio::test]
async fn requests_to_a_free_model_settle_across_replicas() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let sim = start_sim(SimConfig::default()).await;
    let free = r#"
  - alias: free
    deployments:
      - {provider: p-openai, model: local-model, price: {input_per_mtok: 0, output_per_mtok: 0}}
"#;
    let with_free =
        |sim: &str| config(sim, &redis.url).replacen("shared:\n", &format!("{free}shared:\n"), 1);
    let a = Gateway::start(&with_free(&sim.base_url())).await;
    let b = Gateway::start(&with_free(&sim.base_url())).await;
    let http = client();
    let (key, _) = key_on_both(
        &http,
        &a,
        &b,
        json!({"name": "one-at-a-time", "max_parallel": 1}),
    )
    .await;
    let body = chat("free", "Nothing to pay for.");
    for i in 0..6 {
        let gw = if i % 2 == 0 { &a } else { &b };
        // Each request's settle is off its path: give it a moment before the next one.
        let answer = chat_until(
            (&http, gw, &key),
            &body,
            200,
            &[429],
            (40, Duration::from_millis(50)),
        )
        .await;
        assert_eq!(answer.0, 200, "request {i}: {}", answer.1);
    }
}

/// Redis restarted without persistence has lost the keys, the ledgers and the reservations in
/// flight. The replicas bring back the keys and what the records say was spent, refusing
/// budgeted requests rather than guess meanwhile, and settles of reservations Redis forgot free
/// nothing: the budget then holds as before.
#[tokio::test]
async fn replicas_bring_back_what_a_restarted_redis_lost() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let port: u16 = redis
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/0")
        .parse()
        .unwrap();
    let (sim, a, b) = two_replicas(&redis).await;
    let http = client();
    let body = chat("shared", "How much does this cost?");
    let (key, id) = key_on_both(
        &http,
        &a,
        &b,
        json!({"name": "survivor", "max_budget_usd": 1.0, "budget_period": "daily"}),
    )
    .await;
    for gw in [&a, &b, &a] {
        let (status, answer) = post(&http, gw, "/v1/chat/completions", &key, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let spent = |k: &Value| k["budget"]["spent_nanos"].as_i64().unwrap_or(0);
    let mut before = 0;
    for _ in 0..50 {
        before = spent(&get(&http, &a, &format!("/admin/keys/{id}")).await.1);
        if before > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(before > 0);
    // Let the records reach the store, as they have by the time anything restarts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A slow request is in flight when Redis restarts empty: its settle finds nothing held.
    slow_next(&http, &sim, 1).await;
    let slow = {
        let (http, b, key) = (http.clone(), &b, key.clone());
        let mut slow_body = body.clone();
        slow_body["messages"][0]["content"] = json!("slow one");
        let url = format!("{}/v1/chat/completions", b.url);
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&slow_body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = which("redis-server").unwrap();
    drop(redis);
    let _restarted = redis_on(&path, port).await;

    // Both replicas know the key again, and its spend is what it was.
    for gw in [&a, &b] {
        // Meanwhile: refused as unavailable, never an unknown key or an unchecked budget.
        let answered = chat_until(
            (&http, gw, &key),
            &body,
            200,
            &[503],
            (100, Duration::from_millis(50)),
        )
        .await;
        assert_eq!(answered.0, 200, "{}", answered.1);
    }
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for gw in [&a, &b] {
        let (_, k) = get(&http, gw, &format!("/admin/keys/{id}")).await;
        assert!(
            spent(&k) >= before,
            "the spend came back: {} of {before} before",
            spent(&k)
        );
        assert_eq!(k["budget"]["reserved_nanos"], 0, "{k}");
    }
}

/// A replica killed with requests in flight never settles them. The other replicas release
/// what it held once it has stopped saying it is alive: its parallel slots and reserved budget
/// come back, and nothing stays reserved.
#[tokio::test]
async fn what_a_killed_replica_held_in_flight_is_released() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let (sim, a, b) = two_replicas(&redis).await;
    let http = client();
    let (key, id) = key_on_both(
        &http,
        &a,
        &b,
        json!({"name": "two-at-a-time", "max_parallel": 2, "max_budget_usd": 1.0}),
    )
    .await;
    let body = chat("shared", "Slow, please.");
    slow_next(&http, &sim, 2).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, key, body) = (
                http.clone(),
                format!("{}/v1/chat/completions", b.url),
                key.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let _ = http.post(url).bearer_auth(key).json(&body).send().await;
            })
        })
        .collect();
    // Both slots are taken, by B's requests (once they reach the simulator, which holds them).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = chat_until(
        (&http, &a, &key),
        &body,
        429,
        &[200],
        (40, Duration::from_millis(50)),
    )
    .await;
    assert_eq!(refused.0, 429, "{}", refused.1);
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parallel"),
        "{}",
        refused.1
    );

    // B is killed: it settles nothing.
    drop(b);
    for task in slow {
        let _ = task.await;
    }
    let answered = chat_until(
        (&http, &a, &key),
        &body,
        200,
        &[429],
        (200, Duration::from_millis(100)),
    )
    .await;
    assert_eq!(answered.0, 200, "B's slots came back: {}", answered.1);
    let mut reserved = Value::Null;
    for _ in 0..40 {
        reserved = get(&http, &a, &format!("/admin/keys/{id}")).await.1["budget"]["reserved_nanos"]
            .clone();
        if reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reserved, 0, "nothing stays reserved");
}

/// The simulator's next `times` answers of the shared model come after 1.5 s (30 s when more
/// than one: held until their gateway is gone).
async fn slow_next(http: &reqwest::Client, sim: &switchyard_sim::SimServer, times: u32) {
    let ttft = if times > 1 { 30_000 } else { 1_500 };
    let r = http
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(
            &json!([{"model": "shared-model", "fault": format!("ttft_ms={ttft}"), "times": times}]),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

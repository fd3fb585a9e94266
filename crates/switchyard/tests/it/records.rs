//! Every request produces exactly one record, findable by id with its route decision and
//! attempts; spend adds up; a store that is down loses nothing.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::ConnectOptions;

use crate::harness::{Env, KEY, chat, env_with, env_with_sections, record};

const PRICED: &str = r#"
  - alias: priced
    deployments:
      - {provider: p-openai, model: priced-primary, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
    fallbacks: [priced-backup]
  - alias: priced-backup
    deployments:
      - {provider: p-anthropic, model: priced-backup, price: {input_per_mtok: 3, output_per_mtok: 15}}
"#;

/// A connection of the test's own to the gateway's embedded store.
async fn open_store(env: &Env) -> sqlx::SqliteConnection {
    let db = env.gw.data_dir().join("switchyard.db");
    sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn request_id(r: &crate::harness::Reply) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_request_has_one_record_with_its_decision() {
    let env = env_with(PRICED).await;
    let mut ids = Vec::new();

    // Success.
    let r = env
        .post(
            "/v1/chat/completions",
            &chat("priced", "hello, my email is jane@example.com"),
        )
        .await;
    assert_eq!(r.status, 200);
    let ok = request_id(&r);
    ids.push(ok.clone());
    // Failover: the primary fails once, the fallback answers.
    env.fault("priced-primary", "status=500", Some(1)).await;
    let r = env
        .post("/v1/chat/completions", &chat("priced", "again"))
        .await;
    assert_eq!(r.status, 200);
    // The route says a fallback answered.
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(
        route.contains("alias=priced; fallback=priced-backup;"),
        "{route}"
    );
    let failover = request_id(&r);
    ids.push(failover.clone());
    // Upstream error: both fail.
    env.fault("priced-*", "status=503", Some(2)).await;
    let r = env
        .post("/v1/chat/completions", &chat("priced", "doomed"))
        .await;
    assert_eq!(r.status, 502);
    let upstream_error = request_id(&r);
    ids.push(upstream_error.clone());
    // Client errors: bad key, bad body, unknown model.
    let r = env
        .post_with(
            "/v1/chat/completions",
            &chat("priced", "x"),
            &[("authorization", "Bearer nope")],
        )
        .await;
    let unauthorized = request_id(&r);
    ids.push(unauthorized.clone());
    let r = env
        .post("/v1/chat/completions", &json!({"model": "priced"}))
        .await;
    ids.push(request_id(&r));
    let r = env.post("/v1/chat/completions", &chat("nope", "x")).await;
    ids.push(request_id(&r));
    // A stream, and a stream that breaks after commit.
    let mut body = chat("priced", "a story");
    body["stream"] = json!(true);
    let r = env.post("/v1/chat/completions", &body).await;
    let streamed = request_id(&r);
    ids.push(streamed.clone());
    env.fault("priced-primary", "cut_after=2", Some(1)).await;
    let r = env.post("/v1/chat/completions", &body).await;
    let broken = request_id(&r);
    ids.push(broken.clone());
    // A client that gives up while the provider is still thinking.
    env.fault("priced-primary", "ttft_ms=3000", Some(1)).await;
    let cancelled = env
        .http
        .post(format!("{}/v1/chat/completions", env.gw.url))
        .bearer_auth(KEY)
        .timeout(Duration::from_millis(300))
        .json(&chat("priced", "too slow"))
        .send()
        .await;
    assert!(cancelled.is_err(), "the client should have timed out");

    let ok_rec = record(&env, &ok).await;
    assert_eq!(ok_rec["outcome"], "success");
    assert_eq!(ok_rec["status"], 200);
    assert_eq!(ok_rec["alias"], "priced");
    assert_eq!(ok_rec["deployment"], "p-openai/priced-primary");
    assert_eq!(ok_rec["decision"]["strategy"], "weighted");
    assert_eq!(
        ok_rec["decision"]["candidates"][0]["deployment"],
        "p-openai/priced-primary"
    );
    assert_eq!(ok_rec["attempts"].as_array().unwrap().len(), 1);
    assert!(ok_rec["tokens"]["input"].as_u64().unwrap() > 0);
    assert_eq!(ok_rec["tokens"]["estimated"], false);
    let tokens = &ok_rec["tokens"];
    let expected =
        tokens["input"].as_i64().unwrap() * 2500 + tokens["output"].as_i64().unwrap() * 10_000;
    assert_eq!(
        ok_rec["cost_nanos"].as_i64().unwrap(),
        expected,
        "cost is price × tokens, in nano-dollars"
    );
    let prompt = ok_rec["prompt"].to_string();
    assert!(
        prompt.contains("[EMAIL]") && !prompt.contains("jane@example.com"),
        "prompts are masked: {prompt}"
    );

    let fo = record(&env, &failover).await;
    let attempts = fo["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error_class"], "server_error");
    assert_eq!(attempts[0]["status"], 500);
    // What the provider said, so an operator sees why without the provider's logs.
    assert!(
        attempts[0]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{fo}"
    );
    assert!(attempts[1].get("error_message").is_none(), "{fo}");
    // When each started after the request did: the fallback after the failure.
    let offset = |a: &Value| a["offset_ms"].as_f64().unwrap();
    assert!(offset(&attempts[0]) >= 0.0, "{fo}");
    assert!(offset(&attempts[1]) >= offset(&attempts[0]), "{fo}");
    assert_eq!(attempts[1]["fell_back"], true);
    assert_eq!(fo["deployment"], "p-anthropic/priced-backup");
    assert_eq!(fo["decision"]["fallbacks"], json!(["priced-backup"]));

    // The requests a failing deployment touched, a fallback's success among them.
    let failing = attempts[0]["deployment"].as_str().unwrap();
    let touched = env
        .get(&format!(
            "/admin/requests?failed_deployment={failing}&limit=100"
        ))
        .await
        .json();
    let touched: Vec<&str> = touched["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(touched.contains(&failover.as_str()), "{touched:?}");
    assert!(touched.contains(&upstream_error.as_str()), "{touched:?}");
    assert!(!touched.contains(&ids[0].as_str()), "{touched:?}");

    let ue = record(&env, &upstream_error).await;
    assert_eq!(ue["outcome"], "upstream_error");
    assert_eq!(ue["error_code"], "upstream_unavailable");
    assert_eq!(ue["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(ue["decision"]["alias"], "priced");

    let un = record(&env, &unauthorized).await;
    assert_eq!(
        (un["status"].as_u64(), un["outcome"].as_str()),
        (Some(401), Some("client_error"))
    );
    assert_eq!(un["error_code"], "invalid_api_key");

    let st = record(&env, &streamed).await;
    assert_eq!(st["stream"], true);
    assert_eq!(st["outcome"], "success");
    assert!(st["ttft_ms"].as_f64().is_some());
    assert!(st["response"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(st["deployment"], "p-openai/priced-primary");
    assert_eq!(st["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(st["decision"]["strategy"], "weighted");
    // Why it stopped and which model answered, as a whole answer's record says.
    assert_eq!(st["finish_reason"], "stop", "{st}");
    assert_eq!(st["response_model"], "priced-primary", "{st}");

    let br = record(&env, &broken).await;
    assert_eq!(br["outcome"], "stream_error");
    // What reached the client before the break is counted (no usage came).
    assert_eq!(br["tokens"]["estimated"], true, "{br}");
    assert!(br["tokens"]["output"].as_u64().unwrap() >= 2, "{br}");
    assert_eq!(br["error_code"], "stream_interrupted");
    assert!(br.get("finish_reason").is_none(), "{br}");
    assert_eq!(
        br["attempts"][0]["error_class"], "stream_interrupted",
        "{br}"
    );

    // A Claude stream broken after its opening count of one output token: the words that
    // reached the client count, not the opening's one.
    env.fault("priced-backup", "cut_after=6", Some(1)).await;
    let mut claude = chat("priced-backup", "tell me more");
    claude["stream"] = json!(true);
    let r = env.post("/v1/chat/completions", &claude).await;
    let claude_broken = request_id(&r);
    ids.push(claude_broken.clone());
    let cb = record(&env, &claude_broken).await;
    assert_eq!(cb["outcome"], "stream_error", "{cb}");
    assert!(cb["tokens"]["input"].as_u64().unwrap() > 0, "{cb}");
    assert!(cb["tokens"]["output"].as_u64().unwrap() >= 6, "{cb}");
    assert_eq!(cb["tokens"]["estimated"], true, "{cb}");

    for id in &ids {
        record(&env, id).await;
    }
    // The cancelled request has a record too: exactly one more than the answered ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = env.get("/admin/requests?limit=100").await.json();
    let data = all["data"].as_array().unwrap();
    assert_eq!(data.len(), ids.len() + 1, "{}", all);
    let gone = data
        .iter()
        .find(|r| r["outcome"] == "cancelled" && r["status"] == 499)
        .expect("the cancelled request's record");
    // It shows where the request was when its client left: the alias, and the deployment
    // whose answer it was waiting for, as an attempt given up.
    assert_eq!(gone["alias"], "priced", "{gone}");
    let deployment = gone["deployment"].as_str().unwrap();
    assert!(deployment.ends_with("priced-primary"), "{gone}");
    let attempts = gone["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{gone}");
    assert_eq!(attempts[0]["deployment"], deployment, "{gone}");
    assert_eq!(attempts[0]["cancelled"], true, "{gone}");
    assert!(
        attempts[0]["latency_ms"].as_f64().unwrap() >= 250.0,
        "{gone}"
    );
    let mut seen: Vec<&str> = data.iter().map(|r| r["id"].as_str().unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), data.len(), "one record per request");

    // Filters and pagination.
    let failed = env
        .get("/admin/requests?outcome=upstream_error")
        .await
        .json();
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);
    let page = env.get("/admin/requests?limit=3").await.json();
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = env
        .get(&format!("/admin/requests?limit=3&cursor={cursor}"))
        .await
        .json();
    assert!(next["data"][0]["id"].as_str().unwrap() < cursor);

    // Spend per alias adds up to the records' costs.
    let spend = env.get("/admin/spend?by=alias").await.json();
    let total: i64 = data.iter().filter_map(|r| r["cost_nanos"].as_i64()).sum();
    assert_eq!(spend["total_cost_nanos"].as_i64().unwrap(), total);
    assert!(total > 0);
    assert_eq!(env.get("/admin/spend?by=nonsense").await.status, 400);

    // Bounds that make no sense are refused with a 400 that says why, never a 500 and never an
    // empty list that reads as "nothing happened".
    for query in [
        "since=9999999999999999d",
        "since=999999999999999h",
        "since=%C3%A9",
        "until=5%C3%A9",
        "since=-5m",
        "since=-1",
        "since=2000&until=1000",
        "outcome=bogus",
        "limit=0",
        "limit=1001",
        "cursor=zzzz",
        "tag=a%00b:x",
        "by=tag:a%00b",
    ] {
        for path in ["/admin/requests", "/admin/spend"] {
            let requests_only = ["outcome", "limit", "cursor", "tag"];
            if (path == "/admin/spend" && requests_only.iter().any(|q| query.starts_with(q)))
                || (path == "/admin/requests" && query.starts_with("by"))
            {
                continue;
            }
            let r = env.get(&format!("{path}?{query}")).await;
            assert_eq!(r.status, 400, "{path}?{query}: {}", r.text);
            assert_eq!(
                r.json()["error"]["type"],
                "invalid_request_error",
                "{}",
                r.text
            );
        }
    }
    // A span back past the epoch is the epoch: everything.
    let all = env
        .get("/admin/requests?since=99999999w&limit=1000")
        .await
        .json();
    assert_eq!(all["data"].as_array().unwrap().len(), data.len());
}

/// A client that leaves mid-stream cut the provider's answer off: its record says so, and so
/// does the attempt it left during.
#[tokio::test]
async fn a_client_that_leaves_mid_stream_leaves_its_attempt_cancelled() {
    let env = env_with(PRICED).await;
    env.fault("priced-primary", "stall_after=2", Some(1)).await;
    let mut body = chat("priced", "a long story");
    body["stream"] = json!(true);
    let mut response = env
        .http
        .post(format!("{}/v1/chat/completions", env.gw.url))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    let rec = record(&env, &id).await;
    assert_eq!(
        (rec["outcome"].as_str(), rec["status"].as_u64()),
        (Some("cancelled"), Some(499)),
        "{rec}"
    );
    let attempts = rec["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["cancelled"], true, "{rec}");
    // Its deployment answered (and is what its tokens and cost are counted against).
    assert_eq!(
        rec["deployment"],
        attempts.last().unwrap()["deployment"],
        "{rec}"
    );
    assert!(rec["deployment"].is_string(), "{rec}");
    let deployment = format!("deployment=\"{}\"", rec["deployment"].as_str().unwrap());
    let mut counted = false;
    for _ in 0..50 {
        let metrics = env.get("/metrics").await.text;
        counted = metrics.lines().any(|l| {
            l.starts_with("switchyard_requests_total{")
                && l.contains(&deployment)
                && l.contains("outcome=\"cancelled\"")
        });
        if counted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(counted, "no cancelled request counted against {deployment}");
}

#[tokio::test]
async fn a_store_that_is_down_loses_no_record() {
    let env = env_with("").await;
    // Make sure the store exists, then take its write lock away from the gateway.
    let r = env
        .post("/v1/chat/completions", &chat("openai", "warm up"))
        .await;
    assert_eq!(r.status, 200);
    let mut lock = open_store(&env).await;
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    let mut ids = vec![request_id(&r)];
    let sends = (0..200).map(|i| {
        let env = &env;
        async move {
            let mut body = chat("openai", "while the store is down");
            if i % 3 == 0 {
                body["stream"] = json!(true);
            }
            request_id(&env.post("/v1/chat/completions", &body).await)
        }
    });
    ids.extend(futures::future::join_all(sends).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spill = env.gw.data_dir().join("records.spill.jsonl");
    assert!(
        spill.exists(),
        "records should have spilled to disk while the store was locked"
    );

    // The store comes back: everything is replayed.
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    for id in &ids {
        record(&env, id).await;
    }
    let all = env.get("/admin/requests?limit=1000").await.json();
    assert_eq!(all["data"].as_array().unwrap().len(), ids.len());
}

#[tokio::test]
async fn a_huge_prompt_is_stored_cut_with_a_marker_and_masked() {
    let env = env_with_sections(
        "",
        "allowed_fails: 3",
        "telemetry:\n  content_max_bytes: 4096\n",
    )
    .await;
    // 200 KB: an e-mail address in the head, another in the tail, one in the middle that is cut.
    let filler = "lorem ipsum dolor sit amet ".repeat(7_500);
    let prompt =
        format!("BEGIN jane@example.com {filler} middle@example.com {filler} bob@example.org END");
    let r = env
        .post("/v1/chat/completions", &chat("openai", &prompt))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rec = record(&env, &request_id(&r)).await;
    let stored = rec["prompt"][0]["content"].as_str().unwrap();
    assert!(stored.len() < 4096 + 100, "{} bytes kept", stored.len());
    assert!(stored.starts_with("BEGIN [EMAIL] lorem"), "{stored:.80}");
    assert!(stored.ends_with("[EMAIL] END"), "{stored}");
    assert!(stored.contains(" bytes cut ...]"), "a marker says where");
    assert!(!stored.contains("@example"), "masked: {stored}");
    // The answer is unaffected.
    assert!(r.json()["choices"][0]["message"]["content"].is_string());

    // A key pasted where the model goes is masked in the record as in the error message.
    let pasted = "sk-proj-AbCdEf1234567890GhIjKlMnOpQrStUv";
    let r = env.post("/v1/chat/completions", &chat(pasted, "x")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let rec = record(&env, &request_id(&r)).await;
    assert!(!rec.to_string().contains("AbCdEf1234567890"), "{rec}");
    assert_eq!(rec["requested_model"], "[SECRET]", "{rec}");
}

#[tokio::test]
async fn a_system_prompt_every_request_resends_is_stored_once() {
    let env = env_with("").await;
    let system =
        "You are the support assistant of a made-up shop. Answer briefly, politely. ".repeat(20);
    let mut ids = Vec::new();
    for question in [
        "Where is my parcel?",
        "Can I return a lamp?",
        "Do you ship abroad?",
    ] {
        let body = json!({"model": "openai", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ]});
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push((request_id(&r), question));
    }
    for (id, question) in &ids {
        let rec = record(&env, id).await;
        assert_eq!(rec["prompt"][0]["content"], system.as_str(), "{rec}");
        assert_eq!(rec["prompt"][1]["content"], *question);
    }
    let listed = env.get("/admin/requests?limit=10").await.json();
    for rec in listed["data"].as_array().unwrap() {
        assert_eq!(rec["prompt"][0]["content"], system.as_str());
    }

    let mut conn = open_store(&env).await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM record_texts")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the system prompt, once for the three records"
    );
}

/// A thread's name and nice value from its `stat` file: the name in parentheses, the nice
/// value the 17th field after them.
#[cfg(target_os = "linux")]
fn name_and_nice(stat: &std::path::Path) -> Option<(String, i64)> {
    let stat = std::fs::read_to_string(stat).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let nice = stat[close + 2..].split(' ').nth(16)?.parse().ok()?;
    Some((stat[open + 1..close].to_owned(), nice))
}

/// Each thread of process `pid` (those that ended while being read left out).
#[cfg(target_os = "linux")]
fn threads_and_nice(pid: u32) -> Vec<(String, i64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| name_and_nice(&task.ok()?.path().join("stat")))
        .collect()
}

/// Background work (the record writer, its SQLite connection) runs at `server.background_nice`
/// when one is set, and the serving threads at the process's own priority; by default every
/// thread keeps the process's.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn background_threads_run_below_the_serving_ones_when_asked() {
    let defaults = env_with("").await;
    let r = defaults
        .post("/v1/chat/completions", &chat("openai", "hello"))
        .await;
    record(&defaults, &request_id(&r)).await;
    // Relative to the process's own nice value (the test runner's, inherited), which the
    // main thread keeps.
    let main_nice = |pid: u32| {
        name_and_nice(std::path::Path::new(&format!("/proc/{pid}/stat")))
            .unwrap()
            .1
    };
    let base = main_nice(defaults.gw.pid());
    let threads = threads_and_nice(defaults.gw.pid());
    assert!(threads.iter().all(|(_, nice)| *nice == base), "{threads:?}");

    let sim = crate::harness::start_sim(Default::default()).await;
    let config = crate::harness::standard_config(&sim.base_url(), "").replace(
        "  shutdown_grace: 10s\n",
        "  shutdown_grace: 10s\n  background_nice: 10\n",
    );
    assert!(config.contains("background_nice"));
    let env = Env {
        gw: crate::harness::Gateway::start(&config).await,
        sim,
        http: reqwest::Client::new(),
    };
    let r = env
        .post("/v1/chat/completions", &chat("openai", "hello"))
        .await;
    assert_eq!(r.status, 200);
    // Its record written: the records connection (started by the writer's first batch) is up.
    record(&env, &request_id(&r)).await;
    let threads = threads_and_nice(env.gw.pid());
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, nice)| *nice)
            .collect()
    };
    // A priority is only ever lowered: under a runner already nicer than 10, all stay there.
    let background = base.max(10);
    let serving = nice_of("switchyard-work");
    assert!(!serving.is_empty(), "no serving thread in {threads:?}");
    assert!(serving.iter().all(|&n| n == base), "{threads:?}");
    let runtime = nice_of("tokio-rt");
    assert!(!runtime.is_empty(), "no background thread in {threads:?}");
    assert!(runtime.iter().all(|&n| n == background), "{threads:?}");
    // The pool's connections, opened at start-up, keep the process's priority; the records
    // connection, opened by the writer, runs at the background's.
    let sqlite = nice_of("sqlx-sqlite");
    assert!(sqlite.contains(&background), "{threads:?}");
    assert!(sqlite.contains(&base), "{threads:?}");
    // The main thread (accepting connections) keeps the process's priority.
    assert_eq!(main_nice(env.gw.pid()), base);
}

#[tokio::test]
async fn records_can_be_switched_off() {
    let env = env_with_sections("", "allowed_fails: 3", "telemetry:\n  records: false\n").await;
    for _ in 0..3 {
        let r = env
            .post("/v1/chat/completions", &chat("openai", "not recorded"))
            .await;
        assert_eq!(r.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = env.get("/admin/requests").await.json();
    assert_eq!(all["data"].as_array().unwrap().len(), 0, "{all}");
}

/// A web search the provider runs (Anthropic's server tool) is billed per search on top of the
/// tokens: the record's cost has it at the table's $10 per 1,000 searches, or at the
/// deployment's own `web_search_per_call`, streamed or not, and the client's usage reports it.
#[tokio::test]
async fn a_providers_web_searches_are_billed_per_search() {
    let env = env_with(
        r#"
  - alias: searching
    deployments: [{provider: p-anthropic, model: claude-sonnet-4-5}]
  - alias: searching-priced
    deployments:
      - {provider: p-anthropic, model: claude-sonnet-4-5, price: {input_per_mtok: 3, output_per_mtok: 15, web_search_per_call: 0.02}}
"#,
    )
    .await;
    for (alias, per_search) in [("searching", 10_000_000), ("searching-priced", 20_000_000)] {
        let mut whole_annotations = Value::Null;
        for stream in [false, true] {
            let body = json!({"model": alias, "max_tokens": 100, "stream": stream,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                "messages": [{"role": "user", "content": "Latest news on trains"}]});
            let r = env.post_anthropic(&body).await;
            assert_eq!(r.status, 200, "{:.300}", r.text);
            let usage = if stream {
                let last_delta = r
                    .sse_data()
                    .iter()
                    .map(|d| serde_json::from_str::<Value>(d).unwrap())
                    .rfind(|e| e["type"] == "message_delta")
                    .unwrap();
                last_delta["usage"].clone()
            } else {
                r.json()["usage"].clone()
            };
            assert_eq!(
                usage["server_tool_use"]["web_search_requests"], 1,
                "{alias} stream={stream}: {usage}"
            );
            let rec = record(&env, &request_id(&r)).await;
            assert_eq!(cost(&rec, per_search), rec["cost_nanos"], "{alias}: {rec}");
        }
        // The same search asked for by OpenAI clients: a Responses client's hosted
        // `web_search` and a Chat Completions client's `web_search_options`.
        for (path, body) in [
            (
                "/v1/responses",
                json!({"model": alias, "input": "Latest news on trains",
                    "tools": [{"type": "web_search"}]}),
            ),
            (
                "/v1/chat/completions",
                json!({"model": alias, "web_search_options": {"user_location":
                    {"type": "approximate", "approximate": {"country": "NO"}}},
                    "messages": [{"role": "user", "content": "Latest news on trains"}]}),
            ),
        ] {
            let r = env.post(path, &body).await;
            assert_eq!(r.status, 200, "{path}: {:.300}", r.text);
            let rec = record(&env, &request_id(&r)).await;
            assert_eq!(cost(&rec, per_search), rec["cost_nanos"], "{path}: {rec}");
            // The page the answer cites comes back to an OpenAI client as a `url_citation`.
            let b = r.json();
            let url = if path == "/v1/chat/completions" {
                let citation = &b["choices"][0]["message"]["annotations"][0];
                assert_eq!(citation["type"], "url_citation", "{b}");
                citation["url_citation"]["url"].clone()
            } else {
                let message = b["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|item| item["type"] == "message")
                    .unwrap();
                let citation = &message["content"][0]["annotations"][0];
                assert_eq!(citation["type"], "url_citation", "{b}");
                assert!(citation["end_index"].as_u64().unwrap() > 0, "{b}");
                citation["url"].clone()
            };
            assert!(
                url.as_str().is_some_and(|u| u.starts_with("http")),
                "{path}: {b}"
            );
            if path == "/v1/responses" {
                whole_annotations = message_annotations(&b);
            }
        }
        // Streamed to a Responses client, each cited page is annotated as its text ends
        // (`response.output_text.annotation.added`), and the message ends with the
        // annotations the whole answer has.
        let r = env
            .post(
                "/v1/responses",
                &json!({"model": alias, "input": "Latest news on trains", "stream": true,
                    "tools": [{"type": "web_search"}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:.300}", r.text);
        let events: Vec<Value> = r
            .sse_data()
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let added: Vec<Value> = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.annotation.added")
            .map(|e| e["annotation"].clone())
            .collect();
        let completed = events
            .iter()
            .find(|e| e["type"] == "response.completed")
            .expect("completed");
        assert!(!added.is_empty(), "{alias}: {}", r.text);
        assert_eq!(
            json!(added),
            message_annotations(&completed["response"]),
            "{alias}"
        );
        assert_eq!(
            json!(added),
            whole_annotations,
            "{alias}: as the whole answer"
        );
        let done = events
            .iter()
            .find(|e| e["type"] == "response.content_part.done")
            .expect("part done");
        assert_eq!(done["part"]["annotations"], json!(added), "{alias}");
    }
}

/// The annotations of a Responses answer's message.
fn message_annotations(response: &Value) -> Value {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "message")
        .map_or(Value::Null, |m| m["content"][0]["annotations"].clone())
}

#[tokio::test]
async fn prompt_cache_reads_and_hour_long_writes_are_billed_at_their_own_rates() {
    let env = env_with(
        r#"
  - alias: cached
    deployments: [{provider: p-anthropic, model: claude-sonnet-4-5}]
  - alias: cached-bedrock
    deployments: [{provider: p-bedrock, model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}]
"#,
    )
    .await;
    // Claude Sonnet 4.5's list prices, nano-dollars per token: input, output, cache read,
    // five-minute write, hour-long write.
    let billed = |rec: &Value| {
        let t = &rec["tokens"];
        let n = |k: &str| t[k].as_i64().unwrap();
        let five_minutes = n("cache_write") - n("cache_write_1h");
        (n("input") - n("cache_read") - n("cache_write")) * 3_000
            + n("output") * 15_000
            + n("cache_read") * 300
            + five_minutes * 3_750
            + n("cache_write_1h") * 6_000
    };
    // The same hour-long breakpoint through both ingresses: Anthropic's system block, and an
    // OpenAI client's system message part (the extension OpenAI-compatible clients send); to
    // Anthropic, and to Claude on Bedrock (a cache point with the same lifetime).
    for alias in ["cached", "cached-bedrock"] {
        check_cache_billing(&env, alias, billed).await;
    }
}

async fn check_cache_billing(env: &Env, alias: &str, billed: impl Fn(&Value) -> i64) {
    let policy = format!("{alias}: {}", "Answer from the policy below. ".repeat(200));
    let requests = [
        (
            "/v1/messages",
            json!({"model": alias, "max_tokens": 50,
                "system": [{"type": "text", "text": policy,
                    "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
                "messages": [{"role": "user", "content": "May I park here?"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": alias, "max_tokens": 50,
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": policy.repeat(2),
                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                    {"role": "user", "content": "May I park here?"}]}),
        ),
    ];
    for (path, body) in requests {
        for (turn, stream) in [(0, false), (1, false), (2, true)] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            if stream && path == "/v1/chat/completions" {
                body["stream_options"] = json!({"include_usage": true});
            }
            let r = if path == "/v1/messages" {
                env.post_anthropic(&body).await
            } else {
                env.post(path, &body).await
            };
            assert_eq!(r.status, 200, "{path}: {:.300}", r.text);
            let rec = record(env, &request_id(&r)).await;
            let tokens = &rec["tokens"];
            if turn == 0 {
                assert!(
                    tokens["cache_write_1h"].as_u64().unwrap() > 1_000,
                    "{path}: {rec}"
                );
                assert_eq!(
                    tokens["cache_write_1h"], tokens["cache_write"],
                    "{path}: {rec}"
                );
                assert_eq!(tokens["cache_read"], 0, "{path}: {rec}");
            } else {
                assert!(
                    tokens["cache_read"].as_u64().unwrap() > 1_000,
                    "{path}: {rec}"
                );
                assert_eq!(tokens["cache_write"], 0, "{path}: {rec}");
            }
            assert_eq!(
                rec["cost_nanos"],
                json!(billed(&rec)),
                "{path} turn {turn}: {rec}"
            );
        }
    }
}

#[tokio::test]
async fn a_long_context_tier_bills_the_whole_request_past_its_threshold() {
    let env = env_with(
        r#"
  - alias: long
    deployments: [{provider: p-gemini, model: gemini-2.5-pro}]
  - alias: long-priced
    deployments:
      - provider: p-openai
        model: in-house
        price:
          input_per_mtok: 1
          output_per_mtok: 2
          long_context: {above_input_tokens: 1000, input_per_mtok: 4, output_per_mtok: 8}
"#,
    )
    .await;
    // Gemini 2.5 Pro's list prices up to 200k input tokens and above; a deployment's own tier.
    for (alias, threshold, base, long) in [
        ("long", 200_000, (1_250, 10_000), (2_500, 15_000)),
        ("long-priced", 1_000, (1_000, 2_000), (4_000, 8_000)),
    ] {
        for (prompt_tokens, rates) in [(threshold / 2, base), (threshold + 500, long)] {
            let body = json!({"model": alias, "max_tokens": 20, "messages": [
                {"role": "user", "content": format!("Summarise {}", "word ".repeat(prompt_tokens * 4 / 5))}]});
            let r = env.post("/v1/chat/completions", &body).await;
            assert_eq!(r.status, 200, "{alias}: {:.300}", r.text);
            let rec = record(&env, &request_id(&r)).await;
            let input = rec["tokens"]["input"].as_i64().unwrap();
            let output = rec["tokens"]["output"].as_i64().unwrap();
            assert_eq!(
                input > threshold as i64,
                rates == long,
                "{alias}: {input} input tokens"
            );
            assert_eq!(
                rec["cost_nanos"],
                json!(input * rates.0 + output * rates.1),
                "{alias}: {rec}"
            );
        }
    }
    // The admin API shows each deployment's price, the tier included.
    let deployments = env.get("/admin/deployments").await.json();
    let long = deployments["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["alias"] == "long")
        .unwrap();
    assert_eq!(long["price"]["input_per_mtok"], 1.25, "{long}");
    assert_eq!(
        long["price"]["long_context"]["above_input_tokens"], 200_000,
        "{long}"
    );
    assert_eq!(
        long["price"]["long_context"]["output_per_mtok"], 15.0,
        "{long}"
    );
}

/// A record's cost at $3 and $15 per million input and output tokens and one search.
fn cost(rec: &Value, per_search: i64) -> Value {
    let tokens = &rec["tokens"];
    json!(
        tokens["input"].as_i64().unwrap() * 3_000
            + tokens["output"].as_i64().unwrap() * 15_000
            + per_search
    )
}

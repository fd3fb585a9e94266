//! Offline evaluation through the real binary: a JSONL dataset evaluated against two targets
//! (two aliases on the simulator with scripted replies, standing in for two prompt versions),
//! per-item and aggregate scores, comparison (API and CLI), bad input, resume after the gateway
//! was killed mid-run, and export to a real MLflow tracking server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_sim::{ReplyRule, SimConfig};

use crate::harness::{
    Env, Gateway, KEY, LocalServer, Reply, standard_config, start_sim, wait_ready,
};

const MODELS: &str = r#"
  - alias: va
    deployments: [{provider: p-openai, model: eval-a, price: {input_per_mtok: 1, output_per_mtok: 2}}]
  - alias: vb
    deployments: [{provider: p-openai, model: eval-b, price: {input_per_mtok: 1, output_per_mtok: 2}}]
  - {alias: judge, deployments: [{provider: p-openai, model: judge-model}]}
  - {alias: slow, deployments: [{provider: p-openai, model: eval-slow}]}
"#;

/// Ten items: five with crafted answers, five echoed.
const DATASET: &str = r#"{"id": "capital", "input": "What is the capital of France?", "expected": "Paris"}
{"id": "math", "input": "What is 6 times 7?", "expected": 42}
{"id": "json", "input": {"messages": [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Return the user object"}]}, "expected": {"name": "Ada", "age": 36}}
{"id": "phone", "input": "Format the phone number", "metadata": {"kind": "format"}}
{"id": "greet", "input": "Say hello", "expected": "hello"}
{"id": "e1", "input": "repeat: alpha", "expected": "alpha"}
{"id": "e2", "input": "repeat: bravo", "expected": "bravo"}
{"id": "e3", "input": "repeat: charlie", "expected": "charlie"}
{"id": "e4", "input": "repeat: delta", "expected": "delta"}
{"id": "e5", "input": "repeat: echo", "expected": "echo"}
"#;

/// What "version A" (eval-a) and "version B" (eval-b) answer.
fn replies() -> Vec<ReplyRule> {
    let mut rules = vec![ReplyRule::new("judge-model", "SCORE: 0.8")];
    for (model, answers) in [
        (
            "eval-a",
            [
                ("capital", "Paris"),
                ("6 times 7", "42"),
                ("user object", "{\"name\": \"Ada\", \"age\": 36}"),
                ("phone", "555-1234"),
                ("hello", "Hello there, hello!"),
            ],
        ),
        (
            "eval-b",
            [
                ("capital", "paris."),
                ("6 times 7", "The answer is 42.5"),
                ("user object", "{\"name\": \"Ada\"}"),
                ("phone", "5551234"),
                ("hello", "Hello there, hello!"),
            ],
        ),
    ] {
        for (when, reply) in answers {
            rules.push(ReplyRule::new(model, reply).when_prompt_contains(when));
        }
    }
    rules.push(ReplyRule::new("eval-*", "{prompt}"));
    rules
}

fn scorers() -> Value {
    json!([
        {"type": "exact_match", "name": "exact"},
        {"type": "contains"},
        {"type": "regex", "name": "phone_format", "pattern": "^\\d{3}-\\d{4}$"},
        {"type": "json_schema", "name": "schema", "schema": {"type": "object", "required": ["name", "age"], "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}},
        {"type": "numeric", "abs_tol": 0.1},
        {"type": "llm_judge", "name": "judge", "model": "judge"}
    ])
}

async fn env() -> Env {
    let sim = start_sim(SimConfig {
        replies: replies(),
        ..SimConfig::default()
    })
    .await;
    let gw = Gateway::start(&standard_config(&sim.base_url(), MODELS)).await;
    Env {
        sim,
        gw,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

/// Uploads a JSONL body as a dataset.
async fn upload(env: &Env, name: &str, jsonl: &str) -> Reply {
    let resp = env
        .http
        .post(format!("{}/admin/datasets?name={name}", env.gw.url))
        .bearer_auth(KEY)
        .header("content-type", "application/x-ndjson")
        .body(jsonl.to_owned())
        .send()
        .await
        .unwrap();
    Reply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

/// Polls a run until it is no longer queued or running.
async fn wait_done(env: &Env, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = env.get(&format!("/admin/evals/{id}")).await.json();
        if !matches!(run["status"].as_str(), Some("queued" | "running")) {
            return run;
        }
        assert!(Instant::now() < deadline, "run did not finish: {run:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn target<'a>(run: &'a Value, label: &str) -> &'a Value {
    run["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["label"] == label)
        .unwrap_or_else(|| panic!("no aggregate for {label}: {run:#}"))
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|f| (f - want).abs() < 1e-9)
}

/// Starts the two-target run on the standard dataset and waits for it.
async fn two_target_run(env: &Env) -> (String, Value) {
    let created = upload(env, "qa", DATASET).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["item_count"], 10);
    let started = env
        .post(
            "/admin/evals",
            &json!({
                "dataset": "qa",
                "name": "prompt-a-vs-b",
                "targets": [{"model": "va"}, {"model": "vb"}],
                "scorers": scorers(),
                "concurrency": 4,
            }),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let run = wait_done(env, &id).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    (id, run)
}

#[tokio::test]
async fn a_dataset_against_two_versions_scores_compares_and_tags_requests() {
    let env = env().await;
    let (id, run) = two_target_run(&env).await;
    assert_eq!(run["progress"], json!({"done": 20, "total": 20}));
    assert_eq!(run["dataset"]["name"], "qa");

    let a = target(&run, "model:va");
    let b = target(&run, "model:vb");
    for agg in [a, b] {
        assert_eq!(agg["done"], 10);
        assert_eq!(agg["errors"], 0);
        assert!(close(&agg["scores"]["judge"]["mean"], 0.8), "{agg:#}");
        assert!(agg["latency_p50_ms"].as_f64().unwrap() > 0.0);
        assert!(agg["latency_p95_ms"].as_f64().unwrap() >= agg["latency_p50_ms"].as_f64().unwrap());
        assert!(
            agg["cost_nanos"].as_i64().unwrap() > 0,
            "priced deployments cost something"
        );
    }
    // Exact: capital, math (as JSON) and json on A; nothing on B; phone has no expectation.
    assert!(close(&a["scores"]["exact"]["mean"], 3.0 / 9.0), "{a:#}");
    assert_eq!(a["scores"]["exact"]["scored"], 9);
    assert!(close(&b["scores"]["exact"]["mean"], 0.0));
    assert!(close(&a["scores"]["contains"]["mean"], 8.0 / 9.0));
    assert!(close(&b["scores"]["contains"]["mean"], 7.0 / 9.0));
    assert!(close(&a["scores"]["phone_format"]["mean"], 0.1));
    assert!(close(&b["scores"]["phone_format"]["mean"], 0.0));
    assert!(close(&a["scores"]["schema"]["mean"], 0.1));
    assert!(close(&b["scores"]["schema"]["mean"], 0.0));
    assert_eq!(a["scores"]["numeric"]["scored"], 1);
    assert!(close(&a["scores"]["numeric"]["mean"], 1.0));
    assert!(close(&b["scores"]["numeric"]["mean"], 0.0));

    // Per item: output, scores, tokens, cost and the request that produced it.
    let items = env
        .get(&format!("/admin/evals/{id}/items?target=1"))
        .await
        .json();
    assert_eq!(items["total"], 10);
    let math = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["item_id"] == "math")
        .unwrap();
    assert_eq!(math["output"], "The answer is 42.5");
    assert_eq!(math["target_label"], "model:vb");
    assert_eq!(math["scores"]["numeric"]["score"], 0.0);
    assert_eq!(math["scores"]["contains"]["score"], 1.0);
    assert!(math["scores"]["phone_format"]["score"] == 0.0);
    assert_eq!(math["passed"], false);
    assert!(math["input_tokens"].as_i64().unwrap() > 0);
    let request_id = math["request_id"].as_str().unwrap();
    let record = env
        .get(&format!("/admin/requests/{request_id}"))
        .await
        .json();
    assert_eq!(record["tags"]["eval_run"], id.as_str());
    assert_eq!(record["tags"]["eval_item"], "math");
    assert_eq!(record["cost_nanos"], math["cost_nanos"]);
    // Every item request and every judge request is recorded, tagged with the run.
    let tagged = env
        .get(&format!("/admin/requests?tag=eval_run:{id}&limit=1000"))
        .await
        .json();
    assert_eq!(
        tagged["data"].as_array().unwrap().len(),
        40,
        "20 items + 20 judgements"
    );

    // B against A in the same run: the four items whose scores differ.
    let c = env
        .get(&format!("/admin/evals/compare?a={id}&b={id}"))
        .await
        .json();
    assert_eq!(c["a"]["label"], "model:va");
    assert_eq!(c["b"]["label"], "model:vb");
    assert_eq!(c["common_items"], 10);
    let mut differing: Vec<&str> = c["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["item_id"].as_str().unwrap())
        .collect();
    differing.sort_unstable();
    assert_eq!(differing, ["capital", "json", "math", "phone"]);
    assert!(
        close(&c["deltas"]["exact.mean"], -3.0 / 9.0),
        "{:#}",
        c["deltas"]
    );
    let capital = c["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["item_id"] == "capital")
        .unwrap();
    assert_eq!(capital["scores"]["exact"], json!([1.0, 0.0]));
    assert_eq!(capital["output"], json!(["Paris", "paris."]));

    // Two runs side by side: a second run with version B alone.
    let second = env
        .post(
            "/admin/evals",
            &json!({"dataset": "qa", "targets": [{"model": "vb"}], "scorers": [{"type": "exact_match", "name": "exact"}]}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    let second_id = second.json()["id"].as_str().unwrap().to_owned();
    wait_done(&env, &second_id).await;
    let ambiguous = env
        .get(&format!("/admin/evals/compare?a={id}&b={second_id}"))
        .await;
    assert_eq!(ambiguous.status, 400);
    assert_eq!(ambiguous.json()["error"]["param"], "a_target");
    let c = env
        .get(&format!(
            "/admin/evals/compare?a={id}&a_target=model:va&b={second_id}"
        ))
        .await
        .json();
    assert_eq!(c["same_dataset"], true);
    assert_eq!(
        c["differences"].as_array().unwrap().len(),
        3,
        "capital, math, json"
    );

    // The CLI prints the same comparison as tables.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["eval", "compare", &id, "--url", &env.gw.url, "--key", KEY])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("4 of 10 common items differ"), "{text}");
    assert!(text.contains("exact (mean)"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "eval",
            "show",
            &id,
            "--items",
            "--url",
            &env.gw.url,
            "--key",
            KEY,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("model:vb") && text.contains("The answer is 42.5"),
        "{text}"
    );
}

/// Two versions of configuration `qa-prompt` (a system prompt each, on versions A and B of the
/// simulated model), evaluated against the standard dataset.
async fn prompt_versions_run(env: &Env) -> (String, Value) {
    for (target, system) in [("va", "Answer exactly."), ("vb", "Answer briefly.")] {
        let r = env
            .post(
                "/admin/configs",
                &json!({"name": "qa-prompt", "target": target, "template": {"system": system}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let created = upload(env, "qa-v", DATASET).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let started = env
        .post(
            "/admin/evals",
            &json!({
                "dataset": "qa-v",
                "name": "qa-prompt-1-vs-2",
                "targets": [{"config": "qa-prompt@1"}, {"config": "qa-prompt@2"}],
                "scorers": [{"type": "exact_match", "name": "exact"}, {"type": "contains"}],
            }),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let run = wait_done(env, &id).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    (id, run)
}

#[tokio::test]
async fn two_configuration_versions_are_evaluated_and_compared() {
    let env = env().await;
    // An unknown version is refused when the run is created, not item by item.
    let r = env
        .post(
            "/admin/evals",
            &json!({"dataset": "nope", "targets": [{"config": "qa-prompt@9"}], "scorers": [{"type": "contains"}]}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let (id, run) = prompt_versions_run(&env).await;
    let unknown = env
        .post(
            "/admin/evals",
            &json!({"dataset": "qa-v", "targets": [{"config": "qa-prompt@9"}], "scorers": [{"type": "contains"}]}),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert_eq!(unknown.json()["error"]["param"], "targets[0].config");

    let v1 = target(&run, "config:qa-prompt@1");
    let v2 = target(&run, "config:qa-prompt@2");
    assert_eq!(v1["errors"], 0, "{v1:#}");
    assert!(close(&v1["scores"]["exact"]["mean"], 3.0 / 9.0), "{v1:#}");
    assert!(close(&v2["scores"]["exact"]["mean"], 0.0), "{v2:#}");
    assert!(close(&v1["scores"]["contains"]["mean"], 8.0 / 9.0));
    assert!(close(&v2["scores"]["contains"]["mean"], 7.0 / 9.0));

    // Each item's request was served by the version it names, with that version's prompt.
    let items = env
        .get(&format!("/admin/evals/{id}/items?target=1"))
        .await
        .json();
    let item = &items["data"][0];
    let record = env
        .get(&format!(
            "/admin/requests/{}",
            item["request_id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(record["config_name"], "qa-prompt", "{record:#}");
    assert_eq!(record["config_version"], 2, "{record:#}");
    assert_eq!(record["alias"], "vb", "{record:#}");

    let c = env
        .get(&format!("/admin/evals/compare?a={id}&b={id}"))
        .await
        .json();
    assert_eq!(c["a"]["label"], "config:qa-prompt@1");
    assert_eq!(c["b"]["label"], "config:qa-prompt@2");
    assert!(close(&c["deltas"]["exact.mean"], -3.0 / 9.0), "{c:#}");
    // A name or a label is pinned to the version it names when the run is created: a label
    // moved mid-run, or an experiment on the configuration, changes none of its items.
    let pinned = env
        .post(
            "/admin/evals",
            &json!({"dataset": "qa-v", "targets": [{"config": "qa-prompt"}, {"config": "qa-prompt@latest"}],
                "scorers": [{"type": "contains"}]}),
        )
        .await;
    assert_eq!(pinned.status, 201, "{}", pinned.text);
    let run = wait_done(&env, pinned.json()["id"].as_str().unwrap()).await;
    let labels: Vec<&str> = run["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["config:qa-prompt@2", "config:qa-prompt@2"],
        "{run:#}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let env = env().await;
    // Line 3's message has no valid role: the whole upload is refused.
    let bad = "{\"input\": \"a\"}\n{\"input\": \"b\"}\n{\"input\": {\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}}\n";
    let r = upload(&env, "broken", bad).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "invalid_request");
    assert_eq!(e["param"], "line 3: input.messages[0].role");
    assert!(e["message"].as_str().unwrap().contains("line 3"), "{e}");
    let r = upload(&env, "broken", "{\"input\": \"a\"}\n{oops\n").await;
    assert_eq!(r.json()["error"]["param"], "line 2");
    let r = upload(&env, "broken", "{\"input\": \"a\", \"expcted\": \"b\"}\n").await;
    assert_eq!(r.json()["error"]["param"], "line 1: expcted");
    assert_eq!(env.get("/admin/datasets/broken").await.status, 404);
    assert_eq!(env.get("/admin/datasets").await.json()["data"], json!([]));
    // The JSON form names the index.
    let r = env
        .post(
            "/admin/datasets",
            &json!({"name": "j", "items": [{"input": "a"}, {"input": 5}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "items[1].input");

    assert_eq!(upload(&env, "qa", DATASET).await.status, 201);
    let again = upload(&env, "qa", DATASET).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "dataset_exists");

    let unknown = env.get("/admin/evals/eval_nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "eval_run_not_found");
    let api = &env;
    let run = |body: Value| async move { api.post("/admin/evals", &body).await };
    let r = run(
        json!({"dataset": "nope", "targets": [{"model": "va"}], "scorers": [{"type": "contains"}]}),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("dataset_not_found"))
    );
    let r = run(json!({"dataset": "qa", "targets": [{"model": "va"}, {"model": "v9"}], "scorers": [{"type": "contains"}]})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "targets[1].model");
    let r = run(json!({"dataset": "qa", "targets": [{"config": "support@@3"}], "scorers": [{"type": "contains"}]})).await;
    assert_eq!(r.json()["error"]["param"], "targets[0].config");
    let r = run(json!({"dataset": "qa", "targets": [{"model": "va"}], "scorers": [{"type": "contains"}, {"type": "regex", "pattern": "("}]})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "scorers[1].pattern");
    let r = run(json!({"dataset": "qa", "targets": [{"model": "va"}], "scorers": [{"type": "llm_judge", "model": "nobody"}]})).await;
    assert_eq!(r.json()["error"]["param"], "scorers[0].model");
    let r = run(json!({"dataset": "qa", "targets": [{"model": "va"}], "scorers": [{"type": "contains"}], "params": {"model": "x"}})).await;
    assert_eq!(r.json()["error"]["param"], "params.model");
    assert_eq!(
        env.get("/admin/evals").await.json()["data"],
        json!([]),
        "no run was stored"
    );

    // A viewer may read but not start runs.
    let viewer = env
        .post("/admin/keys", &json!({"role": "viewer"}))
        .await
        .json();
    let viewer_key = viewer["key"].as_str().unwrap();
    assert_eq!(env.get_key("/admin/datasets", viewer_key).await.status, 200);
    let r = env
        .post_key("/admin/evals", &json!({"dataset": "qa", "targets": [{"model": "va"}], "scorers": [{"type": "contains"}]}), viewer_key)
        .await;
    assert_eq!(r.status, 403);
}

#[cfg(unix)]
#[tokio::test]
async fn a_run_interrupted_by_a_restart_resumes_where_it_stopped() {
    let sim = start_sim(SimConfig {
        replies: replies(),
        ..SimConfig::default()
    })
    .await;
    let config = standard_config(&sim.base_url(), MODELS);
    let gw = Gateway::start(&config).await;
    let mut env = Env {
        sim,
        gw,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    env.fault("eval-slow", "ttft_ms=300", None).await;
    assert_eq!(upload(&env, "qa", DATASET).await.status, 201);
    let started = env
        .post(
            "/admin/evals",
            &json!({"dataset": "qa", "targets": [{"model": "slow"}], "scorers": [{"type": "contains"}], "concurrency": 1}),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = env.get(&format!("/admin/evals/{id}")).await.json();
        if run["progress"]["done"].as_i64().unwrap() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {run:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed mid-run: nothing gets to mark the run.
    let dir = env.gw.stop();
    env.gw = Gateway::start_in(&config, dir).await;
    let run = env.get(&format!("/admin/evals/{id}")).await.json();
    assert_eq!(run["status"], "interrupted", "{run:#}");
    let done_before = run["progress"]["done"].as_i64().unwrap();
    assert!((3..10).contains(&done_before), "{run:#}");
    let before = env.get(&format!("/admin/evals/{id}/items")).await.json()["data"]
        .as_array()
        .unwrap()
        .clone();
    let sent_before = env.sim_stats().await["by_model"]["eval-slow"]
        .as_u64()
        .unwrap();

    let resumed = env
        .post(&format!("/admin/evals/{id}/resume"), &json!({}))
        .await;
    assert_eq!(resumed.status, 202, "{}", resumed.text);
    let run = wait_done(&env, &id).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["progress"]["done"], 10);
    // Only the items without a result were sent again.
    let sent_after = env.sim_stats().await["by_model"]["eval-slow"]
        .as_u64()
        .unwrap();
    assert_eq!(sent_after - sent_before, (10 - done_before) as u64);
    let after = env.get(&format!("/admin/evals/{id}/items")).await.json()["data"]
        .as_array()
        .unwrap()
        .clone();
    for old in &before {
        let same = after
            .iter()
            .find(|r| r["item_id"] == old["item_id"])
            .unwrap();
        assert_eq!(
            same["request_id"], old["request_id"],
            "a finished item was sent again"
        );
    }
    let again = env
        .post(&format!("/admin/evals/{id}/resume"), &json!({"bogus": 1}))
        .await;
    assert_eq!(again.status, 400);

    // A graceful stop lets go of a run in flight (the process exits cleanly) and marks it
    // interrupted.
    let started = env
        .post(
            "/admin/evals",
            &json!({"dataset": "qa", "targets": [{"model": "slow"}], "scorers": [{"type": "contains"}], "concurrency": 1}),
        )
        .await;
    let second = started.json()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(env.gw.pid().to_string())
        .status()
        .unwrap();
    let gw = env.gw;
    let (status, dir) = tokio::task::spawn_blocking(move || gw.wait_keeping_dir())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    env.gw = Gateway::start_in(&config, dir).await;
    let run = env.get(&format!("/admin/evals/{second}")).await.json();
    assert_eq!(run["status"], "interrupted", "{run:#}");
    assert!(run["progress"]["done"].as_i64().unwrap() < 10, "{run:#}");
}

/// The Python that has MLflow installed (set by `scripts/test`).
fn mlflow_python() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_MLFLOW") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "SWITCHYARD_TEST_MLFLOW is not set under CI: run the suite through scripts/test"
                );
            }
            eprintln!(
                "\n!!! SKIPPING the MLflow export test: SWITCHYARD_TEST_MLFLOW is not set.\n!!! Run ./scripts/test to install the MLflow tracking server and run it.\n"
            );
            None
        }
    }
}

struct Mlflow {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl LocalServer for Mlflow {
    const NAME: &'static str = "MLflow";
    const HEALTH: &'static str = "/health";

    fn spawn(python: &str) -> Mlflow {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("mlflow.log")).unwrap();
        let store = format!("sqlite:///{}", dir.path().join("mlflow.db").display());
        let artifacts = dir.path().join("artifacts");
        let mut command = Command::new(python);
        // Its own process group: the server starts workers and job runners of its own, and
        // dropping it ends the whole group, not just the first process.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args([
                "--workers",
                "1",
                "--backend-store-uri",
                &store,
                "--default-artifact-root",
            ])
            .arg(&artifacts)
            .current_dir(dir.path())
            .env("MLFLOW_TRACKING_URI", &store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start MLflow");
        Mlflow {
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
        self.dir.path().join("mlflow.log")
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[{key, value}]` as a map.
fn pairs(list: &Value) -> serde_json::Map<String, Value> {
    list.as_array()
        .map(|l| {
            l.iter()
                .map(|p| (p["key"].as_str().unwrap().to_owned(), p["value"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// One MLflow run, read back through MLflow's REST API.
async fn mlflow_run(env: &Env, mlflow: &Mlflow, run_id: &str) -> Value {
    let found: Value = env
        .http
        .get(format!(
            "{}/api/2.0/mlflow/runs/get?run_id={run_id}",
            mlflow.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    found["run"].clone()
}

#[tokio::test]
async fn the_run_appears_in_a_real_mlflow_server() {
    let Some(python) = mlflow_python() else {
        return;
    };
    assert!(
        Path::new(&python).exists(),
        "SWITCHYARD_TEST_MLFLOW={python} does not exist"
    );
    let mut mlflow = Mlflow::spawn(&python);
    let env = env().await;
    let (id, run) = two_target_run(&env).await;
    wait_ready(&mut mlflow, &python, &env.http).await;

    let r = env
        .post(
            &format!("/admin/evals/{id}/export/mlflow"),
            &json!({"tracking_uri": mlflow.url, "experiment": "switchyard-it"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let exported = r.json();
    let parent_id = exported["parent_run_id"].as_str().unwrap().to_owned();
    let experiment_id = exported["experiment_id"].as_str().unwrap().to_owned();
    assert_eq!(exported["run_ids"].as_array().unwrap().len(), 2);

    // Read it back through MLflow's own REST API.
    let found: Value = env
        .http
        .post(format!("{}/api/2.0/mlflow/runs/search", mlflow.url))
        .header("content-type", "application/json")
        .body(json!({"experiment_ids": [experiment_id], "max_results": 100}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = found["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{found:#}");
    let parent = runs
        .iter()
        .find(|r| r["info"]["run_id"] == parent_id.as_str())
        .unwrap();
    assert_eq!(parent["info"]["run_name"], "prompt-a-vs-b");
    assert_eq!(parent["info"]["status"], "FINISHED");
    assert_eq!(pairs(&parent["data"]["params"])["dataset"], "qa");
    for label in ["model:va", "model:vb"] {
        let child = runs
            .iter()
            .find(|r| pairs(&r["data"]["params"]).get("target") == Some(&json!(label)))
            .unwrap_or_else(|| panic!("no MLflow run for {label}: {found:#}"));
        let tags = pairs(&child["data"]["tags"]);
        assert_eq!(tags["mlflow.parentRunId"], parent_id.as_str());
        assert_eq!(tags["switchyard.eval_run"], id.as_str());
        assert_eq!(tags["switchyard.target"], label);
        let params = pairs(&child["data"]["params"]);
        assert_eq!(params["eval_run"], id.as_str());
        assert_eq!(
            params["scorers"],
            "exact,contains,phone_format,schema,numeric,judge"
        );
        let metrics = pairs(&child["data"]["metrics"]);
        let agg = target(&run, label);
        for scorer in [
            "exact",
            "contains",
            "phone_format",
            "schema",
            "numeric",
            "judge",
        ] {
            let want = agg["scores"][scorer]["mean"].as_f64().unwrap();
            let got = metrics[&format!("{scorer}.mean")].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{label} {scorer}: {got} != {want}"
            );
        }
        assert!(close(
            &metrics["pass_rate"],
            agg["pass_rate"].as_f64().unwrap()
        ));
        assert!(close(
            &metrics["latency_p50_ms"],
            agg["latency_p50_ms"].as_f64().unwrap()
        ));
        assert!(close(
            &metrics["latency_p95_ms"],
            agg["latency_p95_ms"].as_f64().unwrap()
        ));
        assert!(close(
            &metrics["cost_usd"],
            agg["cost_nanos"].as_f64().unwrap() / 1e9
        ));
    }

    // The run over two configuration versions appears the same way.
    let (versions_id, _) = prompt_versions_run(&env).await;
    let r = env
        .post(
            &format!("/admin/evals/{versions_id}/export/mlflow"),
            &json!({"tracking_uri": mlflow.url, "experiment": "switchyard-it"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let parent_id = r.json()["parent_run_id"].as_str().unwrap().to_owned();
    let parent = mlflow_run(&env, &mlflow, &parent_id).await;
    assert_eq!(
        pairs(&parent["data"]["params"])["targets"],
        "config:qa-prompt@1,config:qa-prompt@2"
    );

    // An A/B experiment's results: a parent run and one run per variant.
    let experiment = env
        .post(
            "/admin/experiments",
            &json!({
                "name": "qa-tone", "config": "qa-prompt", "unit": "request",
                "variants": [{"name": "a", "version": 1, "share": 50}, {"name": "b", "version": 2, "share": 50}],
                "metrics": [{"name": "thumbs_up", "kind": "boolean"}],
            }),
        )
        .await;
    assert_eq!(experiment.status, 201, "{}", experiment.text);
    let experiment_id = experiment.json()["id"].as_str().unwrap().to_owned();
    for i in 0..20 {
        let r = env
            .post_with(
                "/v1/chat/completions",
                &json!({"model": "qa-prompt", "messages": [{"role": "user", "content": format!("repeat: {i}")}]}),
                &[("authorization", &format!("Bearer {KEY}")), ("x-switchyard-config", "qa-prompt")],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
        let thumbs = r.headers["x-switchyard-variant"] == "b";
        let fb = env
            .post(
                "/v1/feedback",
                &json!({"request_id": id, "metric": "thumbs_up", "value": thumbs}),
            )
            .await;
        assert_eq!(fb.status, 200, "{}", fb.text);
    }
    let results = env
        .get(&format!("/admin/experiments/{experiment_id}/results"))
        .await
        .json();
    let r = env
        .post(
            &format!("/admin/experiments/{experiment_id}/export/mlflow"),
            &json!({"tracking_uri": mlflow.url, "experiment": "switchyard-ab"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let exported = r.json();
    let run_ids = exported["run_ids"].as_array().unwrap();
    assert_eq!(run_ids.len(), 2, "{exported:#}");
    let parent = mlflow_run(&env, &mlflow, exported["parent_run_id"].as_str().unwrap()).await;
    assert_eq!(parent["info"]["run_name"], "qa-tone");
    let parent_tags = pairs(&parent["data"]["tags"]);
    assert_eq!(parent_tags["switchyard.verdict"], results["verdict"]);
    for (i, variant) in ["a", "b"].iter().enumerate() {
        let run = mlflow_run(&env, &mlflow, run_ids[i].as_str().unwrap()).await;
        let params = pairs(&run["data"]["params"]);
        assert_eq!(params["variant"], *variant);
        assert_eq!(params["version"], (i + 1).to_string());
        let metrics = pairs(&run["data"]["metrics"]);
        let want = &results["variants"][i];
        assert!(close(
            &metrics["requests"],
            want["requests"].as_f64().unwrap()
        ));
        let rate = if *variant == "b" { 1.0 } else { 0.0 };
        assert!(close(&metrics["thumbs_up.rate"], rate), "{metrics:#?}");
        assert_eq!(
            pairs(&run["data"]["tags"])["mlflow.parentRunId"],
            exported["parent_run_id"]
        );
    }

    // An unreachable tracking server is a clean 502.
    let r = env
        .post(
            &format!("/admin/experiments/{experiment_id}/export/mlflow"),
            &json!({"tracking_uri": "http://127.0.0.1:1"}),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "mlflow_export_failed");
    let r = env
        .post(
            &format!("/admin/evals/{id}/export/mlflow"),
            &json!({"tracking_uri": "http://127.0.0.1:1"}),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "mlflow_export_failed");
}

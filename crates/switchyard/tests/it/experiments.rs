//! Configurations, a 95/5 experiment and feedback through the real binary: versions and diffs,
//! sticky assignment by customer, the split and its sample-ratio check, templates rendered
//! upstream, per-variant results with a significant verdict, pause and promote in the change
//! log, and clear 4xx answers to bad input.

use std::process::Command;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::{Env, KEY, Reply, env_with, record};

const MODELS: &str = r#"
  - alias: cheap
    deployments:
      - {provider: p-openai, model: cheap-model, price: {input_per_mtok: 1, output_per_mtok: 2}}
  - alias: dear
    deployments:
      - {provider: p-anthropic, model: dear-model, price: {input_per_mtok: 3, output_per_mtok: 15}}
"#;

fn header(r: &Reply, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn request_id(r: &Reply) -> String {
    header(r, "x-request-id").unwrap()
}

/// An OpenAI request for configuration `support` (no version) as customer `customer`.
async fn ask(env: &Env, customer: Option<&str>) -> Reply {
    let body = json!({
        "model": "support",
        "messages": [{"role": "user", "content": "Where is my parcel?"}],
        "switchyard": {"variables": {"product": "Gizmo", "question": "late delivery"}},
    });
    let mut headers = vec![
        ("authorization", format!("Bearer {KEY}")),
        ("x-switchyard-config", "support".to_owned()),
    ];
    if let Some(c) = customer {
        headers.push(("x-switchyard-customer", c.to_owned()));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.post_with("/v1/chat/completions", &body, &headers).await
}

async fn setup_configs(env: &Env) {
    let r = env
        .post(
            "/admin/configs",
            &json!({
                "name": "support", "target": "cheap",
                "template": {"system": "You are the support agent for {{product}}."},
                "parameters": {"temperature": 0.3},
                "labels": ["production"],
                "description": "first prompt",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["version"], 1);
    let r = env
        .post(
            "/admin/configs",
            &json!({
                "name": "support", "target": "dear",
                "template": {
                    "system": "Answer briefly about {{product}}.",
                    "messages": [{"role": "user", "content": "Customer asks about {{product}} and {{question}}"}],
                },
                "description": "shorter answers on the better model",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.json()["variables"], json!(["product", "question"]));
}

async fn feedback(env: &Env, id: &str, value: Value) -> Reply {
    env.post(
        "/v1/feedback",
        &json!({"request_id": id, "metric": "thumbs_up", "value": value}),
    )
    .await
}

#[tokio::test]
async fn a_95_5_experiment_shows_per_variant_metrics_and_a_verdict() {
    let env = env_with(MODELS).await;
    setup_configs(&env).await;

    // An unchanged body creates no version.
    let r = env
        .post(
            "/admin/configs",
            &json!({
                "name": "support", "target": "dear",
                "template": {
                    "system": "Answer briefly about {{product}}.",
                    "messages": [{"role": "user", "content": "Customer asks about {{product}} and {{question}}"}],
                },
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["created"], false);
    assert_eq!(r.json()["version"], 2);
    let d = env.get("/admin/configs/support/diff?from=1&to=2").await;
    assert_eq!(d.status, 200);
    let paths: Vec<String> = d.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_owned())
        .collect();
    for p in ["target", "template.system", "parameters.temperature"] {
        assert!(paths.contains(&p.to_owned()), "{paths:?}");
    }

    // The rendered template is what the provider sees: with no messages of its own, the
    // Anthropic request's last user turn is the template's, which the simulator quotes.
    let r = env
        .post_anthropic(&json!({
            "model": "", "max_tokens": 40, "messages": [],
            "switchyard": {"config": "support@2", "variables": {"product": "Gizmo", "question": "refunds"}},
        }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = r.json()["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("dear-model to: Customer asks about Gizmo and refunds"),
        "{text}"
    );
    assert_eq!(
        header(&r, "x-switchyard-config").as_deref(),
        Some("support@2")
    );
    assert!(header(&r, "x-switchyard-variant").is_none());

    let r = env
        .post(
            "/admin/experiments",
            &json!({
                "id": "support-ab", "config": "support", "unit": "customer",
                "variants": [
                    {"name": "a", "version": "production", "share": 95},
                    {"name": "b", "version": 2, "share": 5},
                ],
                "metrics": [{"name": "thumbs_up", "kind": "boolean"}],
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json()["variants"][0]["version"],
        1,
        "labels resolve at creation"
    );

    // 400 customers, 20 at a time.
    let mut assigned: Vec<(String, String, String)> = Vec::new();
    for chunk in (0..400).collect::<Vec<_>>().chunks(20) {
        let replies = join_all(chunk.iter().map(|i| {
            let env = &env;
            async move {
                let customer = format!("customer-{i}");
                (customer.clone(), ask(env, Some(&customer)).await)
            }
        }))
        .await;
        for (customer, r) in replies {
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(
                header(&r, "x-switchyard-experiment").as_deref(),
                Some("support-ab")
            );
            let variant = header(&r, "x-switchyard-variant").unwrap();
            let served = header(&r, "x-switchyard-config").unwrap();
            let model = r.json()["model"].as_str().unwrap().to_owned();
            match variant.as_str() {
                "a" => {
                    assert_eq!(served, "support@1");
                    assert!(model.contains("cheap"), "{model}");
                }
                "b" => {
                    assert_eq!(served, "support@2");
                    assert!(model.contains("dear"), "{model}");
                }
                other => panic!("unknown variant {other}"),
            }
            assigned.push((customer, variant, request_id(&r)));
        }
    }
    let b_count = assigned.iter().filter(|(_, v, _)| v == "b").count();
    // 5 % of 400 is 20 (binomial standard deviation 4.4).
    assert!((7..=40).contains(&b_count), "b got {b_count} of 400");

    // Sticky: the same customers get the same variants again.
    for (customer, variant, _) in assigned.iter().take(30) {
        let r = ask(&env, Some(customer)).await;
        assert_eq!(header(&r, "x-switchyard-variant").as_ref(), Some(variant));
    }
    // A b customer's request was rendered from version 2 upstream.
    let stats = env.sim_stats().await;
    assert!(stats["by_model"]["dear-model"].as_u64().unwrap() >= b_count as u64);
    assert!(stats["by_model"]["cheap-model"].as_u64().unwrap() >= 300);

    // The record says which version and variant served it.
    let (_, variant, id) = assigned.iter().find(|(_, v, _)| v == "b").unwrap().clone();
    let record = record(&env, &id).await;
    assert_eq!(record["config_name"], "support");
    assert_eq!(record["config_version"], 2);
    assert_eq!(record["experiment_id"], "support-ab");
    assert_eq!(record["variant"], variant);
    assert_eq!(record["assignment"], "customer");
    assert_eq!(record["alias"], "dear");

    // Feedback skewed by variant: b is liked 90 % of the time, a 30 %. Posted right after the
    // answers, so some records may still be on their way to the store.
    for chunk in assigned.chunks(25) {
        let replies = join_all(chunk.iter().enumerate().map(|(i, (_, v, id))| {
            let env = &env;
            let liked = if v == "b" { i % 10 != 0 } else { i % 10 < 3 };
            async move { feedback(env, id, json!(liked)).await }
        }))
        .await;
        for r in replies {
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json()["replaced"], false);
        }
    }
    // Idempotent per (request, metric, source): a repeat replaces.
    let (_, _, first) = &assigned[0];
    let r = feedback(&env, first, json!(false)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["replaced"], true);

    let r = env.get("/admin/experiments/support-ab/results").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let res = r.json();
    let variants = res["variants"].as_array().unwrap();
    let a_n = variants[0]["requests"].as_u64().unwrap();
    let b_n = variants[1]["requests"].as_u64().unwrap();
    assert_eq!(a_n + b_n, 430, "400 requests and 30 repeats");
    assert_eq!(res["sample_ratio"]["mismatch"], false, "{res}");
    for v in variants {
        assert!(v["latency_ms"]["p50"].as_f64().is_some());
        assert!(v["cost_per_request_nanos"].as_i64().unwrap() > 0);
        assert!(v["mean_input_tokens"].as_f64().unwrap() > 0.0);
        assert_eq!(v["error_rate"], 0.0);
    }
    let thumbs = &res["metrics"][0];
    assert_eq!(thumbs["name"], "thumbs_up");
    assert_eq!(
        thumbs["variants"][0]["n"].as_u64().unwrap() + thumbs["variants"][1]["n"].as_u64().unwrap(),
        400,
        "one score per request, the repeat replaced"
    );
    let cmp = &thumbs["comparisons"][0];
    assert_eq!(cmp["significant"], true, "{cmp}");
    assert!(cmp["p_value"].as_f64().unwrap() < 0.01);
    let verdict = res["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("variant b better on thumbs_up (p "),
        "{verdict}"
    );
    assert!(verdict.contains("more expensive per request"), "{verdict}");

    // The CLI prints the same.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "experiments",
            "show",
            "support-ab",
            "--url",
            &env.gw.url,
            "--key",
            KEY,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("VARIANT") && text.contains("support@2"),
        "{text}"
    );
    assert!(
        text.contains("verdict: variant b better on thumbs_up"),
        "{text}"
    );

    // Paused: nobody is assigned, everyone gets production.
    let b_customer = assigned
        .iter()
        .find(|(_, v, _)| v == "b")
        .unwrap()
        .0
        .clone();
    let r = env
        .post("/admin/experiments/support-ab/pause", &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "paused");
    let r = ask(&env, Some(&b_customer)).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "x-switchyard-variant").is_none());
    assert_eq!(
        header(&r, "x-switchyard-config").as_deref(),
        Some("support@1")
    );
    let r = env
        .post("/admin/experiments/support-ab/resume", &json!({}))
        .await;
    assert_eq!(r.json()["status"], "running");
    let r = ask(&env, Some(&b_customer)).await;
    assert_eq!(header(&r, "x-switchyard-variant").as_deref(), Some("b"));

    // Promote b: production moves to version 2 and the experiment stops.
    let r = env
        .post(
            "/admin/experiments/support-ab/promote",
            &json!({"variant": "b"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "stopped");
    assert_eq!(r.json()["winner"], "b");
    let c = env.get("/admin/configs/support").await.json();
    assert_eq!(c["labels"]["production"], 2);
    let r = ask(&env, Some("customer-0")).await;
    assert_eq!(
        header(&r, "x-switchyard-config").as_deref(),
        Some("support@2")
    );
    assert!(header(&r, "x-switchyard-variant").is_none());

    // The change log has every step, with who and what changed.
    let log = env
        .get("/admin/changelog?experiment=support-ab")
        .await
        .json();
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["promote", "resume", "pause", "create_experiment"]);
    // The log of what does not exist is a 404, not an empty log; and a missing record or key
    // is named as what it is, not as an endpoint.
    for path in [
        "/admin/configs/support/versions/99",
        "/admin/configs/support/versions/nosuch",
        "/admin/changelog?experiment=nosuch",
        "/admin/changelog?config=nosuch",
        "/admin/requests/nosuch",
        "/admin/keys/nosuch",
    ] {
        let r = env.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            !message.contains("endpoint") && (message.contains("nosuch") || message.contains("99")),
            "{message}"
        );
    }
    let log = env.get("/admin/changelog?config=support").await.json();
    let entries = log["data"].as_array().unwrap();
    let newest = &entries[0];
    assert_eq!(newest["action"], "move_label");
    assert_eq!(newest["actor"], "master key");
    assert_eq!(
        newest["diff"],
        json!([{"path": "labels.production", "before": 1, "after": 2}])
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "create_version")
            .count(),
        2
    );
    let audit = env.get("/admin/audit").await.json();
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "experiment" && e["action"] == "promote")
    );
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_and_writes_nothing() {
    let env = env_with(MODELS).await;
    setup_configs(&env).await;
    let experiment = |variants: Value| json!({"config": "support", "variants": variants});

    // Shares that do not sum to 100.
    let r = env
        .post(
            "/admin/experiments",
            &experiment(json!([{"name": "a", "version": 1, "share": 90}, {"name": "b", "version": 2, "share": 5}])),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "variants");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sum to 95")
    );
    // An unknown version and an unknown label.
    let r = env
        .post(
            "/admin/experiments",
            &experiment(json!([{"name": "a", "version": 1, "share": 95}, {"name": "b", "version": 9, "share": 5}])),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "variants[1].version");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no version 9")
    );
    let r = env
        .post(
            "/admin/experiments",
            &experiment(json!([{"name": "a", "version": "canary", "share": 95}, {"name": "b", "version": 2, "share": 5}])),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "variants[0].version");
    // Nothing was written.
    assert_eq!(
        env.get("/admin/experiments").await.json()["data"],
        json!([])
    );
    let log = env.get("/admin/changelog").await.json();
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "config")
    );

    // A broken template and an unknown target are refused at creation.
    let r = env
        .post(
            "/admin/configs",
            &json!({"name": "support", "target": "cheap", "template": {"system": "Hi {{name"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "template.system");
    let r = env
        .post(
            "/admin/configs",
            &json!({"name": "support", "target": "nope"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "target");
    assert_eq!(
        env.get("/admin/configs/support").await.json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A request for an unknown version, label or configuration.
    for (selector, needle) in [
        ("support@9", "no version 9"),
        ("support@canary", "no label 'canary'"),
        ("nothing", "unknown configuration 'nothing'"),
    ] {
        let r = env
            .post_with(
                "/v1/chat/completions",
                &json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}),
                &[
                    ("authorization", &format!("Bearer {KEY}")),
                    ("x-switchyard-config", selector),
                ],
            )
            .await;
        assert_eq!(r.status, 400, "{selector}: {}", r.text);
        assert_eq!(r.json()["error"]["param"], "x-switchyard-config");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{}",
            r.text
        );
    }
    // A missing template variable names it and where it goes.
    let r = env
        .post(
            "/v1/chat/completions",
            &json!({
                "model": "x", "messages": [{"role": "user", "content": "hi"}],
                "switchyard": {"config": "support@2", "variables": {"product": "Gizmo"}},
            }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "switchyard.variables.question");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("support@2")
    );
    // The same on the Anthropic ingress, in its error shape.
    let r = env
        .post_anthropic(&json!({
            "model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
            "switchyard": {"config": "support@2", "variables": {}},
        }))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["type"], "error");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'product'")
    );
    // A stray field inside `switchyard`.
    let r = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "switchyard": {"confg": "support"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "switchyard.confg");
    // Without a configuration the field is still removed and the request goes through.
    let r = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "switchyard": {}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ok_id = request_id(&r);

    // Feedback for unknown requests: malformed at once, well-formed after a short wait.
    let r = feedback(&env, "nope", json!(true)).await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No request with id 'nope'")
    );
    let r = feedback(&env, "0123456789abcdef0123456789abcdef", json!(true)).await;
    assert_eq!(r.status, 404);
    let r = env
        .post(
            "/v1/feedback",
            &json!({"session_id": "never-seen", "metric": "m", "value": 1}),
        )
        .await;
    assert_eq!(r.status, 404);
    // Bad values and shapes.
    for (body, param) in [
        (
            json!({"request_id": ok_id, "metric": "m", "value": {"x": 1}}),
            "value",
        ),
        (
            json!({"request_id": ok_id, "metric": "bad metric", "value": 1}),
            "metric",
        ),
        (json!({"metric": "m", "value": 1}), "request_id"),
        (
            json!({"request_id": ok_id, "metric": "m", "value": 1, "extra": 1}),
            "extra",
        ),
    ] {
        let r = env.post("/v1/feedback", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.json()["error"]["param"], param, "{}", r.text);
    }
    // A virtual key may score only its own requests.
    let key = env
        .post("/admin/keys", &json!({"name": "app"}))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = env
        .post_key(
            "/v1/feedback",
            &json!({"request_id": ok_id, "metric": "m", "value": true}),
            &key,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = env
        .post_key(
            "/v1/chat/completions",
            &json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}),
            &key,
        )
        .await;
    let own = request_id(&r);
    let r = env
        .post_key(
            "/v1/feedback",
            &json!({"request_id": own, "metric": "m", "value": "good", "comment": "fine"}),
            &key,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["value"], "good");
    // A virtual key without the admin role cannot change experiments.
    let r = env
        .post_key(
            "/admin/configs",
            &json!({"name": "x", "target": "cheap"}),
            &key,
        )
        .await;
    assert_eq!(r.status, 403);
    // Listed newest first, whatever their ids.
    for id in ["zz-older", "aa-newer"] {
        let r = env
            .post(
                "/admin/experiments",
                &json!({"id": id, "config": "support", "variants": [
                    {"name": "a", "version": 1, "share": 50}, {"name": "b", "version": 2, "share": 50}]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = env
            .post(&format!("/admin/experiments/{id}/stop"), &json!({}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let listed = env.get("/admin/experiments").await.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["aa-newer", "zz-older"], "{listed}");
}

#[tokio::test]
async fn a_missing_unit_falls_back_to_the_request_and_says_so() {
    let env = env_with(MODELS).await;
    setup_configs(&env).await;
    let r = env
        .post(
            "/admin/experiments",
            &json!({
                "id": "by-session", "config": "support", "unit": "session",
                "variants": [{"name": "a", "version": 1, "share": 50}, {"name": "b", "version": 2, "share": 50}],
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = ask(&env, None).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "x-switchyard-variant").is_some());
    let record = record(&env, &request_id(&r)).await;
    assert_eq!(record["assignment"], "request (no session)");
    assert_eq!(record["experiment_id"], "by-session");

    // With the header, the session decides, and session feedback lands.
    let body = json!({
        "model": "support", "messages": [{"role": "user", "content": "hi"}],
        "switchyard": {"config": "support", "variables": {"product": "P", "question": "Q"}},
    });
    let auth = format!("Bearer {KEY}");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = env
            .post_with(
                "/v1/chat/completions",
                &body,
                &[("authorization", &auth), ("x-switchyard-session-id", "s-1")],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.push(header(&r, "x-switchyard-variant").unwrap());
    }
    assert!(seen.iter().all(|v| v == &seen[0]), "{seen:?}");
    // At once: the gateway waits for the session's records to be written, as it does for a
    // request's.
    let r = env
        .post(
            "/v1/feedback",
            &json!({"session_id": "s-1", "metric": "rating", "value": 4.5}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Scored by two more sources: still one session, one sample, the latest value.
    for (source, value) in [("email", 1.0), ("widget", 4.5)] {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let r = env
            .post(
                "/v1/feedback",
                &json!({"session_id": "s-1", "metric": "rating", "value": value, "source": source}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let res = env
        .get("/admin/experiments/by-session/results")
        .await
        .json();
    let rating = res["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "rating")
        .unwrap();
    assert_eq!(rating["kind"], "numeric");
    let scored: Vec<&Value> = rating["variants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["n"] == 1)
        .collect();
    assert_eq!(scored.len(), 1);
    assert_eq!(scored[0]["name"], seen[0].as_str());
    assert_eq!(scored[0]["mean"], 4.5);
}

/// The Responses API selects and renders a configuration as Chat Completions does: from the
/// `switchyard` body field, its template's messages ahead of the request's input, its target
/// serving.
#[tokio::test]
async fn a_responses_request_selects_a_configuration() {
    let env = env_with(MODELS).await;
    setup_configs(&env).await;
    let body = json!({
        "model": "support",
        "input": "Where is my parcel?",
        "switchyard": {"config": "support@2", "variables": {"product": "Gizmo", "question": "late delivery"}},
    });
    let r = env.post("/v1/responses", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        header(&r, "x-switchyard-config").as_deref(),
        Some("support@2")
    );
    let rec = record(&env, &request_id(&r)).await;
    assert_eq!(rec["deployment"], "p-anthropic/dear-model", "{rec}");
    assert_eq!(rec["ingress"], "openai-responses", "{rec}");
    let prompt = rec["prompt"].to_string();
    assert!(
        prompt.contains("Answer briefly about Gizmo") && prompt.contains("late delivery"),
        "{prompt}"
    );
}

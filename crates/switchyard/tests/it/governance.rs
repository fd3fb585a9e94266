//! Virtual keys and budgets through the real binary: budgets admit exactly what they can pay for
//! under concurrency, never more and never less; limits, allow-lists, roles and the audit log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Env, Gateway, KEY, chat, env_with, env_with_sections, standard_config};

const BUDGETED: &str = r#"
  - alias: budgeted
    deployments:
      - {provider: p-openai, model: budget-model, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
  - alias: budgeted-b
    deployments:
      - {provider: p-openai, model: budget-model-b, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"#;

async fn admin(env: &Env, path: &str, body: Value) -> Value {
    let r = env.post(path, &body).await;
    assert!(
        r.status == 201 || r.status == 200,
        "{path}: {} {}",
        r.status,
        r.text
    );
    r.json()
}

async fn new_key(env: &Env, body: Value) -> (String, String) {
    let k = admin(env, "/admin/keys", body).await;
    (
        k["id"].as_str().unwrap().to_owned(),
        k["key"].as_str().unwrap().to_owned(),
    )
}

/// Cost of one request to `alias`, read from its record.
async fn cost_of_one(env: &Env, alias: &str, stream: bool) -> i64 {
    let (_, probe) = new_key(env, json!({"name": "probe"})).await;
    let mut body = chat(alias, "How much does this cost?");
    if stream {
        body["stream"] = json!(true);
    }
    let r = env.post_key("/v1/chat/completions", &body, &probe).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    for _ in 0..100 {
        let rec = env.get(&format!("/admin/requests/{id}")).await;
        if rec.status == 200 {
            return rec.json()["cost_nanos"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no record for the probe");
}

async fn fire(env: &Env, alias: &str, keys: &[String], n: usize, stream: bool) -> (usize, usize) {
    let sends = (0..n).map(|i| {
        let key = keys[i % keys.len()].clone();
        async move {
            let mut body = chat(alias, "How much does this cost?");
            if stream {
                body["stream"] = json!(true);
            }
            let r = env.post_key("/v1/chat/completions", &body, &key).await;
            match r.status {
                200 => {
                    if stream {
                        assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
                    }
                    (1, 0)
                }
                429 => {
                    let b = r.json();
                    assert_eq!(b["error"]["code"], "budget_exceeded", "{b}");
                    assert_eq!(b["error"]["type"], "insufficient_quota");
                    (0, 1)
                }
                other => panic!("unexpected {other}: {}", r.text),
            }
        }
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

async fn key_spent(env: &Env, id: &str) -> i64 {
    env.get(&format!("/admin/keys/{id}")).await.json()["budget"]["spent_nanos"]
        .as_i64()
        .unwrap()
}

/// Ten requests of cost `c` on a budget of `10 * c`: never more than the budget, and the last
/// one paid for. It may be sent with a lower output cap (so cost a little less than `c`)
/// because prompt estimates count message framing and lean above the provider's count.
fn assert_spent_all_of(spent: i64, c: i64) {
    assert!(
        spent <= 10 * c && spent > 9 * c,
        "spent {spent} of a budget of {}",
        10 * c
    );
}

#[tokio::test]
async fn budgets_admit_exactly_what_they_can_pay_for() {
    let env = env_with(BUDGETED).await;
    let c = cost_of_one(&env, "budgeted", false).await;
    assert!(c > 0);
    let budget_usd = (10 * c) as f64 / 1e9;
    let before = env.sim_stats().await["by_model"]["budget-model"]
        .as_u64()
        .unwrap_or(0);

    // 100 concurrent requests without max_tokens on a key whose budget covers exactly 10.
    let (id, key) = new_key(&env, json!({"name": "ten", "max_budget_usd": budget_usd})).await;
    let (ok, refused) = fire(&env, "budgeted", std::slice::from_ref(&key), 100, false).await;
    assert_eq!((ok, refused), (10, 90));
    let spent = key_spent(&env, &id).await;
    assert_spent_all_of(spent, c);
    let reached = env.sim_stats().await["by_model"]["budget-model"]
        .as_u64()
        .unwrap()
        - before;
    assert_eq!(reached, 10, "only paid-for requests reached the provider");
    // The ledger equals the records.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spend = env.get("/admin/spend?by=key").await.json();
    let row = spend["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["cost_nanos"].as_i64().unwrap(), spent);

    // One at a time: the first ten pass, the rest are refused.
    let (_, key) = new_key(
        &env,
        json!({"name": "sequential", "max_budget_usd": budget_usd}),
    )
    .await;
    let mut results = Vec::new();
    for _ in 0..20 {
        let r = env
            .post_key(
                "/v1/chat/completions",
                &chat("budgeted", "How much does this cost?"),
                &key,
            )
            .await;
        results.push(r.status);
    }
    assert_eq!(results, [vec![200; 10], vec![429; 10]].concat());

    // Streams settle the same way.
    let cs = cost_of_one(&env, "budgeted-b", true).await;
    let (id, key) = new_key(
        &env,
        json!({"name": "streams", "max_budget_usd": (10 * cs) as f64 / 1e9}),
    )
    .await;
    let (ok, refused) = fire(&env, "budgeted-b", std::slice::from_ref(&key), 100, true).await;
    assert_eq!((ok, refused), (10, 90));
    assert_spent_all_of(key_spent(&env, &id).await, cs);

    // A team budget shared by two keys.
    let team = admin(
        &env,
        "/admin/teams",
        json!({"name": "research", "max_budget_usd": budget_usd}),
    )
    .await;
    let team_id = team["id"].as_str().unwrap();
    let (_, a) = new_key(&env, json!({"name": "a", "team_id": team_id})).await;
    let (_, b) = new_key(&env, json!({"name": "b", "team_id": team_id})).await;
    let (ok, refused) = fire(&env, "budgeted", &[a, b], 60, false).await;
    assert_eq!((ok, refused), (10, 50));
    let team = env.get(&format!("/admin/teams/{team_id}")).await.json();
    let team_spent = team["budget"]["spent_nanos"].as_i64().unwrap();
    assert_spent_all_of(team_spent, c);
    assert_eq!(team["budget"]["reserved_nanos"].as_i64().unwrap(), 0);
    // Spend by team from the records equals the team's ledger.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by_team = env.get("/admin/spend?by=team").await.json();
    let row = by_team["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == team_id)
        .unwrap()
        .clone();
    assert_eq!(row["cost_nanos"].as_i64().unwrap(), team_spent);
}

/// A stream sent with the cap its budget could pay for, then cut by the provider before any
/// usage came: its output is estimated from what reached the client, and never above the cap
/// it was sent with, so the budget is not overspent.
#[tokio::test]
async fn a_cut_stream_under_a_capped_budget_costs_no_more_than_its_budget() {
    let env = env_with(BUDGETED).await;
    let c = cost_of_one(&env, "budgeted", false).await;
    let budget = c / 2;
    let (id, key) = new_key(
        &env,
        json!({"name": "half", "max_budget_usd": budget as f64 / 1e9}),
    )
    .await;
    env.fault("budget-model", "cut_after=6", Some(1)).await;
    let mut body = chat("budgeted", "How much does this cost?");
    body["stream"] = json!(true);
    let r = env.post_key("/v1/chat/completions", &body, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.sse_data().iter().any(|d| d == "[DONE]"));
    let spent = key_spent(&env, &id).await;
    assert!(
        spent > 0 && spent <= budget,
        "spent {spent} of a budget of {budget}"
    );
}

/// Without request records the gateway keeps no record of a request, yet budgets are charged
/// and enforced the same: a request's cost settles its key's reservation either way.
#[tokio::test]
async fn budgets_are_charged_with_records_switched_off() {
    let env = env_with_sections(BUDGETED, "", "telemetry:\n  records: false\n").await;
    let (id, key) = new_key(&env, json!({"name": "unrecorded", "max_budget_usd": 100.0})).await;
    let body = chat("budgeted", "How much does this cost?");
    let r = env.post_key("/v1/chat/completions", &body, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let one = key_spent(&env, &id).await;
    assert!(one > 0, "the request was charged");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = env.post_key("/v1/chat/completions", &streamed, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    let streamed_cost = key_spent(&env, &id).await - one;
    assert!(streamed_cost > 0, "the stream was charged");
    let r = env.post_key("/v1/chat/completions", &body, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The same question gets the same answer from the simulator, so the same cost each time.
    assert_eq!(key_spent(&env, &id).await, 2 * one + streamed_cost);
    let records = env.get("/admin/requests").await.json();
    assert_eq!(
        records["data"].as_array().map(Vec::len),
        Some(0),
        "{records}"
    );

    // A budget of two such requests admits two and refuses the third.
    let (id, key) = new_key(
        &env,
        json!({"name": "two", "max_budget_usd": (2 * one) as f64 / 1e9}),
    )
    .await;
    let (ok, refused) = fire(&env, "budgeted", &[key], 3, false).await;
    assert_eq!((ok, refused), (2, 1));
    let spent = key_spent(&env, &id).await;
    assert!(
        spent > one && spent <= 2 * one,
        "spent {spent} of {}",
        2 * one
    );
}

#[tokio::test]
async fn keys_limits_roles_and_audit() {
    let env = env_with("").await;
    let (id, key) = new_key(
        &env,
        json!({"name": "app", "models": ["openai", "gem*"], "rpm": 5}),
    )
    .await;
    assert!(key.starts_with("sk-sy-"));

    // Allow-list.
    let r = env
        .post_key("/v1/chat/completions", &chat("anthropic", "x"), &key)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_allowed");
    let models = env.get_key("/v1/models", &key).await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["openai", "gemini"]);

    // RPM under concurrency: exactly five pass.
    let body = chat("openai", "x");
    let sends = (0..12).map(|_| env.post_key("/v1/chat/completions", &body, &key));
    let replies = futures::future::join_all(sends).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5);
    let limited = replies.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(limited.json()["error"]["code"], "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.headers["x-ratelimit-limit-requests"], "5");
    assert_eq!(limited.headers["x-ratelimit-remaining-requests"], "0");

    let r = env
        .post_with(&format!("/admin/keys/{id}"), &json!({}), &[])
        .await;
    assert_eq!(r.status, 405, "PATCH, not POST");
    let patched = env
        .http
        .patch(format!("{}/admin/keys/{id}", env.gw.url))
        .bearer_auth(KEY)
        .json(&json!({"rpm": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    // Blocked, rotated, deleted, expired and invalid keys all get the same 401.
    let r = env
        .post(&format!("/admin/keys/{id}/block"), &json!({}))
        .await;
    assert_eq!(r.status, 200);
    let blocked = env
        .post_key("/v1/chat/completions", &chat("openai", "x"), &key)
        .await;
    let invalid = env
        .post_key(
            "/v1/chat/completions",
            &chat("openai", "x"),
            "sk-sy-nonexistent",
        )
        .await;
    assert_eq!(blocked.status, 401);
    assert_eq!(
        blocked.json()["error"],
        invalid.json()["error"],
        "no hint whether a key exists"
    );
    env.post(&format!("/admin/keys/{id}/unblock"), &json!({}))
        .await;
    let rotated = admin(
        &env,
        &format!("/admin/keys/{id}/rotate"),
        json!({"grace_secs": 60}),
    )
    .await;
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("gemini", "x"), &key)
            .await
            .status,
        200,
        "old secret works during the grace period"
    );
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("gemini", "x"), &new_secret)
            .await
            .status,
        200
    );
    // Rotated again (a retried call, say): the first secret keeps its grace period too.
    let again = admin(
        &env,
        &format!("/admin/keys/{id}/rotate"),
        json!({"grace_secs": 60}),
    )
    .await;
    let newest = again["key"].as_str().unwrap().to_owned();
    let works = |secret: String| {
        let env = &env;
        async move {
            env.post_key("/v1/chat/completions", &chat("gemini", "x"), &secret)
                .await
                .status
        }
    };
    for secret in [&key, &new_secret, &newest] {
        assert_eq!(
            works(secret.clone()).await,
            200,
            "every secret in its grace period"
        );
    }
    // Rotated without grace (a leak): every old secret ends at once.
    let last = admin(&env, &format!("/admin/keys/{id}/rotate"), json!({})).await;
    for secret in [&key, &new_secret, &newest] {
        assert_eq!(works(secret.clone()).await, 401);
    }
    assert_eq!(works(last["key"].as_str().unwrap().to_owned()).await, 200);
    let key = last["key"].as_str().unwrap().to_owned();
    let (_, expired) = new_key(&env, json!({"name": "short", "expires_in_secs": -1})).await;
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("openai", "x"), &expired)
            .await
            .status,
        401
    );

    // Roles.
    let team = admin(&env, "/admin/teams", json!({"name": "alpha"})).await;
    let other = admin(&env, "/admin/teams", json!({"name": "beta"})).await;
    let (_, viewer) = new_key(&env, json!({"name": "viewer", "role": "viewer"})).await;
    let (_, team_admin) = new_key(
        &env,
        json!({"name": "ta", "role": "team_admin", "team_id": team["id"]}),
    )
    .await;
    assert_eq!(env.get_key("/admin/keys", &viewer).await.status, 200);
    let r = env
        .post_key("/admin/keys", &json!({"name": "x"}), &viewer)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "permission_denied");
    assert_eq!(
        env.post_key(
            "/admin/keys",
            &json!({"name": "x", "team_id": other["id"]}),
            &team_admin
        )
        .await
        .status,
        403
    );
    assert_eq!(
        env.post_key(
            "/admin/keys",
            &json!({"name": "x", "team_id": team["id"]}),
            &team_admin
        )
        .await
        .status,
        201
    );
    assert_eq!(
        env.post_key("/admin/teams", &json!({"name": "gamma"}), &team_admin)
            .await
            .status,
        403
    );
    // A team admin changes no key above its role, not even in its team, and does not lift
    // the limits set on its own key; a key it creates gets no more than its own.
    let (admin_id, _) = new_key(
        &env,
        json!({"name": "team-lead", "role": "admin", "team_id": team["id"]}),
    )
    .await;
    for (path, body) in [
        (
            format!("/admin/keys/{admin_id}/rotate"),
            json!({"grace_secs": 0}),
        ),
        (format!("/admin/keys/{admin_id}/block"), json!({})),
    ] {
        let r = env.post_key(&path, &body, &team_admin).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
    }
    let (limited_id, limited) = new_key(
        &env,
        json!({"name": "capped-ta", "role": "team_admin", "team_id": team["id"], "rpm": 5, "max_budget_usd": 1}),
    )
    .await;
    let lifted = env
        .http
        .patch(format!("{}/admin/keys/{limited_id}", env.gw.url))
        .bearer_auth(&limited)
        .json(&json!({"rpm": 0, "max_budget_usd": 1000000}))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 403);
    let r = env
        .post_key(
            "/admin/keys",
            &json!({"name": "child", "team_id": team["id"], "max_budget_usd": 5}),
            &limited,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = env
        .post_key(
            "/admin/keys",
            &json!({"name": "child", "team_id": team["id"]}),
            &limited,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["limits"]["rpm"], 5, "{}", r.text);
    // An admin lifts them with null.
    let cleared = patch(
        &env,
        &format!("/admin/keys/{limited_id}"),
        json!({"max_budget_usd": null}),
    )
    .await;
    assert!(
        cleared["limits"].get("max_budget_nanos").is_none(),
        "{cleared}"
    );
    assert_eq!(cleared["limits"]["rpm"], 5, "{cleared}");
    for id in ["  ", "a/b", "t\u{0}x"] {
        let r = env.post("/admin/teams", &json!({"id": id})).await;
        assert_eq!(r.status, 400, "{id:?}: {}", r.text);
    }
    // A team admin reads its team's request records only (they hold prompts and answers).
    let (outsider_id, outsider) =
        new_key(&env, json!({"name": "outsider", "team_id": other["id"]})).await;
    let theirs = env
        .post_key(
            "/v1/chat/completions",
            &chat("openai", "private"),
            &outsider,
        )
        .await;
    let theirs = theirs.headers["x-request-id"].to_str().unwrap().to_owned();
    crate::harness::record(&env, &theirs).await;
    let listed = env
        .get_key("/admin/requests?limit=1000", &team_admin)
        .await
        .json();
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["caller"]["team"] == team["id"]),
        "{listed}"
    );
    assert_eq!(
        env.get_key(&format!("/admin/requests/{theirs}"), &team_admin)
            .await
            .status,
        404
    );
    // The outsider's key goes, so its team may be deleted below.
    let gone = env
        .http
        .delete(format!("{}/admin/keys/{outsider_id}", env.gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    // A team with keys is not deleted from under them (they would lose its limits).
    let deleted = env
        .http
        .delete(format!(
            "{}/admin/teams/{}",
            env.gw.url,
            team["id"].as_str().unwrap()
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 409);
    let empty = env
        .http
        .delete(format!(
            "{}/admin/teams/{}",
            env.gw.url,
            other["id"].as_str().unwrap()
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 200);
    // A viewer reads a key as it reads the list.
    assert_eq!(
        env.get_key(&format!("/admin/keys/{admin_id}"), &viewer)
            .await
            .status,
        200
    );
    assert_eq!(
        env.get_key("/admin/keys", &key).await.status,
        403,
        "a plain key cannot read the admin API"
    );

    // Malformed admin bodies name the field.
    let r = env
        .post("/admin/keys", &json!({"name": "x", "rpm": "fast"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "rpm");

    // The audit log has who and what, never a secret.
    let audit = env.get("/admin/audit?limit=100").await;
    assert_eq!(audit.status, 200);
    assert!(
        !audit.text.contains(&key)
            && !audit.text.contains(&new_secret)
            && !audit.text.contains(KEY)
    );
    let entries = audit.json()["data"].as_array().unwrap().clone();
    // Paged: every page's entries older than the last's, none twice.
    let first = env.get("/admin/audit?limit=2").await.json();
    let cursor = first["next_cursor"].as_i64().unwrap();
    let second = env
        .get(&format!("/admin/audit?limit=2&cursor={cursor}"))
        .await
        .json();
    let seqs = |page: &Value| -> Vec<i64> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    };
    let (a, b) = (seqs(&first), seqs(&second));
    assert_eq!(a.len(), 2);
    assert!(
        b.iter().all(|s| *s < cursor) && !b.is_empty(),
        "{a:?} {b:?}"
    );
    assert_eq!(env.get("/admin/audit?limit=1001").await.status, 400);
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "rotate" && e["entity_id"] == id.as_str())
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "create" && e["actor"].as_str().unwrap().contains("ta"))
    );
}

#[tokio::test]
async fn a_restart_keeps_keys_and_spend() {
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig::default()).await;
    let config = standard_config(&sim.base_url(), BUDGETED);
    let gw = Gateway::start(&config).await;
    let env = Env {
        sim,
        gw,
        http: reqwest::Client::new(),
    };
    let (id, key) = new_key(&env, json!({"name": "durable", "max_budget_usd": 1.0})).await;
    admin(
        &env,
        "/admin/customers",
        json!({"id": "cust-r", "max_budget_usd": 1.0}),
    )
    .await;
    let mut for_customer = chat("budgeted", "x");
    for_customer["user"] = json!("cust-r");
    for _ in 0..3 {
        assert_eq!(
            env.post_key("/v1/chat/completions", &for_customer, &key)
                .await
                .status,
            200
        );
    }
    // The master key is metered by no budget, the customer's it names included.
    assert_eq!(
        env.post("/v1/chat/completions", &for_customer).await.status,
        200
    );
    let spent = key_spent(&env, &id).await;
    assert!(spent > 0);
    assert_eq!(customer_spent(&env).await, spent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Env { sim, gw, http } = env;
    let dir = gw.stop();
    let gw = Gateway::start_in(&config, dir).await;
    let env = Env { sim, gw, http };
    assert_eq!(
        key_spent(&env, &id).await,
        spent,
        "spend survives a restart"
    );
    assert_eq!(
        customer_spent(&env).await,
        spent,
        "the same after a restart"
    );
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("budgeted", "x"), &key)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn keys_cli_creates_lists_and_blocks() {
    let env = env_with("").await;
    let url = env.gw.url.clone();
    let run = move |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                    .args(&args)
                    .args(["--url", &url, "--key", KEY])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = run(vec![
        "keys".into(),
        "create".into(),
        "--name".into(),
        "cli-key".into(),
        "--budget".into(),
        "2.5".into(),
        "--rpm".into(),
        "60".into(),
        "--model".into(),
        "openai".into(),
        "--region".into(),
        "eu".into(),
        "--region".into(),
        "us".into(),
        "--max-risk-level".into(),
        "medium".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_owned();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_owned();
    let limits = env.get(&format!("/admin/keys/{id}")).await.json()["limits"].clone();
    assert_eq!(limits["allowed_regions"], json!(["eu", "us"]));
    assert_eq!(limits["max_risk_level"], "medium");
    // The standard aliases state no region, so this key can reach none of them.
    let r = env
        .post_key("/v1/chat/completions", &chat("openai", "x"), &secret)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_allowed");
    let list = run(vec!["keys".into(), "list".into()]).await;
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listing.contains("cli-key") && listing.contains("2.50"),
        "{listing}"
    );
    assert!(!listing.contains(&secret), "the secret is never listed");
    let block = run(vec!["keys".into(), "block".into(), id]).await;
    assert!(block.status.success());
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("openai", "x"), &secret)
            .await
            .status,
        401,
        "blocked"
    );
}

/// Waits until a burst cannot straddle a minute boundary, where per-minute windows roll over.
async fn away_from_minute_boundary() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() % 60_000;
    if into > 50_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into + 500) as u64)).await;
    }
}

#[tokio::test]
async fn tpm_under_concurrency_and_refusal_headers() {
    let env = env_with("").await;
    let text = "Tokens per minute are reserved before the call.";
    // The gateway estimates embeddings of `text-embedding-3-small` with cl100k.
    let k = switchyard::tokens::count_text(switchyard::tokens::Encoding::Cl100k, text);
    assert!(k > 5);
    let (_, key) = new_key(&env, json!({"name": "tpm", "tpm": 10 * k})).await;
    away_from_minute_boundary().await;
    let body = json!({"model": "embed", "input": text});
    let sends = (0..30).map(|_| env.post_key("/v1/embeddings", &body, &key));
    let replies = futures::future::join_all(sends).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 10, "exactly the tokens per minute pass");
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 20);
    let r = limited[0];
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let limit = (10 * k).to_string();
    assert_eq!(r.headers["x-ratelimit-limit-tokens"], limit.as_str());
    assert_eq!(r.headers["x-ratelimit-remaining-tokens"], "0");
    // When the sliding window lets the request in: this minute's count slides out over the
    // next minute, so at most two minutes away.
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=120).contains(&retry), "{retry}");
    assert!(r.headers.contains_key("x-ratelimit-reset-tokens"));

    // A budget that is spent says when its period starts over.
    let (_, spent) = new_key(
        &env,
        json!({"name": "broke", "max_budget_usd": 0, "budget_period": "daily"}),
    )
    .await;
    let r = env.post_key("/v1/embeddings", &body, &spent).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Refused before any provider was called, it is counted under the alias it asked for.
    let id = r.headers["x-request-id"].to_str().unwrap();
    let rec = crate::harness::record(&env, id).await;
    assert_eq!(rec["alias"], body["model"], "{rec}");
}

const REGIONAL: &str = r#"
  - alias: regional
    deployments:
      - {provider: p-openai, model: reg-us, region: us, risk_level: low, data_classification: internal}
      - {provider: p-openai, model: reg-eu, region: eu, risk_level: high, data_classification: confidential, attributes: {owner: platform}}
  - alias: us-only
    deployments:
      - {provider: p-openai, model: usonly-model, region: us, risk_level: low, data_classification: public}
"#;

async fn patch(env: &Env, path: &str, body: Value) -> Value {
    let r = env
        .http
        .patch(format!("{}{path}", env.gw.url))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn deployment_attributes_restrict_routing_at_every_level() {
    let env = env_with(REGIONAL).await;
    let (_, eu) = new_key(&env, json!({"name": "eu", "allowed_regions": ["eu"]})).await;

    // Only the EU deployment is ever used, and the decision says why the other was skipped.
    for _ in 0..4 {
        let r = env
            .post_key("/v1/chat/completions", &chat("regional", "hi"), &eu)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let route = r.headers["x-switchyard-route"].to_str().unwrap().to_owned();
        assert!(route.contains("deployment=p-openai/reg-eu"), "{route}");
    }
    let r = env
        .post_key("/v1/chat/completions", &chat("regional", "why"), &eu)
        .await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let record = crate::observability::eventually("the record", || {
        let path = format!("/admin/requests/{id}");
        let env = &env;
        async move {
            let r = env.get(&path).await;
            (r.status == 200).then(|| r.json())
        }
    })
    .await;
    let skipped = &record["decision"]["skipped"];
    assert_eq!(skipped[0]["deployment"], "p-openai/reg-us", "{record}");
    assert_eq!(
        skipped[0]["reason"],
        "region us is not allowed (allowed: eu)"
    );

    // No deployment left: 403 saying why.
    let r = env
        .post_key("/v1/chat/completions", &chat("us-only", "hi"), &eu)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let e = r.json();
    assert_eq!(e["error"]["code"], "model_not_allowed");
    assert_eq!(
        e["error"]["message"],
        "No deployment of 'us-only' is in an allowed region (allowed: eu; available: us)."
    );
    // The model list shows only what this key can reach (other aliases state no region).
    let models = env.get_key("/v1/models", &eu).await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["regional"]);

    // Team and key restrictions add up: the EU deployment is too risky for the team.
    let team = admin(
        &env,
        "/admin/teams",
        json!({"name": "cautious", "max_risk_level": "medium"}),
    )
    .await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let (_, member) = new_key(
        &env,
        json!({"name": "member", "team_id": team_id, "allowed_regions": ["eu"]}),
    )
    .await;
    let r = env
        .post_key("/v1/chat/completions", &chat("regional", "hi"), &member)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("p-openai/reg-us: region us is not allowed (allowed: eu)")
            && message.contains("p-openai/reg-eu: risk level high is above the maximum medium"),
        "{message}"
    );
    // Lifting the team's limit (null) lets the request through.
    let team = patch(
        &env,
        &format!("/admin/teams/{team_id}"),
        json!({"max_risk_level": null}),
    )
    .await;
    assert!(team["limits"].get("max_risk_level").is_none(), "{team}");
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("regional", "hi"), &member)
            .await
            .status,
        200
    );

    // Data classification.
    let (_, public) = new_key(
        &env,
        json!({"name": "public", "allowed_data_classifications": ["public"]}),
    )
    .await;
    assert_eq!(
        env.post_key("/v1/chat/completions", &chat("us-only", "hi"), &public)
            .await
            .status,
        200
    );
    let r = env
        .post_key("/v1/chat/completions", &chat("regional", "hi"), &public)
        .await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains(
        "has an allowed data classification (allowed: public; available: confidential, internal)"
    ));
    // Bad values name the field.
    let r = env
        .post(
            "/admin/keys",
            &json!({"name": "x", "max_risk_level": "extreme"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "max_risk_level");
    // The master key is not restricted; attributes show in the deployments view.
    assert_eq!(
        env.post("/v1/chat/completions", &chat("us-only", "hi"))
            .await
            .status,
        200
    );
    let deployments = env.get("/admin/deployments").await.json();
    let eu_dep = deployments["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "p-openai/reg-eu")
        .unwrap()
        .clone();
    assert_eq!(
        eu_dep["attributes"],
        json!({"region": "eu", "risk_level": "high", "data_classification": "confidential", "extra": {"owner": "platform"}})
    );
}

#[tokio::test]
async fn a_soft_budget_fires_the_budget_alert_once() {
    let (hook, inbox) = crate::observability::webhook_receiver().await;
    let sim = crate::harness::start_sim(switchyard_sim::SimConfig::default()).await;
    let config = format!(
        "{}\nalerts:\n  interval: 100ms\n  webhooks:\n    - {{url: 'http://{hook}/hook/json'}}\n  rules:\n    - {{kind: budget_utilisation}}\n",
        standard_config(&sim.base_url(), BUDGETED)
    );
    let gw = Gateway::start(&config).await;
    let env = Env {
        sim,
        gw,
        http: reqwest::Client::new(),
    };
    let c = cost_of_one(&env, "budgeted", false).await;
    let budget_usd = (10 * c) as f64 / 1e9;
    let (soft_id, soft) = new_key(
        &env,
        json!({"name": "soft", "max_budget_usd": budget_usd, "soft_budget": 0.35}),
    )
    .await;
    let (plain_id, plain) =
        new_key(&env, json!({"name": "plain", "max_budget_usd": budget_usd})).await;
    let ask = |key: String| {
        let env = &env;
        async move {
            let r = env
                .post_key(
                    "/v1/chat/completions",
                    &chat("budgeted", "How much does this cost?"),
                    &key,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    for _ in 0..4 {
        ask(soft.clone()).await;
        ask(plain.clone()).await;
    }
    let firing = |inbox: &crate::observability::Inbox, subject: &str| {
        inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| n["status"] == "firing" && n["subject"] == subject)
            .map(|(_, n)| n.clone())
            .collect::<Vec<Value>>()
    };
    let note = crate::observability::eventually("the soft-budget alert", || {
        let found = firing(&inbox, &soft_id);
        async move { found.first().cloned() }
    })
    .await;
    assert_eq!(note["kind"], "budget_utilisation");
    assert_eq!(note["scope"], "key");
    assert_eq!(note["threshold"], 0.35);
    assert!(
        (note["value"].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{note}"
    );
    // More spend in the same period: no second notification; the other key (40 %, under the
    // rule's 80 %) none at all.
    ask(soft.clone()).await;
    ask(soft.clone()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(firing(&inbox, &soft_id).len(), 1);
    assert!(firing(&inbox, &plain_id).is_empty());
    let active = env.get("/admin/alerts").await.json();
    assert!(
        active["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["subject"] == soft_id.as_str() && a["threshold"] == 0.35),
        "{active}"
    );
}

/// What a reservation covers is what the answer can cost: an answer without the caller's cap is
/// sent with the one reserved (with room for a reasoning effort's thinking), and a prompt that
/// may be written to a prompt cache is reserved at the write rate, not the input rate.
#[tokio::test]
async fn a_reservation_covers_everything_the_answer_can_cost() {
    const PRICED: &str = r#"
  - alias: priced
    deployments:
      - provider: p-openai
        model: priced-model
        price: {input_per_mtok: 1, output_per_mtok: 10, cache_write_per_mtok: 1.25, cache_write_1h_per_mtok: 10}
"#;
    // The simulator's replies run to 12 words (tokens); the default cap is lower.
    let env = env_with_sections(PRICED, "", "governance:\n  default_max_tokens: 5\n").await;

    // Without max_tokens, a budgeted key's request goes out with the reserved cap, so its
    // answer stops there; an unbudgeted caller's does not.
    let (id, key) = new_key(&env, json!({"name": "capped", "max_budget_usd": 1.0})).await;
    let r = env
        .post_key(
            "/v1/chat/completions",
            &chat("priced", "Tell me everything."),
            &key,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["usage"]["completion_tokens"], 5, "{b}");
    assert_eq!(b["choices"][0]["finish_reason"], "length", "{b}");
    assert!(key_spent(&env, &id).await > 0);
    let r = env
        .post(
            "/v1/chat/completions",
            &chat("priced", "Tell me everything."),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["usage"]["completion_tokens"], 12, "{}", r.text);
    // A reasoning effort gets room for its thinking on top of the default cap (1,024 tokens for
    // `low`), reserved like the rest.
    let mut thinking = chat("priced", "Tell me everything.");
    thinking["reasoning_effort"] = json!("low");
    let r = env.post_key("/v1/chat/completions", &thinking, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["usage"]["completion_tokens"], 12, "{}", r.text);

    // Cache writes: a long prompt fits at the input rate (and at the five-minute write rate,
    // 1.25 times it) but not at the hour-long write rate (ten times it).
    let long = "word ".repeat(4_000);
    let cached = |ttl: Option<&str>| {
        let mut marker = json!({"type": "ephemeral"});
        if let Some(ttl) = ttl {
            marker["ttl"] = json!(ttl);
        }
        json!({
            "model": "priced",
            "max_tokens": 1,
            "system": [{"type": "text", "text": long, "cache_control": marker}],
            "messages": [{"role": "user", "content": "Summarise."}],
        })
    };
    let plain = json!({
        "model": "priced",
        "max_tokens": 1,
        "system": long,
        "messages": [{"role": "user", "content": "Summarise."}],
    });
    // About 4,000 tokens: 4 million nano-dollars at the input rate, 40 million as an hour-long
    // write.
    let (_, key) = new_key(&env, json!({"name": "cache", "max_budget_usd": 0.03})).await;
    let messages = |body: &Value| {
        let key = key.clone();
        let body = body.clone();
        let env = &env;
        async move {
            env.post_with(
                "/v1/messages",
                &body,
                &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
            )
            .await
        }
    };
    let r = messages(&cached(Some("1h"))).await;
    assert_eq!(r.status, 429, "an hour-long write does not fit: {}", r.text);
    assert!(r.text.contains("budget"), "{}", r.text);
    for body in [plain, cached(None), cached(Some("5m"))] {
        let r = messages(&body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

/// Several answers (`n`) are each billed their output: the reservation counts every one, and an
/// output cap the budget sets holds each answer to its share, so concurrent requests for three
/// answers never spend more than the budget, down to its last request.
#[tokio::test]
async fn several_answers_are_reserved_each() {
    let env = env_with(BUDGETED).await;
    let three = || {
        let mut body = chat("budgeted", "How much does this cost?");
        body["n"] = json!(3);
        body
    };
    let (_, probe) = new_key(&env, json!({"name": "probe"})).await;
    let r = env.post_key("/v1/chat/completions", &three(), &probe).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["choices"].as_array().unwrap().len(), 3);
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let mut c3 = 0;
    for _ in 0..100 {
        let rec = env.get(&format!("/admin/requests/{id}")).await;
        if rec.status == 200 {
            c3 = rec.json()["cost_nanos"].as_i64().unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c3 > 0, "no record for the probe");
    // Two and a half such requests: the third, if it runs, must fit what is left.
    let budget = 2 * c3 + c3 / 2;
    let (id, key) = new_key(
        &env,
        json!({"name": "thrice", "max_budget_usd": budget as f64 / 1e9}),
    )
    .await;
    let sends = (0..40).map(|_| {
        let key = key.clone();
        let body = three();
        let env = &env;
        async move {
            env.post_key("/v1/chat/completions", &body, &key)
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(sends).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(ok >= 2, "{statuses:?}");
    let spent = key_spent(&env, &id).await;
    assert!(
        spent <= budget,
        "spent {spent} of a budget of {budget} ({ok} answered)"
    );
}

/// A request of `alias` with an output cap of its own, so that its worst case is small.
fn capped_chat(alias: &str) -> Value {
    let mut body = chat(alias, "How much does this cost?");
    body["max_tokens"] = json!(16);
    body
}

/// How many of `n` concurrent capped requests with `key` were answered; the others must be
/// refused for the budget.
async fn answered(env: &Env, alias: &str, key: &str, n: usize) -> usize {
    let sends = (0..n).map(|_| async {
        let r = env
            .post_key("/v1/chat/completions", &capped_chat(alias), key)
            .await;
        match r.status {
            200 => 1,
            429 => 0,
            other => panic!("unexpected {other}: {}", r.text),
        }
    });
    futures::future::join_all(sends).await.into_iter().sum()
}

#[tokio::test]
async fn a_change_of_limits_keeps_what_requests_in_flight_reserved_and_will_spend() {
    let env = env_with(BUDGETED).await;
    let (_, probe) = new_key(&env, json!({"name": "probe"})).await;
    let r = env
        .post_key("/v1/chat/completions", &capped_chat("budgeted"), &probe)
        .await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let c = crate::harness::record(&env, &id).await["cost_nanos"]
        .as_i64()
        .unwrap();
    let budget = 6 * c;
    let (key_id, key) = new_key(
        &env,
        json!({"name": "k", "max_budget_usd": budget as f64 / 1e9, "rpm": 1000}),
    )
    .await;
    env.fault("budget-model", "ttft_ms=1500", None).await;
    let first = answered(&env, "budgeted", &key, 12);
    let change = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Changing the limits (here the rate, then the budget's alert threshold) while they
        // are in flight keeps their reservations.
        let changed = patch(&env, &format!("/admin/keys/{key_id}"), json!({"rpm": 2000})).await;
        assert!(
            changed["budget"]["reserved_nanos"].as_i64().unwrap() > 0,
            "{changed}"
        );
        patch(
            &env,
            &format!("/admin/keys/{key_id}"),
            json!({"soft_budget": 0.5}),
        )
        .await;
        answered(&env, "budgeted", &key, 12).await
    };
    let (first, second) = tokio::join!(first, change);
    let spent = key_spent(&env, &key_id).await;
    assert!(spent <= budget, "spent {spent} of a budget of {budget}");
    // Every answer's cost reached the ledger that admissions read.
    assert_eq!(
        spent,
        (first + second) as i64 * c,
        "{first} + {second} answered"
    );
    let after = env.get(&format!("/admin/keys/{key_id}")).await.json();
    assert_eq!(after["budget"]["reserved_nanos"], 0, "{after}");
}

#[tokio::test]
async fn admin_changes_at_once_each_keep_the_others() {
    let env = env_with("").await;
    for _ in 0..8 {
        let (id, _) = new_key(&env, json!({"name": "k"})).await;
        let path = format!("/admin/keys/{id}");
        let (block_path, nothing) = (format!("{path}/block"), json!({}));
        let block = env.post(&block_path, &nothing);
        let rate = patch(&env, &path, json!({"rpm": 100}));
        let (blocked, _) = tokio::join!(block, rate);
        assert_eq!(blocked.status, 200, "{}", blocked.text);
        let key = env.get(&path).await.json();
        assert_eq!(key["blocked"], true, "{key}");
        assert_eq!(key["limits"]["rpm"], 100, "{key}");
    }
    // Out-of-range periods and unknown references are refused, not stored.
    for body in [
        json!({"name": "k", "expires_in_secs": 9_000_000_000_000_000_000_i64}),
        json!({"name": "k", "expires_in_secs": -9_000_000_000_000_000_000_i64}),
    ] {
        let r = env.post("/admin/keys", &body).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["error"]["param"], "expires_in_secs", "{}", r.text);
    }
    let (id, _) = new_key(&env, json!({"name": "k"})).await;
    let r = env
        .post(
            &format!("/admin/keys/{id}/rotate"),
            &json!({"grace_secs": 9_000_000_000_000_000_000_i64}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = env
        .http
        .patch(format!("{}/admin/keys/{id}", env.gw.url))
        .bearer_auth(KEY)
        .json(&json!({"team_id": "no-such-team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn requests_without_an_output_cap_share_a_budget_their_worst_case_exceeds() {
    let env = env_with(BUDGETED).await;
    // The default cap's worst case (4,096 tokens at $10 a million, $0.04) is four times the
    // budget: requests at once each take a share of it rather than queue behind the first.
    let budget = 10_000_000i64;
    let (key_id, key) = new_key(
        &env,
        json!({"name": "small", "max_budget_usd": budget as f64 / 1e9}),
    )
    .await;
    env.fault("budget-model", "ttft_ms=1500", None).await;
    let sends = (0..12).map(|_| async {
        env.post_key(
            "/v1/chat/completions",
            &chat("budgeted", "How much does this cost?"),
            &key,
        )
        .await
    });
    let replies = futures::future::join_all(sends).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let spent = key_spent(&env, &key_id).await;
    assert!(spent > 0 && spent <= budget, "spent {spent} of {budget}");
}

async fn customer_spent(env: &Env) -> i64 {
    env.get("/admin/customers/cust-r").await.json()["budget"]["spent_nanos"]
        .as_i64()
        .unwrap()
}

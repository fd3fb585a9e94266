//! The exact response cache through the real binary: the same body from the same scope is
//! answered without a provider call and at no cost, and recorded as a hit, a stream with the
//! events the first client got; other bodies, other scopes and the client's `no-cache` /
//! `no-store` go to the provider, and a stream that broke off is not kept.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Env, chat, env_with_sections};

/// The alias the cache tests ask, on a priced simulator model whose calls they count.
const CACHED_MODEL: &str = r#"
  - alias: cached
    deployments:
      - {provider: p-openai, model: cached-model, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"#;

async fn provider_calls(env: &Env) -> u64 {
    env.sim_stats().await["by_model"]["cached-model"]
        .as_u64()
        .unwrap_or(0)
}

async fn record(env: &Env, id: &str) -> Value {
    for _ in 0..100 {
        let r = env.get(&format!("/admin/requests/{id}")).await;
        if r.status == 200 {
            return r.json();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no record {id}");
}

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache() {
    let env = env_with_sections(CACHED_MODEL, "", "cache:\n  ttl: 2s\n").await;
    let made = env
        .post(
            "/admin/keys",
            &json!({"name": "app", "max_budget_usd": 1.0}),
        )
        .await
        .json();
    let (key, id) = (
        made["key"].as_str().unwrap().to_owned(),
        made["id"].as_str().unwrap().to_owned(),
    );
    let spent = || {
        let (env, id) = (&env, id.clone());
        async move {
            env.get(&format!("/admin/keys/{id}")).await.json()["budget"]["spent_nanos"]
                .as_i64()
                .unwrap()
        }
    };
    let body = chat("cached", "What is the capital of France?");

    let first = env.post_key("/v1/chat/completions", &body, &key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.headers["x-switchyard-cache"], "miss");
    let calls = provider_calls(&env).await;
    let cost = spent().await;
    assert!(cost > 0);

    let second = env.post_key("/v1/chat/completions", &body, &key).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.headers["x-switchyard-cache"], "hit");
    assert_eq!(second.text, first.text, "the same answer");
    assert_eq!(provider_calls(&env).await, calls, "no provider call");
    assert_eq!(spent().await, cost, "a hit costs nothing");
    let hit = record(&env, second.headers["x-request-id"].to_str().unwrap()).await;
    assert_eq!(hit["cache_hit"], true, "{hit}");
    assert_eq!(hit["cost_nanos"], 0, "{hit}");
    assert_eq!(hit["alias"], "cached", "{hit}");
    assert_eq!(hit["deployment"], "p-openai/cached-model", "{hit}");
    let miss = record(&env, first.headers["x-request-id"].to_str().unwrap()).await;
    assert!(miss.get("cache_hit").is_none(), "{miss}");

    // Another body, another caller's scope, a stream, and the client's own say: the provider.
    let other = chat("cached", "What is the capital of Spain?");
    let r = env.post_key("/v1/chat/completions", &other, &key).await;
    assert_eq!(r.headers["x-switchyard-cache"], "miss");
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(
        r.headers["x-switchyard-cache"], "miss",
        "the master key's scope is its own"
    );
    let before = provider_calls(&env).await;
    let r = env
        .post_with(
            "/v1/chat/completions",
            &body,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-switchyard-cache", "no-cache"),
            ],
        )
        .await;
    assert_eq!(r.headers["x-switchyard-cache"], "miss");
    let r = env
        .post_with(
            "/v1/chat/completions",
            &body,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-switchyard-cache", "no-store"),
            ],
        )
        .await;
    assert!(r.headers.get("x-switchyard-cache").is_none());
    assert_eq!(provider_calls(&env).await, before + 2);

    // The same question through the Anthropic ingress is its own entry.
    let messages = json!({"model": "cached", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]});
    let anthropic = || {
        let (env, messages, key) = (&env, messages.clone(), key.clone());
        async move {
            env.post_with(
                "/v1/messages",
                &messages,
                &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
            )
            .await
        }
    };
    assert_eq!(anthropic().await.headers["x-switchyard-cache"], "miss");
    let r = anthropic().await;
    assert_eq!(r.headers["x-switchyard-cache"], "hit");
    assert_eq!(r.json()["type"], "message");

    // After the ttl, a fresh answer.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let r = env.post_key("/v1/chat/completions", &body, &key).await;
    assert_eq!(r.headers["x-switchyard-cache"], "miss");
}

#[tokio::test]
async fn a_question_worded_differently_is_answered_from_the_semantic_cache() {
    let env = env_with_sections(
        &format!(
            "{CACHED_MODEL}  - alias: question-embedder
    deployments:
      - {{provider: p-openai, model: text-embedding-3-small, price: {{input_per_mtok: 0.02, output_per_mtok: 0}}}}
"
        ),
        "",
        "cache:\n  ttl: 30s\n  semantic: {model: question-embedder, threshold: 0.9}\n",
    )
    .await;
    let made = env
        .post(
            "/admin/keys",
            &json!({"name": "app", "max_budget_usd": 1.0}),
        )
        .await
        .json();
    let key = made["key"].as_str().unwrap().to_owned();
    let asks = |body: Value| {
        let (env, key) = (&env, key.clone());
        async move { env.post_key("/v1/chat/completions", &body, &key).await }
    };

    let first = asks(chat("cached", "What is the capital of France?")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.headers["x-switchyard-cache"], "miss");
    let calls = provider_calls(&env).await;

    // The same words, another case and punctuation: not the same body, the same question.
    let second = asks(chat("cached", "what is the capital of FRANCE")).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.headers["x-switchyard-cache"], "hit");
    assert_eq!(second.text, first.text, "the kept answer");
    assert_eq!(provider_calls(&env).await, calls, "no chat call");
    let hit = record(&env, second.headers["x-request-id"].to_str().unwrap()).await;
    assert_eq!(hit["cache_hit"], true, "{hit}");
    assert_eq!(hit["cost_nanos"], 0, "{hit}");
    assert_eq!(hit["tags"]["cache"], "semantic", "{hit}");
    assert!(
        hit["tags"]["cache_similarity"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.9
    );

    // Each question's embedding is a request of its own, billed to the caller.
    let embeds = env
        .get("/admin/requests?tag=purpose:semantic_cache")
        .await
        .json();
    let embeds = embeds["data"].as_array().unwrap();
    assert_eq!(embeds.len(), 2, "{embeds:?}");
    for e in embeds {
        assert_eq!(e["caller"]["key_id"], made["id"], "{e}");
        assert_eq!(e["alias"], "question-embedder", "{e}");
        assert!(e["cost_nanos"].as_i64().unwrap() > 0, "{e}");
    }

    // Another question, or the same one in another conversation or with other parameters:
    // the provider answers.
    let other = asks(chat("cached", "How do I reset my router password?")).await;
    assert_eq!(other.headers["x-switchyard-cache"], "miss");
    let mut briefed = chat("cached", "What is the capital of France?");
    briefed["messages"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"role": "system", "content": "Answer in German."}));
    assert_eq!(asks(briefed).await.headers["x-switchyard-cache"], "miss");
    let mut hotter = chat("cached", "what is the capital of france");
    hotter["temperature"] = json!(1.5);
    assert_eq!(asks(hotter).await.headers["x-switchyard-cache"], "miss");
    assert_eq!(provider_calls(&env).await, calls + 3);
    // No semantic reading for `no-cache`: a fresh answer.
    let r = env
        .post_with(
            "/v1/chat/completions",
            &chat("cached", "What's the capital of France?"),
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-switchyard-cache", "no-cache"),
            ],
        )
        .await;
    assert_eq!(r.headers["x-switchyard-cache"], "miss");
    assert_eq!(provider_calls(&env).await, calls + 4);
}

/// A caller whose restrictions leave it no deployment of the model is refused as it would be
/// without a cache, though a teammate's answer to the same request is kept.
#[tokio::test]
async fn a_kept_answer_is_not_served_to_a_caller_its_restrictions_refuse() {
    let env = env_with_sections(CACHED_MODEL, "", "cache:\n  ttl: 30s\n").await;
    let team = env
        .post("/admin/teams", &json!({"name": "desk"}))
        .await
        .json();
    let key_of = |body: Value| {
        let env = &env;
        async move {
            env.post("/admin/keys", &body).await.json()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let free = key_of(json!({"name": "anywhere", "team_id": team["id"]})).await;
    let eu_only =
        key_of(json!({"name": "eu-only", "team_id": team["id"], "allowed_regions": ["eu"]})).await;
    let body = chat("cached", "What is the capital of France?");
    let first = env.post_key("/v1/chat/completions", &body, &free).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let again = env.post_key("/v1/chat/completions", &body, &free).await;
    assert_eq!(again.headers["x-switchyard-cache"], "hit");
    let refused = env.post_key("/v1/chat/completions", &body, &eu_only).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.json()["error"]["code"], "model_not_allowed");
}

/// With the prompt's personal data redacted, the semantic cache's embedding model (a provider
/// too) never sees it either: two questions that differ only in an e-mail address are one
/// question once redacted, as the chat provider would get them.
#[tokio::test]
async fn the_semantic_caches_question_is_redacted_as_the_prompt_is() {
    let env = env_with_sections(
        &format!(
            "{CACHED_MODEL}  - alias: question-embedder
    deployments:
      - {{provider: p-openai, model: text-embedding-3-small}}
"
        ),
        "",
        "cache:\n  ttl: 30s\n  semantic: {model: question-embedder, threshold: 0.99}\nguardrails:\n  pii: redact\n",
    )
    .await;
    let first = env
        .post(
            "/v1/chat/completions",
            &chat(
                "cached",
                "Where is the order placed by carol@example.com today?",
            ),
        )
        .await;
    assert_eq!(
        first.headers["x-switchyard-cache"], "miss",
        "{}",
        first.text
    );
    let second = env
        .post(
            "/v1/chat/completions",
            &chat(
                "cached",
                "Where is the order placed by dave.smith@example.org today?",
            ),
        )
        .await;
    assert_eq!(
        second.headers["x-switchyard-cache"], "hit",
        "{}",
        second.text
    );
    let hit = record(&env, second.headers["x-request-id"].to_str().unwrap()).await;
    assert_eq!(hit["tags"]["cache_similarity"], "1.0000", "{hit}");
}

#[tokio::test]
async fn a_stream_that_ended_normally_is_replayed_and_one_that_broke_off_is_not_kept() {
    let env = env_with_sections(CACHED_MODEL, "allowed_fails: 1000", "cache:\n  ttl: 30s\n").await;
    let mut body = chat("cached", "Tell me a story about a lighthouse.");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});

    let first = env.post("/v1/chat/completions", &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.headers["x-switchyard-cache"], "miss");
    assert_eq!(first.sse_data().last().unwrap(), "[DONE]");
    let calls = provider_calls(&env).await;

    let second = env.post("/v1/chat/completions", &body).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.headers["x-switchyard-cache"], "hit");
    assert!(
        second.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(second.text, first.text, "the same events");
    assert_eq!(provider_calls(&env).await, calls, "no provider call");
    let hit = record(&env, second.headers["x-request-id"].to_str().unwrap()).await;
    assert_eq!(hit["cache_hit"], true, "{hit}");
    assert_eq!(hit["cost_nanos"], 0, "{hit}");
    assert!(hit["tokens"]["output"].as_u64().unwrap() > 0, "{hit}");
    // The same request without streaming is another entry.
    let mut whole = body.clone();
    whole["stream"] = json!(false);
    whole.as_object_mut().unwrap().remove("stream_options");
    let r = env.post("/v1/chat/completions", &whole).await;
    assert_eq!(r.headers["x-switchyard-cache"], "miss");
    assert!(r.json()["choices"].is_array());

    // A stream the provider cuts short reaches the client as an error and is not kept.
    let mut other = chat("cached", "Tell me a story about a harbour.");
    other["stream"] = json!(true);
    env.fault("cached-model", "cut_after=3", Some(1)).await;
    let broken = env.post("/v1/chat/completions", &other).await;
    assert_eq!(broken.headers["x-switchyard-cache"], "miss");
    assert_ne!(
        broken.sse_data().last().unwrap(),
        "[DONE]",
        "{}",
        broken.text
    );
    let again = env.post("/v1/chat/completions", &other).await;
    assert_eq!(
        again.headers["x-switchyard-cache"], "miss",
        "nothing was kept"
    );
    assert_eq!(again.sse_data().last().unwrap(), "[DONE]");
    let third = env.post("/v1/chat/completions", &other).await;
    assert_eq!(third.headers["x-switchyard-cache"], "hit");
}

/// Who asks can change where a request goes and what it may be given: a routing rule that names
/// a team, a caller's restrictions, the limit a budget set, a customer's particulars. A kept
/// answer goes no further than the request it answered.
#[tokio::test]
async fn a_kept_answer_goes_no_further_than_the_request_it_answered() {
    let env = env_with_sections(
        &format!(
            "{CACHED_MODEL}  - alias: premium
    deployments:
      - {{provider: p-openai, model: premium-model}}
  - alias: mixed
    strategy: priority
    deployments:
      - {{provider: p-openai, model: us-model, region: us, priority: 0}}
      - {{provider: p-compat, model: eu-model, region: eu, priority: 1}}
  - alias: question-embedder
    deployments:
      - {{provider: p-openai, model: text-embedding-3-small}}
"
        ),
        "rules:\n    - {name: premium-desk, match: {model: cached, teams: [premium]}, route: {alias: premium}}",
        "cache:\n  ttl: 30s\n  semantic: {model: question-embedder, threshold: 0.9}\n",
    )
    .await;
    let org = env.post("/admin/orgs", &json!({"id": "acme"})).await;
    assert_eq!(org.status, 201, "{}", org.text);
    for team in ["desk", "premium"] {
        let made = env
            .post("/admin/teams", &json!({"id": team, "org_id": "acme"}))
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
    }
    let key_of = |body: Value| {
        let env = &env;
        async move {
            let made = env.post("/admin/keys", &body).await;
            assert_eq!(made.status, 201, "{}", made.text);
            made.json()["key"].as_str().unwrap().to_owned()
        }
    };
    let desk = key_of(json!({"name": "desk", "team_id": "desk"})).await;
    let premium = key_of(json!({"name": "premium", "team_id": "premium"})).await;
    let eu_only = key_of(json!({"name": "eu", "team_id": "desk", "allowed_regions": ["eu"]})).await;
    let nearly_spent =
        key_of(json!({"name": "thrifty", "team_id": "desk", "max_budget_usd": 0.00006})).await;
    let asks = |body: Value, key: String| {
        let env = &env;
        async move { env.post_key("/v1/chat/completions", &body, &key).await }
    };
    let deployment = |r: &crate::harness::Reply| {
        let route = r.headers["x-switchyard-route"].to_str().unwrap().to_owned();
        route
            .split("; ")
            .find_map(|p| p.strip_prefix("deployment="))
            .unwrap()
            .to_owned()
    };

    // One organisation shares answers, but a rule sends the premium team elsewhere: it is not
    // served the desk's answer, nor the desk the premium one's.
    let body = chat("cached", "What is the capital of France?");
    let first = asks(body.clone(), desk.clone()).await;
    assert_eq!(deployment(&first), "p-openai/cached-model");
    let other = asks(body.clone(), premium.clone()).await;
    assert_eq!(
        other.headers["x-switchyard-cache"], "miss",
        "{}",
        other.text
    );
    assert_eq!(deployment(&other), "p-openai/premium-model");
    let again = asks(body.clone(), desk.clone()).await;
    assert_eq!(again.headers["x-switchyard-cache"], "hit");
    assert_eq!(deployment(&again), "p-openai/cached-model");

    // A teammate limited to the EU is not served the answer a US deployment gave.
    let body = chat("mixed", "Where is the Eiffel tower?");
    let us = asks(body.clone(), desk.clone()).await;
    assert_eq!(deployment(&us), "p-openai/us-model");
    let eu = asks(body.clone(), eu_only.clone()).await;
    assert_eq!(eu.headers["x-switchyard-cache"], "miss");
    assert_eq!(deployment(&eu), "p-compat/eu-model");

    // An answer cut short at the limit a nearly spent budget set is not kept for the team.
    let body = chat("cached", "Tell me about the history of bridges in Paris");
    let cut = asks(body.clone(), nearly_spent.clone()).await;
    assert_eq!(cut.status, 200, "{}", cut.text);
    assert_eq!(
        cut.json()["choices"][0]["finish_reason"],
        "length",
        "{}",
        cut.text
    );
    let whole = asks(body.clone(), desk.clone()).await;
    assert_eq!(whole.headers["x-switchyard-cache"], "miss");
    assert_ne!(whole.json()["choices"][0]["finish_reason"], "length");

    // The semantic cache does not hand one customer's answer to another.
    let with_customer = |text: &str, customer: &str| {
        let (env, key, body) = (&env, desk.clone(), chat("cached", text));
        let customer = customer.to_owned();
        async move {
            env.post_with(
                "/v1/chat/completions",
                &body,
                &[
                    ("authorization", &format!("Bearer {key}")),
                    ("x-switchyard-customer", &customer),
                ],
            )
            .await
        }
    };
    let alice = with_customer("Draft a reminder about the overdue invoice", "alice").await;
    assert_eq!(alice.headers["x-switchyard-cache"], "miss");
    let bob = with_customer("draft a reminder about the overdue invoice!", "bob").await;
    assert_eq!(
        bob.headers["x-switchyard-cache"], "miss",
        "another customer"
    );
    let alice_again = with_customer("draft a reminder about the overdue invoice", "alice").await;
    assert_eq!(alice_again.headers["x-switchyard-cache"], "hit");
    // The question's embedding is billed to the customer as the answer would be.
    let mut billed = false;
    for _ in 0..100 {
        let embeds = env
            .get("/admin/requests?tag=purpose:semantic_cache&customer=alice")
            .await
            .json();
        if !embeds["data"].as_array().unwrap().is_empty() {
            billed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(billed, "no embedding record names the customer");

    // Hits are counted as hits, not as the deployment's tokens or speed.
    assert!(
        crate::harness::metrics_come_to_say(
            &env.http,
            &env.gw,
            "switchyard_cache_hits_total{alias=\"cached\",cache=\"exact\"} 1"
        )
        .await
    );
    assert!(
        crate::harness::metrics_come_to_say(
            &env.http,
            &env.gw,
            "switchyard_cache_hits_total{alias=\"cached\",cache=\"semantic\"} 1"
        )
        .await
    );
}

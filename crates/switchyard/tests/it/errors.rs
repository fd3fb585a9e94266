//! Bad input gets a clear error in the ingress's own shape with the right status; upstream
//! failures map to stable codes and never leak the provider key.

use serde_json::{Value, json};

use crate::harness::{KEY, chat, env, env_with};

fn assert_openai_error(r: &crate::harness::Reply, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    let b = r.json();
    assert_eq!(b["error"]["code"], code, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(b["error"]["type"].is_string());
    assert!(r.headers.contains_key("x-request-id"));
    b
}

#[tokio::test]
async fn bad_client_input() {
    let env = env().await;
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str())];

    let r = env
        .post_raw("/v1/chat/completions", b"{\"model\": ".to_vec(), &headers)
        .await;
    assert_openai_error(&r, 400, "invalid_request");

    // A cost ceiling that is no amount is refused, not ignored (the request would run with
    // none).
    for ceiling in ["abc", "$0.01", "-1"] {
        let r = env
            .post_with(
                "/v1/chat/completions",
                &chat("openai", "x"),
                &[
                    ("authorization", auth.as_str()),
                    ("x-switchyard-max-cost", ceiling),
                ],
            )
            .await;
        assert_openai_error(&r, 400, "invalid_request");
    }

    let r = env.post("/v1/chat/completions", &json!({"model": "openai", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"})).await;
    let b = assert_openai_error(&r, 400, "invalid_request");
    assert_eq!(b["error"]["param"], "temperature");

    let r = env
        .post("/v1/chat/completions", &json!({"model": "openai"}))
        .await;
    let b = assert_openai_error(&r, 400, "invalid_request");
    assert_eq!(b["error"]["param"], "messages");

    let r = env.post("/v1/chat/completions", &json!({"model": "openai", "messages": [{"role": "user", "content": [{"type": "text"}]}]})).await;
    let b = assert_openai_error(&r, 400, "invalid_request");
    assert_eq!(b["error"]["param"], "messages[0].content[0].text");

    let r = env
        .post("/v1/chat/completions", &chat("no-such-alias", "x"))
        .await;
    let b = assert_openai_error(&r, 404, "model_not_found");
    assert_eq!(b["error"]["param"], "model");

    let r = env
        .post_with("/v1/chat/completions", &chat("openai", "x"), &[])
        .await;
    assert_openai_error(&r, 401, "invalid_api_key");
    let r = env
        .post_with(
            "/v1/chat/completions",
            &chat("openai", "x"),
            &[("authorization", "Bearer sk-wrong")],
        )
        .await;
    let b = assert_openai_error(&r, 401, "invalid_api_key");
    assert!(!r.text.contains("sk-wrong") && !b.to_string().contains(KEY));

    let big = "x".repeat(2 * 1024 * 1024);
    let r = env
        .post("/v1/chat/completions", &chat("openai", &big))
        .await;
    assert_openai_error(&r, 413, "request_too_large");

    // Anthropic has no embeddings: nothing behind the alias can serve them.
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "anthropic", "input": "x"}),
        )
        .await;
    assert_openai_error(&r, 400, "unsupported_content");

    let r = env.get("/v1/nothing-here").await;
    assert_openai_error(&r, 404, "not_found");
    // The inference endpoints answer POST only; another method gets the error shape of the
    // endpoint's dialect, not an empty reply.
    let r = env.get("/v1/chat/completions").await;
    assert_openai_error(&r, 405, "method_not_allowed");
    // What the router's own extractors refuse (an unreadable query, a body over the admin
    // routes' limit) comes in the same error shape, not as plain text.
    let r = env.get("/admin/audit?limit=abc").await;
    assert_openai_error(&r, 400, "invalid_request");
    let r = env
        .post_raw(
            "/admin/keys",
            vec![b' '; 3 * 1024 * 1024],
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text);
    let r = env.get("/v1/messages").await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.json()["type"], "error", "{}", r.text);
    // An endpoint the gateway does not serve, asked by an Anthropic client (its SDKs send
    // `anthropic-version` on every call): Anthropic's shape.
    let r = env
        .post_with(
            "/v1/files",
            &json!({}),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["type"], "error", "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "not_found_error", "{}", r.text);

    // The Anthropic ingress answers in its own shape.
    let r = env
        .post_anthropic(
            &json!({"model": "anthropic", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let b = r.json();
    assert_eq!(b["type"], "error");
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{b}"
    );
    let r = env
        .post_with(
            "/v1/messages",
            &json!({"model": "anthropic", "max_tokens": 5, "messages": []}),
            &[("x-api-key", "nope")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = env.post_anthropic(&json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    // An Anthropic client's errors name the request, in the body and in `request-id`, as the
    // API's do; so do its token counts and its refusals of a path the gateway does not serve.
    let id = r.headers["request-id"].to_str().unwrap();
    assert_eq!(r.json()["request_id"], id, "{}", r.text);
    assert_eq!(r.headers["x-request-id"], id);
    // Nothing reached a provider for any of these.
    let stats = env.sim_stats().await;
    assert_eq!(stats["requests"].as_u64().unwrap_or(0), 0, "{stats}");
    for path in ["/v1/messages/batches", "/v1/messages/count_tokens"] {
        let r = env
            .post_with(
                path,
                &json!({"model": "anthropic", "messages": [{"role": "user", "content": "x"}]}),
                &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
            )
            .await;
        let id = r.headers["request-id"].to_str().unwrap();
        assert!(id.len() > 8, "{path}");
        if r.status != 200 {
            assert_eq!(r.json()["request_id"], id, "{path}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn upstream_failures_map_to_stable_codes() {
    let env = env().await;
    let cases = [
        ("status=400", 400, "upstream_invalid_request"),
        ("context_length", 400, "context_window_exceeded"),
        // Too large for this provider: the client hears so (and a fallback may take it).
        ("status=413", 413, "request_too_large"),
        ("status=401", 502, "upstream_auth_failed"),
        ("status=429;retry_after=7", 429, "upstream_rate_limited"),
        ("status=500", 502, "upstream_unavailable"),
        ("status=529", 503, "upstream_overloaded"),
        ("reset", 502, "upstream_unavailable"),
    ];
    for kind in crate::harness::KINDS {
        let model = match *kind {
            "openai" => "gpt-4o-mini",
            "compat" => "llama-3-8b",
            "azure" => "gpt-4o-deploy",
            "anthropic" => "claude-sonnet-4-5",
            "bedrock" => "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            _ => "gemini-2.5-flash",
        };
        for (fault, status, code) in cases {
            // Gemini and Bedrock have no 529: what they send with one names an internal error.
            let (status, code) = match (*kind, fault) {
                ("gemini" | "bedrock", "status=529") => (502, "upstream_unavailable"),
                // Bedrock names what its 413 is (a `ValidationException`): a refusal.
                ("bedrock", "status=413") => (400, "upstream_invalid_request"),
                _ => (status, code),
            };
            // A reset on a kept connection is sent once more on a new one (it may be the
            // provider's idle timeout): the reset there too is the failure.
            let times = if fault == "reset" { 2 } else { 1 };
            env.clear_faults().await;
            env.fault(model, fault, Some(times)).await;
            let r = env.post("/v1/chat/completions", &chat(kind, "x")).await;
            let b = assert_openai_error(&r, status, code);
            // The route it took to fail: which deployment, how many attempts.
            let route = r.headers["x-switchyard-route"].to_str().unwrap();
            assert!(route.contains("deployment="), "{kind} {fault}: {route}");
            // Each attempt's record says why it failed, never quoting the provider's words
            // about the gateway's credentials.
            let id = r.headers["x-request-id"].to_str().unwrap();
            let rec = crate::harness::record(&env, id).await;
            let said = rec["attempts"][0]["error_message"]
                .as_str()
                .unwrap_or_default();
            assert!(!said.is_empty(), "{kind} {fault}: {rec}");
            if fault == "status=401" {
                assert_eq!(
                    said, "the provider rejected the gateway's credentials",
                    "{kind}"
                );
            }
            assert!(
                !r.text.contains("upstream") || !r.text.contains("secret"),
                "provider key leaked: {}",
                r.text
            );
            if status == 429 {
                assert_eq!(r.headers["retry-after"], "7", "{kind}");
            }
            let _ = b;
        }
        // An error body with a success status is the error it holds, not an unreadable
        // answer (Bedrock's errors say what they are in a header only).
        if *kind != "bedrock" {
            env.clear_faults().await;
            env.fault(model, "error_body", Some(1)).await;
            let r = env.post("/v1/chat/completions", &chat(kind, "x")).await;
            assert_openai_error(&r, 502, "upstream_unavailable");
            let id = r.headers["x-request-id"].to_str().unwrap();
            let rec = crate::harness::record(&env, id).await;
            assert_eq!(rec["attempts"][0]["status"], 200, "{kind}: {rec}");
            assert_eq!(
                rec["attempts"][0]["error_class"], "server_error",
                "{kind}: {rec}"
            );
            // Asked for a stream, the same: the error it holds, not a broken stream.
            env.clear_faults().await;
            env.fault(model, "error_body", Some(1)).await;
            let mut body = chat(kind, "x");
            body["stream"] = json!(true);
            let r = env.post("/v1/chat/completions", &body).await;
            assert_openai_error(&r, 502, "upstream_unavailable");
            let id = r.headers["x-request-id"].to_str().unwrap();
            let rec = crate::harness::record(&env, id).await;
            assert_eq!(
                rec["attempts"][0]["error_class"], "server_error",
                "{kind} stream: {rec}"
            );
        }
    }
    // A hang costs one first-byte timeout: 504.
    env.fault("fast-model", "hang", Some(1)).await;
    let r = env.post("/v1/chat/completions", &chat("fast", "x")).await;
    assert_openai_error(&r, 504, "upstream_timeout");
    // Anthropic ingress renders the same failure in its own shape.
    env.fault("claude-sonnet-4-5", "status=500", Some(1)).await;
    let r = env.post_anthropic(&json!({"model": "anthropic", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["type"], "error");
    // An overloaded provider, whatever its kind, is Anthropic's own 529 to an Anthropic client.
    for (model, alias) in [
        ("claude-sonnet-4-5", "anthropic"),
        ("gpt-4o-mini", "openai"),
    ] {
        env.clear_faults().await;
        env.fault(model, "status=529", Some(1)).await;
        let r = env.post_anthropic(&json!({"model": alias, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
        assert_eq!(r.status, 529, "{alias}: {}", r.text);
        assert_eq!(r.json()["error"]["type"], "overloaded_error", "{}", r.text);
    }
}

/// An Anthropic client's message thread (the `thread` field of the message threads beta, which
/// the Anthropic SDKs' tool runner sends by default) is refused as the API refuses what it
/// cannot thread, with the `details.error_code` the SDKs' thread helpers act on: a new thread
/// is unsupported, a continued one not found. Nothing reaches a provider, so no turn goes
/// without the history it continues. The same request without `thread` is answered, at
/// `/messages` too (clients that add `/v1` themselves leave it out of the base URL), with the
/// request's id in `request-id` as Anthropic's SDKs read it.
#[tokio::test]
async fn every_deployment_rate_limited_says_when_the_first_frees_up() {
    let env = env_with(
        r#"
  - alias: limited
    strategy: priority
    deployments:
      - {provider: p-fast, model: limited-primary, priority: 0}
      - {provider: p-fast, model: limited-secondary, priority: 1}
"#,
    )
    .await;
    // Both beyond the longest wait the gateway sits out itself, the first tried freeing sooner.
    env.fault("limited-primary", "status=429;retry_after=9", Some(1))
        .await;
    env.fault("limited-secondary", "status=429;retry_after=40", Some(1))
        .await;
    let r = env
        .post("/v1/chat/completions", &chat("limited", "x"))
        .await;
    assert_openai_error(&r, 429, "upstream_rate_limited");
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((8..=9).contains(&secs), "retry-after {secs}");
}

/// The fallbacks for a request too long for its deployment are the context-length ones, though
/// a deployment merely down failed after it: being down says nothing of whether it fits.
#[tokio::test]
async fn a_context_length_failure_chooses_the_fallbacks_whatever_fails_after_it() {
    let env = env_with(
        r#"
  - alias: long
    strategy: priority
    deployments:
      - {provider: p-openai, model: short-window, priority: 0}
      - {provider: p-openai, model: down-model, priority: 1}
    fallbacks: {default: [plain], context_window_exceeded: [roomy]}
  - alias: plain
    deployments: [{provider: p-openai, model: also-short}]
  - alias: roomy
    deployments: [{provider: p-openai, model: long-window}]
"#,
    )
    .await;
    env.fault("short-window", "context_length", None).await;
    env.fault("down-model", "status=500", None).await;
    env.fault("also-short", "context_length", None).await;
    let r = env.post("/v1/chat/completions", &chat("long", "x")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let route = r.headers["x-switchyard-route"].to_str().unwrap();
    assert!(route.contains("deployment=p-openai/long-window"), "{route}");
}

/// A deployment failing every other request is not shown healthy because its last one
/// answered.
#[tokio::test]
async fn a_deployment_failing_often_shows_degraded() {
    let env = env_with(
        r#"
  - alias: flaky
    deployments: [{provider: p-openai, model: flaky-model}]
"#,
    )
    .await;
    for _ in 0..6 {
        env.fault("flaky-model", "status=500", Some(1)).await;
        let failed = env.post("/v1/chat/completions", &chat("flaky", "x")).await;
        assert_eq!(failed.status, 502, "{}", failed.text);
        let answered = env.post("/v1/chat/completions", &chat("flaky", "x")).await;
        assert_eq!(answered.status, 200, "{}", answered.text);
    }
    let deployments = env.get("/admin/deployments").await.json();
    let flaky = deployments["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "p-openai/flaky-model")
        .unwrap()
        .clone();
    assert_eq!(flaky["consecutive_failures"], 0, "{flaky}");
    assert_eq!(flaky["state"], "degraded", "{flaky}");
}

#[tokio::test]
async fn message_threads_are_refused_as_the_sdks_expect() {
    let env = env().await;
    let turn = |thread: Option<Value>| {
        let mut body = json!({"model": "anthropic", "max_tokens": 50,
            "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
        if let Some(thread) = thread {
            body["thread"] = thread;
        }
        body
    };
    let calls = env.sim_stats().await["requests"].clone();
    for (kind, stream) in [("anthropic", false), ("openai", true), ("gemini", false)] {
        let mut create = turn(Some(json!({"type": "create"})));
        create["model"] = json!(kind);
        create["stream"] = json!(stream);
        let r = env.post_anthropic(&create).await;
        assert_eq!(r.status, 400, "{kind}: {}", r.text);
        let body = r.json();
        assert_eq!(body["type"], "error", "{}", r.text);
        assert_eq!(body["error"]["type"], "invalid_request_error", "{}", r.text);
        assert_eq!(
            body["error"]["details"]["error_code"], "thread_unsupported_request",
            "{}",
            r.text
        );
        assert!(r.headers.contains_key("request-id"), "{:?}", r.headers);
    }
    let r = env
        .post_anthropic(&turn(Some(
            json!({"type": "continue", "previous_message_id": "msg_01XFDUDYJgAACzvnptvVoYEL"}),
        )))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "not_found_error", "{}", r.text);
    assert_eq!(
        r.json()["error"]["details"]["error_code"],
        "thread_not_found",
        "{}",
        r.text
    );
    assert_eq!(env.sim_stats().await["requests"], calls);

    for path in ["/v1/messages", "/messages"] {
        let r = env
            .post_with(
                path,
                &turn(None),
                &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.headers["request-id"], r.headers["x-request-id"]);
    }
}

/// An embeddings request to a chat model is refused, even when a fallback of the model could
/// embed: another model's vectors are in another space, and an index that mixed them would
/// find nothing it should.
#[tokio::test]
async fn embeddings_are_never_another_models() {
    let env = crate::harness::env_with(
        "  - {alias: chat-with-fallback, deployments: [{provider: p-anthropic, model: claude-sonnet-4-5}], fallbacks: [embed]}",
    )
    .await;
    for model in ["chat-with-fallback", "anthropic"] {
        let r = env
            .post("/v1/embeddings", &json!({"model": model, "input": "hello"}))
            .await;
        let b = assert_openai_error(&r, 400, "unsupported_content");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("embeddings"),
            "{b}"
        );
    }
    let r = env
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn an_overloaded_answer_is_recorded_as_the_client_got_it() {
    let env = env().await;
    env.fault("claude-sonnet-4-5", "status=529", Some(1)).await;
    let r = env
        .post_anthropic(&json!({"model": "anthropic", "max_tokens": 20,
            "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status, 529, "{}", r.text);
    let id = r.headers["x-request-id"].to_str().unwrap();
    let rec = crate::harness::record(&env, id).await;
    assert_eq!(rec["status"], 529, "{rec}");
}

//! Browsers: CORS as `server.cors_origins` says, over plain HTTP and from a real page in
//! headless Chromium on another origin; and the web dashboard, read in Chromium.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Env, Gateway, KEY, chat, env, env_with_sections, standard_config, start_sim};

/// A gateway over a simulator whose `server:` section carries `cors_origins: {origins}`.
async fn env_with_origins(origins: &str) -> Env {
    let sim = start_sim(Default::default()).await;
    let config = standard_config(&sim.base_url(), "").replacen(
        "  max_body_bytes: 1048576\n",
        &format!("  max_body_bytes: 1048576\n  cors_origins: {origins}\n"),
        1,
    );
    let gw = Gateway::start(&config).await;
    Env {
        sim,
        gw,
        http: crate::harness::client(),
    }
}

async fn preflight(env: &Env, path: &str, origin: &str) -> reqwest::Response {
    env.http
        .request(reqwest::Method::OPTIONS, format!("{}{path}", env.gw.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-stainless-os",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn any_origin_by_default() {
    let env = env().await;
    let origin = "http://localhost:5173";

    let r = preflight(&env, "/v1/chat/completions", origin).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-methods"), Some("POST"));
    // The page's own headers come back by name: a wildcard would not cover Authorization.
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("authorization,content-type,x-stainless-os")
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("3600"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    // The request itself, whole and streamed, with its headers readable by the page.
    for stream in [false, true] {
        let mut body = chat("openai", "hi from a page");
        body["stream"] = json!(stream);
        let r = env
            .http
            .post(format!("{}/v1/chat/completions", env.gw.url))
            .header("origin", origin)
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&r, "access-control-expose-headers"), Some("*"));
        assert!(header(&r, "x-request-id").is_some());
        let text = r.text().await.unwrap();
        if stream {
            assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        } else {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert!(answer["choices"][0]["message"]["content"].is_string());
        }
    }

    // An error reaches the page too, so it can read why.
    let r = env
        .http
        .post(format!("{}/v1/messages", env.gw.url))
        .header("origin", origin)
        .header("x-api-key", "sk-wrong")
        .json(&json!({"model": "anthropic", "max_tokens": 10, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));

    // The endpoints read without a key (metrics, health), the admin API and the dashboard
    // answer their own origin only: a page elsewhere cannot read them through a browser.
    for path in [
        "/metrics",
        "/health/ready",
        "/admin/deployments",
        "/dashboard",
    ] {
        let r = env
            .http
            .get(format!("{}{path}", env.gw.url))
            .header("origin", origin)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{path}");
        let r = preflight(&env, path, origin).await;
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{path}");
    }
    // The API's other endpoints do, under either prefix.
    for path in [
        "/v1/models",
        "/models",
        "/v1/embeddings",
        "/chat/completions",
    ] {
        let r = preflight(&env, path, origin).await;
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
    }

    // A client that is not a browser sends no Origin and gets no CORS headers.
    let r = env
        .http
        .post(format!("{}/v1/chat/completions", env.gw.url))
        .bearer_auth(KEY)
        .json(&chat("openai", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn listed_origins_only_and_none_when_empty() {
    let env = env_with_origins("[\"https://app.example.com\", \"http://localhost:3000\"]").await;
    for origin in ["https://app.example.com", "http://localhost:3000"] {
        let r = preflight(&env, "/v1/responses", origin).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
        assert!(header(&r, "vary").unwrap().contains("origin"));
    }
    let r = preflight(&env, "/v1/responses", "https://evil.example.com").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = env
        .http
        .get(format!("{}/v1/models", env.gw.url))
        .header("origin", "https://evil.example.com")
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    let env = env_with_origins("[]").await;
    let r = preflight(&env, "/v1/chat/completions", "http://localhost:5173").await;
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

/// Chromium, or `None` (with a loud message) where it is not installed and the suite is not
/// running under CI.
fn chromium() -> Option<String> {
    let found = std::env::var("SWITCHYARD_TEST_CHROMIUM").ok().or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(str::to_owned)
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("Chromium is not installed under CI: .ci/run installs it");
        }
        eprintln!(
            "\n!!! SKIPPING the browser test: Chromium is not installed (Debian: apt install chromium).\n"
        );
    }
    found
}

/// Serves `page` to every request on a loopback port of its own: another origin than the
/// gateway's.
async fn serve_page(page: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// The page's document once Chromium has loaded it and run its scripts and `settled` holds
/// for it. Chromium's virtual time waits for a page's requests, but on a loaded machine a
/// page's chain of requests has been seen to outlast it: the page is loaded again, up to four
/// times, until it has settled.
async fn dump_dom(chromium: &str, url: &str, settled: fn(&str) -> bool) -> String {
    let mut dom = String::new();
    for _ in 0..4 {
        dom = dump_dom_once(chromium, url).await;
        if settled(&dom) {
            break;
        }
    }
    dom
}

/// Whether the dashboard has read the gateway (or asked for a key).
fn dashboard_settled(dom: &str) -> bool {
    dom.contains("<span id=\"refreshed\" class=\"muted\">Updated")
        || dom.contains("<section id=\"sign-in\">")
}

async fn dump_dom_once(chromium: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("Chromium did not finish within 60 s")
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the page's script wrote into `<pre id="out">` once Chromium had run it.
async fn run_page(chromium: &str, url: &str) -> String {
    let dom = dump_dom(chromium, url, |dom| {
        !dom.contains("<pre id=\"out\">pending</pre>")
    })
    .await;
    let start = dom
        .find("<pre id=\"out\">")
        .unwrap_or_else(|| panic!("no output element in the page: {dom}"))
        + "<pre id=\"out\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A page that calls the gateway as a browser application does: an OpenAI chat request, whole
/// and streamed, with the key in `Authorization` and a header of its own (a preflight), and an
/// Anthropic one with `x-api-key`.
fn calling_page(gateway: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const gateway = {gateway:?};
const out = document.getElementById("out");
async function run() {{
  const headers = {{"Authorization": "Bearer {KEY}", "Content-Type": "application/json", "X-Stainless-OS": "Linux"}};
  const whole = await fetch(gateway + "/v1/chat/completions", {{method: "POST", headers,
    body: JSON.stringify({{model: "openai", messages: [{{role: "user", content: "hi from a page"}}]}})}});
  const answer = await whole.json();
  const streamed = await fetch(gateway + "/v1/chat/completions", {{method: "POST", headers,
    body: JSON.stringify({{model: "anthropic", stream: true, messages: [{{role: "user", content: "hi"}}]}})}});
  const reader = streamed.body.getReader();
  let text = "";
  for (;;) {{
    const {{done, value}} = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }}
  const claude = await fetch(gateway + "/v1/messages", {{method: "POST",
    headers: {{"x-api-key": "{KEY}", "anthropic-version": "2023-06-01", "content-type": "application/json",
      "anthropic-dangerous-direct-browser-access": "true"}},
    body: JSON.stringify({{model: "gemini", max_tokens: 50, messages: [{{role: "user", content: "hi"}}]}})}});
  const message = await claude.json();
  return {{
    status: whole.status,
    content: answer.choices[0].message.content,
    requestId: whole.headers.get("x-request-id"),
    streamDone: text.trim().endsWith("data: [DONE]"),
    anthropicType: message.type,
  }};
}}
run().then(r => {{ out.textContent = JSON.stringify(r); }},
           e => {{ out.textContent = JSON.stringify({{error: String(e)}}); }});
</script></body></html>"#
    )
}

#[tokio::test]
async fn a_page_on_another_origin_calls_the_gateway_from_chromium() {
    let Some(chromium) = chromium() else { return };
    let env = env().await;
    let url = serve_page(calling_page(&env.gw.url)).await;
    let out = run_page(&chromium, &url).await;
    let result: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("page wrote {out:?}: {e}"));
    assert_eq!(result["status"], 200, "{result}");
    assert!(
        result["content"]
            .as_str()
            .is_some_and(|c| c.contains("hi from a page")),
        "{result}"
    );
    assert!(result["requestId"].is_string(), "{result}");
    assert_eq!(result["streamDone"], true, "{result}");
    assert_eq!(result["anthropicType"], "message", "{result}");

    // The same page where only another origin is allowed: the browser refuses to let it read.
    let env = env_with_origins("[\"https://app.example.com\"]").await;
    let url = serve_page(calling_page(&env.gw.url)).await;
    let out = run_page(&chromium, &url).await;
    let result: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("page wrote {out:?}: {e}"));
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{result}"
    );
}

/// The markup of the element that opens with `opening` (its first match), up to the end of
/// its row or card.
fn element<'a>(dom: &'a str, opening: &str, end: &str) -> &'a str {
    let start = dom
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening} in the page: {dom}"));
    let len = dom[start..].find(end).unwrap() + end.len();
    &dom[start..start + len]
}

/// Polls `path` of the admin API until `ready` holds for its answer.
async fn admin_until(env: &Env, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let r = env.get(path).await;
        if r.status == 200 && ready(&r.json()) {
            return r.json();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{path} never came to say what was expected: {}",
        env.get(path).await.text
    );
}

#[tokio::test]
async fn the_dashboard_shows_the_failing_provider_the_requests_and_the_spend() {
    let env = env_with_sections(
        "",
        "allowed_fails: 2\n  cooldown: 60s",
        "alerts:\n  interval: 100ms\n  rules:\n    - {kind: deployment_cooldown}\n",
    )
    .await;

    // The page and its files, with a policy that runs only the gateway's own script.
    let r = env
        .http
        .get(format!("{}/dashboard", env.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    assert!(
        header(&r, "content-security-policy")
            .is_some_and(|p| p.contains("script-src 'self'") && p.contains("connect-src 'self'"))
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("/dashboard/app.js"), "{page}");
    for (path, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let r = env
            .http
            .get(format!("{}/dashboard/{path}", env.gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            header(&r, "content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/", env.gw.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(header(&r, "location"), Some("/dashboard"));

    let Some(chromium) = chromium() else { return };

    // Two answers from Claude, one of them with markup and an address in its prompt; then
    // OpenAI's deployment fails until it cools down.
    let r = env
        .post(
            "/v1/chat/completions",
            &chat(
                "anthropic",
                "Hello <script>alert(1)</script> from ops@example.com",
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let marked = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        env.post("/v1/chat/completions", &chat("anthropic", "hi"))
            .await
            .status,
        200
    );
    env.fault("gpt-4o-mini", "status=500", None).await;
    for _ in 0..3 {
        let r = env
            .post("/v1/chat/completions", &chat("openai", "hi"))
            .await;
        assert_eq!(r.status, 502, "{}", r.text);
    }
    let records = admin_until(&env, "/admin/requests?limit=50", |b| {
        b["data"].as_array().unwrap().len() == 5
    })
    .await;
    let failed = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "upstream_error")
        .unwrap();
    let failed_error = format!(
        "<p id=\"request-error\" class=\"muted\">{}: ",
        failed["error_code"].as_str().unwrap()
    );
    // The attempt's class, with what the provider said beneath it.
    let failed_class = format!(
        "{}<div class=\"muted\">{}</div></td>",
        failed["attempts"][0]["error_class"].as_str().unwrap(),
        failed["attempts"][0]["error_message"].as_str().unwrap()
    );
    let failed = failed["id"].as_str().unwrap().to_owned();
    admin_until(&env, "/admin/alerts", |b| {
        b["data"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let spend = env.get("/admin/spend?by=alias&since=24h").await.json();
    let spent: u64 = spend["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["cost_nanos"].as_u64().unwrap())
        .sum();
    assert!(spent > 0, "{spend}");

    let url = |fragment: &str| format!("{}/dashboard#key={KEY}{fragment}", env.gw.url);

    // At a glance: which provider is failing.
    let dom = dump_dom(&chromium, &url(""), dashboard_settled).await;
    assert!(
        !dom.contains(KEY),
        "the key must not be written into the page"
    );
    let openai = element(
        &dom,
        "<tr data-deployment=\"p-openai/gpt-4o-mini\"",
        "</tr>",
    );
    assert!(openai.contains("state-cooling"), "{openai}");
    let card = element(&dom, "data-provider=\"p-openai\"", "</div>");
    assert!(
        card.contains("cooling") && card.contains("Error rate 100.0 %"),
        "{card}"
    );
    let claude = element(
        &dom,
        "<tr data-deployment=\"p-anthropic/claude-sonnet-4-5\"",
        "</tr>",
    );
    assert!(claude.contains("state-healthy"), "{claude}");
    // The alert count in the tab.
    assert!(
        dom.contains("<span id=\"alert-count\" class=\"count\">1</span>"),
        "{dom}"
    );

    let dom = dump_dom(&chromium, &url("&view=alerts"), dashboard_settled).await;
    let alert = element(&dom, "<tr data-rule=\"deployment_cooldown\"", "</tr>");
    assert!(alert.contains("p-openai/gpt-4o-mini"), "{alert}");

    // Every request, the failures marked.
    let dom = dump_dom(&chromium, &url("&view=requests"), dashboard_settled).await;
    for record in records["data"].as_array().unwrap() {
        let id = record["id"].as_str().unwrap();
        let row = element(
            &dom,
            &format!("<tr class=\"link\" data-request=\"{id}\""),
            "</tr>",
        );
        let outcome = record["outcome"].as_str().unwrap();
        assert!(row.contains(&format!("outcome-{outcome}")), "{row}");
    }

    // One failed request: its decision and its attempt with the provider's error.
    let dom = dump_dom(
        &chromium,
        &url(&format!("&request={failed}")),
        dashboard_settled,
    )
    .await;
    assert!(
        dom.contains(&format!("<code id=\"request-id\">{failed}</code>")),
        "{dom}"
    );
    let attempt = element(&dom, "<tr data-attempt=\"1\"", "</tr>");
    assert!(attempt.contains("p-openai/gpt-4o-mini"), "{attempt}");
    assert!(attempt.contains("<td class=\"num\">500</td>"), "{attempt}");
    assert!(attempt.contains(&failed_class), "{failed_class}: {attempt}");
    assert!(dom.contains(&failed_error), "{failed_error}: {dom}");

    // A prompt's markup is shown as text, its address masked as the record keeps it.
    let dom = dump_dom(
        &chromium,
        &url(&format!("&request={marked}")),
        dashboard_settled,
    )
    .await;
    assert!(
        dom.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt; from [EMAIL]"),
        "{dom}"
    );
    assert!(!dom.contains("ops@example.com"));

    // Spend: the page's total is the admin API's.
    let dom = dump_dom(&chromium, &url("&view=spend"), dashboard_settled).await;
    let total = format!("{:.6}", spent as f64 / 1e9);
    assert!(
        dom.contains(&format!(
            "<td class=\"num\" id=\"spend-total\">{total}</td>"
        )),
        "{total}: {dom}"
    );

    // A wrong key: the sign-in form, saying why, and nothing read.
    let dom = dump_dom(
        &chromium,
        &format!("{}/dashboard#key=sk-wrong", env.gw.url),
        dashboard_settled,
    )
    .await;
    assert!(dom.contains("<section id=\"sign-in\">"), "{dom}");
    assert!(dom.contains("That key is not valid here"), "{dom}");
    assert!(!dom.contains("data-deployment="), "{dom}");
}

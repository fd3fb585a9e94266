//! How the gateway reaches providers: through the proxy the environment names (`HTTP_PROXY`,
//! `NO_PROXY`), whole and streamed, or directly; a refused connection and a TLS handshake that
//! never completes fail as the error classes say, within the connect timeout.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Env, Gateway, KEY, chat, refusing_port, standard_config, start_sim};

/// A forwarding HTTP proxy: notes each connection's first request line, connects to the host
/// its absolute-form target names and relays bytes both ways.
async fn start_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                log.lock().unwrap().push(line.clone());
                // "POST http://host:port/path HTTP/1.1"
                let Some(authority) = line
                    .split(' ')
                    .nth(1)
                    .and_then(|t| t.strip_prefix("http://"))
                    .and_then(|t| t.split('/').next())
                else {
                    let _ = client
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(authority).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, seen)
}

async fn gateway_with_env(vars: &[(&str, &str)]) -> Env {
    let sim = start_sim(SimConfig::default()).await;
    let config = standard_config(&sim.base_url(), "");
    gateway(sim, &config, vars).await
}

async fn gateway(sim: switchyard_sim::SimServer, config: &str, vars: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("serve").arg("--config").arg(&path);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let gw = Gateway::spawn(cmd, dir).await;
    Env {
        sim,
        gw,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

/// A gateway whose one alias `name` has one deployment (model `m`) on an OpenAI-style provider
/// at `port` on loopback: a server of the test's own.
async fn gateway_over(port: u16, name: &str) -> Env {
    let sim = start_sim(SimConfig::default()).await;
    let config = format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-{name}, kind: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: sk-a}}
models:
  - {{alias: {name}, deployments: [{{provider: p-{name}, model: m}}]}}
"#
    );
    gateway(sim, &config, &[]).await
}

#[tokio::test]
async fn providers_are_reached_through_the_proxy_the_environment_names() {
    let (proxy, seen) = start_proxy().await;
    let env = gateway_with_env(&[("HTTP_PROXY", &proxy)]).await;
    let sim = env.sim.base_url();

    let r = env
        .post("/v1/chat/completions", &chat("openai", "hello there"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json()["choices"][0]["message"]["content"].is_string(),
        "{}",
        r.text
    );

    let mut body = chat("anthropic", "tell me a story");
    body["stream"] = json!(true);
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(data.len() > 2, "{data:?}");

    let lines = seen.lock().unwrap().clone();
    assert!(
        lines.contains(&format!("POST {sim}/v1/chat/completions HTTP/1.1")),
        "the proxy saw {lines:?}"
    );
    assert!(
        lines.contains(&format!("POST {sim}/v1/messages HTTP/1.1")),
        "the proxy saw {lines:?}"
    );
}

#[tokio::test]
async fn hosts_no_proxy_names_are_reached_directly() {
    let (proxy, seen) = start_proxy().await;
    let env = gateway_with_env(&[("HTTP_PROXY", &proxy), ("NO_PROXY", "127.0.0.1")]).await;

    let r = env
        .post("/v1/chat/completions", &chat("openai", "hello there"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut body = chat("openai", "tell me a story");
    body["stream"] = json!(true);
    let r = env.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.sse_data().last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        r.text
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the proxy saw {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn unreachable_providers_fail_within_the_connect_timeout() {
    // A port nobody listens on refuses; a listener that never accepts leaves a TLS handshake
    // unanswered (the kernel completes the TCP handshake for it).
    let (refused, refused_port) = refusing_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let sim = start_sim(SimConfig::default()).await;
    let config = format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: ${{SWITCHYARD_DATA_DIR}}
providers:
  - {{name: p-refused, kind: openai, base_url: "http://127.0.0.1:{refused_port}/v1", api_key: sk-a}}
  - name: p-silent
    kind: openai
    base_url: "https://127.0.0.1:{silent_port}/v1"
    api_key: sk-b
    timeouts: {{connect: 300ms, first_byte: 60s, total: 120s}}
  - name: p-bounded
    kind: openai
    base_url: "http://127.0.0.1:{silent_port}/v1"
    api_key: sk-c
    timeouts: {{first_byte: 60s, total: 1s}}
models:
  - {{alias: refused, deployments: [{{provider: p-refused, model: m}}]}}
  - {{alias: silent, deployments: [{{provider: p-silent, model: m}}]}}
  - {{alias: bounded, deployments: [{{provider: p-bounded, model: m}}]}}
"#
    );
    let env = gateway(sim, &config, &[]).await;

    let r = env
        .post("/v1/chat/completions", &chat("refused", "hi"))
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(
        r.json()["error"]["code"],
        "upstream_unavailable",
        "{}",
        r.text
    );

    let started = Instant::now();
    let r = env
        .post("/v1/chat/completions", &chat("silent", "hi"))
        .await;
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "upstream_timeout", "{}", r.text);
    // Retries included, far below the 60 s first-byte timeout the handshake would otherwise
    // have waited out.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // A provider that accepts and never answers is given up at the whole exchange's bound,
    // though the first-byte timeout is longer.
    let started = Instant::now();
    let r = env
        .post("/v1/chat/completions", &chat("bounded", "hi"))
        .await;
    assert_eq!(r.status, 504, "{}", r.text);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop((refused, silent));
}

#[tokio::test]
async fn a_response_head_that_is_not_http_is_a_malformed_answer_not_a_connection_failure() {
    // A server that answers every request with a head of 3,000 headers (more than any client
    // reads) and no body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
        for i in 0..3000 {
            head.push_str(&format!("x-filler-{i}: {i}\r\n"));
        }
        head.push_str("content-length: 0\r\n\r\n");
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let head = head.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes()).await;
            });
        }
    });
    let env = gateway_over(port, "odd").await;
    let r = env.post("/v1/chat/completions", &chat("odd", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("not readable HTTP"), "{message}");
}

/// Reads one HTTP/1.1 request (head and `content-length` body) from `socket` and gives its head
/// in lower case; `None` at the connection's end.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                return Some(head);
            }
        }
        let mut chunk = [0u8; 8192];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A provider that answers the first request on each connection after `delay` and keeps it
/// open, then reads the next request on it and closes without answering: its idle timeout
/// racing the request, every time. Its port, and how many connections it took.
async fn answers_once_per_connection(delay: Duration) -> (u16, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(Mutex::new(0usize));
    let counted = connections.clone();
    tokio::spawn(async move {
        let answer = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello."}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        })
        .to_string();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            *counted.lock().unwrap() += 1;
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut socket, &mut buf).await.is_none() {
                    return;
                }
                tokio::time::sleep(delay).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                // The next request is read, and the connection dropped unanswered.
                read_request(&mut socket, &mut buf).await;
            });
        }
    });
    (port, connections)
}

#[tokio::test]
async fn a_kept_connection_the_provider_closed_unanswered_is_not_a_failure() {
    let (port, connections) = answers_once_per_connection(Duration::ZERO).await;
    let env = gateway_over(port, "idle").await;
    for i in 0..4 {
        let r = env.post("/v1/chat/completions", &chat("idle", "hi")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        let route = r.headers["x-switchyard-route"].to_str().unwrap();
        assert!(route.contains("attempts=1"), "{route}");
    }
    // Every request after the first went out twice: on the kept connection, then a new one.
    assert_eq!(*connections.lock().unwrap(), 4);
    let health = env
        .http
        .get(format!("{}/admin/deployments", env.gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let idle = &health["data"][0];
    assert_eq!(idle["failures"], 0, "{health}");
    assert_eq!(idle["successes"], 4, "{health}");
}

#[tokio::test]
async fn answers_are_asked_for_uncompressed_and_a_compressed_one_is_named() {
    // A provider that compresses whatever it is asked: it notes each request's head.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let noted = noted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_request(&mut socket, &mut buf).await {
                    noted.lock().unwrap().push(head);
                    let body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03";
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body).await;
                }
            });
        }
    });
    let env = gateway_over(port, "gzip").await;
    let r = env.post("/v1/chat/completions", &chat("gzip", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("content-encoding: gzip"), "{message}");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].contains("\r\naccept-encoding: identity"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_request_resent_after_a_stale_connection_goes_out_on_a_new_one() {
    // Several connections idle together (a burst's) all go stale at once: the resend must not
    // take another of them.
    let (port, connections) = answers_once_per_connection(Duration::from_millis(300)).await;
    let env = gateway_over(port, "burst").await;
    let body = chat("burst", "hi");
    let burst = (0..4).map(|_| env.post("/v1/chat/completions", &body));
    for r in futures::future::join_all(burst).await {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let pooled = *connections.lock().unwrap();
    assert!(pooled >= 2, "the burst opened {pooled} connections");
    for i in 0..3 {
        let r = env.post("/v1/chat/completions", &chat("burst", "hi")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        let route = r.headers["x-switchyard-route"].to_str().unwrap();
        assert!(route.contains("attempts=1"), "{route}");
    }
    assert_eq!(*connections.lock().unwrap(), pooled + 3);
}

#[tokio::test]
async fn a_stream_ended_at_its_terminal_event_leaves_its_connection_for_the_next_request() {
    // A provider that answers every request on a connection with a whole stream, chunked.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(Mutex::new(0usize));
    let counted = connections.clone();
    tokio::spawn(async move {
        let chunk = |delta: &str, finish: &str| {
            format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
            )
        };
        let sse = [
            chunk(r#"{"role":"assistant","content":"Hello"}"#, "null"),
            chunk("{}", r#""stop""#),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            *counted.lock().unwrap() += 1;
            let sse = sse.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_request(&mut socket, &mut buf).await.is_some() {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{sse}\r\n0\r\n\r\n",
                        sse.len()
                    );
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let env = gateway_over(port, "streams").await;
    let mut body = chat("streams", "hi");
    body["stream"] = json!(true);
    for i in 0..5 {
        let r = env.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    }
    assert_eq!(
        *connections.lock().unwrap(),
        1,
        "one connection for all five"
    );
}

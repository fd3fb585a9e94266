//! The official Python SDKs (`openai`, `anthropic`, `langchain-openai`) and third-party
//! Node.js clients (the Vercel AI SDK, OpenAI's and Anthropic's Node SDKs), unchanged, against
//! the real binary and every provider kind.

use std::process::Command;

use crate::harness::{KEY, KINDS, env};

/// The Python with the SDKs installed (set by `scripts/test`).
fn python() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "SWITCHYARD_TEST_PYTHON is not set under CI: run the suite through scripts/test"
                );
            }
            eprintln!(
                "\n!!! SKIPPING the official-SDK test: SWITCHYARD_TEST_PYTHON is not set.\n!!! Run ./scripts/test to create the Python environment and run it.\n"
            );
            None
        }
    }
}

#[tokio::test]
async fn official_sdks_work_unchanged() {
    let Some(python) = python() else { return };
    let env = env().await;
    // The package directory as cargo names it when it runs the test, so that a test binary
    // reused from a checkout at another path runs this checkout's script.
    let script = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
        .join("tests/sdk/sdk_check.py");
    let url = env.gw.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(&url)
            .arg(KEY)
            .args(KINDS)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// The directory with the Node.js clients installed (set by `scripts/test`).
fn node_clients() -> Option<std::path::PathBuf> {
    match std::env::var("SWITCHYARD_TEST_NODE_CLIENTS") {
        Ok(p) if !p.is_empty() => Some(p.into()),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "SWITCHYARD_TEST_NODE_CLIENTS is not set under CI: run the suite through scripts/test (it needs npm)"
                );
            }
            eprintln!(
                "\n!!! SKIPPING the Node.js clients test: SWITCHYARD_TEST_NODE_CLIENTS is not set.\n!!! Run ./scripts/test with Node.js and npm installed to install the clients and run it.\n"
            );
            None
        }
    }
}

#[tokio::test]
async fn node_clients_work_unchanged() {
    let Some(dir) = node_clients() else { return };
    let env = env().await;
    // The script runs from the clients' directory, where its imports resolve.
    let script = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
        .join("tests/node/clients_check.mjs");
    let run = dir.join("clients_check.mjs");
    std::fs::copy(&script, &run).expect("copy the clients' script");
    let url = env.gw.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(run)
            .arg(&url)
            .arg(KEY)
            .args(KINDS)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Node.js client checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

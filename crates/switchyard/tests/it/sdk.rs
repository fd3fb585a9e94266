//! The official Python SDKs (`openai`, `anthropic`, `langchain-openai`) and third-party
//! Node.js clients (the Vercel AI SDK, OpenAI's and Anthropic's Node SDKs), unchanged, against
//! the real binary and every provider kind.

use std::process::Command;

use crate::harness::{KEY, KINDS, env};

/// What `scripts/test` installed and named in `variable`, or `None` (with a loud message)
/// outside CI; under CI its absence is a failure.
fn installed(variable: &str, what: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{variable} is not set under CI: run the suite through scripts/test");
            }
            eprintln!(
                "\n!!! SKIPPING the {what} test: {variable} is not set.\n!!! Run ./scripts/test to install them and run it.\n"
            );
            None
        }
    }
}

/// A check script of this package's tests, as cargo names the package directory when it runs
/// the test (so that a test binary reused from a checkout at another path runs this
/// checkout's script).
fn script(path: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
        .join(path)
}

/// Runs a check against a gateway over every provider kind; it must pass every check.
async fn run_check(mut command: Command, what: &str) {
    let env = env().await;
    command.arg(&env.gw.url).arg(KEY).args(KINDS);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the check"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn official_sdks_work_unchanged() {
    let Some(python) = installed("SWITCHYARD_TEST_PYTHON", "official-SDK") else {
        return;
    };
    let mut command = Command::new(python);
    command.arg(script("tests/sdk/sdk_check.py"));
    run_check(command, "SDK").await;
}

#[tokio::test]
async fn node_clients_work_unchanged() {
    let Some(dir) = installed("SWITCHYARD_TEST_NODE_CLIENTS", "Node.js clients") else {
        return;
    };
    // The script runs from the clients' directory, where its imports resolve.
    let run = std::path::Path::new(&dir).join("clients_check.mjs");
    std::fs::copy(script("tests/node/clients_check.mjs"), &run).expect("copy the clients' script");
    let mut command = Command::new("node");
    command.arg(run);
    run_check(command, "Node.js client").await;
}

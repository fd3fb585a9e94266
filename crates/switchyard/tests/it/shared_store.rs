//! Replicas sharing a real PostgreSQL server (started here, in a temporary directory, on a free
//! loopback port): records written through one replica are read, queried and summed through the
//! other; a change made through one (a key, a configuration version) takes effect on the other;
//! records written while the database is down arrive once it is back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sim::SimConfig;

use crate::harness::{
    Gateway, KEY, chat, client, get_from as get, hold_port, metrics_come_to_say, post_to as post,
    send_to, start_sim,
};

/// A PostgreSQL server of its own. Run as the `postgres` user when the tests run as root (the
/// server refuses root).
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as: Option<String>,
    child: Option<Child>,
    /// While the server is stopped, its port stays bound here (without listening, so a client
    /// is refused as by a server that is down) and no other test's server can take it.
    port_held: Option<tokio::net::TcpSocket>,
    url: String,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Postgres {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start(&mut self) {
        self.port_held = None;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        for _ in 0..200 {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("postgres did not accept connections on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The fast shutdown, waited for, so the port and the data directory are free after
            // (asked of the server itself: the child may be `runuser`, which passes no signal on).
            let stopped = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
            self.port_held = hold_port(self.port);
        }
    }
}

/// The directory of PostgreSQL's programs: where the `postgres` on the `PATH` really is (links
/// there may name a few of them only), or Debian's versioned directory.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .filter_map(|dir| {
            Some(
                dir.join("postgres")
                    .canonicalize()
                    .ok()?
                    .parent()?
                    .to_owned(),
            )
        })
        .find(|dir| {
            ["initdb", "pg_ctl", "pg_isready"]
                .iter()
                .all(|p| dir.join(p).is_file())
        });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| {
            ["postgres", "initdb", "pg_ctl", "pg_isready"]
                .iter()
                .all(|p| bin.join(p).is_file())
        })
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh database cluster, started; or `None` (with a loud message) where PostgreSQL is not
/// installed and the suite is not running under CI.
async fn start_postgres() -> Option<Postgres> {
    let Some(bin) = postgres_bin() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PostgreSQL is not installed under CI: .ci/run installs it");
        }
        eprintln!(
            "\n!!! SKIPPING the shared-store test: PostgreSQL is not installed (Debian: apt install postgresql).\n"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_as = running_as_root().then(|| "postgres".to_owned());
    if let Some(user) = &run_as {
        let owned = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(owned.success(), "chown the server's directory to {user}");
    }
    let port = free_port();
    let mut pg = Postgres {
        bin,
        dir,
        port,
        run_as,
        child: None,
        port_held: None,
        url: format!("postgres://switchyard@127.0.0.1:{port}/postgres"),
    };
    let out = pg
        .command("initdb")
        .arg("-D")
        .arg(pg.data())
        .args([
            "-U",
            "switchyard",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.start().await;
    Some(pg)
}

fn config(sim: &str, url: &str, data_dir: &Path) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  master_key: {KEY}
  data_dir: "{}"
providers:
  - {{name: p-openai, kind: openai, base_url: "{sim}/v1", api_key: sk-upstream}}
models:
  - alias: shared
    deployments:
      - {{provider: p-openai, model: shared-model, price: {{input_per_mtok: 2.5, output_per_mtok: 10}}}}
store:
  url: "{url}"
"#,
        data_dir.display()
    )
}

/// A gateway on the shared store, with its own data directory.
async fn replica(sim: &str, url: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let text = config(sim, url, dir.path());
    Gateway::start_in(&text, dir).await
}

/// Polls `path` on `gw` until `done` holds for its answer (about ten seconds at most).
async fn eventually(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = get(http, gw, path).await;
        if status == 200 && done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never came right; last answer: {last}");
}

#[tokio::test]
async fn replicas_share_records_reports_and_changes_through_postgres() {
    let Some(pg) = start_postgres().await else {
        return;
    };
    let sim = start_sim(SimConfig::default()).await;
    let a = replica(&sim.base_url(), &pg.url).await;
    let b = replica(&sim.base_url(), &pg.url).await;
    let http = client();

    // A key made through A is known to B within its poll, and works there.
    let (status, made) = post(&http, &a, "/admin/keys", KEY, &json!({"name": "both"})).await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    eventually(&http, &b, &format!("/admin/keys/{id}"), |_| true).await;

    // Three requests through A and two through B.
    let body = chat("shared", "Who keeps the books?");
    for gw in [&a, &a, &a, &b, &b] {
        let (status, answer) = post(&http, gw, "/v1/chat/completions", &key, &body).await;
        assert_eq!(status, 200, "{answer}");
    }

    // Each replica lists all five records, whichever replica wrote them.
    let path = format!("/admin/requests?key={id}");
    let on_a = eventually(&http, &a, &path, |r| {
        r["data"].as_array().unwrap().len() == 5
    })
    .await;
    let on_b = eventually(&http, &b, &path, |r| {
        r["data"].as_array().unwrap().len() == 5
    })
    .await;
    assert_eq!(on_a["data"], on_b["data"]);
    let record_id = on_a["data"][4]["id"].as_str().unwrap().to_owned();
    let (status, one) = get(&http, &b, &format!("/admin/requests/{record_id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["caller"]["key_id"], id.as_str());
    let cost: i64 = on_a["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cost_nanos"].as_i64().unwrap())
        .sum();
    assert!(cost > 0);

    // Feedback on a request is one score, whichever replica takes it.
    let score = json!({"request_id": record_id, "metric": "helpful", "value": true});
    let (status, first) = post(&http, &a, "/v1/feedback", KEY, &score).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["replaced"], false, "{first}");
    let (status, again) = post(&http, &b, "/v1/feedback", KEY, &score).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["replaced"], true, "{again}");

    // The spend report sums both replicas' requests, by key and by day.
    for gw in [&a, &b] {
        let (status, report) = get(&http, gw, "/admin/spend?by=key&bucket=day").await;
        assert_eq!(status, 200, "{report}");
        let rows: Vec<&Value> = report["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == id.as_str())
            .collect();
        assert_eq!(rows.len(), 1, "{report}");
        assert_eq!(rows[0]["requests"], 5);
        assert_eq!(rows[0]["cost_nanos"], cost);
        assert_eq!(rows[0]["bucket"].as_str().unwrap().len(), 10, "YYYY-MM-DD");
    }
    let (_, by_tag) = get(&http, &b, "/admin/spend?by=tag:none").await;
    assert_eq!(by_tag["data"][0]["group"], Value::Null, "{by_tag}");

    // The audit log is one log: A's change shows on B.
    let (status, audit) = get(&http, &b, "/admin/audit").await;
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entity_id"] == id.as_str() && e["action"] == "create"),
        "{audit}"
    );

    // A configuration version made through A serves requests on B.
    let (status, version) = post(
        &http,
        &a,
        "/admin/configs",
        KEY,
        &json!({"name": "support", "target": "shared", "labels": ["production"],
                "template": {"system": "You answer for the shared desk."}}),
    )
    .await;
    assert_eq!(status, 201, "{version}");
    let mut served = None;
    for _ in 0..100 {
        let (status, _, headers) = send_to(
            &http,
            &b,
            reqwest::Method::POST,
            "/v1/chat/completions",
            KEY,
            Some(&chat("support", "Hello")),
            &[("x-switchyard-config", "support")],
        )
        .await;
        if status == 200 {
            served = headers
                .get("x-switchyard-config")
                .map(|v| v.to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served.as_deref(), Some("support@1"));
    let (status, changes) = get(&http, &b, "/admin/changelog?config=support").await;
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["data"][0]["subject"], "support", "{changes}");

    // Evaluation datasets are one set too.
    let (status, dataset) = post(
        &http,
        &a,
        "/admin/datasets",
        KEY,
        &json!({"name": "desk", "items": [{"input": "Hello"}, {"input": "Bye"}]}),
    )
    .await;
    assert_eq!(status, 201, "{dataset}");
    let (status, listed) = get(&http, &b, "/admin/datasets").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"][0]["name"], "desk", "{listed}");
    assert_eq!(listed["data"][0]["item_count"], 2, "{listed}");
    // A run started on B over it is followed, item by item, from A.
    let (status, run) = post(
        &http,
        &b,
        "/admin/evals",
        KEY,
        &json!({"dataset": "desk", "targets": [{"model": "shared"}],
                "scorers": [{"type": "exact_match", "name": "exact"}]}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap();
    let done = eventually(&http, &a, &format!("/admin/evals/{run_id}"), |r| {
        r["status"] == "completed"
    })
    .await;
    assert_eq!(done["total"], 2, "{done}");
    assert!(
        done["heartbeat_at_ms"].as_i64().is_some(),
        "its replica said it ran it: {done}"
    );
    let (status, items) = get(&http, &a, &format!("/admin/evals/{run_id}/items")).await;
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["data"].as_array().unwrap().len(), 2, "{items}");

    // A request whose attempt failed is found by the failing deployment, on either replica.
    let r = http
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!([{"model": "shared-model", "fault": "status=500", "times": 1}]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (status, _) = post(&http, &a, "/v1/chat/completions", &key, &body).await;
    assert!(status == 200 || status == 502, "{status}");
    let failed = eventually(
        &http,
        &b,
        &format!("/admin/requests?failed_deployment=p-openai/shared-model&key={id}"),
        |r| !r["data"].as_array().unwrap().is_empty(),
    )
    .await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 1, "{failed}");
    drop(pg);
}

#[tokio::test]
async fn records_written_while_postgres_is_down_arrive_when_it_is_back() {
    let Some(mut pg) = start_postgres().await else {
        return;
    };
    let sim = start_sim(SimConfig::default()).await;
    let gw = replica(&sim.base_url(), &pg.url).await;
    let http = client();

    pg.stop();
    let body = chat("shared", "Is anyone keeping the books?");
    for _ in 0..6 {
        let (status, answer) = post(&http, &gw, "/v1/chat/completions", KEY, &body).await;
        assert_eq!(status, 200, "answered while the store is down: {answer}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, down) = get(&http, &gw, "/admin/requests").await;
    assert_eq!(status, 503, "{down}");
    assert_eq!(down["error"]["code"], "store_unavailable", "{down}");

    assert!(metrics_come_to_say(&http, &gw, "switchyard_store_up 0").await);

    pg.start().await;
    assert!(metrics_come_to_say(&http, &gw, "switchyard_store_up 1").await);
    let listed = eventually(&http, &gw, "/admin/requests?alias=shared", |r| {
        r["data"].as_array().unwrap().len() == 6
    })
    .await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200)
    );
}

#[tokio::test]
async fn a_replica_that_cannot_reach_postgres_does_not_start_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://switchyard:hunter2-secret@127.0.0.1:{port}/switchyard");
    let text = config("http://127.0.0.1:9", &url, dir.path());
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("cannot open the store"), "{said}");
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}

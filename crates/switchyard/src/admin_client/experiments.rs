//! `switchyard configs …`, `switchyard experiments …` and `switchyard feedback`: configuration
//! versions, labels and diffs, experiments and their results, the change log, and feedback,
//! through a running gateway's admin API.

use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{Api, Connection, Table, runtime, time_of, usd};

#[derive(Subcommand, Debug)]
pub enum ConfigsCommand {
    /// Create the next version of a configuration (the first version creates it).
    Create(CreateConfig),
    /// List configurations with their latest version and labels.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a configuration's versions, or one version (`--version 3`, `--version production`).
    Show {
        name: String,
        #[arg(long)]
        version: Option<String>,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print what changed between two versions (numbers or labels; `to` defaults to latest).
    Diff {
        name: String,
        from: String,
        to: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Point a label (e.g. `production`) at a version.
    Label {
        name: String,
        label: String,
        version: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the change log of one configuration (or of all).
    Log {
        name: Option<String>,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Args, Debug)]
pub struct CreateConfig {
    pub name: String,
    /// The model alias requests are sent to.
    #[arg(long)]
    pub target: Option<String>,
    /// System prompt; `{{variable}}` placeholders are filled from the request.
    #[arg(long)]
    pub system: Option<String>,
    /// A template message `ROLE:TEXT` (role system, user or assistant); repeat for several.
    #[arg(long = "message")]
    pub messages: Vec<String>,
    /// A parameter default `NAME=VALUE` (temperature, top_p, max_tokens, stop, seed, …).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// A parameter requests may not change; repeat for several.
    #[arg(long = "lock")]
    pub locked: Vec<String>,
    /// A label to point at the new version (e.g. production); repeat for several.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// A JSON file with the version's fields (`target`, `parameters`, `template` …); flags
    /// given as well override it.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Subcommand, Debug)]
pub enum ExperimentsCommand {
    /// Start an experiment splitting a configuration's traffic between versions.
    Create(CreateExperiment),
    /// List experiments.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print an experiment's per-variant results, metrics and verdict.
    Show {
        id: String,
        /// From this time on: Unix milliseconds or a span ago like 24h, 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop assigning variants for now (requests get the production or latest version).
    Pause {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Assign variants again.
    Resume {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// End the experiment for good.
    Stop {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Make a variant's version production and stop the experiment.
    Promote {
        id: String,
        variant: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Export the results to an MLflow tracking server: a parent run and one run per variant.
    Export {
        id: String,
        /// The tracking server's URL, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        mlflow: String,
        #[arg(long, default_value = "switchyard-experiments")]
        experiment: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the change log of one experiment (or of all).
    Log {
        id: Option<String>,
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Args, Debug)]
pub struct CreateExperiment {
    /// The configuration whose traffic is split.
    #[arg(long)]
    pub config: String,
    /// A variant `NAME=VERSION:SHARE` (VERSION a number or label, or `CONFIG@VERSION` for
    /// another configuration; SHARE in percent); the first is the control. Repeat for each.
    #[arg(long = "variant", required = true)]
    pub variants: Vec<String>,
    /// customer, key, session or request.
    #[arg(long, default_value = "customer")]
    pub unit: String,
    /// A metric `NAME:KIND[:GOAL]` (KIND boolean, numeric or categorical; GOAL increase or
    /// decrease). Repeat for several.
    #[arg(long = "metric")]
    pub metrics: Vec<String>,
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Args, Debug)]
pub struct FeedbackArgs {
    /// The request id (the `x-request-id` response header).
    #[arg(long, conflicts_with = "session")]
    pub request: Option<String>,
    /// A session id (the `x-switchyard-session-id` request header).
    #[arg(long)]
    pub session: Option<String>,
    #[arg(long)]
    pub metric: String,
    /// `true`/`false`, a number, or a category.
    #[arg(long)]
    pub value: String,
    #[arg(long)]
    pub comment: Option<String>,
    #[arg(long)]
    pub source: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

/// A command-line value as JSON: booleans and numbers as such, anything else as text.
fn scalar(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Array(_))) => v,
        _ => Value::String(text.to_owned()),
    }
}

fn config_body(c: &CreateConfig) -> anyhow::Result<Value> {
    let mut body: Map<String, Value> = match &c.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            match serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
            {
                Value::Object(m) => m,
                _ => bail!("{} must hold a JSON object", path.display()),
            }
        }
        None => Map::new(),
    };
    body.insert("name".into(), json!(c.name));
    if let Some(t) = &c.target {
        body.insert("target".into(), json!(t));
    }
    if c.system.is_some() || !c.messages.is_empty() {
        let mut messages = Vec::new();
        for m in &c.messages {
            let (role, text) = m
                .split_once(':')
                .ok_or_else(|| anyhow!("--message '{m}' must be ROLE:TEXT"))?;
            messages.push(json!({"role": role.trim(), "content": text}));
        }
        let mut template = Map::new();
        if let Some(s) = &c.system {
            template.insert("system".into(), json!(s));
        }
        if !messages.is_empty() {
            template.insert("messages".into(), Value::Array(messages));
        }
        body.insert("template".into(), Value::Object(template));
    }
    if !c.params.is_empty() {
        let mut params = Map::new();
        for p in &c.params {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("--param '{p}' must be NAME=VALUE"))?;
            params.insert(k.trim().to_owned(), scalar(v.trim()));
        }
        body.insert("parameters".into(), Value::Object(params));
    }
    if !c.locked.is_empty() {
        body.insert("locked".into(), json!(c.locked));
    }
    if !c.labels.is_empty() {
        body.insert("labels".into(), json!(c.labels));
    }
    if !c.description.is_empty() {
        body.insert("description".into(), json!(c.description));
    }
    Ok(Value::Object(body))
}

fn experiment_body(c: &CreateExperiment) -> anyhow::Result<Value> {
    let mut variants = Vec::new();
    for v in &c.variants {
        let (name, rest) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("--variant '{v}' must be NAME=VERSION:SHARE"))?;
        let (version, share) = rest
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("--variant '{v}' must be NAME=VERSION:SHARE"))?;
        let share: f64 = share
            .trim()
            .parse()
            .map_err(|_| anyhow!("--variant '{v}': the share '{share}' is not a number"))?;
        let mut variant = json!({"name": name.trim(), "share": share});
        match version.split_once('@') {
            Some((config, version)) => {
                variant["config"] = json!(config.trim());
                variant["version"] = scalar(version.trim());
            }
            None => variant["version"] = scalar(version.trim()),
        }
        variants.push(variant);
    }
    let mut metrics = Vec::new();
    for m in &c.metrics {
        let mut parts = m.split(':');
        let name = parts.next().unwrap_or_default();
        let kind = parts
            .next()
            .ok_or_else(|| anyhow!("--metric '{m}' must be NAME:KIND[:GOAL]"))?;
        let mut metric = json!({"name": name, "kind": kind});
        if let Some(goal) = parts.next() {
            metric["goal"] = json!(goal);
        }
        metrics.push(metric);
    }
    let mut body = json!({
        "config": c.config,
        "unit": c.unit,
        "variants": variants,
        "metrics": metrics,
        "description": c.description,
    });
    if let Some(id) = &c.id {
        body["id"] = json!(id);
    }
    if let Some(name) = &c.name {
        body["name"] = json!(name);
    }
    Ok(body)
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |f| format!("{f:.digits$}"))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |f| format!("{:.1} %", f * 100.0))
}

fn print_version(v: &Value) {
    println!(
        "{}@{}  target {}  labels [{}]",
        s(&v["name"]),
        s(&v["version"]),
        s(&v["target"]),
        v["labels"]
            .as_array()
            .map(|l| l.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    println!(
        "  by {} at {}: {}",
        s(&v["author"]),
        v["created_at_ms"]
            .as_i64()
            .map_or_else(|| "-".into(), time_of),
        s(&v["description"])
    );
    if let Some(p) = v["parameters"].as_object().filter(|p| !p.is_empty()) {
        println!("  parameters: {}", Value::Object(p.clone()));
    }
    if let Some(l) = v["locked"].as_array().filter(|l| !l.is_empty()) {
        println!(
            "  locked: {}",
            l.iter().map(s).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(system) = v["template"]["system"].as_str() {
        println!("  system: {system}");
    }
    for m in v["template"]["messages"].as_array().into_iter().flatten() {
        println!("  {}: {}", s(&m["role"]), s(&m["content"]));
    }
    if let Some(vars) = v["variables"].as_array().filter(|l| !l.is_empty()) {
        println!(
            "  variables: {}",
            vars.iter().map(s).collect::<Vec<_>>().join(", ")
        );
    }
}

fn print_changelog(page: &Value) {
    let mut t = Table::new(&[
        ("TIME", false),
        ("ACTOR", false),
        ("KIND", false),
        ("SUBJECT", false),
        ("ACTION", false),
        ("DESCRIPTION", false),
    ]);
    let mut entries: Vec<&Value> = page["data"].as_array().into_iter().flatten().collect();
    entries.reverse();
    for e in entries {
        t.push(vec![
            e["at_ms"].as_i64().map_or_else(|| "-".into(), time_of),
            s(&e["actor"]),
            s(&e["kind"]),
            s(&e["subject"]),
            s(&e["action"]),
            s(&e["description"]),
        ]);
    }
    print!("{}", t.render());
}

fn print_results(r: &Value) {
    let e = &r["experiment"];
    println!(
        "experiment {} ({}) on configuration {} by {}: {} requests",
        s(&e["id"]),
        s(&e["status"]),
        s(&e["config"]),
        s(&e["unit"]),
        s(&r["requests"])
    );
    let mut t = Table::new(&[
        ("VARIANT", false),
        ("VERSION", false),
        ("SHARE", true),
        ("OBSERVED", true),
        ("REQUESTS", true),
        ("ERROR_RATE", true),
        ("P50_MS", true),
        ("P95_MS", true),
        ("COST/REQ_USD", true),
        ("TOKENS_IN/OUT", true),
    ]);
    for v in r["variants"].as_array().into_iter().flatten() {
        t.push(vec![
            s(&v["name"]),
            format!("{}@{}", s(&v["config"]), s(&v["version"])),
            format!("{} %", num(&v["share"], 2)),
            format!("{} %", num(&v["observed_share"], 2)),
            s(&v["requests"]),
            pct(&v["error_rate"]),
            num(&v["latency_ms"]["p50"], 1),
            num(&v["latency_ms"]["p95"], 1),
            v["cost_per_request_nanos"]
                .as_i64()
                .map_or_else(|| "-".into(), usd),
            format!(
                "{}/{}",
                num(&v["mean_input_tokens"], 1),
                num(&v["mean_output_tokens"], 1)
            ),
        ]);
    }
    print!("{}", t.render());
    let srm = &r["sample_ratio"];
    println!(
        "sample ratio: chi-square {}, p {}: {}",
        num(&srm["chi_square"], 3),
        num(&srm["p_value"], 4),
        if srm["mismatch"].as_bool().unwrap_or(false) {
            "MISMATCH"
        } else {
            "ok"
        }
    );
    let metrics = r["metrics"].as_array().cloned().unwrap_or_default();
    if !metrics.is_empty() {
        println!();
        let mut t = Table::new(&[
            ("METRIC", false),
            ("KIND", false),
            ("VARIANT", false),
            ("N", true),
            ("VALUE", true),
            ("95%_CI", false),
            ("P_VS_CONTROL", true),
        ]);
        for m in &metrics {
            let p_of = |variant: &Value| {
                m["comparisons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| &c["variant"] == variant)
                    .map_or_else(|| "-".to_owned(), |c| num(&c["p_value"], 4))
            };
            for v in m["variants"].as_array().into_iter().flatten() {
                let value = match m["kind"].as_str() {
                    Some("boolean") => num(&v["rate"], 3),
                    Some("numeric") => num(&v["mean"], 3),
                    _ => s(&v["counts"]),
                };
                let ci = v["ci95"].as_array().map_or_else(
                    || "-".to_owned(),
                    |c| format!("[{}, {}]", num(&c[0], 3), num(&c[1], 3)),
                );
                t.push(vec![
                    s(&m["name"]),
                    s(&m["kind"]),
                    s(&v["name"]),
                    s(&v["n"]),
                    value,
                    ci,
                    p_of(&v["name"]),
                ]);
            }
        }
        print!("{}", t.render());
    }
    println!();
    for v in r["verdicts"].as_array().into_iter().flatten() {
        println!("verdict: {}", s(v));
    }
}

async fn configs(command: ConfigsCommand) -> anyhow::Result<()> {
    match command {
        ConfigsCommand::Create(c) => {
            let body = config_body(&c)?;
            let v = Api::new(&c.conn)?.post("/admin/configs", &body).await?;
            if v["created"].as_bool() == Some(false) {
                println!("unchanged: identical to the latest version");
            }
            print_version(&v);
        }
        ConfigsCommand::List { conn } => {
            let page = Api::new(&conn)?.get("/admin/configs", &[]).await?;
            let mut t = Table::new(&[
                ("NAME", false),
                ("LATEST", true),
                ("TARGET", false),
                ("LABELS", false),
                ("EXPERIMENT", false),
                ("UPDATED", false),
            ]);
            for c in page["data"].as_array().into_iter().flatten() {
                let labels = c["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                t.push(vec![
                    s(&c["name"]),
                    s(&c["latest_version"]),
                    s(&c["target"]),
                    if labels.is_empty() {
                        "-".into()
                    } else {
                        labels
                    },
                    s(&c["experiment"]),
                    c["updated_at_ms"]
                        .as_i64()
                        .map_or_else(|| "-".into(), time_of),
                ]);
            }
            print!("{}", t.render());
        }
        ConfigsCommand::Show {
            name,
            version,
            json,
            conn,
        } => {
            let api = Api::new(&conn)?;
            let v = match &version {
                Some(v) => {
                    api.get(&format!("/admin/configs/{name}/versions/{v}"), &[])
                        .await?
                }
                None => api.get(&format!("/admin/configs/{name}"), &[]).await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if version.is_some() {
                print_version(&v);
            } else {
                for version in v["versions"].as_array().into_iter().flatten() {
                    print_version(version);
                    println!();
                }
            }
        }
        ConfigsCommand::Diff {
            name,
            from,
            to,
            conn,
        } => {
            let mut q = vec![("from", from)];
            if let Some(t) = to {
                q.push(("to", t));
            }
            let d = Api::new(&conn)?
                .get(&format!("/admin/configs/{name}/diff"), &q)
                .await?;
            println!("{}: version {} → {}", name, s(&d["from"]), s(&d["to"]));
            let changes = d["changes"].as_array().cloned().unwrap_or_default();
            if changes.is_empty() {
                println!("  no differences");
            }
            for c in changes {
                println!("  {}", s(&c["path"]));
                println!("    - {}", c["before"]);
                println!("    + {}", c["after"]);
            }
        }
        ConfigsCommand::Label {
            name,
            label,
            version,
            conn,
        } => {
            let body = json!({"label": label, "version": scalar(&version)});
            let c = Api::new(&conn)?
                .post(&format!("/admin/configs/{name}/labels"), &body)
                .await?;
            println!("{name}: {label} → version {}", s(&c["labels"][&label]));
        }
        ConfigsCommand::Log { name, limit, conn } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(n) = name {
                q.push(("config", n));
            }
            print_changelog(&Api::new(&conn)?.get("/admin/changelog", &q).await?);
        }
    }
    Ok(())
}

async fn experiments(command: ExperimentsCommand) -> anyhow::Result<()> {
    match command {
        ExperimentsCommand::Create(c) => {
            let body = experiment_body(&c)?;
            let e = Api::new(&c.conn)?.post("/admin/experiments", &body).await?;
            println!("created experiment {} ({})", s(&e["id"]), s(&e["status"]));
        }
        ExperimentsCommand::List { conn } => {
            let page = Api::new(&conn)?.get("/admin/experiments", &[]).await?;
            let mut t = Table::new(&[
                ("ID", false),
                ("NAME", false),
                ("CONFIG", false),
                ("UNIT", false),
                ("STATUS", false),
                ("VARIANTS", false),
                ("CREATED", false),
            ]);
            for e in page["data"].as_array().into_iter().flatten() {
                let variants: Vec<String> = e["variants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        format!(
                            "{}={}@{}:{}%",
                            s(&v["name"]),
                            s(&v["config"]),
                            s(&v["version"]),
                            v["share_bp"].as_f64().unwrap_or(0.0) / 100.0
                        )
                    })
                    .collect();
                t.push(vec![
                    s(&e["id"]),
                    s(&e["name"]),
                    s(&e["config"]),
                    s(&e["unit"]),
                    s(&e["status"]),
                    variants.join(" "),
                    e["created_at_ms"]
                        .as_i64()
                        .map_or_else(|| "-".into(), time_of),
                ]);
            }
            print!("{}", t.render());
        }
        ExperimentsCommand::Show {
            id,
            since,
            until,
            json,
            conn,
        } => {
            let mut q = Vec::new();
            if let Some(v) = since {
                q.push(("since", v));
            }
            if let Some(v) = until {
                q.push(("until", v));
            }
            let r = Api::new(&conn)?
                .get(&format!("/admin/experiments/{id}/results"), &q)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_results(&r);
            }
        }
        ExperimentsCommand::Pause { id, conn } => transition(&conn, &id, "pause").await?,
        ExperimentsCommand::Resume { id, conn } => transition(&conn, &id, "resume").await?,
        ExperimentsCommand::Stop { id, conn } => transition(&conn, &id, "stop").await?,
        ExperimentsCommand::Promote { id, variant, conn } => {
            let e = Api::new(&conn)?
                .post(
                    &format!("/admin/experiments/{id}/promote"),
                    &json!({"variant": variant}),
                )
                .await?;
            println!(
                "promoted {variant}: {}@{} is production; experiment {id} is {}",
                s(&e["production"]["config"]),
                s(&e["production"]["version"]),
                s(&e["status"])
            );
        }
        ExperimentsCommand::Export {
            id,
            mlflow,
            experiment,
            conn,
        } => {
            let out = Api::new(&conn)?
                .post(
                    &format!("/admin/experiments/{id}/export/mlflow"),
                    &json!({"tracking_uri": mlflow, "experiment": experiment}),
                )
                .await?;
            let runs: Vec<&str> = out["run_ids"]
                .as_array()
                .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "exported {id} to MLflow experiment {experiment} (id {}): parent run {}, variant runs {}",
                s(&out["experiment_id"]),
                s(&out["parent_run_id"]),
                runs.join(", ")
            );
        }
        ExperimentsCommand::Log { id, limit, conn } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(i) = id {
                q.push(("experiment", i));
            }
            print_changelog(&Api::new(&conn)?.get("/admin/changelog", &q).await?);
        }
    }
    Ok(())
}

async fn transition(conn: &Connection, id: &str, action: &str) -> anyhow::Result<()> {
    let e = Api::new(conn)?
        .post(&format!("/admin/experiments/{id}/{action}"), &json!({}))
        .await?;
    println!("experiment {id} is {}", s(&e["status"]));
    Ok(())
}

/// `switchyard configs …`
pub fn configs_command(command: ConfigsCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(configs(command))?;
    Ok(ExitCode::SUCCESS)
}

/// `switchyard experiments …`
pub fn experiments_command(command: ExperimentsCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(experiments(command))?;
    Ok(ExitCode::SUCCESS)
}

/// `switchyard feedback …`
pub fn feedback_command(args: FeedbackArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({"metric": args.metric, "value": scalar(&args.value)});
    match (&args.request, &args.session) {
        (Some(r), _) => body["request_id"] = json!(r),
        (None, Some(s)) => body["session_id"] = json!(s),
        (None, None) => bail!("pass --request ID or --session ID"),
    }
    if let Some(c) = &args.comment {
        body["comment"] = json!(c);
    }
    if let Some(src) = &args.source {
        body["source"] = json!(src);
    }
    let out =
        runtime()?.block_on(async { Api::new(&args.conn)?.post("/v1/feedback", &body).await })?;
    println!(
        "{} {} = {}{}",
        if out["replaced"].as_bool().unwrap_or(false) {
            "replaced"
        } else {
            "recorded"
        },
        s(&out["metric"]),
        out["value"],
        out.get("request_id")
            .or_else(|| out.get("session_id"))
            .map_or_else(String::new, |t| format!(" on {}", s(t)))
    );
    Ok(ExitCode::SUCCESS)
}

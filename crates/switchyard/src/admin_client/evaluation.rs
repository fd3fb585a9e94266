//! `switchyard datasets …` and `switchyard eval …`: upload and list datasets, start evaluation
//! runs and follow their progress, show results, compare two runs (or two targets of one run)
//! side by side, resume, and export to MLflow — all over the admin API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{Api, Connection, Filters, Table, runtime, usd};

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum DatasetsCommand {
    /// Upload a JSONL dataset (one item per line; see docs/evaluation.md).
    Create {
        /// The JSONL file.
        file: std::path::PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Build a dataset from stored request records (prompts as stored: masked by default).
    FromRequests {
        #[arg(long)]
        name: String,
        /// Most records taken, newest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Do not use the recorded responses as expected outputs.
        #[arg(long)]
        no_expected: bool,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        conn: Connection,
    },
    /// List datasets.
    List {
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum EvalCommand {
    /// Start an evaluation run and print its progress until it is done.
    Run(RunArgs),
    /// List evaluation runs, newest first.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a run's status and aggregates (and with --items, every item's result).
    Show {
        run: String,
        #[arg(long)]
        items: bool,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Compare run B against run A: aggregates side by side and the items whose scores differ.
    /// With one run of two targets, compares its second target against its first.
    Compare {
        a: String,
        b: Option<String>,
        /// Target of A (index from 0 or label like model:ALIAS) when A has several.
        #[arg(long)]
        target_a: Option<String>,
        #[arg(long)]
        target_b: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Continue an interrupted run: only items without a result are sent.
    Resume {
        run: String,
        /// Also run the items whose request failed again.
        #[arg(long)]
        retry_errors: bool,
        /// Return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Export a run to an MLflow tracking server: a parent run and one run per target.
    Export {
        run: String,
        /// The tracking server's URL, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        mlflow: String,
        #[arg(long, default_value = "switchyard-evals")]
        experiment: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Dataset name or id.
    #[arg(long)]
    pub dataset: String,
    /// `model:ALIAS` or `config:NAME@VERSION`; repeat for several.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// `exact_match[:normalized]`, `contains[:TEXT]`, `regex:PATTERN`,
    /// `json_schema[:@FILE|:JSON]`, `numeric[:ABS_TOL]`, `llm_judge:ALIAS`, or a JSON spec.
    #[arg(long = "scorer", required = true)]
    pub scorers: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Return at once with the run id instead of following the progress.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// A `--target` flag as the API takes it.
pub fn target_spec(flag: &str) -> anyhow::Result<Value> {
    match flag.split_once(':') {
        Some(("model", alias)) if !alias.is_empty() => Ok(json!({"model": alias})),
        Some(("config", reference)) if !reference.is_empty() => Ok(json!({"config": reference})),
        _ => bail!("--target must be model:ALIAS or config:NAME@VERSION, not '{flag}'"),
    }
}

/// A `--scorer` flag as the API takes it.
pub fn scorer_spec(flag: &str) -> anyhow::Result<Value> {
    if flag.trim_start().starts_with('{') {
        return serde_json::from_str(flag)
            .with_context(|| format!("--scorer '{flag}' is not JSON"));
    }
    let (kind, arg) = match flag.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (flag, None),
    };
    Ok(match (kind, arg) {
        ("exact_match", None) => json!({"type": "exact_match"}),
        ("exact_match", Some("normalized")) => {
            json!({"type": "exact_match", "ignore_case": true, "normalize_whitespace": true})
        }
        ("contains", None) => json!({"type": "contains"}),
        ("contains", Some(text)) => json!({"type": "contains", "value": text}),
        ("regex", Some(pattern)) => json!({"type": "regex", "pattern": pattern}),
        ("json_schema", None) => json!({"type": "json_schema"}),
        ("json_schema", Some(schema)) => {
            let text = match schema.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the schema file {path}"))?,
                None => schema.to_owned(),
            };
            let schema: Value =
                serde_json::from_str(&text).context("the JSON schema is not valid JSON")?;
            json!({"type": "json_schema", "schema": schema})
        }
        ("numeric", None) => json!({"type": "numeric"}),
        ("numeric", Some(tol)) => {
            let tol: f64 = tol
                .parse()
                .map_err(|_| anyhow!("numeric:TOL needs a number, not '{tol}'"))?;
            json!({"type": "numeric", "abs_tol": tol})
        }
        ("llm_judge", Some(alias)) => json!({"type": "llm_judge", "model": alias}),
        _ => bail!(
            "--scorer '{flag}' is not one of exact_match[:normalized], contains[:TEXT], regex:PATTERN, json_schema[:@FILE], numeric[:TOL], llm_judge:ALIAS or a JSON spec"
        ),
    })
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |f| format!("{:.1}%", f * 100.0))
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |f| format!("{f:.digits$}"))
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    let mut out: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        out.push('…');
    }
    out
}

/// The aggregates of a run (or of a comparison) as a table: one row per target.
pub fn aggregates_table(aggregates: &[Value]) -> String {
    let scorers: Vec<String> = aggregates
        .first()
        .and_then(|a| a["scores"].as_object())
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    let mut columns: Vec<(String, bool)> = vec![
        ("TARGET".into(), false),
        ("DONE".into(), true),
        ("ERRORS".into(), true),
        ("PASS_RATE".into(), true),
    ];
    // One column per scorer, headed by its name: the mean score.
    for name in &scorers {
        columns.push((name.to_uppercase(), true));
    }
    for h in ["P50_MS", "P95_MS", "COST_USD"] {
        columns.push((h.into(), true));
    }
    let mut t = Table::with_columns(columns);
    for a in aggregates {
        let mut row = vec![
            a["label"].as_str().unwrap_or("-").to_owned(),
            format!("{}/{}", a["done"], a["items"]),
            a["errors"].to_string(),
            pct(&a["pass_rate"]),
        ];
        for name in &scorers {
            row.push(num(&a["scores"][name]["mean"], 3));
        }
        row.push(num(&a["latency_p50_ms"], 1));
        row.push(num(&a["latency_p95_ms"], 1));
        row.push(usd(a["cost_nanos"].as_i64().unwrap_or(0)));
        t.push(row);
    }
    let mut out = t.render();
    if !scorers.is_empty() {
        out.push_str("(scorer columns: mean score)\n");
    }
    out
}

/// `eval show` without --json.
pub fn describe_run(run: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<10}{v}\n"));
    line("run", run["id"].as_str().unwrap_or("-").to_owned());
    if let Some(n) = run["name"].as_str() {
        line("name", n.to_owned());
    }
    line(
        "dataset",
        format!(
            "{} ({})",
            run["dataset"]["name"].as_str().unwrap_or("-"),
            run["dataset_id"].as_str().unwrap_or("-")
        ),
    );
    line("status", run["status"].as_str().unwrap_or("-").to_owned());
    if let Some(e) = run["error"].as_str() {
        line("error", e.to_owned());
    }
    line(
        "progress",
        format!("{}/{}", run["progress"]["done"], run["progress"]["total"]),
    );
    out.push('\n');
    out.push_str(&aggregates_table(
        run["aggregates"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    ));
    out
}

/// Per-item results as a table.
pub fn items_table(items: &[Value]) -> String {
    let mut t = Table::new(&[
        ("ITEM", false),
        ("TARGET", false),
        ("PASSED", false),
        ("SCORES", false),
        ("LATENCY_MS", true),
        ("OUTPUT / ERROR", false),
    ]);
    for r in items {
        let scores: Vec<String> = r["scores"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, s)| match (&s["score"], &s["error"]) {
                        (Value::Number(n), _) => format!("{k}={n}"),
                        (_, Value::String(_)) => format!("{k}=error"),
                        _ => format!("{k}=n/a"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let text = match r["error"].as_str() {
            Some(e) => format!("ERROR {}: {e}", r["error_code"].as_str().unwrap_or("")),
            None => r["output"].as_str().unwrap_or("").to_owned(),
        };
        t.push(vec![
            r["item_id"].as_str().unwrap_or("-").to_owned(),
            r["target_label"].as_str().unwrap_or("-").to_owned(),
            if r["passed"] == true { "yes" } else { "no" }.to_owned(),
            scores.join(" "),
            num(&r["latency_ms"], 1),
            short(&text, 60),
        ]);
    }
    t.render()
}

/// `eval compare` without --json.
pub fn describe_comparison(c: &Value) -> String {
    let a = &c["a"];
    let b = &c["b"];
    let mut out = format!(
        "A = {} {}\nB = {} {}\n\n",
        c["run_a"]["id"].as_str().unwrap_or("-"),
        a["label"].as_str().unwrap_or("-"),
        c["run_b"]["id"].as_str().unwrap_or("-"),
        b["label"].as_str().unwrap_or("-"),
    );
    if c["same_dataset"] == false {
        out.push_str("(the runs used different datasets: items are matched by id)\n\n");
    }
    let mut t = Table::new(&[("METRIC", false), ("A", true), ("B", true), ("DELTA", true)]);
    let delta = |k: &str, digits: usize| num(&c["deltas"][k], digits);
    t.push(vec![
        "pass_rate".into(),
        pct(&a["pass_rate"]),
        pct(&b["pass_rate"]),
        delta("pass_rate", 3),
    ]);
    let names: Vec<String> = a["scores"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for n in &names {
        t.push(vec![
            format!("{n} (mean)"),
            num(&a["scores"][n]["mean"], 3),
            num(&b["scores"][n]["mean"], 3),
            delta(&format!("{n}.mean"), 3),
        ]);
    }
    t.push(vec![
        "errors".into(),
        a["errors"].to_string(),
        b["errors"].to_string(),
        c["deltas"]["errors"].to_string(),
    ]);
    for (k, label) in [
        ("latency_p50_ms", "latency p50 ms"),
        ("latency_p95_ms", "latency p95 ms"),
    ] {
        t.push(vec![
            label.into(),
            num(&a[k], 1),
            num(&b[k], 1),
            delta(k, 1),
        ]);
    }
    t.push(vec![
        "cost".into(),
        usd(a["cost_nanos"].as_i64().unwrap_or(0)),
        usd(b["cost_nanos"].as_i64().unwrap_or(0)),
        usd(c["deltas"]["cost_nanos"].as_i64().unwrap_or(0)),
    ]);
    out.push_str(&t.render());
    let diffs = c["differences"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "\n{} of {} common items differ\n",
        diffs.len(),
        c["common_items"]
    ));
    if !diffs.is_empty() {
        let mut t = Table::new(&[
            ("ITEM", false),
            ("SCORER", false),
            ("A", true),
            ("B", true),
            ("OUTPUT A", false),
            ("OUTPUT B", false),
        ]);
        for d in &diffs {
            let output = |i: usize| {
                d["error"][i]
                    .as_str()
                    .map(|e| format!("ERROR {e}"))
                    .or_else(|| d["output"][i].as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let scores = d["scores"].as_object().cloned().unwrap_or_default();
            let rows: Vec<(String, String, String)> = if scores.is_empty() {
                vec![(
                    "(passed)".into(),
                    d["passed"][0].to_string(),
                    d["passed"][1].to_string(),
                )]
            } else {
                scores
                    .iter()
                    .map(|(k, v)| (k.clone(), num(&v[0], 3), num(&v[1], 3)))
                    .collect()
            };
            for (i, (scorer, sa, sb)) in rows.into_iter().enumerate() {
                let first = i == 0;
                t.push(vec![
                    if first {
                        d["item_id"].as_str().unwrap_or("-").to_owned()
                    } else {
                        String::new()
                    },
                    scorer,
                    sa,
                    sb,
                    if first {
                        short(&output(0), 40)
                    } else {
                        String::new()
                    },
                    if first {
                        short(&output(1), 40)
                    } else {
                        String::new()
                    },
                ]);
            }
        }
        out.push_str(&t.render());
    }
    out
}

impl Api {
    /// POSTs a raw body with a content type.
    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("'{}' is not a URL like http://127.0.0.1:4000", self.base))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.key)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        Self::answer(path, response).await
    }
}

/// Polls a run until it stops, printing a line whenever its progress moves.
async fn follow(api: &Api, id: &str) -> anyhow::Result<Value> {
    let mut last = None;
    loop {
        let run = api.get(&format!("/admin/evals/{id}"), &[]).await?;
        let status = run["status"].as_str().unwrap_or("-").to_owned();
        let progress = (
            run["progress"]["done"].as_i64().unwrap_or(0),
            run["progress"]["total"].as_i64().unwrap_or(0),
        );
        if last.as_ref() != Some(&(status.clone(), progress)) {
            println!("{id}: {status} {}/{}", progress.0, progress.1);
            last = Some((status.clone(), progress));
        }
        if !matches!(status.as_str(), "queued" | "running") {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn exit_for(run: &Value) -> ExitCode {
    match run["status"].as_str() {
        Some("completed") => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

async fn datasets(command: DatasetsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatasetsCommand::Create {
            file,
            name,
            description,
            conn,
        } => {
            let api = Api::new(&conn)?;
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut query = vec![("name", name)];
            if let Some(d) = description {
                query.push(("description", d));
            }
            let ds = api
                .post_raw("/admin/datasets", "application/x-ndjson", body, &query)
                .await?;
            println!(
                "created dataset {} ({}) with {} items",
                ds["name"].as_str().unwrap_or("-"),
                ds["id"].as_str().unwrap_or("-"),
                ds["item_count"]
            );
        }
        DatasetsCommand::FromRequests {
            name,
            limit,
            no_expected,
            filters,
            conn,
        } => {
            let api = Api::new(&conn)?;
            let mut filter = Map::new();
            for (k, v) in filters.query() {
                let value = match (k, v.parse::<u64>()) {
                    ("status", Ok(n)) => json!(n),
                    _ => json!(v),
                };
                filter.insert(k.to_owned(), value);
            }
            let body = json!({
                "name": name, "limit": limit, "filter": filter,
                "expected": if no_expected { "none" } else { "response" },
            });
            let ds = api.post("/admin/datasets/from-requests", &body).await?;
            println!(
                "created dataset {} ({}) with {} items ({} records skipped)",
                ds["name"].as_str().unwrap_or("-"),
                ds["id"].as_str().unwrap_or("-"),
                ds["item_count"],
                ds["skipped_records"]
            );
        }
        DatasetsCommand::List { conn } => {
            let api = Api::new(&conn)?;
            let page = api.get("/admin/datasets", &[]).await?;
            let mut t = Table::new(&[
                ("NAME", false),
                ("ID", false),
                ("ITEMS", true),
                ("SOURCE", false),
                ("CREATED", false),
            ]);
            for d in page["data"].as_array().cloned().unwrap_or_default() {
                t.push(vec![
                    d["name"].as_str().unwrap_or("-").to_owned(),
                    d["id"].as_str().unwrap_or("-").to_owned(),
                    d["item_count"].to_string(),
                    d["source"].as_str().unwrap_or("-").to_owned(),
                    super::time_of(d["created_at_ms"].as_i64().unwrap_or(0)),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn eval(command: EvalCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvalCommand::Run(args) => {
            let api = Api::new(&args.conn)?;
            let targets = args
                .targets
                .iter()
                .map(|t| target_spec(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let scorers = args
                .scorers
                .iter()
                .map(|s| scorer_spec(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut body = json!({"dataset": args.dataset, "targets": targets, "scorers": scorers});
            if let Some(n) = args.name {
                body["name"] = json!(n);
            }
            if let Some(c) = args.concurrency {
                body["concurrency"] = json!(c);
            }
            let run = api.post("/admin/evals", &body).await?;
            let id = run["id"].as_str().unwrap_or_default().to_owned();
            println!("started evaluation run {id}");
            if args.no_wait {
                return Ok(ExitCode::SUCCESS);
            }
            let run = follow(&api, &id).await?;
            println!();
            print!("{}", describe_run(&run));
            Ok(exit_for(&run))
        }
        EvalCommand::List { conn } => {
            let api = Api::new(&conn)?;
            let page = api.get("/admin/evals", &[]).await?;
            let mut t = Table::new(&[
                ("RUN", false),
                ("NAME", false),
                ("STATUS", false),
                ("TARGETS", false),
                ("CREATED", false),
            ]);
            for r in page["data"].as_array().cloned().unwrap_or_default() {
                let targets: Vec<String> = r["spec"]["targets"]
                    .as_array()
                    .map(|ts| {
                        ts.iter()
                            .map(|t| match (t["config"].as_str(), t["model"].as_str()) {
                                (Some(c), _) => format!("config:{c}"),
                                (None, Some(m)) => format!("model:{m}"),
                                _ => "-".into(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                t.push(vec![
                    r["id"].as_str().unwrap_or("-").to_owned(),
                    r["name"].as_str().unwrap_or("-").to_owned(),
                    r["status"].as_str().unwrap_or("-").to_owned(),
                    targets.join(", "),
                    super::time_of(r["created_at_ms"].as_i64().unwrap_or(0)),
                ]);
            }
            print!("{}", t.render());
            Ok(ExitCode::SUCCESS)
        }
        EvalCommand::Show {
            run,
            items,
            json,
            conn,
        } => {
            let api = Api::new(&conn)?;
            let value = api.get(&format!("/admin/evals/{run}"), &[]).await?;
            let listed = if items {
                Some(api.get(&format!("/admin/evals/{run}/items"), &[]).await?)
            } else {
                None
            };
            if json {
                let mut out = value;
                if let Some(l) = listed {
                    out["items"] = l["data"].clone();
                }
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                print!("{}", describe_run(&value));
                if let Some(l) = listed {
                    println!();
                    print!(
                        "{}",
                        items_table(l["data"].as_array().map(Vec::as_slice).unwrap_or(&[]))
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EvalCommand::Compare {
            a,
            b,
            target_a,
            target_b,
            json,
            conn,
        } => {
            let api = Api::new(&conn)?;
            let mut query = vec![("a", a.clone()), ("b", b.unwrap_or(a))];
            if let Some(t) = target_a {
                query.push(("a_target", t));
            }
            if let Some(t) = target_b {
                query.push(("b_target", t));
            }
            let c = api.get("/admin/evals/compare", &query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
            } else {
                print!("{}", describe_comparison(&c));
            }
            Ok(ExitCode::SUCCESS)
        }
        EvalCommand::Resume {
            run,
            retry_errors,
            no_wait,
            conn,
        } => {
            let api = Api::new(&conn)?;
            api.post(
                &format!("/admin/evals/{run}/resume"),
                &json!({"retry_errors": retry_errors}),
            )
            .await?;
            println!("resumed evaluation run {run}");
            if no_wait {
                return Ok(ExitCode::SUCCESS);
            }
            let value = follow(&api, &run).await?;
            println!();
            print!("{}", describe_run(&value));
            Ok(exit_for(&value))
        }
        EvalCommand::Export {
            run,
            mlflow,
            experiment,
            conn,
        } => {
            let api = Api::new(&conn)?;
            let out = api
                .post(
                    &format!("/admin/evals/{run}/export/mlflow"),
                    &json!({"tracking_uri": mlflow, "experiment": experiment}),
                )
                .await?;
            println!(
                "exported {run} to MLflow experiment {experiment} (id {}): parent run {}, runs {}",
                out["experiment_id"].as_str().unwrap_or("-"),
                out["parent_run_id"].as_str().unwrap_or("-"),
                out["run_ids"]
                    .as_array()
                    .map(|ids| ids
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `switchyard datasets …`
pub fn datasets_command(command: DatasetsCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(datasets(command))
}

/// `switchyard eval …`
pub fn eval_command(command: EvalCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(eval(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_api_specs() {
        assert_eq!(target_spec("model:fast").unwrap(), json!({"model": "fast"}));
        assert_eq!(
            target_spec("config:support@3").unwrap(),
            json!({"config": "support@3"})
        );
        assert!(target_spec("fast").is_err());
        assert_eq!(
            scorer_spec("regex:^a:b$").unwrap(),
            json!({"type": "regex", "pattern": "^a:b$"})
        );
        assert_eq!(
            scorer_spec("numeric:0.5").unwrap(),
            json!({"type": "numeric", "abs_tol": 0.5})
        );
        assert_eq!(
            scorer_spec("llm_judge:judge").unwrap(),
            json!({"type": "llm_judge", "model": "judge"})
        );
        assert_eq!(
            scorer_spec("{\"type\": \"contains\", \"name\": \"x\"}").unwrap(),
            json!({"type": "contains", "name": "x"})
        );
        assert!(scorer_spec("regex").is_err());
        assert!(scorer_spec("numeric:abc").is_err());
    }
}

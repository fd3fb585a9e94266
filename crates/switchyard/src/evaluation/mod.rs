//! Offline evaluation: datasets of inputs with optional expected outputs, evaluation runs that
//! send every item through the gateway to one or more targets (model aliases or configuration
//! versions), score the outputs and store per-item results, aggregates and comparisons, resume
//! after an interruption, and export to MLflow. Owns its tables (`store.rs`) and the runs in
//! flight; the HTTP surface is `server/evaluation.rs`, the CLI `admin_client/evaluation.rs`.
//! It never touches the request path: its requests enter the gateway like a client's.

pub mod dataset;
pub mod mlflow;
pub mod report;
pub mod runner;
pub mod scorer;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::config::Secret;
use crate::store::{RequestFilter, Store, StoreResult};
use dataset::DatasetItem;
use report::TargetAggregate;
use runner::{RecordWaiters, RunContext};
use scorer::{Scorer, ScorerInput};
use store::{Dataset, EvalStore, ItemResult, Run, RunSpec, Target};

/// Most targets one run may have.
pub const MAX_TARGETS: usize = 16;
/// Default and largest number of items in flight per run.
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 64;
/// Request fields a run's `params` may not set: the runner owns them.
const RESERVED_PARAMS: &[&str] = &["model", "messages", "metadata", "stream", "switchyard"];
/// How often the replica running a run says so in the store.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// A run whose replica has not said so for this long is taken for stopped (its replica went
/// away without shutting down): a starting replica marks it `interrupted`, and it may be
/// resumed anywhere.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// How long shutdown waits for runs to note that they were interrupted.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Why an evaluation call was refused; rendered by the server in the OpenAI error shape.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// 400 `invalid_request`, with the offending field.
    Invalid {
        message: String,
        param: Option<String>,
    },
    /// 404 `dataset_not_found`.
    DatasetNotFound(String),
    /// 404 `eval_run_not_found`.
    RunNotFound(String),
    /// 409 `dataset_exists`.
    DatasetExists(String),
    /// 409 `eval_run_active`.
    RunActive(String),
    /// 502 `mlflow_export_failed`.
    Export(String),
    /// 500 `internal_error`.
    Store(String),
}

pub fn invalid(message: impl Into<String>, param: &str) -> EvalError {
    EvalError::Invalid {
        message: message.into(),
        param: (!param.is_empty()).then(|| param.to_owned()),
    }
}

fn store_error(e: sqlx::Error) -> EvalError {
    EvalError::Store(format!("evaluation store: {e}"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// The evaluation state of the gateway: its tables, the runs in flight and the hook through
/// which runs learn their requests' records.
pub struct Evaluations {
    pub store: EvalStore,
    waiters: Arc<RecordWaiters>,
    active: Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Evaluations {
    /// Opens the tables. Runs left `running` by a previous process become `interrupted`; with a
    /// store other replicas share, only those no replica has said it runs for `STALE_AFTER`,
    /// looked for again every `STALE_AFTER`.
    pub async fn open(store: &Store) -> StoreResult<Arc<Self>> {
        let stale_before = store
            .is_shared()
            .then(|| now_ms() - STALE_AFTER.as_millis() as i64);
        let store = EvalStore::new(store.db().clone());
        let interrupted = store.interrupt_unfinished(stale_before).await?;
        if interrupted > 0 {
            tracing::warn!(
                runs = interrupted,
                "evaluation runs were interrupted by the last stop; POST /admin/evals/{{id}}/resume continues them"
            );
        }
        if stale_before.is_some() {
            // A replica that goes away without shutting down leaves its runs `running`: the
            // others look for such runs as long as they live.
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(STALE_AFTER).await;
                    let before = now_ms() - STALE_AFTER.as_millis() as i64;
                    match store.interrupt_unfinished(Some(before)).await {
                        Ok(0) => {}
                        Ok(runs) => tracing::warn!(
                            runs,
                            "evaluation runs whose replica went away are interrupted; POST /admin/evals/{{id}}/resume continues them"
                        ),
                        Err(e) => tracing::warn!("cannot look for abandoned evaluation runs: {e}"),
                    }
                }
            });
        }
        Ok(Arc::new(Self {
            store,
            waiters: Arc::new(RecordWaiters::default()),
            active: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }))
    }

    /// Sees every request record, to hand runs their requests' tokens and cost.
    pub fn observer(&self) -> Arc<dyn crate::telemetry::RecordObserver> {
        self.waiters.clone()
    }

    pub fn is_active(&self, run_id: &str) -> bool {
        self.active.lock().contains_key(run_id)
    }

    /// Stops every run (each is marked `interrupted`) and waits briefly for them to let go.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("evaluation runs did not stop within 5 s");
        }
    }

    /// Starts (or continues) a run in the background with the caller's key.
    fn spawn(app: Arc<App>, run: Run, scorers: Vec<Scorer>, key: Secret) -> Result<(), EvalError> {
        let evals = app.evaluations.clone();
        let cancel = evals.shutdown.child_token();
        {
            let mut active = evals.active.lock();
            if active.contains_key(&run.id) {
                return Err(EvalError::RunActive(run.id.clone()));
            }
            active.insert(run.id.clone(), cancel.clone());
        }
        let router = crate::server::router(app.clone());
        let background = app.background.clone();
        let ctx = RunContext {
            app,
            router,
            key,
            run,
            scorers,
        };
        evals.tasks.spawn_on(
            async move {
            let id = ctx.run.id.clone();
            let evals = ctx.app.evaluations.clone();
            let heartbeat = {
                let (evals, id) = (evals.clone(), id.clone());
                tokio::spawn(async move {
                    loop {
                        if let Err(e) = evals.store.heartbeat(&id, now_ms()).await {
                            tracing::warn!(run = %id, "cannot note that the run goes on: {e}");
                        }
                        tokio::time::sleep(HEARTBEAT_EVERY).await;
                    }
                })
            };
            let status = tokio::select! {
                outcome = execute(&ctx) => outcome,
                () = cancel.cancelled() => Err(("interrupted", None)),
            };
            heartbeat.abort();
            let (status, error) = match status {
                Ok(()) => ("completed", None),
                Err((s, e)) => (s, e),
            };
            let finished = (status != "interrupted").then(now_ms);
            if let Err(e) = evals
                .store
                .set_status(&id, status, None, finished, error.as_deref())
                .await
            {
                tracing::error!(run = %id, error = %e, "cannot store the status of an evaluation run");
            }
            evals.active.lock().remove(&id);
            tracing::info!(run = %id, status, "evaluation run stopped");
            },
            &background,
        );
        Ok(())
    }
}

/// The body of a run: every pair without a result, item by item across targets.
async fn execute(ctx: &RunContext) -> Result<(), (&'static str, Option<String>)> {
    let store = &ctx.app.evaluations.store;
    let fail = |e: sqlx::Error| ("failed", Some(format!("evaluation store: {e}")));
    store
        .set_status(&ctx.run.id, "running", Some(now_ms()), None, None)
        .await
        .map_err(fail)?;
    let items = store
        .items(&ctx.run.dataset_id, 0, i64::MAX)
        .await
        .map_err(fail)?;
    if items.is_empty() {
        return Err(("failed", Some("the dataset has no items any more".into())));
    }
    let finished = store.finished(&ctx.run.id).await.map_err(fail)?;
    let mut pending = Vec::new();
    for (position, item) in items {
        let item = Arc::new(item);
        for target in 0..ctx.run.spec.targets.len() {
            if !finished.contains(&(target, position)) {
                pending.push((target, position, item.clone()));
            }
        }
    }
    runner::evaluate_all(ctx, pending).await;
    Ok(())
}

// ---- datasets ----

/// Stores a validated dataset; its name must be new.
pub async fn create_dataset(
    app: &App,
    actor: &str,
    name: &str,
    description: Option<String>,
    source: &str,
    items: Vec<DatasetItem>,
) -> Result<Dataset, EvalError> {
    check_name(name)?;
    let dataset = Dataset {
        id: new_id("ds"),
        name: name.to_owned(),
        description,
        source: source.to_owned(),
        item_count: items.len() as i64,
        created_at_ms: now_ms(),
        created_by: actor.to_owned(),
    };
    match app.evaluations.store.create_dataset(&dataset, &items).await {
        Ok(true) => Ok(dataset),
        Ok(false) => Err(EvalError::DatasetExists(name.to_owned())),
        Err(e) => Err(store_error(e)),
    }
}

fn check_name(name: &str) -> Result<(), EvalError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "'name' must be 1 to 100 characters of letters, digits, '_', '-' or '.'",
            "name",
        ))
    }
}

pub async fn find_dataset(app: &App, id_or_name: &str) -> Result<Dataset, EvalError> {
    app.evaluations
        .store
        .dataset(id_or_name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| EvalError::DatasetNotFound(id_or_name.to_owned()))
}

/// `POST /admin/datasets/from-requests`: which records make the dataset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromRequestsInput {
    pub name: String,
    pub description: Option<String>,
    #[serde(default)]
    pub filter: RecordFilterInput,
    /// Most records taken (newest first, stored oldest first); default 100.
    pub limit: Option<u32>,
    /// `response` (default): the recorded response becomes the expected output; `none`.
    pub expected: Option<String>,
}

/// The filters of `GET /admin/requests`, as a JSON object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFilterInput {
    pub since: Option<String>,
    pub until: Option<String>,
    pub alias: Option<String>,
    pub deployment: Option<String>,
    pub key: Option<String>,
    pub team: Option<String>,
    pub customer: Option<String>,
    pub status: Option<u16>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    /// `name:value` of a request metadata entry.
    pub tag: Option<String>,
}

/// Most records a dataset may be built from.
const MAX_FROM_REQUESTS: u32 = 10_000;

/// Builds a dataset from stored request records: their prompts (as stored, so masked unless
/// `telemetry.content` is `full`) become inputs, their responses the expected outputs. Records
/// without a stored prompt (content `off`), of other endpoints, or with tool turns are skipped.
pub async fn dataset_from_requests(
    app: &App,
    actor: &str,
    input: FromRequestsInput,
    parse_time: impl Fn(&str) -> Option<i64>,
) -> Result<(Dataset, u64), EvalError> {
    check_name(&input.name)?;
    let with_expected = match input.expected.as_deref().unwrap_or("response") {
        "response" => true,
        "none" => false,
        _ => return Err(invalid("'expected' must be response or none", "expected")),
    };
    let limit = input.limit.unwrap_or(100);
    if !(1..=MAX_FROM_REQUESTS).contains(&limit) {
        return Err(invalid(
            format!("'limit' must be between 1 and {MAX_FROM_REQUESTS}"),
            "limit",
        ));
    }
    let f = input.filter;
    let mut filter = RequestFilter {
        alias: f.alias,
        deployment: f.deployment,
        key: f.key,
        team: f.team,
        customer: f.customer,
        status: f.status,
        outcome: f.outcome,
        error_code: f.error_code,
        ..RequestFilter::default()
    };
    for (name, value, slot) in [
        ("since", f.since, &mut filter.since_ms),
        ("until", f.until, &mut filter.until_ms),
    ] {
        if let Some(v) = value {
            *slot = Some(parse_time(&v).ok_or_else(|| {
                invalid(
                    format!("'{name}' must be Unix milliseconds or a span like 24h"),
                    &format!("filter.{name}"),
                )
            })?);
        }
    }
    if let Some(tag) = f.tag {
        let (k, v) = tag
            .split_once(':')
            .ok_or_else(|| invalid("'tag' must be name:value", "filter.tag"))?;
        filter.tag = Some((k.to_owned(), v.to_owned()));
    }
    let mut records = Vec::new();
    while (records.len() as u32) < limit {
        filter.limit = (limit - records.len() as u32).min(1000);
        let page = app.store.query(&filter).await.map_err(store_error)?;
        let last = page.last().map(|r| r.id.clone());
        let full = page.len() as u32 == filter.limit;
        records.extend(page);
        match last {
            Some(id) if full => filter.before_id = Some(id),
            _ => break,
        }
    }
    records.reverse();
    let mut items = Vec::new();
    let mut skipped = 0u64;
    for r in records {
        let messages = match &r.prompt {
            Some(m)
                if r.endpoint == "chat" && !m.is_empty() && m.iter().all(|m| m.role != "tool") =>
            {
                m.iter()
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect()
            }
            _ => {
                skipped += 1;
                continue;
            }
        };
        let mut metadata = Map::new();
        metadata.insert("request_id".into(), Value::String(r.id.clone()));
        if let Some(a) = &r.alias {
            metadata.insert("alias".into(), Value::from(&**a));
        }
        metadata.insert("started_at_ms".into(), Value::from(r.started_at_ms));
        items.push(DatasetItem {
            id: r.id.clone(),
            messages,
            variables: Map::new(),
            expected: if with_expected {
                r.response.clone().map(Value::String)
            } else {
                None
            },
            metadata,
        });
    }
    if items.is_empty() {
        return Err(invalid(
            format!(
                "no stored request matches the filter with a stored prompt ({skipped} skipped)"
            ),
            "filter",
        ));
    }
    let items = dataset::from_parts(items).map_err(|e| invalid(e.message, &e.param))?;
    let ds = create_dataset(
        app,
        actor,
        &input.name,
        input.description,
        "requests",
        items,
    )
    .await?;
    Ok((ds, skipped))
}

// ---- runs ----

/// `POST /admin/evals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// Dataset id or name.
    pub dataset: String,
    pub name: Option<String>,
    pub targets: Vec<Value>,
    pub scorers: Vec<Value>,
    pub concurrency: Option<usize>,
    /// Extra request fields sent with every item (`temperature`, `max_tokens` …).
    #[serde(default)]
    pub params: Map<String, Value>,
}

fn parse_target(
    app: &App,
    principal: &crate::governance::Principal,
    value: &Value,
    i: usize,
) -> Result<Target, EvalError> {
    let path = format!("targets[{i}]");
    let Value::Object(obj) = value else {
        return Err(invalid(
            "a target is {\"model\": ALIAS} or {\"config\": NAME@VERSION}",
            &path,
        ));
    };
    if let Some(extra) = obj.keys().find(|k| *k != "model" && *k != "config") {
        return Err(invalid(
            format!("unknown field '{extra}' (a target has model or config)"),
            &format!("{path}.{extra}"),
        ));
    }
    let text = |k: &str| -> Result<Option<String>, EvalError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(invalid(
                "must be a non-empty string",
                &format!("{path}.{k}"),
            )),
        }
    };
    let mut target = Target {
        model: text("model")?,
        config: text("config")?,
    };
    // A configuration reference must name an existing version (or label) now, so a typo is a
    // 400 here rather than an error on every item; and it is pinned to the version it names
    // now, so a label moved (or an experiment started) during the run changes none of its
    // items.
    if let Some(c) = &target.config {
        match app.experiments.pin(c) {
            Ok(pinned) => target.config = Some(pinned),
            Err(e) => {
                return Err(invalid(
                    format!("'{c}' is not a known configuration version: {e}"),
                    &format!("{path}.config"),
                ));
            }
        }
    }
    match (&target.model, &target.config) {
        (None, None) => Err(invalid("needs model or config", &path)),
        (Some(m), None) => {
            if app.table.route(m).is_none() {
                return Err(invalid(
                    format!("unknown model alias '{m}'"),
                    &format!("{path}.model"),
                ));
            }
            if !app.governance.model_allowed(principal, None, m) {
                return Err(invalid(
                    format!("your key may not use the model '{m}'"),
                    &format!("{path}.model"),
                ));
            }
            Ok(target)
        }
        _ => Ok(target),
    }
}

/// Compiles a run's scorers; names must be unique.
fn compile_scorers(app: &App, inputs: &[Value]) -> Result<Vec<Scorer>, EvalError> {
    let mut scorers: Vec<Scorer> = Vec::new();
    for (i, value) in inputs.iter().enumerate() {
        let path = format!("scorers[{i}]");
        let input: ScorerInput = switchyard_protocol::json::deserialize_at(value.clone(), &path)
            .map_err(|e| EvalError::Invalid {
                message: e.message,
                param: e.param,
            })?;
        let scorer = scorer::compile(&input, &|m| app.table.route(m).is_some()).map_err(|e| {
            invalid(
                format!("'{path}.{}' {}", e.field, e.message),
                &format!("{path}.{}", e.field),
            )
        })?;
        if scorers.iter().any(|s| s.name == scorer.name) {
            return Err(invalid(
                format!("two scorers are named '{}'; give one a 'name'", scorer.name),
                &format!("{path}.name"),
            ));
        }
        scorers.push(scorer);
    }
    Ok(scorers)
}

/// Checks a run request, stores the run and starts it in the background with `key` (the
/// caller's own, kept in memory only while the run is going).
pub async fn create_run(
    app: Arc<App>,
    principal: &crate::governance::Principal,
    key: Secret,
    input: RunInput,
) -> Result<Run, EvalError> {
    let dataset = find_dataset(&app, &input.dataset).await?;
    if input.targets.is_empty() || input.targets.len() > MAX_TARGETS {
        return Err(invalid(
            format!("give 1 to {MAX_TARGETS} targets"),
            "targets",
        ));
    }
    let targets = input
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| parse_target(&app, principal, t, i))
        .collect::<Result<Vec<_>, _>>()?;
    if input.scorers.is_empty() {
        return Err(invalid("give at least one scorer", "scorers"));
    }
    let scorers = compile_scorers(&app, &input.scorers)?;
    let concurrency = input.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(invalid(
            format!("'concurrency' must be between 1 and {MAX_CONCURRENCY}"),
            "concurrency",
        ));
    }
    if let Some(k) = input
        .params
        .keys()
        .find(|k| RESERVED_PARAMS.contains(&k.as_str()))
    {
        return Err(invalid(
            format!("'{k}' is set by the runner and cannot be a param"),
            &format!("params.{k}"),
        ));
    }
    let run = Run {
        id: new_id("eval"),
        name: input.name,
        dataset_id: dataset.id.clone(),
        status: "queued".into(),
        spec: RunSpec {
            targets,
            scorers: input.scorers,
            concurrency,
            params: input.params,
        },
        total: dataset.item_count * input.targets.len() as i64,
        created_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
        heartbeat_at_ms: None,
        created_by: principal.actor(),
        error: None,
    };
    app.evaluations
        .store
        .create_run(&run)
        .await
        .map_err(store_error)?;
    Evaluations::spawn(app, run.clone(), scorers, key)?;
    Ok(run)
}

pub async fn find_run(app: &App, id: &str) -> Result<Run, EvalError> {
    app.evaluations
        .store
        .run(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| EvalError::RunNotFound(id.to_owned()))
}

/// `POST /admin/evals/{id}/resume`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeInput {
    /// Also run again the items whose request failed.
    #[serde(default)]
    pub retry_errors: bool,
    pub concurrency: Option<usize>,
}

/// Continues a run that is not going: only items without a result are sent.
pub async fn resume(
    app: Arc<App>,
    id: &str,
    key: Secret,
    input: ResumeInput,
) -> Result<Run, EvalError> {
    let mut run = find_run(&app, id).await?;
    // Running here, or (with a shared store) on a replica that said so lately.
    let elsewhere = matches!(run.status.as_str(), "running" | "queued")
        && run
            .heartbeat_at_ms
            .is_some_and(|at| now_ms() - at < STALE_AFTER.as_millis() as i64);
    if app.evaluations.is_active(id) || elsewhere {
        return Err(EvalError::RunActive(id.to_owned()));
    }
    if let Some(c) = input.concurrency {
        if !(1..=MAX_CONCURRENCY).contains(&c) {
            return Err(invalid(
                format!("'concurrency' must be between 1 and {MAX_CONCURRENCY}"),
                "concurrency",
            ));
        }
        run.spec.concurrency = c;
    }
    // Scorers are compiled again: a judge's alias may have left the configuration.
    let scorers = compile_scorers(&app, &run.spec.scorers)?;
    if input.retry_errors {
        app.evaluations
            .store
            .clear_errors(id)
            .await
            .map_err(store_error)?;
    }
    app.evaluations
        .store
        .set_status(id, "queued", None, None, None)
        .await
        .map_err(store_error)?;
    run.status = "queued".into();
    Evaluations::spawn(app, run.clone(), scorers, key)?;
    Ok(run)
}

fn scorer_names(run: &Run) -> Vec<String> {
    run.spec
        .scorers
        .iter()
        .map(|s| {
            s["name"]
                .as_str()
                .or_else(|| s["type"].as_str())
                .unwrap_or("-")
                .to_owned()
        })
        .collect()
}

/// Aggregates of every target of a run.
pub fn aggregates(run: &Run, results: &[ItemResult], items: u64) -> Vec<TargetAggregate> {
    let names = scorer_names(run);
    run.spec
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mine: Vec<&ItemResult> = results.iter().filter(|r| r.target == i).collect();
            report::aggregate(i, t.label(), items, &names, &mine)
        })
        .collect()
}

/// `GET /admin/evals/{id}`: the run, its progress and its aggregates.
pub async fn run_report(app: &App, id: &str) -> Result<Value, EvalError> {
    let run = find_run(app, id).await?;
    let store = &app.evaluations.store;
    let results = store.results(id, None).await.map_err(store_error)?;
    let dataset = store.dataset(&run.dataset_id).await.map_err(store_error)?;
    let items = (run.total / run.spec.targets.len().max(1) as i64) as u64;
    let aggregates = aggregates(&run, &results, items);
    let mut v = json!(run);
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "dataset".into(),
            json!({"id": run.dataset_id, "name": dataset.map(|d| d.name)}),
        );
        map.insert(
            "progress".into(),
            json!({"done": results.len(), "total": run.total}),
        );
        map.insert("aggregates".into(), json!(aggregates));
    }
    Ok(v)
}

/// One side of a comparison: a run and one of its targets.
fn pick_target(run: &Run, wanted: Option<&str>, side: &str) -> Result<usize, EvalError> {
    let n = run.spec.targets.len();
    match wanted {
        None if n == 1 => Ok(0),
        None => Err(invalid(
            format!(
                "run {} has {n} targets; say which with '{side}_target' (an index from 0 or a label like {})",
                run.id,
                run.spec.targets[0].label()
            ),
            &format!("{side}_target"),
        )),
        Some(w) => {
            if let Ok(i) = w.parse::<usize>()
                && i < n
            {
                return Ok(i);
            }
            run.spec
                .targets
                .iter()
                .position(|t| t.label() == w)
                .ok_or_else(|| {
                    invalid(
                        format!("run {} has no target '{w}'", run.id),
                        &format!("{side}_target"),
                    )
                })
        }
    }
}

/// `GET /admin/evals/compare`: B against A. When both sides are the same run with two
/// targets and none is named, its first target is A and its second B.
pub async fn compare(
    app: &App,
    a: &str,
    b: &str,
    a_target: Option<&str>,
    b_target: Option<&str>,
) -> Result<Value, EvalError> {
    let run_a = find_run(app, a).await?;
    let run_b = find_run(app, b).await?;
    let (ta, tb) =
        if a == b && a_target.is_none() && b_target.is_none() && run_a.spec.targets.len() == 2 {
            (0, 1)
        } else {
            (
                pick_target(&run_a, a_target, "a")?,
                pick_target(&run_b, b_target, "b")?,
            )
        };
    let store = &app.evaluations.store;
    let ra = store.results(a, Some(ta)).await.map_err(store_error)?;
    let rb = store.results(b, Some(tb)).await.map_err(store_error)?;
    let items_a = (run_a.total / run_a.spec.targets.len().max(1) as i64) as u64;
    let items_b = (run_b.total / run_b.spec.targets.len().max(1) as i64) as u64;
    let ra_refs: Vec<&ItemResult> = ra.iter().collect();
    let rb_refs: Vec<&ItemResult> = rb.iter().collect();
    let agg_a = report::aggregate(
        ta,
        run_a.spec.targets[ta].label(),
        items_a,
        &scorer_names(&run_a),
        &ra_refs,
    );
    let agg_b = report::aggregate(
        tb,
        run_b.spec.targets[tb].label(),
        items_b,
        &scorer_names(&run_b),
        &rb_refs,
    );
    let comparison = report::compare(agg_a, agg_b, &ra_refs, &rb_refs);
    let mut v = json!(comparison);
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "run_a".into(),
            json!({"id": run_a.id, "status": run_a.status, "dataset_id": run_a.dataset_id}),
        );
        map.insert(
            "run_b".into(),
            json!({"id": run_b.id, "status": run_b.status, "dataset_id": run_b.dataset_id}),
        );
        map.insert(
            "same_dataset".into(),
            Value::Bool(run_a.dataset_id == run_b.dataset_id),
        );
    }
    Ok(v)
}

// ---- export ----

/// `POST /admin/evals/{id}/export/mlflow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    /// The MLflow tracking server's base URL.
    pub tracking_uri: String,
    /// Default `switchyard-evals`.
    pub experiment: Option<String>,
    /// A bearer token for the tracking server; used for this export only, never stored.
    pub token: Option<String>,
}

impl ExportInput {
    /// The tracking server's client and the experiment name (`default_experiment` when the
    /// input names none); an error carries its message and the field at fault.
    pub fn connect(
        self,
        default_experiment: &str,
    ) -> Result<(mlflow::MlflowClient, String), (String, &'static str)> {
        let client = mlflow::MlflowClient::new(&self.tracking_uri, self.token)
            .map_err(|e| (e, "tracking_uri"))?;
        let experiment = self
            .experiment
            .unwrap_or_else(|| default_experiment.to_owned());
        if experiment.trim().is_empty() {
            return Err(("'experiment' must not be empty".into(), "experiment"));
        }
        Ok((client, experiment))
    }
}

/// The MLflow runs of an evaluation run: a parent for the run, one child per target.
pub fn mlflow_runs(
    run: &Run,
    dataset: &Dataset,
    aggregates: &[TargetAggregate],
) -> (mlflow::MlflowRun, Vec<mlflow::MlflowRun>) {
    let scorers = scorer_names(run).join(",");
    let run_name = run.name.clone().unwrap_or_else(|| run.id.clone());
    // An interrupted run is not a finished one in MLflow either.
    let status = match run.status.as_str() {
        "completed" => "FINISHED",
        "failed" => "FAILED",
        "interrupted" => "KILLED",
        _ => "RUNNING",
    };
    let common_tags = vec![
        ("switchyard.eval_run".to_owned(), run.id.clone()),
        ("switchyard.dataset".to_owned(), dataset.name.clone()),
        ("switchyard.status".to_owned(), run.status.clone()),
    ];
    let parent = mlflow::MlflowRun {
        name: run_name.clone(),
        params: vec![
            ("eval_run".into(), run.id.clone()),
            ("dataset".into(), dataset.name.clone()),
            ("dataset_id".into(), dataset.id.clone()),
            ("scorers".into(), scorers.clone()),
            (
                "targets".into(),
                run.spec
                    .targets
                    .iter()
                    .map(Target::label)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("items".into(), dataset.item_count.to_string()),
        ],
        metrics: Vec::new(),
        tags: common_tags.clone(),
        start_time_ms: run.started_at_ms.or(Some(run.created_at_ms)),
        end_time_ms: run.finished_at_ms,
        status: Some(status),
    };
    let children = aggregates
        .iter()
        .map(|a| {
            let mut metrics = vec![
                ("pass_rate".to_owned(), a.pass_rate.unwrap_or(0.0)),
                ("items_done".to_owned(), a.done as f64),
                ("errors".to_owned(), a.errors as f64),
                ("input_tokens".to_owned(), a.input_tokens as f64),
                ("output_tokens".to_owned(), a.output_tokens as f64),
                // Presentation only: the stored figure stays integer nano-dollars.
                ("cost_usd".to_owned(), a.cost_nanos as f64 / 1e9),
                ("judge_cost_usd".to_owned(), a.judge_cost_nanos as f64 / 1e9),
            ];
            if let Some(p) = a.latency_p50_ms {
                metrics.push(("latency_p50_ms".into(), p));
            }
            if let Some(p) = a.latency_p95_ms {
                metrics.push(("latency_p95_ms".into(), p));
            }
            for (name, s) in &a.scores {
                if let Some(m) = s.mean {
                    metrics.push((format!("{name}.mean"), m));
                }
                if let Some(p) = s.pass_rate {
                    metrics.push((format!("{name}.pass_rate"), p));
                }
            }
            let mut tags = common_tags.clone();
            tags.push(("switchyard.target".into(), a.label.clone()));
            mlflow::MlflowRun {
                name: format!("{run_name} {}", a.label),
                params: vec![
                    ("target".into(), a.label.clone()),
                    ("dataset".into(), dataset.name.clone()),
                    ("scorers".into(), scorers.clone()),
                    ("eval_run".into(), run.id.clone()),
                    ("concurrency".into(), run.spec.concurrency.to_string()),
                ],
                metrics,
                tags,
                start_time_ms: run.started_at_ms.or(Some(run.created_at_ms)),
                end_time_ms: run.finished_at_ms,
                status: Some(status),
            }
        })
        .collect();
    (parent, children)
}

/// Exports a run to MLflow: a parent run and one nested run per target.
pub async fn export_mlflow(
    app: &App,
    id: &str,
    input: ExportInput,
) -> Result<mlflow::Exported, EvalError> {
    let run = find_run(app, id).await?;
    let (client, experiment) = input
        .connect("switchyard-evals")
        .map_err(|(message, field)| invalid(message, field))?;
    let store = &app.evaluations.store;
    let dataset = store
        .dataset(&run.dataset_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| EvalError::DatasetNotFound(run.dataset_id.clone()))?;
    let results = store.results(id, None).await.map_err(store_error)?;
    let aggregates = aggregates(&run, &results, dataset.item_count as u64);
    let (parent, children) = mlflow_runs(&run, &dataset, &aggregates);
    mlflow::export_nested(&client, &experiment, parent, children)
        .await
        .map_err(|e| EvalError::Export(e.to_string()))
}

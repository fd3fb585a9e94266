//! Export to MLflow through its REST tracking API (`/api/2.0/mlflow/…`): find or create the
//! experiment by name, create one MLflow run per exported run, log its params, metrics and tags
//! in `runs/log-batch` calls within its limits, and mark it finished (or as it ended). Generic over what is exported: an evaluation
//! run becomes a parent run with one child per target here, and any other result (an A/B
//! experiment) can be exported the same way with [`export_runs`] or [`export_nested`].

use std::time::Duration;

use serde_json::{Value, json};

/// The batch limits of `runs/log-batch`: at most 100 params, 100 tags and 1000 items in all.
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;
const MAX_BATCH_ITEMS: usize = 1000;
/// Param values longer than this are cut (MLflow's documented guarantee is 6000 bytes).
const MAX_PARAM_CHARS: usize = 6000;
/// Tag values longer than this are cut (guaranteed up to 5000 bytes).
const MAX_TAG_CHARS: usize = 5000;

/// One MLflow run to create: name, params, metrics and tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MlflowRun {
    pub name: String,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub tags: Vec<(String, String)>,
    /// Unix milliseconds; now when absent.
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    /// MLflow's `RunStatus` for the run: `FINISHED` when absent; `KILLED` for one interrupted,
    /// `FAILED`, or `RUNNING` for one not over yet (left without an end time).
    pub status: Option<&'static str>,
}

/// What an export created.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Exported {
    pub experiment_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// MLflow run ids, in the order of the runs given.
    pub run_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("cannot reach the MLflow tracking server at {uri}: {reason}")]
    Unreachable { uri: String, reason: String },
    #[error("MLflow answered {endpoint} with HTTP {status}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        /// MLflow's `error_code`, e.g. `RESOURCE_DOES_NOT_EXIST`.
        code: Option<String>,
        message: String,
    },
    #[error("MLflow's answer to {0} lacks the expected fields")]
    Malformed(String),
}

/// A client of one MLflow tracking server.
pub struct MlflowClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl MlflowClient {
    /// `tracking_uri` is the server's base URL (`http://host:5000`); `token`, when given, is
    /// sent as a bearer token and never logged.
    pub fn new(tracking_uri: &str, token: Option<String>) -> Result<Self, String> {
        let base = tracking_uri.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| format!("'{base}' is not a URL like http://127.0.0.1:5000 ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("'{base}' must be an http or https URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http, base, token })
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    async fn send(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, MlflowError> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request.send().await.map_err(|e| MlflowError::Unreachable {
            uri: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(MlflowError::Refused {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: body["error_code"].as_str().map(str::to_owned),
            message: body["message"]
                .as_str()
                .map_or_else(|| text.chars().take(300).collect(), str::to_owned),
        })
    }

    async fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let request = self
            .http
            .post(self.url(endpoint))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(endpoint, request).await
    }

    async fn get_by_name(&self, name: &str) -> Result<Value, MlflowError> {
        let endpoint = "experiments/get-by-name";
        let mut url =
            reqwest::Url::parse(&self.url(endpoint)).map_err(|e| MlflowError::Unreachable {
                uri: self.base.clone(),
                reason: e.to_string(),
            })?;
        url.query_pairs_mut().append_pair("experiment_name", name);
        self.send(endpoint, self.http.get(url)).await
    }

    /// The id of the experiment called `name`, created when there is none.
    pub async fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let endpoint = "experiments/get-by-name";
        let found = self.get_by_name(name).await;
        match found {
            Ok(body) => return id_of(&body["experiment"]["experiment_id"], endpoint),
            Err(MlflowError::Refused { code: Some(c), .. }) if c == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(e) => return Err(e),
        }
        match self
            .post("experiments/create", &json!({"name": name}))
            .await
        {
            Ok(body) => id_of(&body["experiment_id"], "experiments/create"),
            // Someone else created it in between.
            Err(MlflowError::Refused { code: Some(c), .. }) if c == "RESOURCE_ALREADY_EXISTS" => {
                let body = self.get_by_name(name).await?;
                id_of(&body["experiment"]["experiment_id"], endpoint)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates one run in the experiment (under `parent` when given), logs its data and
    /// finishes it. Returns the MLflow run id. Data beyond one `runs/log-batch`'s limits goes in
    /// as many batches as it takes; nothing is left out.
    pub async fn log_run(
        &self,
        experiment_id: &str,
        run: &MlflowRun,
        parent: Option<&str>,
    ) -> Result<String, MlflowError> {
        let now = now_ms();
        let start = run.start_time_ms.unwrap_or(now);
        // The system tag MLflow's UI nests runs by goes with the run's creation, whatever
        // follows.
        let nesting: Vec<Value> = parent
            .map(|p| json!({"key": "mlflow.parentRunId", "value": p}))
            .into_iter()
            .collect();
        let created = self
            .post(
                "runs/create",
                &json!({"experiment_id": experiment_id, "run_name": run.name, "start_time": start, "tags": nesting}),
            )
            .await?;
        let run_id = id_of(&created["run"]["info"]["run_id"], "runs/create")?;
        let params: Vec<Value> = run
            .params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": cut(v, MAX_PARAM_CHARS)}))
            .collect();
        let tags: Vec<Value> = run
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": cut(v, MAX_TAG_CHARS)}))
            .collect();
        let metrics: Vec<Value> = run
            .metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": now, "step": 0}))
            .collect();
        let (mut p, mut t, mut m) = (0, 0, 0);
        while p < params.len() || t < tags.len() || m < metrics.len() {
            let batch_params = &params[p..params.len().min(p + MAX_PARAMS)];
            let batch_tags = &tags[t..tags.len().min(t + MAX_TAGS)];
            let room = MAX_BATCH_ITEMS - batch_params.len() - batch_tags.len();
            let batch_metrics = &metrics[m..metrics.len().min(m + room)];
            self.post(
                "runs/log-batch",
                &json!({"run_id": run_id, "params": batch_params, "metrics": batch_metrics, "tags": batch_tags}),
            )
            .await?;
            (p, t, m) = (
                p + batch_params.len(),
                t + batch_tags.len(),
                m + batch_metrics.len(),
            );
        }
        let status = run.status.unwrap_or("FINISHED");
        let mut update = json!({"run_id": run_id, "status": status});
        if status != "RUNNING" {
            update["end_time"] = json!(run.end_time_ms.unwrap_or(now));
        }
        self.post("runs/update", &update).await?;
        Ok(run_id)
    }
}

/// Exports `runs` side by side into the experiment called `experiment_name`.
pub async fn export_runs(
    client: &MlflowClient,
    experiment_name: &str,
    runs: Vec<MlflowRun>,
) -> Result<Exported, MlflowError> {
    let experiment_id = client.experiment_id(experiment_name).await?;
    let mut run_ids = Vec::with_capacity(runs.len());
    for run in &runs {
        run_ids.push(client.log_run(&experiment_id, run, None).await?);
    }
    Ok(Exported {
        experiment_id,
        parent_run_id: None,
        run_ids,
    })
}

/// Exports `children` nested under a `parent` run in the experiment called `experiment_name`.
pub async fn export_nested(
    client: &MlflowClient,
    experiment_name: &str,
    parent: MlflowRun,
    children: Vec<MlflowRun>,
) -> Result<Exported, MlflowError> {
    let experiment_id = client.experiment_id(experiment_name).await?;
    let parent_id = client.log_run(&experiment_id, &parent, None).await?;
    let mut run_ids = Vec::with_capacity(children.len());
    for run in &children {
        run_ids.push(
            client
                .log_run(&experiment_id, run, Some(&parent_id))
                .await?,
        );
    }
    Ok(Exported {
        experiment_id,
        parent_run_id: Some(parent_id),
        run_ids,
    })
}

fn id_of(value: &Value, endpoint: &str) -> Result<String, MlflowError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| MlflowError::Malformed(endpoint.to_owned()))
}

fn cut(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::{Path, State};
    use axum::routing::post;

    use super::*;

    /// A run beyond one `runs/log-batch`'s limits goes in whole, in batches within them; the
    /// nesting tag goes with the run's creation, and an interrupted run ends `KILLED`.
    #[tokio::test]
    async fn a_large_run_is_logged_whole_in_batches_within_the_limits() {
        type Calls = Arc<Mutex<Vec<(String, Value)>>>;
        let calls: Calls = Arc::default();
        let app = axum::Router::new()
            .route(
                "/api/2.0/mlflow/runs/{endpoint}",
                post(
                    |State(calls): State<Calls>,
                     Path(endpoint): Path<String>,
                     Json(body): Json<Value>| async move {
                        calls.lock().unwrap().push((endpoint, body));
                        Json(json!({"run": {"info": {"run_id": "r1"}}}))
                    },
                ),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let run = MlflowRun {
            name: "big".into(),
            params: (0..150).map(|i| (format!("p{i}"), "v".into())).collect(),
            metrics: (0..2000).map(|i| (format!("m{i}"), f64::from(i))).collect(),
            tags: (0..250).map(|i| (format!("t{i}"), "v".into())).collect(),
            status: Some("KILLED"),
            ..MlflowRun::default()
        };
        let client = MlflowClient::new(&url, None).unwrap();
        assert_eq!(
            client.log_run("1", &run, Some("parent")).await.unwrap(),
            "r1"
        );

        let calls = calls.lock().unwrap();
        assert_eq!(calls[0].0, "create");
        assert_eq!(
            calls[0].1["tags"],
            json!([{"key": "mlflow.parentRunId", "value": "parent"}])
        );
        let batches: Vec<&Value> = calls
            .iter()
            .filter(|(e, _)| e == "log-batch")
            .map(|(_, b)| b)
            .collect();
        let count = |b: &Value, k: &str| b[k].as_array().unwrap().len();
        for b in &batches {
            assert!(count(b, "params") <= MAX_PARAMS && count(b, "tags") <= MAX_TAGS);
            assert!(count(b, "params") + count(b, "tags") + count(b, "metrics") <= MAX_BATCH_ITEMS);
        }
        let total = |k: &str| batches.iter().map(|b| count(b, k)).sum::<usize>();
        assert_eq!(
            (total("params"), total("tags"), total("metrics")),
            (150, 250, 2000)
        );
        let (last, update) = calls.last().unwrap();
        assert_eq!(last, "update");
        assert_eq!(update["status"], "KILLED");
    }
}

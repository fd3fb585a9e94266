//! Runs an evaluation: every (item, target) pair without a result is sent through the gateway
//! itself — the in-process router, so each request is authenticated with the caller's key,
//! routed, retried, budgeted and recorded like any other, tagged `eval_run` — with bounded
//! concurrency; the output is scored and the result row written. The runner retries nothing
//! itself: a request the gateway gave up on is a result with an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use futures::StreamExt;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

use super::dataset::DatasetItem;
use super::scorer::{Score, Scorer};
use super::store::{ItemResult, Run, Target};
use crate::app::App;
use crate::config::Secret;
use crate::telemetry::{RecordBatch, RecordObserver};

/// How long the runner waits for a request's record (tokens, cost) after the answer.
const RECORD_WAIT: Duration = Duration::from_secs(10);
/// Largest gateway answer the runner reads.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// What the request record says about a call, once written.
#[derive(Debug, Clone, Copy)]
struct RecordFacts {
    duration_ms: f64,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_nanos: Option<i64>,
}

/// Hands request records back to the runner calls that wait for them, matched by the
/// `eval_call` tag each call sets. Records of other requests pass without a lock.
#[derive(Default)]
pub struct RecordWaiters {
    waiting: Mutex<HashMap<String, oneshot::Sender<RecordFacts>>>,
}

impl RecordWaiters {
    fn register(&self, call: &str) -> oneshot::Receiver<RecordFacts> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(call.to_owned(), tx);
        rx
    }

    fn forget(&self, call: &str) {
        self.waiting.lock().remove(call);
    }
}

impl RecordObserver for RecordWaiters {
    fn observe(&self, records: &RecordBatch) {
        for r in records.iter() {
            let Some(Value::String(call)) = r.tags.get("eval_call") else {
                continue;
            };
            let Some(tx) = self.waiting.lock().remove(call) else {
                continue;
            };
            let _ = tx.send(RecordFacts {
                duration_ms: r.duration_ms,
                input_tokens: r.tokens.map(|t| t.input as i64),
                output_tokens: r.tokens.map(|t| t.output as i64),
                cost_nanos: r.cost_nanos,
            });
        }
    }
}

/// One finished call through the gateway.
struct Call {
    status: u16,
    request_id: Option<String>,
    body: Value,
    record: Option<RecordFacts>,
    elapsed_ms: f64,
}

impl Call {
    fn error(&self) -> Option<(String, String)> {
        if self.status == 200 {
            return None;
        }
        let e = &self.body["error"];
        Some((
            e["code"].as_str().unwrap_or("error").to_owned(),
            e["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {}", self.status), str::to_owned),
        ))
    }

    /// The assistant's text, or its tool calls as JSON when it only called tools.
    fn output(&self) -> String {
        let message = &self.body["choices"][0]["message"];
        match &message["content"] {
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => match &message["tool_calls"] {
                Value::Array(calls) if !calls.is_empty() => message["tool_calls"].to_string(),
                _ => String::new(),
            },
        }
    }
}

/// Everything one run's tasks share.
pub struct RunContext {
    pub app: Arc<App>,
    pub router: Router,
    pub key: Secret,
    pub run: Run,
    pub scorers: Vec<Scorer>,
}

impl RunContext {
    async fn call(&self, mut body: Value, config: Option<&str>) -> Call {
        let call_id = uuid::Uuid::now_v7().simple().to_string();
        if let Some(md) = body["metadata"].as_object_mut() {
            md.insert("eval_call".into(), Value::String(call_id.clone()));
        }
        let waiters = &self.app.evaluations.waiters;
        let record = waiters.register(&call_id);
        let started = Instant::now();
        let mut request = http::Request::post("/v1/chat/completions")
            .header(AUTHORIZATION, format!("Bearer {}", self.key.expose()))
            .header(CONTENT_TYPE, "application/json");
        if let Some(c) = config {
            request = request.header("x-switchyard-config", c);
        }
        let Ok(request) = request.body(Body::from(body.to_string())) else {
            waiters.forget(&call_id);
            return Call {
                status: 400,
                request_id: None,
                body: json!({"error": {"code": "invalid_request", "message": "the target cannot be sent as an HTTP header"}}),
                record: None,
                elapsed_ms: 0.0,
            };
        };
        let response = match self.router.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let record = match tokio::time::timeout(RECORD_WAIT, record).await {
            Ok(Ok(facts)) => Some(facts),
            _ => {
                waiters.forget(&call_id);
                None
            }
        };
        Call {
            status,
            request_id,
            body,
            record,
            elapsed_ms,
        }
    }

    /// Sends one item to one target, scores the output, and returns the result row.
    pub async fn evaluate(
        &self,
        target_index: usize,
        position: i64,
        item: &DatasetItem,
    ) -> ItemResult {
        let target = &self.run.spec.targets[target_index];
        let call = self
            .call(
                request_body(&self.run, item, target),
                target.config.as_deref(),
            )
            .await;
        let mut result = ItemResult {
            target: target_index,
            position,
            item_id: item.id.clone(),
            output: None,
            scores: Default::default(),
            passed: false,
            latency_ms: Some(call.record.map_or(call.elapsed_ms, |r| r.duration_ms)),
            input_tokens: call.record.and_then(|r| r.input_tokens),
            output_tokens: call.record.and_then(|r| r.output_tokens),
            cost_nanos: call.record.and_then(|r| r.cost_nanos),
            judge_cost_nanos: None,
            error_code: None,
            error: None,
            request_id: call.request_id.clone(),
            finished_at_ms: super::now_ms(),
        };
        if result.input_tokens.is_none() {
            result.input_tokens = call.body["usage"]["prompt_tokens"].as_i64();
            result.output_tokens = call.body["usage"]["completion_tokens"].as_i64();
        }
        if let Some((code, message)) = call.error() {
            result.error_code = Some(code);
            result.error = Some(message);
            return result;
        }
        let output = call.output();
        let mut judge_cost: Option<i64> = None;
        for scorer in &self.scorers {
            let score = match scorer.score(item, &output) {
                Some(s) => s,
                None => {
                    let (s, cost) = self.judge(scorer, item, target, &output).await;
                    if let Some(c) = cost {
                        judge_cost = Some(judge_cost.unwrap_or(0) + c);
                    }
                    s
                }
            };
            result.scores.insert(scorer.name.clone(), score);
        }
        result.judge_cost_nanos = judge_cost;
        result.passed = result
            .scores
            .values()
            .all(|s| s.error.is_none() && s.passed != Some(false));
        result.output = Some(output);
        result
    }

    async fn judge(
        &self,
        scorer: &Scorer,
        item: &DatasetItem,
        target: &Target,
        output: &str,
    ) -> (Score, Option<i64>) {
        let Some((model, prompt)) = scorer.judge_prompt(item, output) else {
            return (Score::error("not a judge".into()), None);
        };
        let mut tags = tags(&self.run, item, target);
        tags.insert("eval_role".into(), Value::String("judge".into()));
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "metadata": tags,
        });
        let call = self.call(body, None).await;
        let cost = call.record.and_then(|r| r.cost_nanos);
        if let Some((code, message)) = call.error() {
            return (
                Score::error(format!("the judge failed ({code}): {message}")),
                cost,
            );
        }
        (scorer.judge_score(&call.output()), cost)
    }
}

/// The request metadata that tags a run's requests (and so their records).
fn tags(run: &Run, item: &DatasetItem, target: &Target) -> Map<String, Value> {
    let mut md = Map::new();
    md.insert("eval_run".into(), Value::String(run.id.clone()));
    md.insert("eval_item".into(), Value::String(item.id.clone()));
    md.insert("eval_target".into(), Value::String(target.label()));
    md
}

/// The chat request for an item and target: the run's params, the item's messages, the tags,
/// and for a configuration target the `switchyard` field with the reference and the item's
/// variables (the `x-switchyard-config` header goes with it).
pub fn request_body(run: &Run, item: &DatasetItem, target: &Target) -> Value {
    let mut body = Map::new();
    for (k, v) in &run.spec.params {
        body.insert(k.clone(), v.clone());
    }
    // A configuration decides the model; the reference stands in until it does.
    let model = target
        .model
        .clone()
        .or_else(|| target.config.clone())
        .unwrap_or_default();
    body.insert("model".into(), Value::String(model));
    body.insert("messages".into(), Value::Array(item.messages.clone()));
    body.insert("metadata".into(), Value::Object(tags(run, item, target)));
    if let Some(config) = &target.config {
        body.insert(
            "switchyard".into(),
            json!({"config": config, "variables": item.variables}),
        );
    }
    Value::Object(body)
}

/// Evaluates `pending` pairs with at most `concurrency` in flight, storing each result as it
/// finishes. Returns when all are done; the caller stops it by dropping the future.
pub async fn evaluate_all(ctx: &RunContext, pending: Vec<(usize, i64, Arc<DatasetItem>)>) {
    let concurrency = ctx.run.spec.concurrency.max(1);
    futures::stream::iter(pending)
        .for_each_concurrent(concurrency, |(target, position, item)| async move {
            let result = ctx.evaluate(target, position, &item).await;
            if let Err(e) = ctx.app.evaluations.store.put_result(&ctx.run.id, &result).await {
                tracing::error!(run = %ctx.run.id, item = %item.id, error = %e, "cannot store an evaluation result");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::store::RunSpec;

    #[test]
    fn configuration_targets_carry_the_reference_and_the_variables() {
        let mut params = Map::new();
        params.insert("temperature".into(), json!(0));
        let run = Run {
            id: "eval_1".into(),
            name: None,
            dataset_id: "ds_1".into(),
            status: "running".into(),
            spec: RunSpec {
                targets: vec![],
                scorers: vec![],
                concurrency: 1,
                params,
            },
            total: 1,
            created_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
            heartbeat_at_ms: None,
            created_by: "master key".into(),
            error: None,
        };
        let mut variables = Map::new();
        variables.insert("tone".into(), json!("dry"));
        let item = DatasetItem {
            id: "q1".into(),
            messages: vec![json!({"role": "user", "content": "hi"})],
            variables,
            expected: None,
            metadata: Map::new(),
        };
        let config = Target {
            model: None,
            config: Some("support@3".into()),
        };
        let body = request_body(&run, &item, &config);
        assert_eq!(
            body["switchyard"],
            json!({"config": "support@3", "variables": {"tone": "dry"}})
        );
        assert_eq!(body["model"], "support@3");
        assert_eq!(body["temperature"], 0);
        assert_eq!(
            body["metadata"],
            json!({"eval_run": "eval_1", "eval_item": "q1", "eval_target": "config:support@3"})
        );
        let model = Target {
            model: Some("fast".into()),
            config: None,
        };
        let body = request_body(&run, &item, &model);
        assert_eq!(body["model"], "fast");
        assert!(body.get("switchyard").is_none());
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    }
}

//! Admin API for offline evaluation: datasets, evaluation runs, their results, comparison,
//! resume and MLflow export. Reads need the `viewer` role, changes `team_admin` or `admin`.
//! Runs send their requests with the key that started (or resumed) them. Only HTTP plumbing
//! lives here; the rules are in `evaluation`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_protocol::dialect::IngressDialect;
use switchyard_protocol::error::{ClientError, DecodeError, ErrorKind};
use switchyard_protocol::openai::OpenAiIngress;

use super::json_response;
use crate::app::App;
use crate::config::Secret;
use crate::error::GatewayError;
use crate::evaluation::{self, EvalError, dataset};
use crate::governance::Principal;
use crate::pipeline::{RequestContext, authorize_admin, presented_key};

/// Largest dataset upload: JSONL bodies are far larger than API requests.
const MAX_DATASET_BYTES: usize = 64 * 1024 * 1024;

pub fn routes(router: Router<Arc<App>>) -> Router<Arc<App>> {
    router
        .route(
            "/admin/datasets",
            get(list_datasets)
                .post(create_dataset)
                .layer(DefaultBodyLimit::max(MAX_DATASET_BYTES)),
        )
        .route("/admin/datasets/from-requests", post(dataset_from_requests))
        .route("/admin/datasets/{id}", get(get_dataset))
        .route("/admin/evals", get(list_runs).post(create_run))
        .route("/admin/evals/compare", get(compare))
        .route("/admin/evals/{id}", get(get_run))
        .route("/admin/evals/{id}/items", get(run_items))
        .route("/admin/evals/{id}/resume", post(resume))
        .route("/admin/evals/{id}/export/mlflow", post(export_mlflow))
}

/// An evaluation failure or a gateway one (authentication, role).
enum Failure {
    Eval(EvalError),
    Gateway(GatewayError),
}

impl From<EvalError> for Failure {
    fn from(e: EvalError) -> Self {
        Failure::Eval(e)
    }
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Gateway(e)
    }
}

fn client_error(e: &EvalError) -> ClientError {
    let (status, kind, code, message, param) = match e {
        EvalError::Invalid { message, param } => (
            400,
            ErrorKind::InvalidRequest,
            "invalid_request",
            message.clone(),
            param.clone(),
        ),
        EvalError::DatasetNotFound(id) => (
            404,
            ErrorKind::NotFound,
            "dataset_not_found",
            format!("No dataset with the id or name '{id}'. GET /admin/datasets lists them."),
            None,
        ),
        EvalError::RunNotFound(id) => (
            404,
            ErrorKind::NotFound,
            "eval_run_not_found",
            format!("No evaluation run '{id}'. GET /admin/evals lists them."),
            None,
        ),
        EvalError::DatasetExists(name) => (
            409,
            ErrorKind::InvalidRequest,
            "dataset_exists",
            format!(
                "A dataset named '{name}' exists already; datasets never change, so pick another name."
            ),
            Some("name".into()),
        ),
        EvalError::RunActive(id) => (
            409,
            ErrorKind::InvalidRequest,
            "eval_run_active",
            format!(
                "The evaluation run '{id}' is running; wait for it to stop before resuming it."
            ),
            None,
        ),
        EvalError::Export(message) => (
            502,
            ErrorKind::Upstream,
            "mlflow_export_failed",
            format!("The MLflow export failed: {message}"),
            None,
        ),
        EvalError::Store(message) => (
            500,
            ErrorKind::Internal,
            "internal_error",
            format!("Internal gateway error: {message}"),
            None,
        ),
    };
    ClientError {
        status,
        kind,
        code,
        message,
        param,
    }
}

fn respond(answer: Result<Response, Failure>) -> Response {
    let client = match answer {
        Ok(r) => return r,
        Err(Failure::Gateway(e)) => {
            return super::error_response(
                switchyard_protocol::dialect::DialectId::OpenAi,
                &e,
                &RequestContext::new(switchyard_protocol::dialect::DialectId::OpenAi).id,
            );
        }
        Err(Failure::Eval(e)) => client_error(&e),
    };
    let body = OpenAiIngress.encode_error(&client);
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(client.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn bad(e: DecodeError) -> Failure {
    Failure::Eval(EvalError::Invalid {
        message: e.message,
        param: e.param,
    })
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    DecodeError::parse(body).map_err(bad)
}

/// The caller's key, for the requests of a run it starts: kept in memory, never stored.
fn caller_key(headers: &HeaderMap) -> Result<Secret, Failure> {
    presented_key(headers)
        .map(|k| Secret::new(k.to_owned()))
        .ok_or(Failure::Gateway(GatewayError::InvalidApiKey))
}

fn writer(app: &App, headers: &HeaderMap) -> Result<Principal, Failure> {
    Ok(authorize_admin(app, headers, true)?)
}

fn reader(app: &App, headers: &HeaderMap) -> Result<Principal, Failure> {
    Ok(authorize_admin(app, headers, false)?)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DatasetQuery {
    name: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetJson {
    name: String,
    description: Option<String>,
    items: Vec<Value>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

fn item_error(e: dataset::ItemError) -> Failure {
    Failure::Eval(EvalError::Invalid {
        message: e.message,
        param: Some(e.param),
    })
}

/// `POST /admin/datasets`: a JSONL body with `?name=` (any content type but JSON), or a JSON
/// object `{"name", "description", "items": [...]}`.
async fn create_dataset(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<DatasetQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = writer(&app, &headers)?;
            let Query(q) =
                query.map_err(|e| bad(DecodeError::new(format!("invalid query: {e}"), None)))?;
            let (name, description, items) = if is_json(&headers) {
                let input: DatasetJson = parse(&body)?;
                let items = dataset::parse_array(input.items).map_err(item_error)?;
                (input.name, input.description, items)
            } else {
                let name = q.name.ok_or_else(|| {
                    Failure::Eval(evaluation::invalid(
                        "a JSONL upload needs the dataset's name as ?name=",
                        "name",
                    ))
                })?;
                let text = std::str::from_utf8(&body).map_err(|_| {
                    Failure::Eval(evaluation::invalid("the JSONL body is not UTF-8", ""))
                })?;
                let items = dataset::parse_jsonl(text).map_err(item_error)?;
                (name, q.description, items)
            };
            let ds =
                evaluation::create_dataset(&app, &p.actor(), &name, description, "upload", items)
                    .await?;
            Ok(json_response(StatusCode::CREATED, json!(ds)))
        }
        .await,
    )
}

async fn dataset_from_requests(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = writer(&app, &headers)?;
            let input: evaluation::FromRequestsInput = parse(&body)?;
            let (ds, skipped) = evaluation::dataset_from_requests(
                &app,
                &p.actor(),
                input,
                super::admin::parse_time,
            )
            .await?;
            let mut v = json!(ds);
            if let Some(m) = v.as_object_mut() {
                m.insert("skipped_records".into(), json!(skipped));
            }
            Ok(json_response(StatusCode::CREATED, v))
        }
        .await,
    )
}

async fn list_datasets(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond(
        async {
            reader(&app, &headers)?;
            let data = app
                .evaluations
                .store
                .datasets()
                .await
                .map_err(|e| Failure::Eval(EvalError::Store(e.to_string())))?;
            Ok(json_response(
                StatusCode::OK,
                json!({"object": "list", "data": data}),
            ))
        }
        .await,
    )
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    offset: Option<i64>,
    limit: Option<i64>,
    target: Option<usize>,
}

/// `GET /admin/datasets/{id}`: the dataset (by id or name) and a page of its items.
async fn get_dataset(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            reader(&app, &headers)?;
            let Query(q) =
                query.map_err(|e| bad(DecodeError::new(format!("invalid query: {e}"), None)))?;
            let ds = evaluation::find_dataset(&app, &id).await?;
            let offset = q.offset.unwrap_or(0).max(0);
            let limit = q.limit.unwrap_or(100).clamp(1, 1000);
            let items = app
                .evaluations
                .store
                .items(&ds.id, offset, limit)
                .await
                .map_err(|e| Failure::Eval(EvalError::Store(e.to_string())))?;
            let items: Vec<Value> = items.into_iter().map(|(_, item)| json!(item)).collect();
            let mut v = json!(ds);
            if let Some(m) = v.as_object_mut() {
                m.insert("items".into(), Value::Array(items));
                m.insert("offset".into(), json!(offset));
            }
            Ok(json_response(StatusCode::OK, v))
        }
        .await,
    )
}

async fn create_run(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let p = writer(&app, &headers)?;
            let key = caller_key(&headers)?;
            let input: evaluation::RunInput = parse(&body)?;
            let run = evaluation::create_run(app.clone(), &p, key, input).await?;
            Ok(json_response(StatusCode::CREATED, json!(run)))
        }
        .await,
    )
}

async fn list_runs(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond(
        async {
            reader(&app, &headers)?;
            let runs = app
                .evaluations
                .store
                .runs(200)
                .await
                .map_err(|e| Failure::Eval(EvalError::Store(e.to_string())))?;
            Ok(json_response(
                StatusCode::OK,
                json!({"object": "list", "data": runs}),
            ))
        }
        .await,
    )
}

async fn get_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            reader(&app, &headers)?;
            Ok(json_response(
                StatusCode::OK,
                evaluation::run_report(&app, &id).await?,
            ))
        }
        .await,
    )
}

/// `GET /admin/evals/{id}/items`: per-item results, by target then dataset order.
async fn run_items(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            reader(&app, &headers)?;
            let Query(q) =
                query.map_err(|e| bad(DecodeError::new(format!("invalid query: {e}"), None)))?;
            let run = evaluation::find_run(&app, &id).await?;
            let results = app
                .evaluations
                .store
                .results(&id, q.target)
                .await
                .map_err(|e| Failure::Eval(EvalError::Store(e.to_string())))?;
            let offset = usize::try_from(q.offset.unwrap_or(0).max(0)).unwrap_or(0);
            let limit = usize::try_from(q.limit.unwrap_or(1000).clamp(1, 10_000)).unwrap_or(1000);
            let data: Vec<Value> = results
                .iter()
                .skip(offset)
                .take(limit)
                .map(|r| {
                    let mut v = json!(r);
                    if let (Some(m), Some(t)) = (v.as_object_mut(), run.spec.targets.get(r.target))
                    {
                        m.insert("target_label".into(), json!(t.label()));
                    }
                    v
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                json!({"object": "list", "run": id, "total": results.len(), "data": data}),
            ))
        }
        .await,
    )
}

async fn resume(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            writer(&app, &headers)?;
            let key = caller_key(&headers)?;
            let input: evaluation::ResumeInput = if body.iter().all(u8::is_ascii_whitespace) {
                evaluation::ResumeInput::default()
            } else {
                parse(&body)?
            };
            let run = evaluation::resume(app.clone(), &id, key, input).await?;
            Ok(json_response(StatusCode::ACCEPTED, json!(run)))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareQuery {
    a: String,
    b: Option<String>,
    a_target: Option<String>,
    b_target: Option<String>,
}

/// `GET /admin/evals/compare?a=RUN_A&b=RUN_B` (`b` defaults to `a`).
async fn compare(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<CompareQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            reader(&app, &headers)?;
            let Query(q) =
                query.map_err(|e| bad(DecodeError::new(format!("invalid query: {e}"), None)))?;
            let b = q.b.clone().unwrap_or_else(|| q.a.clone());
            let v =
                evaluation::compare(&app, &q.a, &b, q.a_target.as_deref(), q.b_target.as_deref())
                    .await?;
            Ok(json_response(StatusCode::OK, v))
        }
        .await,
    )
}

async fn export_mlflow(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            writer(&app, &headers)?;
            let input: evaluation::ExportInput = parse(&body)?;
            let exported = evaluation::export_mlflow(&app, &id, input).await?;
            Ok(json_response(StatusCode::OK, json!(exported)))
        }
        .await,
    )
}

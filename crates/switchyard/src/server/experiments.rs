//! Admin API for configurations, experiments and the change log, and the feedback endpoints
//! (`POST /v1/feedback` for callers, `POST /admin/feedback` for admins). Reads need the
//! `viewer` role, changes `admin`; every change lands in the change log and the audit log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_protocol::dialect::DialectId;
use switchyard_protocol::error::DecodeError;

use super::{error_response, json_response};
use crate::app::App;
use crate::error::GatewayError;
use crate::evaluation::mlflow::export_nested;
use crate::experiments::{ExperimentInput, FeedbackInput, Transition, VersionInput};
use crate::governance::Principal;
use crate::governance::model::Role;
use crate::pipeline::{RequestContext, authenticate, authorize_admin};

type Answer = Result<Response, GatewayError>;

fn respond(answer: Answer) -> Response {
    match answer {
        Ok(r) => r,
        Err(e) => error_response(
            DialectId::OpenAi,
            &e,
            &RequestContext::new(DialectId::OpenAi).id,
        ),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    DecodeError::parse(body).map_err(GatewayError::InvalidRequest)
}

fn bad(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::InvalidRequest(DecodeError::new(message, Some(param)))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, GatewayError> {
    q.map(|Query(q)| q).map_err(|e| {
        GatewayError::InvalidRequest(DecodeError::new(format!("invalid query: {e}"), None))
    })
}

/// Changes to configurations and experiments need the admin role (not a team admin's).
fn admin(app: &App, headers: &HeaderMap) -> Result<Principal, GatewayError> {
    let p = authorize_admin(app, headers, true)?;
    if p.role < Role::Admin {
        return Err(GatewayError::Forbidden(
            "Changing configurations, experiments or feedback through the admin API needs the admin role.".into(),
        ));
    }
    Ok(p)
}

fn list(data: Vec<Value>) -> Response {
    json_response(StatusCode::OK, json!({"object": "list", "data": data}))
}

// ---- configurations ---------------------------------------------------------------------

async fn list_configs(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        Ok(list(app.experiments.list_configs()))
    })())
}

async fn create_version(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let p = admin(&app, &headers)?;
            let input: VersionInput = parse(&body)?;
            let known = |alias: &str| app.table.route(alias).is_some();
            let (version, created) = app
                .experiments
                .create_version(&p.actor(), input, &known)
                .await?;
            let mut out = version;
            if let Some(map) = out.as_object_mut() {
                map.insert("created".into(), json!(created));
            }
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(status, out))
        }
        .await,
    )
}

async fn get_config(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        Ok(json_response(
            StatusCode::OK,
            app.experiments.config(&name)?,
        ))
    })())
}

async fn get_version(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        Ok(json_response(
            StatusCode::OK,
            app.experiments.version(&name, &version)?,
        ))
    })())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn diff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<DiffQuery>, QueryRejection>,
) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        let q = query(q)?;
        let from = q
            .from
            .ok_or_else(|| bad("'from' (a version or label) is required", "from"))?;
        let to = q.to.unwrap_or_else(|| "latest".to_owned());
        Ok(json_response(
            StatusCode::OK,
            app.experiments.diff(&name, &from, &to)?,
        ))
    })())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelInput {
    label: String,
    version: Value,
}

async fn set_label(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = admin(&app, &headers)?;
            let input: LabelInput = parse(&body)?;
            let out = app
                .experiments
                .set_label(&p.actor(), &name, &input.label, &input.version)
                .await?;
            Ok(json_response(StatusCode::OK, out))
        }
        .await,
    )
}

// ---- experiments ------------------------------------------------------------------------

async fn list_experiments(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        Ok(list(
            app.experiments
                .list_experiments()
                .iter()
                .map(|e| json!(**e))
                .collect(),
        ))
    })())
}

async fn create_experiment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = admin(&app, &headers)?;
            let input: ExperimentInput = parse(&body)?;
            let exp = app.experiments.create_experiment(&p.actor(), input).await?;
            Ok(json_response(StatusCode::CREATED, json!(*exp)))
        }
        .await,
    )
}

async fn get_experiment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    respond((|| {
        authorize_admin(&app, &headers, false)?;
        Ok(json_response(
            StatusCode::OK,
            json!(*app.experiments.experiment(&id)?),
        ))
    })())
}

async fn transition(app: Arc<App>, headers: HeaderMap, id: String, t: Transition) -> Response {
    respond(
        async {
            let p = admin(&app, &headers)?;
            let exp = app.experiments.transition(&p.actor(), &id, t).await?;
            Ok(json_response(StatusCode::OK, json!(*exp)))
        }
        .await,
    )
}

async fn pause(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    transition(app, headers, id, Transition::Pause).await
}

async fn resume(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    transition(app, headers, id, Transition::Resume).await
}

async fn stop(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    transition(app, headers, id, Transition::Stop).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteInput {
    variant: String,
}

async fn promote(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let p = admin(&app, &headers)?;
            let input: PromoteInput = parse(&body)?;
            let (exp, version) = app
                .experiments
                .promote(&p.actor(), &id, &input.variant)
                .await?;
            let mut out = json!(*exp);
            if let Some(map) = out.as_object_mut() {
                map.insert(
                    "production".into(),
                    json!({"config": exp.config, "version": version}),
                );
            }
            Ok(json_response(StatusCode::OK, out))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    since: Option<String>,
    until: Option<String>,
}

fn time_bound(value: Option<String>, name: &str) -> Result<Option<i64>, GatewayError> {
    match value {
        None => Ok(None),
        Some(v) => super::admin::parse_time(&v).map(Some).ok_or_else(|| {
            bad(
                format!("'{name}' must be Unix milliseconds or a span like 24h"),
                name,
            )
        }),
    }
}

async fn results(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<WindowQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            authorize_admin(&app, &headers, false)?;
            let q = query(q)?;
            let since = time_bound(q.since, "since")?;
            let until = time_bound(q.until, "until")?;
            Ok(json_response(
                StatusCode::OK,
                app.experiments.results(&id, since, until).await?,
            ))
        }
        .await,
    )
}

/// `POST /admin/experiments/{id}/export/mlflow`: the results, as `GET …/results` shows them
/// over the whole experiment, become a parent MLflow run with one nested run per variant.
async fn export_mlflow(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let input: crate::evaluation::ExportInput = parse(&body)?;
            let (client, experiment) = input
                .connect("switchyard-experiments")
                .map_err(|(message, field)| bad(message, field))?;
            let results = app.experiments.results(&id, None, None).await?;
            let (parent, children) = crate::experiments::export::mlflow_runs(&results);
            let exported = export_nested(&client, &experiment, parent, children)
                .await
                .map_err(|e| GatewayError::ExportFailed(e.to_string()))?;
            Ok(json_response(StatusCode::OK, json!(exported)))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangelogQuery {
    config: Option<String>,
    experiment: Option<String>,
    limit: Option<u32>,
}

async fn changelog(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<ChangelogQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            authorize_admin(&app, &headers, false)?;
            let q = query(q)?;
            let (kind, subject) = match (&q.config, &q.experiment) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "filter by 'config' or 'experiment', not both",
                        "experiment",
                    ));
                }
                (Some(c), None) => (Some("config"), Some(c.as_str())),
                (None, Some(e)) => (Some("experiment"), Some(e.as_str())),
                (None, None) => (None, None),
            };
            // The log of something that does not exist is not an empty log.
            match (kind, subject) {
                (Some("config"), Some(name)) => drop(app.experiments.config(name)?),
                (Some("experiment"), Some(id)) => drop(app.experiments.experiment(id)?),
                _ => {}
            }
            let entries = app
                .experiments
                .changelog(kind, subject, q.limit.unwrap_or(100))
                .await?;
            Ok(list(entries.iter().map(|e| json!(e)).collect()))
        }
        .await,
    )
}

// ---- feedback ---------------------------------------------------------------------------

/// `POST /v1/feedback`: any key, on its own requests (the master key on any).
async fn feedback(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let p = authenticate(&app, &headers)?;
            let input: FeedbackInput = parse(&body)?;
            let any = p.master;
            Ok(json_response(
                StatusCode::OK,
                app.experiments.feedback(&p, any, input).await?,
            ))
        }
        .await,
    )
}

/// `POST /admin/feedback`: admins, on any request.
async fn admin_feedback(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let p = admin(&app, &headers)?;
            let input: FeedbackInput = parse(&body)?;
            Ok(json_response(
                StatusCode::OK,
                app.experiments.feedback(&p, true, input).await?,
            ))
        }
        .await,
    )
}

pub fn routes(router: axum::Router<Arc<App>>) -> axum::Router<Arc<App>> {
    use axum::routing::{get, post};
    router
        .route("/v1/feedback", post(feedback))
        .route("/admin/feedback", post(admin_feedback))
        .route("/admin/configs", get(list_configs).post(create_version))
        .route("/admin/configs/{name}", get(get_config))
        .route("/admin/configs/{name}/versions/{version}", get(get_version))
        .route("/admin/configs/{name}/diff", get(diff))
        .route("/admin/configs/{name}/labels", post(set_label))
        .route(
            "/admin/experiments",
            get(list_experiments).post(create_experiment),
        )
        .route("/admin/experiments/{id}", get(get_experiment))
        .route("/admin/experiments/{id}/pause", post(pause))
        .route("/admin/experiments/{id}/resume", post(resume))
        .route("/admin/experiments/{id}/stop", post(stop))
        .route("/admin/experiments/{id}/promote", post(promote))
        .route("/admin/experiments/{id}/results", get(results))
        .route("/admin/experiments/{id}/export/mlflow", post(export_mlflow))
        .route("/admin/changelog", get(changelog))
}

//! The request pipeline: one function per endpoint listing the stages in order. Each stage's
//! internals live with its owner (`governance`-like checks in [`authenticate`], `routing`,
//! `upstream`, the dialects); this module only knows the order of things.
//!
//! | stage        | chat / messages                        | may end the request with        |
//! |--------------|----------------------------------------|---------------------------------|
//! | accept       | `server`: body within the limit        | 413 `request_too_large`         |
//! | authenticate | [`authenticate`]                       | 401 `invalid_api_key`           |
//! | decode       | ingress dialect                        | 400 `invalid_request`           |
//! | plan         | `routing::RoutingTable::plan`          | 404 `model_not_found`, 400 `unsupported_content` |
//! | execute      | `upstream::execute_chat`               | 4xx/5xx `upstream_*`            |
//! | respond      | ingress dialect (JSON or SSE relay)    | in-stream error after commit    |
//! | settle       | `telemetry::Tracker` → record, log line | never fails the response       |

mod authenticate;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, HeaderName};
use switchyard_protocol::canonical::{ChatRequest, FinishReason, ResponseFormat, Usage};
use switchyard_protocol::dialect::{DialectId, EncodeCtx, IngressDialect, KeepAnswer};
use switchyard_protocol::openai;
use switchyard_protocol::openai::kept_responses;

use crate::app::App;
use crate::config::ContentMode;
use crate::error::GatewayError;
use crate::experiments;
use crate::governance::{Demand, Principal};
use crate::pricing::Price;
use crate::response_cache;
use crate::routing::{Needs, PlanError, RequestFacts, RouteDecision, now_ms};
use crate::telemetry::{CLIENT_CLOSED, Outcome, Tracker};
use crate::upstream::{self, Answer, AttemptLog, relay::StreamEnd};

pub use authenticate::{authenticate, authorize_admin, presented_key};

/// Per-request facts the stages share.
pub struct RequestContext {
    pub id: String,
    pub started: Instant,
    pub dialect: DialectId,
}

impl RequestContext {
    pub fn new(dialect: DialectId) -> Self {
        Self {
            id: request_id(),
            started: Instant::now(),
            dialect,
        }
    }
}

/// A request's record, begun.
pub fn tracker(app: &App, ctx: &RequestContext, endpoint: &'static str) -> Tracker {
    Tracker::new(
        app.recorder.clone(),
        &ctx.id,
        ctx.started,
        ctx.dialect.as_str(),
        endpoint,
        app.config.telemetry.content,
        usize::try_from(app.config.telemetry.content_max_bytes).unwrap_or(usize::MAX),
    )
}

/// Ends the record of a request whose reply is not a stream (a stream's record ends with it).
pub fn settle<T>(tracker: Tracker, result: &Result<T, GatewayError>) {
    match result {
        Ok(_) => tracker.finish(200, Outcome::Success, None),
        Err(e) => {
            let outcome = match e {
                GatewayError::Upstream { .. } | GatewayError::Internal(_) => Outcome::UpstreamError,
                _ => Outcome::ClientError,
            };
            tracker.finish(e.to_client().status, outcome, Some(e));
        }
    }
}

/// A time-ordered id (UUIDv7): milliseconds, a 12-bit sequence that keeps ids of the same
/// millisecond in the order they were made (records list newest first by id), then random bits
/// from the thread's generator; `Uuid::now_v7` would read the system's random source, a system
/// call per request.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// The last id's milliseconds and sequence, as `ms << 12 | sequence`.
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        // A sequence that runs out within a millisecond carries into the next one.
        let next = (now_ms << 12).max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => prev = seen,
        }
    };
    let mut bytes: [u8; 10] = rand::random();
    bytes[0] = (stamp >> 8) as u8 & 0x0f;
    bytes[1] = stamp as u8;
    uuid::Builder::from_unix_timestamp_millis(stamp >> 12, &bytes)
        .into_uuid()
        .simple()
        .to_string()
}

pub type SseBody =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>>;

pub enum ReplyBody {
    Json(Vec<u8>),
    Sse(SseBody),
}

/// A successful reply, before HTTP framing.
pub struct Reply {
    pub body: ReplyBody,
    /// `x-switchyard-route`: alias, deployment, attempts.
    pub route: String,
    /// More response headers (`x-switchyard-variant` …).
    pub headers: Vec<(&'static str, String)>,
}

/// The `x-switchyard-route` value. Put together by hand: it is made for every answer, and the
/// formatting machinery cost several times the copying.
/// `attempts` are the request's; the last one's alias, when a fallback's, is named too.
fn route_header(decision: &RouteDecision, deployment: &str, attempts: &[AttemptLog]) -> String {
    let count = attempts.len().to_string();
    let (rule_label, rule) = match &decision.rule {
        Some(rule) => ("; rule=", rule.as_str()),
        None => ("", ""),
    };
    let (fallback_label, fallback) = match attempts.last() {
        Some(last) if last.alias != decision.alias => ("; fallback=", &*last.alias),
        _ => ("", ""),
    };
    [
        "alias=",
        &decision.alias,
        fallback_label,
        fallback,
        "; deployment=",
        deployment,
        "; attempts=",
        &count,
        "; strategy=",
        decision.strategy,
        rule_label,
        rule,
    ]
    .concat()
}

fn facts_of(request: &ChatRequest, headers: &HeaderMap, input_tokens: u64) -> RequestFacts {
    RequestFacts {
        model: request.model.clone(),
        metadata: request.metadata.clone(),
        input_tokens,
        max_output_tokens: request.max_tokens.map(u64::from),
        messages: request.messages.len(),
        needs: Needs {
            tools: !request.tools.is_empty(),
            images: request.has_images(),
            documents: request.has_documents(),
            json_schema: matches!(
                request.response_format,
                Some(ResponseFormat::JsonSchema { .. })
            ),
            embeddings: false,
            several_choices: request.n.is_some_and(|n| n > 1),
        },
        max_cost: max_cost(headers),
        team: None,
        key: None,
        restrictions: Default::default(),
    }
}

/// Whether the prompt's token estimate feeds a decision: a budget or TPM limit of the caller,
/// routing on token counts or cost, or a per-request cost ceiling. Otherwise the tokenizer is
/// skipped (and its vocabulary never built).
fn needs_token_estimate(
    app: &App,
    principal: &crate::governance::Principal,
    customer: Option<&str>,
    headers: &HeaderMap,
) -> bool {
    app.table.tokens_matter()
        || headers.contains_key(&MAX_COST)
        || app.governance.meters_tokens(principal, customer)
}

// Header names made once: a lookup by `&str` parses and checks the name on every request.
/// `x-switchyard-max-cost`: a per-request ceiling in US dollars.
static MAX_COST: HeaderName = HeaderName::from_static("x-switchyard-max-cost");
/// `x-switchyard-customer`: the end user a request is for (else the body's `user`).
static CUSTOMER: HeaderName = HeaderName::from_static("x-switchyard-customer");

/// The [`MAX_COST`] header as dollars, when it is a finite number not below zero.
fn max_cost(headers: &HeaderMap) -> Option<f64> {
    headers
        .get(&MAX_COST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Refuses an [`MAX_COST`] header that is not a dollar amount: ignored, it would let the
/// request run with no ceiling at all.
fn check_max_cost(headers: &HeaderMap) -> Result<(), GatewayError> {
    if headers.contains_key(&MAX_COST) && max_cost(headers).is_none() {
        return Err(GatewayError::InvalidRequest(
            switchyard_protocol::error::DecodeError::new(
                "the x-switchyard-max-cost header must be a number of US dollars, 0 or more (e.g. 0.05)",
                None,
            ),
        ));
    }
    Ok(())
}

/// The guardrails of the alias a client named (its fallbacks included), else the top-level
/// ones.
fn guardrails_of(app: &App, model: &str) -> crate::config::file::GuardrailsFile {
    app.table
        .route(model)
        .and_then(|r| r.guardrails)
        .unwrap_or(app.config.guardrails)
}

fn plan_error(e: PlanError) -> GatewayError {
    match e {
        PlanError::UnknownAlias(alias) => GatewayError::ModelNotFound(alias),
        PlanError::Unsupported { alias, needs } => GatewayError::Unsupported(format!(
            "No deployment behind '{alias}' supports what this request needs ({needs})."
        )),
        PlanError::NotAllowed(why) => GatewayError::ModelNotAllowed(why),
    }
}

fn random_below(n: u32) -> u32 {
    if n == 0 { 0 } else { rand::random_range(0..n) }
}

fn price_of(d: &crate::routing::Deployment) -> Option<Price> {
    d.billing
}

/// Reads the client's request. A Responses API request that refers to kept responses
/// (`previous_response_id`, `item_reference`) fails the first reading, since the decoders read
/// every request as stateless; it is then read again with what it refers to brought into its
/// `input`, as if the client had sent the whole conversation. Requests that refer to nothing
/// are read once and never scanned for references.
async fn decode_bringing_in_kept(
    app: &App,
    ingress: &dyn IngressDialect,
    principal: &Principal,
    body: Bytes,
) -> Result<(Bytes, ChatRequest), GatewayError> {
    let first = match ingress.decode_chat(&body) {
        Ok(request) => {
            if ingress.id() == DialectId::Anthropic
                && let Some(thread) = request.extras.fields.get("thread")
            {
                return Err(GatewayError::Thread {
                    continuing: thread.get("type").and_then(|t| t.as_str()) == Some("continue"),
                });
            }
            return Ok((body, request));
        }
        Err(e) => e,
    };
    if ingress.id() != DialectId::OpenAiResponses || !kept_responses::refers_to_kept(&body) {
        return Err(GatewayError::InvalidRequest(first));
    }
    // Another replica may have kept them. Boxed, so that what it holds while it waits does not
    // enlarge every request's future (which is moved, whole, as it is set going).
    Box::pin(fetch_kept(app, &body)).await;
    let owner = &principal.caller.key_id.as_deref().map(str::to_owned);
    let found = |id: &str| app.kept_responses.get(id, owner);
    match kept_responses::bring_in(&body, &found).map_err(GatewayError::InvalidRequest)? {
        Some(brought) => {
            let whole = Bytes::from(brought.body);
            let mut request = ingress
                .decode_chat(&whole)
                .map_err(GatewayError::InvalidRequest)?;
            if let Some(previous) = brought.previous {
                kept_responses::continues(&mut request, previous);
            }
            Ok((whole, request))
        }
        None => Err(GatewayError::InvalidRequest(first)),
    }
}

/// Brings the kept responses `body` refers to here, from another replica's keeping.
async fn fetch_kept(app: &App, body: &[u8]) {
    for id in kept_responses::referenced_responses(body) {
        app.kept_responses.fetch(&id).await;
    }
}

/// The answer kept under `key`: this replica's, else (with shared state) another's.
async fn cached_answer(
    app: &App,
    store: &response_cache::ResponseCache,
    key: &[u8; 32],
) -> Option<std::sync::Arc<response_cache::Cached>> {
    if let Some(hit) = store.get(key) {
        return Some(hit);
    }
    let shared = app.governance.shared()?;
    match shared.cache_get(key).await {
        Ok(Some((value, left))) => store.adopt(*key, &value, left),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot read the shared response cache: {e}");
            None
        }
    }
}

/// The response cache's key for a request that may use the cache, and what it may do with it:
/// none without a cache, for the Responses API (its answers are kept under their ids) and with
/// `x-switchyard-cache: no-store`. A stream's key is its own (its body says `stream`), and its
/// answer is kept as the events the client got.
fn cache_entry(
    app: &App,
    ingress: &dyn IngressDialect,
    principal: &Principal,
    headers: &HeaderMap,
    narrowing: &[String],
    body: &[u8],
) -> Option<([u8; 32], response_cache::Use)> {
    app.response_cache.as_ref()?;
    let use_ = response_cache::Use::of(headers);
    if use_ == response_cache::Use::Neither || ingress.id() == DialectId::OpenAiResponses {
        return None;
    }
    let key = response_cache::ResponseCache::key(
        &principal.caller,
        ingress.id().as_str(),
        narrowing.iter().map(String::as_str),
        body,
    );
    Some((key, use_))
}

/// What narrows who may share a kept answer beyond the caller's scope: its team and key when
/// routing rules name them (the rule may send them elsewhere), and on the Anthropic ingress the
/// beta and version headers, which go on to the provider and can change the answer.
fn cache_narrowing(
    app: &App,
    ingress: &dyn IngressDialect,
    principal: &Principal,
    headers: &HeaderMap,
) -> Vec<String> {
    let mut narrowing = Vec::new();
    let (teams, keys) = app.table.rules_name();
    if teams {
        narrowing.push(format!(
            "team:{}",
            principal.caller.team.as_deref().unwrap_or("")
        ));
    }
    if keys {
        narrowing.push(format!(
            "key:{}",
            principal.caller.key_id.as_deref().unwrap_or("")
        ));
    }
    if ingress.id() == DialectId::Anthropic {
        for name in ["anthropic-beta", "anthropic-version"] {
            for value in headers.get_all(name) {
                narrowing.push(format!(
                    "{name}:{}",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
        }
    }
    narrowing
}

/// Whether a kept answer may be served to a caller with `restrictions`: the deployment that gave
/// it must be one the caller may use.
fn may_serve(
    app: &App,
    restrictions: &crate::routing::Restrictions,
    hit: &response_cache::Cached,
) -> bool {
    restrictions.is_empty()
        || app
            .table
            .deployment(&hit.deployment)
            .is_some_and(|d| restrictions.rejects(&d.attributes).is_none())
}

/// A kept answer as the reply (a hit of either cache), with its record.
fn cached_reply(
    tracker: &mut Tracker,
    hit: &response_cache::Cached,
    stream: bool,
    mut headers: Vec<(&'static str, String)>,
) -> Reply {
    tracker.set_usage(hit.usage, hit.response_chars, None);
    tracker.set_cache_hit(&hit.alias, &hit.deployment);
    tracker.set_response_meta(hit.model.clone(), Some(hit.finish_reason));
    headers.push((response_cache::CACHE_HEADER_NAME, "hit".to_owned()));
    let body = if stream {
        // The events as the first client got them, at once.
        let events = Bytes::from(hit.body.clone());
        ReplyBody::Sse(Box::pin(futures::stream::once(async move { Ok(events) })))
    } else {
        ReplyBody::Json(hit.body.clone())
    };
    Reply {
        body,
        route: [
            "alias=",
            &hit.alias,
            "; deployment=",
            &hit.deployment,
            "; attempts=0; cache=hit",
        ]
        .concat(),
        headers,
    }
}

/// With a semantic cache, the request's context (its key, scoped as the exact cache's and
/// narrowed to its customer: a question worded alike may hold another customer's particulars)
/// and its question, when it ends with a user's text.
fn semantic_question(
    app: &App,
    ingress: &dyn IngressDialect,
    principal: &Principal,
    narrowing: &[String],
    customer: Option<&str>,
    body: &[u8],
) -> Option<([u8; 32], String)> {
    app.semantic_cache.as_ref()?;
    let split = crate::semantic_cache::split(body)?;
    let customer = format!("customer:{}", customer.unwrap_or(""));
    let context = response_cache::ResponseCache::key(
        &principal.caller,
        ingress.id().as_str(),
        narrowing
            .iter()
            .map(String::as_str)
            .chain([customer.as_str()]),
        &split.context,
    );
    Some((context, split.question))
}

/// The question's embedding, from the semantic cache's model: a request of its own, admitted,
/// recorded (tagged `purpose: semantic_cache`) and billed as the caller's. `None` when it
/// fails; the request then goes on without the semantic cache.
async fn question_vector(
    app: &Arc<App>,
    headers: &HeaderMap,
    principal: &Principal,
    customer: Option<&str>,
    semantic: &crate::semantic_cache::SemanticCache,
    question: String,
) -> Option<Vec<f32>> {
    let ctx = RequestContext::new(DialectId::OpenAi);
    let mut tracker = tracker(app, &ctx, "embeddings");
    // In the caller's trace, sampled as it is.
    tracker.set_trace(
        crate::server::traceparent(headers),
        crate::server::tracestate(headers).as_deref(),
    );
    tracker.set_caller(principal.caller.clone());
    tracker.add_tag("purpose", "semantic_cache");
    let request = switchyard_protocol::canonical::EmbeddingRequest {
        model: semantic.model.clone(),
        input: switchyard_protocol::canonical::EmbeddingInput::Texts(vec![question]),
        single: true,
        dimensions: None,
        encoding_format: Default::default(),
        user: None,
        extras: Default::default(),
    };
    let result = embed(
        app,
        &ctx,
        principal,
        customer,
        &HeaderMap::new(),
        &request,
        &mut tracker,
    )
    .await
    .map(|(answer, _)| answer);
    settle(tracker, &result);
    match result {
        Ok(mut answer) => answer.vectors.pop(),
        Err(e) => {
            let said = crate::telemetry::mask::mask(&e.to_string()).into_owned();
            tracing::debug!(request_id = %ctx.id, "semantic cache: no embedding ({said})");
            None
        }
    }
}

/// Where a Responses API answer goes to be kept, unless keeping is off or the request said
/// `store: false`: with the request it answered (`body`, its references brought in), for the
/// caller that made it.
fn keep_answer(
    app: &Arc<App>,
    ingress: &dyn IngressDialect,
    principal: &Principal,
    request: &ChatRequest,
    body: &Bytes,
) -> Option<KeepAnswer> {
    let declined =
        request.extras.fields.get(kept_responses::STORE) == Some(&serde_json::Value::Bool(false));
    if ingress.id() != DialectId::OpenAiResponses || !app.kept_responses.enabled() || declined {
        return None;
    }
    let (app, body, owner) = (
        app.clone(),
        body.clone(),
        principal.caller.key_id.as_deref().map(str::to_owned),
    );
    Some(KeepAnswer(Arc::new(move |id: &str, response: Bytes| {
        // A copy of its own: the body may share a larger buffer of the connection's, which
        // keeping it for an hour would hold on to.
        let kept = kept_responses::Kept {
            request: Bytes::copy_from_slice(&body),
            response,
        };
        app.kept_responses.keep(id.to_owned(), kept, owner.clone());
    })))
}

/// `POST /v1/chat/completions` and `POST /v1/messages`.
pub async fn chat(
    app: Arc<App>,
    ctx: &RequestContext,
    ingress: &'static dyn IngressDialect,
    headers: &HeaderMap,
    body: Bytes,
    tracker: &mut Tracker,
) -> Result<Reply, GatewayError> {
    let principal = authenticate(&app, headers)?;
    tracker.set_caller(principal.caller.clone());
    check_max_cost(headers)?;
    let (body, mut request) = decode_bringing_in_kept(&app, ingress, &principal, body).await?;
    let keep = keep_answer(&app, ingress, &principal, &request, &body);
    let customer = customer_header(headers).or_else(|| request.user.clone());
    let narrowing = match app.response_cache {
        Some(_) => cache_narrowing(&app, ingress, &principal, headers),
        None => Vec::new(),
    };
    let cache = cache_entry(&app, ingress, &principal, headers, &narrowing, &body);
    let question = cache.as_ref().and_then(|_| {
        semantic_question(
            &app,
            ingress,
            &principal,
            &narrowing,
            customer.as_deref(),
            &body,
        )
    });
    drop(body);
    ingress.keep_headers(headers, &mut request);
    let applied = apply_config(
        &app,
        ctx,
        &principal,
        customer.as_deref(),
        headers,
        &mut request,
        tracker,
    );
    tracker.set_request(&request, customer.clone());
    let applied = applied?;
    let mut reply_headers = experiments::reply_headers(applied.as_ref());
    let named = app.table.route(&request.model);
    if let Some(route) = named {
        tracker.set_alias(&route.alias);
    }
    check_model(&app, &principal, customer.as_deref(), &request.model)?;
    // The alias the client named decides, fallbacks included.
    let rails = named
        .and_then(|r| r.guardrails)
        .unwrap_or(app.config.guardrails);
    let checked = crate::guardrails::before_provider(&rails, &mut request)?;
    if checked.injection_flagged {
        tracker.add_tag("guardrail", "injection");
    }
    if checked.redacted > 0 {
        tracker.add_tag("pii_redacted", &checked.redacted.to_string());
    }
    // A version or variant an experiment chose is not the request the body names; and a caller
    // whose restrictions (regions, risk, data classes) leave it no deployment of the model is
    // not served another caller's answer from one: it goes on to be refused as it would be.
    let restrictions = app.governance.restrictions(&principal, customer.as_deref());
    let cache = cache.filter(|_| {
        applied.is_none()
            && (restrictions.is_empty() || app.table.usable(&request.model, &restrictions))
    });
    // The question's embedding and context, for keeping the answer under them.
    let mut asked = None;
    if let Some((key, use_)) = &cache {
        let reads = *use_ == response_cache::Use::ReadAndKeep;
        let hit = match (reads, app.response_cache.as_ref()) {
            (true, Some(store)) => cached_answer(&app, store, key).await,
            _ => None,
        };
        if let Some(hit) = hit.filter(|h| may_serve(&app, &restrictions, h)) {
            return Ok(cached_reply(tracker, &hit, request.stream, reply_headers));
        }
        if let (Some(semantic), Some(store), Some((context, question))) = (
            &app.semantic_cache,
            &app.response_cache,
            question.filter(|_| applied.is_none()),
        ) && let Some(vector) = Box::pin(question_vector(
            &app,
            headers,
            &principal,
            customer.as_deref(),
            semantic,
            // The embedding model is a provider too: what the prompt's guardrails redact does
            // not reach it either.
            crate::guardrails::redacted(&rails, question),
        ))
        .await
        {
            let similar = if reads {
                semantic.nearest(&context, &vector)
            } else {
                Vec::new()
            };
            for (answer, similarity) in similar {
                if let Some(hit) = store
                    .get(&answer)
                    .filter(|h| may_serve(&app, &restrictions, h))
                {
                    tracker.add_tag("cache", "semantic");
                    tracker.add_tag("cache_similarity", &format!("{similarity:.4}"));
                    return Ok(cached_reply(tracker, &hit, request.stream, reply_headers));
                }
            }
            asked = Some((context, vector));
        }
        reply_headers.push((response_cache::CACHE_HEADER_NAME, "miss".to_owned()));
    }
    // The prompt's size in tokens, for the reservation, TPM and routing (an estimate that leans
    // high; the usage in the answer is what gets billed). Only counted when something uses it.
    let input_tokens = if needs_token_estimate(&app, &principal, customer.as_deref(), headers) {
        crate::tokens::estimate_chat(app.table.encoding(&request.model), &request)
    } else {
        crate::tokens::rough(request.prompt_chars())
    };
    tracker.set_prompt_estimate(input_tokens);
    let mut facts = facts_of(&request, headers, input_tokens);
    facts.team = principal.caller.team.clone();
    facts.key = principal.caller.key_id.clone();
    facts.restrictions = restrictions;
    let mut planner = app
        .table
        .planner(facts, now_ms(), &mut random_below)
        .map_err(plan_error)?;
    tracker.set_alias(&planner.decision.alias);
    let (admission, capped) = app
        .governance
        .admit(
            &principal,
            customer.as_deref(),
            app.table.max_price(&planner.decision.alias),
            Demand {
                input_tokens,
                max_tokens: request.max_tokens,
                reasoning_tokens: request
                    .reasoning
                    .as_ref()
                    .and_then(|r| {
                        r.budget_tokens.or_else(|| {
                            r.effort
                                .as_deref()
                                .and_then(switchyard_protocol::anthropic::effort_budget)
                        })
                    })
                    .unwrap_or(0),
                cache_writes: request.cache_writes(),
                answers: request.n.unwrap_or(1),
            },
        )
        .await?;
    if let Some(cap) = capped {
        // Under a budget the provider is asked for no more output than was reserved.
        request.max_tokens = Some(cap);
    }
    // An answer cut at a limit the gateway set for this caller's budget is not the answer the
    // request asks for: it is not kept for others (one that ended by itself is).
    let cut_for_budget = capped.is_some();
    tracker.set_output_cap(
        request
            .max_tokens
            .map(|m| u64::from(m) * u64::from(request.n.unwrap_or(1).max(1))),
    );
    tracker.set_admission(admission);
    let encode_ctx = EncodeCtx {
        prompt_estimate: input_tokens,
        id: ctx.id.clone(),
        model: request.model.clone(),
        created: unix_now(),
        include_usage: request.include_usage || ctx.dialect == DialectId::Anthropic,
        echo: ingress.echo(&request),
        keep,
    };
    let result = upstream::execute_chat(
        &mut planner,
        &request,
        &app.table.policy,
        &app.retry_budget,
        app.media.as_ref(),
        tracker.progress(),
    )
    .await;
    let decision = std::mem::take(&mut planner.decision);
    let executed = match result {
        Ok(e) => e,
        Err(failed) => {
            log_request(
                ctx,
                &decision,
                &failed.attempts,
                Err(&failed.error),
                None,
                request.stream,
            );
            if let Some(last) = failed.attempts.last() {
                tracker.set_failed_route(route_header(
                    &decision,
                    &last.deployment,
                    &failed.attempts,
                ));
            }
            tracker.set_route(decision, failed.attempts);
            return Err(failed.error);
        }
    };
    let route = route_header(&decision, &executed.deployment.id, &executed.attempts);
    let price = price_of(&executed.deployment);
    let answered_alias = executed
        .attempts
        .last()
        .map_or_else(|| decision.alias.clone(), |a| a.alias.clone());
    match executed.answer {
        Answer::Complete(response) => {
            tracker.set_usage(response.usage, response.text_len(), price);
            if tracker.content() != ContentMode::Off {
                tracker.set_response_text(&response.text());
            }
            log_request(
                ctx,
                &decision,
                &executed.attempts,
                Ok(()),
                response.usage,
                false,
            );
            tracker.set_route(decision, executed.attempts);
            crate::guardrails::check_answer(&rails, &request, &response)?;
            let body = ingress.encode_chat(&response, &encode_ctx);
            let finish_reason = response.finish_reason.as_openai();
            let ended_normally = keepable(&response.finish_reason, cut_for_budget);
            if let (Some(store), Some((key, _)), true) =
                (&app.response_cache, cache, ended_normally)
            {
                keep_in_cache(
                    &app,
                    store,
                    key,
                    asked.as_ref(),
                    response_cache::Answer {
                        body: body.clone(),
                        usage: response.usage,
                        model: response.model.clone(),
                        finish_reason,
                        response_chars: response.text_len(),
                        alias: answered_alias.to_string(),
                        deployment: executed.deployment.id.to_string(),
                    },
                );
            }
            if !response.more_choices.is_empty() {
                tracker.set_more_finish_reasons(
                    response
                        .more_choices
                        .iter()
                        .map(|c| c.finish_reason.as_openai())
                        .collect(),
                );
            }
            tracker.set_response_id(&response.id);
            tracker.set_response_meta(response.model, Some(finish_reason));
            Ok(Reply {
                body: ReplyBody::Json(body),
                route,
                headers: reply_headers,
            })
        }
        Answer::Stream(stream) => {
            let encoder = ingress.stream_encoder(encode_ctx);
            let id = ctx.id.clone();
            let started = ctx.started;
            let mut attempts = executed.attempts;
            let committed = executed.deployment.clone();
            let health_app = app.clone();
            let mut tracker = tracker.detach();
            let capture = tracker.content() != ContentMode::Off;
            let keep_id = tracker.traced();
            // With a cache, how the stream ended, for keeping its events.
            let keeping = match (&app.response_cache, cache) {
                (Some(_), Some((key, _))) => Some((
                    key,
                    Arc::new(StreamEnding {
                        ended: Default::default(),
                        cut_for_budget,
                    }),
                )),
                _ => None,
            };
            let ending = keeping.as_ref().map(|(_, ending)| ending.clone());
            let committed_at = Instant::now();
            let on_end = Box::new(move |end: StreamEnd| {
                if let Some(ending) = ending {
                    ending.note(&end);
                }
                // The attempt that committed lasted until its stream ended, not until it
                // committed (its record's latency, its trace span).
                if let Some(attempt) = attempts.iter_mut().rev().find(|a| !a.cancelled) {
                    attempt.latency += committed_at.elapsed();
                }
                log_stream_end(&id, &decision, started, &attempts, &end);
                match &end.error {
                    Some(e) => {
                        upstream::stream_failed(&committed, &health_app.table.policy, e);
                        // The attempt that committed is the one whose stream failed.
                        if let Some(attempt) = attempts.iter_mut().rev().find(|a| !a.cancelled) {
                            attempt.error = Some(e.class);
                        }
                    }
                    None => upstream::stream_succeeded(&committed),
                }
                // A client that left mid-stream cut the provider's answer off too: its attempt
                // is the one the client left during, as a walk's is.
                if end.cancelled
                    && let Some(attempt) = attempts.iter_mut().rev().find(|a| !a.cancelled)
                {
                    attempt.cancelled = true;
                }
                tracker.set_route(decision, attempts);
                if let Some(at) = end.first_chunk_at {
                    tracker.set_ttft(at);
                }
                // A stream that did not end whole may have said only part of its usage (Claude's
                // opening count of one output token): what reached the client counts at least.
                let whole = end.error.is_none() && !end.cancelled;
                tracker.set_stream_usage(end.usage, end.output_chars, price, whole);
                tracker.set_response_text(&end.text);
                tracker.set_response_id(&end.response_id);
                tracker
                    .set_response_meta(end.model, end.finish.as_ref().map(FinishReason::as_openai));
                if end.cancelled {
                    if crate::server::shutdown_cut_short() {
                        let error = GatewayError::ShuttingDown;
                        tracker.finish(200, Outcome::Cancelled, Some(&error));
                    } else {
                        tracker.finish(CLIENT_CLOSED, Outcome::Cancelled, None);
                    }
                } else if let Some(e) = end.error {
                    let error = GatewayError::Upstream {
                        last: e,
                        all_rate_limited: false,
                        attempts: 1,
                    };
                    // The status line said 200; the record keeps what the client actually got.
                    tracker.finish(200, Outcome::StreamError, Some(&error));
                } else {
                    tracker.finish(200, Outcome::Success, None);
                }
            });
            let relayed = upstream::relay::relay(stream, encoder, capture, keep_id, on_end);
            drop(planner);
            let body: SseBody = match keeping {
                Some((key, ending)) => Box::pin(keep_stream(
                    relayed,
                    app,
                    key,
                    asked,
                    ending,
                    answered_alias.to_string(),
                    executed.deployment.id.to_string(),
                    executed.deployment.model.clone(),
                )),
                None => Box::pin(relayed),
            };
            Ok(Reply {
                body: ReplyBody::Sse(body),
                route,
                headers: reply_headers,
            })
        }
    }
}

/// Whether an answer that ended for `finish` may be kept for others: not one a content filter
/// or a provider's own reason stopped, nor one cut at the limit a caller's budget set.
fn keepable(finish: &FinishReason, cut_for_budget: bool) -> bool {
    match finish {
        FinishReason::ContentFilter | FinishReason::Other(_) => false,
        FinishReason::Length => !cut_for_budget,
        _ => true,
    }
}

/// How a stream ended, as its keeper needs it: noted by the relay's end, which comes before the
/// last chunk is handed on.
struct StreamEnding {
    ended: parking_lot::Mutex<Option<(Option<Usage>, usize, &'static str)>>,
    /// The gateway set the request's output limit for its caller's budget.
    cut_for_budget: bool,
}

impl StreamEnding {
    /// Notes a stream that ended normally: usage, characters and finish reason. Nothing for one
    /// that broke off, was cancelled, stopped for a content filter or a provider's reason, or
    /// at the limit its caller's budget set.
    fn note(&self, end: &StreamEnd) {
        let normal = end.error.is_none()
            && !end.cancelled
            && end
                .finish
                .as_ref()
                .is_none_or(|f| keepable(f, self.cut_for_budget));
        if normal {
            let finish = end.finish.as_ref().map_or("stop", FinishReason::as_openai);
            *self.ended.lock() = Some((end.usage, end.output_chars, finish));
        }
    }
}

/// The client's stream, passed on unchanged, its events gathered on the side: when it ended
/// normally and its events fit the cache's bound for one answer, they are kept as the answer.
#[allow(clippy::too_many_arguments)]
fn keep_stream(
    relayed: impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
    app: Arc<App>,
    key: [u8; 32],
    asked: Option<([u8; 32], Vec<f32>)>,
    ending: Arc<StreamEnding>,
    alias: String,
    deployment: String,
    model: String,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    use futures::StreamExt;
    let limit = app
        .response_cache
        .as_ref()
        .map_or(0, response_cache::ResponseCache::max_answer_bytes);
    let gathered: Option<Vec<u8>> = Some(Vec::new());
    let state = (
        Box::pin(relayed),
        gathered,
        Some((app, asked, alias, deployment, model)),
    );
    futures::stream::unfold(state, move |(mut relayed, mut gathered, mut keep)| {
        let ending = ending.clone();
        async move {
            match relayed.next().await {
                Some(Ok(chunk)) => {
                    if let Some(events) = &mut gathered {
                        if events.len() + chunk.len() <= limit {
                            events.extend_from_slice(&chunk);
                        } else {
                            gathered = None;
                        }
                    }
                    Some((Ok(chunk), (relayed, gathered, keep)))
                }
                Some(Err(never)) => match never {},
                None => {
                    let end = ending.ended.lock().take();
                    if let (Some(events), Some((usage, chars, finish)), Some(ctx)) =
                        (gathered, end, keep.take())
                    {
                        let (app, asked, alias, deployment, model) = ctx;
                        if let Some(store) = &app.response_cache {
                            keep_in_cache(
                                &app,
                                store,
                                key,
                                asked.as_ref(),
                                response_cache::Answer {
                                    body: events,
                                    usage,
                                    model,
                                    finish_reason: finish,
                                    response_chars: chars,
                                    alias,
                                    deployment,
                                },
                            );
                        }
                    }
                    None
                }
            }
        }
    })
}

/// Keeps an answer in the cache under `key`, and under the question it answers in the
/// semantic cache; with shared state, in Redis for the other replicas too.
fn keep_in_cache(
    app: &App,
    store: &response_cache::ResponseCache,
    key: [u8; 32],
    asked: Option<&([u8; 32], Vec<f32>)>,
    answer: response_cache::Answer,
) {
    let kept = store.keep(key, answer);
    if let (Some(semantic), Some((context, vector))) = (&app.semantic_cache, asked) {
        semantic.insert(*context, vector, key);
    }
    if let Some(shared) = app.governance.shared().cloned() {
        // For the other replicas, off the answer's path.
        let (value, ttl) = (response_cache::to_shared(&kept), store.ttl());
        tokio::spawn(async move {
            if let Err(e) = shared.cache_put(&key, value, ttl).await {
                tracing::warn!("cannot share a cached answer: {e}");
            }
        });
    }
}

/// Applies the configuration version the request selects (if any; an experiment may choose
/// it) and notes it, with the session, in the record.
fn apply_config(
    app: &App,
    ctx: &RequestContext,
    principal: &crate::governance::Principal,
    customer: Option<&str>,
    headers: &HeaderMap,
    request: &mut ChatRequest,
    tracker: &mut Tracker,
) -> Result<Option<experiments::Applied>, GatewayError> {
    let session = experiments::session_id(headers);
    tracker.set_session(session);
    let units = experiments::Units {
        customer,
        key: principal.caller.key_id.as_deref(),
        session,
        request: &ctx.id,
    };
    let allowed = |alias: &str| app.governance.model_allowed(principal, customer, alias);
    let applied = app.experiments.prepare(request, headers, units, &allowed)?;
    if let Some(a) = &applied {
        tracker.set_experiment(a);
    }
    Ok(applied)
}

/// The model allow-lists of every level the caller belongs to must admit the alias.
fn check_model(
    app: &App,
    principal: &crate::governance::Principal,
    customer: Option<&str>,
    alias: &str,
) -> Result<(), GatewayError> {
    if app.governance.model_allowed(principal, customer, alias) {
        Ok(())
    } else {
        Err(GatewayError::ModelNotAllowed(format!(
            "This key may not use the model '{alias}' (its allow-list or its team's, organisation's or customer's does not include it)."
        )))
    }
}

/// The [`CUSTOMER`] header, trimmed, when not empty.
fn customer_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&CUSTOMER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// `POST /v1/messages/count_tokens` and `POST /v1/responses/input_tokens`: the prompt's input
/// tokens, as the first deployment behind the alias that is not cooling down counts them where
/// its provider has a counting endpoint (Anthropic's), else the gateway's own estimate. The
/// body is a request of `ingress`'s dialect (a Messages one without `max_tokens`); nothing is
/// generated, billed or recorded.
pub async fn count_tokens(
    app: &App,
    ingress: &'static dyn IngressDialect,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<u64, GatewayError> {
    let principal = authenticate(app, headers)?;
    let body = if ingress.id() == DialectId::Anthropic {
        // The Messages decoder wants `max_tokens`, which this endpoint does not take.
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|e| {
                GatewayError::InvalidRequest(switchyard_protocol::error::DecodeError::new(
                    format!("the body is not a JSON object: {e}"),
                    None,
                ))
            })?;
        object
            .entry("max_tokens")
            .or_insert(serde_json::Value::from(1));
        Bytes::from(serde_json::Value::Object(object).to_string())
    } else {
        body
    };
    let (_, mut request) = decode_bringing_in_kept(app, ingress, &principal, body).await?;
    ingress.keep_headers(headers, &mut request);
    let customer = customer_header(headers).or_else(|| request.user.clone());
    check_model(app, &principal, customer.as_deref(), &request.model)?;
    // The prompt goes to a provider to be counted: its guardrails apply as they would to the
    // request itself (redacted, or refused).
    let rails = guardrails_of(app, &request.model);
    crate::guardrails::before_provider(&rails, &mut request)?;
    // Routed as the request itself would be: a name the routing rules send to an alias
    // (Claude Code's model names, say) is counted there.
    let mut facts = facts_of(&request, headers, 0);
    facts.team = principal.caller.team.clone();
    facts.key = principal.caller.key_id.clone();
    let route = app
        .table
        .route(app.table.routed_alias(&facts))
        .ok_or_else(|| GatewayError::ModelNotFound(request.model.clone()))?;
    let now = now_ms();
    let deployment = route
        .deployments
        .iter()
        .find(|d| !d.health.snapshot(now).cooling)
        .or_else(|| route.deployments.first());
    if let Some(d) = deployment
        && let Some(counted) = upstream::count_tokens(d, &request).await
    {
        match counted {
            Ok(tokens) => return Ok(tokens),
            // A count is worth having whether or not the provider would give it (a model its
            // endpoint does not count for, a provider down): the gateway's estimate instead.
            // Masked: a provider's words about a prompt may quote it.
            Err(e) => tracing::debug!(
                deployment = %d.id,
                error = %crate::telemetry::mask::mask(&e.message),
                "the provider did not count the prompt's tokens; estimated instead"
            ),
        }
    }
    Ok(crate::tokens::estimate_chat(
        app.table.encoding(&request.model),
        &request,
    ))
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    app: Arc<App>,
    ctx: &RequestContext,
    headers: &HeaderMap,
    body: Bytes,
    tracker: &mut Tracker,
) -> Result<Reply, GatewayError> {
    let principal = authenticate(&app, headers)?;
    tracker.set_caller(principal.caller.clone());
    let mut request = openai::decode_embeddings(&body).map_err(GatewayError::InvalidRequest)?;
    let customer = customer_header(headers).or_else(|| request.user.clone());
    // An embedding model is a provider too: the texts' personal data is redacted, or refused,
    // as a prompt's is.
    let rails = guardrails_of(&app, &request.model);
    crate::guardrails::before_embedding(&rails, &mut request)?;
    let (answer, route) = embed(
        &app,
        ctx,
        &principal,
        customer.as_deref(),
        headers,
        &request,
        tracker,
    )
    .await?;
    let body = openai::encode_embeddings(&answer, &request.model, request.encoding_format);
    tracker.set_response_meta(answer.model, None);
    Ok(Reply {
        body: ReplyBody::Json(body),
        route,
        headers: Vec::new(),
    })
}

/// Embeds `request` for `principal`: admitted, routed, sent and booked on `tracker`. The answer
/// and the route header.
async fn embed(
    app: &Arc<App>,
    ctx: &RequestContext,
    principal: &Principal,
    customer: Option<&str>,
    headers: &HeaderMap,
    request: &switchyard_protocol::canonical::EmbeddingRequest,
    tracker: &mut Tracker,
) -> Result<(switchyard_protocol::canonical::EmbeddingResponse, String), GatewayError> {
    tracker.set_model(&request.model);
    tracker.set_customer(customer);
    if let Some(route) = app.table.route(&request.model) {
        tracker.set_alias(&route.alias);
    }
    check_model(app, principal, customer, &request.model)?;
    let input_tokens = if needs_token_estimate(app, principal, customer, headers) {
        crate::tokens::estimate_embeddings(app.table.encoding(&request.model), &request.input)
    } else {
        crate::tokens::rough_embeddings(&request.input)
    };
    let facts = RequestFacts {
        model: request.model.clone(),
        input_tokens,
        needs: Needs {
            embeddings: true,
            ..Needs::default()
        },
        restrictions: app.governance.restrictions(principal, customer),
        ..RequestFacts::default()
    };
    let mut planner = app
        .table
        .planner(facts, now_ms(), &mut random_below)
        .map_err(plan_error)?;
    if !app.table.embeds(&planner.decision.alias) {
        return Err(GatewayError::Unsupported(format!(
            "The model '{}' does not serve embeddings: none of its deployments is an \
             embedding model's, and its fallbacks' vectors would be another model's. Use an \
             embedding model (GET /v1/models lists the models you can use).",
            planner.decision.alias
        )));
    }
    let (admission, _) = app
        .governance
        .admit(
            principal,
            customer,
            app.table.max_price(&planner.decision.alias),
            Demand {
                input_tokens,
                max_tokens: Some(0),
                ..Demand::default()
            },
        )
        .await?;
    tracker.set_admission(admission);
    let result = upstream::execute_embeddings(
        &mut planner,
        request,
        &app.table.policy,
        &app.retry_budget,
        tracker.progress(),
    )
    .await;
    let decision = std::mem::take(&mut planner.decision);
    let executed = match result {
        Ok(e) => e,
        Err(failed) => {
            log_request(
                ctx,
                &decision,
                &failed.attempts,
                Err(&failed.error),
                None,
                false,
            );
            if let Some(last) = failed.attempts.last() {
                tracker.set_failed_route(route_header(
                    &decision,
                    &last.deployment,
                    &failed.attempts,
                ));
            }
            tracker.set_route(decision, failed.attempts);
            return Err(failed.error);
        }
    };
    if executed.answer.vectors.len() != request.input.len() {
        let error = GatewayError::Upstream {
            last: switchyard_protocol::dialect::malformed(format!(
                "provider returned {} embeddings for {} inputs",
                executed.answer.vectors.len(),
                request.input.len()
            )),
            all_rate_limited: false,
            attempts: executed.attempts.len() as u32,
        };
        log_request(ctx, &decision, &executed.attempts, Err(&error), None, false);
        tracker.set_route(decision, executed.attempts);
        return Err(error);
    }
    tracker.set_usage(executed.answer.usage, 0, price_of(&executed.deployment));
    log_request(
        ctx,
        &decision,
        &executed.attempts,
        Ok(()),
        executed.answer.usage,
        false,
    );
    let route = route_header(&decision, &executed.deployment.id, &executed.attempts);
    tracker.set_route(decision, executed.attempts);
    Ok((executed.answer, route))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn deployment_of(attempts: &[AttemptLog]) -> &str {
    attempts.last().map_or("-", |a| &*a.deployment)
}

/// One line per finished request. Never contains prompt or response content, nor any secret.
fn log_request(
    ctx: &RequestContext,
    decision: &RouteDecision,
    attempts: &[AttemptLog],
    outcome: Result<(), &GatewayError>,
    usage: Option<Usage>,
    stream: bool,
) {
    let latency_ms = ctx.started.elapsed().as_millis() as u64;
    let usage = usage.unwrap_or_default();
    let alias = &*decision.alias;
    tracing::debug!(request_id = %ctx.id, decision = %serde_json::to_string(decision).unwrap_or_default(), "route decision");
    match outcome {
        Ok(()) => tracing::info!(
            request_id = %ctx.id, alias, deployment = deployment_of(attempts), attempts = attempts.len(),
            stream, latency_ms, input_tokens = usage.input_tokens, output_tokens = usage.output_tokens,
            "request completed"
        ),
        Err(e) => tracing::warn!(
            request_id = %ctx.id, alias, deployment = deployment_of(attempts), attempts = attempts.len(),
            stream, latency_ms, error_code = e.code(), "request failed"
        ),
    }
}

/// Milliseconds, or `none`, written only when a log line is: no string made per stream.
struct OptionalMs(Option<u64>);

impl std::fmt::Display for OptionalMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, "{ms}"),
            None => f.write_str("none"),
        }
    }
}

fn log_stream_end(
    id: &str,
    decision: &RouteDecision,
    started: Instant,
    attempts: &[AttemptLog],
    end: &StreamEnd,
) {
    let alias = &*decision.alias;
    let latency_ms = started.elapsed().as_millis() as u64;
    let usage = end.usage.unwrap_or_default();
    let ttft_ms = end
        .first_chunk_at
        .map(|t| t.duration_since(started).as_millis() as u64);
    let ttft_ms = tracing::field::display(OptionalMs(ttft_ms));
    if end.cancelled && crate::server::shutdown_cut_short() {
        tracing::warn!(request_id = %id, alias, deployment = deployment_of(attempts), latency_ms, "stream ended by the gateway's shutdown");
    } else if end.cancelled {
        tracing::info!(request_id = %id, alias, deployment = deployment_of(attempts), latency_ms, "stream cancelled by the client");
    } else if let Some(e) = &end.error {
        tracing::warn!(
            request_id = %id, alias, deployment = deployment_of(attempts), latency_ms, ttft_ms,
            error_class = e.class.as_str(), "stream failed after commit"
        );
    } else {
        tracing::info!(
            request_id = %id, alias, deployment = deployment_of(attempts), attempts = attempts.len(),
            stream = true, latency_ms, ttft_ms, input_tokens = usage.input_tokens,
            output_tokens = usage.output_tokens, "request completed"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_route_header_names_alias_deployment_attempts_strategy_and_rule() {
        let attempt = |alias: &str| crate::upstream::AttemptLog {
            alias: alias.into(),
            deployment: "d".into(),
            provider: "p".into(),
            status: None,
            error: None,
            error_message: None,
            started: std::time::Instant::now(),
            latency: std::time::Duration::ZERO,
            retry: false,
            hedged: false,
            cancelled: false,
        };
        let mut decision = crate::routing::RouteDecision {
            alias: "fast".into(),
            strategy: "weighted",
            ..Default::default()
        };
        assert_eq!(
            super::route_header(&decision, "p-openai/gpt-4o-mini", &[attempt("fast")]),
            "alias=fast; deployment=p-openai/gpt-4o-mini; attempts=1; strategy=weighted"
        );
        decision.rule = Some("long-prompts".into());
        let twelve: Vec<_> = (0..12).map(|_| attempt("fast")).collect();
        assert_eq!(
            super::route_header(&decision, "d", &twelve),
            "alias=fast; deployment=d; attempts=12; strategy=weighted; rule=long-prompts"
        );
        // Answered by a fallback alias: named.
        assert_eq!(
            super::route_header(&decision, "d", &[attempt("fast"), attempt("backup")]),
            "alias=fast; fallback=backup; deployment=d; attempts=2; strategy=weighted; rule=long-prompts"
        );
    }

    #[test]
    fn request_ids_are_distinct_time_ordered_uuids() {
        let first = super::request_id();
        let ids: Vec<String> = (0..10_000).map(|_| super::request_id()).collect();
        // Made one after the other, within and across milliseconds: strictly increasing.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids[0] > first);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = super::request_id();
        assert!(later > first, "{later} after {first}");
        let parsed = uuid::Uuid::parse_str(&later).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        // Serving workers make ids at once: none repeats.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..5_000).map(|_| super::request_id()).collect::<Vec<_>>())
            })
            .collect();
        let all: std::collections::HashSet<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        assert_eq!(all.len(), 20_000);
    }
}

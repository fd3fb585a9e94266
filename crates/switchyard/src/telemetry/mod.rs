//! Telemetry records, never decides. Each request gets a [`Tracker`] when it arrives; stages fill
//! it in; when the request ends (or is dropped because the client went away) it becomes exactly
//! one [`RequestRecord`] handed to the [`Recorder`] without waiting.

pub mod clip;
pub mod genai;
pub mod mask;
pub mod otlp;
pub mod record;
pub mod recorder;
pub mod spare;
pub mod trace_context;

use std::sync::Arc;
use std::time::Instant;

use std::borrow::Cow;

use switchyard_protocol::canonical::{ChatRequest, ContentPart, Role, Usage};

use crate::config::ContentMode;
use crate::error::GatewayError;
use crate::pricing::Price;
use crate::routing::Name;
use crate::routing::RouteDecision;
use crate::upstream::{AttemptLog, Progress};

pub use record::{AttemptRecord, Caller, Outcome, PromptMessage, RequestRecord, TokenCounts};
pub use recorder::{RecordBatch, RecordObserver, Recorder, RecorderStats};
pub use trace_context::TraceContext;

/// Status recorded for a client that went away before the answer ended (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// The record of one request in the making.
pub struct Tracker {
    recorder: Arc<Recorder>,
    record: Option<RequestRecord>,
    started: Instant,
    content: ContentMode,
    /// Most bytes of prompt (all messages together) and of response text a record keeps.
    content_max_bytes: usize,
    /// Prompt size in characters, for an explicit estimate when usage is missing.
    prompt_chars: usize,
    /// The prompt's tokens as the request was admitted with, billed when usage is missing (so
    /// a request is never billed below what its budget reserved for the prompt).
    prompt_estimate: Option<u64>,
    /// The most output the provider was asked for (`max_tokens`, for every answer asked
    /// for): an estimate of output never goes above it, so an estimated request costs no more
    /// than its budget reserved.
    output_cap: Option<u64>,
    /// The budget reservation, settled exactly once with the request's cost (taken then, so a
    /// second finish, or the drop after one, finds nothing left to do).
    admission: Option<crate::governance::Admission>,
    /// What the request cost and produced, kept for the budget whether or not a record is.
    cost_nanos: Option<i64>,
    output_tokens: u64,
    /// Where the request's walk through its plan is, for the record of a client that leaves
    /// before it ends.
    progress: Progress,
    /// `x-switchyard-route` of a request whose every attempt failed, for its error response.
    failed_route: Option<String>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

impl Tracker {
    pub fn new(
        recorder: Arc<Recorder>,
        id: &str,
        started: Instant,
        ingress: &'static str,
        endpoint: &'static str,
        content: ContentMode,
        content_max_bytes: usize,
    ) -> Self {
        // Without records nothing would keep the content: do not copy it.
        let content = if recorder.enabled() {
            content
        } else {
            ContentMode::Off
        };
        // Without records nobody reads one: none is built, and the request only keeps what its
        // budget settles with.
        let record = recorder.enabled().then(|| {
            let started_at_ms = unix_ms() - started.elapsed().as_millis() as i64;
            RequestRecord::new(id.to_owned(), started_at_ms, ingress, endpoint)
        });
        Self {
            recorder,
            record,
            started,
            content,
            content_max_bytes,
            prompt_chars: 0,
            prompt_estimate: None,
            output_cap: None,
            admission: None,
            cost_nanos: None,
            output_tokens: 0,
            progress: Progress::default(),
            failed_route: None,
        }
    }

    /// Where the upstream walk keeps its attempts while it goes (see [`Progress`]).
    pub fn progress(&mut self) -> &mut Progress {
        &mut self.progress
    }

    /// The prompt's estimated tokens the request was admitted and routed with.
    pub fn set_prompt_estimate(&mut self, tokens: u64) {
        self.prompt_estimate = Some(tokens);
    }

    /// The most output tokens the provider was asked for, all answers together.
    pub fn set_output_cap(&mut self, tokens: Option<u64>) {
        self.output_cap = tokens;
    }

    pub fn set_admission(&mut self, admission: Option<crate::governance::Admission>) {
        self.admission = admission;
    }

    fn rec(&mut self) -> Option<&mut RequestRecord> {
        self.record.as_mut()
    }

    pub fn content(&self) -> ContentMode {
        self.content
    }

    /// Whether the request's record becomes a trace span (what only spans carry is kept then).
    pub fn traced(&self) -> bool {
        self.recorder.traced()
    }

    pub fn set_caller(&mut self, caller: Caller) {
        if let Some(r) = self.rec() {
            r.caller = caller;
        }
    }

    /// The alias a request was routed to, before any provider is called: a request refused
    /// there (its budget, its rate limit, its allow-list) is counted under it, not as unknown.
    /// The route taken replaces it.
    pub fn set_alias(&mut self, alias: &crate::routing::Name) {
        if let Some(r) = self.rec() {
            r.alias = Some(alias.clone());
        }
    }

    /// The customer a request is billed to, for requests that carry no chat body (embeddings).
    pub fn set_customer(&mut self, customer: Option<&str>) {
        if let Some(r) = self.rec() {
            r.customer = customer.map(str::to_owned);
        }
    }

    pub fn set_model(&mut self, model: &str) {
        if let Some(r) = self.rec() {
            r.requested_model = model.to_owned();
        }
    }

    /// What the decoded request tells: model, stream, customer, tags and (per the content
    /// setting) the prompt.
    pub fn set_request(&mut self, request: &ChatRequest, customer: Option<String>) {
        self.prompt_chars = request.prompt_chars();
        let content = self.content;
        let max = self.content_max_bytes;
        let prompt = (content != ContentMode::Off).then(|| prompt_messages(request, content, max));
        let sampling = if self.recorder.traced() {
            record::Sampling::of(request)
        } else {
            None
        };
        if let Some(r) = self.rec() {
            r.sampling = sampling;
            r.requested_model = request.model.clone();
            r.stream = request.stream;
            r.customer = customer.or_else(|| request.user.clone());
            r.tags = request.metadata.clone().unwrap_or_default();
            r.mask_pending |= prompt.is_some() && content == ContentMode::Masked;
            r.prompt = prompt;
        }
    }

    /// The route decision and the attempts it led to. Takes the decision itself: the record
    /// writer turns it into the record's `decision`, off the request path.
    /// The route taken; the attempts' names move into the record (nothing reads them after).
    pub fn set_route(&mut self, decision: RouteDecision, attempts: Vec<AttemptLog>) {
        let keep_decision = self.recorder.enabled();
        let started = self.started;
        let Some(r) = self.rec() else { return };
        set_attempts(r, &decision.alias, attempts, started);
        if keep_decision {
            r.route_decision = Some(Box::new(decision));
        }
    }

    /// The route a request took to fail, for its error response's `x-switchyard-route`.
    pub fn set_failed_route(&mut self, route: String) {
        self.failed_route = Some(route);
    }

    pub fn take_failed_route(&mut self) -> Option<String> {
        self.failed_route.take()
    }

    /// A tag of the gateway's own in the record (`guardrail: injection`, say).
    pub fn add_tag(&mut self, key: &str, value: &str) {
        if let Some(r) = self.rec() {
            r.tags.insert(key.to_owned(), value.into());
        }
    }

    /// Answered from the response cache: the alias and deployment that first answered, and no
    /// cost.
    pub fn set_cache_hit(&mut self, alias: &str, deployment: &str) {
        self.cost_nanos = Some(0);
        if let Some(r) = self.rec() {
            r.cache_hit = true;
            r.alias = Some(alias.into());
            r.deployment = Some(deployment.into());
            r.cost_nanos = Some(0);
        }
    }

    /// The caller's W3C trace (`traceparent` header value), or a new trace without a valid one.
    pub fn set_trace(&mut self, traceparent: Option<&str>, tracestate: Option<&str>) {
        if let Some(r) = self.rec() {
            r.trace = Some(TraceContext::from_header_or_new(traceparent, tracestate));
        }
    }

    /// What the provider said about its answer: the model that answered and why it stopped.
    pub fn set_response_meta(&mut self, model: String, finish_reason: Option<&'static str>) {
        if let Some(r) = self.rec() {
            r.response_model = Some(model).filter(|m| !m.is_empty());
            r.finish_reason = finish_reason.map(Cow::Borrowed);
        }
    }

    /// The provider's id of its whole answer, kept only for trace spans.
    pub fn set_response_id(&mut self, id: &str) {
        if self.recorder.traced()
            && !id.is_empty()
            && let Some(r) = self.rec()
        {
            r.response_id = Some(id.to_owned());
        }
    }

    /// Why each further choice stopped, when the request asked for several.
    pub fn set_more_finish_reasons(&mut self, reasons: Vec<&'static str>) {
        if let Some(r) = self.rec() {
            r.more_finish_reasons = reasons;
        }
    }

    /// The configuration version applied to the request and the experiment that chose it.
    pub fn set_experiment(&mut self, applied: &crate::experiments::Applied) {
        if let Some(r) = self.rec() {
            r.config_name = Some(applied.config.clone());
            r.config_version = Some(applied.version);
            r.experiment_id = applied.experiment_id.clone();
            r.variant = applied.variant.clone();
            r.assignment = applied.assignment.clone();
        }
    }

    pub fn set_session(&mut self, session: Option<&str>) {
        if let Some(r) = self.rec() {
            r.session_id = session.map(str::to_owned);
        }
    }

    pub fn set_ttft(&mut self, at: Instant) {
        let ms = at.duration_since(self.started).as_secs_f64() * 1000.0;
        if let Some(r) = self.rec() {
            r.ttft_ms = Some(ms);
        }
    }

    /// Usage as reported, or an explicit estimate (marked as such) when the provider sent none.
    pub fn set_usage(&mut self, usage: Option<Usage>, response_chars: usize, price: Option<Price>) {
        self.set_stream_usage(usage, response_chars, price, true);
    }

    /// [`Self::set_usage`] for a stream, which may not have ended `whole`: then the output
    /// reported so far (Claude's opening count, a count before the break) is taken as at least
    /// what reached the client, estimated from its characters, and marked as an estimate when
    /// that is more.
    pub fn set_stream_usage(
        &mut self,
        usage: Option<Usage>,
        response_chars: usize,
        price: Option<Price>,
        whole: bool,
    ) {
        let sent = (response_chars as u64)
            .div_ceil(4)
            .min(self.output_cap.unwrap_or(u64::MAX));
        let (usage, estimated) = match usage {
            Some(mut u) if !whole && u.output_tokens < sent => {
                u.output_tokens = sent;
                (u, true)
            }
            Some(u) => (u, false),
            None => (
                Usage {
                    input_tokens: self
                        .prompt_estimate
                        .unwrap_or_else(|| (self.prompt_chars as u64).div_ceil(4)),
                    output_tokens: sent,
                    ..Usage::default()
                },
                true,
            ),
        };
        let cost_nanos = price.map(|p| p.cost(&usage));
        self.cost_nanos = cost_nanos;
        self.output_tokens = usage.output_tokens;
        if let Some(r) = self.rec() {
            r.tokens = Some(TokenCounts {
                input: usage.input_tokens,
                output: usage.output_tokens,
                cache_read: usage.cache_read_tokens,
                cache_write: usage.cache_write_tokens,
                cache_write_1h: usage.cache_write_1h_tokens,
                reasoning: usage.reasoning_tokens,
                estimated,
            });
            r.cost_nanos = cost_nanos;
        }
    }

    pub fn set_response_text(&mut self, text: &str) {
        let content = self.content;
        if content == ContentMode::Off {
            return;
        }
        let kept = clip::clip(
            &[text],
            self.content_max_bytes,
            content == ContentMode::Masked,
        );
        if let Some(r) = self.rec() {
            // Masking waits for the record writer (see `prepare_record`).
            r.response = Some(kept);
            r.mask_pending |= content == ContentMode::Masked;
        }
    }

    /// Moves the record in the making into a new tracker (for a stream's end), leaving this one
    /// empty: finishing or dropping it then records nothing.
    pub fn detach(&mut self) -> Tracker {
        Tracker {
            recorder: self.recorder.clone(),
            record: self.record.take(),
            started: self.started,
            content: self.content,
            content_max_bytes: self.content_max_bytes,
            prompt_chars: self.prompt_chars,
            prompt_estimate: self.prompt_estimate,
            output_cap: self.output_cap,
            admission: self.admission.take(),
            cost_nanos: self.cost_nanos,
            output_tokens: self.output_tokens,
            progress: Progress::default(),
            failed_route: None,
        }
    }

    /// Ends the record and hands it to the recorder.
    pub fn finish(mut self, status: u16, outcome: Outcome, error: Option<&GatewayError>) {
        self.emit(status, outcome, error);
    }

    fn emit(&mut self, status: u16, outcome: Outcome, error: Option<&GatewayError>) {
        if let Some(admission) = self.admission.take() {
            admission.settle(self.cost_nanos.unwrap_or(0), self.output_tokens);
        }
        let Some(mut r) = self.record.take() else {
            return;
        };
        r.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        r.status = status;
        r.outcome = outcome;
        if let Some(e) = error {
            let client = e.to_client();
            // What the client got: an Anthropic client hears that providers are overloaded as
            // Anthropic's API says it, 529 (see `server::error_response`).
            if client.code == "upstream_overloaded" && r.ingress == "anthropic" {
                r.status = 529;
            }
            r.error_code = Some(client.code.to_owned());
            r.error_message = Some(match self.content {
                ContentMode::Full => client.message,
                _ => mask::mask(&client.message).into_owned(),
            });
            // A model nothing resolved may be anything a client pasted, a key among them (a
            // resolved one is an alias or a configured model's name).
            if self.content != ContentMode::Full
                && let std::borrow::Cow::Owned(masked) = mask::mask(&r.requested_model)
            {
                r.requested_model = masked;
            }
        }
        self.recorder.record(r);
    }
}

impl Drop for Tracker {
    /// A request dropped before it finished: the client went away.
    fn drop(&mut self) {
        // Left mid-walk: the attempts so far, and the one it was waiting on, as given up.
        let waiting = self.progress.trying.is_some();
        let attempts = self.progress.given_up();
        let started = self.started;
        if let Some(r) = self.record.as_mut()
            && let Some(first) = attempts.first()
        {
            let routed = first.alias.clone();
            let waited_on = waiting
                .then(|| {
                    attempts
                        .last()
                        .map(|a| (a.deployment.clone(), a.provider.clone()))
                })
                .flatten();
            set_attempts(r, &routed, attempts, started);
            if let Some((deployment, provider)) = waited_on {
                r.deployment = Some(deployment);
                r.provider = Some(provider);
            }
        }
        // Nothing left after a finish or a detach: the reservation and the record were taken.
        if crate::server::shutdown_cut_short() {
            let error = GatewayError::ShuttingDown;
            self.emit(error.to_client().status, Outcome::Cancelled, Some(&error));
        } else {
            self.emit(CLIENT_CLOSED, Outcome::Cancelled, None);
        }
    }
}

/// The attempts into the record, with the alias and deployment they came to.
fn set_attempts(
    r: &mut RequestRecord,
    routed: &Name,
    attempts: Vec<AttemptLog>,
    request_started: Instant,
) {
    // The alias that answered: the last attempt's (a fallback's), else the one routed to.
    r.alias = Some(
        attempts
            .last()
            .map_or_else(|| routed.clone(), |a| a.alias.clone()),
    );
    // The deployment that answered: a stream its client left still answered (it has a
    // status, and its cost and tokens are its deployment's); an attempt cancelled before any
    // answer did not.
    if let Some(last) = attempts
        .iter()
        .rev()
        .find(|a| !a.cancelled || a.status.is_some())
    {
        r.deployment = Some(last.deployment.clone());
        r.provider = Some(last.provider.clone());
    }
    r.attempts = attempts
        .into_iter()
        .map(|a| AttemptRecord {
            fell_back: a.alias != *routed,
            alias: a.alias,
            deployment: a.deployment,
            provider: a.provider,
            status: a.status,
            error_class: a.error.map(|c| c.as_str().to_owned()),
            error_message: a.error_message.map(|m| mask::mask(&m).into_owned()),
            offset_ms: Some(
                a.started
                    .saturating_duration_since(request_started)
                    .as_secs_f64()
                    * 1000.0,
            ),
            latency_ms: a.latency.as_secs_f64() * 1000.0,
            retry: a.retry,
            hedged: a.hedged,
            cancelled: a.cancelled,
        })
        .collect();
}

/// Finishes what the request path left to the record writer, which calls it for each record
/// before any observer or the store sees it: writes out the route decision, and masks the
/// prompt and response if that is still pending, settling the cuts [`clip`] left for after
/// masking. So neither the decision's JSON nor the regular expressions cost a request any time.
pub fn prepare_record(r: &mut RequestRecord) {
    if let Some(decision) = &r.route_decision {
        r.decision = record::DecisionJson::of(&**decision);
    }
    if !std::mem::take(&mut r.mask_pending) {
        return;
    }
    // Texts with nothing to mask (most) are finished where they lie, not copied.
    for m in r.prompt.iter_mut().flatten() {
        clip::finish_masked(&mut m.content, mask::mask);
    }
    if let Some(text) = &mut r.response {
        clip::finish_masked(text, mask::mask);
    }
}

/// Hands a stored record's kept texts back for the next records to copy into (see [`spare`]).
pub fn hand_back_texts(r: RequestRecord) {
    for m in r.prompt.into_iter().flatten() {
        spare::hand_back(m.content);
    }
    if let Some(text) = r.response {
        spare::hand_back(text);
    }
}

/// The text pieces of one message as a record shows them, borrowed where possible.
fn message_parts(content: &[ContentPart]) -> Vec<Cow<'_, str>> {
    let mut parts = Vec::new();
    // Parts are kept one to a line: run together, the end of one and the start of the next
    // would read as one word, and the masking (run on the joined text) miss a number or a key
    // at their seam.
    fn push<'a>(parts: &mut Vec<Cow<'a, str>>, part: Cow<'a, str>) {
        if !parts.is_empty() {
            parts.push(Cow::Borrowed("\n"));
        }
        parts.push(part);
    }
    for p in content {
        match p {
            ContentPart::Text { text, .. } => push(&mut parts, Cow::Borrowed(text.as_str())),
            ContentPart::Image { .. } => push(&mut parts, Cow::Borrowed("[image]")),
            ContentPart::Document { .. } => push(&mut parts, Cow::Borrowed("[document]")),
            ContentPart::ToolCall {
                name, arguments, ..
            } => push(
                &mut parts,
                Cow::Owned(format!("[tool call {name}: {arguments}]")),
            ),
            ContentPart::ToolResult { content, .. } => {
                for c in content {
                    if let ContentPart::Text { text, .. } = c {
                        push(&mut parts, Cow::Borrowed(text.as_str()));
                    }
                }
            }
            // A server tool's block by its type (`[web_search_tool_result]`); its results are
            // the provider's, often encrypted.
            ContentPart::ServerTool { block } => push(
                &mut parts,
                Cow::Owned(format!(
                    "[{}]",
                    block["type"].as_str().unwrap_or("server tool")
                )),
            ),
            ContentPart::Reasoning { .. } | ContentPart::RedactedReasoning { .. } => {}
        }
    }
    parts
}

/// Prompt messages as records keep them: within `max_bytes` for all messages together (shared
/// by [`clip::share`]), raw here and masked later by the writer when pending. Only the kept
/// bytes are copied.
fn prompt_messages(
    request: &ChatRequest,
    content: ContentMode,
    max_bytes: usize,
) -> Vec<PromptMessage> {
    let parts: Vec<Vec<Cow<'_, str>>> = request
        .messages
        .iter()
        .map(|m| message_parts(&m.content))
        .collect();
    let lengths: Vec<usize> = parts
        .iter()
        .map(|p| p.iter().map(|s| s.len()).sum())
        .collect();
    let caps = clip::share(&lengths, max_bytes);
    let masked_later = content == ContentMode::Masked;
    request
        .messages
        .iter()
        .zip(parts.iter().zip(caps))
        .map(|(m, (parts, cap))| PromptMessage {
            role: Cow::Borrowed(role_name(m.role)),
            content: clip::clip(parts, cap, masked_later),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        Tracker::new(
            Arc::new(Recorder::disabled()),
            "r",
            Instant::now(),
            "openai",
            "chat",
            ContentMode::Off,
            0,
        )
    }

    #[test]
    fn missing_usage_bills_the_prompt_as_it_was_admitted() {
        // A dollar a million input tokens: a thousand nanodollars a token.
        let price = Price::per_mtok(1.0, 0.0);
        let mut admitted = tracker();
        admitted.prompt_chars = 400;
        admitted.set_prompt_estimate(180);
        admitted.set_usage(None, 0, Some(price));
        assert_eq!(admitted.cost_nanos, Some(180_000));
        // Without an admission estimate (nothing asked for one), the characters are counted.
        let mut plain = tracker();
        plain.prompt_chars = 400;
        plain.set_usage(None, 0, Some(price));
        assert_eq!(plain.cost_nanos, Some(100_000));
    }

    #[test]
    fn a_broken_stream_counts_at_least_the_output_that_reached_the_client() {
        let price = Price::per_mtok(0.0, 1.0);
        // Claude's opening count: one output token, then 400 characters before the break.
        let opening = Usage {
            input_tokens: 10,
            output_tokens: 1,
            ..Usage::default()
        };
        let mut broken = tracker();
        broken.set_stream_usage(Some(opening), 400, Some(price), false);
        assert_eq!(broken.output_tokens, 100);
        assert_eq!(broken.cost_nanos, Some(100_000));
        // A whole stream's usage is the provider's, whatever the characters.
        let mut whole = tracker();
        whole.set_stream_usage(Some(opening), 400, Some(price), true);
        assert_eq!(whole.output_tokens, 1);
        // A broken stream that reported more than its characters keeps its count.
        let mut counted = tracker();
        let more = Usage {
            output_tokens: 300,
            ..opening
        };
        counted.set_stream_usage(Some(more), 400, Some(price), false);
        assert_eq!(counted.output_tokens, 300);
        // An estimate never goes above the output the provider was asked for.
        let mut capped = tracker();
        capped.set_output_cap(Some(3));
        capped.set_stream_usage(Some(opening), 400, Some(price), false);
        assert_eq!(capped.output_tokens, 3);
        capped.set_stream_usage(None, 400, Some(price), true);
        assert_eq!(capped.output_tokens, 3);
    }
}

//! Names of the span attributes the gateway emits: the OpenTelemetry GenAI semantic conventions
//! as released in schema 1.42 (what current backends parse), a few general OpenTelemetry names,
//! and the gateway's own `gateway.*` attributes. Every name lives here, so following a later
//! release of the conventions is a change to this one file.
//!
//! The Rust `opentelemetry-semantic-conventions` crate marks its `gen_ai.*` constants deprecated
//! (they moved to a separate repository), so the names are kept here instead.

/// The schema the attribute names below follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.42.0";

// GenAI conventions (Development status in 1.42).
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Deprecated predecessor of `gen_ai.provider.name` (renamed in 1.37); still read by consumers
/// built against older conventions, so both are emitted.
pub const SYSTEM: &str = "gen_ai.system";
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
pub const REQUEST_STREAM: &str = "gen_ai.request.stream";
pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const REQUEST_TOP_P: &str = "gen_ai.request.top_p";
pub const REQUEST_TOP_K: &str = "gen_ai.request.top_k";
pub const REQUEST_FREQUENCY_PENALTY: &str = "gen_ai.request.frequency_penalty";
pub const REQUEST_PRESENCE_PENALTY: &str = "gen_ai.request.presence_penalty";
pub const REQUEST_SEED: &str = "gen_ai.request.seed";
pub const REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
/// Set only when it is not 1.
pub const REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
/// `text` or `json`, when the request named a response format.
pub const OUTPUT_TYPE: &str = "gen_ai.output.type";
/// The client's session (`x-switchyard-session-id`), as the conventions name a conversation.
pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// The same session under the name Langfuse groups traces by.
pub const SESSION_ID: &str = "session.id";
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
/// The provider's id of its answer (`chatcmpl-…`, `msg_…`), for whole answers.
pub const RESPONSE_ID: &str = "gen_ai.response.id";
pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// Seconds from sending the request to the first chunk of a streamed answer.
pub const RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
/// Includes cached and cache-write tokens, as the canonical usage does.
pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Includes reasoning tokens, as the canonical usage does.
pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// Opt-in content, JSON in the conventions' message schema (`role` + `parts[]`).
pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
pub const OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// Not in the registry: cost in US dollars. Langfuse maps it to the observation's total cost,
/// which its OTLP ingestion accepts no other way.
pub const USAGE_COST: &str = "gen_ai.usage.cost";

/// Values of `gen_ai.operation.name`.
pub const OP_CHAT: &str = "chat";
pub const OP_EMBEDDINGS: &str = "embeddings";

// General OpenTelemetry names (stable).
pub const ERROR_TYPE: &str = "error.type";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";

// The gateway's own attributes.
pub const REQUEST_ID: &str = "gateway.request.id";
/// The dialect the client spoke (`openai`, `openai-responses`, `anthropic`).
pub const INGRESS: &str = "gateway.ingress";
/// The model name the client asked for (an alias), before routing.
pub const MODEL_ALIAS: &str = "gateway.model.alias";
/// The status the gateway answered the client with.
pub const STATUS_CODE: &str = "gateway.status_code";
pub const OUTCOME: &str = "gateway.outcome";
/// The provider as named in the configuration.
pub const PROVIDER: &str = "gateway.provider";
/// `provider/model`, the deployment that answered (or was tried).
pub const DEPLOYMENT: &str = "gateway.deployment";
pub const ATTEMPTS: &str = "gateway.attempts";
/// The answer was a kept one (`exact` or `semantic`): no provider was called.
pub const CACHE_HIT: &str = "gateway.cache.hit";
/// The usage counts are the gateway's estimate: the provider reported none.
pub const TOKENS_ESTIMATED: &str = "gateway.tokens.estimated";
pub const ROUTE_ALIAS: &str = "gateway.route.alias";
pub const ROUTE_STRATEGY: &str = "gateway.route.strategy";
pub const ROUTE_RULE: &str = "gateway.route.rule";
/// Deployments in the order the plan would try them.
pub const ROUTE_CANDIDATES: &str = "gateway.route.candidates";
/// `deployment: reason` for each deployment the plan left out.
pub const ROUTE_SKIPPED: &str = "gateway.route.skipped";
pub const ROUTE_FALLBACKS: &str = "gateway.route.fallbacks";
/// The virtual key's id (never the key), team, organisation and end customer.
pub const VIRTUAL_KEY_ID: &str = "gateway.virtual_key.id";
pub const TEAM: &str = "gateway.team";
pub const ORG: &str = "gateway.org";
pub const CUSTOMER: &str = "gateway.customer";
/// The configuration version that shaped the request, and the experiment variant that chose it.
pub const CONFIG_NAME: &str = "gateway.config.name";
pub const CONFIG_VERSION: &str = "gateway.config.version";
pub const EXPERIMENT_ID: &str = "gateway.experiment.id";
pub const EXPERIMENT_VARIANT: &str = "gateway.experiment.variant";
// On attempt spans.
pub const ATTEMPT_INDEX: &str = "gateway.attempt.index";
/// The provider's model name this attempt asked for.
pub const ATTEMPT_MODEL: &str = "gateway.attempt.model";
pub const ATTEMPT_RETRY: &str = "gateway.attempt.retry";
pub const ATTEMPT_HEDGED: &str = "gateway.attempt.hedged";
pub const ATTEMPT_CANCELLED: &str = "gateway.attempt.cancelled";
pub const ATTEMPT_FELL_BACK: &str = "gateway.attempt.fell_back";

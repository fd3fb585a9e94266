//! A provider simulator for tests, benchmarks, the demo and chaos drills. It speaks the real
//! wire formats of OpenAI, Azure OpenAI, Anthropic, Gemini and Amazon Bedrock (Converse,
//! CountTokens, and InvokeModel for embedding models), written independently of the gateway's translators so it can check them, and answers
//! deterministically.
//!
//! # Endpoints
//!
//! | Provider | Endpoint | Credential |
//! |---|---|---|
//! | OpenAI | `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models` | `Authorization: Bearer …` |
//! | Azure OpenAI | `POST /openai/deployments/{deployment}/chat/completions?api-version=…`, `…/embeddings?api-version=…`, `POST /openai/v1/chat/completions`, `POST /openai/v1/embeddings` | `api-key` (or a bearer token) |
//! | Anthropic | `POST /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models` with `anthropic-version` | `x-api-key` plus `anthropic-version` |
//! | Gemini | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`, `:embedContent`, `:batchEmbedContents`, `:countTokens` | `x-goog-api-key` (or `?key=`) |
//! | Amazon Bedrock | `POST /model/{modelId}/converse`, `POST /model/{modelId}/converse-stream`, `POST /model/{modelId}/count-tokens`, `POST /model/{modelId}/invoke` for Titan Text Embeddings and Cohere Embed models (the id percent-decoded: `%3A`, an ARN's `%2F`) | `Authorization: Bearer <API key>`, or SigV4 (`AWS4-HMAC-SHA256 Credential=…/bedrock/aws4_request, SignedHeaders=…, Signature=…` with `x-amz-date`) |
//!
//! Control endpoints: `GET/POST/DELETE /_sim/faults`, `GET/DELETE /_sim/stats`,
//! `GET /_sim/health`. Any non-empty credential passes, or only those in `api_keys` when it is
//! set (others get 401); with `require_auth: false` none is needed (Azure's `api-version` and
//! Anthropic's `anthropic-version` are still required).
//!
//! Bedrock refuses as AWS does, with 403 and no 401: no credential is `AccessDeniedException`,
//! a malformed SigV4 header `IncompleteSignatureException`, an `x-amz-date` outside the
//! credential's date or an `x-amz-content-sha256` that is not the body's SHA-256
//! `InvalidSignatureException`, and a key outside `api_keys` (the SigV4 access key id counts as
//! the key) `UnrecognizedClientException`. The signature's value is never verified.
//!
//! # Behaviour
//!
//! * The reply is `Simulated reply from <model> to: <first six words of the last user
//!   message>` padded with filler words to `reply_words` words. One word is one output token;
//!   input tokens are `ceil(characters of all message text / 4)`.
//! * `max_tokens` / `max_completion_tokens` / `maxOutputTokens` / Bedrock's
//!   `inferenceConfig.maxTokens` cut the reply to that many words and report `length` /
//!   `max_tokens` / `MAX_TOKENS` / `max_tokens`. A stop sequence inside the reply cuts it before
//!   the sequence (Anthropic and Bedrock report `stop_sequence`).
//! * When tools are offered, the tool choice is not "none" and the conversation does not end
//!   with tool results, the reply calls the named tool or the first one, with arguments built
//!   from the schema's required properties (`"sample"`, 1, `true`, the first enum value). If
//!   parallel calls are allowed, two or more tools are offered and the last user message says
//!   "parallel", the first two tools are called. After tool results the reply quotes them.
//! * JSON mode (`response_format`, Anthropic `output_config.format`, Gemini
//!   `responseMimeType: application/json`, Bedrock `outputConfig.textFormat` with its schema
//!   string) returns a document built from the schema, or
//!   `{"model":…,"reply":…}` without one. JSON text and tool arguments cost `ceil(len / 4)`
//!   tokens per 12-character fragment (plus one per tool call). Anthropic refuses, as Claude's
//!   structured outputs do, a JSON output's or strict tool's schema with numeric bounds, string
//!   lengths, array sizes beyond `minItems` 0 or 1, or property counts; Bedrock refuses such a
//!   JSON output's schema for Claude.
//! * Streams are written byte for byte in each API's form, members in its order: OpenAI's
//!   chunks (`id`, `object`, `created`, `model`, `service_tier`, `system_fingerprint`,
//!   `choices`, then `usage` with `stream_options.include_usage`) end with an `obfuscation` of
//!   1 to 16 characters that changes on every chunk, unless `stream_options.include_obfuscation`
//!   is false; Azure's have none and their members sorted by name; Anthropic's events start
//!   with their `type`.
//! * Anthropic prompt caching: the prefix up to a request's last `cache_control` breakpoint
//!   (system prompt or message blocks), when it is at least 1,024 tokens, is written to an
//!   in-memory cache on first sight (`cache_creation_input_tokens`, split by `ttl` into
//!   `ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`) and read while it lives
//!   (`cache_read_input_tokens`, each read renewing it); `input_tokens` counts the rest. The
//!   cache is per model and per prefix as sent.
//! * Bedrock prompt caching works the same with `cachePoint` blocks (in `system` or a message;
//!   `ttl: "1h"` for an hour, five minutes otherwise) and reports `cacheWriteInputTokens`
//!   (with `cacheDetails` by TTL) and `cacheReadInputTokens`; `inputTokens` counts the rest and
//!   `totalTokens` all input and output.
//! * Bedrock validation answers 400 `ValidationException` as Bedrock words it: unknown
//!   top-level fields, no messages or a first message not from `user`, two messages in a row
//!   from one role, blank text, a `toolResult` that answers no `toolUse` of the previous turn or
//!   a `toolUse` left unanswered, `toolUse`/`toolResult` blocks without `toolConfig`, a
//!   `toolUseId` outside `[a-zA-Z0-9_-]{1,64}`, image formats other than png/jpeg/gif/webp,
//!   bytes that are not base64, `maxTokens` below 1. Tool calls get `tooluse_` ids; the
//!   answer's `metrics.latencyMs` is the time the simulator takes. ConverseStream answers
//!   `application/vnd.amazon.eventstream` messages (see [`event_stream_frame`]): `messageStart`,
//!   per block `contentBlockStart` (tool use only), `contentBlockDelta`s, `contentBlockStop`,
//!   then `messageStop` and `metadata` (usage); each payload carries Bedrock's `p` padding.
//! * Bedrock InvokeModel (`invoke`) serves embedding models, picked by model id (also behind a
//!   geography prefix such as `us.`, or at the end of an ARN), with the bodies of Bedrock's
//!   model parameter pages:
//!   * Amazon Titan Text Embeddings V2 (`amazon.titan-embed-text-v2…`) takes `{inputText,
//!     dimensions (1024 by default, 512 or 256), normalize (true by default), embeddingTypes
//!     ("float" and/or "binary"; ["float"] by default)}` and answers `{embedding,
//!     inputTextTokenCount, embeddingsByType}`, `binary` being 1 per positive component, else
//!     0. `normalize: false` gives the vector before it is scaled to unit length.
//!   * Titan G1 (`amazon.titan-embed-text-v1…`) takes only `{inputText}` and answers
//!     `{embedding, inputTextTokenCount}`, 1,536 dimensions.
//!   * Cohere Embed (`cohere.embed-…`) takes `{texts (0 to 96, each at most 2,048
//!     characters), input_type (search_document, search_query, classification or
//!     clustering), truncate (NONE, START or END; no allowed text is long enough to be cut),
//!     embedding_types}` and answers `{id, response_type: "embeddings_floats", embeddings:
//!     [[…], …], texts}`, 1,024 dimensions per text in order. With `embedding_types` it
//!     answers `response_type: "embeddings_by_type"` and `embeddings` keyed by type: `int8` is
//!     each component scaled by the largest magnitude onto ±127, `uint8` that plus 128,
//!     `ubinary` the signs packed eight to a byte (first in the high bit), `binary` that minus
//!     128. `images` (and `input_type: "image"`) are refused. Cohere Embed v4
//!     (`cohere.embed-v4…`) also takes `output_dimension` (1,536 by default, 1,024, 512 or
//!     256) and `max_tokens`, and truncates `NONE`, `LEFT` or `RIGHT`.
//!   * Both send `X-Amzn-Bedrock-Input-Token-Count` (`ceil(characters / 4)` per text, summed;
//!     Titan's equals `inputTextTokenCount`) and `X-Amzn-Bedrock-Output-Token-Count: 0`.
//!   * Bodies are checked as Bedrock's JSON schemas check them, with 400 `ValidationException`
//!     in its words (`Malformed input request: #: extraneous key [foo] is not permitted,
//!     please reformat your input and try again.`): a missing, non-string or empty
//!     `inputText`, other `dimensions`, missing `texts` or more than 96, a missing or unknown
//!     `input_type`, unknown types, unknown top-level fields.
//!   * `invoke` for any other model (a Claude id, say) is answered as the operations the
//!     simulator does not serve: 404 `UnknownOperationException`.
//!
//!   A unit vector depends only on its text and length, so every dialect's embeddings agree.
//! * Scripted replies (`replies` in [`SimConfig`]): the first [`ReplyRule`] whose model glob
//!   matches and whose `prompt_contains` (if any) occurs in the last user message replaces the
//!   text of a plain or JSON-mode reply with its `reply` (`{prompt}` is replaced by that
//!   message), not padded to `reply_words`; stop sequences and `max_tokens` still cut it. Tool
//!   calls and tool-result quotes are not affected.
//! * Latency: `ttft_ms` delays the response start, `token_ms` separates stream chunks (a
//!   non-streamed reply waits `ttft_ms + token_ms × output tokens`). Zero means no timer at all.
//!
//! # Faults
//!
//! A fault comes from the `x-sim-fault` request header, else from the first fault rule whose
//! model glob (`*`, `?`) matches the request's model. Rules come from the configuration and
//! from `POST /_sim/faults` (a rule or a list of `{"model": glob, "fault": spec, "times": n}`;
//! `times` makes the rule expire after n requests); `DELETE /_sim/faults` removes them all.
//!
//! A spec is a list of items separated by `,` or `;`:
//!
//! | Item | Effect |
//! |---|---|
//! | `status=N` | Answer status N (400–599) with the endpoint dialect's error body: OpenAI `{"error":{message,type,param,code}}`, Azure's `{"error":{code,message}}` for 401/404/429, Anthropic `{"type":"error","error":{type,message}}` (529 is `overloaded_error`), Gemini `{"error":{code,message,status}}` (429 is `RESOURCE_EXHAUSTED`), Bedrock `{"message"}` with `x-amzn-ErrorType: <Type>:http://internal.amazon.com/coral/com.amazon.bedrock/` (400 `ValidationException`, 403 `AccessDeniedException`, 404 `ResourceNotFoundException`, 408 `ModelTimeoutException`, 424 `ModelErrorException`, 429 `ThrottlingException`, 503 `ServiceUnavailableException`, other 5xx `InternalServerException`). |
//! | `retry_after=S` | Add `retry-after: S` (Azure also `retry-after-ms`, Gemini a `RetryInfo` detail). Alone it implies `status=429`. |
//! | `hang` | Never answer; the connection stays open until the client gives up. |
//! | `reset` | Close the TCP connection with a reset, without any response. |
//! | `ttft_ms=N` | Wait N ms before answering (replaces the configured `ttft_ms`). |
//! | `context_length` | Answer 400 with the dialect's context-length-exceeded error (Bedrock: `ValidationException`, "Input is too long for requested model."). |
//! | `cut_after=N` | Stream: send N content chunks, then drop the connection mid-body. |
//! | `premature_end_after=N` | Stream: send N content chunks, then end the body cleanly without the terminal event (no `finish_reason`/`[DONE]`, no `message_delta`/`message_stop`, no `finishReason`, no `messageStop`/`metadata`). |
//! | `malformed_after=N` | Stream: send N content chunks, then a `data: {not json` line (Bedrock: a well-framed `contentBlockDelta` message whose payload is `{not json`), then end. |
//! | `error_after=N` | Stream: send N content chunks, then the dialect's in-band error event (Bedrock: a `modelStreamErrorException` exception message), then end. |
//! | `stall_after=N` | Stream: send N content chunks, then fall silent with the connection held open. |
//! | `ping_after=N` | Stream: send N content chunks, then only keep-alive events every 100 ms (Anthropic's `ping`, an SSE comment `: keep-alive` for OpenAI, Azure and Gemini; Bedrock has none and falls silent), the connection held open. |
//! | `cut_at_end` | Stream: send the whole stream, terminal events included, then drop the connection before the body's own end. |
//! | `hold_open` | Stream: send the whole stream, terminal events included, then hold the connection open without ending the body. |
//! | `error_body` | Answer status 200 with the body of a `status=500` error, as some servers and proxies do. |
//! | `stall_body` | A whole answer: send its headers and the first half of its body, then fall silent with the connection held open. |
//!
//! At most one of `status`, `hang`, `reset`, `context_length`, `stall_body` and `error_body`, and one stream item, per spec;
//! `ttft_ms` combines with any of them. Stream items do nothing to non-streamed requests.
//! "Content chunks" are those carrying output: words, JSON fragments, tool calls and their
//! argument fragments; opening events (role chunk, `message_start`, `content_block_start` of a
//! text block, `ping`, `messageStart`) are sent before them and never counted. Bedrock's
//! terminal events are `messageStop` and `metadata`.
//!
//! # Stats
//!
//! `GET /_sim/stats` returns [`StatsSnapshot`]: requests per `<provider>_<endpoint>` (Bedrock's
//! as `bedrock_chat`, `bedrock_embeddings` and `bedrock_count_tokens`) and per model, input tokens of requests answered 200, output tokens
//! actually sent, and the last `log_capacity` requests. `DELETE /_sim/stats` resets it.

mod anthropic;
mod bedrock;
mod bedrock_invoke;
mod config;
mod eventstream;
mod fault;
mod gemini;
mod handler;
mod model;
mod openai;
mod ordered;
mod server;
mod stats;
mod stream;

pub use config::{
    DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_LOG_CAPACITY, DEFAULT_REPLY_WORDS, FaultRule, ReplyRule,
    SimConfig,
};
pub use eventstream::event_stream_frame;
pub use fault::{FaultSpec, FaultSpecError, StreamFault, glob_match};
pub use server::SimServer;
pub use stats::{LogEntry, StatsSnapshot};

#[cfg(test)]
mod tests;

//! Prompt-size estimates in tokens, for budget reservations, TPM limits, routing rules and
//! context-window checks. Counts use OpenAI's BPE vocabularies (bundled with `tiktoken-rs`, so
//! no network): `cl100k_base` for the older GPT-3.5/GPT-4 names and their embeddings,
//! `o200k_base` for everything else, including other providers' models, whose own tokenizers
//! are not published and whose counts o200k approximates. The authoritative number is always
//! the response's usage; these are estimates, and they lean high (message framing is counted).
//!
//! Each vocabulary is built once per process, on first use. Text is encoded in bounded chunks,
//! so hostile input (a megabyte of one repeated character) costs linear time and cannot drive
//! the pre-tokenizer's backtracking into its failure mode.

use std::sync::OnceLock;

use switchyard_protocol::canonical::{ChatRequest, ContentPart, EmbeddingInput, ResponseFormat};
use tiktoken_rs::CoreBPE;

/// Which vocabulary to count with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    O200k,
    Cl100k,
}

impl Encoding {
    /// The vocabulary of an upstream model name: `cl100k_base` for `gpt-3.5*`, `gpt-4` (but not
    /// `gpt-4o`, `gpt-4.1` …) and the `text-embedding-3`/`ada-002` embeddings; `o200k_base` else.
    pub fn for_model(model: &str) -> Self {
        let m = model.rsplit('/').next().unwrap_or(model);
        let gpt4_classic = m == "gpt-4"
            || m.starts_with("gpt-4-") && !m.starts_with("gpt-4-1") && !m.starts_with("gpt-4-5");
        if m.starts_with("gpt-3.5")
            || m.starts_with("gpt-35")
            || gpt4_classic
            || m.starts_with("text-embedding-3")
            || m.starts_with("text-embedding-ada-002")
        {
            Encoding::Cl100k
        } else {
            Encoding::O200k
        }
    }

    fn bpe(self) -> Option<&'static CoreBPE> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        match self {
            Encoding::O200k => O200K.get_or_init(|| tiktoken_rs::o200k_base().ok()),
            Encoding::Cl100k => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok()),
        }
        .as_ref()
    }
}

/// Builds the vocabularies on the blocking pool, so the first request does not wait for it
/// (it takes a few hundred milliseconds).
pub fn prepare(encodings: impl IntoIterator<Item = Encoding>) {
    for e in encodings {
        drop(tokio::task::spawn_blocking(move || e.bpe().is_some()));
    }
}

/// Tokens added per message for its role and delimiters (OpenAI's chat format uses 3–4).
pub const PER_MESSAGE: u64 = 4;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING: u64 = 3;
/// Tokens per tool definition beyond its name, description and schema.
pub const PER_TOOL: u64 = 8;
/// An image at low detail (OpenAI: a flat 85).
pub const IMAGE_LOW: u64 = 85;
/// An image otherwise: above the largest OpenAI high-detail tiling (1,445) and Anthropic's
/// ~1,600 for a 1.15-megapixel image.
pub const IMAGE: u64 = 1_600;
/// Prompts longer than this many bytes are counted with the runtime told it may block.
pub const BLOCKING_THRESHOLD: usize = 32 * 1024;
/// Text is encoded in pieces of about this many bytes.
const CHUNK: usize = 4 * 1024;

/// Tokens of one text.
pub fn count_text(encoding: Encoding, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let Some(bpe) = encoding.bpe() else {
        return fallback(text);
    };
    chunks(text)
        .map(|piece| {
            // The tokenizer unwraps its pre-tokenizer's result; chunking keeps that from
            // failing, and a failure still only costs accuracy, never the request.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                bpe.encode_ordinary(piece).len() as u64
            }))
            .unwrap_or_else(|_| fallback(piece))
        })
        .sum()
}

/// About four bytes per token, rounded up: the estimate when no vocabulary is available.
fn fallback(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Splits `text` into pieces of at most about [`CHUNK`] bytes, before a whitespace where one is
/// near (so words stay whole, as the tokenizer would see them), always on a char boundary.
fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= CHUNK {
            return Some(std::mem::take(&mut rest));
        }
        let mut end = CHUNK;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let window = &rest[end.saturating_sub(256)..end];
        if let Some(ws) = window.rfind(char::is_whitespace)
            && ws > 0
        {
            end = end - window.len() + ws;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

fn count_parts(encoding: Encoding, parts: &[ContentPart]) -> u64 {
    parts
        .iter()
        .map(|p| match p {
            ContentPart::Text { text, .. } | ContentPart::Reasoning { text, .. } => {
                count_text(encoding, text)
            }
            ContentPart::Image { detail, .. } => {
                if detail.as_deref() == Some("low") {
                    IMAGE_LOW
                } else {
                    IMAGE
                }
            }
            ContentPart::ToolCall {
                name, arguments, ..
            } => count_text(encoding, name) + count_text(encoding, arguments) + PER_MESSAGE,
            ContentPart::ToolResult { name, content, .. } => {
                name.as_deref().map_or(0, |n| count_text(encoding, n))
                    + count_parts(encoding, content)
                    + PER_MESSAGE
            }
            // Opaque provider data: sized like text, as the provider will bill it.
            ContentPart::RedactedReasoning { data } => fallback(data),
        })
        .sum()
}

/// Estimated prompt tokens of a chat request: every message with its framing, tool
/// definitions, a JSON schema for the output, and the reply priming.
pub fn estimate_chat(encoding: Encoding, request: &ChatRequest) -> u64 {
    let mut n = REPLY_PRIMING;
    for m in &request.messages {
        n += PER_MESSAGE + count_parts(encoding, &m.content);
        if let Some(name) = &m.name {
            n += 1 + count_text(encoding, name);
        }
    }
    for t in &request.tools {
        n += PER_TOOL
            + count_text(encoding, &t.name)
            + t.description
                .as_deref()
                .map_or(0, |d| count_text(encoding, d))
            + count_text(encoding, &t.parameters.to_string());
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &request.response_format {
        n += count_text(encoding, &schema.to_string());
    }
    n
}

/// Estimated input tokens of an embeddings request (token-array inputs are counted exactly).
pub fn estimate_embeddings(encoding: Encoding, input: &EmbeddingInput) -> u64 {
    match input {
        EmbeddingInput::Texts(t) => t.iter().map(|s| count_text(encoding, s)).sum(),
        EmbeddingInput::Tokens(t) => t.iter().map(|v| v.len() as u64).sum(),
    }
}

/// Runs a count; a large one tells the runtime it blocks, so other tasks on this worker move
/// to another thread meanwhile (on a multi-threaded runtime; elsewhere it just runs).
pub fn off_the_reactor<T>(bytes: usize, count: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if bytes > BLOCKING_THRESHOLD && multi {
        tokio::task::block_in_place(count)
    } else {
        count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::canonical::{Message, Role};

    #[test]
    fn known_counts() {
        // Reference counts of OpenAI's tokenizer for these strings.
        assert_eq!(count_text(Encoding::O200k, "hello world"), 2);
        assert_eq!(count_text(Encoding::Cl100k, "hello world"), 2);
        assert_eq!(
            count_text(Encoding::Cl100k, "tiktoken is great!"),
            6,
            "cl100k splits tiktoken into t-ik-token"
        );
        assert_eq!(count_text(Encoding::O200k, ""), 0);
        // Each vocabulary counts a non-English sentence differently; o200k needs fewer.
        let text = "Das Wetter ist heute wirklich schön, aber morgen soll es regnen.";
        assert!(count_text(Encoding::O200k, text) < count_text(Encoding::Cl100k, text));
    }

    #[test]
    fn chooses_the_vocabulary_by_model() {
        for m in [
            "gpt-3.5-turbo",
            "gpt-4",
            "gpt-4-0613",
            "text-embedding-3-small",
        ] {
            assert_eq!(Encoding::for_model(m), Encoding::Cl100k, "{m}");
        }
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "o3-mini",
            "claude-sonnet-4-5",
            "gemini-2.5-flash",
        ] {
            assert_eq!(Encoding::for_model(m), Encoding::O200k, "{m}");
        }
    }

    #[test]
    fn chunking_changes_counts_little_and_never_panics() {
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let long = sentence.repeat(2_000); // ~90 KB, many chunks
        // Repeated, each sentence's trailing space joins the next word: one token fewer each.
        let whole = count_text(Encoding::O200k, sentence.trim_end()) * 2_000;
        let chunked = count_text(Encoding::O200k, &long);
        assert!(
            chunked >= whole && chunked <= whole + whole / 100,
            "{chunked} vs {whole}"
        );
        // Inputs that drive backtracking pre-tokenizers into their limits.
        for c in ["^", " ", "\n", "a", "é"] {
            let n = count_text(Encoding::O200k, &c.repeat(1_000_000));
            assert!(n > 0, "{c:?}");
        }
    }

    #[test]
    fn chat_estimates_count_framing_and_stay_above_the_text() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: vec![ContentPart::text("You are terse.")],
                    name: None,
                    extras: Default::default(),
                },
                Message {
                    role: Role::User,
                    content: vec![ContentPart::text("hello world")],
                    name: None,
                    extras: Default::default(),
                },
            ],
            ..ChatRequest::default()
        };
        let text = count_text(Encoding::O200k, "You are terse.") + 2;
        assert_eq!(
            estimate_chat(Encoding::O200k, &request),
            text + 2 * PER_MESSAGE + REPLY_PRIMING
        );
    }

    /// Rough cost of counting a 50,000-token prompt (printed with `--nocapture`; no assertion on
    /// time). In an optimised build this takes a few tens of milliseconds, which is why prompts
    /// above `BLOCKING_THRESHOLD` are counted with `block_in_place`.
    #[test]
    fn a_large_prompt_is_counted() {
        let text = "Budget reservations need a token estimate before the call. ".repeat(5_000);
        let started = std::time::Instant::now();
        count_text(Encoding::O200k, "warm up");
        println!("vocabulary built in {:?}", started.elapsed());
        let started = std::time::Instant::now();
        let n = count_text(Encoding::O200k, &text);
        println!(
            "{n} tokens ({} bytes) counted in {:?}",
            text.len(),
            started.elapsed()
        );
        assert!(n > 40_000);
    }
}

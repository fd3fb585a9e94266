//! Prompt-size estimates in tokens, for budget reservations, TPM limits, routing rules and
//! context-window checks. Counts use OpenAI's BPE vocabularies (compiled into the binary from the
//! ones `tiktoken-rs` bundles, so no network): `cl100k_base` for the older GPT-3.5/GPT-4 names
//! and their embeddings, `o200k_base` for everything else, including other providers' models,
//! whose own tokenizers are not published and whose counts o200k approximates. The authoritative
//! number is always the response's usage; these are estimates, and they lean high (message
//! framing is counted).
//!
//! A vocabulary's tables are read in place from the binary ([`vocabulary`]); what is made at run
//! time is its compiled pre-tokenizer, once per process, when a request first needs it (or ahead
//! of that, when the configuration shows that some will), so a gateway whose callers have no
//! budget or TPM limit never makes one. The tokenizer's work per request is bounded: the first
//! [`EXACT_BYTES`] of text are counted exactly; longer texts are estimated from evenly spaced
//! windows and extrapolated with a margin, so a 200 KB prompt costs about as much as a 4 KB one.
//! Text is encoded in bounded chunks, so hostile input (a megabyte of one repeated character)
//! cannot drive the pre-tokenizer's backtracking into its failure mode. A text counted exactly is
//! remembered by its thread ([`recent`]), so one sent again (a system prompt, the earlier turns
//! of a conversation) is not tokenized again.

mod recent;
mod tables;
mod vocabulary;

use std::sync::OnceLock;

use switchyard_protocol::canonical::{
    ChatRequest, ContentPart, DocumentSource, EmbeddingInput, ResponseFormat,
};
use vocabulary::Vocabulary;

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

    fn cell(self) -> &'static OnceLock<Option<Vocabulary>> {
        static O200K: OnceLock<Option<Vocabulary>> = OnceLock::new();
        static CL100K: OnceLock<Option<Vocabulary>> = OnceLock::new();
        match self {
            Encoding::O200k => &O200K,
            Encoding::Cl100k => &CL100K,
        }
    }

    /// Makes the vocabulary, then returns its pattern compiler's scratch memory (about five
    /// times what the compiled pattern keeps) to the system.
    fn build(self) -> Option<Vocabulary> {
        let built = match self {
            Encoding::O200k => Vocabulary::o200k(),
            Encoding::Cl100k => Vocabulary::cl100k(),
        };
        crate::allocator::release_free_memory();
        built
    }

    /// The vocabulary, made on first use, or waited for while [`prepare`] makes it (its
    /// pattern's compilation, a few milliseconds, once). A multi-threaded runtime is told the
    /// wait blocks; a serving worker's single-threaded runtime is held up for it.
    fn vocabulary(self) -> Option<&'static Vocabulary> {
        let cell = self.cell();
        if let Some(built) = cell.get() {
            return built.as_ref();
        }
        off_the_reactor(|| cell.get_or_init(|| self.build())).as_ref()
    }
}

/// Makes vocabularies ahead of the first request that needs them, on a thread of their own.
pub fn prepare(encodings: impl IntoIterator<Item = Encoding>) {
    let missing: Vec<Encoding> = encodings
        .into_iter()
        .filter(|e| e.cell().get().is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let build = move || {
        for e in missing {
            e.cell().get_or_init(|| e.build());
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("switchyard-vocabulary".into())
        .spawn(build)
    {
        tracing::warn!(error = %e, "could not prepare the token vocabulary; the first request that needs it will");
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
/// A page of a document the model reads as images and text (Anthropic: 1,500–3,000 tokens a
/// page).
pub const DOCUMENT_PAGE: u64 = 2_250;
/// Bytes of a document's data taken as one page: the page count is not known without parsing
/// the file, and a page of a typical text PDF takes a few tens of kilobytes.
pub const DOCUMENT_PAGE_BYTES: usize = 32 * 1024;
/// Bytes of text per request counted exactly.
pub const EXACT_BYTES: usize = 16 * 1024;
/// Bytes of text per request the tokenizer reads to estimate texts beyond [`EXACT_BYTES`];
/// past it, the ratio of tokens to bytes seen so far extrapolates.
const SAMPLE_BYTES: usize = 16 * 1024;
/// A long text is estimated from this many windows of [`WINDOW`] bytes, spread evenly.
const WINDOWS: usize = 4;
const WINDOW: usize = 1024;
/// Estimates of long texts are raised by this share (in percent), so they lean high.
const MARGIN_PERCENT: u64 = 10;
/// Text is encoded in pieces of about this many bytes.
const CHUNK: usize = 4 * 1024;

/// Counts the texts of one request, spending at most [`EXACT_BYTES`] + [`SAMPLE_BYTES`] of
/// tokenizer work whatever the request's size.
pub struct Counter {
    encoding: Encoding,
    exact_left: usize,
    sample_left: usize,
    /// Bytes and tokens the tokenizer has seen, for extrapolating.
    seen_bytes: u64,
    seen_tokens: u64,
}

impl Counter {
    pub fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            exact_left: EXACT_BYTES,
            sample_left: SAMPLE_BYTES,
            seen_bytes: 0,
            seen_tokens: 0,
        }
    }

    /// Tokens of one text: exact while the request's exact allowance lasts, else an estimate.
    pub fn text(&mut self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let Some(vocabulary) = self.encoding.vocabulary() else {
            return fallback(text);
        };
        let exact = |text: &str| {
            recent::count(self.encoding, text, |text| {
                chunks(text)
                    .map(|piece| encode_len(vocabulary, piece))
                    .sum()
            })
        };
        if text.len() <= self.exact_left {
            self.exact_left -= text.len();
            let n = exact(text);
            self.seen(text.len(), n);
            return n;
        }
        self.exact_left = 0;
        if self.sample_left >= WINDOWS * WINDOW {
            // A window is counted exactly, and remembered like any text: a long text sent
            // again (a document or tool result in a conversation's history) falls into the
            // same windows, which hashing finds for a fiftieth of counting them.
            let (bytes, tokens) = windows(text)
                .map(|w| (w.len(), exact(w)))
                .fold((0, 0), |(b, t), (wb, wt)| (b + wb, t + wt));
            self.sample_left -= bytes;
            self.seen(bytes, tokens);
            return extrapolate(text.len(), bytes as u64, tokens);
        }
        if self.seen_bytes > 0 {
            extrapolate(text.len(), self.seen_bytes, self.seen_tokens)
        } else {
            fallback(text)
        }
    }

    fn seen(&mut self, bytes: usize, tokens: u64) {
        self.seen_bytes += bytes as u64;
        self.seen_tokens += tokens;
    }
}

/// Tokens of one piece of text; chunking keeps the pre-tokenizer within its backtracking
/// limit, and should it still fail, that costs accuracy, never the request.
fn encode_len(vocabulary: &Vocabulary, piece: &str) -> u64 {
    vocabulary.count(piece).unwrap_or_else(|_| fallback(piece))
}

/// `bytes` of text at the sample's ratio of tokens to bytes, plus the margin.
fn extrapolate(bytes: usize, sample_bytes: u64, sample_tokens: u64) -> u64 {
    let scaled =
        (bytes as u128 * u128::from(sample_tokens)).div_ceil(u128::from(sample_bytes.max(1)));
    let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
    scaled.saturating_add(scaled * MARGIN_PERCENT / 100).max(1)
}

/// [`WINDOWS`] pieces of about [`WINDOW`] bytes spread evenly over `text` (first and last
/// included), each on char boundaries.
fn windows(text: &str) -> impl Iterator<Item = &str> {
    let span = text.len().saturating_sub(WINDOW);
    (0..WINDOWS).map(move |i| {
        let mut start = span * i / (WINDOWS - 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + WINDOW).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[start..end]
    })
}

/// Tokens of one text, as the first text of a request would be counted.
pub fn count_text(encoding: Encoding, text: &str) -> u64 {
    Counter::new(encoding).text(text)
}

/// About four bytes per token, rounded up: the estimate when no vocabulary is available.
fn fallback(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The estimate of a request nothing meters by tokens (no budget, no TPM limit, no routing
/// on token counts): about four bytes per token, without the tokenizer.
pub fn rough(prompt_bytes: usize) -> u64 {
    (prompt_bytes as u64).div_ceil(4) + REPLY_PRIMING
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

fn count_parts(counter: &mut Counter, parts: &[ContentPart]) -> u64 {
    parts
        .iter()
        .map(|p| match p {
            ContentPart::Text { text, .. } => counter.text(text),
            ContentPart::Reasoning { text, .. } => counter.text(text),
            ContentPart::Image { detail, .. } => {
                if detail.as_deref() == Some("low") {
                    IMAGE_LOW
                } else {
                    IMAGE
                }
            }
            ContentPart::ToolCall {
                name, arguments, ..
            } => counter.text(name) + counter.text(arguments) + PER_MESSAGE,
            ContentPart::ToolResult { name, content, .. } => {
                name.as_deref().map_or(0, |n| counter.text(n))
                    + count_parts(counter, content)
                    + PER_MESSAGE
            }
            ContentPart::Document { source, .. } => match source {
                DocumentSource::Text { data, .. } => counter.text(data) + PER_MESSAGE,
                // Base64 holds three bytes in four characters.
                DocumentSource::Base64 { data, .. } => {
                    let pages = (data.len() / 4 * 3).div_ceil(DOCUMENT_PAGE_BYTES).max(1);
                    pages as u64 * DOCUMENT_PAGE
                }
                // Its size is the provider's to know: a page's worth.
                DocumentSource::Url(_) | DocumentSource::FileId(_) => DOCUMENT_PAGE,
            },
            // Opaque provider data: sized like text, as the provider will bill it.
            ContentPart::RedactedReasoning { data } => fallback(data),
            // A server tool's call or its results, which the provider reads back as input.
            ContentPart::ServerTool { block } => fallback(&block.to_string()),
        })
        .sum()
}

/// Estimated prompt tokens of a chat request: every message with its framing, tool
/// definitions, a JSON schema for the output, and the reply priming.
pub fn estimate_chat(encoding: Encoding, request: &ChatRequest) -> u64 {
    let mut counter = Counter::new(encoding);
    let mut n = REPLY_PRIMING;
    for m in &request.messages {
        n += PER_MESSAGE + count_parts(&mut counter, &m.content);
        if let Some(name) = &m.name {
            n += 1 + counter.text(name);
        }
    }
    for t in &request.tools {
        n += PER_TOOL
            + counter.text(&t.name)
            + t.description.as_deref().map_or(0, |d| counter.text(d))
            + counter.text(&t.parameters.to_string());
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &request.response_format {
        n += counter.text(&schema.to_string());
    }
    n
}

/// Estimated input tokens of an embeddings request (token-array inputs are counted exactly).
pub fn estimate_embeddings(encoding: Encoding, input: &EmbeddingInput) -> u64 {
    match input {
        EmbeddingInput::Texts(t) => {
            let mut counter = Counter::new(encoding);
            t.iter().map(|s| counter.text(s)).sum()
        }
        EmbeddingInput::Tokens(t) => t.iter().map(|v| v.len() as u64).sum(),
    }
}

/// [`rough`] for an embeddings request (token-array inputs are counted exactly).
pub fn rough_embeddings(input: &EmbeddingInput) -> u64 {
    match input {
        EmbeddingInput::Texts(t) => rough(t.iter().map(String::len).sum()),
        EmbeddingInput::Tokens(t) => t.iter().map(|v| v.len() as u64).sum(),
    }
}

/// Runs `work`, telling a multi-threaded runtime that it blocks, so other tasks on this worker
/// move to another thread meanwhile (elsewhere it just runs).
fn off_the_reactor<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(work)
    } else {
        work()
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
    fn a_document_counts_a_page_per_32_kib_of_its_data() {
        let with = |source: DocumentSource| ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentPart::Document {
                    source,
                    title: None,
                    context: None,
                    extras: Default::default(),
                }],
                name: None,
                extras: Default::default(),
            }],
            ..ChatRequest::default()
        };
        let framing = REPLY_PRIMING + PER_MESSAGE;
        let pdf = |bytes: usize| DocumentSource::Base64 {
            media_type: "application/pdf".into(),
            // Four base64 characters hold three bytes.
            data: "A".repeat(bytes / 3 * 4).into(),
        };
        assert_eq!(
            estimate_chat(Encoding::O200k, &with(pdf(3))),
            framing + DOCUMENT_PAGE
        );
        assert_eq!(
            estimate_chat(Encoding::O200k, &with(pdf(3 * DOCUMENT_PAGE_BYTES))),
            framing + 3 * DOCUMENT_PAGE
        );
        assert_eq!(
            estimate_chat(
                Encoding::O200k,
                &with(DocumentSource::FileId("file-1".into()))
            ),
            framing + DOCUMENT_PAGE
        );
        let text = DocumentSource::Text {
            media_type: "text/plain".into(),
            data: "hello world".into(),
        };
        assert_eq!(
            estimate_chat(Encoding::O200k, &with(text)),
            framing + 2 + PER_MESSAGE
        );
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
    fn long_texts_are_estimated_high_and_never_panic() {
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let long = sentence.repeat(2_000); // ~90 KB, beyond the exact allowance
        // Repeated, each sentence's trailing space joins the next word: one token fewer each.
        let whole = count_text(Encoding::O200k, sentence.trim_end()) * 2_000;
        let estimated = count_text(Encoding::O200k, &long);
        assert!(
            estimated >= whole && estimated <= whole + whole / 5,
            "{estimated} vs {whole}"
        );
        // Exact up to the allowance: a text just inside it is chunked and counted.
        let inside = sentence.repeat(EXACT_BYTES / sentence.len());
        let exact = count_text(Encoding::O200k, &inside);
        let per = count_text(Encoding::O200k, sentence.trim_end());
        let n = (EXACT_BYTES / sentence.len()) as u64;
        assert!(exact >= per * n && exact <= per * n + n / 50, "{exact}");
        // Inputs that drive backtracking pre-tokenizers into their limits.
        for c in ["^", " ", "\n", "a", "é", "日本語"] {
            let n = count_text(Encoding::O200k, &c.repeat(1_000_000));
            assert!(n > 0, "{c:?}");
        }
        // Non-ASCII text: windows cut on char boundaries, the ratio carries over.
        let cjk = "日本語のテキストです。".repeat(5_000);
        let one = count_text(Encoding::O200k, "日本語のテキストです。");
        let estimated = count_text(Encoding::O200k, &cjk);
        assert!(
            estimated >= one * 5_000 * 9 / 10,
            "{estimated} vs {}",
            one * 5_000
        );
    }

    #[test]
    fn a_request_spends_a_bounded_allowance() {
        let mut counter = Counter::new(Encoding::O200k);
        let page = "Budgets reserve by the prompt's tokens before the call. ".repeat(500);
        // Many long texts: the first are sampled, the rest extrapolated from what was seen.
        let counts: Vec<u64> = (0..20).map(|_| counter.text(&page)).collect();
        assert_eq!(counter.sample_left, SAMPLE_BYTES % (WINDOWS * WINDOW));
        assert!(counts.iter().all(|&c| c > 0));
        let exact = Counter::new(Encoding::O200k).text(&page[..EXACT_BYTES - 100]);
        let sampled = counts[0] as f64 / page.len() as f64;
        let ratio = exact as f64 / (EXACT_BYTES - 100) as f64;
        assert!(
            sampled >= ratio && sampled < ratio * 1.3,
            "{sampled} vs {ratio}"
        );
        assert!(counts[19] as f64 / page.len() as f64 >= ratio);
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

    #[test]
    fn a_long_text_sent_again_is_estimated_the_same_from_remembered_windows() {
        let text = "Each window of a long tool result is counted once per thread. ".repeat(600);
        assert!(text.len() > EXACT_BYTES);
        let first = count_text(Encoding::O200k, &text);
        // The windows were remembered: the last one counted is in the table (earlier ones may
        // share its slot), and counting it again does not tokenize.
        let last = windows(&text).last().unwrap();
        let remembered = recent::count(Encoding::O200k, last, |_| panic!("counted again"));
        assert_eq!(
            remembered,
            encode_len(Encoding::O200k.vocabulary().unwrap(), last)
        );
        assert_eq!(count_text(Encoding::O200k, &text), first);
        // A thread that never saw the text estimates it the same from scratch.
        let fresh = std::thread::spawn(move || count_text(Encoding::O200k, &text))
            .join()
            .unwrap();
        assert_eq!(fresh, first);
    }

    /// Rough cost of estimating a 50,000-token prompt (printed with `--nocapture`; no assertion
    /// on time): the tokenizer reads only a few windows of it.
    #[test]
    fn a_large_prompt_is_counted() {
        let text = "Budget reservations need a token estimate before the call. ".repeat(5_000);
        let started = std::time::Instant::now();
        count_text(Encoding::O200k, "warm up");
        println!("vocabulary ready in {:?}", started.elapsed());
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

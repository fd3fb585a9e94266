//! The bytes a case sends: path, headers and JSON body, built once per case and shared by
//! every request of it. The same request goes to every target (simulator, nginx, gateway), so
//! the simulator and the gateway both accept its credential: the master key, or the virtual key
//! the harness created for feature sets that have one (the simulator accepts any key).

use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::json;

use crate::case::{Case, Kind, PromptSize};

/// The gateway's master key; the harness gives it to the gateway as `BENCH_MASTER_KEY`. The
/// simulator accepts any non-empty key.
pub const MASTER_KEY: &str = "sk-bench-master-key";

/// Size of the large prompt: about 50,000 tokens at four characters a token.
pub const LARGE_PROMPT_BYTES: usize = 200_000;

const SMALL_PROMPT: &str = "Write one short sentence about keep-alive connections.";

/// One request, ready to be cloned for each send.
#[derive(Debug, Clone)]
pub struct Template {
    pub path: &'static str,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// The reply is an OpenAI SSE stream.
    pub stream: bool,
    /// Bytes of prompt text in the body.
    pub prompt_bytes: usize,
}

impl Template {
    /// The request of `case`, presenting `key` (the master key or a virtual key).
    pub fn for_case(case: &Case, key: &str) -> anyhow::Result<Template> {
        let image = matches!(
            case.kind,
            Kind::ChatImage | Kind::AnthropicImageToOpenai | Kind::AnthropicScreenshotToOpenai
        );
        let prompt = if image {
            image_base64(prompt_text(case.prompt).len())
        } else {
            prompt_text(case.prompt)
        };
        let model = case.model.as_str();
        let bearer = HeaderValue::from_str(&format!("Bearer {key}"))?;
        let openai_auth = vec![(header::AUTHORIZATION, bearer)];
        let (path, headers, body) = match case.kind {
            Kind::Chat | Kind::ChatStream => {
                let mut body = json!({
                    "model": model,
                    "messages": [
                        {"role": "system", "content": "You are terse."},
                        {"role": "user", "content": prompt},
                    ],
                    "max_tokens": 64,
                });
                if case.kind == Kind::ChatStream {
                    body["stream"] = json!(true);
                }
                ("/v1/chat/completions", openai_auth, body)
            }
            Kind::ChatTools => {
                let body = json!({
                    "model": model,
                    "messages": [
                        {"role": "system", "content": "You are a coding agent. Read files with read_file."},
                        {"role": "user", "content": "Summarise notes.txt."},
                        {"role": "assistant", "content": null, "tool_calls": [{
                            "id": "call_read_1",
                            "type": "function",
                            "function": {"name": "read_file", "arguments": "{\"path\":\"notes.txt\"}"},
                        }]},
                        {"role": "tool", "tool_call_id": "call_read_1", "content": prompt},
                    ],
                    "tools": [{
                        "type": "function",
                        "function": {
                            "name": "read_file",
                            "description": "Reads a file of the workspace.",
                            "parameters": {
                                "type": "object",
                                "properties": {"path": {"type": "string"}},
                                "required": ["path"],
                            },
                        },
                    }],
                    "max_tokens": 64,
                });
                ("/v1/chat/completions", openai_auth, body)
            }
            Kind::ChatImage => (
                "/v1/chat/completions",
                openai_auth,
                json!({
                    "model": model,
                    "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "What does this screenshot show?"},
                        {"type": "image_url", "image_url": {
                            "url": format!("data:image/png;base64,{prompt}"),
                            "detail": "high",
                        }},
                    ]}],
                    "max_tokens": 64,
                }),
            ),
            Kind::AnthropicImageToOpenai => (
                "/v1/messages",
                anthropic_headers(key)?,
                json!({
                    "model": model,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "What does this screenshot show?"},
                        {"type": "image", "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": prompt,
                        }},
                    ]}],
                }),
            ),
            Kind::Embeddings => (
                "/v1/embeddings",
                openai_auth,
                json!({"model": model, "input": prompt}),
            ),
            Kind::AnthropicToOpenai | Kind::AnthropicStreamToOpenai => {
                let mut body = json!({
                    "model": model,
                    "max_tokens": 64,
                    "system": "You are terse.",
                    "messages": [{"role": "user", "content": prompt}],
                });
                if case.kind.streams() {
                    body["stream"] = json!(true);
                }
                ("/v1/messages", anthropic_headers(key)?, body)
            }
            Kind::AnthropicToolsToOpenai => (
                "/v1/messages",
                anthropic_headers(key)?,
                json!({
                    "model": model,
                    "max_tokens": 64,
                    "system": "You are a coding agent. Read files with read_file.",
                    "tools": [{
                        "name": "read_file",
                        "description": "Reads a file of the workspace.",
                        "input_schema": {
                            "type": "object",
                            "properties": {"path": {"type": "string"}},
                            "required": ["path"],
                        },
                    }],
                    "messages": [
                        {"role": "user", "content": "Summarise notes.txt."},
                        {"role": "assistant", "content": [{"type": "tool_use",
                            "id": "toolu_read_1", "name": "read_file",
                            "input": {"path": "notes.txt"}}]},
                        {"role": "user", "content": [{"type": "tool_result",
                            "tool_use_id": "toolu_read_1", "content": prompt}]},
                    ],
                }),
            ),
            Kind::AnthropicScreenshotToOpenai => (
                "/v1/messages",
                anthropic_headers(key)?,
                json!({
                    "model": model,
                    "max_tokens": 64,
                    "system": "You operate a computer. Look at the screen with screenshot.",
                    "tools": [{
                        "name": "screenshot",
                        "description": "Takes a screenshot of the display.",
                        "input_schema": {"type": "object", "properties": {}},
                    }],
                    "messages": [
                        {"role": "user", "content": "Open the settings."},
                        {"role": "assistant", "content": [{"type": "tool_use",
                            "id": "toolu_shot_1", "name": "screenshot", "input": {}}]},
                        {"role": "user", "content": [{"type": "tool_result",
                            "tool_use_id": "toolu_shot_1", "content": [
                                {"type": "text", "text": "1280x800"},
                                {"type": "image", "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": prompt,
                                }},
                            ]}]},
                    ],
                }),
            ),
        };
        Ok(Template {
            path,
            headers,
            body: Bytes::from(body.to_string()),
            stream: case.kind.streams(),
            prompt_bytes: prompt.len(),
        })
    }
}

/// The headers of an Anthropic Messages request presenting `key`.
fn anthropic_headers(key: &str) -> anyhow::Result<Vec<(header::HeaderName, HeaderValue)>> {
    Ok(vec![
        (
            header::HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(key)?,
        ),
        (
            header::HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static("2023-06-01"),
        ),
    ])
}

/// Deterministic base64 text of about `len` bytes (a multiple of four), every character of the
/// alphabet in it, standing for an inline image.
fn image_base64(len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u32 = 0x9e37_79b9;
    (0..len.div_ceil(4) * 4)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from(ALPHABET[(state >> 26) as usize])
        })
        .collect()
}

/// The prompt text: a sentence, or deterministic filler words up to [`LARGE_PROMPT_BYTES`],
/// for `Lines` with a line break after every tenth word and every fiftieth word quoted.
fn prompt_text(size: PromptSize) -> String {
    match size {
        PromptSize::Small => SMALL_PROMPT.to_owned(),
        PromptSize::Prose => prose(),
        PromptSize::Large | PromptSize::Lines => {
            const WORDS: &[&str] = &[
                "the", "gateway", "forwards", "each", "request", "to", "a", "provider", "and",
                "streams", "its", "answer", "back", "while", "counting", "tokens", "latency",
                "budget", "route", "fallback",
            ];
            let mut text = String::with_capacity(LARGE_PROMPT_BYTES + 16);
            text.push_str(SMALL_PROMPT);
            let lines = size == PromptSize::Lines;
            let mut i = 0;
            while text.len() < LARGE_PROMPT_BYTES {
                text.push(if lines && i % 10 == 0 { '\n' } else { ' ' });
                let word = WORDS[i % WORDS.len()];
                if lines && i % 50 == 25 {
                    text.push('"');
                    text.push_str(word);
                    text.push('"');
                } else {
                    text.push_str(word);
                }
                i += 1;
            }
            text
        }
    }
}

/// [`PromptSize::Prose`]: sentences of fourteen words drawn from a made-up vocabulary of
/// 1,024, each word's letters and each word's place in the vocabulary drawn as the product of
/// two uniform draws, so that frequent letters and words come up more often, as in a language.
fn prose() -> String {
    const LETTERS: &[u8; 26] = b"etaoinshrdlcumwfgypbvkjxqz";
    const WORDS: usize = 1024;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let vocabulary: Vec<String> = (0..WORDS)
        .map(|_| {
            let len = 2 + next() % 8;
            (0..len)
                .map(|_| {
                    let (a, b) = (next() % 26, next() % 26);
                    char::from(LETTERS[(a * b / 26) as usize])
                })
                .collect()
        })
        .collect();
    let mut text = String::with_capacity(LARGE_PROMPT_BYTES + 16);
    let mut words = 0usize;
    while text.len() < LARGE_PROMPT_BYTES {
        let draw = next();
        let skewed = ((draw & 0xffff_ffff) * (draw >> 32)) >> 54;
        let word = &vocabulary[skewed as usize % WORDS];
        if words.is_multiple_of(14) {
            let mut chars = word.chars();
            text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            text.push_str(chars.as_str());
        } else {
            text.push_str(word);
        }
        words += 1;
        text.push_str(if words.is_multiple_of(14) {
            ". "
        } else if next().is_multiple_of(9) {
            ", "
        } else {
            " "
        });
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_present_the_given_key() {
        let dir = crate::shipped_cases();
        let cases = crate::case::load_all(&dir, &[]).unwrap();
        for case in &cases {
            let t = Template::for_case(case, "sk-test").unwrap();
            let presented: Vec<&str> = t
                .headers
                .iter()
                .filter(|(n, _)| *n == header::AUTHORIZATION || n.as_str() == "x-api-key")
                .map(|(_, v)| v.to_str().unwrap())
                .collect();
            assert!(
                presented == ["Bearer sk-test"] || presented == ["sk-test"],
                "{}: {presented:?}",
                case.name
            );
        }
    }

    #[test]
    fn large_prompt_is_about_fifty_thousand_tokens() {
        let text = prompt_text(PromptSize::Large);
        assert!(text.len() >= LARGE_PROMPT_BYTES && text.len() < LARGE_PROMPT_BYTES + 16);
        assert!(text.is_ascii());
        assert!(prompt_text(PromptSize::Small).len() < 100);
        let lines = prompt_text(PromptSize::Lines);
        assert!(lines.len() >= LARGE_PROMPT_BYTES && lines.len() < LARGE_PROMPT_BYTES + 16);
        // A line break about every sixty bytes and a quoted word about every three hundred.
        let breaks = lines.matches('\n').count();
        assert!((LARGE_PROMPT_BYTES / 80..LARGE_PROMPT_BYTES / 40).contains(&breaks));
        assert_eq!(lines.matches('"').count() % 2, 0);
        assert!(lines.matches('"').count() > LARGE_PROMPT_BYTES / 400);
    }

    #[test]
    fn prose_is_the_large_prompts_size_in_varied_sentences() {
        let prose = prompt_text(PromptSize::Prose);
        assert_eq!(prose, prompt_text(PromptSize::Prose), "the same every time");
        assert!(prose.len() >= LARGE_PROMPT_BYTES && prose.len() < LARGE_PROMPT_BYTES + 16);
        assert!(prose.is_ascii());
        let words: Vec<&str> = prose
            .split([' ', ',', '.'])
            .filter(|w| !w.is_empty())
            .map(|w| w.trim())
            .collect();
        let distinct: std::collections::HashSet<String> =
            words.iter().map(|w| w.to_ascii_lowercase()).collect();
        // Most of the vocabulary comes up, the commonest words several times as often as the
        // median one.
        assert!((700..=1024).contains(&distinct.len()), "{}", distinct.len());
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for w in &words {
            *counts.entry(w.to_ascii_lowercase()).or_default() += 1;
        }
        let mut by_count: Vec<usize> = counts.into_values().collect();
        by_count.sort_unstable();
        assert!(by_count[by_count.len() - 1] > 4 * by_count[by_count.len() / 2]);
        assert_eq!(prose.matches(". ").count(), words.len() / 14);
    }
}

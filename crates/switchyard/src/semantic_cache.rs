//! The semantic cache (`cache.semantic:`): in front of the exact cache, for a question worded
//! differently. A request's last message, when it is a user's text, is the question; the rest
//! of the body (the conversation before it, the model, the parameters, the tools) is its
//! context, which must match exactly. The question is embedded with the configured embedding
//! model (a request of its own, recorded and billed to the same caller), and a kept answer to a
//! question in the same context whose embedding lies within the threshold answers it.
//!
//! Embeddings rate a question and its negation, or the same question about another number, as
//! nearly the same ("Is the door open?" after "The door is not open."), and the answer to one
//! is wrong for the other. So the numbers, the arithmetic between them and the negations a
//! question holds, in order, are part of its context: only questions with the same ones can
//! answer each other.
//!
//! The index holds each question's embedding and the exact cache's key of its answer, nothing
//! more: the answer lives in the exact cache, by its bounds and ttl, and an entry whose answer
//! is gone simply finds nothing. Per replica.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

/// A request split for the semantic cache: its context (the body with the question taken out)
/// and its question.
pub struct Split {
    pub context: Vec<u8>,
    pub question: String,
}

/// Splits a chat body (OpenAI's chat completions or Anthropic's messages: both carry
/// `messages` of `role` and `content`, a string or text blocks) whose last message is a user's
/// text; `None` for anything else (a tool result, an image, no messages).
pub fn split(body: &[u8]) -> Option<Split> {
    let mut request: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    let messages = request.get_mut("messages")?.as_array_mut()?;
    let last = messages.last_mut()?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let question = match last.get("content")? {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for block in blocks {
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return None;
                }
                texts.push(block.get("text")?.as_str()?);
            }
            texts.join("\n")
        }
        _ => return None,
    };
    if question.trim().is_empty() {
        return None;
    }
    // The question's place stays, so a context with one more turn is another context.
    *last = Value::Null;
    let mut context = serde_json::to_vec(&request).ok()?;
    context.extend_from_slice(b"\0facts:");
    context.extend_from_slice(facts(&question).as_bytes());
    Some(Split { context, question })
}

/// The numbers, the arithmetic between them and the negations of a question, in order: two
/// questions that differ in them ("7+3" and "7-3", "-5" and "5", "no cats, 3 dogs" and "3 cats,
/// no dogs") are not the same question, however near their embeddings.
fn facts(question: &str) -> String {
    const NEGATIONS: &[&str] = &[
        "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot",
    ];
    const OPERATIONS: &[&str] = &[
        "plus",
        "minus",
        "times",
        "multiplied",
        "divided",
        "over",
        "squared",
        "cubed",
        "power",
        "root",
        "percent",
        "negative",
        "less",
        "more",
    ];
    let chars: Vec<char> = question.chars().collect();
    let digit_near = |i: usize, step: isize| {
        let mut j = i as isize + step;
        while j >= 0 && (j as usize) < chars.len() && chars[j as usize] == ' ' {
            j += step;
        }
        j >= 0 && (j as usize) < chars.len() && chars[j as usize].is_ascii_digit()
    };
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            // A word, or a number with its decimal point, digit groups and apostrophes.
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || (matches!(chars[i], '\'' | '.' | ',')
                        && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
            if word.chars().any(|c| c.is_ascii_digit()) {
                found.push(without_digit_group_commas(&word));
            } else if NEGATIONS.contains(&word.as_str()) || word.ends_with("n't") {
                found.push("not".to_owned());
            } else if OPERATIONS.contains(&word.as_str()) {
                found.push(word);
            }
            continue;
        }
        // An operator or sign next to a number: `7-3`, `-5`, `2 * 3`, `50%`.
        if matches!(
            c,
            '+' | '-' | '−' | '*' | '×' | '/' | '÷' | '^' | '=' | '<' | '>' | '%' | '≤' | '≥'
        ) && (digit_near(i, -1) || digit_near(i, 1))
        {
            found.push(if c == '−' { '-' } else { c }.to_string());
        }
        i += 1;
    }
    found.join(" ")
}

/// `1,000` as `1000`; `1,5` (a decimal comma) stays as it is.
fn without_digit_group_commas(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            let grouping = c == ','
                && i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.len() >= i + 4
                && chars[i + 1..i + 4].iter().all(char::is_ascii_digit)
                && chars.get(i + 4).is_none_or(|n| !n.is_ascii_digit());
            !grouping
        })
        .map(|(_, &c)| c)
        .collect()
}

struct Entry {
    serial: u64,
    /// Unit length, so a dot product is the cosine similarity.
    vector: Box<[f32]>,
    answer: [u8; 32],
}

#[derive(Default)]
struct Inner {
    by_context: HashMap<[u8; 32], Vec<Entry>>,
    /// `(context, serial)` in the order they were added, for evicting the oldest.
    order: VecDeque<([u8; 32], u64)>,
    next_serial: u64,
}

pub struct SemanticCache {
    /// The embedding model alias.
    pub model: String,
    threshold: f32,
    max_entries: usize,
    inner: Mutex<Inner>,
}

impl SemanticCache {
    pub fn new(model: String, threshold: f32, max_entries: usize) -> Self {
        Self {
            model,
            threshold,
            max_entries,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The exact cache's keys of answers to questions asked in `context` within the threshold
    /// of `vector`, the most similar first, each with its similarity.
    pub fn nearest(&self, context: &[u8; 32], vector: &[f32]) -> Vec<([u8; 32], f32)> {
        let Some(query) = unit(vector) else {
            return Vec::new();
        };
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut found: Vec<([u8; 32], f32)> = inner
            .by_context
            .get(context)
            .into_iter()
            .flatten()
            .filter(|e| e.vector.len() == query.len())
            .map(|e| (e.answer, dot(&e.vector, &query)))
            .filter(|(_, similarity)| *similarity >= self.threshold)
            .collect();
        found.sort_by(|a, b| b.1.total_cmp(&a.1));
        found
    }

    /// Remembers that the question embedded as `vector`, asked in `context`, is answered by the
    /// exact cache's entry `answer`.
    pub fn insert(&self, context: [u8; 32], vector: &[f32], answer: [u8; 32]) {
        let Some(vector) = unit(vector) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let serial = inner.next_serial;
        inner.next_serial += 1;
        inner.by_context.entry(context).or_default().push(Entry {
            serial,
            vector,
            answer,
        });
        inner.order.push_back((context, serial));
        while inner.order.len() > self.max_entries {
            let Some((context, serial)) = inner.order.pop_front() else {
                break;
            };
            if let Some(entries) = inner.by_context.get_mut(&context) {
                entries.retain(|e| e.serial != serial);
                if entries.is_empty() {
                    inner.by_context.remove(&context);
                }
            }
        }
    }

    /// How many questions are remembered.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .len()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `v` scaled to unit length; `None` for a zero (or non-finite) vector.
fn unit(v: &[f32]) -> Option<Box<[f32]>> {
    let norm = dot(v, v).sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_question_is_the_last_user_text_and_the_rest_is_its_context() {
        let a = split(br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Capital of France?"}],"temperature":0}"#).unwrap();
        assert_eq!(a.question, "Capital of France?");
        let b = split(br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"What is France's capital?"}]}],"temperature":0}"#).unwrap();
        assert_eq!(b.question, "What is France's capital?");
        assert_eq!(a.context, b.context, "same conversation, same parameters");
        let hotter = split(br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Capital of France?"}],"temperature":1}"#).unwrap();
        assert_ne!(a.context, hotter.context);
        for body in [
            &br#"{"model":"m","messages":[{"role":"assistant","content":"Hi"}]}"#[..],
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
            br#"{"model":"m","messages":[]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"  "}]}"#,
            b"[]",
        ] {
            assert!(split(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn numbers_and_negations_are_part_of_the_context() {
        let context = |q: &str| {
            split(
                json!({"messages": [{"role": "user", "content": q}]})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap()
            .context
        };
        assert_eq!(
            context("What is the capital of France?"),
            context("what's the capital of FRANCE")
        );
        assert_ne!(
            context("The door is open. Is the door open?"),
            context("The door is not open. Is the door open?")
        );
        assert_ne!(context("Is it open?"), context("Isn't it open?"));
        assert_ne!(context("What is 2+2?"), context("What is 2+3?"));
        assert_ne!(context("Send 100 dollars"), context("Send 900 dollars"));
        assert_eq!(context("Send 1,000 dollars"), context("send 1000 dollars"));
        assert_eq!(context("Send 1,000,000 now"), context("send 1000000 now"));
        assert_ne!(
            context("What is 1,5 times 2?"),
            context("What is 15 times 2?")
        );
        // The arithmetic between numbers, and their signs.
        for (a, b) in [
            ("What is 7+3?", "What is 7-3?"),
            ("What is 7+3?", "What is 7*3?"),
            ("What is 7 / 3?", "What is 7 × 3?"),
            ("What is 7 - 3?", "What is 3 - 7?"),
            ("Is it -5 degrees?", "Is it 5 degrees?"),
            ("What is 6 plus 2?", "What is 6 minus 2?"),
            ("I have no cats and 3 dogs", "I have 3 cats and no dogs"),
        ] {
            assert_ne!(context(a), context(b), "{a} / {b}");
        }
        // A hyphen between words is not arithmetic.
        assert_eq!(
            context("Is this well-known?"),
            context("is this well known")
        );
        assert_eq!(context("What is 7 + 3?"), context("what is 7+3"));
    }

    #[test]
    fn the_nearest_within_the_threshold_in_the_same_context_answers() {
        let cache = SemanticCache::new("e".into(), 0.9, 3);
        let (here, there) = ([1; 32], [2; 32]);
        cache.insert(here, &[1.0, 0.0, 0.0], [10; 32]);
        cache.insert(here, &[0.8, 0.6, 0.0], [11; 32]);
        cache.insert(there, &[1.0, 0.0, 0.0], [12; 32]);
        let found = cache.nearest(&here, &[2.0, 0.1, 0.0]);
        assert_eq!(
            found.iter().map(|f| f.0).collect::<Vec<_>>(),
            [[10; 32]],
            "{found:?}"
        );
        assert!(found[0].1 > 0.99);
        assert!(cache.nearest(&here, &[0.0, 0.0, 1.0]).is_empty());
        assert!(cache.nearest(&[3; 32], &[1.0, 0.0, 0.0]).is_empty());
        assert!(
            cache.nearest(&here, &[1.0, 0.0]).is_empty(),
            "another model's size"
        );
        // The oldest go beyond the bound.
        cache.insert(there, &[0.0, 1.0, 0.0], [13; 32]);
        assert_eq!(cache.len(), 3);
        assert!(cache.nearest(&here, &[1.0, 0.0, 0.0]).is_empty());
        assert_eq!(cache.nearest(&there, &[0.0, 1.0, 0.0])[0].0, [13; 32]);
    }
}

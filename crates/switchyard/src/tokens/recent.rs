//! Exact counts of texts this thread counted lately (see [`crate::recent`]): a text of
//! [`recent::MIN_BYTES`] or more is looked up by its hash first, and the tokenizer counts only
//! what was not seen lately. A count is only ever the same number the tokenizer would give for
//! the same text and vocabulary.

use std::cell::RefCell;

use super::Encoding;
use crate::recent::{self, Recent};

thread_local! {
    static COUNTS: RefCell<Option<Recent>> = const { RefCell::new(None) };
}

/// The exact count of `text` in `encoding`: from this thread's table when it counted the same
/// text lately, else from `tokenize`, whose count is then kept.
pub fn count(encoding: Encoding, text: &str, tokenize: impl FnOnce(&str) -> u64) -> u64 {
    // The table is borrowed only to look and to keep, never while `tokenize` runs.
    let looked = recent::look(&COUNTS, encoding as u8, text);
    if let Some(tokens) = looked.value {
        return tokens;
    }
    let tokens = tokenize(text);
    recent::keep(&COUNTS, &looked, tokens);
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_counted_lately_is_not_counted_again() {
        let text =
            "You are a careful assistant. Answer in the language of the question. ".repeat(3);
        let calls = std::cell::Cell::new(0);
        let counted = |t: &str| {
            calls.set(calls.get() + 1);
            t.len() as u64
        };
        assert_eq!(count(Encoding::O200k, &text, counted), text.len() as u64);
        assert_eq!(count(Encoding::O200k, &text, counted), text.len() as u64);
        assert_eq!(calls.get(), 1, "the second count came from the table");
        // The other vocabulary counts differently: its own entry.
        assert_eq!(count(Encoding::Cl100k, &text, counted), text.len() as u64);
        assert_eq!(calls.get(), 2);
        // A different text of the same length is counted.
        let other = text.replace("careful", "helpful");
        assert_eq!(other.len(), text.len());
        count(Encoding::O200k, &other, counted);
        assert_eq!(calls.get(), 3);
        // A short system prompt is kept too.
        count(Encoding::O200k, "You are terse.", counted);
        count(Encoding::O200k, "You are terse.", counted);
        assert_eq!(calls.get(), 4);
        // A word or two is counted each time.
        count(Encoding::O200k, "hi", counted);
        count(Encoding::O200k, "hi", counted);
        assert_eq!(calls.get(), 6);
    }
}

//! Exact counts of texts this thread counted lately.
//!
//! Much of what a request's estimate tokenizes was in the caller's last request too: the system
//! prompt, every earlier turn of a conversation (a chat resends its whole history each turn), an
//! agent's tool results, a client's fixed system prompt however short. Tokenizing costs a few
//! hundred instructions a word; hashing a text, a few per eight bytes. So a text of
//! [`MIN_BYTES`] or more is looked up by its hash first, and the tokenizer counts only what was
//! not seen lately.
//!
//! The table is the thread's own (a serving worker's requests never change thread): no lock, no
//! sharing. It is direct-mapped, a newer text taking an older one's slot. The hash is keyed per
//! thread (SipHash with a random key), so no caller can craft two texts that share an entry;
//! without a key, one could make a long prompt count as a short one. A count is only ever the
//! same number the tokenizer would give for the same text and vocabulary.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher, RandomState};

use super::Encoding;

/// Texts shorter than this are tokenized each time: one or two pieces cost about what the
/// lookup does. From a few words up, counting costs several times the lookup (a 14-byte system
/// prompt and a 54-byte question, 7,400 instructions counted and 740 looked up), so a text
/// counted again now and then pays for the lookups of those that are not.
pub const MIN_BYTES: usize = 8;
/// Slots per thread (a power of two): a few conversations' messages, at 24 bytes a slot.
const SLOTS: usize = 1024;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The text's keyed hash (vocabulary included); 0 marks an empty slot.
    hash: u64,
    len: u64,
    tokens: u64,
}

struct Recent {
    key: RandomState,
    slots: Box<[Slot]>,
}

thread_local! {
    static RECENT: RefCell<Option<Recent>> = const { RefCell::new(None) };
}

/// The exact count of `text` in `encoding`: from this thread's table when it counted the same
/// text lately, else from `tokenize`, whose count is then kept.
pub fn count(encoding: Encoding, text: &str, tokenize: impl FnOnce(&str) -> u64) -> u64 {
    if text.len() < MIN_BYTES {
        return tokenize(text);
    }
    // The table is borrowed only to look and to keep, never while `tokenize` runs.
    let (hash, hit) = RECENT.with_borrow_mut(|recent| {
        let recent = recent.get_or_insert_with(|| Recent {
            key: RandomState::new(),
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        });
        let mut hasher = recent.key.build_hasher();
        hasher.write_u8(encoding as u8);
        hasher.write(text.as_bytes());
        // Never 0, the mark of an empty slot.
        let hash = hasher.finish() | 1;
        let slot = recent.slots[hash as usize & (SLOTS - 1)];
        let hit = (slot.hash == hash && slot.len == text.len() as u64).then_some(slot.tokens);
        (hash, hit)
    });
    if let Some(tokens) = hit {
        return tokens;
    }
    let tokens = tokenize(text);
    RECENT.with_borrow_mut(|recent| {
        if let Some(recent) = recent {
            recent.slots[hash as usize & (SLOTS - 1)] = Slot {
                hash,
                len: text.len() as u64,
                tokens,
            };
        }
    });
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

    #[test]
    fn each_thread_keeps_its_own_table() {
        let text = "x".repeat(MIN_BYTES);
        count(Encoding::O200k, &text, |_| 7);
        assert_eq!(count(Encoding::O200k, &text, |_| 8), 7);
        let elsewhere = std::thread::spawn(move || count(Encoding::O200k, &text, |_| 9))
            .join()
            .unwrap();
        assert_eq!(elsewhere, 9);
    }
}

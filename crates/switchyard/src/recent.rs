//! What this thread worked out lately about a text, looked up by the text's hash.
//!
//! Much of what a request carries was in the caller's last request too: the system prompt, every
//! earlier turn of a conversation (a chat resends its whole history each turn), an agent's tool
//! results. Work that depends on a text alone (its token count, whether it holds anything to
//! mask) costs a few hundred instructions a word; hashing the text, a few per eight bytes. So
//! such work is kept here by the text's hash and done again only for what was not seen lately.
//!
//! Each table is a thread's own (a serving worker's requests never change thread): no lock, no
//! sharing. Its slots go in pairs, a text's hash choosing the pair: a newer text takes the
//! place of the one of the two used less lately. (With one slot per hash, two texts of one
//! request that met in a slot, about one thread in a hundred with five texts a request, pushed
//! each other out on every request for the thread's life, and the work was done anew each
//! time.) The hash is keyed per table (SipHash with a random key), so no caller can craft two
//! texts that share an entry: a false hit needs two texts whose keyed 64-bit hashes and lengths
//! both agree by chance.
//!
//! Work whose wrong answer must never reach another text (whether a text holds anything to
//! mask) is kept in a [`Texts`] table instead: the texts themselves, found only by equal bytes,
//! so the hash decides a lookup's speed and never its answer. Hashing a long text with SipHash
//! cost more than comparing it.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::thread::LocalKey;

/// Slots per table (a power of two): a few conversations' messages, at 24 bytes a slot.
const SLOTS: usize = 1024;
/// Slots a text may be kept in, side by side: the first is the one of the two used last.
const WAYS: usize = 2;
/// Texts shorter than this are neither looked up nor kept: a word or two costs about what the
/// lookup does. From a few words up the work costs several times the lookup (counting a 14-byte
/// system prompt and a 54-byte question, 7,400 instructions; looking them up, 740), so a text
/// seen again now and then pays for the lookups of those that are not.
pub const MIN_BYTES: usize = 8;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The text's keyed hash (its kind included); 0 marks an empty slot.
    hash: u64,
    len: u64,
    value: u64,
}

/// One kind of work's table; declare it with `thread_local!` as
/// `RefCell<Option<Recent>>` (built on first use).
pub struct Recent {
    key: RandomState,
    slots: Box<[Slot]>,
}

/// A looked-up text: its hash (0 for a text under [`MIN_BYTES`], which is not kept), and what
/// was kept for it if this thread saw it lately.
pub struct Looked {
    hash: u64,
    len: u64,
    pub value: Option<u64>,
}

/// Looks `text` up in this thread's `table`. `kind` tells apart texts whose work differs
/// (a vocabulary, say) within one table.
pub fn look(table: &'static LocalKey<RefCell<Option<Recent>>>, kind: u8, text: &str) -> Looked {
    let len = text.len() as u64;
    if text.len() < MIN_BYTES {
        return Looked {
            hash: 0,
            len,
            value: None,
        };
    }
    table.with_borrow_mut(|recent| {
        let recent = recent.get_or_insert_with(|| Recent {
            key: RandomState::new(),
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        });
        let mut hasher = recent.key.build_hasher();
        hasher.write_u8(kind);
        hasher.write(text.as_bytes());
        // Never 0, the mark of an empty slot.
        let hash = hasher.finish() | 1;
        let value = recent.find(hash, len);
        Looked { hash, len, value }
    })
}

impl Recent {
    /// The pair of slots a hash maps to.
    fn pair(&mut self, hash: u64) -> &mut [Slot] {
        let first = (hash as usize & (SLOTS / WAYS - 1)) * WAYS;
        &mut self.slots[first..first + WAYS]
    }

    /// The value kept for a text of this hash and length; a hit in the second slot moves the
    /// pair's entries round, so the first is always the one used last.
    fn find(&mut self, hash: u64, len: u64) -> Option<u64> {
        let pair = self.pair(hash);
        let way = pair.iter().position(|s| s.hash == hash && s.len == len)?;
        let value = pair[way].value;
        pair[..=way].rotate_right(1);
        Some(value)
    }

    /// Keeps a value in the first slot of the pair, the pair's other entries moving one down
    /// (the one used least lately dropping out).
    fn put(&mut self, hash: u64, len: u64, value: u64) {
        let pair = self.pair(hash);
        pair.rotate_right(1);
        pair[0] = Slot { hash, len, value };
    }
}

/// Keeps `value` for the text `looked` came from, in the slot it maps to (nothing for a text
/// under [`MIN_BYTES`]).
pub fn keep(table: &'static LocalKey<RefCell<Option<Recent>>>, looked: &Looked, value: u64) {
    if looked.hash == 0 {
        return;
    }
    table.with_borrow_mut(|recent| {
        if let Some(recent) = recent {
            recent.put(looked.hash, looked.len, value);
        }
    });
}

/// A text kept whole costs its length.
#[derive(Clone, Copy)]
pub struct ByLength;

impl<V> quick_cache::Weighter<Box<str>, V> for ByLength {
    fn weight(&self, text: &Box<str>, _: &V) -> u64 {
        text.len() as u64
    }
}

/// Texts this thread met lately, kept whole up to a number of bytes (the least used go first),
/// and found only by equal bytes: foldhash, seeded at random per table, picks the bucket.
/// Declare it with `thread_local!` as `RefCell<Option<Texts>>` (built on first use).
pub struct Texts(
    quick_cache::unsync::Cache<
        Box<str>,
        (),
        ByLength,
        foldhash::quality::RandomState,
        quick_cache::unsync::DefaultLifecycle<Box<str>, ()>,
    >,
);

impl Texts {
    fn with_bytes(bytes: u64) -> Self {
        Self(quick_cache::unsync::Cache::with(
            (bytes / 256) as usize,
            bytes,
            ByLength,
            Default::default(),
            Default::default(),
        ))
    }
}

/// Whether this thread's `table` (of at most `bytes`) holds `text`. Texts under [`MIN_BYTES`]
/// are never held.
pub fn holds(table: &'static LocalKey<RefCell<Option<Texts>>>, bytes: u64, text: &str) -> bool {
    text.len() >= MIN_BYTES
        && table.with_borrow_mut(|texts| {
            texts
                .get_or_insert_with(|| Texts::with_bytes(bytes))
                .0
                .get(text)
                .is_some()
        })
}

/// Keeps `text` in this thread's `table` (nothing for a text under [`MIN_BYTES`], or one
/// longer than the table).
pub fn hold(table: &'static LocalKey<RefCell<Option<Texts>>>, bytes: u64, text: &str) {
    if text.len() < MIN_BYTES {
        return;
    }
    table.with_borrow_mut(|texts| {
        texts
            .get_or_insert_with(|| Texts::with_bytes(bytes))
            .0
            .insert(text.into(), ());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TABLE: RefCell<Option<Recent>> = const { RefCell::new(None) };
    }

    #[test]
    fn a_kept_value_is_found_for_the_same_text_and_kind_only() {
        let text = "You are a careful assistant.";
        let first = look(&TABLE, 1, text);
        assert_eq!(first.value, None);
        keep(&TABLE, &first, 42);
        assert_eq!(look(&TABLE, 1, text).value, Some(42));
        assert_eq!(look(&TABLE, 2, text).value, None, "another kind");
        let other = text.replace("careful", "helpful");
        assert_eq!(other.len(), text.len());
        assert_eq!(
            look(&TABLE, 1, &other).value,
            None,
            "same length, other text"
        );
    }

    #[test]
    fn a_word_or_two_is_never_kept() {
        let short = look(&TABLE, 0, "hi there");
        keep(&TABLE, &short, 3);
        assert_eq!(
            look(&TABLE, 0, "hi there").value,
            Some(3),
            "8 bytes are kept"
        );
        let shorter = look(&TABLE, 0, "thanks!");
        keep(&TABLE, &shorter, 2);
        assert_eq!(look(&TABLE, 0, "thanks!").value, None);
    }

    thread_local! {
        static TEXTS: RefCell<Option<Texts>> = const { RefCell::new(None) };
    }

    #[test]
    fn a_held_text_is_found_by_its_bytes_only() {
        let text = "You are a careful assistant.";
        assert!(!holds(&TEXTS, 1 << 10, text));
        hold(&TEXTS, 1 << 10, text);
        assert!(holds(&TEXTS, 1 << 10, text));
        let copy = String::from(text);
        assert!(
            holds(&TEXTS, 1 << 10, copy.as_str()),
            "equal bytes elsewhere"
        );
        let other = text.replace("careful", "helpful");
        assert!(!holds(&TEXTS, 1 << 10, &other), "same length, other bytes");
        assert!(!holds(&TEXTS, 1 << 10, &text[..20]), "a part of it");
        hold(&TEXTS, 1 << 10, "thanks!");
        assert!(!holds(&TEXTS, 1 << 10, "thanks!"), "under MIN_BYTES");
        let elsewhere = std::thread::spawn(move || holds(&TEXTS, 1 << 10, text))
            .join()
            .unwrap();
        assert!(!elsewhere, "each thread holds its own");
    }

    #[test]
    fn a_table_holds_at_most_its_bytes() {
        thread_local! {
            static SMALL: RefCell<Option<Texts>> = const { RefCell::new(None) };
        }
        let texts: Vec<String> = (0..64)
            .map(|i| format!("text number {i:04} {}", "x".repeat(100)))
            .collect();
        for t in &texts {
            hold(&SMALL, 2048, t);
        }
        let held: usize = texts
            .iter()
            .filter(|t| holds(&SMALL, 2048, t))
            .map(|t| t.len())
            .sum();
        assert!(held > 0 && held <= 2048, "{held} bytes held");
        assert!(holds(&SMALL, 2048, &texts[63]), "the latest is held");
    }

    fn empty_table() -> Recent {
        Recent {
            key: RandomState::new(),
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        }
    }

    #[test]
    fn two_texts_of_one_pair_are_both_kept() {
        let mut recent = empty_table();
        // Three hashes mapping to the same pair of slots, and one to another.
        let (a, b, c) = (1u64, 1 + SLOTS as u64, 1 + 2 * SLOTS as u64);
        let elsewhere = 3u64;
        recent.put(a, 10, 100);
        recent.put(b, 20, 200);
        recent.put(elsewhere, 30, 300);
        for _ in 0..3 {
            assert_eq!(recent.find(a, 10), Some(100));
            assert_eq!(recent.find(b, 20), Some(200));
        }
        assert_eq!(recent.find(a, 11), None, "another length");
        // A third text of the pair drops the one used less lately: `a` (found before `b`).
        recent.put(c, 40, 400);
        assert_eq!(recent.find(a, 10), None);
        assert_eq!(recent.find(b, 20), Some(200));
        assert_eq!(recent.find(c, 40), Some(400));
        // Found again, `b` is the one used last: the next newcomer drops `c`.
        assert_eq!(recent.find(b, 20), Some(200));
        recent.put(a, 10, 100);
        assert_eq!(recent.find(c, 40), None);
        assert_eq!(recent.find(b, 20), Some(200));
        assert_eq!(recent.find(a, 10), Some(100));
        assert_eq!(
            recent.find(elsewhere, 30),
            Some(300),
            "other pairs untouched"
        );
    }

    #[test]
    fn each_thread_keeps_its_own_table() {
        let looked = look(&TABLE, 0, "a text seen on this thread");
        keep(&TABLE, &looked, 7);
        assert_eq!(look(&TABLE, 0, "a text seen on this thread").value, Some(7));
        let elsewhere = std::thread::spawn(|| look(&TABLE, 0, "a text seen on this thread").value)
            .join()
            .unwrap();
        assert_eq!(elsewhere, None);
    }
}

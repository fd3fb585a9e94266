//! A byte-pair-encoding vocabulary held compactly, for counting tokens.
//!
//! `tiktoken-rs` keeps each vocabulary three times over as maps of small heap vectors (about 50 MiB
//! for `o200k_base`). Counting needs only "is this byte string a token, and of which rank", so the
//! tokens are copied once out of `tiktoken-rs`'s tables into one byte arena with an index of ranks
//! (3.5 MiB for o200k, plus about 3 MiB for the compiled pre-tokenizer), and its tables are
//! dropped. Counting follows the same rules: the same pre-tokenizer pattern splits the text into
//! pieces, and each piece is merged pairwise, lowest rank first (the leftmost of equal ranks),
//! until no adjacent pair is a token.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, BuildHasherDefault};

use hashbrown::HashTable;
use rustc_hash::FxHasher;

/// `cl100k_base`'s pre-tokenizer pattern, as OpenAI publishes it.
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// Pieces up to this many bytes are merged by rescanning a short list, which beats a heap on
/// the short pieces that make up almost all text.
const SHORT_PIECE: usize = 64;

type Hasher = BuildHasherDefault<FxHasher>;

pub struct Vocabulary {
    /// Every token's bytes, back to back, in rank order.
    arena: Box<[u8]>,
    /// `ends[rank]` is where token `rank` ends in the arena; it starts where `rank - 1` ends.
    ends: Box<[u32]>,
    /// Ranks, found by hashing their bytes.
    index: HashTable<u32>,
    pattern: fancy_regex::Regex,
}

/// The pre-tokenizer could not split a text (its backtracking limit); the caller estimates.
#[derive(Debug)]
pub struct SplitFailed;

impl Vocabulary {
    pub fn o200k() -> Option<Self> {
        let bpe = tiktoken_rs::o200k_base().ok()?;
        Self::from_tiktoken(&bpe, tiktoken_rs::O200K_BASE_PAT_STR, (199_998, 1_400_000))
    }

    pub fn cl100k() -> Option<Self> {
        let bpe = tiktoken_rs::cl100k_base().ok()?;
        Self::from_tiktoken(&bpe, CL100K_PATTERN, (100_256, 800_000))
    }

    /// Copies the ordinary tokens of `bpe` (ranks are dense from zero; special tokens, which
    /// plain text never produces, are left out), straight into the arena: no per-token
    /// allocation outlives the copy, so the memory `bpe` held can go back to the system whole.
    /// `size` is the expected (tokens, bytes), so the tables are allocated once.
    fn from_tiktoken(
        bpe: &tiktoken_rs::CoreBPE,
        pattern: &str,
        size: (usize, usize),
    ) -> Option<Self> {
        let specials: Vec<Vec<u8>> = bpe
            .special_tokens()
            .into_iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let mut builder = Builder::with_capacity(size);
        while let Ok(bytes) = bpe.decode_bytes(&[builder.ends.len() as u32]) {
            if specials.contains(&bytes) {
                break;
            }
            builder.push(&bytes)?;
        }
        builder.finish(pattern)
    }

    /// A vocabulary whose token of rank `r` is `tokens[r]`.
    #[cfg(test)]
    pub fn new(tokens: &[Vec<u8>], pattern: &str) -> Option<Self> {
        let mut builder = Builder::default();
        for token in tokens {
            builder.push(token)?;
        }
        builder.finish(pattern)
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        self.index
            .find(hash(bytes), |&r| {
                token_bytes(&self.arena, &self.ends, r) == bytes
            })
            .copied()
    }

    /// How many tokens `text` encodes to, special-token text counted as ordinary text.
    pub fn count(&self, text: &str) -> Result<u64, SplitFailed> {
        let mut n = 0u64;
        for piece in self.pattern.find_iter(text) {
            let piece = piece.map_err(|_| SplitFailed)?.as_str().as_bytes();
            n += self.count_piece(piece) as u64;
        }
        Ok(n)
    }

    /// Tokens of one pre-tokenized piece.
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return piece.len().min(1);
        }
        if piece.len() <= SHORT_PIECE {
            self.merge_short(piece)
        } else {
            self.merge_long(piece)
        }
    }

    /// The rank of the bytes from part `starts[i]` to the end of part `i + 1`, if a token.
    fn pair_rank(&self, piece: &[u8], starts: &[usize], i: usize) -> u32 {
        match (starts.get(i), starts.get(i + 2)) {
            (Some(&a), Some(&b)) => self.rank(&piece[a..b]).unwrap_or(u32::MAX),
            _ => u32::MAX,
        }
    }

    /// Merging by rescanning: `starts` holds each part's first byte and, last, the piece's end.
    fn merge_short(&self, piece: &[u8]) -> usize {
        let mut starts: Vec<usize> = (0..=piece.len()).collect();
        let mut ranks: Vec<u32> = (0..piece.len())
            .map(|i| self.pair_rank(piece, &starts, i))
            .collect();
        // The lowest-ranked pair, the leftmost of equals (`min_by_key` keeps the first).
        while let Some((i, &lowest)) = ranks.iter().enumerate().min_by_key(|&(_, &r)| r)
            && lowest != u32::MAX
        {
            // Part i absorbs part i + 1; the pairs that touched the boundary change.
            starts.remove(i + 1);
            ranks.remove(i + 1);
            ranks[i] = self.pair_rank(piece, &starts, i);
            if i > 0 {
                ranks[i - 1] = self.pair_rank(piece, &starts, i - 1);
            }
        }
        starts.len() - 1
    }

    /// Merging with a heap of candidate pairs over a linked list of parts, for long pieces
    /// (a run of one character can be thousands of bytes), so the work stays near n log n.
    fn merge_long(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        // Parts are identified by their first byte; `next[p]` is the next part's first byte
        // (or n), `prev[p]` the previous one's; `rank[p]` the current pair starting at p.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|p| p.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut rank = vec![u32::MAX; n];
        let mut heap = BinaryHeap::with_capacity(n);
        let pair = |next: &[usize], p: usize| -> u32 {
            let end = next[p];
            if end >= n {
                return u32::MAX;
            }
            self.rank(&piece[p..next[end]]).unwrap_or(u32::MAX)
        };
        for (p, r) in rank.iter_mut().enumerate() {
            *r = pair(&next, p);
            if *r != u32::MAX {
                heap.push(Reverse((*r, p)));
            }
        }
        let mut parts = n;
        while let Some(Reverse((r, p))) = heap.pop() {
            if !alive[p] || rank[p] != r {
                continue; // superseded by a merge since it was pushed
            }
            let absorbed = next[p];
            alive[absorbed] = false;
            next[p] = next[absorbed];
            if next[p] < n {
                prev[next[p]] = p;
            }
            parts -= 1;
            for q in [p, prev[p]] {
                if q < n {
                    rank[q] = pair(&next, q);
                    if rank[q] != u32::MAX {
                        heap.push(Reverse((rank[q], q)));
                    }
                }
            }
        }
        parts
    }

    /// Bytes held, for the documentation's memory account.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.arena.len() + self.ends.len() * 4 + self.index.capacity() * 5
    }
}

/// Tokens appended in rank order.
#[derive(Default)]
struct Builder {
    arena: Vec<u8>,
    ends: Vec<u32>,
    index: HashTable<u32>,
}

impl Builder {
    fn with_capacity((tokens, bytes): (usize, usize)) -> Self {
        Self {
            arena: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(tokens),
            index: HashTable::with_capacity(tokens),
        }
    }

    fn push(&mut self, token: &[u8]) -> Option<()> {
        let rank = u32::try_from(self.ends.len()).ok()?;
        self.arena.extend_from_slice(token);
        self.ends.push(u32::try_from(self.arena.len()).ok()?);
        let (arena, ends) = (&self.arena, &self.ends);
        self.index
            .insert_unique(hash(token), rank, |&r| hash(token_bytes(arena, ends, r)));
        Some(())
    }

    fn finish(self, pattern: &str) -> Option<Vocabulary> {
        Some(Vocabulary {
            arena: self.arena.into_boxed_slice(),
            ends: self.ends.into_boxed_slice(),
            index: self.index,
            pattern: fancy_regex::Regex::new(pattern).ok()?,
        })
    }
}

fn hash(bytes: &[u8]) -> u64 {
    Hasher::default().hash_one(bytes)
}

fn token_bytes<'a>(arena: &'a [u8], ends: &[u32], rank: u32) -> &'a [u8] {
    let r = rank as usize;
    let start = if r == 0 { 0 } else { ends[r - 1] as usize };
    &arena[start..ends[r] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts of many kinds, counted by this vocabulary and by `tiktoken-rs` itself.
    fn corpus() -> Vec<String> {
        let mut texts: Vec<String> = [
            "hello world",
            "tiktoken is great!",
            "Das Wetter ist heute wirklich schön, aber morgen soll es regnen.",
            "日本語のテキストです。漢字とひらがなとカタカナ。",
            "Привет, как дела? Всё хорошо.",
            "مرحبا بالعالم",
            "emoji 🎉🎉 and 👩‍👩‍👧 families",
            "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
            "   leading and trailing spaces   ",
            "tabs\tand\r\nwindows\r\nnewlines\n\n\n",
            "I'm sure they'll say we've done it, HE'S HERE, 'tis",
            "1234567890 3.14159 1e-9 0xDEADBEEF",
            "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}",
            "<|endoftext|> is only text here",
            "https://example.com/path?query=value&other=1#frag",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Long pieces that take the heap path.
        texts.push("a".repeat(3_000));
        texts.push("ab".repeat(700));
        texts.push(" ".repeat(500));
        texts.push("!".repeat(300));
        texts.push("supercalifragilisticexpialidocious".repeat(20));
        texts.push("é".repeat(400));
        texts.push("🎉".repeat(100));
        // Random mixes of scripts, digits, punctuation and whitespace, from a fixed seed.
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> =
            "aAbBzZ éÉßñ日本語한국어Жжعربي0123456789 \t\n\r.,;:!?'\"-_/()[]{}<>@#$%^&*🎉👍"
                .chars()
                .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..400 {
            let len = rng.random_range(1..120);
            texts.push(
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect(),
            );
        }
        texts
    }

    #[test]
    fn counts_agree_with_tiktoken() {
        for (ours, theirs) in [
            (Vocabulary::o200k(), tiktoken_rs::o200k_base()),
            (Vocabulary::cl100k(), tiktoken_rs::cl100k_base()),
        ] {
            let (Some(ours), Ok(theirs)) = (ours, theirs) else {
                unreachable!("both vocabularies build from bundled data")
            };
            for text in corpus() {
                assert_eq!(
                    ours.count(&text).ok(),
                    Some(theirs.encode_ordinary(&text).len() as u64),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn short_and_long_merges_agree() {
        let Some(v) = Vocabulary::o200k() else {
            unreachable!("o200k builds from bundled data")
        };
        for piece in [
            "abcdefghij",
            "internationalization",
            "aaaaaaaaaaaaaaaaaaaa",
            "ÿÿÿ",
        ] {
            let bytes = piece.as_bytes();
            assert_eq!(v.merge_short(bytes), v.merge_long(bytes), "{piece}");
        }
        // A vocabulary small enough to read: ties go to the leftmost pair.
        let tokens: Vec<Vec<u8>> = ["a", "b", "ab", "ba", "aba"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let Some(tiny) = Vocabulary::new(&tokens, r"\S+") else {
            unreachable!("a valid pattern")
        };
        for (text, expected) in [("ab", 1), ("abab", 2), ("aba", 1), ("bab", 2), ("abba", 2)] {
            assert_eq!(tiny.merge_short(text.as_bytes()), expected, "{text}");
            assert_eq!(tiny.merge_long(text.as_bytes()), expected, "{text}");
        }
        println!(
            "o200k: {} tokens, {} bytes of tokens",
            v.ends.len(),
            v.arena.len()
        );
        assert!(v.held_bytes() < 8 << 20, "{}", v.held_bytes());
    }
}

//! A byte-pair-encoding vocabulary read in place from tables compiled into the binary, for
//! counting tokens.
//!
//! `tiktoken-rs` keeps each vocabulary three times over as maps of small heap vectors (about 50 MiB
//! for `o200k_base`, built at start-up). Counting needs only "is this byte string a token, and of
//! which rank", so the build script compiles each vocabulary into three flat tables (layout in
//! [`super::tables`]: 4.2 MB for o200k, 2.1 MB for cl100k) that the binary carries as data. A
//! vocabulary therefore costs no start-up work and no heap: only the pages a count touches become
//! resident, and they are file-backed pages the kernel can drop. The pre-tokenizer pattern is
//! compiled on first use (a few milliseconds, about 3 MiB once used). Counting follows
//! `tiktoken`'s rules: its pattern splits the text into pieces (o200k's through an equivalent
//! pattern without look-ahead, see [`whitespace_end`]), and each piece is merged pairwise,
//! lowest rank first (the leftmost of equal ranks), until no adjacent pair is a token.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use regex_automata::{Anchored, Input, Match, meta};

use super::tables;

/// `cl100k_base`'s pre-tokenizer pattern, as OpenAI publishes it.
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
/// `o200k_base`'s pattern up to its last three alternatives, which are whitespace.
macro_rules! o200k_head {
    () => {
        concat!(
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+",
        )
    };
}
/// `o200k_base`'s, as OpenAI publishes it.
#[cfg(test)]
const O200K_PATTERN: &str = concat!(o200k_head!(), r"|\s+(?!\S)|\s+");
/// The same without its look-ahead (`\s+(?!\S)|\s+` become `\s+`), so that the regex crate's
/// automata run it instead of a backtracking engine; [`whitespace_end`] gives back what the
/// look-ahead would have left to the next piece.
const O200K_REGULAR: &str = concat!(o200k_head!(), r"|\s+");

/// The vocabulary the build script compiled under `$name`, with its pre-tokenizer `$pattern`.
macro_rules! compiled {
    ($name:literal, $pattern:expr) => {
        Vocabulary::from_tables(
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".arena")),
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".ends")),
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".slots")),
            $pattern,
        )
    };
}

/// Pieces up to this many bytes are merged by rescanning a short list, which beats a heap on
/// the short pieces that make up almost all text.
const SHORT_PIECE: usize = 64;

pub struct Vocabulary {
    /// The three tables of [`super::tables`].
    arena: &'static [u8],
    ends: &'static [u8],
    slots: &'static [u8],
    splitter: Splitter,
}

/// The pre-tokenizer.
enum Splitter {
    /// A pattern without look-around, whose whitespace pieces [`whitespace_end`] trims.
    Regular(RegularSplitter),
    /// A pattern as published, look-around included, with the same pattern written out for
    /// ASCII text (whose ends are final) tried first at each piece.
    Backtracking(fancy_regex::Regex, Option<AsciiMatcher>),
}

/// Where o200k's `\s+(?!\S)` would end the piece `start..end` that its look-ahead-free form
/// matched. Only that form's last alternative, `\s+`, yields whitespace without a line break
/// (`\s*[\r\n]+` comes first and ends on one), and it takes the whole run, so what follows is
/// not whitespace. The published pattern's `\s+(?!\S)` comes before that `\s+` and matches the
/// run less its last character whenever the run has two or more and text follows; that last
/// character then starts the next piece (as the space before a word does).
fn whitespace_end(text: &str, start: usize, end: usize) -> usize {
    if end == text.len() || end == start {
        return end;
    }
    // Most pieces are words: one that ends in an ASCII byte other than a plain space is not
    // all plain spaces.
    let last_byte = text.as_bytes()[end - 1];
    if last_byte.is_ascii() && !matches!(last_byte, b' ' | b'\t' | 0x0b | 0x0c) {
        return end;
    }
    let piece = &text[start..end];
    let mut chars = piece.chars();
    let Some(last) = chars.next_back() else {
        return end;
    };
    let plain_space = |c: char| c.is_whitespace() && c != '\r' && c != '\n';
    if chars.next().is_some() && piece.chars().all(plain_space) {
        end - last.len_utf8()
    } else {
        end
    }
}

/// A look-around-free pattern searched with a cache of the calling thread's.
///
/// Its pieces follow one another, so each is first looked for anchored where the last one ended:
/// an anchored search knows where its match starts and runs its automaton forwards only, where
/// an unanchored one also runs a reverse automaton back to the start. Only when no piece starts
/// there (text the pattern skips) does the unanchored search run, so the pieces are the same.
/// The cache (the lazy automaton's states) lives in the thread: the regex crate's own pool of
/// caches takes a lock on every search made from any thread but the first one to search.
struct RegularSplitter {
    /// Tells this splitter's cache apart from another's in the thread's slot.
    id: u64,
    regex: meta::Regex,
    /// The same pattern written out for ASCII text, tried first at each piece.
    ascii: Option<AsciiMatcher>,
}

/// Where the pattern's piece starting at `at` ends, for a piece whose extent ASCII bytes
/// decide; `None` as soon as a byte it must classify is not ASCII (the automaton decides then).
type AsciiMatcher = fn(&[u8], usize) -> Option<usize>;

thread_local! {
    /// The cache of the regular splitter this thread used last.
    static SPLIT_CACHE: RefCell<Option<(u64, meta::Cache)>> = const { RefCell::new(None) };
}

impl RegularSplitter {
    fn new(pattern: &str, ascii: Option<AsciiMatcher>) -> Option<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Some(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            regex: meta::Regex::new(pattern).ok()?,
            ascii,
        })
    }

    /// Calls `each` with the pieces of `text`, in order.
    fn split<'t>(&self, text: &'t str, each: &mut dyn FnMut(&'t str)) {
        SPLIT_CACHE.with_borrow_mut(|slot| {
            let cache = match slot {
                Some((id, cache)) if *id == self.id => cache,
                _ => &mut slot.insert((self.id, self.regex.create_cache())).1,
            };
            let mut at = 0;
            while at < text.len() {
                let (start, end) = match self.ascii.and_then(|ascii| ascii(text.as_bytes(), at)) {
                    Some(end) => (at, end),
                    None => match self.next_piece(cache, text, at) {
                        Some(m) => (m.start(), m.end()),
                        None => break,
                    },
                };
                let end = whitespace_end(text, start, end);
                each(&text[start..end]);
                at = end;
            }
        });
    }

    /// The first match at or after `at`.
    fn next_piece(&self, cache: &mut meta::Cache, text: &str, at: usize) -> Option<Match> {
        let from = Input::new(text).range(at..);
        self.regex
            .search_with(cache, &from.clone().anchored(Anchored::Yes))
            .or_else(|| self.regex.search_with(cache, &from))
    }
}

/// An ASCII byte as both pre-tokenizer patterns see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AsciiClass {
    Upper,
    Lower,
    Digit,
    /// `\r` or `\n`.
    LineBreak,
    /// Whitespace other than a line break: space, tab, vertical tab, form feed.
    Space,
    /// Neither letter, digit nor whitespace (`[^\s\p{L}\p{N}]`).
    Other,
    /// Past the end of the text.
    End,
}

/// The class of the byte at `i`, `None` for a byte that is not ASCII (a letter, digit, mark
/// or space of another script could continue or end a piece there).
fn ascii_class(bytes: &[u8], i: usize) -> Option<AsciiClass> {
    let Some(&b) = bytes.get(i) else {
        return Some(AsciiClass::End);
    };
    ASCII_CLASSES.get(usize::from(b)).copied()
}

/// [`ascii_class`] of each ASCII byte, looked up rather than matched: the pre-tokenizer
/// classifies every byte of the text it reads.
static ASCII_CLASSES: [AsciiClass; 128] = {
    let mut classes = [AsciiClass::Other; 128];
    let mut b = 0;
    while b < 128 {
        classes[b] = match b as u8 {
            b'A'..=b'Z' => AsciiClass::Upper,
            b'a'..=b'z' => AsciiClass::Lower,
            b'0'..=b'9' => AsciiClass::Digit,
            b'\r' | b'\n' => AsciiClass::LineBreak,
            b' ' | b'\t' | 0x0b | 0x0c => AsciiClass::Space,
            _ => AsciiClass::Other,
        };
        b += 1;
    }
    classes
};

/// The first index at or after `i` whose byte is not of class `class`, or `None` if that byte
/// is not ASCII.
fn run_end(bytes: &[u8], mut i: usize, class: AsciiClass) -> Option<usize> {
    loop {
        let c = ascii_class(bytes, i)?;
        if c != class {
            return Some(i);
        }
        i += 1;
    }
}

/// [`O200K_REGULAR`] at `at`, written out for ASCII (an [`AsciiMatcher`]). The alternatives, in
/// the pattern's order (the first that matches wins, each quantifier greedy):
/// 1. `P?[\p{Lu}…]*[\p{Ll}…]+C?` and 2. `P?[\p{Lu}…]+[\p{Ll}…]*C?`, where `P` is one character
///    that is no line break, letter or digit and `C` a contraction (`'s`, `'t`, `'re`, `'ve`,
///    `'m`, `'ll`, `'d`, any case): together, an optional `P`, then uppercase letters and
///    lowercase letters, at least one letter in all;
/// 3. `\p{N}{1,3}`;
/// 4. ` ?[^\s\p{L}\p{N}]+[\r\n/]*`;
/// 5. `\s*[\r\n]+`: a whitespace run up to its last line break;
/// 6. `\s+`: the whole run (which [`whitespace_end`] then trims as the look-ahead would).
fn o200k_ascii_end(bytes: &[u8], at: usize) -> Option<usize> {
    use AsciiClass::*;
    let first = ascii_class(bytes, at)?;
    // 1 and 2: `P` can only be a first character that is neither letter nor digit nor a line
    // break, and a letter cannot be `P`, so at most one way to start applies.
    if let Some(start) = letters_start(at, first) {
        let uppers_end = run_end(bytes, start, Upper)?;
        let lowers_end = run_end(bytes, uppers_end, Lower)?;
        if lowers_end > start {
            return contraction_end(bytes, lowers_end);
        }
    }
    match first {
        Digit => digits_end(bytes, at),
        Space | Other | LineBreak => {
            if let Some(from) = symbols_start(bytes, at, first)? {
                return symbols_end(bytes, from, b"\r\n/");
            }
            // 5, else 6: only whitespace is left (symbols always matched above).
            let (end, last_break) = whitespace_run(bytes, at)?;
            Some(last_break.map_or(end, |b| b + 1))
        }
        Upper | Lower | End => None,
    }
}

/// Where a piece's letters start after its optional leading character `P` (no line break,
/// letter or digit), in both patterns: at a letter, or after a character that can be `P`.
fn letters_start(at: usize, first: AsciiClass) -> Option<usize> {
    match first {
        AsciiClass::Upper | AsciiClass::Lower => Some(at),
        AsciiClass::Space | AsciiClass::Other => Some(at + 1),
        AsciiClass::Digit | AsciiClass::LineBreak | AsciiClass::End => None,
    }
}

/// `\p{N}{1,3}` at a digit: up to three digits; a place within them that is not ASCII could
/// be a digit.
fn digits_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut end = at + 1;
    while end < at + 3 {
        match ascii_class(bytes, end)? {
            AsciiClass::Digit => end += 1,
            _ => break,
        }
    }
    Some(end)
}

/// Where ` ?[^\s\p{L}\p{N}]+` finds its first symbol at `at` (after one optional space), or
/// `Some(None)` where it does not match.
fn symbols_start(bytes: &[u8], at: usize, first: AsciiClass) -> Option<Option<usize>> {
    Some(if first == AsciiClass::Other {
        Some(at)
    } else if bytes[at] == b' ' && ascii_class(bytes, at + 1)? == AsciiClass::Other {
        Some(at + 1)
    } else {
        None
    })
}

/// The end of the symbols from `from` and of the bytes of `trailing` right after them.
fn symbols_end(bytes: &[u8], from: usize, trailing: &[u8]) -> Option<usize> {
    let mut end = run_end(bytes, from, AsciiClass::Other)?;
    while bytes.get(end).is_some_and(|b| trailing.contains(b)) {
        end += 1;
    }
    Some(end)
}

/// The whitespace run from `at`: where it ends and its last line break, if any.
fn whitespace_run(bytes: &[u8], at: usize) -> Option<(usize, Option<usize>)> {
    let mut end = at;
    let mut last_break = None;
    loop {
        match ascii_class(bytes, end)? {
            AsciiClass::LineBreak => last_break = Some(end),
            AsciiClass::Space => {}
            _ => return Some((end, last_break)),
        }
        end += 1;
    }
}

/// The end of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`, any case: the same
/// set in both patterns) at `at` if one is there, else `at`; `None` where a letter of it could
/// be a non-ASCII case variant (`ſ` folds to `s`).
fn contraction_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'\'') {
        return Some(at);
    }
    let lower = |i: usize| -> Option<u8> {
        match bytes.get(i) {
            Some(b) if !b.is_ascii() => None,
            Some(b) => Some(b.to_ascii_lowercase()),
            None => Some(0),
        }
    };
    Some(match lower(at + 1)? {
        b's' | b't' | b'm' | b'd' => at + 2,
        first @ (b'r' | b'v' | b'l') => {
            let second = if first == b'l' { b'l' } else { b'e' };
            if lower(at + 2)? == second { at + 3 } else { at }
        }
        _ => at,
    })
}

/// [`CL100K_PATTERN`] at `at`, written out for ASCII (an [`AsciiMatcher`]); its ends are
/// final (the look-ahead is in here). The alternatives, in the pattern's order, each `+`
/// possessive (what it took is never given back):
/// 1. `'(?i:[sdmt]|ll|ve|re)`, a contraction standing alone;
/// 2. `[^\r\n\p{L}\p{N}]?+\p{L}++`: an optional character that is no line break, letter or
///    digit, then letters of either case (it fails, rather than starting again without that
///    character, when no letter follows);
/// 3. `\p{N}{1,3}+`;
/// 4. ` ?[^\s\p{L}\p{N}]++[\r\n]*+`;
/// 5. `\s++$`: whitespace to the end of the text;
/// 6. `\s*[\r\n]`: a whitespace run up to its last line break;
/// 7. `\s+(?!\S)`: a run of two or more less its last character (the text goes on after it);
/// 8. `\s`: one whitespace character.
fn cl100k_ascii_end(bytes: &[u8], at: usize) -> Option<usize> {
    use AsciiClass::*;
    let first = ascii_class(bytes, at)?;
    let end = contraction_end(bytes, at)?;
    if end > at {
        return Some(end);
    }
    if let Some(start) = letters_start(at, first) {
        let end = letters_end(bytes, start)?;
        if end > start {
            return Some(end);
        }
    }
    match first {
        Digit => digits_end(bytes, at),
        Space | Other | LineBreak => {
            if let Some(from) = symbols_start(bytes, at, first)? {
                return symbols_end(bytes, from, b"\r\n");
            }
            // Only whitespace is left (symbols always matched above).
            let (end, last_break) = whitespace_run(bytes, at)?;
            Some(match last_break {
                _ if end == bytes.len() => end,
                Some(b) => b + 1,
                None if end - at >= 2 => end - 1,
                None => at + 1,
            })
        }
        Upper | Lower | End => None,
    }
}

/// The end of the letters (either case) from `at`, `None` if a byte not ASCII ends them.
fn letters_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match ascii_class(bytes, at)? {
            AsciiClass::Upper | AsciiClass::Lower => at += 1,
            _ => return Some(at),
        }
    }
}

/// The pre-tokenizer could not split a text (its backtracking limit); the caller estimates.
#[derive(Debug)]
pub struct SplitFailed;

impl Vocabulary {
    pub fn o200k() -> Option<Self> {
        compiled!(
            "o200k_base",
            Splitter::Regular(RegularSplitter::new(O200K_REGULAR, Some(o200k_ascii_end))?)
        )
    }

    pub fn cl100k() -> Option<Self> {
        compiled!(
            "cl100k_base",
            Splitter::Backtracking(
                fancy_regex::Regex::new(CL100K_PATTERN).ok()?,
                Some(cl100k_ascii_end)
            )
        )
    }

    fn from_tables(
        arena: &'static [u8],
        ends: &'static [u8],
        slots: &'static [u8],
        splitter: Splitter,
    ) -> Option<Self> {
        let slot_count = slots.len() / 4;
        if !slot_count.is_power_of_two() || !ends.len().is_multiple_of(4) {
            return None;
        }
        Some(Self {
            arena,
            ends,
            slots,
            splitter,
        })
    }

    /// A vocabulary whose token of rank `r` is `tokens[r]` (its tables are leaked: tests only).
    #[cfg(test)]
    pub fn new(tokens: &[Vec<u8>], pattern: &str) -> Option<Self> {
        let compiled = tables::compile(tokens.iter().map(Vec::as_slice))?;
        let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
        Self::from_tables(
            leak(compiled.arena),
            leak(compiled.ends),
            leak(compiled.slots),
            Splitter::Backtracking(fancy_regex::Regex::new(pattern).ok()?, None),
        )
    }

    fn token_bytes(&self, rank: u32) -> &'static [u8] {
        let r = rank as usize;
        let start = if r == 0 {
            0
        } else {
            tables::read_u32(self.ends, r - 1) as usize
        };
        &self.arena[start..tables::read_u32(self.ends, r) as usize]
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        tables::find(self.slots, bytes, |r| self.token_bytes(r))
    }

    /// How many tokens `text` encodes to, special-token text counted as ordinary text.
    pub fn count(&self, text: &str) -> Result<u64, SplitFailed> {
        let mut n = 0u64;
        self.split(text, |piece| n += self.count_piece(piece.as_bytes()) as u64)?;
        Ok(n)
    }

    /// Calls `each` with the pieces of `text`, in order.
    fn split<'t>(&self, text: &'t str, mut each: impl FnMut(&'t str)) -> Result<(), SplitFailed> {
        match &self.splitter {
            Splitter::Regular(splitter) => splitter.split(text, &mut each),
            Splitter::Backtracking(pattern, ascii) => {
                let mut at = 0;
                while at < text.len() {
                    if let Some(end) = ascii.and_then(|ascii| ascii(text.as_bytes(), at)) {
                        each(&text[at..end]);
                        at = end;
                        continue;
                    }
                    let Some(m) = pattern.find_from_pos(text, at).map_err(|_| SplitFailed)? else {
                        break;
                    };
                    if m.end() > at {
                        each(m.as_str());
                        at = m.end();
                    } else {
                        // An empty match (no pattern here has one) would not move on.
                        at += text[at..].chars().next().map_or(1, char::len_utf8);
                    }
                }
            }
        }
        Ok(())
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
    fn patterns_are_tiktokens() {
        assert_eq!(O200K_PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
    }

    /// The look-ahead-free o200k splitter cuts every text exactly where the published pattern
    /// does, on the corpus and on runs of every kind of whitespace before every kind of text.
    #[test]
    fn regular_o200k_splits_as_the_published_pattern() {
        let Some(ours) = Vocabulary::o200k() else {
            unreachable!("o200k builds from bundled data")
        };
        let Ok(published) = fancy_regex::Regex::new(O200K_PATTERN) else {
            unreachable!("the published pattern compiles")
        };
        let mut texts = corpus();
        let spaces = [
            " ",
            "  ",
            "\t",
            " \t ",
            "\u{a0}",
            "\u{3000}\u{2003}",
            "\x0b\x0c",
            "\n",
            " \n ",
            "\r\n  ",
            "  \r",
        ];
        let after = [
            "", "a", "A", "é", "1", "!", "\n", "日本", "'s", "/", "\u{301}",
        ];
        for s in spaces {
            for t in after {
                texts.push(format!("{s}{t}"));
                texts.push(format!("x{s}{t}"));
                texts.push(format!("x{s}{s}{t}{s}"));
            }
        }
        for text in &texts {
            let mut pieces = Vec::new();
            if ours.split(text, |p| pieces.push(p)).is_err() {
                unreachable!("the regular splitter cannot fail")
            }
            let expected: Vec<&str> = published
                .find_iter(text)
                .map(|m| m.map(|m| m.as_str()).unwrap_or_default())
                .collect();
            assert_eq!(pieces, expected, "{text:?}");
        }
    }

    /// Text a pattern skips is stepped over by the unanchored search, and splitters used in
    /// turn on one thread each search with their own cache (a lazy automaton's states are
    /// its pattern's alone).
    #[test]
    fn regular_splitters_skip_what_their_pattern_skips_and_keep_their_own_caches() {
        let (Some(o200k), Some(pairs), Some(digits)) = (
            RegularSplitter::new(O200K_REGULAR, None),
            RegularSplitter::new(r"\s+|\S{1,2}", None),
            RegularSplitter::new(r"[0-9]", None),
        ) else {
            unreachable!("the patterns compile")
        };
        let pieces = |splitter: &RegularSplitter, text: &'static str| {
            let mut out = Vec::new();
            splitter.split(text, &mut |p| out.push(p));
            out
        };
        let text = "Hello world, it's 2024!";
        for _ in 0..3 {
            assert_eq!(
                pieces(&o200k, text),
                ["Hello", " world", ",", " it's", " ", "202", "4", "!"]
            );
            assert_eq!(
                pieces(&pairs, text),
                [
                    "He", "ll", "o", " ", "wo", "rl", "d,", " ", "it", "'s", " ", "20", "24", "!"
                ]
            );
            assert_eq!(pieces(&digits, "a1b23 4"), ["1", "2", "3", "4"]);
            assert!(pieces(&digits, "none").is_empty());
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
            "o200k: {} tokens, {} bytes of tokens, {} slots",
            v.ends.len() / 4,
            v.arena.len(),
            v.slots.len() / 4
        );
    }

    /// The pieces o200k's ASCII matcher alone cuts `text` into, `None` if it declines anywhere.
    fn ascii_pieces(text: &str) -> Option<Vec<&str>> {
        matcher_pieces(text, |bytes, at| {
            Some(whitespace_end(text, at, o200k_ascii_end(bytes, at)?))
        })
    }

    fn matcher_pieces(
        text: &str,
        matcher: impl Fn(&[u8], usize) -> Option<usize>,
    ) -> Option<Vec<&str>> {
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let end = matcher(text.as_bytes(), at)?;
            pieces.push(&text[at..end]);
            at = end;
        }
        Some(pieces)
    }

    /// Mostly ASCII text with other characters here and there (in every other text), from a
    /// fixed seed: the ASCII matchers' paths, and their hand-overs to the automaton.
    fn mostly_ascii(count: usize) -> Vec<String> {
        use rand::{Rng, SeedableRng};
        let ascii: Vec<char> = (0u8..0x80).map(char::from).collect();
        let frequent: Vec<char> = "aeiouAEIOU sSlLrRvVtTdDmM'' \t\n\r\n09/!.,-\""
            .chars()
            .collect();
        let rare: Vec<char> = "éÉſ٣½\u{a0}\u{3000}\u{85}—…\u{301}日ǅʰ".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        (0..count)
            .map(|round| {
                let len = rng.random_range(1..40);
                (0..len)
                    .map(|_| match rng.random_range(0..100) {
                        0..60 => frequent[rng.random_range(0..frequent.len())],
                        60..97 => ascii[rng.random_range(0..ascii.len())],
                        _ if round % 2 == 0 => rare[rng.random_range(0..rare.len())],
                        _ => 'x',
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_ascii_matcher_cuts_ascii_text_itself_and_declines_where_other_bytes_decide() {
        assert_eq!(
            ascii_pieces("Hello world, it's 2024!\n\n  x\tY'ALL'RE ok?!/\r\n/ 12345 \"Quote\"  ")
                .unwrap(),
            [
                "Hello", " world", ",", " it's", " ", "202", "4", "!\n\n", " ", " x", "\tY",
                "'ALL'RE", " ok", "?!/\r\n/", " ", "123", "45", " \"", "Quote", "\"", "  "
            ]
        );
        // Where the next byte could be a letter, digit or space of another script, or a case
        // variant in a contraction, the automaton decides.
        for (text, at) in [
            ("abcé", 0),
            (" é", 0),
            ("12٣", 0),
            ("x\u{a0}y", 1),
            ("it'ſ", 0),
            ("!—", 0),
        ] {
            assert_eq!(o200k_ascii_end(text.as_bytes(), at), None, "{text:?}");
        }
        // A non-ASCII byte that cannot change the piece does not stop it.
        assert_eq!(o200k_ascii_end("123٣".as_bytes(), 0), Some(3));
        assert_eq!(o200k_ascii_end("!\né".as_bytes(), 0), Some(2));
    }

    /// Mostly ASCII text cut by each splitter (the ASCII matcher where it decides, the pattern's
    /// own engine elsewhere) exactly as by the published pattern.
    #[test]
    fn ascii_and_automaton_pieces_together_split_as_the_published_patterns() {
        let (Some(o200k), Some(cl100k)) = (Vocabulary::o200k(), Vocabulary::cl100k()) else {
            unreachable!("both vocabularies build from bundled data")
        };
        let (Ok(o200k_published), Ok(cl100k_published)) = (
            fancy_regex::Regex::new(O200K_PATTERN),
            fancy_regex::Regex::new(CL100K_PATTERN),
        ) else {
            unreachable!("the published patterns compile")
        };
        let mut texts = mostly_ascii(20_000);
        texts.extend(corpus());
        for text in &texts {
            for (ours, published) in [(&o200k, &o200k_published), (&cl100k, &cl100k_published)] {
                let mut pieces = Vec::new();
                if ours.split(text, |p| pieces.push(p)).is_err() {
                    unreachable!("short texts do not reach the backtracking limit")
                }
                let expected: Vec<&str> = published
                    .find_iter(text)
                    .map(|m| m.map(|m| m.as_str()).unwrap_or_default())
                    .collect();
                assert_eq!(pieces, expected, "{text:?}");
                if text.is_ascii() {
                    let alone = if std::ptr::eq(ours, &o200k) {
                        ascii_pieces(text)
                    } else {
                        matcher_pieces(text, cl100k_ascii_end)
                    };
                    assert_eq!(alone, Some(expected), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn the_cl100k_ascii_matcher_cuts_ascii_text_itself() {
        assert_eq!(
            matcher_pieces(
                "Hello world, it's 2024!\n\n  x\tY'ALL'RE ok?!/\r\n/ 12345 \"Quote\"  \n ",
                cl100k_ascii_end
            )
            .unwrap(),
            [
                "Hello", " world", ",", " it", "'s", " ", "202", "4", "!\n\n", " ", " x", "\tY",
                "'ALL", "'RE", " ok", "?!/\r\n", "/", " ", "123", "45", " \"", "Quote", "\"",
                "  \n "
            ]
        );
        assert_eq!(cl100k_ascii_end("abcé".as_bytes(), 0), None);
        assert_eq!(cl100k_ascii_end(" \u{a0}".as_bytes(), 0), None);
    }
}

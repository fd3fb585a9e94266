//! A cursor over JSON text for the hand-written readers of the commonest provider replies
//! (`openai/provider/reply.rs`, `anthropic/reply.rs`, `gemini/reply.rs`). It accepts a strict
//! subset of what serde_json accepts and gives up (`None`) on anything else: a key or a skipped
//! string with a `\u` escape, a number where an integer is wanted, nesting deeper than
//! `MAX_DEPTH`, any syntax error. A reader that gives up hands the body to its serde decoder,
//! which reads every form and words every error; so the cursor never has to be right about what
//! is wrong, only about what it accepts.
//!
//! The text is UTF-8 already (the reader checks the whole body once), so a string without
//! escapes is a slice of it, its end found eight bytes at a time.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use crate::json::first_special;

/// Deeper than this, a skipped value is left to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// Sets a field read from the text, once: a derived serde decoder refuses a field named twice,
/// so a reader gives up on the second (`None`).
pub(crate) fn set<T>(seen: &mut bool, slot: &mut T, value: T) -> Option<()> {
    if std::mem::replace(seen, true) {
        return None;
    }
    *slot = value;
    Some(())
}

pub(crate) struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips whitespace (JSON's four bytes only) and returns the next byte, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        // Compact JSON, the common case: every byte JSON's whitespace is not is above a space.
        if let Some(&b) = bytes.get(self.at)
            && b > b' '
        {
            return Some(b);
        }
        while let Some(&b) = bytes.get(self.at) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// Consumes `byte` after whitespace, if it is next.
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Consumes `null` if it is next (the `None` of an optional field).
    pub(crate) fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.literal(b"null").is_some()
    }

    /// Calls `field` with each key of the object that comes next, the cursor on its value,
    /// which `field` must consume. Gives up on a key with an escape (the reader would have to
    /// match it unescaped).
    pub(crate) fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return None;
            }
            let key = self.plain_string()?;
            if !self.eat(b':') {
                return None;
            }
            field(self, key)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}').then_some(());
        }
    }

    /// Calls `element` with the cursor on each element of the array that comes next.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(());
        }
        loop {
            element(self)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']').then_some(());
        }
    }

    /// The array that comes next, each element read by `element`.
    pub(crate) fn list<T>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        self.array(|c| {
            out.push(element(c)?);
            Some(())
        })?;
        Some(out)
    }

    /// A string without escapes, borrowed; the cursor on its opening quote.
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let end = first_special(self.bytes(), start)?;
        if self.bytes()[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        Some(&self.text[start..end])
    }

    /// The string that comes next: borrowed when it has no escape, unescaped by serde_json
    /// (as the serde decoder would) when it has.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        if let Some(plain) = self.plain_string() {
            return Some(Cow::Borrowed(plain));
        }
        let raw = self.string_raw()?;
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    }

    /// An optional field: `Some(None)` for `null`, else what `read` reads (`None` when it gives
    /// up).
    pub(crate) fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.null() {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// An `Option<String>` field: `Some(None)` for `null`, `None` for anything but a string.
    pub(crate) fn optional_string(&mut self) -> Option<Option<String>> {
        self.optional(|c| c.string().map(Cow::into_owned))
    }

    /// The JSON text of the string that comes next, quotes included, its escapes checked
    /// (`\u` ones left to serde_json by the callers that need them read).
    fn string_raw(&mut self) -> Option<&'a str> {
        self.string_raw_marking_unicode().map(|(raw, _)| raw)
    }

    /// [`Self::string_raw`], and whether the string has a `\u` escape.
    fn string_raw_marking_unicode(&mut self) -> Option<(&'a str, bool)> {
        let bytes = self.bytes();
        let start = self.at;
        let mut from = start + 1;
        let mut unicode = false;
        loop {
            let at = first_special(bytes, from)?;
            if bytes[at] < 0x20 {
                return None;
            }
            if bytes[at] == b'"' {
                self.at = at + 1;
                return Some((&self.text[start..self.at], unicode));
            }
            from = match bytes.get(at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at + 2,
                b'u' if bytes.get(at + 2..at + 6)?.iter().all(u8::is_ascii_hexdigit) => {
                    unicode = true;
                    at + 6
                }
                _ => return None,
            };
        }
    }

    /// A non-negative integer that fits `u64`, as serde_json reads one into an unsigned field:
    /// no sign, no fraction, no exponent, no leading zero.
    pub(crate) fn uint(&mut self) -> Option<u64> {
        self.peek()?;
        let bytes = self.bytes();
        let start = self.at;
        let mut end = start;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let digits = &self.text[start..end];
        if digits.is_empty()
            || (digits.len() > 1 && digits.starts_with('0'))
            || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.at = end;
        digits.parse().ok()
    }

    /// An `Option<u64>` field: `Some(None)` for `null`.
    pub(crate) fn optional_uint(&mut self) -> Option<Option<u64>> {
        self.optional(Self::uint)
    }

    /// An `Option<bool>` field: `Some(None)` for `null`.
    pub(crate) fn optional_bool(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            _ => None,
        }
    }

    /// Skips the value that comes next, checking it as serde_json would when ignoring it.
    pub(crate) fn skip(&mut self) -> Option<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                let (raw, unicode) = self.string_raw_marking_unicode()?;
                // A skipped `\u` escape is left to serde_json's own rules for ignored strings.
                if unicode {
                    serde_json::from_str::<IgnoredAny>(raw).ok()?;
                }
                Some(())
            }
            b'{' => self.object(|c, _| c.skip_at(depth + 1)),
            b'[' => self.array(|c| c.skip_at(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes()[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// Any JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let bytes = self.bytes();
        let mut at = self.at;
        let digits = |at: &mut usize| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - from
        };
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at)? {
            b'0' => at += 1,
            b'1'..=b'9' => {
                digits(&mut at);
            }
            _ => return None,
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if digits(&mut at) == 0 {
                return None;
            }
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                return None;
            }
        }
        self.at = at;
        Some(())
    }

    /// The JSON text of the value that comes next (for a field kept as a tree).
    pub(crate) fn raw_value(&mut self) -> Option<&'a str> {
        self.peek()?;
        let start = self.at;
        self.skip()?;
        Some(&self.text[start..self.at])
    }

    /// The value that comes next as a tree (a field passed through as it came). A string, what
    /// such fields mostly are (`service_tier`, say), is read here; anything else by serde_json.
    pub(crate) fn value(&mut self) -> Option<serde_json::Value> {
        if self.peek()? == b'"' {
            return self
                .string()
                .map(|s| serde_json::Value::String(s.into_owned()));
        }
        serde_json::from_str(self.raw_value()?).ok()
    }
}

/// Holds a reader to its serde decoder on examples: each of `common` is read by hand into the
/// decoder's answer, and each of `declined` is left to the decoder.
#[cfg(test)]
pub(crate) fn assert_reads_common_and_declines<T: PartialEq + std::fmt::Debug>(
    common: &[&str],
    declined: &[&str],
    by_hand: impl Fn(&[u8]) -> Option<T>,
    by_decoder: impl Fn(&[u8]) -> Option<T>,
) {
    for body in common {
        let read = by_hand(body.as_bytes());
        assert!(read.is_some(), "should be read by hand: {body}");
        assert_eq!(read, by_decoder(body.as_bytes()), "{body}");
    }
    for body in declined {
        let read = by_hand(body.as_bytes());
        assert!(read.is_none(), "should be declined: {body}");
    }
}

/// Holds a reader to its serde decoder on every one-byte change of each of `bodies` (a byte
/// removed, inserted, or replaced by one of the bytes that matter to JSON): `taken` reads a
/// changed body, checks that what the reader took the decoder reads alike, and says whether the
/// reader took it. A tenth of the changes at least must be taken, so that the check ran on many.
#[cfg(test)]
pub(crate) fn assert_every_one_byte_change(bodies: &[&str], mut taken: impl FnMut(&[u8]) -> bool) {
    let bytes: &[u8] = b"\"\\,:{}[]0-.e5 nt\x01/u\xc3";
    let (mut tried, mut read) = (0, 0);
    for body in bodies {
        let body = body.as_bytes();
        for at in 0..=body.len() {
            let mut changed = Vec::new();
            if at < body.len() {
                let mut removed = body.to_vec();
                removed.remove(at);
                changed.push(removed);
            }
            for &b in bytes {
                let mut inserted = body.to_vec();
                inserted.insert(at, b);
                changed.push(inserted);
                if at < body.len() {
                    let mut replaced = body.to_vec();
                    replaced[at] = b;
                    changed.push(replaced);
                }
            }
            for body in changed {
                tried += 1;
                read += usize::from(taken(&body));
            }
        }
    }
    assert!(read * 10 > tried, "{read} of {tried}");
}

#[cfg(test)]
mod tests {
    use super::Cursor;
    use serde::de::IgnoredAny;

    fn skips(text: &str) -> bool {
        let mut c = Cursor::new(text);
        c.skip().is_some() && c.at_end()
    }

    #[test]
    fn what_it_skips_serde_json_accepts() {
        let values = [
            r#"{"a":[1,-2,3.5,-0.0,1e10,2E-3,true,false,null,"x\n\"y\"\\/"],"b":{}}"#,
            "[]",
            " [ 1 , { } , [ [ ] ] ] ",
            r#""caf\u00e9""#,
            r#""é ü 日本""#,
            "0",
            "-0",
            "123456789012345678901234567890",
        ];
        for value in values {
            assert!(skips(value), "{value}");
            assert!(serde_json::from_str::<IgnoredAny>(value).is_ok(), "{value}");
        }
    }

    #[test]
    fn it_gives_up_on_what_serde_json_refuses() {
        let values = [
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "+1",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{a:1}",
            "\"\u{1}\"",
            "\"x",
            "\"\\x\"",
            "\"\\u12\"",
            "tru",
            "nul",
            "[",
            "{",
            "[1 2]",
        ];
        for value in values {
            assert!(!skips(value), "{value}");
            assert!(
                serde_json::from_str::<IgnoredAny>(value).is_err(),
                "{value}"
            );
        }
    }

    #[test]
    fn integers_are_read_as_serde_json_reads_unsigned_fields() {
        for (text, want) in [
            ("0", Some(0)),
            ("42", Some(42)),
            ("18446744073709551615", Some(u64::MAX)),
        ] {
            assert_eq!(Cursor::new(text).uint(), want, "{text}");
            assert_eq!(serde_json::from_str::<u64>(text).ok(), want, "{text}");
        }
        for text in [
            "-1",
            "1.0",
            "1e3",
            "012",
            "18446744073709551616",
            "\"1\"",
            "null",
        ] {
            assert_eq!(Cursor::new(text).uint(), None, "{text}");
            assert!(serde_json::from_str::<u64>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut c = Cursor::new(r#""plain" "tab\tand \"quotes\"""#);
        assert!(matches!(
            c.string(),
            Some(std::borrow::Cow::Borrowed("plain"))
        ));
        assert_eq!(c.string().as_deref(), Some("tab\tand \"quotes\""));
        assert!(c.at_end());
    }
}

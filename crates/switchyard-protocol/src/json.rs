//! Path-aware reading of JSON objects: take the fields a dialect models, one by one, each error
//! naming the full JSON path, and keep whatever is left over as the unknown-field extras.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::canonical::Text;
use crate::error::DecodeError;
use crate::provider_body::Splices;

/// An object being taken apart field by field.
#[derive(Debug)]
pub struct ObjectReader {
    map: Map<String, Value>,
    path: String,
}

/// Parses a whole body. A body that is UTF-8 throughout (every well-formed one) is checked once
/// and then parsed as text, so serde_json does not check each string again: a provider's reply
/// has some thirty keys and values, and a check per string cost more than the one pass over the
/// body. Anything else is parsed as bytes, which names the error as before.
pub fn from_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match utf8(body) {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_slice(body),
    }
}

/// `bytes` as text if they are UTF-8, checked with vector instructions (a 200 KB prompt in a
/// fraction of the time of the standard library's check, which goes a word at a time). Says
/// only whether they are; a caller that must name the fault checks again with the standard one.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Joins a parent path and a child segment (`messages` + `[2]`, `messages[2]` + `role`).
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ObjectReader {
    /// Reads a whole body, which must be one JSON object.
    pub fn from_body(body: &[u8]) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| DecodeError::new(format!("invalid JSON body: {e}"), None))?;
        Self::from_value(value, "")
    }

    pub fn from_value(value: Value, path: &str) -> Result<Self, DecodeError> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_owned(),
            }),
            other => Err(DecodeError::new(
                if path.is_empty() {
                    format!(
                        "request body must be a JSON object, not {}",
                        type_name(&other)
                    )
                } else {
                    format!("'{path}' must be an object, not {}", type_name(&other))
                },
                (!path.is_empty()).then_some(path),
            )),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn child_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Removes `key` and deserializes it; absent or `null` gives `None`.
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, DecodeError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            // The path is only written out when there is an error to name it in.
            Some(value) => deserialize_at_lazy(value, || self.child_path(key)).map(Some),
        }
    }

    /// Removes `key`; absent or `null` is an error naming the path.
    pub fn require<T: DeserializeOwned>(&mut self, key: &str) -> Result<T, DecodeError> {
        match self.take(key)? {
            Some(v) => Ok(v),
            None => Err(self.missing(key)),
        }
    }

    /// Removes `key`, which must be an object, as a nested reader; absent or `null` is an error
    /// naming the path.
    pub fn require_object(&mut self, key: &str) -> Result<ObjectReader, DecodeError> {
        self.take_object(key)?.ok_or_else(|| self.missing(key))
    }

    /// Removes `key`, which must be an array, as its elements with their paths; absent or
    /// `null` is an error naming the path.
    pub fn require_array(&mut self, key: &str) -> Result<Vec<(String, Value)>, DecodeError> {
        self.take_array(key)?.ok_or_else(|| self.missing(key))
    }

    fn missing(&self, key: &str) -> DecodeError {
        let path = self.child_path(key);
        DecodeError::new(format!("missing required field '{path}'"), Some(&path))
    }

    /// Removes `key` as a raw value (absent or `null` gives `None`).
    pub fn take_value(&mut self, key: &str) -> Option<Value> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Removes `key`, which must be an object, as a nested reader.
    pub fn take_object(&mut self, key: &str) -> Result<Option<ObjectReader>, DecodeError> {
        match self.take_value(key) {
            None => Ok(None),
            Some(v) => ObjectReader::from_value(v, &self.child_path(key)).map(Some),
        }
    }

    /// Removes `key`, which must be an array, returning its items with their paths.
    pub fn take_array(&mut self, key: &str) -> Result<Option<Vec<(String, Value)>>, DecodeError> {
        let path = self.child_path(key);
        match self.take_value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{path}[{i}]"), v))
                    .collect(),
            )),
            Some(other) => Err(DecodeError::new(
                format!("'{path}' must be an array, not {}", type_name(&other)),
                Some(&path),
            )),
        }
    }

    /// The fields nobody took.
    pub fn into_rest(self) -> Map<String, Value> {
        self.map
    }
}

/// Deserializes `value`, reporting errors at `path` plus the path inside the value.
pub fn deserialize_at<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, DecodeError> {
    deserialize_at_lazy(value, || path.to_owned())
}

/// [`deserialize_at`] with the path built only when there is an error.
fn deserialize_at_lazy<T: DeserializeOwned>(
    value: Value,
    path: impl FnOnce() -> String,
) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = path();
        let inner_path = e.path().to_string();
        let full = if inner_path == "." || inner_path.is_empty() {
            path
        } else {
            join(&path, &inner_path)
        };
        let inner = e.into_inner();
        DecodeError::new(format!("invalid value at '{full}': {inner}"), Some(&full))
    })
}

/// An object key as the deserializer has it: borrowed from the input when it holds no escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Writes `value` as compact JSON, byte for byte what `serde_json::to_writer` writes (same key
/// order, escapes and number forms), with strings checked eight bytes at a time: serde_json looks
/// at each byte of a string on its own, which for a long prompt was most of the cost of writing a
/// provider request.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => serde_json::to_writer(&mut *out, n)?,
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_array(out, items, write_value)?,
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

/// Writes `map` as a compact JSON object, as [`write_value`] does.
pub fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) -> Result<(), serde_json::Error> {
    out.push(b'{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, item)?;
    }
    out.push(b'}');
    Ok(())
}

/// Writes each of `members` as `,"key":value`: an upstream's own fields after the ones written
/// before them.
pub fn write_members<'a>(
    out: &mut Vec<u8>,
    members: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Result<(), serde_json::Error> {
    for (key, value) in members {
        out.push(b',');
        write_str(out, key);
        out.push(b':');
        write_value(out, value)?;
    }
    Ok(())
}

/// Writes `n` as serde_json writes an unsigned integer (writing into a vector cannot fail).
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// Writes `value` as a JSON string, or `null` when there is none.
pub fn write_optional_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// What `write` writes into a buffer of `capacity` bytes to start with; nothing when it
/// fails (writing plain strings, numbers and JSON values into a vector cannot).
pub fn written(
    capacity: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    match write(&mut out) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// Most fields an [`ObjectWriter`] remembers; an object the gateway builds has fewer.
const MAX_WRITTEN_KEYS: usize = 24;

/// A JSON object written field by field straight into a buffer, without building a `Value`
/// map first. A key is written at most once and the first write wins, so the fields a builder
/// sets are never overridden by the extras it adds after them.
pub struct ObjectWriter<'o, 'k> {
    out: &'o mut Vec<u8>,
    written: [&'k str; MAX_WRITTEN_KEYS],
    count: usize,
    empty: bool,
}

impl<'o, 'k> ObjectWriter<'o, 'k> {
    pub fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self {
            out,
            written: [""; MAX_WRITTEN_KEYS],
            count: 0,
            empty: true,
        }
    }

    fn has(&self, key: &str) -> bool {
        self.written[..self.count].contains(&key)
    }

    /// Writes `key` and the separator before it; the caller writes the value next.
    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
    }

    /// Whether `key` is new, remembering it: a key already written is not written again.
    fn claim(&mut self, key: &'k str) -> bool {
        if self.has(key) {
            return false;
        }
        // A key past the bound is not remembered: no object built here comes near it.
        if let Some(slot) = self.written.get_mut(self.count) {
            *slot = key;
            self.count += 1;
        }
        self.key(key);
        true
    }

    /// Writes `key` with the value `value` writes, unless `key` was written already.
    pub fn field(
        &mut self,
        key: &'k str,
        value: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        if self.claim(key) {
            value(self.out)
        } else {
            Ok(())
        }
    }

    /// [`ObjectWriter::field`] for a value whose writing cannot fail.
    pub fn put(&mut self, key: &'k str, value: impl FnOnce(&mut Vec<u8>)) {
        if self.claim(key) {
            value(self.out);
        }
    }

    pub fn str(&mut self, key: &'k str, value: &str) {
        self.put(key, |out| write_str(out, value));
    }

    /// A value already in JSON form.
    pub fn raw(&mut self, key: &'k str, json: &[u8]) {
        self.put(key, |out| out.extend_from_slice(json));
    }

    pub fn value(&mut self, key: &'k str, value: &Value) -> Result<(), serde_json::Error> {
        self.field(key, |out| write_value(out, value))
    }

    /// A number, or nothing when it is not finite (JSON has no NaN or infinity).
    pub fn f64(&mut self, key: &'k str, value: f64) -> Result<(), serde_json::Error> {
        match serde_json::Number::from_f64(value) {
            Some(n) => self.field(key, |out| serde_json::to_writer(out, &n)),
            None => Ok(()),
        }
    }

    pub fn u64(&mut self, key: &'k str, value: u64) -> Result<(), serde_json::Error> {
        self.field(key, |out| serde_json::to_writer(out, &value))
    }

    /// Every field of `extras` whose key was not written yet (extras are unique among
    /// themselves, so they are not remembered).
    pub fn extras(&mut self, extras: Option<&Map<String, Value>>) -> Result<(), serde_json::Error> {
        for (key, value) in extras.into_iter().flatten() {
            if !self.has(key) {
                self.key(key);
                write_value(self.out, value)?;
            }
        }
        Ok(())
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

/// Writes `items` as a JSON array, each item with `write`.
pub fn write_array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// Writes `s` as a JSON string: `"` and `\` escaped, control characters as serde_json writes
/// them (`\n`, `\t` … or `\u00XX`), everything else as is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_str_content(out, s);
    out.push(b'"');
}

/// Writes a message text as a JSON string. A text whose JSON form is known (see
/// `Text::json_content`: read from a JSON string without escapes, or keeping the client's
/// escaped string) is copied in that form, without the escape scan.
pub fn write_text(out: &mut Vec<u8>, text: &Text) {
    match text.json_content() {
        Some(content) => {
            out.reserve(content.len() + 2);
            out.push(b'"');
            out.extend_from_slice(content);
            out.push(b'"');
        }
        None => write_str(out, text),
    }
}

/// [`write_text`], leaving a long text whose JSON form is the client's out of `out`: its place
/// is recorded in `splices`, and that form is sent from the client's body as it is.
pub fn write_text_splicing(out: &mut Vec<u8>, text: &Text, splices: &mut Splices) {
    out.push(b'"');
    write_text_content_splicing(out, text, splices);
    out.push(b'"');
}

/// What goes between the quotes of [`write_text_splicing`], for a string written in pieces
/// (such as a data URI around an image's base64 text).
pub fn write_text_content_splicing(out: &mut Vec<u8>, text: &Text, splices: &mut Splices) {
    match text.json_content() {
        Some(content) if content.len() < SPLICED_MIN => out.extend_from_slice(content),
        _ => match text.shared_json_content() {
            Some(long) => splices.push(out, long),
            None => write_str_content(out, text),
        },
    }
}

/// The shortest text spliced into a provider's body rather than copied: below some kilobytes a
/// copy costs less than another piece to send.
const SPLICED_MIN: usize = 16 * 1024;

/// Writes what goes between the quotes of `s` as a JSON string (see [`write_str`]): a string
/// made of several pieces is written piece by piece between one pair of quotes.
pub fn write_str_content(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut unwritten = 0;
    let mut at = 0;
    // Whole blocks with nothing to escape are skipped with one test each (a long text a wide
    // block at a time, then at most one narrow block); a block with something to escape is
    // searched (`escape_block`).
    while let Some(block) = bytes[at..].first_chunk::<WIDE_BLOCK>() {
        if block_has(block, needs_escape) {
            escape_block::<WIDE_BLOCK>(out, bytes, at, &mut unwritten);
        }
        at += WIDE_BLOCK;
    }
    if let Some(block) = bytes[at..].first_chunk::<ESCAPE_BLOCK>() {
        if block_has(block, needs_escape) {
            escape_block::<ESCAPE_BLOCK>(out, bytes, at, &mut unwritten);
        }
        at += ESCAPE_BLOCK;
    }
    // The tail shorter than a block (all of most keys and names) is tested the same way, padded
    // with a byte that needs no escape, and is searched only when something in it needs one.
    let tail = &bytes[at..];
    if !tail.is_empty() {
        let mut block = [b' '; ESCAPE_BLOCK];
        block[..tail.len()].copy_from_slice(tail);
        if block_has(&block, needs_escape) {
            escape_bytes(out, bytes, at, bytes.len(), &mut unwritten);
        }
    }
    out.extend_from_slice(&bytes[unwritten..]);
}

/// Bytes tested at once by [`write_str`]: the test of a fixed-size block has no branch per byte,
/// so the compiler turns it into a few vector compares (two 16-byte registers here). Short
/// strings (most keys and names) are tested as one such block.
const ESCAPE_BLOCK: usize = 32;

/// Bytes tested at once in a long text: four registers' compares share one test of the result.
const WIDE_BLOCK: usize = 2 * ESCAPE_BLOCK;

/// Whether any byte of `bytes` is a control character (below 0x20). Each stretch's least byte
/// is found with vector minimums, which needs no compare per byte: a third of the instructions
/// of testing each block for a control byte. A control byte early on (a pretty-printed body)
/// is found within the first stretch.
pub fn has_control_bytes(bytes: &[u8]) -> bool {
    bytes
        .chunks(CONTROL_STRETCH)
        .any(|stretch| stretch.iter().fold(u8::MAX, |least, &b| least.min(b)) < 0x20)
}

/// Bytes [`has_control_bytes`] looks through before it tests what it found.
const CONTROL_STRETCH: usize = 4096;

/// Whether `test` holds for any byte of the block, without a branch per byte (so the test of
/// a fixed-size block becomes vector compares). Each byte's answer is kept as a byte and the
/// answers are OR-ed afterwards: OR-ing them into one `bool` as it went, the compiler moved every
/// compare's result out of the vector registers on its own. Always inlined: it is called once
/// per block, and a call cost more than the compares.
#[inline(always)]
fn block_has<const N: usize>(block: &[u8; N], test: impl Fn(u8) -> bool) -> bool {
    let mut hits = [0u8; N];
    for (hit, &byte) in hits.iter_mut().zip(block) {
        *hit = u8::from(test(byte));
    }
    hits.iter().fold(0, |any, &hit| any | hit) != 0
}

fn needs_escape(byte: u8) -> bool {
    (byte < 0x20) | (byte == b'"') | (byte == b'\\')
}

/// Writes what needs escaping in the block of `N` bytes at `at`, found to hold something that
/// does: its parts of [`SUB_BLOCK`] bytes are tested again, and only those holding an escape are
/// searched (in text with a line break or quote every few dozen bytes, most blocks hold one).
/// Never inlined: kept out of the loop over clean blocks, that loop stays as tight as before.
#[inline(never)]
fn escape_block<const N: usize>(out: &mut Vec<u8>, bytes: &[u8], at: usize, unwritten: &mut usize) {
    for part in (at..at + N).step_by(SUB_BLOCK) {
        if let Some(block) = bytes[part..].first_chunk::<SUB_BLOCK>()
            && block_has(block, needs_escape)
        {
            escape_bytes(out, bytes, part, part + SUB_BLOCK, unwritten);
        }
    }
}

/// The part of a block searched when it holds an escape (one vector register).
const SUB_BLOCK: usize = 16;

/// Where the first byte from `from` on that a JSON string cannot hold as it is (`"`, `\\` or a
/// control byte) lies: a string's end, if it has no escape. Eight bytes at a time.
pub(crate) fn first_special(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = bytes.get(at..)?.first_chunk::<8>() {
        let marked = may_need_escape(u64::from_le_bytes(*word));
        if marked != 0 {
            // The lowest mark is always a byte that needs escaping: a false one only follows
            // a true one, whose borrow carried into it.
            return Some(at + marked.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| at + i)
}

/// Writes what needs escaping in `bytes[from..to]`, with the unwritten run before each escape.
/// Eight bytes at a time, only the bytes [`may_need_escape`] marks are looked at.
fn escape_bytes(out: &mut Vec<u8>, bytes: &[u8], from: usize, to: usize, unwritten: &mut usize) {
    let mut at = from;
    while let Some(word) = bytes[at..to].first_chunk::<8>() {
        let mut marked = may_need_escape(u64::from_le_bytes(*word));
        while marked != 0 {
            escape_at(
                out,
                bytes,
                at + marked.trailing_zeros() as usize / 8,
                unwritten,
            );
            marked &= marked - 1;
        }
        at += 8;
    }
    for at in at..to {
        escape_at(out, bytes, at, unwritten);
    }
}

/// The high bit of each byte of `word` that may need escaping: every one that does, and perhaps
/// some after it (a borrow of the subtraction carries into the next byte), which the caller
/// tests again.
fn may_need_escape(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    below_space | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
}

/// Writes the escape of `bytes[at]` if it needs one, with the unwritten run before it.
fn escape_at(out: &mut Vec<u8>, bytes: &[u8], at: usize, unwritten: &mut usize) {
    if needs_escape(bytes[at]) {
        out.extend_from_slice(&bytes[*unwritten..at]);
        write_escape(out, bytes[at]);
        *unwritten = at + 1;
    }
}

fn write_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // The letter after the backslash; written as one two-byte array (of a length the compiler
    // knows, so no copy routine is called for it).
    let letter = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', letter]);
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::write_value;

    fn ours(value: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn utf8_agrees_with_the_standard_check() {
        // Valid texts of every sequence length, and the faults a check must catch: a stray
        // continuation byte, a sequence cut short, an overlong form, an encoded surrogate, a code
        // point above U+10FFFF, bytes never used. Each at every offset across a vector's width.
        let pieces: [&[u8]; 12] = [
            b"plain ascii",
            "é € 😀".as_bytes(),
            b"\x80",
            b"\xc3",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xfe",
            b"\xff",
        ];
        for piece in pieces {
            for offset in 0..70 {
                for after in [0, 1, 40] {
                    let mut bytes = vec![b'a'; offset];
                    bytes.extend_from_slice(piece);
                    bytes.extend(std::iter::repeat_n(b'z', after));
                    assert_eq!(
                        super::utf8(&bytes),
                        std::str::from_utf8(&bytes).ok(),
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_body_parses_as_text_or_bytes_alike() {
        let bodies: [&[u8]; 7] = [
            br#"{"a":"x","b":[1,2.5,null,true],"c":{"d":"\u00e9\n"}}"#,
            "{\"k\u{e9}y\":\"\u{1f600} v\u{e4}lue\"}".as_bytes(),
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\xe9t\xe9\"}",
            br#"{"a":"\ud800"}"#,
            b"[1,2",
            b"",
        ];
        for body in bodies {
            let text: Result<Value, _> = super::from_body(body);
            let bytes: Result<Value, _> = serde_json::from_slice(body);
            match (text, bytes) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{body:?}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn control_bytes_are_found_wherever_they_are() {
        for len in 0..3 * super::WIDE_BLOCK {
            let mut bytes = vec![b'a'; len];
            assert!(!super::has_control_bytes(&bytes));
            bytes.extend_from_slice("é\u{7f}\"\\ ".as_bytes());
            assert!(!super::has_control_bytes(&bytes));
            for at in 0..bytes.len() {
                for control in [0x00, b'\t', b'\n', 0x1f] {
                    let mut with = bytes.clone();
                    with[at] = control;
                    assert!(super::has_control_bytes(&with), "{len} {at}");
                }
            }
        }
        // Either side of the stretches' bounds, and in a last stretch that is short.
        let stretch = super::CONTROL_STRETCH;
        let long = vec![b' '; 3 * stretch + 5];
        assert!(!super::has_control_bytes(&long));
        for at in [
            0,
            stretch - 1,
            stretch,
            2 * stretch + 1,
            3 * stretch,
            long.len() - 1,
        ] {
            let mut with = long.clone();
            with[at] = b'\n';
            assert!(super::has_control_bytes(&with), "{at}");
        }
    }

    #[test]
    fn the_first_byte_a_string_cannot_hold_is_found_wherever_it_is() {
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len()).find(|&i| bytes[i] < 0x20 || bytes[i] == b'"' || bytes[i] == b'\\')
        };
        for len in 0..40 {
            // Bytes just above and below the ones it looks for, and multi-byte text.
            let filler: Vec<u8> = "a!#[]é\u{7f} ".bytes().cycle().take(len).collect();
            for from in 0..=len {
                assert_eq!(super::first_special(&filler, from), None, "{len} {from}");
            }
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, b'\n', 0x1f] {
                    let mut with = filler.clone();
                    with[at] = special;
                    // A second one after it must not be taken for it.
                    with.push(b'"');
                    for from in 0..=len {
                        assert_eq!(
                            super::first_special(&with, from),
                            naive(&with, from),
                            "{len} {at} {special} {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let mut values = vec![
            json!(null),
            json!(true),
            json!({"a": [1, -2, 3.5, 1e300, 0.1, -0.0, u64::MAX, i64::MIN], "b": {"c": false}}),
            json!([]),
            json!({}),
            json!(""),
        ];
        // Every byte that may need escaping, alone and at every offset of a longer string, so
        // each position in a block tested at once, and in the tail after the blocks, is seen.
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            // The neighbours of the escaped bytes (space, `!`, `#`, `]`) too: the word-at-a-time
            // test may mark one that follows an escape, and it must come out unescaped.
            .chain([
                '"', '\\', '/', '\u{7f}', 'é', '€', '😀', 'a', ' ', '!', '#', ']',
            ])
            .collect();
        for c in &specials {
            for offset in 0..3 * super::WIDE_BLOCK {
                let mut s = "x".repeat(offset);
                s.push(*c);
                s.push_str(&"y".repeat(offset % (super::ESCAPE_BLOCK + 5)));
                values.push(Value::String(s));
            }
        }
        // Pseudo-random mixes (a fixed linear congruential sequence), dense in escapes and
        // sparse (a special one byte in about forty, so most blocks have none and some one).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        for len in 0..300 {
            let dense: String = (0..len)
                .map(|_| specials[next() % specials.len()])
                .collect();
            let sparse: String = (0..len)
                .map(|_| {
                    let pick = next();
                    if pick % 40 == 0 {
                        specials[(pick / 40) % specials.len()]
                    } else {
                        'z'
                    }
                })
                .collect();
            values.push(json!({ dense.clone(): [dense, sparse] }));
        }
        for value in &values {
            assert_eq!(
                ours(value),
                serde_json::to_string(value).unwrap(),
                "{value:?}"
            );
        }
    }
}

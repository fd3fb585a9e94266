//! Reading a stream's text chunks by their text alone. The chunks of one stream nearly always
//! differ only in their text: the id, model, index, type names and the rest repeat byte for
//! byte. A decoder that has parsed a plain text chunk keeps what surrounds its text (the chunk
//! before the text's opening quote, and after its closing one); a later chunk that reads exactly
//! like that frame around one JSON string is, as JSON, the same chunk with another text, so it
//! has the same fields and means the same thing: that text, and nothing else. Only the string is
//! parsed, instead of the dozen keys and values around it. Anything else (another shape, a field
//! that changes on every chunk, a text that is not one string) is parsed whole, as before.
//!
//! One field that changes on every chunk is allowed for: a string member after the text that the
//! decoder ignores (OpenAI's `obfuscation`, random characters of random length on every chunk by
//! default). The frame then has three parts, before the text, between the text and that string,
//! and after the string; a chunk that reads like it around two JSON strings is the same chunk
//! with another text and another ignored string.

/// What surrounds the text of a stream's last plain text chunk.
#[derive(Debug, Default)]
pub(crate) struct TextFrame {
    head: String,
    /// Between the text and the ignored string, when the frame has one.
    middle: String,
    tail: String,
    skips: bool,
    set: bool,
    /// Chunks read through the frame (tests check the fast path is the one taken).
    #[cfg(test)]
    pub(crate) hits: usize,
}

impl TextFrame {
    /// Frames the chunks after `data`, a plain text chunk whose text's JSON string is `text`
    /// (a slice of `data`, as a borrowed `RawValue` gives it) and, with `ignored`, the JSON
    /// string of a member after the text that means nothing to the decoder (also a slice of
    /// `data`). Leaves the frame as it was if either does not lie in `data` where it should.
    pub(crate) fn set(&mut self, data: &str, text: &str, ignored: Option<&str>) {
        let Some((start, end)) = span_in(data, text) else {
            return;
        };
        let (middle, tail) = match ignored {
            Some(ignored) => match span_in(data, ignored) {
                Some((from, to)) if from >= end && ignored.starts_with('"') => {
                    (&data[end..from], &data[to..])
                }
                _ => return,
            },
            None => ("", &data[end..]),
        };
        self.head.clear();
        self.head.push_str(&data[..start]);
        self.middle.clear();
        self.middle.push_str(middle);
        self.tail.clear();
        self.tail.push_str(tail);
        self.skips = ignored.is_some();
        self.set = true;
    }

    /// The text of `data` when it is the framed chunk with another text (and another ignored
    /// string); `None` sends it through the full parse.
    pub(crate) fn text_of(&mut self, data: &str) -> Option<String> {
        if !self.set {
            return None;
        }
        let mut text = data
            .strip_prefix(self.head.as_str())?
            .strip_suffix(self.tail.as_str())?;
        // One JSON string and nothing else; anything else is not the framed shape.
        if !text.starts_with('"') {
            return None;
        }
        if self.skips {
            let end = string_end(text)?;
            let ignored = text[end..].strip_prefix(self.middle.as_str())?;
            // Another string in its place, read only to know it is one.
            if !ignored.starts_with('"')
                || (plain_string(ignored).is_none()
                    && serde_json::from_str::<String>(ignored).is_err())
            {
                return None;
            }
            text = &text[..end];
        }
        let text = match plain_string(text) {
            Some(plain) => plain.to_owned(),
            None => serde_json::from_str(text).ok()?,
        };
        #[cfg(test)]
        {
            self.hits += 1;
        }
        Some(text)
    }

    /// Forgets the frame, so that the next chunk is parsed whole (tests compare both ways).
    #[cfg(test)]
    pub(crate) fn forget(&mut self) {
        self.set = false;
    }
}

/// The value of the JSON string `text` (quotes included) when it is written as it reads: no
/// escape, no quote inside, no control character. Most stream texts are; the rest go through
/// the JSON parser, which also rejects what is not one string.
pub(crate) fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    inner
        .bytes()
        .all(|b| b != b'"' && b != b'\\' && b >= 0x20)
        .then_some(inner)
}

/// The length of the JSON string `text` starts with (quotes included): up to the first quote
/// no backslash escapes. Whether what lies between is a valid string is for its reader to say.
fn string_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[at] == b'"' {
            return Some(at + 1);
        }
        // An escape: the byte after the backslash is never the string's end.
        at += 2;
    }
}

/// Where `part`, a slice borrowed from `whole`, lies in it.
fn span_in(whole: &str, part: &str) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (whole.get(start..end)? == part).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_only_chunks_of_its_shape() {
        let data = r#"{"a":1,"text":"hi","b":[2]}"#;
        let at = data.find(r#""hi""#).unwrap();
        let mut frame = TextFrame::default();
        assert_eq!(frame.text_of(data), None);
        // A slice that does not lie in the chunk frames nothing.
        frame.set(data, r#""hi""#, None);
        assert_eq!(frame.text_of(data), None);
        frame.set(data, &data[at..at + 4], None);
        assert_eq!(frame.text_of(data).as_deref(), Some("hi"));
        assert_eq!(
            frame
                .text_of(r#"{"a":1,"text":"x \" \\ \u00e9","b":[2]}"#)
                .as_deref(),
            Some("x \" \\ é")
        );
        for other in [
            r#"{"a":2,"text":"hi","b":[2]}"#,
            r#"{"a":1,"text":null,"b":[2]}"#,
            r#"{"a":1,"text":"x","y":"z","b":[2]}"#,
            r#"{"a":1,"text":"unterminated,"b":[2]}"#,
            r#"{"a":1,"text":,"b":[2]}"#,
        ] {
            assert_eq!(frame.text_of(other), None, "{other}");
        }
        // Whitespace after the string is still the same document.
        assert_eq!(
            frame.text_of(r#"{"a":1,"text":"x" ,"b":[2]}"#).as_deref(),
            Some("x")
        );
        assert_eq!(frame.hits, 3);
    }

    #[test]
    fn a_frame_with_an_ignored_string_reads_two_strings_in_their_places() {
        let data = r#"{"t":"hi","n":1,"o":"xyz"}"#;
        let mut frame = TextFrame::default();
        // The ignored string must lie after the text, and be one.
        frame.set(data, &data[5..9], Some(&data[5..9]));
        assert_eq!(frame.text_of(data), None);
        frame.set(data, &data[5..9], Some(&data[19..20]));
        assert_eq!(frame.text_of(data), None);
        frame.set(data, &data[5..9], Some(&data[20..25]));
        for (chunk, text) in [
            (r#"{"t":"hi","n":1,"o":"xyz"}"#, Some("hi")),
            (r#"{"t":"","n":1,"o":""}"#, Some("")),
            (r#"{"t":"a\\","n":1,"o":"b\\"}"#, Some("a\\")),
            (r#"{"t":"a\"b","n":1,"o":"\"\u0041"}"#, Some("a\"b")),
            (
                r#"{"t":"é 日本","n":1,"o":"long and spaced"}"#,
                Some("é 日本"),
            ),
            // Whitespace after the ignored string is still the same document.
            (r#"{"t":"a","n":1,"o":"x" }"#, Some("a")),
            // Not two strings in their places.
            (r#"{"t":"a","n":2,"o":"x"}"#, None),
            (r#"{"t":"a","n":1,"o":5}"#, None),
            (r#"{"t":"a","n":1,"o":"x","p":"y"}"#, None),
            (r#"{"t":"a","n":1,"o":"x\"}"#, None),
            (r#"{"t":"a\","n":1,"o":"x"}"#, None),
            ("{\"t\":\"a\",\"n\":1,\"o\":\"tab\there\"}", None),
            (r#"{"t":"unterminated}"#, None),
        ] {
            assert_eq!(frame.text_of(chunk).as_deref(), text, "{chunk}");
        }
        assert_eq!(frame.hits, 6);
        assert_eq!(string_end(r#""a\\" rest"#), Some(5));
        assert_eq!(string_end(r#""a\" rest"#), None);
        assert_eq!(string_end(r#""ends with \"#), None);
    }

    #[test]
    fn plain_strings_are_read_as_they_are_written_and_the_rest_by_the_parser() {
        for (json, plain) in [
            (r#""hi there""#, Some("hi there")),
            (r#""""#, Some("")),
            ("\"é ✓ 日本\"", Some("é ✓ 日本")),
            (r#""a\nb""#, None),
            (r#""say \"x\"""#, None),
            (r#""a","b""#, None),
            ("\"tab\there\"", None),
            (r#"""#, None),
            (r#""open"#, None),
        ] {
            assert_eq!(plain_string(json), plain, "{json}");
            // Where it answers, it answers as the parser does.
            if let Some(plain) = plain {
                assert_eq!(serde_json::from_str::<String>(json).unwrap(), plain);
            }
        }
        // Through a frame: a string with escapes or quotes is still read right, by the parser.
        let data = r#"{"t":"hi"}"#;
        let mut frame = TextFrame::default();
        frame.set(data, &data[5..9], None);
        assert_eq!(frame.text_of(r#"{"t":"a\nb"}"#).as_deref(), Some("a\nb"));
        assert_eq!(frame.text_of(r#"{"t":"a","u":"b"}"#), None);
        assert_eq!(frame.text_of("{\"t\":\"a\tb\"}"), None);
    }
}

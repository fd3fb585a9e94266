//! The text of a message part. A long prompt is most of its request's body, so a text read from
//! the body as a JSON string without escapes is a slice of that body, shared rather than copied,
//! and is known to need no escaping when a provider's request is written. A text read from a
//! string with escapes is unescaped into a copy, and keeps the string as the client escaped it
//! (a slice of the body), which is what a provider's request then carries.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// A message part's text: owned, or shared with the request body it was read from.
#[derive(Clone, Default)]
pub struct Text {
    text: ByteString,
    json: JsonForm,
}

/// How a text is written between a JSON string's quotes.
#[derive(Clone, Default)]
enum JsonForm {
    /// Escaped as it is written (nothing known about it).
    #[default]
    Unknown,
    /// As it is: nothing in it needs escaping (no `"`, `\` or control character), as it was
    /// read from a JSON string that had none.
    Plain,
    /// As the client's JSON string had it: that string's bytes between its quotes, escapes and
    /// all (valid JSON, since the text was read from it).
    Escaped(Bytes),
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text of a JSON string that holds no escape, `raw` being the bytes between its quotes
    /// in `body` (a JSON string has no `"` or control character unescaped): shared with `body`
    /// when `raw` lies within it, copied otherwise. `None` when it is not UTF-8.
    pub fn unescaped_in(body: &Bytes, raw: &[u8]) -> Option<Text> {
        let within = body.as_ptr_range();
        let range = raw.as_ptr_range();
        let text = if within.start <= range.start && range.end <= within.end {
            ByteString::try_from(body.slice_ref(raw)).ok()?
        } else {
            ByteString::from(std::str::from_utf8(raw).ok()?)
        };
        Some(Text {
            text,
            json: JsonForm::Plain,
        })
    }

    /// The text a JSON string with escapes was read as (`text`, copied), which keeps the
    /// string as it was written (`escaped`: its bytes between the quotes, escapes and all).
    /// The caller vouches that `text` is what `escaped` unescapes to; tests check it.
    pub fn unescaped_from(text: &str, escaped: Bytes) -> Text {
        debug_assert_eq!(
            serde_json::from_slice::<String>(&[&b"\""[..], &escaped, b"\""].concat()).ok(),
            Some(text.to_owned()),
            "an escaped form that is not the text's"
        );
        Text {
            text: ByteString::from(text),
            json: JsonForm::Escaped(escaped),
        }
    }

    /// The text's bytes, shared (with the client's body, for a text read from it).
    pub fn bytes(&self) -> Bytes {
        self.text.as_bytes().clone()
    }

    /// Whether the text can be written between a JSON string's quotes as it is.
    pub fn is_json_plain(&self) -> bool {
        matches!(self.json, JsonForm::Plain)
    }

    /// What goes between a JSON string's quotes for this text, when it is known without
    /// escaping it: the text itself (plain) or the client's escaped string.
    pub fn json_content(&self) -> Option<&[u8]> {
        match &self.json {
            JsonForm::Unknown => None,
            JsonForm::Plain => Some(self.text.as_bytes()),
            JsonForm::Escaped(escaped) => Some(escaped),
        }
    }

    /// [`Text::json_content`], shared rather than borrowed.
    pub fn shared_json_content(&self) -> Option<Bytes> {
        match &self.json {
            JsonForm::Unknown => None,
            JsonForm::Plain => Some(self.bytes()),
            JsonForm::Escaped(escaped) => Some(escaped.clone()),
        }
    }

    /// The text from byte `at` on (a char boundary), sharing this text's bytes. A tail of a
    /// plain text is plain. A tail of a text read from a string with escapes keeps that
    /// string's tail when the first `at` bytes were written without any (as a data URI's
    /// `data:<type>;base64,` is, before a base64 text whose `/` a client's encoder escaped);
    /// otherwise where it starts is not known without unescaping, and it is escaped again.
    pub fn tail_from(&self, at: usize) -> Text {
        let json = match &self.json {
            JsonForm::Plain => JsonForm::Plain,
            JsonForm::Escaped(escaped)
                if escaped.get(..at) == Some(&self.text.as_bytes()[..at])
                    && !escaped[..at].contains(&b'\\') =>
            {
                JsonForm::Escaped(escaped.slice(at..))
            }
            JsonForm::Unknown | JsonForm::Escaped(_) => JsonForm::Unknown,
        };
        let tail = Text {
            text: self.text.slice_ref(&self.text[at..]),
            json,
        };
        if let JsonForm::Escaped(escaped) = &tail.json {
            debug_assert_eq!(
                serde_json::from_slice::<String>(&[&b"\""[..], escaped, b"\""].concat()).ok(),
                Some(tail.as_str().to_owned()),
                "an escaped tail that is not the text's"
            );
        }
        tail
    }

    /// Appends `more` (the text becomes an owned copy).
    pub fn push_str(&mut self, more: &str) {
        let mut joined = String::with_capacity(self.text.len() + more.len());
        joined.push_str(&self.text);
        joined.push_str(more);
        *self = Text::from(joined);
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text {
            text: ByteString::from(text),
            json: JsonForm::Unknown,
        }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text {
            text: ByteString::from(text),
            json: JsonForm::Unknown,
        }
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Self {
        Text::from(text.as_str())
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.as_str().to_owned()
    }
}

/// Texts are equal when their characters are: how they were read does not matter.
impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_inside_the_body_shares_its_bytes() {
        let body = Bytes::from_static(br#"{"content":"hello there"}"#);
        let raw = &body[12..23];
        let text = Text::unescaped_in(&body, raw).unwrap();
        assert_eq!(text, "hello there");
        assert!(text.is_json_plain());
        assert_eq!(text.as_str().as_ptr(), raw.as_ptr(), "not copied");
    }

    #[test]
    fn a_text_outside_the_body_is_copied_and_bad_utf8_is_refused() {
        let body = Bytes::from_static(b"{}");
        let elsewhere = b"abc".to_vec();
        let text = Text::unescaped_in(&body, &elsewhere).unwrap();
        assert_eq!(text, "abc");
        assert_ne!(text.as_str().as_ptr(), elsewhere.as_ptr());
        assert!(Text::unescaped_in(&Bytes::from_static(b"\xff\xfe"), b"\xff").is_none());
    }

    #[test]
    fn equality_ignores_how_a_text_was_read_and_appending_makes_it_owned() {
        let body = Bytes::from_static(b"ab");
        let mut shared = Text::unescaped_in(&body, &body[..]).unwrap();
        assert_eq!(shared, Text::from("ab"));
        shared.push_str("\n");
        assert_eq!(shared, "ab\n");
        assert!(
            !shared.is_json_plain(),
            "what was appended was never checked"
        );
    }

    #[test]
    fn a_tail_keeps_the_clients_string_only_where_it_is_known() {
        let plain = Text::unescaped_in(&Bytes::from_static(b"data:x,abc"), b"data:x,abc").unwrap();
        let tail = plain.tail_from(7);
        assert_eq!(tail, "abc");
        assert_eq!(tail.json_content(), Some(&b"abc"[..]));
        // Escapes after the cut only: the tail is the string's tail.
        let escaped =
            Text::unescaped_from("data:x,a/b\"c", Bytes::from_static(br#"data:x,a\/b\"c"#));
        let tail = escaped.tail_from(7);
        assert_eq!(tail, "a/b\"c");
        assert_eq!(tail.json_content(), Some(&br#"a\/b\"c"#[..]));
        // An escape before the cut: where the tail starts in the string is not known.
        let escaped = Text::unescaped_from("d/ta:x,ab", Bytes::from_static(br#"d\/ta:x,ab"#));
        let tail = escaped.tail_from(7);
        assert_eq!(tail, "ab");
        assert_eq!(tail.json_content(), None);
        // A backslash of the text itself before the cut, written as an escape.
        let escaped = Text::unescaped_from("a\\b", Bytes::from_static(br#"a\\b"#));
        assert_eq!(escaped.tail_from(2).json_content(), None);
    }
}

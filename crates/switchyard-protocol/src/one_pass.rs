//! Pieces the dialects' one-pass readers of common requests share (`openai/common_chat.rs`,
//! `anthropic/common.rs`). Such a reader takes the request straight from the body's bytes in the
//! forms most clients send and declines everything else, which then goes through the dialect's
//! full decoder: that one reads every form and names the path of every error, so an error here
//! only ever means "not the common form" and its text is never shown.
//!
//! A body without a single control byte (compact JSON, as the SDKs send it) cannot have one raw
//! inside a string, so its texts can be read as raw strings (`RAW`): serde_json then finds a
//! string's end with a vectorised search for `"` and `\`, instead of also testing every byte for
//! a control character (most of the parse of a long prompt). Their UTF-8 is checked here.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::canonical::{ContentPart, Text};
use crate::json::Key;

/// The error that sends a request to the full decoder.
pub(crate) fn decline<E: de::Error>() -> E {
    E::custom("not the common form")
}

/// Whether a body's texts may be read as raw strings: it holds no control byte.
pub(crate) fn raw_texts(body: &[u8]) -> bool {
    !crate::json::has_control_bytes(body)
}

/// Parses a body for a one-pass reader (`seed`) whose texts are raw when `raw`. A short body is
/// checked as UTF-8 whole and then parsed as text (see `json::from_body`), so its keys and small
/// values are not checked one by one. A long body with raw texts is nearly all texts, each
/// checked as it is read: it is parsed as bytes instead, so a long prompt is not checked twice.
pub(crate) fn parse_seed<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    raw: bool,
    seed: S,
) -> Option<S::Value> {
    fn whole<'de, R: serde_json::de::Read<'de>, S: DeserializeSeed<'de>>(
        mut de: serde_json::Deserializer<R>,
        seed: S,
    ) -> Option<S::Value> {
        let value = seed.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(value)
    }
    if raw && body.len() > CHECKED_WHOLE_MAX {
        return whole(serde_json::Deserializer::from_slice(body), seed);
    }
    match crate::json::utf8(body) {
        Some(text) => whole(serde_json::Deserializer::from_str(text), seed),
        None => whole(serde_json::Deserializer::from_slice(body), seed),
    }
}

/// The longest body `parse_seed` checks whole (with raw texts): some kilobytes of keys and values are
/// checked faster one by one than a second pass over a long text.
const CHECKED_WHOLE_MAX: usize = 4096;

/// A raw string's text, if it is UTF-8 (an escaped lone surrogate is not).
pub(crate) fn utf8<E: de::Error>(v: &[u8]) -> Result<&str, E> {
    crate::json::utf8(v).ok_or_else(decline)
}

/// The body the texts are read from. A string without escapes is handed over borrowed from it,
/// and its text shares the body's bytes rather than copying them (a long prompt is most of its
/// body); a string with escapes is unescaped into a text of its own.
#[derive(Clone, Copy)]
pub(crate) struct Source<'b, const RAW: bool>(pub &'b Bytes);

impl<const RAW: bool> Source<'_, RAW> {
    /// The text of a string without escapes, borrowed from the body.
    pub(crate) fn unescaped<E: de::Error>(self, v: &[u8]) -> Result<Text, E> {
        Text::unescaped_in(self.0, v).ok_or_else(decline)
    }
}

/// The text of a string the parser unescaped (a raw one not yet checked as UTF-8): a copy.
pub(crate) fn escaped_text<E: de::Error>(v: &[u8]) -> Result<Text, E> {
    Ok(Text::from(utf8(v)?))
}

/// `DeserializeSeed` for a seed that is its own visitor (and holds the `Source` as `.0`): read
/// with `deserializer.$read(self)`, or, when the seed's texts are raw, `$raw`.
macro_rules! seed_visits_itself {
    ($seed:ident -> $value:ty, $read:ident) => {
        $crate::one_pass::seed_visits_itself!($seed -> $value, $read, $read);
    };
    ($seed:ident -> $value:ty, $raw:ident, $read:ident) => {
        impl<'de, const RAW: bool> serde::de::DeserializeSeed<'de> for $seed<'_, RAW> {
            type Value = $value;
            fn deserialize<D: serde::de::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<$value, D::Error> {
                if RAW {
                    deserializer.$raw(self)
                } else {
                    deserializer.$read(self)
                }
            }
        }
    };
}
pub(crate) use seed_visits_itself;

/// The visitor methods that take a string as a text read from the seed's `Source` (shared when
/// it had no escape), each answering `$wrap(text)`.
macro_rules! string_visits {
    ($value:ty, $wrap:expr) => {
        fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<$value, E> {
            self.0.unescaped(v).map($wrap)
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$value, E> {
            $crate::one_pass::escaped_text(v).map($wrap)
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<$value, E> {
            self.0.unescaped(v.as_bytes()).map($wrap)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$value, E> {
            Ok($wrap($crate::canonical::Text::from(v)))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$value, E> {
            Ok($wrap($crate::canonical::Text::from(v)))
        }
    };
}
pub(crate) use string_visits;

/// A string's text, read from `Source`.
pub(crate) struct TextSeed<'b, const RAW: bool>(pub Source<'b, RAW>);

seed_visits_itself!(TextSeed -> Text, deserialize_bytes, deserialize_string);

impl<'de, const RAW: bool> Visitor<'de> for TextSeed<'_, RAW> {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    string_visits!(Text, |text| text);
}

/// A list whose every element is read with (a copy of) the seed.
pub(crate) struct ListSeed<S>(pub S);

impl<'de, S: DeserializeSeed<'de> + Clone> DeserializeSeed<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Clone> Visitor<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(element) = seq.next_element_seed(self.0.clone())? {
            out.push(element);
        }
        Ok(out)
    }
}

/// A text part or block, `{"type": "text", "text": …, "cache_control": …}`, each field at most
/// once (OpenAI's text parts and Anthropic's text blocks have the same shape).
#[derive(Clone, Copy)]
struct TextPartSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(TextPartSeed -> ContentPart, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for TextPartSeed<'_, RAW> {
    type Value = ContentPart;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a text part")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentPart, A::Error> {
        let mut is_text = None;
        let mut text: Option<Text> = None;
        let mut cache_control: Option<Option<Value>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if is_text.is_none() => {
                    is_text = Some(map.next_value::<Key<'de>>()?.0 == "text");
                }
                "text" if text.is_none() => text = Some(map.next_value_seed(TextSeed(self.0))?),
                "cache_control" if cache_control.is_none() => {
                    cache_control = Some(map.next_value()?);
                }
                _ => return Err(decline()),
            }
        }
        match (is_text, text) {
            (Some(true), Some(text)) => Ok(ContentPart::Text {
                text,
                cache_control: cache_control.flatten(),
            }),
            _ => Err(decline()),
        }
    }
}

/// A list of text parts.
pub(crate) fn read_parts<'de, const RAW: bool, A: SeqAccess<'de>>(
    source: Source<'_, RAW>,
    seq: A,
) -> Result<Vec<ContentPart>, A::Error> {
    ListSeed(TextPartSeed(source)).visit_seq(seq)
}

/// Holds a dialect's one-pass reader to its full decoder: every body of `common` (each also
/// with its line breaks made spaces, so that its texts are read as raw strings) is read in one
/// pass into exactly the full decoder's request, and every body of `declined` goes to the full
/// decoder, whose answer (errors and all) is the dialect's.
#[cfg(test)]
pub(crate) fn assert_reads_as_the_full_decoder(
    one_pass: impl Fn(&Bytes) -> Option<crate::canonical::ChatRequest>,
    full: impl Fn(&[u8]) -> Result<crate::canonical::ChatRequest, crate::error::DecodeError>,
    dialect: &dyn crate::dialect::IngressDialect,
    common: &[&str],
    declined: &[&str],
) {
    let flattened: Vec<String> = common
        .iter()
        .map(|body| body.replace(['\n', '\r', '\t'], " "))
        .collect();
    for body in common
        .iter()
        .copied()
        .chain(flattened.iter().map(String::as_str))
    {
        let read = one_pass(&Bytes::copy_from_slice(body.as_bytes()));
        assert!(read.is_some(), "should be read in one pass: {body}");
        assert_eq!(read.map(Ok), Some(full(body.as_bytes())), "{body}");
    }
    for body in declined {
        assert!(
            one_pass(&Bytes::copy_from_slice(body.as_bytes())).is_none(),
            "should need the full decoder: {body}"
        );
        assert_eq!(
            dialect.decode_chat(&Bytes::copy_from_slice(body.as_bytes())),
            full(body.as_bytes()),
            "{body}"
        );
    }
}

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

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::canonical::ContentPart;
use crate::json::Key;

/// The error that sends a request to the full decoder.
pub(crate) fn decline<E: de::Error>() -> E {
    E::custom("not the common form")
}

/// Whether a body's texts may be read as raw strings: it holds no control byte.
pub(crate) fn raw_texts(body: &[u8]) -> bool {
    !crate::json::has_control_bytes(body)
}

/// Parses a body for a one-pass reader whose texts are raw when `raw`. A short body is checked
/// as UTF-8 whole and then parsed as text (see `json::from_body`), so its keys and small values
/// are not checked one by one. A long body with raw texts is nearly all texts, each checked as it
/// is read: it is parsed as bytes instead, so a long prompt is not checked twice.
pub(crate) fn parse<'de, T: Deserialize<'de>>(body: &'de [u8], raw: bool) -> Option<T> {
    if raw && body.len() > CHECKED_WHOLE_MAX {
        serde_json::from_slice(body).ok()
    } else {
        crate::json::from_body(body).ok()
    }
}

/// The longest body `parse` checks whole (with raw texts): some kilobytes of keys and values are
/// checked faster one by one than a second pass over a long text.
const CHECKED_WHOLE_MAX: usize = 4096;

/// A raw string's text, if it is UTF-8 (an escaped lone surrogate is not).
pub(crate) fn utf8<E: de::Error>(v: &[u8]) -> Result<&str, E> {
    crate::json::utf8(v).ok_or_else(decline)
}

/// A string's text: read as a raw string when `RAW`.
pub(crate) struct Text<const RAW: bool>(pub String);

impl<'de, const RAW: bool> Deserialize<'de> for Text<RAW> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<const RAW: bool>;
        impl<'de, const RAW: bool> Visitor<'de> for TextVisitor<RAW> {
            type Value = Text<RAW>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Text<RAW>, E> {
                Ok(Text(utf8(v)?.to_owned()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<RAW>, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<RAW>, E> {
                Ok(Text(v))
            }
        }
        if RAW {
            deserializer.deserialize_bytes(TextVisitor::<RAW>)
        } else {
            deserializer.deserialize_string(TextVisitor::<RAW>)
        }
    }
}

/// A list read element by element.
pub(crate) struct List<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(element) = seq.next_element()? {
                    out.push(element);
                }
                Ok(List(out))
            }
        }
        deserializer.deserialize_seq(ListVisitor(std::marker::PhantomData))
    }
}

/// A text part or block, `{"type": "text", "text": …, "cache_control": …}`, each field at most
/// once (OpenAI's text parts and Anthropic's text blocks have the same shape).
pub(crate) struct TextPart<const RAW: bool>(pub ContentPart);

impl<'de, const RAW: bool> Deserialize<'de> for TextPart<RAW> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PartVisitor<const RAW: bool>;
        impl<'de, const RAW: bool> Visitor<'de> for PartVisitor<RAW> {
            type Value = TextPart<RAW>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a text part")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextPart<RAW>, A::Error> {
                let mut is_text = None;
                let mut text: Option<String> = None;
                let mut cache_control: Option<Option<Value>> = None;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match &*key.0 {
                        "type" if is_text.is_none() => {
                            is_text = Some(map.next_value::<Key<'de>>()?.0 == "text");
                        }
                        "text" if text.is_none() => text = Some(map.next_value::<Text<RAW>>()?.0),
                        "cache_control" if cache_control.is_none() => {
                            cache_control = Some(map.next_value()?);
                        }
                        _ => return Err(decline()),
                    }
                }
                match (is_text, text) {
                    (Some(true), Some(text)) => Ok(TextPart(ContentPart::Text {
                        text,
                        cache_control: cache_control.flatten(),
                    })),
                    _ => Err(decline()),
                }
            }
        }
        deserializer.deserialize_map(PartVisitor::<RAW>)
    }
}

/// A list of text parts.
pub(crate) fn read_parts<'de, const RAW: bool, A: SeqAccess<'de>>(
    seq: A,
) -> Result<Vec<ContentPart>, A::Error> {
    let list = List::<TextPart<RAW>>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
    Ok(list.0.into_iter().map(|p| p.0).collect())
}

/// Holds a dialect's one-pass reader to its full decoder: every body of `common` (each also
/// with its line breaks made spaces, so that its texts are read as raw strings) is read in one
/// pass into exactly the full decoder's request, and every body of `declined` goes to the full
/// decoder, whose answer (errors and all) is the dialect's.
#[cfg(test)]
pub(crate) fn assert_reads_as_the_full_decoder(
    one_pass: impl Fn(&[u8]) -> Option<crate::canonical::ChatRequest>,
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
        let read = one_pass(body.as_bytes());
        assert!(read.is_some(), "should be read in one pass: {body}");
        assert_eq!(read.map(Ok), Some(full(body.as_bytes())), "{body}");
    }
    for body in declined {
        assert!(
            one_pass(body.as_bytes()).is_none(),
            "should need the full decoder: {body}"
        );
        assert_eq!(
            dialect.decode_chat(body.as_bytes()),
            full(body.as_bytes()),
            "{body}"
        );
    }
}

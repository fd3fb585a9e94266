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
use serde::de::{self, Visitor};

/// The error that sends a request to the full decoder.
pub(crate) fn decline<E: de::Error>() -> E {
    E::custom("not the common form")
}

/// Whether a body's texts may be read as raw strings: it holds no control byte.
pub(crate) fn raw_texts(body: &[u8]) -> bool {
    !crate::json::has_control_bytes(body)
}

/// A raw string's text, if it is UTF-8 (an escaped lone surrogate is not).
pub(crate) fn utf8<E: de::Error>(v: &[u8]) -> Result<&str, E> {
    std::str::from_utf8(v).map_err(|_| decline())
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

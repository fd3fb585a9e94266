//! The common Messages request read in one pass, straight from the body's bytes. The full decoder
//! (serde's derived one, in `wire.rs`) buffers the body twice over: the top-level object into
//! a map of its parts, for the unknown fields it keeps, and every content block, to find its
//! `type` before reading it; for a long prompt that costs several times the parse itself.
//!
//! Only what most clients send is read here: user and assistant messages whose content is a
//! string or text blocks, a system prompt of the same kind, and the plain request fields.
//! Anything else (tools, tool choice, thinking, output configuration, other block types, a
//! block's or a message's unknown field, a field given twice, a value of the wrong type, malformed
//! JSON) answers `None`, and the request goes through the full decoder, which reads every form
//! and names the path of every error. For what it accepts, this gives exactly the full
//! decoder's request; a test holds the two to that.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::wire::Metadata;
use crate::canonical::{ChatRequest, ContentPart, Extras, Message, Role, Text};
use crate::dialect::DialectId;
use crate::json::Key;
use crate::one_pass::{
    ListSeed, Source, decline, parse_seed, raw_texts, read_parts, seed_visits_itself, string_visits,
};

/// The request, or `None` when it needs the full decoder. The texts of a body without control
/// bytes are read as raw strings, and texts without escapes share the body's bytes (see
/// `one_pass`).
pub(super) fn decode(body: &Bytes) -> Option<ChatRequest> {
    if raw_texts(body) {
        parse_seed(body, true, RequestVisitor(Source::<true>::new(body)))
    } else {
        parse_seed(body, false, RequestVisitor(Source::<false>::new(body)))
    }
}

/// Marks `field` as read; a second time declines (serde's derived decoder refuses it).
fn first_time<E: de::Error>(seen: &mut u16, field: u16) -> Result<(), E> {
    if *seen & field != 0 {
        return Err(decline());
    }
    *seen |= field;
    Ok(())
}

struct RequestVisitor<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(RequestVisitor -> ChatRequest, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for RequestVisitor<'_, RAW> {
    type Value = ChatRequest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a messages request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
        let mut seen = 0u16;
        let mut model: Option<String> = None;
        let mut max_tokens: Option<u32> = None;
        let mut messages: Option<Vec<Message>> = None;
        let mut system: Option<Vec<ContentPart>> = None;
        let mut stop_sequences: Option<Vec<String>> = None;
        let mut metadata: Option<Metadata> = None;
        let mut stream: Option<bool> = None;
        let mut r = ChatRequest::default();
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "model" => {
                    first_time(&mut seen, 1)?;
                    model = map.next_value()?;
                }
                "max_tokens" => {
                    first_time(&mut seen, 1 << 1)?;
                    max_tokens = map.next_value()?;
                }
                "messages" => {
                    first_time(&mut seen, 1 << 2)?;
                    messages = Some(map.next_value_seed(ListSeed(MessageSeed(self.0)))?);
                }
                "system" => {
                    first_time(&mut seen, 1 << 3)?;
                    // An empty string adds no system message; an empty text block does.
                    system = map
                        .next_value_seed(SystemSeed(self.0.after(&key)))?
                        .filter(|b| !b.is_empty_string())
                        .map(|b| b.parts);
                }
                "stop_sequences" => {
                    first_time(&mut seen, 1 << 4)?;
                    stop_sequences = map.next_value()?;
                }
                "temperature" => {
                    first_time(&mut seen, 1 << 5)?;
                    r.temperature = map.next_value()?;
                }
                "top_p" => {
                    first_time(&mut seen, 1 << 6)?;
                    r.top_p = map.next_value()?;
                }
                "top_k" => {
                    first_time(&mut seen, 1 << 7)?;
                    r.top_k = map.next_value()?;
                }
                "metadata" => {
                    first_time(&mut seen, 1 << 8)?;
                    metadata = map.next_value()?;
                }
                "stream" => {
                    first_time(&mut seen, 1 << 9)?;
                    stream = map.next_value()?;
                }
                // The full decoder reads these into the request's own fields.
                "tools" | "tool_choice" | "thinking" | "output_config" => return Err(decline()),
                _ => {
                    if rest.contains_key(&*key.0) {
                        return Err(decline());
                    }
                    let value: Value = map.next_value()?;
                    rest.insert(key.0.into_owned(), value);
                }
            }
        }
        // A missing required field: the full decoder names it.
        let (Some(model), Some(max_tokens), Some(wire_messages)) = (model, max_tokens, messages)
        else {
            return Err(decline());
        };
        let mut messages = Vec::with_capacity(wire_messages.len() + 1);
        if let Some(content) = system.filter(|c| !c.is_empty()) {
            messages.push(Message {
                role: Role::System,
                content,
                name: None,
                extras: Extras::default(),
            });
        }
        messages.extend(wire_messages);
        r.model = model;
        r.messages = messages;
        r.max_tokens = Some(max_tokens);
        r.stop = stop_sequences.unwrap_or_default();
        r.user = metadata.and_then(|m| m.user_id);
        r.stream = stream.unwrap_or(false);
        // Anthropic streams always carry usage (`message_start` and `message_delta`).
        r.include_usage = true;
        if !rest.is_empty() {
            r.extras = Extras::new(DialectId::Anthropic, rest);
        }
        Ok(r)
    }
}

/// `{"role": "user" | "assistant", "content": …}`.
#[derive(Clone, Copy)]
struct MessageSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(MessageSeed -> Message, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for MessageSeed<'_, RAW> {
    type Value = Message;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut role: Option<Role> = None;
        let mut content: Option<Vec<ContentPart>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "role" if role.is_none() => {
                    // Any other role: the full decoder explains what it expects.
                    role = Some(match &*map.next_value::<Key<'de>>()?.0 {
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        _ => return Err(decline()),
                    });
                }
                "content" if content.is_none() => {
                    content = Some(map.next_value_seed(BlocksSeed(self.0.after(&key)))?.parts);
                }
                _ => return Err(decline()),
            }
        }
        match (role, content) {
            (Some(role), Some(content)) => Ok(Message {
                role,
                content,
                name: None,
                extras: Extras::default(),
            }),
            _ => Err(decline()),
        }
    }
}

/// A message's content or the system prompt: a string (one text part) or text blocks.
struct Blocks {
    parts: Vec<ContentPart>,
    from_string: bool,
}

impl Blocks {
    fn text(text: Text) -> Self {
        Self {
            parts: vec![ContentPart::text(text)],
            from_string: true,
        }
    }

    fn is_empty_string(&self) -> bool {
        self.from_string
            && matches!(&self.parts[..], [ContentPart::Text { text, .. }] if text.is_empty())
    }
}

#[derive(Clone, Copy)]
struct BlocksSeed<'b, const RAW: bool>(Source<'b, RAW>);

// Raw: a raw string or a list; anything else is refused by the deserializer.
seed_visits_itself!(BlocksSeed -> Blocks, deserialize_bytes, deserialize_any);

impl<'de, const RAW: bool> Visitor<'de> for BlocksSeed<'_, RAW> {
    type Value = Blocks;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or text blocks")
    }
    string_visits!(Blocks, Blocks::text);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Blocks, A::Error> {
        Ok(Blocks {
            parts: read_parts(self.0, seq)?,
            from_string: false,
        })
    }
}

/// The system prompt: blocks, or `null` for none.
struct SystemSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(SystemSeed -> Option<Blocks>, deserialize_option);

impl<'de, const RAW: bool> Visitor<'de> for SystemSeed<'_, RAW> {
    type Value = Option<Blocks>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, text blocks or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<Blocks>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Blocks>, E> {
        Ok(None)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Blocks>, D::Error> {
        BlocksSeed(self.0).deserialize(d).map(Some)
    }
}

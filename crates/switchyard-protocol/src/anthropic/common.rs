//! The common Messages request read in one pass, straight from the body's bytes. The full decoder
//! (serde's derived one, in `wire.rs`) buffers the body twice over: the top-level object into
//! a map of its parts, for the unknown fields it keeps, and every content block, to find its
//! `type` before reading it; for a long prompt that costs several times the parse itself.
//!
//! Only what most clients send is read here: user and assistant messages whose content is a
//! string or text, images (base64, the text shared with the body as texts are, or by URL), a
//! user's documents (base64, shared alike, by URL, or plain text), tool
//! use and tool result blocks (a result's content a string or text blocks),
//! a system prompt of a string or text blocks, the plain request fields, and tools, tool choice,
//! thinking and output configuration, read into their wire types and converted by the full
//! decoder's own function, and thinking and redacted thinking blocks. Anything
//! else (other block types, a block's
//! or a message's unknown field, a field given twice, a value of the wrong type, malformed JSON)
//! answers `None`, and the request goes through the full decoder, which reads every form
//! and names the path of every error. For what it accepts, this gives exactly the full
//! decoder's request; a test holds the two to that.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ingress::{
    BLOCK_CACHE_CONTROL, IN_CONVERSATION, TypedParams, decode_typed, document_part, tool_use_part,
};
use super::wire::Metadata;
use crate::canonical::{
    ChatRequest, ContentPart, DocumentSource, Extras, ImageSource, Message, Role, Text,
};
use crate::dialect::DialectId;
use crate::json::Key;
use crate::one_pass::{
    ListSeed, Source, TextSeed, decline, parse_seed, raw_texts, read_parts, seed_visits_itself,
    string_visits,
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
        let mut typed = TypedParams {
            tools: None,
            tool_choice: None,
            thinking: None,
            output_config: None,
            max_tokens: 0,
        };
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
                        .next_value_seed(BlocksOrNullSeed(self.0.after(&key), BlockTypes::Text))?
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
                "tools" => {
                    first_time(&mut seen, 1 << 10)?;
                    typed.tools = map.next_value()?;
                }
                "tool_choice" => {
                    first_time(&mut seen, 1 << 11)?;
                    typed.tool_choice = map.next_value()?;
                }
                "thinking" => {
                    first_time(&mut seen, 1 << 12)?;
                    typed.thinking = map.next_value()?;
                }
                "output_config" => {
                    first_time(&mut seen, 1 << 13)?;
                    typed.output_config = map.next_value()?;
                }
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
        // Tools and the other typed fields mean here what they mean in the full decoder: its
        // own function reads them.
        typed.max_tokens = max_tokens;
        let typed = decode_typed(typed, &mut rest);
        r.tools = typed.tools;
        r.tool_choice = typed.tool_choice;
        r.parallel_tool_calls = typed.parallel_tool_calls;
        r.reasoning = typed.reasoning;
        r.response_format = typed.response_format;
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
        let mut content: Option<Blocks> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "role" if role.is_none() => {
                    // Any other role: the full decoder explains what it expects.
                    role = Some(match &*map.next_value::<Key<'de>>()?.0 {
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        "system" => Role::System,
                        _ => return Err(decline()),
                    });
                }
                "content" if content.is_none() => {
                    let seed = BlocksSeed(self.0.after(&key), BlockTypes::OfMessage);
                    content = Some(map.next_value_seed(seed)?);
                }
                _ => return Err(decline()),
            }
        }
        match (role, content) {
            // A system message among the messages: text only (the full decoder names any
            // other block), written where it stands for Anthropic.
            (Some(Role::System), Some(content)) => {
                if !content.cache_controls.is_empty()
                    || !content
                        .parts
                        .iter()
                        .all(|p| matches!(p, ContentPart::Text { .. }))
                {
                    return Err(decline());
                }
                let mut fields = Map::new();
                fields.insert(IN_CONVERSATION.into(), Value::Bool(true));
                Ok(Message {
                    role: Role::System,
                    content: content.parts,
                    name: None,
                    extras: Extras::new(DialectId::Anthropic, fields),
                })
            }
            // Document blocks belong to user messages; elsewhere the full decoder names the block.
            (Some(Role::Assistant), Some(content))
                if content
                    .parts
                    .iter()
                    .any(|p| matches!(p, ContentPart::Document { .. })) =>
            {
                Err(decline())
            }
            (Some(role), Some(content)) => Ok(Message {
                role,
                content: content.parts,
                name: None,
                extras: if content.cache_controls.is_empty() {
                    Extras::default()
                } else {
                    let mut fields = Map::new();
                    fields.insert(
                        BLOCK_CACHE_CONTROL.into(),
                        Value::Object(content.cache_controls),
                    );
                    Extras::new(DialectId::Anthropic, fields)
                },
            }),
            _ => Err(decline()),
        }
    }
}

/// A message's content or the system prompt: a string (one text part) or blocks.
struct Blocks {
    parts: Vec<ContentPart>,
    from_string: bool,
    /// `cache_control` markers of blocks whose part has no such field (tool uses and results),
    /// by block index, as the full decoder keeps them in the message's extras.
    cache_controls: Map<String, Value>,
}

impl Blocks {
    fn text(text: Text) -> Self {
        Self {
            parts: vec![ContentPart::text(text)],
            from_string: true,
            cache_controls: Map::new(),
        }
    }

    fn is_empty_string(&self) -> bool {
        self.from_string
            && matches!(&self.parts[..], [ContentPart::Text { text, .. }] if text.is_empty())
    }
}

/// A string or blocks of the types a place takes.
#[derive(Clone, Copy)]
struct BlocksSeed<'b, const RAW: bool>(Source<'b, RAW>, BlockTypes);

#[derive(Clone, Copy, PartialEq)]
enum BlockTypes {
    /// Text blocks only: the system prompt.
    Text,
    /// Text and image blocks: a tool result's content.
    OfToolResult,
    /// Every type the reader knows: a message's content.
    OfMessage,
}

// Raw: a raw string or a list; anything else is refused by the deserializer.
seed_visits_itself!(BlocksSeed -> Blocks, deserialize_bytes, deserialize_any);

impl<'de, const RAW: bool> Visitor<'de> for BlocksSeed<'_, RAW> {
    type Value = Blocks;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or blocks")
    }
    string_visits!(Blocks, Blocks::text);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blocks, A::Error> {
        let only_parts = |parts| Blocks {
            parts,
            from_string: false,
            cache_controls: Map::new(),
        };
        match self.1 {
            BlockTypes::Text => return Ok(only_parts(read_parts(self.0, seq)?)),
            BlockTypes::OfToolResult => {
                // An image's `cache_control` there is dropped, as the full decoder drops it.
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some((part, _)) = seq.next_element_seed(BlockSeed(self.0.unplaced()))? {
                    if !matches!(
                        part,
                        ContentPart::Text { .. }
                            | ContentPart::Image { .. }
                            | ContentPart::Document { .. }
                    ) {
                        return Err(decline());
                    }
                    parts.push(part);
                }
                return Ok(only_parts(parts));
            }
            BlockTypes::OfMessage => {}
        }
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(2));
        let mut cache_controls = Map::new();
        while let Some((part, cache_control)) =
            seq.next_element_seed(BlockSeed(self.0.unplaced()))?
        {
            if let Some(cache_control) = cache_control {
                cache_controls.insert(parts.len().to_string(), cache_control);
            }
            parts.push(part);
        }
        Ok(Blocks {
            parts,
            from_string: false,
            cache_controls,
        })
    }
}

/// A block: text, an image, a document, a tool use or result, thinking or redacted thinking,
/// with the `cache_control` marker of an image, a document or a tool use or result (its part
/// has no field for it).
/// Any other type, a field the type does not have, or a field given twice declines.
#[derive(Clone, Copy)]
struct BlockSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(BlockSeed -> (ContentPart, Option<Value>), deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for BlockSeed<'_, RAW> {
    type Value = (ContentPart, Option<Value>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content block")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind: Option<Key<'de>> = None;
        let mut text: Option<Text> = None;
        let mut cache_control: Option<Option<Value>> = None;
        let mut id: Option<String> = None;
        let mut name: Option<String> = None;
        let mut input: Option<Value> = None;
        let mut tool_use_id: Option<String> = None;
        let mut content: Option<Option<Blocks>> = None;
        let mut is_error: Option<Option<bool>> = None;
        let mut source: Option<BlockSource> = None;
        let mut thinking: Option<String> = None;
        let mut signature: Option<String> = None;
        let mut data: Option<String> = None;
        let mut title: Option<Option<String>> = None;
        let mut context: Option<Option<String>> = None;
        let mut citations: Option<Option<Value>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if kind.is_none() => kind = Some(map.next_value()?),
                "text" if text.is_none() => {
                    text = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "cache_control" if cache_control.is_none() => {
                    cache_control = Some(map.next_value()?);
                }
                "id" if id.is_none() => id = Some(map.next_value()?),
                "name" if name.is_none() => name = Some(map.next_value()?),
                "input" if input.is_none() => input = Some(map.next_value()?),
                "tool_use_id" if tool_use_id.is_none() => tool_use_id = Some(map.next_value()?),
                "content" if content.is_none() => {
                    let seed = BlocksOrNullSeed(self.0.after(&key), BlockTypes::OfToolResult);
                    content = Some(map.next_value_seed(seed)?);
                }
                "is_error" if is_error.is_none() => is_error = Some(map.next_value()?),
                "source" if source.is_none() => {
                    source = Some(map.next_value_seed(BlockSourceSeed(self.0))?);
                }
                "thinking" if thinking.is_none() => thinking = Some(map.next_value()?),
                "signature" if signature.is_none() => signature = Some(map.next_value()?),
                "data" if data.is_none() => data = Some(map.next_value()?),
                "title" if title.is_none() => title = Some(map.next_value()?),
                "context" if context.is_none() => context = Some(map.next_value()?),
                "citations" if citations.is_none() => citations = Some(map.next_value()?),
                _ => return Err(decline()),
            }
        }
        // Each block type takes its own fields; any other field present declines.
        let present = [
            text.is_some(),
            cache_control.is_some(),
            id.is_some(),
            name.is_some(),
            input.is_some(),
            tool_use_id.is_some(),
            content.is_some(),
            is_error.is_some(),
            source.is_some(),
            thinking.is_some(),
            signature.is_some(),
            data.is_some(),
            title.is_some(),
            context.is_some(),
            citations.is_some(),
        ]
        .into_iter()
        .enumerate()
        .fold(0u16, |bits, (i, seen)| bits | (u16::from(seen) << i));
        let only = |fields: u16| {
            if present & !fields == 0 {
                Ok(())
            } else {
                Err(decline())
            }
        };
        let cache_control = cache_control.flatten();
        let Some(kind) = kind else {
            return Err(decline());
        };
        match &*kind.0 {
            "text" => {
                only(TEXT | CACHE_CONTROL | CITATIONS)?;
                let text = text.ok_or_else(decline)?;
                Ok((
                    ContentPart::Text {
                        text,
                        cache_control,
                        citations: citations.flatten(),
                    },
                    None,
                ))
            }
            "image" => {
                only(SOURCE | CACHE_CONTROL)?;
                let source = match source {
                    Some(BlockSource::Base64 { media_type, data }) => {
                        ImageSource::Base64 { media_type, data }
                    }
                    Some(BlockSource::Url(url)) => ImageSource::Url(url),
                    Some(BlockSource::Text { .. }) | None => return Err(decline()),
                };
                Ok((
                    ContentPart::Image {
                        source,
                        detail: None,
                    },
                    cache_control,
                ))
            }
            "document" => {
                only(SOURCE | CACHE_CONTROL | TITLE | CONTEXT | CITATIONS)?;
                let source = match source.ok_or_else(decline)? {
                    BlockSource::Base64 { media_type, data } => {
                        DocumentSource::Base64 { media_type, data }
                    }
                    BlockSource::Url(url) => DocumentSource::Url(url),
                    BlockSource::Text { media_type, data } => {
                        DocumentSource::Text { media_type, data }
                    }
                };
                Ok((
                    document_part(
                        source,
                        title.flatten(),
                        context.flatten(),
                        citations.flatten(),
                    ),
                    cache_control,
                ))
            }
            "tool_use" => {
                only(ID | NAME | INPUT | CACHE_CONTROL)?;
                let (Some(id), Some(name), Some(input)) = (id, name, input) else {
                    return Err(decline());
                };
                Ok((tool_use_part(id, name, &input), cache_control))
            }
            "tool_result" => {
                only(TOOL_USE_ID | CONTENT | IS_ERROR | CACHE_CONTROL)?;
                Ok((
                    ContentPart::ToolResult {
                        tool_call_id: tool_use_id.ok_or_else(decline)?,
                        name: None,
                        content: content.flatten().map_or_else(Vec::new, |b| b.parts),
                        is_error: is_error.flatten().unwrap_or(false),
                    },
                    cache_control,
                ))
            }
            // A thinking model's earlier turns, as the full decoder reads them (an empty
            // signature is none).
            "thinking" => {
                only(THINKING | SIGNATURE)?;
                Ok((
                    ContentPart::Reasoning {
                        text: thinking.ok_or_else(decline)?,
                        signature: signature.filter(|s| !s.is_empty()),
                    },
                    None,
                ))
            }
            "redacted_thinking" => {
                only(DATA)?;
                Ok((
                    ContentPart::RedactedReasoning {
                        data: data.ok_or_else(decline)?,
                    },
                    None,
                ))
            }
            _ => Err(decline()),
        }
    }
}

/// A block's fields, as bits in the order `BlockSeed` lists them.
const TEXT: u16 = 1;
const CACHE_CONTROL: u16 = 1 << 1;
const ID: u16 = 1 << 2;
const NAME: u16 = 1 << 3;
const INPUT: u16 = 1 << 4;
const TOOL_USE_ID: u16 = 1 << 5;
const CONTENT: u16 = 1 << 6;
const IS_ERROR: u16 = 1 << 7;
const SOURCE: u16 = 1 << 8;
const THINKING: u16 = 1 << 9;
const SIGNATURE: u16 = 1 << 10;
const DATA: u16 = 1 << 11;
const TITLE: u16 = 1 << 12;
const CONTEXT: u16 = 1 << 13;
const CITATIONS: u16 = 1 << 14;

/// An image's or a document's `source`, as read; each block type takes the forms it has.
enum BlockSource {
    Base64 {
        media_type: String,
        data: Text,
    },
    Url(String),
    /// A document's plain text (`{"type": "text", "media_type", "data"}`).
    Text {
        media_type: String,
        data: Text,
    },
}

/// An image or document block's `source`: `{"type": "base64", "media_type", "data"}` (the
/// base64 text read as a text, so that it shares the body's bytes), `{"type": "url", "url"}` or
/// `{"type": "text", "media_type", "data"}`, each field at most once.
#[derive(Clone, Copy)]
struct BlockSourceSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(BlockSourceSeed -> BlockSource, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for BlockSourceSeed<'_, RAW> {
    type Value = BlockSource;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an image or document source")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BlockSource, A::Error> {
        let mut kind: Option<Key<'de>> = None;
        let mut media_type: Option<String> = None;
        let mut data: Option<Text> = None;
        let mut url: Option<String> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if kind.is_none() => kind = Some(map.next_value()?),
                "media_type" if media_type.is_none() => media_type = Some(map.next_value()?),
                "data" if data.is_none() => {
                    data = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "url" if url.is_none() => url = Some(map.next_value()?),
                _ => return Err(decline()),
            }
        }
        match (kind.as_ref().map(|k| &*k.0), media_type, data, url) {
            (Some("base64"), Some(media_type), Some(data), None) => {
                Ok(BlockSource::Base64 { media_type, data })
            }
            (Some("text"), Some(media_type), Some(data), None) => {
                Ok(BlockSource::Text { media_type, data })
            }
            (Some("url"), None, None, Some(url)) => Ok(BlockSource::Url(url)),
            _ => Err(decline()),
        }
    }
}

/// The system prompt or a tool result's content: a string, blocks or `null` for none.
struct BlocksOrNullSeed<'b, const RAW: bool>(Source<'b, RAW>, BlockTypes);

seed_visits_itself!(BlocksOrNullSeed -> Option<Blocks>, deserialize_option);

impl<'de, const RAW: bool> Visitor<'de> for BlocksOrNullSeed<'_, RAW> {
    type Value = Option<Blocks>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, blocks or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<Blocks>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Blocks>, E> {
        Ok(None)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Blocks>, D::Error> {
        BlocksSeed(self.0, self.1).deserialize(d).map(Some)
    }
}

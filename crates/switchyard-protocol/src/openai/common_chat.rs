//! The common Chat Completions request read in one pass, straight from the body's bytes: the
//! full decoder builds a `Value` tree of the body first and then takes its fields one by one,
//! which costs several times the parse itself.
//!
//! Only what most clients send is read here: messages of any role with text content (a string
//! or text parts) or images (an inline image's base64 text shared with the body, as texts are),
//! a user's files (documents, their data shared with the body too), and a name, an assistant's
//! tool calls and reasoning, a tool's result, the plain request fields, and tools, tool choice
//! and response format (converted by the full decoder's own functions).
//! Anything else (a part's unknown field or one given twice, a value out of
//! range or of the wrong type, malformed JSON) answers `None`, and the request goes through the
//! full decoder, which reads every form and names the path of every error. For what it
//! accepts, this gives exactly the full decoder's request; a test holds the two to that.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ingress::{self, StringOrList, WireRole, WireToolCall};
use crate::canonical::{
    ChatRequest, ContentPart, DocumentSource, Extras, ImageSource, Message, Reasoning, Role, Text,
};
use crate::dialect::DialectId;
use crate::error::DecodeError;
use crate::json::{Key, ObjectReader};
use crate::one_pass::{
    ListSeed, Source, TextSeed, decline, parse_seed, raw_texts, seed_visits_itself, string_visits,
};

/// The request, or `None` when it needs the full decoder. The message texts of a body without
/// control bytes are read as raw strings, and texts without escapes share the body's bytes (see
/// `one_pass`).
pub(super) fn decode(body: &Bytes) -> Option<ChatRequest> {
    if raw_texts(body) {
        parse_seed(body, true, RequestVisitor(Source::<true>::new(body)))
    } else {
        parse_seed(body, false, RequestVisitor(Source::<false>::new(body)))
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// `RAW`: message texts are read as raw strings (the body has no control byte).
struct RequestVisitor<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(RequestVisitor -> ChatRequest, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for RequestVisitor<'_, RAW> {
    type Value = ChatRequest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chat completion request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
        let mut model: Option<String> = None;
        let mut messages: Option<Vec<Message>> = None;
        let mut max_completion_tokens: Option<u32> = None;
        let mut max_tokens: Option<u32> = None;
        let mut effort: Option<String> = None;
        let mut stream: Option<bool> = None;
        let mut stream_options: Option<StreamOptions> = None;
        let mut stop: Option<StringOrList> = None;
        let mut r = ChatRequest::default();
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "model" => model = Some(map.next_value()?),
                "messages" => {
                    messages = Some(map.next_value_seed(ListSeed(MessageSeed(self.0)))?);
                }
                "parallel_tool_calls" => r.parallel_tool_calls = map.next_value()?,
                "max_completion_tokens" => max_completion_tokens = map.next_value()?,
                "max_tokens" => max_tokens = map.next_value()?,
                "temperature" => r.temperature = map.next_value()?,
                "top_p" => r.top_p = map.next_value()?,
                "stop" => stop = map.next_value()?,
                "seed" => r.seed = map.next_value()?,
                "frequency_penalty" => r.frequency_penalty = map.next_value()?,
                "presence_penalty" => r.presence_penalty = map.next_value()?,
                "reasoning_effort" => effort = map.next_value()?,
                "user" => r.user = map.next_value()?,
                "metadata" => r.metadata = map.next_value()?,
                "stream" => stream = map.next_value()?,
                "stream_options" => stream_options = map.next_value()?,
                "n" => r.n = map.next_value()?,
                _ => {
                    let value: Value = map.next_value()?;
                    rest.insert(key.0.into_owned(), value);
                }
            }
        }
        let (Some(model), Some(messages)) = (model, messages) else {
            return Err(decline());
        };
        // Tools, tool choice and response format are small: read from their values by the
        // full decoder's own functions, so they mean exactly what they mean there.
        let mut typed = Map::new();
        for key in TYPED_FIELDS {
            if let Some(value) = rest.remove(key) {
                typed.insert(key.to_owned(), value);
            }
        }
        if !typed.is_empty() {
            let mut obj = ObjectReader::from_value(Value::Object(typed), "").map_err(declined)?;
            r.tools = ingress::decode_tools(&mut obj).map_err(declined)?;
            r.tool_choice =
                ingress::decode_tool_choice(&mut obj, &mut r.tools).map_err(declined)?;
            r.response_format = ingress::decode_response_format(&mut obj).map_err(declined)?;
        }
        // Out of range: the full decoder says why.
        if messages.is_empty()
            || r.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t))
            || r.n.is_some_and(|n| n != 1)
        {
            return Err(decline());
        }
        r.model = model;
        r.messages = messages;
        r.max_tokens = max_completion_tokens.or(max_tokens);
        r.stop = stop.map_or_else(Vec::new, StringOrList::into_vec);
        r.reasoning = effort.map(|e| Reasoning {
            effort: Some(e),
            budget_tokens: None,
        });
        r.stream = stream.unwrap_or(false);
        r.include_usage = stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        r.extras = Extras::new(DialectId::OpenAi, rest);
        Ok(r)
    }
}

/// The request fields of typed values the full decoder's functions read.
const TYPED_FIELDS: [&str; 3] = ["tools", "tool_choice", "response_format"];

/// A full decoder's error, here only a reason to decline.
fn declined<E: de::Error>(_: DecodeError) -> E {
    decline()
}

/// A message of any role: its text content, an assistant's tool calls, a tool's result.
#[derive(Clone, Copy)]
struct MessageSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(MessageSeed -> Message, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for MessageSeed<'_, RAW> {
    type Value = Message;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut role: Option<WireRole> = None;
        let mut name: Option<String> = None;
        let mut content = Vec::new();
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "role" => role = Some(map.next_value()?),
                "name" => name = map.next_value()?,
                "content" => content = map.next_value_seed(ContentSeed(self.0.after(&key)))?,
                _ => {
                    let value: Value = map.next_value()?;
                    rest.insert(key.0.into_owned(), value);
                }
            }
        }
        // File parts belong to user messages; elsewhere the full decoder names the part.
        if !matches!(role, Some(WireRole::User))
            && content
                .iter()
                .any(|p| matches!(p, ContentPart::Document { .. }))
        {
            return Err(decline());
        }
        // As in the full decoder, `tool_calls` belongs to an assistant message and
        // `tool_call_id` to a tool message; on another role each is an extra field.
        let role = match role {
            Some(WireRole::System) => Role::System,
            Some(WireRole::Developer) => Role::Developer,
            Some(WireRole::User) => Role::User,
            Some(WireRole::Assistant) => {
                // Reasoning a compatible server returned, first in the content, as the full
                // decoder puts it (`reasoning` ahead of `reasoning_content` when both are given).
                for key in ["reasoning_content", "reasoning"] {
                    match rest.remove(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(text)) => content.insert(
                            0,
                            ContentPart::Reasoning {
                                text,
                                signature: None,
                            },
                        ),
                        Some(_) => return Err(decline()),
                    }
                }
                if let Some(calls) = rest.remove("tool_calls").filter(|v| !v.is_null()) {
                    let calls: Vec<WireToolCall> =
                        serde_json::from_value(calls).map_err(|_| decline())?;
                    content.extend(calls.into_iter().map(WireToolCall::into_part));
                }
                Role::Assistant
            }
            Some(WireRole::Tool) => {
                let Some(Value::String(tool_call_id)) = rest.remove("tool_call_id") else {
                    return Err(decline());
                };
                content = ingress::tool_message_content(tool_call_id, name.clone(), content);
                Role::Tool
            }
            None => return Err(decline()),
        };
        Ok(Message {
            role,
            content,
            name,
            extras: Extras::new(DialectId::OpenAi, rest),
        })
    }
}

/// A message's content: a string, text parts, or `null`.
struct ContentSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(ContentSeed -> Vec<ContentPart>, deserialize_option, deserialize_any);

impl<'de, const RAW: bool> Visitor<'de> for ContentSeed<'_, RAW> {
    type Value = Vec<ContentPart>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or text parts")
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<ContentPart>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<ContentPart>, E> {
        Ok(Vec::new())
    }
    /// Raw: what is not `null` is a raw string or a list.
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<ContentPart>, D::Error> {
        d.deserialize_bytes(self)
    }
    string_visits!(Vec<ContentPart>, |text| vec![ContentPart::text(text)]);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<ContentPart>, A::Error> {
        ListSeed(PartSeed(self.0.unplaced())).visit_seq(seq)
    }
}

/// A content part: text (`{"type": "text", "text", "cache_control"}`), an image
/// (`{"type": "image_url", "image_url": {"url", "detail"}}`) or a file
/// (`{"type": "file", "file": {"file_data" | "file_id", "filename"}}`, a document; only a user
/// message may hold one, which `MessageSeed` checks), each field at most once. An image's URL and
/// a file's data are read as texts, so that a data URI's base64 text shares the body's bytes.
#[derive(Clone, Copy)]
struct PartSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(PartSeed -> ContentPart, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for PartSeed<'_, RAW> {
    type Value = ContentPart;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentPart, A::Error> {
        let mut kind: Option<Key<'de>> = None;
        let mut text: Option<Text> = None;
        let mut cache_control: Option<Option<Value>> = None;
        let mut image: Option<(Text, Option<String>)> = None;
        let mut file: Option<ContentPart> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if kind.is_none() => kind = Some(map.next_value()?),
                "file" if file.is_none() => file = Some(map.next_value_seed(FileSeed(self.0))?),
                "text" if text.is_none() => {
                    text = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "cache_control" if cache_control.is_none() => {
                    cache_control = Some(map.next_value()?);
                }
                "image_url" if image.is_none() => {
                    image = Some(map.next_value_seed(ImageUrlSeed(self.0))?);
                }
                _ => return Err(decline()),
            }
        }
        match (kind.as_ref().map(|k| &*k.0), text, image, file) {
            (Some("text"), Some(text), None, None) => Ok(ContentPart::Text {
                text,
                cache_control: cache_control.flatten(),
                citations: None,
            }),
            (Some("image_url"), None, Some((url, detail)), None) if cache_control.is_none() => {
                Ok(ContentPart::Image {
                    source: ImageSource::from_url_text(&url),
                    detail,
                })
            }
            (Some("file"), None, None, Some(document)) if cache_control.is_none() => Ok(document),
            _ => Err(decline()),
        }
    }
}

/// A file part's `file`: a document, from its `file_data` (a `data:` URI, read as a text) or
/// its `file_id`, named by its `filename`; each field at most once.
#[derive(Clone, Copy)]
struct FileSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(FileSeed -> ContentPart, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for FileSeed<'_, RAW> {
    type Value = ContentPart;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a file")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentPart, A::Error> {
        let mut data: Option<Text> = None;
        let mut id: Option<String> = None;
        let mut filename: Option<Option<String>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "file_data" if data.is_none() => {
                    data = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "file_id" if id.is_none() => id = Some(map.next_value()?),
                "filename" if filename.is_none() => filename = Some(map.next_value()?),
                _ => return Err(decline()),
            }
        }
        let source = match (data, id) {
            (Some(data), None) => DocumentSource::from_data_uri(&data).ok_or_else(decline)?,
            (None, Some(id)) => DocumentSource::FileId(id),
            _ => return Err(decline()),
        };
        Ok(ContentPart::Document {
            source,
            title: filename.flatten(),
            context: None,
            extras: Extras::default(),
        })
    }
}

/// An image part's `image_url`: its `url` (read as a text) and `detail`, each at most once.
#[derive(Clone, Copy)]
struct ImageUrlSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(ImageUrlSeed -> (Text, Option<String>), deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for ImageUrlSeed<'_, RAW> {
    type Value = (Text, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an image URL")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut url: Option<Text> = None;
        let mut detail: Option<Option<String>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "url" if url.is_none() => {
                    url = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "detail" if detail.is_none() => detail = Some(map.next_value()?),
                _ => return Err(decline()),
            }
        }
        Ok((url.ok_or_else(decline)?, detail.flatten()))
    }
}

//! The common Chat Completions request read in one pass, straight from the body's bytes: the
//! full decoder builds a `Value` tree of the body first and then takes its fields one by one,
//! which costs several times the parse itself.
//!
//! Only what most clients send is read here: messages of a system, developer, user or assistant
//! role with text content (a string or text parts) and a name, and the plain request fields.
//! Anything else (tools, tool choice, response format, tool messages or calls, images,
//! reasoning, a part's unknown field or one given twice, a value out of range or of the wrong
//! type, malformed JSON) answers `None`, and the request goes through the full decoder, which
//! reads every form and names the path of every error. For what it accepts, this gives exactly
//! the full decoder's request; a test holds the two to that.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ingress::{StringOrList, WireRole};
use crate::canonical::{ChatRequest, ContentPart, Extras, Message, Reasoning, Role};
use crate::dialect::DialectId;
use crate::json::Key;
use crate::one_pass::{
    ListSeed, Source, decline, parse_seed, raw_texts, read_parts, seed_visits_itself, string_visits,
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
                // The full decoder reads these into the request's own fields.
                "tools" | "tool_choice" | "response_format" => return Err(decline()),
                _ => {
                    let value: Value = map.next_value()?;
                    rest.insert(key.0.into_owned(), value);
                }
            }
        }
        let (Some(model), Some(messages)) = (model, messages) else {
            return Err(decline());
        };
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

/// A message of a system, developer, user or assistant role.
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
                // What the full decoder reads for an assistant or tool message.
                "reasoning_content" | "reasoning" | "tool_calls" | "tool_call_id" => {
                    return Err(decline());
                }
                _ => {
                    let value: Value = map.next_value()?;
                    rest.insert(key.0.into_owned(), value);
                }
            }
        }
        let role = match role {
            Some(WireRole::System) => Role::System,
            Some(WireRole::Developer) => Role::Developer,
            Some(WireRole::User) => Role::User,
            Some(WireRole::Assistant) => Role::Assistant,
            Some(WireRole::Tool) | None => return Err(decline()),
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
        read_parts(self.0, seq)
    }
}

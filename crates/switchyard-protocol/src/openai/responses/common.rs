//! The common Responses API request read in one pass, straight from the body's bytes (see
//! `one_pass`): instructions and an `input` of text, as a string or as messages of `input_text`
//! and `output_text` parts, and the plain request fields; tools, tool choice, text format and
//! reasoning converted by the full decoder's own functions. Their texts share the body's bytes,
//! so a long prompt is not copied into the provider's request. Anything else (function calls
//! and their outputs, reasoning items, images, files, what needs stored state, a value out of
//! range or of the wrong type) answers `None`, and the request goes through the full decoder,
//! which reads every form and names the path of every error. For what it accepts, this gives
//! exactly the full decoder's request; a test holds the two to that.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::decode::{
    IGNORED_FIELDS, NEEDS_STORED_STATE, decode_reasoning_config, decode_text, decode_tool_choice,
    decode_tools, message,
};
use super::{INSTRUCTIONS, REASONING_SUMMARY, STORE, TOOLS_AS_SENT};
use crate::canonical::{ChatRequest, ContentPart, Extras, Message, Role, Text};
use crate::dialect::DialectId;
use crate::error::DecodeError;
use crate::json::{Key, ObjectReader};
use crate::one_pass::{
    ListSeed, Source, TextSeed, decline, parse_seed, raw_texts, seed_visits_itself, string_visits,
};

/// The request, or `None` when it needs the full decoder.
pub(super) fn decode(body: &Bytes) -> Option<ChatRequest> {
    if raw_texts(body) {
        parse_seed(body, true, RequestVisitor(Source::<true>::new(body)))
    } else {
        parse_seed(body, false, RequestVisitor(Source::<false>::new(body)))
    }
}

/// The request fields of typed values the full decoder's functions read.
const TYPED_FIELDS: [&str; 4] = ["tools", "tool_choice", "text", "reasoning"];

/// A full decoder's error, here only a reason to decline.
fn declined<E: de::Error>(_: DecodeError) -> E {
    decline()
}

struct RequestVisitor<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(RequestVisitor -> ChatRequest, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for RequestVisitor<'_, RAW> {
    type Value = ChatRequest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a response request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
        let mut model: Option<String> = None;
        let mut instructions: Option<Text> = None;
        let mut input: Option<Vec<Message>> = None;
        let mut stream: Option<bool> = None;
        let mut r = ChatRequest::default();
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "model" if model.is_none() => model = Some(map.next_value()?),
                "instructions" if instructions.is_none() => {
                    instructions = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "input" if input.is_none() => {
                    input = Some(map.next_value_seed(InputSeed(self.0.after(&key)))?);
                }
                "max_output_tokens" => r.max_tokens = map.next_value()?,
                "temperature" => r.temperature = map.next_value()?,
                "top_p" => r.top_p = map.next_value()?,
                "user" => r.user = map.next_value()?,
                "metadata" => r.metadata = map.next_value()?,
                "parallel_tool_calls" => r.parallel_tool_calls = map.next_value()?,
                "stream" => stream = map.next_value()?,
                "store" => {
                    if let Some(store) = map.next_value::<Option<bool>>()? {
                        rest.insert(STORE.to_owned(), Value::Bool(store));
                    }
                }
                "model" | "instructions" | "input" | "background" => return Err(decline()),
                key if NEEDS_STORED_STATE.contains(&key) => return Err(decline()),
                key if IGNORED_FIELDS.contains(&key) => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                _ => {
                    let value: Value = map.next_value()?;
                    rest.insert(key.0.into_owned(), value);
                }
            }
        }
        let (Some(model), Some(input)) = (model, input) else {
            return Err(decline());
        };
        if input.is_empty() || r.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(decline());
        }
        let mut typed = Map::new();
        for key in TYPED_FIELDS {
            if let Some(value) = rest.remove(key) {
                typed.insert(key.to_owned(), value);
            }
        }
        if !typed.is_empty() {
            let mut obj = ObjectReader::from_value(Value::Object(typed), "").map_err(declined)?;
            let mut tools = decode_tools(&mut obj, Vec::new()).map_err(declined)?;
            r.tool_choice = decode_tool_choice(&mut obj, &mut tools).map_err(declined)?;
            r.tools = tools.functions;
            r.web_search = tools.web_search;
            if let Some(as_sent) = tools.as_sent {
                rest.insert(TOOLS_AS_SENT.to_owned(), as_sent);
            }
            r.response_format = decode_text(&mut obj).map_err(declined)?;
            let summary;
            (r.reasoning, summary) = decode_reasoning_config(&mut obj).map_err(declined)?;
            if let Some(summary) = summary {
                rest.insert(REASONING_SUMMARY.to_owned(), Value::String(summary));
            }
        }
        if let Some(instructions) = instructions {
            // Repeated for the response, as the full decoder keeps it.
            rest.insert(
                INSTRUCTIONS.to_owned(),
                Value::String(instructions.as_str().to_owned()),
            );
            r.messages.push(message(
                Role::Developer,
                vec![ContentPart::text(instructions)],
            ));
        }
        // An assistant's consecutive messages are one turn, as in the full decoder.
        for message in input {
            match r.messages.last_mut() {
                Some(last) if last.role == Role::Assistant && message.role == Role::Assistant => {
                    last.content.extend(message.content);
                }
                _ => r.messages.push(message),
            }
        }
        r.model = model;
        r.stream = stream.unwrap_or(false);
        r.include_usage = true;
        r.extras = Extras::new(DialectId::OpenAiResponses, rest);
        Ok(r)
    }
}

/// `input`: a string (one user message) or a list of messages.
struct InputSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(InputSeed -> Vec<Message>, deserialize_bytes, deserialize_any);

impl<'de, const RAW: bool> Visitor<'de> for InputSeed<'_, RAW> {
    type Value = Vec<Message>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or messages")
    }
    string_visits!(Vec<Message>, |text| vec![message(
        Role::User,
        vec![ContentPart::text(text)]
    )]);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<Message>, A::Error> {
        ListSeed(MessageSeed(self.0.unplaced())).visit_seq(seq)
    }
}

/// A message item: `role`, `content` (a string or text parts), an optional `type` that must
/// be `message`; its `id`, `status` and `phase` are dropped, as the full decoder drops them.
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
        let mut kind_seen = false;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if !kind_seen => {
                    kind_seen = true;
                    if map.next_value::<Key<'de>>()?.0 != "message" {
                        return Err(decline());
                    }
                }
                "role" if role.is_none() => {
                    role = Some(match &*map.next_value::<Key<'de>>()?.0 {
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        "system" => Role::System,
                        "developer" => Role::Developer,
                        _ => return Err(decline()),
                    });
                }
                "content" if content.is_none() => {
                    content = Some(map.next_value_seed(ContentSeed(self.0.after(&key)))?);
                }
                "id" | "status" | "phase" => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                _ => return Err(decline()),
            }
        }
        match (role, content) {
            (Some(role), Some(content)) => Ok(message(role, content)),
            _ => Err(decline()),
        }
    }
}

/// A message's content: a string or text parts.
struct ContentSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(ContentSeed -> Vec<ContentPart>, deserialize_bytes, deserialize_any);

impl<'de, const RAW: bool> Visitor<'de> for ContentSeed<'_, RAW> {
    type Value = Vec<ContentPart>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or text parts")
    }
    string_visits!(Vec<ContentPart>, |text| vec![ContentPart::text(text)]);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<ContentPart>, A::Error> {
        ListSeed(PartSeed(self.0.unplaced())).visit_seq(seq)
    }
}

/// A text part, `input_text` or `output_text` (an earlier answer's, whose `annotations` and
/// `logprobs` are dropped as the full decoder drops them), each field at most once.
#[derive(Clone, Copy)]
struct PartSeed<'b, const RAW: bool>(Source<'b, RAW>);

seed_visits_itself!(PartSeed -> ContentPart, deserialize_map);

impl<'de, const RAW: bool> Visitor<'de> for PartSeed<'_, RAW> {
    type Value = ContentPart;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a text part")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentPart, A::Error> {
        let mut is_text: Option<bool> = None;
        let mut text: Option<Text> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" if is_text.is_none() => {
                    let kind = map.next_value::<Key<'de>>()?;
                    is_text = Some(matches!(&*kind.0, "input_text" | "output_text"));
                }
                "text" if text.is_none() => {
                    text = Some(map.next_value_seed(TextSeed(self.0.after(&key)))?);
                }
                "annotations" | "logprobs" => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                _ => return Err(decline()),
            }
        }
        match (is_text, text) {
            (Some(true), Some(text)) => Ok(ContentPart::text(text)),
            _ => Err(decline()),
        }
    }
}

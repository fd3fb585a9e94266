//! The common Anthropic `Message` read by hand, in one pass over its text. Its serde decoder
//! (`wire::Message`) keeps unmodelled members through a flattened map and reads content blocks
//! as an internally tagged enum, and serde buffers both into an intermediate tree before the
//! fields are read. The reader takes text and thinking blocks and the usage counts into the
//! same values, keeps the other members as the decoder does, and gives up on everything else
//! (tool use and other block kinds, escaped keys, a duplicate member, a count that is not an
//! unsigned integer, any fault); that goes to the decoder, which reads every form and words
//! every error. The tests hold the two to the same answers.

//!
//! A stream's events are read the same way (`read_event`): their serde decoder is an internally
//! tagged enum, which buffers every event into a tree before reading its fields.

use serde_json::{Map, Value};

use super::wire::{
    CacheCreation, ContentBlock, ContentBlockDelta, Message, MessageDelta, MessageStreamEvent,
    Usage,
};
use crate::scan::{Cursor, set};

/// The message, if it is in the common form.
pub(super) fn read(body: &[u8]) -> Option<Message> {
    let mut c = Cursor::new(crate::json::utf8(body)?);
    let message = message(&mut c)?;
    c.at_end().then_some(message)
}

/// A stream event's data, if it is in the common form: the members of its `type`, which may
/// come anywhere (the API writes it first; a server that sorts keys, last); an in-band error
/// and a tool call's first input are left to the decoder. With a text delta, the JSON string
/// its text is written as (a slice of `data`, which frames the text deltas after it).
pub(super) fn read_event(data: &str) -> Option<(MessageStreamEvent, Option<&str>)> {
    let mut c = Cursor::new(data);
    let mut kind = None;
    let mut members = EventMembers::default();
    // A member met before the type is kept as its JSON text, and read once the type is known.
    let mut early: [Option<&str>; 5] = [None; 5];
    let mut seen = [false; 6];
    c.object(|c, key| {
        let member = match key {
            "type" => return set(&mut seen[5], &mut kind, Some(c.string()?)),
            "index" => Member::Index,
            "message" => Member::Message,
            "content_block" => Member::ContentBlock,
            "delta" => Member::Delta,
            "usage" => Member::Usage,
            _ => return c.skip(),
        };
        if std::mem::replace(&mut seen[member as usize], true) {
            return None;
        }
        match kind.as_deref() {
            Some(kind) => members.read(kind, member, c),
            None => {
                early[member as usize] = Some(c.raw_value()?);
                Some(())
            }
        }
    })?;
    if !c.at_end() {
        return None;
    }
    let kind = kind?;
    for (member, text) in Member::ALL.into_iter().zip(early) {
        if let Some(text) = text {
            whole(text, |c| members.read(&kind, member, c))?;
        }
    }
    let EventMembers {
        index,
        message,
        content_block,
        block_delta,
        message_delta,
        usage,
    } = members;
    // A member its type requires and did not get leaves the decoder's error to stand.
    let mut text_at = None;
    let event = match kind.as_ref() {
        "message_start" => MessageStreamEvent::MessageStart { message: message? },
        "content_block_start" => MessageStreamEvent::ContentBlockStart {
            index: index?,
            content_block: content_block?,
        },
        "content_block_delta" => {
            let (delta, at) = block_delta?;
            text_at = at;
            MessageStreamEvent::ContentBlockDelta {
                index: index?,
                delta,
            }
        }
        "content_block_stop" => MessageStreamEvent::ContentBlockStop { index: index? },
        "message_delta" => MessageStreamEvent::MessageDelta {
            delta: message_delta?,
            usage,
        },
        "message_stop" => MessageStreamEvent::MessageStop,
        "ping" => MessageStreamEvent::Ping,
        "error" => return None,
        _ => MessageStreamEvent::Unknown,
    };
    Some((event, text_at))
}

/// The members a stream event's types read.
#[derive(Clone, Copy)]
enum Member {
    Index,
    Message,
    ContentBlock,
    Delta,
    Usage,
}

impl Member {
    const ALL: [Member; 5] = [
        Member::Index,
        Member::Message,
        Member::ContentBlock,
        Member::Delta,
        Member::Usage,
    ];
}

/// What a stream event's members held, each read as its event's type reads it.
#[derive(Default)]
struct EventMembers<'a> {
    index: Option<u32>,
    message: Option<Message>,
    content_block: Option<ContentBlock>,
    block_delta: Option<(ContentBlockDelta, Option<&'a str>)>,
    message_delta: Option<MessageDelta>,
    usage: Option<Usage>,
}

impl<'a> EventMembers<'a> {
    /// Reads `member` as an event of type `kind` has it, or skips it if that type has none.
    fn read(&mut self, kind: &str, member: Member, c: &mut Cursor<'a>) -> Option<()> {
        match (kind, member) {
            (
                "content_block_start" | "content_block_delta" | "content_block_stop",
                Member::Index,
            ) => {
                self.index = Some(u32::try_from(c.uint()?).ok()?);
            }
            ("message_start", Member::Message) => self.message = Some(message(c)?),
            ("content_block_start", Member::ContentBlock) => {
                self.content_block = Some(block(c, true)?);
            }
            ("content_block_delta", Member::Delta) => self.block_delta = Some(block_delta(c)?),
            ("message_delta", Member::Delta) => self.message_delta = Some(message_delta(c)?),
            ("message_delta", Member::Usage) => self.usage = c.optional(usage)?,
            _ => c.skip()?,
        }
        Some(())
    }
}

/// `read` applied to the whole of `text`, a value's JSON text (slices it returns stay slices
/// of the text `text` was cut from).
fn whole<'a, T>(text: &'a str, read: impl FnOnce(&mut Cursor<'a>) -> Option<T>) -> Option<T> {
    let mut c = Cursor::new(text);
    let value = read(&mut c)?;
    c.at_end().then_some(value)
}

/// A content block delta, and where a text delta's JSON string lies.
fn block_delta<'a>(c: &mut Cursor<'a>) -> Option<(ContentBlockDelta, Option<&'a str>)> {
    // type, text, partial_json, thinking, signature: read whatever the kind, kept by kind.
    let mut fields: [Option<String>; 5] = Default::default();
    let mut seen = [false; 5];
    let mut text_at = None;
    c.object(|c, key| {
        let i = match key {
            "type" => 0,
            "text" => {
                (c.peek()? == b'"').then_some(())?;
                let raw = c.raw_value()?;
                text_at = Some(raw);
                let text = match crate::text_frame::plain_string(raw) {
                    Some(plain) => plain.to_owned(),
                    None => serde_json::from_str(raw).ok()?,
                };
                return set(&mut seen[1], &mut fields[1], Some(text));
            }
            "partial_json" => 2,
            "thinking" => 3,
            "signature" => 4,
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut fields[i], Some(c.string()?.into_owned()))
    })?;
    let [kind, text, partial_json, thinking, signature] = fields;
    let delta = match kind?.as_str() {
        "text_delta" => ContentBlockDelta::TextDelta { text: text? },
        "input_json_delta" => ContentBlockDelta::InputJsonDelta {
            partial_json: partial_json?,
        },
        "thinking_delta" => ContentBlockDelta::ThinkingDelta {
            thinking: thinking?,
        },
        "signature_delta" => ContentBlockDelta::SignatureDelta {
            signature: signature?,
        },
        // A citation is left to the serde decoder, which keeps it whole.
        "citations_delta" => return None,
        _ => ContentBlockDelta::Other,
    };
    let text_at = text_at.filter(|_| matches!(delta, ContentBlockDelta::TextDelta { .. }));
    Some((delta, text_at))
}

/// `message_delta.delta`: the stop reason and sequence, each may be null or absent.
fn message_delta(c: &mut Cursor<'_>) -> Option<MessageDelta> {
    let mut texts: [Option<String>; 2] = Default::default();
    let mut seen = [false; 2];
    c.object(|c, key| {
        let i = match key {
            "stop_reason" => 0,
            "stop_sequence" => 1,
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut texts[i], c.optional_string()?)
    })?;
    let [stop_reason, stop_sequence] = texts;
    Some(MessageDelta {
        stop_reason,
        stop_sequence,
    })
}

/// A `Message` object (a whole answer, or the skeleton of `message_start`).
fn message(c: &mut Cursor<'_>) -> Option<Message> {
    let mut texts: [Option<String>; 6] = Default::default();
    let mut seen = [false; 8];
    let (mut content, mut usage) = (Vec::new(), None);
    let mut rest = Map::new();
    c.object(|c, key| {
        // id, type, role, model, stop_reason, stop_sequence; then content, usage.
        let i = match key {
            "id" => 0,
            "type" => 1,
            "role" => 2,
            "model" => 3,
            "stop_reason" => 4,
            "stop_sequence" => 5,
            "content" => {
                let blocks = c.list(|c| block(c, false))?;
                return set(&mut seen[6], &mut content, blocks);
            }
            "usage" => return set(&mut seen[7], &mut usage, c.optional(self::usage)?),
            _ => {
                let value = c.value()?;
                // A member named twice is left to the decoder.
                return rest.insert(key.to_owned(), value).is_none().then_some(());
            }
        };
        // The stop reason and sequence may be null; the other texts are strings.
        let value = if i >= 4 {
            c.optional_string()?
        } else {
            Some(c.string()?.into_owned())
        };
        set(&mut seen[i], &mut texts[i], value)
    })?;
    let [id, kind, role, model, stop_reason, stop_sequence] = texts;
    Some(Message {
        // Required by the decoder: without it, its error stands.
        id: id?,
        kind: kind.unwrap_or_else(|| "message".to_owned()),
        role: role.unwrap_or_else(|| "assistant".to_owned()),
        content,
        model: model.unwrap_or_default(),
        stop_reason,
        stop_sequence,
        usage,
        rest,
    })
}

/// A content block: text or thinking, and with `tool_use` a tool call without input (as a
/// stream's `content_block_start` opens one: its input follows in deltas).
fn block(c: &mut Cursor<'_>, tool_use: bool) -> Option<ContentBlock> {
    // type, text, thinking, signature, id, name: read whatever the kind, then kept by kind.
    let mut fields: [Option<String>; 6] = Default::default();
    let mut seen = [false; 7];
    let mut input = None;
    c.object(|c, key| {
        let i = match key {
            "type" => 0,
            "text" => 1,
            "thinking" => 2,
            "signature" => 3,
            "id" if tool_use => 4,
            "name" if tool_use => 5,
            // A cited text's citations are left to the serde decoder; `null` says none.
            "citations" => return (c.raw_value()? == "null").then_some(()),
            "input" if tool_use => {
                // Only the empty object the API opens a call with.
                if !(c.eat(b'{') && c.eat(b'}')) {
                    return None;
                }
                return set(&mut seen[6], &mut input, Some(Value::Object(Map::new())));
            }
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut fields[i], Some(c.string()?.into_owned()))
    })?;
    let [kind, text, thinking, signature, id, name] = fields;
    Some(match kind?.as_str() {
        "text" => ContentBlock::Text {
            text: text.unwrap_or_default(),
            citations: None,
        },
        "thinking" => ContentBlock::Thinking {
            thinking: thinking.unwrap_or_default(),
            signature: signature.unwrap_or_default(),
        },
        "tool_use" if tool_use => ContentBlock::ToolUse {
            id: id?,
            name: name?,
            input: input.unwrap_or(Value::Null),
        },
        _ => return None,
    })
}

/// `usage`: the four counts, the cache writes by lifetime and the server tools' requests; its
/// other members (tier, geography) skipped. Server tools' requests other than null are left to
/// the decoder.
fn usage(c: &mut Cursor<'_>) -> Option<Usage> {
    let mut counts: [Option<u64>; 4] = [None; 4];
    let mut seen = [false; 5];
    let mut cache_creation = None;
    c.object(|c, key| {
        let i = match key {
            "input_tokens" => 0,
            "output_tokens" => 1,
            "cache_creation_input_tokens" => 2,
            "cache_read_input_tokens" => 3,
            "cache_creation" => {
                return set(&mut seen[4], &mut cache_creation, cache_writes(c)?);
            }
            "server_tool_use" => return c.null().then_some(()),
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut counts[i], c.optional_uint()?)
    })?;
    Some(Usage {
        input_tokens: counts[0],
        output_tokens: counts[1],
        cache_creation_input_tokens: counts[2],
        cache_read_input_tokens: counts[3],
        cache_creation,
        server_tool_use: None,
    })
}

/// `usage.cache_creation`, or null.
fn cache_writes(c: &mut Cursor<'_>) -> Option<Option<CacheCreation>> {
    if c.null() {
        return Some(None);
    }
    let mut writes = CacheCreation::default();
    let mut seen = [false; 2];
    c.object(|c, key| {
        let (i, count) = match key {
            "ephemeral_5m_input_tokens" => (0, &mut writes.ephemeral_5m_input_tokens),
            "ephemeral_1h_input_tokens" => (1, &mut writes.ephemeral_1h_input_tokens),
            _ => return c.skip(),
        };
        set(&mut seen[i], count, c.uint()?)
    })?;
    Some(Some(writes))
}

#[cfg(test)]
mod tests {
    use super::super::stream::TextDeltaAt;
    use super::super::wire::{Message, MessageStreamEvent};
    use super::{read, read_event};

    /// Messages in the common form, as the Messages API writes them.
    const COMMON: &[&str] = &[
        // A text answer, with the usage members the API reports today.
        r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"server_tool_use":null,"service_tier":"standard"}}"#,
        // Indented, members in another order, a stop sequence, unmodelled members kept.
        r#"{
  "content": [
    {"type": "thinking", "thinking": "Let me add them.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
    {"type": "text", "text": "4", "citations": null}
  ],
  "id": "msg_01",
  "model": "claude-opus-4-1",
  "role": "assistant",
  "stop_reason": "stop_sequence",
  "stop_sequence": "END",
  "type": "message",
  "container": null,
  "context_management": {"applied_edits": []},
  "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 2048}
}"#,
        // Escapes and non-ASCII text; a block whose type is escaped; defaults left out.
        r#"{"id":"msg_\u0030","content":[{"type":"te\u0078t","text":"Line 1\nLine \"2\" caf\u00e9 日本 \ud83d\ude00"},{"text":"tab\there","type":"text"},{"type":"text"}]}"#,
        // No content, no usage, nulls where the decoder allows them.
        r#"{"id":"msg_2","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"usage":null}"#,
        r#"{"id":"msg_3","usage":{"input_tokens":null,"output_tokens":18446744073709551615}}"#,
    ];

    /// Forms left to the decoder (it takes some of them, refuses others).
    const DECLINED: &[&str] = &[
        r#"{"id":"m","content":[{"type":"text","text":"the grass is green","citations":[{"type":"char_location","cited_text":"The grass is green.","document_index":0,"document_title":null,"start_char_index":0,"end_char_index":20}]}]}"#,
        r#"{"id":"m","content":[{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use"}"#,
        r#"{"id":"m","content":[{"type":"redacted_thinking","data":"EmwKAhgB"}]}"#,
        r#"{"id":"m","content":[{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{}}]}"#,
        r#"{"id":"m","usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":2,"web_fetch_requests":0}}}"#,
        r#"{"id":"m","content":[{"text":"no type"}]}"#,
        r#"{"id":"m","content":[{"type":"text","text":null}]}"#,
        r#"{"id":"m","content":[{"type":"text","text":"a","text":"b"}]}"#,
        r#"{"id":"m","id":"n"}"#,
        r#"{"id":"m","extra":1,"extra":2}"#,
        r#"{"id":"m","model":null}"#,
        r#"{"id":"m","content":null}"#,
        r#"{"model":"no id"}"#,
        r#"{"id":"m","usage":{"input_tokens":-1}}"#,
        r#"{"id":"m","usage":{"input_tokens":1.0}}"#,
        r#"{"i\u0064":"m"}"#,
        r#"{"id":"m"} {"#,
        "[]",
    ];

    fn by_serde(body: &[u8]) -> Option<Message> {
        crate::json::from_body(body).ok()
    }

    #[test]
    fn common_messages_are_read_by_hand_into_the_decoders_answer() {
        crate::scan::assert_reads_common_and_declines(COMMON, DECLINED, read, by_serde);
    }

    /// Every one-byte change of every common message (a byte replaced, removed or added): what
    /// the reader takes, the decoder takes into the same message.
    #[test]
    fn no_changed_message_is_read_otherwise_than_by_the_decoder() {
        crate::scan::assert_every_one_byte_change(COMMON, |body| {
            let Some(message) = read(body) else {
                return false;
            };
            let text = String::from_utf8_lossy(body);
            assert_eq!(Some(message), by_serde(body), "{text}");
            true
        });
    }

    /// Stream events in the common form, as the Messages API writes them.
    const COMMON_EVENTS: &[&str] = &[
        r#"{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"service_tier":"standard"}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type": "ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        r#"{"type":"message_stop"}"#,
        // A tool call opened with empty input, its arguments in pieces; the usage of newer
        // API versions in `message_delta`.
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":89},"context_management":{"applied_edits":[]}}"#,
        // Extended thinking: its block, text and signature.
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me solve this step by step:\n\n1. First break down 27 * 453"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}"#,
        // Escapes, a stop sequence, spacing, members in another order after the type.
        "{ \"type\" : \"content_block_delta\" , \"delta\" : { \"text\" : \"caf\\u00e9 \\\"quoted\\\"\\n \u{65e5}\" , \"type\" : \"text_delta\" } , \"index\" : 2 }",
        r#"{"type":"message_delta","usage":null,"delta":{"stop_sequence":"END","stop_reason":"stop_sequence"}}"#,
        // Keys sorted, the type last (as a server writing a sorted map does).
        r#"{"delta":{"text":"Hi","type":"text_delta"},"index":0,"type":"content_block_delta"}"#,
        r#"{"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}"#,
        r#"{"index":0,"type":"content_block_stop"}"#,
        // Kinds added later: an unknown event and a delta the decoder does not model.
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"future_delta","x":{"y":0}}}"#,
        r#"{"type":"future_event","data":{"x":[1,2.5,null]}}"#,
    ];

    /// Event forms left to the decoder (it takes some of them, refuses others).
    const DECLINED_EVENTS: &[&str] = &[
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"x","start_char_index":0}}}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"","citations":[]}}"#,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        r#"{"type":"content_block_stop","index":0,"index":1}"#,
        r#"{"type":"content_block_stop","index":-1}"#,
        r#"{"type":"content_block_stop","index":4294967296}"#,
        r#"{"type":"content_block_stop"}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{"city":"Paris"}}}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{}}}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgB"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":null}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}"#,
        r#"{"type":"content_block_delta","ind\u0065x":0,"delta":{"type":"text_delta","text":"a"}}"#,
        r#"{"type":"message_start","message":{"model":"no id"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":1}}"#,
        r#"{"type":"message_stop","type":"ping"}"#,
        r#"{"type":"message_stop"} x"#,
        r#"{"type":null}"#,
        "{}",
        "",
    ];

    fn event_by_serde(data: &[u8]) -> Option<MessageStreamEvent> {
        serde_json::from_slice(data).ok()
    }

    fn event_by_hand(data: &[u8]) -> Option<MessageStreamEvent> {
        read_event(std::str::from_utf8(data).ok()?).map(|(event, _)| event)
    }

    #[test]
    fn common_stream_events_are_read_by_hand_into_the_decoders_answer() {
        crate::scan::assert_reads_common_and_declines(
            COMMON_EVENTS,
            DECLINED_EVENTS,
            event_by_hand,
            event_by_serde,
        );
    }

    /// Every one-byte change of every common event: what the reader takes, the decoder takes
    /// into the same event, and a text delta's JSON string is where the decoder finds it.
    #[test]
    fn no_changed_stream_event_is_read_otherwise_than_by_the_decoder() {
        crate::scan::assert_every_one_byte_change(COMMON_EVENTS, |data| {
            let Some(text) = std::str::from_utf8(data).ok() else {
                return false;
            };
            let Some((event, text_at)) = read_event(text) else {
                return false;
            };
            assert_eq!(Some(&event), event_by_serde(data).as_ref(), "{text}");
            if let Some(at) = text_at {
                let by_serde: TextDeltaAt<'_> = serde_json::from_str(text).unwrap();
                assert_eq!(at.as_ptr(), by_serde.delta.text.get().as_ptr(), "{text}");
                assert_eq!(at, by_serde.delta.text.get(), "{text}");
            }
            true
        });
    }
}

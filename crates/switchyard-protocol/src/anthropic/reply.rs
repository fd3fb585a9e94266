//! The common Anthropic `Message` read by hand, in one pass over its text. Its serde decoder
//! (`wire::Message`) keeps unmodelled members through a flattened map and reads content blocks
//! as an internally tagged enum, and serde buffers both into an intermediate tree before the
//! fields are read. The reader takes text and thinking blocks and the usage counts into the
//! same values, keeps the other members as the decoder does, and gives up on everything else
//! (tool use and other block kinds, escaped keys, a duplicate member, a count that is not an
//! unsigned integer, any fault); that goes to the decoder, which reads every form and words
//! every error. The tests hold the two to the same answers.

use serde_json::{Map, Value};

use super::wire::{ContentBlock, Message, Usage};
use crate::scan::{Cursor, set};

/// The message, if it is in the common form.
pub(super) fn read(body: &[u8]) -> Option<Message> {
    let mut c = Cursor::new(crate::json::utf8(body)?);
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
            "content" => return set(&mut seen[6], &mut content, blocks(c)?),
            "usage" => return set(&mut seen[7], &mut usage, c.optional(self::usage)?),
            _ => {
                let value: Value = serde_json::from_str(c.raw_value()?).ok()?;
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
    if !c.at_end() {
        return None;
    }
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

/// `content`: text and thinking blocks only.
fn blocks(c: &mut Cursor<'_>) -> Option<Vec<ContentBlock>> {
    c.list(|c| {
        // type, text, thinking, signature: read whatever the block's kind, then kept by kind.
        let mut fields: [Option<String>; 4] = Default::default();
        let mut seen = [false; 4];
        c.object(|c, key| {
            let i = match key {
                "type" => 0,
                "text" => 1,
                "thinking" => 2,
                "signature" => 3,
                _ => return c.skip(),
            };
            set(&mut seen[i], &mut fields[i], Some(c.string()?.into_owned()))
        })?;
        let [kind, text, thinking, signature] = fields;
        Some(match kind?.as_str() {
            "text" => ContentBlock::Text {
                text: text.unwrap_or_default(),
            },
            "thinking" => ContentBlock::Thinking {
                thinking: thinking.unwrap_or_default(),
                signature: signature.unwrap_or_default(),
            },
            _ => return None,
        })
    })
}

/// `usage`: the four counts; its other members (tier, cache details, server tools) skipped.
fn usage(c: &mut Cursor<'_>) -> Option<Usage> {
    let mut counts: [Option<u64>; 4] = [None; 4];
    let mut seen = [false; 4];
    c.object(|c, key| {
        let i = match key {
            "input_tokens" => 0,
            "output_tokens" => 1,
            "cache_creation_input_tokens" => 2,
            "cache_read_input_tokens" => 3,
            _ => return c.skip(),
        };
        set(&mut seen[i], &mut counts[i], c.optional_uint()?)
    })?;
    Some(Usage {
        input_tokens: counts[0],
        output_tokens: counts[1],
        cache_creation_input_tokens: counts[2],
        cache_read_input_tokens: counts[3],
    })
}

#[cfg(test)]
mod tests {
    use super::super::wire::Message;
    use super::read;

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
        r#"{"id":"m","content":[{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use"}"#,
        r#"{"id":"m","content":[{"type":"redacted_thinking","data":"EmwKAhgB"}]}"#,
        r#"{"id":"m","content":[{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{}}]}"#,
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
}

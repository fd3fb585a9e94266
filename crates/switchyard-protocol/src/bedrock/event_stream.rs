//! The AWS event-stream framing of `ConverseStream` answers (`application/vnd.amazon.eventstream`):
//! binary messages, each `total length (u32) | headers length (u32) | prelude CRC32 | headers |
//! payload | message CRC32`, big-endian, the CRCs IEEE CRC-32 of the prelude's first eight bytes
//! and of everything before the last four. Messages may be split across reads, and several may
//! share one read.

use std::borrow::Cow;

/// Prelude (two lengths and their CRC) and trailing CRC: the bytes of a message beside its
/// headers and payload.
const OVERHEAD: usize = 16;

/// Larger messages are refused rather than buffered (the format allows 16 MiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// One message: its headers that are strings (the only kind Bedrock sends that matter) and its
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a byte stream into messages, checking both CRCs of each.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds `chunk` and hands every message now complete to `each`. A framing error (a bad CRC,
    /// an impossible length, a malformed header) is final: nothing after it can be trusted.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        each: &mut dyn FnMut(Message) -> Result<(), String>,
    ) -> Result<(), String> {
        // Whole messages straight from the chunk when nothing is pending: no copy.
        let input: Cow<'_, [u8]> = if self.buf.is_empty() {
            Cow::Borrowed(chunk)
        } else {
            self.buf.extend_from_slice(chunk);
            Cow::Owned(std::mem::take(&mut self.buf))
        };
        let mut at = 0;
        while let Some(len) = message_len(&input[at..])? {
            if input.len() - at < len {
                break;
            }
            each(parse(&input[at..at + len])?)?;
            at += len;
        }
        if at < input.len() {
            self.buf = match input {
                Cow::Owned(mut owned) => {
                    owned.drain(..at);
                    owned
                }
                Cow::Borrowed(chunk) => chunk[at..].to_vec(),
            };
        }
        Ok(())
    }

    /// Bytes of a message begun but not finished.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The length of the message `bytes` starts with, once its prelude is there.
fn message_len(bytes: &[u8]) -> Result<Option<usize>, String> {
    let Some(prelude) = bytes.get(..12) else {
        return Ok(None);
    };
    let total = be32(&prelude[0..4]) as usize;
    let headers = be32(&prelude[4..8]) as usize;
    if be32(&prelude[8..12]) != crc32fast::hash(&prelude[..8]) {
        return Err("event-stream message with a bad prelude CRC".into());
    }
    if total < OVERHEAD + headers || total > MAX_MESSAGE {
        return Err(format!(
            "event-stream message of impossible length {total} (headers {headers})"
        ));
    }
    Ok(Some(total))
}

fn parse(message: &[u8]) -> Result<Message, String> {
    let (body, crc) = message.split_at(message.len() - 4);
    if be32(crc) != crc32fast::hash(body) {
        return Err("event-stream message with a bad message CRC".into());
    }
    let headers_len = be32(&message[4..8]) as usize;
    let headers = parse_headers(&body[12..12 + headers_len])?;
    Ok(Message {
        headers,
        payload: body[12 + headers_len..].to_vec(),
    })
}

/// Each header is `name length (u8) | name | value type (u8) | value`; values that are not
/// strings are skipped by their size.
fn parse_headers(mut bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let truncated = || "event-stream header cut short".to_string();
    let mut out = Vec::new();
    while let Some((&name_len, rest)) = bytes.split_first() {
        let name = rest.get(..name_len as usize).ok_or_else(truncated)?;
        let rest = &rest[name_len as usize..];
        let (&kind, rest) = rest.split_first().ok_or_else(truncated)?;
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            other => return Err(format!("event-stream header of unknown type {other}")),
        };
        bytes = match fixed {
            Some(size) => rest.get(size..).ok_or_else(truncated)?,
            None => {
                let len = rest.get(..2).ok_or_else(truncated)?;
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                let value = rest.get(2..2 + len).ok_or_else(truncated)?;
                if kind == 7 {
                    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    out.push((text(name), text(value)));
                }
                &rest[2 + len..]
            }
        };
    }
    Ok(out)
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A message as AWS writes it, string headers only (tests build provider answers with it).
#[cfg(test)]
pub(crate) fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = (OVERHEAD + head.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    fn decode_in_pieces(bytes: &[u8], piece: usize) -> Result<Vec<Message>, String> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            decoder.push(chunk, &mut |m| {
                out.push(m);
                Ok(())
            })?;
        }
        assert_eq!(decoder.pending(), 0);
        Ok(out)
    }

    #[test]
    fn messages_are_read_whatever_the_reads() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ));
        for piece in [1, 3, 7, 16, 64, bytes.len()] {
            let messages = decode_in_pieces(&bytes, piece).unwrap();
            assert_eq!(messages.len(), 2, "pieces of {piece}");
            assert_eq!(messages[0].header(":event-type"), Some("messageStart"));
            assert_eq!(messages[1].header(":message-type"), Some("event"));
            assert_eq!(
                messages[1].payload,
                br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#
            );
        }
    }

    #[test]
    fn other_header_types_are_skipped_by_their_size() {
        let mut message = event("metadata", "{}");
        // Rebuild with a timestamp (8), a boolean (0) and a bytes header (6) before the rest.
        let mut head = vec![2, b't', b's', 8];
        head.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        head.extend_from_slice(&[1, b'b', 0, 1, b'y', 6, 0, 2, 0xff, 0xfe]);
        let headers_len = be32(&message[4..8]) as usize;
        let old_head = message[12..12 + headers_len].to_vec();
        head.extend_from_slice(&old_head);
        let payload = message[12 + headers_len..message.len() - 4].to_vec();
        message = Vec::new();
        let total = (OVERHEAD + head.len() + payload.len()) as u32;
        message.extend_from_slice(&total.to_be_bytes());
        message.extend_from_slice(&(head.len() as u32).to_be_bytes());
        message.extend_from_slice(&crc32fast::hash(&message).to_be_bytes());
        message.extend_from_slice(&head);
        message.extend_from_slice(&payload);
        message.extend_from_slice(&crc32fast::hash(&message).to_be_bytes());
        let decoded = decode_in_pieces(&message, 5).unwrap();
        assert_eq!(decoded[0].header(":event-type"), Some("metadata"));
        assert_eq!(decoded[0].headers.len(), 3);
    }

    #[test]
    fn corrupt_frames_are_refused() {
        let good = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        let mut bad_prelude = good.clone();
        bad_prelude[9] ^= 1;
        assert!(
            decode_in_pieces(&bad_prelude, 4)
                .unwrap_err()
                .contains("prelude")
        );
        let mut bad_payload = good.clone();
        let at = bad_payload.len() - 6;
        bad_payload[at] ^= 1;
        assert!(
            decode_in_pieces(&bad_payload, 4)
                .unwrap_err()
                .contains("message CRC")
        );
        // A prelude claiming less than its own size.
        let mut short = vec![0, 0, 0, 8, 0, 0, 0, 0];
        short.extend_from_slice(&crc32fast::hash(&short).to_be_bytes());
        assert!(decode_in_pieces(&short, 12).unwrap_err().contains("length"));
    }
}

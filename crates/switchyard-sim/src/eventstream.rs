//! AWS event-stream message encoding (`application/vnd.amazon.eventstream`), the framing of
//! Bedrock's `ConverseStream` body: a prelude (total length, headers length, both big-endian
//! `u32`) and its CRC32, the headers, the payload, then a CRC32 of everything before it. The CRC
//! is the IEEE (gzip) one. Only string headers (value type 7) are written: they are all Bedrock
//! sends. Decoding is left to the clients under test.

/// Prelude (8 bytes), prelude CRC (4) and message CRC (4).
const OVERHEAD: usize = 16;

/// Header value type of a string (`u16` length, then UTF-8 bytes).
const STRING: u8 = 7;

/// Appends one event-stream message to `out`. Header names longer than 255 bytes and values
/// longer than 65,535 bytes are cut to fit their length fields; Bedrock's never come close.
pub(crate) fn write_frame(out: &mut Vec<u8>, headers: &[(&str, &str)], payload: &[u8]) {
    let start = out.len();
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| {
            1 + name.len().min(usize::from(u8::MAX))
                + 1
                + 2
                + value.len().min(usize::from(u16::MAX))
        })
        .sum();
    let total = OVERHEAD + headers_len + payload.len();
    out.reserve(total);
    out.extend_from_slice(&u32_len(total).to_be_bytes());
    out.extend_from_slice(&u32_len(headers_len).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(usize::from(u8::MAX))];
        let value = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(STRING);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&message_crc.to_be_bytes());
}

/// One event-stream message with string `headers` and `payload`, as Bedrock frames each
/// `ConverseStream` event (`:event-type`, `:content-type`, `:message-type`) or exception
/// (`:exception-type` instead of `:event-type`). For tests that need frames of their own.
pub fn event_stream_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, headers, payload);
    out
}

/// A length field's value; a message over 4 GiB cannot be framed and is not built here.
fn u32_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

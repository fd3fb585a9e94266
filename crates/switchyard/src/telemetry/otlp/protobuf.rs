//! Protobuf fields written straight into one buffer, for the OTLP export body: a span's
//! attributes come from the record by reference, so encoding a batch allocates only the body
//! (building prost's message structs first cost two or three allocations per attribute and
//! held a whole batch of them at once). Callers write fields as prost writes them (by field
//! number, defaults left out outside a `oneof`), which the tests check byte for byte.

/// Wire types used here.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Base 128, least significant group first; returns the bytes used.
fn varint(mut value: u64, out: &mut [u8; 10]) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}

/// A protobuf message being written; nested messages are written in place.
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    fn varint(&mut self, value: u64) {
        // Keys and most lengths and counts take one byte: pushed, not copied through a call.
        if value < 0x80 {
            self.buf.push(value as u8);
            return;
        }
        let mut bytes = [0u8; 10];
        let n = varint(value, &mut bytes);
        self.buf.extend_from_slice(&bytes[..n]);
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from((field << 3) | wire_type));
    }

    /// A length-delimited field holding what `body` writes (a nested message, or text written
    /// in parts). The length goes in front once known; most bodies are under 128 bytes, which
    /// the one byte kept for it fits, larger ones are moved up by the extra bytes.
    pub fn nested(&mut self, field: u32, body: impl FnOnce(&mut Writer<'_>)) {
        self.key(field, LEN);
        let start = self.buf.len() + 1;
        self.buf.push(0);
        body(&mut Writer { buf: self.buf });
        let len = self.buf.len() - start;
        let mut prefix = [0u8; 10];
        let n = varint(len as u64, &mut prefix);
        if n > 1 {
            // Move the body up in one copy to make room for the length's other bytes.
            let end = self.buf.len();
            self.buf.resize(end + n - 1, 0);
            self.buf.copy_within(start..end, start + n - 1);
        }
        self.buf[start - 1..start - 1 + n].copy_from_slice(&prefix[..n]);
    }

    /// The key and length of a length-delimited field whose `len` bytes of body are sent after
    /// it from elsewhere (a body sent in pieces).
    pub fn open(&mut self, field: u32, len: usize) {
        self.key(field, LEN);
        self.varint(len as u64);
    }

    /// Raw bytes appended to a field's body (see [`nested`](Self::nested)).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer, for writers that write into it (JSON text inside a string field).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// A `bytes` or `string` field, always written (as a `oneof` member is).
    pub fn bytes_always(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    /// A `bytes` or `string` field, left out when empty.
    pub fn bytes(&mut self, field: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.bytes_always(field, bytes);
        }
    }

    /// A `string` field whose text is `parts` joined, always written.
    pub fn text_always(&mut self, field: u32, parts: &[&str]) {
        self.nested(field, |s| parts.iter().for_each(|p| s.raw(p.as_bytes())));
    }

    pub fn string(&mut self, field: u32, text: &str) {
        self.bytes(field, text.as_bytes());
    }

    /// A varint field (`uint32`, `uint64`, `int64` as its two's complement, enums), always
    /// written.
    pub fn varint_always(&mut self, field: u32, value: u64) {
        self.key(field, VARINT);
        self.varint(value);
    }

    /// A varint field, left out when zero.
    pub fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.varint_always(field, value);
        }
    }

    pub fn bool_always(&mut self, field: u32, value: bool) {
        self.varint_always(field, u64::from(value));
    }

    pub fn double_always(&mut self, field: u32, value: f64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    /// A `fixed64` field, left out when zero.
    pub fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A `fixed32` field, left out when zero.
    pub fn fixed32(&mut self, field: u32, value: u32) {
        if value != 0 {
            self.key(field, FIXED32);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    struct Inner {
        #[prost(string, tag = "1")]
        text: String,
        #[prost(uint64, tag = "2")]
        number: u64,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Outer {
        #[prost(message, repeated, tag = "3")]
        inner: Vec<Inner>,
        #[prost(fixed64, tag = "4")]
        at: u64,
    }

    #[test]
    fn nested_messages_of_any_length_match_prost() {
        for len in [0, 1, 120, 127, 128, 300, 16_383, 16_384, 70_000] {
            let expected = Outer {
                inner: vec![
                    Inner {
                        text: "x".repeat(len),
                        number: len as u64 * 1_000_003,
                    },
                    Inner::default(),
                ],
                at: 42,
            };
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf);
            for i in &expected.inner {
                w.nested(3, |w| {
                    w.string(1, &i.text);
                    w.uint(2, i.number);
                });
            }
            w.fixed64(4, 42);
            assert_eq!(buf, expected.encode_to_vec(), "length {len}");
        }
    }
}

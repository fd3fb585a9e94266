//! A provider request's body. A long text read from the client's body without escapes (see
//! `canonical::Text`) is not copied into it: the body is the bytes written for the request with
//! such texts spliced in at their places, sent as consecutive pieces.

use bytes::Bytes;

/// The bytes written for a provider request, and the shared texts that go between them.
#[derive(Debug, Clone, Default)]
pub struct ProviderBody {
    written: Vec<u8>,
    /// Each text with the offset in `written` it goes before, in order.
    spliced: Vec<(usize, Bytes)>,
}

impl ProviderBody {
    pub fn len(&self) -> usize {
        self.written.len() + self.spliced.iter().map(|(_, t)| t.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether texts were spliced in (else the body is its written bytes alone).
    pub fn is_spliced(&self) -> bool {
        !self.spliced.is_empty()
    }

    /// The pieces to send in order, none of them empty (one when nothing was spliced in).
    pub fn into_pieces(self) -> Vec<Bytes> {
        let written = Bytes::from(self.written);
        if self.spliced.is_empty() {
            return vec![written];
        }
        let mut pieces = Vec::with_capacity(2 * self.spliced.len() + 1);
        let mut at = 0;
        for (offset, text) in self.spliced {
            if offset > at {
                pieces.push(written.slice(at..offset));
                at = offset;
            }
            if !text.is_empty() {
                pieces.push(text);
            }
        }
        if at < written.len() {
            pieces.push(written.slice(at..));
        }
        pieces
    }

    /// The whole body in one buffer: the written bytes themselves when nothing was spliced in,
    /// else a copy that joins the pieces.
    pub fn into_vec(self) -> Vec<u8> {
        if self.spliced.is_empty() {
            return self.written;
        }
        let mut joined = Vec::with_capacity(self.len());
        for piece in self.into_pieces() {
            joined.extend_from_slice(&piece);
        }
        joined
    }

    /// [`ProviderBody::into_vec`] without giving up the body.
    pub fn to_vec(&self) -> Vec<u8> {
        self.clone().into_vec()
    }
}

impl From<Vec<u8>> for ProviderBody {
    fn from(written: Vec<u8>) -> Self {
        ProviderBody {
            written,
            spliced: Vec::new(),
        }
    }
}

/// The texts a writer leaves out of its buffer, each to be spliced in where it stopped.
#[derive(Debug, Default)]
pub struct Splices(Vec<(usize, Bytes)>);

impl Splices {
    /// `text` goes at the end of what `out` holds now.
    pub fn push(&mut self, out: &[u8], text: Bytes) {
        self.0.push((out.len(), text));
    }

    /// The body of `written` with the texts spliced in.
    pub fn into_body(self, written: Vec<u8>) -> ProviderBody {
        ProviderBody {
            written,
            spliced: self.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_go_where_the_writer_left_them() {
        let mut out = b"{\"a\":\"".to_vec();
        let mut splices = Splices::default();
        splices.push(&out, Bytes::from_static(b"first"));
        out.extend_from_slice(b"\",\"b\":\"");
        splices.push(&out, Bytes::from_static(b"second"));
        splices.push(&out, Bytes::new());
        out.extend_from_slice(b"\"}");
        let body = splices.into_body(out);
        assert_eq!(body.len(), 26);
        assert_eq!(body.to_vec(), br#"{"a":"first","b":"second"}"#.to_vec());
        let pieces = body.into_pieces();
        assert_eq!(pieces.len(), 5, "no empty piece: {pieces:?}");
        assert!(pieces.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn a_text_at_either_end_and_a_body_without_texts() {
        let mut splices = Splices::default();
        splices.push(b"", Bytes::from_static(b"head"));
        splices.push(b"-", Bytes::from_static(b"tail"));
        let body = splices.into_body(b"-".to_vec());
        assert_eq!(body.to_vec(), b"head-tail".to_vec());
        assert_eq!(body.into_pieces().len(), 3);
        let plain = ProviderBody::from(b"{}".to_vec());
        assert_eq!(plain.clone().into_pieces(), vec![Bytes::from_static(b"{}")]);
        assert_eq!(plain.into_vec(), b"{}".to_vec());
    }
}

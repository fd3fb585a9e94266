//! Server-sent events framing (WHATWG HTML §9.2): an incremental, linear-time parser and a writer.
//!
//! The parser never re-scans bytes it has already looked at, handles CR, LF and CRLF line ends
//! split across chunks, a leading BOM, comments, multi-line `data`, and caps event size.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
}

/// Largest event we accept (Gemini image streams carry multi-MB single lines).
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("server-sent event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("server-sent event is not valid UTF-8")]
    InvalidUtf8,
}

/// Why [`SseParser::push_each`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<E> {
    /// The bytes are not a well-formed stream.
    Sse(SseError),
    /// The caller's handler refused an event.
    Event(E),
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended on CR: a following LF belongs to it.
    pending_cr: bool,
    started: bool,
    /// The current event's `event:` field (when `has_event`), kept for its capacity.
    event: String,
    has_event: bool,
    /// The current event's joined `data:` lines, kept for its capacity.
    data: String,
    has_data: bool,
    event_bytes: usize,
}

/// What a handler of [`SseParser::push_each`] is given for each event: its `event:` field and
/// its data, borrowed from the parser.
pub type EventHandler<'h, E> = dyn FnMut(Option<&str>, &str) -> Result<(), E> + 'h;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; appends every completed event to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut collect = |event: Option<&str>, data: &str| {
            out.push(SseEvent {
                event: event.map(str::to_owned),
                data: data.to_owned(),
            });
            Ok::<(), std::convert::Infallible>(())
        };
        self.push_each(chunk, &mut collect).map_err(|e| match e {
            PushError::Sse(e) => e,
            PushError::Event(never) => match never {},
        })
    }

    /// Feeds bytes; calls `each` with every completed event as it completes, borrowed from the
    /// parser's buffers (no allocation per event). At the first error `each` returns, the rest
    /// of the chunk is left unread (a refused event ends the stream for its callers).
    pub fn push_each<E>(
        &mut self,
        mut chunk: &[u8],
        each: &mut EventHandler<'_, E>,
    ) -> Result<(), PushError<E>> {
        if !self.started && !chunk.is_empty() {
            // A BOM may only appear at the very start of the stream; it can be split too, so
            // wait until three bytes are known.
            self.line.extend_from_slice(chunk);
            if self.line.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.line) {
                return Ok(());
            }
            self.started = true;
            let buffered = std::mem::take(&mut self.line);
            let rest = buffered.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buffered);
            return self.scan(rest, each);
        }
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.scan(chunk, each)
    }

    fn scan<E>(
        &mut self,
        chunk: &[u8],
        each: &mut EventHandler<'_, E>,
    ) -> Result<(), PushError<E>> {
        // An event's one data line is read where it lies in the chunk and handed over from
        // there; it is copied only when the event goes on past the chunk or has more lines.
        let mut held = None;
        let scanned = self.scan_lines(chunk, &mut held, each);
        self.keep(held);
        scanned
    }

    /// Copies a data line held in place into the event's own buffer (empty while one is held).
    fn keep(&mut self, held: Option<&str>) {
        if let Some(data) = held {
            self.data.push_str(data);
        }
    }

    fn scan_lines<'c, E>(
        &mut self,
        chunk: &'c [u8],
        held: &mut Option<&'c str>,
        each: &mut EventHandler<'_, E>,
    ) -> Result<(), PushError<E>> {
        let mut start = 0;
        // Line ends are found with a vectorised search rather than byte by byte: a stream's
        // events are mostly JSON between them.
        while let Some(offset) = memchr::memchr2(b'\n', b'\r', &chunk[start..]) {
            let end = start + offset;
            if self.line.is_empty() {
                // The whole line is in this chunk: read it where it is.
                self.process_line(&chunk[start..end], held, each)?;
            } else {
                self.line.extend_from_slice(&chunk[start..end]);
                let line = std::mem::take(&mut self.line);
                let mut held_here = None;
                let processed = self.process_line(&line, &mut held_here, each);
                self.keep(held_here);
                self.line = line;
                self.line.clear();
                processed?;
            }
            start = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(start) {
                    Some(b'\n') => start += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        self.line.extend_from_slice(&chunk[start..]);
        if self.line.len() + self.event_bytes > MAX_EVENT_BYTES {
            return Err(PushError::Sse(SseError::TooLarge));
        }
        Ok(())
    }

    /// One line; a first data line is left in `held`, borrowed from the line, rather than
    /// copied (the event's buffer stays empty meanwhile).
    fn process_line<'c, E>(
        &mut self,
        line: &'c [u8],
        held: &mut Option<&'c str>,
        each: &mut EventHandler<'_, E>,
    ) -> Result<(), PushError<E>> {
        if line.is_empty() {
            let handled = if self.has_data {
                let data = match held.take() {
                    Some(data) => data,
                    None => self.data.as_str(),
                };
                each(self.has_event.then_some(self.event.as_str()), data)
            } else {
                Ok(())
            };
            self.has_event = false;
            self.data.clear();
            self.has_data = false;
            self.event_bytes = 0;
            return handled.map_err(PushError::Event);
        }
        self.event_bytes += line.len();
        if self.event_bytes > MAX_EVENT_BYTES {
            return Err(PushError::Sse(SseError::TooLarge));
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr_colon(line) {
            Some(pos) => {
                let value = &line[pos + 1..];
                (&line[..pos], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let text = |value| crate::json::utf8(value).ok_or(PushError::Sse(SseError::InvalidUtf8));
        match field {
            b"data" => {
                let value = text(value)?;
                if let Some(first) = held.take() {
                    self.data.push_str(first);
                }
                if self.has_data {
                    self.data.push('\n');
                    self.data.push_str(value);
                } else {
                    *held = Some(value);
                }
                self.has_data = true;
            }
            b"event" => {
                let value = text(value)?;
                self.event.clear();
                self.event.push_str(value);
                self.has_event = true;
            }
            // `id` and `retry` mean nothing to an LLM stream relay; unknown fields are ignored
            // as the spec says.
            _ => {}
        }
        Ok(())
    }
}

fn memchr_colon(line: &[u8]) -> Option<usize> {
    memchr::memchr(b':', line)
}

/// Appends one SSE frame (`event:` optional) to `out`. `data` must not contain line breaks
/// (JSON from serde_json never does).
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &[u8]) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn parses_basic_events_and_comments() {
        let input = b"\xEF\xBB\xBF: keep-alive\nevent: ping\ndata: {\"a\":1}\n\ndata: x\ndata: y\r\n\r\nid: 3\nretry: 10\n\n";
        let events = parse_all(&[input]);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input: &[u8] = b"\xEF\xBB\xBFevent: a\r\ndata: one\r\rdata:two\n\ndata: 3\r\n\r\n:c\ndata:  four\n\ndata: five\n:c\ndata: six\n\n";
        let whole = parse_all(&[input]);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[4].data, "five\nsix");
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let split = parse_all(&[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(split, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_is_linear_and_correct() {
        let mut input = Vec::new();
        for _ in 0..2000 {
            input.extend_from_slice(b"data: {\"choices\":[]}\n\n");
        }
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in &input {
            p.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out.len(), 2000);
    }

    #[test]
    fn writer_round_trips() {
        let mut buf = Vec::new();
        write_event(
            &mut buf,
            Some("message_stop"),
            b"{\"type\":\"message_stop\"}",
        );
        let events = parse_all(&[&buf]);
        assert_eq!(events[0].event.as_deref(), Some("message_stop"));
        assert_eq!(events[0].data, "{\"type\":\"message_stop\"}");
    }

    #[test]
    fn events_are_handed_over_as_they_complete_and_a_refusal_stops_the_push() {
        let mut p = SseParser::new();
        let mut seen: Vec<(Option<String>, String)> = Vec::new();
        let mut handler = |event: Option<&str>, data: &str| {
            seen.push((event.map(str::to_owned), data.to_owned()));
            if data == "stop" {
                Err("refused")
            } else {
                Ok(())
            }
        };
        let pushed = p.push_each(
            b"event: a\ndata: 1\n\ndata: 2\n\ndata: stop\n\ndata: never\n\n",
            &mut handler,
        );
        assert_eq!(pushed, Err(PushError::Event("refused")));
        // The event name does not carry over to the next event; a split event completes later.
        assert_eq!(p.push_each(b"data: 3", &mut handler), Ok(()));
        assert_eq!(p.push_each(b"\n\n", &mut handler), Ok(()));
        assert_eq!(
            p.push_each(&[b'd', b'a', b't', b'a', b':', 0xff, b'\n'], &mut handler),
            Err(PushError::Sse(SseError::InvalidUtf8))
        );
        let seen: Vec<(Option<&str>, &str)> = seen
            .iter()
            .map(|(e, d)| (e.as_deref(), d.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(Some("a"), "1"), (None, "2"), (None, "stop"), (None, "3")]
        );
    }
}

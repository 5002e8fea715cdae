//! Framing of upstream streams into events, and encoding of events for clients.
//!
//! Server-sent events per the WHATWG spec (fields `event`, `data`, comments ignored, `\n`,
//! `\r\n` or `\r` line ends, multi-line data joined with `\n`), and NDJSON lines.

use bytes::{BufMut, BytesMut};

use super::aws::EventStreamParser;
use crate::plugins::SseEvent;
use crate::wit::types::Framing;

/// Largest single event accepted from an upstream.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// Incremental parser: push bytes as they arrive, pull complete events.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    pos: usize,
    ndjson: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// A `\r` ended the last chunk: a following `\n` belongs to it.
    pending_cr: bool,
}

/// The upstream sent something that cannot be framed.
#[derive(Debug)]
pub struct FrameError(pub String);

impl Parser {
    /// A parser for SSE.
    pub fn sse() -> Self {
        Self::default()
    }

    /// A parser for newline-delimited JSON.
    pub fn ndjson() -> Self {
        Self {
            ndjson: true,
            ..Self::default()
        }
    }

    /// Add bytes from the upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 << 10 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Next whole line, without its terminator.
    fn line(&mut self) -> Option<(usize, usize)> {
        // The `\n` that may belong to a `\r` at the end of the last chunk: decide only once
        // the next byte is there (forgetting it here made that `\n` a blank line).
        if self.pending_cr {
            match self.buf.get(self.pos) {
                None => return None,
                Some(b'\n') => self.pos += 1,
                Some(_) => {}
            }
            self.pending_cr = false;
        }
        let rest = &self.buf[self.pos..];
        let at = memchr::memchr2(b'\n', b'\r', rest)?;
        let start = self.pos;
        let end = start + at;
        self.pos = end + 1;
        if self.buf[end] == b'\r' {
            match self.buf.get(end + 1) {
                Some(b'\n') => self.pos += 1,
                Some(_) => {}
                None => self.pending_cr = true,
            }
        }
        Some((start, end))
    }

    /// The next complete event, if one has fully arrived.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, FrameError> {
        loop {
            let Some((s, e)) = self.line() else {
                if self.buf.len() - self.pos > MAX_EVENT_BYTES || self.data.len() > MAX_EVENT_BYTES
                {
                    return Err(FrameError(format!(
                        "upstream event larger than {MAX_EVENT_BYTES} bytes"
                    )));
                }
                return Ok(None);
            };
            let line = &self.buf[s..e];
            if self.ndjson {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let data = std::str::from_utf8(line)
                    .map_err(|_| FrameError("upstream sent a line that is not UTF-8".into()))?
                    .to_string();
                return Ok(Some(SseEvent { event: None, data }));
            }
            if line.is_empty() {
                if !self.has_data {
                    self.event = None;
                    continue;
                }
                self.has_data = false;
                return Ok(Some(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                }));
            }
            if line[0] == b':' {
                continue;
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| FrameError("upstream sent an event that is not UTF-8".into()))?;
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                    if self.data.len() > MAX_EVENT_BYTES {
                        return Err(FrameError(format!(
                            "upstream event larger than {MAX_EVENT_BYTES} bytes"
                        )));
                    }
                }
                "event" => self.event = Some(value.to_string()),
                _ => {}
            }
        }
    }

    /// At end of stream: an event that was complete but for its final blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.ndjson {
            let rest = &self.buf[self.pos..];
            let text = std::str::from_utf8(rest).ok()?.trim();
            self.pos = self.buf.len();
            return (!text.is_empty()).then(|| SseEvent {
                event: None,
                data: text.to_string(),
            });
        }
        // A trailing line without a newline.
        if self.pos < self.buf.len() {
            self.buf.push(b'\n');
            if let Ok(Some(ev)) = self.next_event() {
                return Some(ev);
            }
        }
        self.has_data.then(|| {
            self.has_data = false;
            SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            }
        })
    }
}

/// Frames any streamed upstream body into events, whatever its framing.
pub enum Framer {
    /// SSE or NDJSON text.
    Text(Parser),
    /// AWS event-stream binary frames: `event` is the frame's `:event-type`, or
    /// `exception:<type>` for exception and error frames; `data` is the payload.
    Aws(EventStreamParser),
}

impl Framer {
    /// The framer for a planned framing (`none` frames as SSE; it is never streamed).
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Ndjson => Self::Text(Parser::ndjson()),
            Framing::AwsEventstream => Self::Aws(EventStreamParser::default()),
            Framing::Sse | Framing::None => Self::Text(Parser::sse()),
        }
    }

    /// Add bytes from the upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        match self {
            Self::Text(p) => p.push(chunk),
            Self::Aws(p) => p.push(chunk),
        }
    }

    /// The next complete event.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, FrameError> {
        match self {
            Self::Text(p) => p.next_event(),
            Self::Aws(p) => {
                let Some(frame) = p.next_frame().map_err(FrameError)? else {
                    return Ok(None);
                };
                let event = match frame.header(":message-type") {
                    Some("exception") | Some("error") => format!(
                        "exception:{}",
                        frame
                            .header(":exception-type")
                            .or_else(|| frame.header(":error-code"))
                            .unwrap_or("unknown")
                    ),
                    _ => frame.header(":event-type").unwrap_or("").to_string(),
                };
                let data = std::str::from_utf8(frame.payload())
                    .map_err(|_| {
                        FrameError("upstream sent an event-stream payload that is not UTF-8".into())
                    })?
                    .to_owned();
                Ok(Some(SseEvent {
                    event: Some(event),
                    data,
                }))
            }
        }
    }

    /// At the end of the body: a last event, or an error if a frame was cut off.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, FrameError> {
        match self {
            Self::Text(p) => Ok(p.finish()),
            Self::Aws(p) if p.pending() > 0 => Err(FrameError(
                "upstream stream ended in the middle of an event-stream frame".into(),
            )),
            Self::Aws(_) => Ok(None),
        }
    }
}

/// Append one event in SSE wire format.
pub fn encode(out: &mut BytesMut, ev: &SseEvent) {
    if let Some(name) = &ev.event {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    for line in ev.data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser) -> Vec<(Option<String>, String)> {
        let mut v = Vec::new();
        while let Some(e) = p.next_event().unwrap() {
            v.push((e.event, e.data));
        }
        v
    }

    #[test]
    fn splits_events_across_chunks_and_line_endings() {
        let mut p = Parser::sse();
        p.push(b"data: {\"a\":1}\n\nevent: ping\r\ndata: x\r\n\r\n: comment\n\nda");
        assert_eq!(
            all(&mut p),
            vec![
                (None, "{\"a\":1}".into()),
                (Some("ping".into()), "x".into())
            ]
        );
        p.push(b"ta: line1\ndata: line2\r");
        assert!(all(&mut p).is_empty());
        p.push(b"\n\r\ndata: [DONE]\n\n");
        assert_eq!(
            all(&mut p),
            vec![(None, "line1\nline2".into()), (None, "[DONE]".into())]
        );
    }

    #[test]
    fn byte_at_a_time() {
        let wire = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\ndata: [DONE]\n\n";
        let mut p = Parser::sse();
        let mut got = Vec::new();
        for b in wire {
            p.push(&[*b]);
            got.extend(all(&mut p));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.as_deref(), Some("message_start"));
    }

    /// Found by the `sse` fuzz target: a `\r` ending one chunk and its `\n` starting the
    /// next, with nothing pulled in between, must not become a blank line.
    #[test]
    fn crlf_split_between_chunks_keeps_the_event_name() {
        let mut p = Parser::sse();
        p.push(b"event: x\r");
        assert!(p.next_event().unwrap().is_none());
        assert!(p.next_event().unwrap().is_none());
        p.push(b"\ndata: 1\r");
        assert!(p.next_event().unwrap().is_none());
        p.push(b"\n\r");
        assert_eq!(all(&mut p), vec![(Some("x".into()), "1".into())]);
        p.push(b"\n");
        assert!(p.next_event().unwrap().is_none());
    }

    #[test]
    fn ndjson_and_trailing_data() {
        let mut p = Parser::ndjson();
        p.push(b"{\"a\":1}\n\n{\"b\":2}");
        assert_eq!(all(&mut p), vec![(None, "{\"a\":1}".into())]);
        assert_eq!(p.finish().unwrap().data, "{\"b\":2}");
        let mut p = Parser::sse();
        p.push(b"data: tail");
        assert!(all(&mut p).is_empty());
        assert_eq!(p.finish().unwrap().data, "tail");
    }

    #[test]
    fn encodes_multiline() {
        let mut out = BytesMut::new();
        encode(
            &mut out,
            &SseEvent {
                event: Some("e".into()),
                data: "a\nb".into(),
            },
        );
        assert_eq!(&out[..], b"event: e\ndata: a\ndata: b\n\n");
    }
}

//! Server-sent events, decoded incrementally from the bytes of an HTTP body.
//!
//! Follows the event-stream format: lines end in LF, CRLF or CR; `data:` lines (one optional
//! space after the colon) accumulate and an empty line dispatches them; `event:` names the
//! event; `id:` and `retry:` are ignored; lines starting with `:` are comments (keep-alives).
//! Bytes are only decoded as UTF-8 once a whole line is in, so a character split across two
//! network reads is never mangled. Pure: no I/O, no clock.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the server named the event.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Incremental decoder: feed it body chunks as they arrive, collect events.
///
/// ```
/// use agent_core::backends::sse::SseDecoder;
/// let mut d = SseDecoder::default();
/// let mut events = d.push(b"data: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: [DO");
/// events.extend(d.push(b"NE]\n\n"));
/// let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
/// assert_eq!(data, ["{\"a\":1}", "[DONE]"]);
/// ```
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    /// Lines that are not SSE fields at all (Gemini sends a mid-stream error as a bare JSON
    /// object), kept for the caller to inspect.
    raw: String,
}

impl SseDecoder {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let ended_with_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            if ended_with_cr {
                if rest.is_empty() {
                    self.after_cr = true;
                } else if let Some(stripped) = rest.strip_prefix(b"\n") {
                    rest = stripped;
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line) {
                events.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        events
    }

    /// Ends the stream: an event whose blank line never came is dispatched now (a server
    /// that closes right after its last `data:` line still gets its last event through).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty()
            && let Some(event) = self.process_line(&line)
        {
            return Some(event);
        }
        self.dispatch()
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line.as_ref(), ""),
        };
        match field {
            _ if line.starts_with(['{', '}', '[', ']', ' ', '"']) => {
                self.raw.push_str(&line);
                self.raw.push('\n');
            }
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    /// Takes the lines that were not SSE fields (see the `raw` field), if any.
    pub fn take_raw(&mut self) -> Option<String> {
        (!self.raw.trim().is_empty()).then(|| std::mem::take(&mut self.raw))
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out: Vec<SseEvent> = chunks.iter().flat_map(|c| d.push(c)).collect();
        out.extend(d.finish());
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn crlf_lf_and_cr_line_endings_all_work() {
        let e = all(&[b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r", b"\n\r\n"]);
        assert_eq!(data(&e), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_multibyte_character_split_across_reads_survives() {
        let text = "data: {\"t\":\"héllo €\"}\n\n".as_bytes();
        let euro = text.iter().position(|&b| b == 0xE2).unwrap();
        let e = all(&[
            &text[..euro + 1],
            &text[euro + 1..euro + 2],
            &text[euro + 2..],
        ]);
        assert_eq!(data(&e), ["{\"t\":\"héllo €\"}"]);
    }

    #[test]
    fn comments_and_unknown_fields_are_skipped() {
        let e = all(&[b": OPENROUTER PROCESSING\n\nid: 7\nretry: 100\ndata: x\n\n"]);
        assert_eq!(data(&e), ["x"]);
    }

    #[test]
    fn multi_line_data_is_joined_and_event_names_kept() {
        let e = all(&[b"event: message_start\ndata: {\ndata: }\n\n"]);
        assert_eq!(e[0].event.as_deref(), Some("message_start"));
        assert_eq!(e[0].data, "{\n}");
    }

    #[test]
    fn data_without_space_and_a_missing_final_blank_line() {
        let e = all(&[b"data:x\n\ndata: last"]);
        assert_eq!(data(&e), ["x", "last"]);
    }

    #[test]
    fn bare_json_lines_are_kept_aside() {
        let mut d = SseDecoder::default();
        let events = d.push(b"data: a\n\n{\n  \"error\": {\"code\": 500}\n}\n");
        assert_eq!(data(&events), ["a"]);
        let raw = d.take_raw().unwrap();
        assert!(raw.contains("\"error\""), "{raw}");
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_events() {
        let input = b"data: one\r\n\r\n: c\r\ndata: two\r\n\r\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(data(&all(&chunks)), ["one", "two"]);
    }
}

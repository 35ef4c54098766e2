//! Server-sent events, the framing every streaming API here shares: a body cut into events
//! whatever its chunking, each event's `data` read through its API's [`Format`] into
//! [`StreamEvent`]s, within a bound on each event's size, until the stream's proper end.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_core::{
    ErrorKind, LlmError, UpstreamError, Usage, redact, stream::StreamEvent, upstream_summary,
};

/// One API's streamed answer, read one event at a time.
pub trait Format: Send + 'static {
    /// The stream's proper end, as an error names it when a stream stops short (`[DONE]`,
    /// `message_stop`).
    const END: &'static str;

    /// Whether `data` is the format's end written as something other than JSON (OpenAI's
    /// `[DONE]`).
    fn is_end(data: &str) -> bool {
        let _ = data;
        false
    }

    /// Whether the body's close is the stream's proper end, once [`whole`](Self::whole) says
    /// the answer is: for an API that sends no end event (Gemini's).
    const ENDS_AT_CLOSE: bool = false;

    /// What one event's JSON says: its events, or that the stream has reached its proper end.
    fn read(&mut self, event: &Value) -> Read;

    /// The error an event reports, when it reports one, as [`error_event`] reads it (`type` or
    /// `status`, `code`, `message`): by default its `error` field.
    fn error(event: &Value) -> Option<Value> {
        event.get("error").filter(|e| !e.is_null()).cloned()
    }

    /// For a format that [`ENDS_AT_CLOSE`](Self::ENDS_AT_CLOSE), the events its end says once
    /// the answer is whole (Gemini's finish reasons, held until no later event can change them).
    fn close(&mut self) -> Vec<StreamEvent> {
        Vec::new()
    }

    /// At the proper end: whether the answer is whole.
    ///
    /// # Errors
    ///
    /// What is missing, in words.
    fn whole(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// What one event said.
#[derive(Debug)]
pub enum Read {
    /// These events (none, for a keep-alive or an event that says nothing tollgate keeps).
    Events(Vec<StreamEvent>),
    /// The stream's proper end.
    End,
}

/// Server-sent events as they arrive, read into [`StreamEvent`]s: bytes go in with
/// [`feed`](Self::feed), events come out of [`next_event`](Self::next_event), whatever the chunking.
///
/// A stream that ends without its format's proper end, an event past the size bound, an event
/// that is not the JSON the API promised, and an error event each end it with an error; nothing
/// follows an error.
#[derive(Debug)]
pub struct Decoder<F> {
    format: F,
    provider: String,
    buffer: BytesMut,
    scan: Scan,
    max_event: usize,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    done: bool,
    usage: Usage,
    verbatim: bool,
}

impl<F: Format> Decoder<F> {
    /// A decoder for `provider`'s stream in `format`, refusing an event past `max_event` bytes.
    pub fn new(format: F, provider: &str, max_event: usize) -> Self {
        Self {
            format,
            provider: provider.to_owned(),
            buffer: BytesMut::new(),
            scan: Scan::default(),
            max_event,
            pending: VecDeque::new(),
            done: false,
            usage: Usage::default(),
            verbatim: false,
        }
    }

    /// Hands out each event also as it came ([`StreamEvent::Verbatim`], first), for a caller who
    /// speaks the upstream's own API. An error event is never handed out as it came.
    #[must_use]
    pub fn verbatim(mut self) -> Self {
        self.verbatim = true;
        self
    }

    /// Adds bytes read from the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The body ended: whatever is left is the last event, and a stream that has not reached its
    /// proper end by then is cut short.
    pub fn end(&mut self) {
        let rest = std::mem::take(&mut self.buffer);
        if !self.done && !rest.iter().all(u8::is_ascii_whitespace) {
            self.decode(rest.freeze());
        }
        if !self.done {
            match (F::ENDS_AT_CLOSE, self.format.whole()) {
                (true, Ok(())) => {
                    let events = self.format.close();
                    self.queue(events);
                }
                (true, Err(missing)) => {
                    let why = format!("the upstream closed the stream {missing}");
                    self.fail(cut_short(&self.provider, &why));
                }
                (false, _) => self.fail(cut_short(
                    &self.provider,
                    &format!("the upstream closed the stream before its end ({})", F::END),
                )),
            }
        }
        self.done = true;
    }

    /// The stream broke: nothing more is decoded.
    pub fn stop(&mut self) {
        self.done = true;
        self.pending.clear();
    }

    /// Whether the stream has ended and every event was handed out.
    pub fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    /// The next event, or `None` until more bytes come (or once it is done).
    pub fn next_event(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let Some(raw) = take_event(&mut self.buffer, &mut self.scan) else {
                if self.buffer.len() > self.max_event {
                    let most = self.max_event;
                    self.buffer = BytesMut::new();
                    self.fail(LlmError::new(
                        ErrorKind::Server,
                        format!(
                            "{}: the upstream sent a stream event over the limit of {most} bytes",
                            self.provider
                        ),
                    ));
                    continue;
                }
                return None;
            };
            self.decode(raw.freeze());
        }
    }

    fn decode(&mut self, raw: Bytes) {
        let data = data_of(&raw);
        if data.is_empty() {
            return; // a comment or a keep-alive
        }
        let read = if F::is_end(data.trim()) {
            Read::End
        } else {
            let event: Value = match serde_json::from_str(&data) {
                Ok(event) => event,
                Err(error) => return self.fail(unreadable(&self.provider, &error)),
            };
            if let Some(error) = F::error(&event) {
                let error = error_event(&self.provider, &error);
                return self.fail(error);
            }
            self.format.read(&event)
        };
        if let (Read::End, Err(missing)) = (&read, self.format.whole()) {
            // Its end passes on as it came only when it was earned.
            let why = format!("the upstream ended the stream {missing}");
            return self.fail(cut_short(&self.provider, &why));
        }
        if self.verbatim {
            self.pending.push_back(Ok(StreamEvent::Verbatim(raw)));
        }
        match read {
            Read::Events(events) => self.queue(events),
            Read::End => self.done = true,
        }
    }

    /// Ends the stream with `error`, after what was already decoded.
    fn fail(&mut self, error: LlmError) {
        self.done = true;
        self.pending.push_back(Err(error));
    }

    /// Queues `events` with usage merged: Anthropic sends the prompt's counts first and the
    /// answer's last.
    fn queue(&mut self, events: Vec<StreamEvent>) {
        for event in events {
            let event = match event {
                StreamEvent::Usage(mut usage) => {
                    if usage.input_tokens == 0 {
                        usage.input_tokens = self.usage.input_tokens;
                        usage.cached_input_tokens = self.usage.cached_input_tokens;
                        usage.cache_write_tokens = self.usage.cache_write_tokens;
                    }
                    self.usage = usage;
                    StreamEvent::Usage(usage)
                }
                event => event,
            };
            self.pending.push_back(Ok(event));
        }
    }
}

/// A [`Decoder`] of any format, for a stream that holds one without naming its format.
pub trait Decode: Send + std::fmt::Debug {
    /// As [`Decoder::feed`].
    fn feed(&mut self, bytes: &[u8]);
    /// As [`Decoder::end`].
    fn end(&mut self);
    /// As [`Decoder::stop`].
    fn stop(&mut self);
    /// As [`Decoder::is_done`].
    fn is_done(&self) -> bool;
    /// As [`Decoder::next_event`].
    fn next_event(&mut self) -> Option<Result<StreamEvent, LlmError>>;
}

impl<F: Format + std::fmt::Debug> Decode for Decoder<F> {
    fn feed(&mut self, bytes: &[u8]) {
        Decoder::feed(self, bytes);
    }

    fn end(&mut self) {
        Decoder::end(self);
    }

    fn stop(&mut self) {
        Decoder::stop(self);
    }

    fn is_done(&self) -> bool {
        Decoder::is_done(self)
    }

    fn next_event(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        Decoder::next_event(self)
    }
}

/// How far a buffer has been looked through: where to go on, and where the line there began.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Scan {
    at: usize,
    line_start: usize,
}

/// The next whole event in `buffer` (up to an empty line, with lines ended by LF, CRLF or CR),
/// removed from it, without its closing blank line. `scan` keeps how far an earlier look got, so
/// an event that arrives in many pieces is looked through once.
pub(crate) fn take_event(buffer: &mut BytesMut, scan: &mut Scan) -> Option<BytesMut> {
    let Scan {
        at: mut i,
        mut line_start,
    } = *scan;
    while i < buffer.len() {
        let byte = buffer[i];
        if byte != b'\n' && byte != b'\r' {
            i += 1;
            continue;
        }
        let mut next = i + 1;
        if byte == b'\r' {
            match buffer.get(next) {
                Some(b'\n') => next += 1,
                Some(_) => {}
                // A CR last in the buffer may be half of a CRLF: wait for the next chunk.
                None => break,
            }
        }
        if i == line_start {
            let mut event = buffer.split_to(next);
            event.truncate(line_start);
            *scan = Scan::default();
            return Some(event);
        }
        line_start = next;
        i = next;
    }
    *scan = Scan { at: i, line_start };
    None
}

/// An event's `data` lines, joined.
fn data_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut data = String::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    data
}

/// The error for an error event in a stream that had begun: its kind from the event's `type`, a
/// fixed sentence, and what the upstream said as an [`UpstreamError`] (its words logged at debug
/// level, redacted, and nowhere else).
pub fn error_event(provider: &str, error: &Value) -> LlmError {
    let field = |name: &str| error.get(name).and_then(Value::as_str);
    // Anthropic's `type`; Google's `status` (Gemini, Vertex).
    let error_type = field("type").or_else(|| field("status"));
    let kind = match error_type {
        Some("overloaded_error" | "UNAVAILABLE") => ErrorKind::Overloaded,
        Some("rate_limit_error" | "RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
        _ => ErrorKind::Server,
    };
    let said = UpstreamError::new(None)
        .with_identifiers(error_type, field("code"), None)
        .with_message(kind, field("message").unwrap_or_default());
    tracing::debug!(
        provider,
        event = %redact(&error.to_string()),
        "the upstream failed mid-stream"
    );
    let mut text = format!("{provider}: {} (mid-stream)", upstream_summary(kind));
    if let Some(message) = &said.message {
        text.push_str(": ");
        text.push_str(message);
    }
    LlmError::new(kind, text).with_extension(said)
}

/// A stream that ended without its proper end: a `Server` error, billed as incomplete.
pub(crate) fn cut_short(provider: &str, why: &str) -> LlmError {
    LlmError::new(ErrorKind::Server, format!("{provider}: {why}"))
}

/// A stream event that could not be read as the JSON its API promised.
pub(crate) fn unreadable(provider: &str, error: &serde_json::Error) -> LlmError {
    tracing::debug!(provider, %error, "a stream event could not be read");
    LlmError::new(
        ErrorKind::Server,
        format!("{provider}: the upstream sent a stream event that could not be read"),
    )
}

/// Appends one server-sent event to `out`: `event: <name>` when named, its `data:` line, and the
/// blank line that ends it.
pub fn write_event(out: &mut Vec<u8>, name: Option<&str>, data: &Value) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, data).expect("an event serializes");
    out.extend_from_slice(b"\n\n");
}

/// Appends an event that passed through as it came ([`StreamEvent::Verbatim`]), with the blank
/// line that ends it.
pub fn write_verbatim(out: &mut Vec<u8>, raw: &[u8]) {
    out.extend_from_slice(raw);
    out.extend_from_slice(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_chunks() {
        let body =
            b"data: {\"a\":1}\n\nevent: x\r\ndata: two\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n";
        for split in 0..body.len() {
            let mut buffer = BytesMut::new();
            let mut scan = Scan::default();
            let mut events = Vec::new();
            for part in [&body[..split], &body[split..]] {
                buffer.extend_from_slice(part);
                while let Some(event) = take_event(&mut buffer, &mut scan) {
                    events.push(String::from_utf8(event.to_vec()).unwrap());
                }
            }
            assert_eq!(
                events,
                [
                    "data: {\"a\":1}\n",
                    "event: x\r\ndata: two\r\n",
                    ": keep-alive\n",
                    "data: [DONE]\n"
                ],
                "split at {split}"
            );
        }
    }
}

//! Streamed answers: server-sent events read as they arrive, as typed events.

use std::time::SystemTime;

use bytes::BytesMut;
use http::HeaderMap;
use serde_json::Value;
use tollgate_core::{
    ErrorKind, FinishReason, LlmError, LlmResponse, Usage,
    stream::{LlmStream, StreamEvent},
};

use crate::{headers::RateLimitSnapshot, transport::transport_error};

/// Which provider's event format a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

/// A streamed answer, read event by event with [`next`](Self::next) or whole with
/// [`collect`](Self::collect).
///
/// It exists once the provider has accepted the call (a success status): failures before that
/// are the client's usual errors. After that, a connection lost or an error event sent by the
/// provider ends the stream with an error, and what arrived before it has been delivered: a
/// caller that retries must not do so after the first event without accepting a repeated start.
///
/// ```no_run
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::{OpenAiCompatible, StreamEvent};
///
/// # async fn run() -> Result<(), tollgate_core::LlmError> {
/// let client = OpenAiCompatible::builder("http://localhost:11434/v1").build().unwrap();
/// let mut stream = client
///     .stream(LlmRequest::new("llama3.2", vec![Message::user("Count to five")]))
///     .await?;
/// while let Some(event) = stream.next().await {
///     if let StreamEvent::Text(text) = event? {
///         print!("{text}");
///     }
/// }
/// # Ok(()) }
/// ```
pub struct ChatStream {
    response: reqwest::Response,
    headers: HeaderMap,
    dialect: Dialect,
    provider: String,
    buffer: BytesMut,
    pending: std::collections::VecDeque<StreamEvent>,
    done: bool,
    model_sent: bool,
    usage: Usage,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn new(response: reqwest::Response, dialect: Dialect, provider: &str) -> Self {
        Self {
            headers: response.headers().clone(),
            response,
            dialect,
            provider: provider.to_owned(),
            buffer: BytesMut::new(),
            pending: std::collections::VecDeque::new(),
            done: false,
            model_sent: false,
            usage: Usage::default(),
        }
    }

    /// Queues `events`, once each model and with usage merged: OpenAI repeats the model in every
    /// chunk, and Anthropic sends input tokens first and output tokens last.
    fn queue(&mut self, events: Vec<StreamEvent>) {
        for event in events {
            match event {
                StreamEvent::Model(_) if self.model_sent => {}
                StreamEvent::Model(model) => {
                    self.model_sent = true;
                    self.pending.push_back(StreamEvent::Model(model));
                }
                StreamEvent::Usage(mut usage) => {
                    if usage.input_tokens == 0 {
                        usage.input_tokens = self.usage.input_tokens;
                    }
                    self.usage = usage;
                    self.pending.push_back(StreamEvent::Usage(usage));
                }
                event => self.pending.push_back(event),
            }
        }
    }

    /// The provider's response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// This stream as the response of a streaming call through a tollgate stack: an empty
    /// response (the model asked for, the provider's headers, the rate-limit snapshot) carrying
    /// the events as its [`LlmStream`].
    pub(crate) fn into_response(self, model: &str) -> LlmResponse {
        let mut response = LlmResponse::new(model, "");
        response.headers = self.headers.clone();
        if let Some(snapshot) = RateLimitSnapshot::from_headers(&self.headers, SystemTime::now()) {
            response.extensions.insert(snapshot);
        }
        response.with_stream(self.into_stream())
    }

    /// The events as an [`LlmStream`].
    pub fn into_stream(self) -> LlmStream {
        LlmStream::new(futures_util::stream::unfold(
            self,
            |mut stream| async move { stream.next().await.map(|event| (event, stream)) },
        ))
    }

    /// The next event; `None` once the provider has said it is done (or closed the stream).
    ///
    /// # Errors
    ///
    /// The connection failing (`Connect` or `Timeout`), an error event from the provider (its
    /// kind: `overloaded_error` is `Overloaded`, others `Server`), or an event that is not the
    /// JSON the provider promised (`Server`).
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Some(raw) = take_event(&mut self.buffer) {
                match parse(self.dialect, &raw, &self.provider) {
                    Ok(Parsed::Events(events)) => self.queue(events),
                    Ok(Parsed::Done) => self.done = true,
                    Err(error) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) => {
                    // The body ended: whatever is left is the last event.
                    self.done = true;
                    let rest = std::mem::take(&mut self.buffer);
                    if !rest.iter().all(u8::is_ascii_whitespace) {
                        match parse(self.dialect, &rest, &self.provider) {
                            Ok(Parsed::Events(events)) => self.queue(events),
                            Ok(Parsed::Done) => {}
                            Err(error) => return Some(Err(error)),
                        }
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(transport_error(error, &self.provider)));
                }
            }
        }
    }

    /// Reads the whole stream into one response: the text joined, the last finish reason and
    /// usage, the headers, and the rate-limit snapshot.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next); a `content_filter` or `refusal` finish is a `ContentFilter` error.
    pub async fn collect(self) -> Result<LlmResponse, LlmError> {
        let (headers, provider) = (self.headers.clone(), self.provider.clone());
        let mut response = self.into_stream().collect().await?;
        if response.finish_reason() == Some(&FinishReason::ContentFilter) {
            return Err(LlmError::new(
                ErrorKind::ContentFilter,
                format!("{provider} withheld the rest of the answer"),
            ));
        }
        if let Some(snapshot) = RateLimitSnapshot::from_headers(&headers, SystemTime::now()) {
            response.extensions.insert(snapshot);
        }
        response.headers = headers;
        Ok(response)
    }
}

/// The next whole event in `buffer` (up to an empty line, with lines ended by LF, CRLF or CR),
/// removed from it.
fn take_event(buffer: &mut BytesMut) -> Option<BytesMut> {
    let mut line_start = 0;
    let mut i = 0;
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
                None => return None,
            }
        }
        if i == line_start {
            let mut event = buffer.split_to(next);
            event.truncate(line_start);
            return Some(event);
        }
        line_start = next;
        i = next;
    }
    None
}

enum Parsed {
    Events(Vec<StreamEvent>),
    Done,
}

/// One server-sent event: its `data` lines joined, read in the provider's format.
fn parse(dialect: Dialect, raw: &[u8], provider: &str) -> Result<Parsed, LlmError> {
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
    if data.is_empty() {
        return Ok(Parsed::Events(Vec::new())); // a comment or a keep-alive
    }
    if data.trim() == "[DONE]" {
        return Ok(Parsed::Done);
    }
    let value: Value = serde_json::from_str(&data).map_err(|e| {
        LlmError::new(
            ErrorKind::Server,
            format!("{provider} sent a stream event that could not be read: {e}"),
        )
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        let kind = match error.get("type").and_then(Value::as_str) {
            Some("overloaded_error") => ErrorKind::Overloaded,
            Some("rate_limit_error") => ErrorKind::RateLimited,
            _ => ErrorKind::Server,
        };
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(LlmError::new(
            kind,
            format!("{provider} failed mid-stream: {message}"),
        ));
    }
    Ok(match dialect {
        Dialect::OpenAi => Parsed::Events(openai_events(&value)),
        Dialect::Anthropic => anthropic_events(&value),
    })
}

fn usage_of(value: &Value, input: &str, output: &str) -> Option<Usage> {
    let number = |key| value.get(key).and_then(Value::as_u64);
    match (number(input), number(output)) {
        (None, None) => None,
        (i, o) => Some(Usage::new(i.unwrap_or(0), o.unwrap_or(0))),
    }
}

fn openai_events(chunk: &Value) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    let choice = chunk.get("choices").and_then(|c| c.get(0));
    if let Some(text) = choice
        .and_then(|c| c.pointer("/delta/content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        events.push(StreamEvent::Text(text.to_owned()));
    }
    if let Some(reason) = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
    {
        events.push(StreamEvent::Finish(FinishReason::from_provider(reason)));
    }
    if let Some(usage) = chunk
        .get("usage")
        .and_then(|u| usage_of(u, "prompt_tokens", "completion_tokens"))
    {
        events.push(StreamEvent::Usage(usage));
    }
    if let Some(model) = chunk.get("model").and_then(Value::as_str) {
        events.insert(0, StreamEvent::Model(model.to_owned()));
    }
    events
}

fn anthropic_events(event: &Value) -> Parsed {
    let mut events = Vec::new();
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            let message = event.get("message");
            if let Some(model) = message.and_then(|m| m.get("model")).and_then(Value::as_str) {
                events.push(StreamEvent::Model(model.to_owned()));
            }
            if let Some(usage) = message
                .and_then(|m| m.get("usage"))
                .and_then(|u| usage_of(u, "input_tokens", "output_tokens"))
            {
                events.push(StreamEvent::Usage(usage));
            }
        }
        Some("content_block_delta") => {
            if let Some(text) = event.pointer("/delta/text").and_then(Value::as_str) {
                events.push(StreamEvent::Text(text.to_owned()));
            }
        }
        Some("message_delta") => {
            if let Some(reason) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                events.push(StreamEvent::Finish(FinishReason::from_provider(reason)));
            }
            // The output count only: the input count came with message_start.
            if let Some(output) = event
                .pointer("/usage/output_tokens")
                .and_then(Value::as_u64)
            {
                let input = event.pointer("/usage/input_tokens").and_then(Value::as_u64);
                events.push(StreamEvent::Usage(Usage::new(input.unwrap_or(0), output)));
            }
        }
        Some("message_stop") => return Parsed::Done,
        _ => {} // ping, content_block_start / stop
    }
    Parsed::Events(events)
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
            let mut events = Vec::new();
            for part in [&body[..split], &body[split..]] {
                buffer.extend_from_slice(part);
                while let Some(event) = take_event(&mut buffer) {
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

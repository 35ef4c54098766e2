//! Streamed answers: server-sent events read as they arrive, as typed events.

use std::time::SystemTime;

use bytes::BytesMut;
use http::HeaderMap;
use serde_json::Value;
use tollgate_core::{
    ErrorKind, FinishReason, JsonMap, LlmError, LlmResponse, Usage,
    stream::{LlmStream, StreamEvent, ToolCallDelta},
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
///     if let StreamEvent::Text { text, .. } = event? {
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
    meta_sent: bool,
    usage: Usage,
    /// Anthropic: which content block opened which tool call.
    blocks: Vec<(u64, u32)>,
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
            meta_sent: false,
            usage: Usage::default(),
            blocks: Vec::new(),
        }
    }

    /// Queues `events`, the model and the answer's fields once each and usage merged: OpenAI
    /// repeats the model and fields in every chunk, and Anthropic sends the prompt's counts first
    /// and the answer's last.
    fn queue(&mut self, events: Vec<StreamEvent>) {
        for event in events {
            match event {
                StreamEvent::Model(_) if self.model_sent => {}
                StreamEvent::Model(model) => {
                    self.model_sent = true;
                    self.pending.push_back(StreamEvent::Model(model));
                }
                StreamEvent::Meta(_) if self.meta_sent => {}
                StreamEvent::Meta(meta) => {
                    self.meta_sent = true;
                    self.pending.push_back(StreamEvent::Meta(meta));
                }
                StreamEvent::Usage(mut usage) => {
                    if usage.input_tokens == 0 {
                        usage.input_tokens = self.usage.input_tokens;
                        usage.cached_input_tokens = self.usage.cached_input_tokens;
                        usage.cache_write_tokens = self.usage.cache_write_tokens;
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
                match parse(self.dialect, &raw, &self.provider, &mut self.blocks) {
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
                        match parse(self.dialect, &rest, &self.provider, &mut self.blocks) {
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

    /// Reads the whole stream into one response, the same the call returns without streaming:
    /// every choice with its text, reasoning, refusal and tool calls, the usage, the headers and
    /// the rate-limit snapshot.
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
fn parse(
    dialect: Dialect,
    raw: &[u8],
    provider: &str,
    blocks: &mut Vec<(u64, u32)>,
) -> Result<Parsed, LlmError> {
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
        Dialect::Anthropic => anthropic_events(&value, blocks),
    })
}

/// What an OpenAI chunk says: each choice's pieces and finish, its usage, and (in the first) the
/// answer's own fields.
fn openai_events(chunk: &Value) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    if let Some(model) = chunk.get("model").and_then(Value::as_str) {
        events.push(StreamEvent::Model(model.to_owned()));
    }
    if let Value::Object(fields) = chunk {
        let mut meta: JsonMap = fields
            .iter()
            // `obfuscation` pads each chunk against length side channels: it is not the answer's.
            .filter(|(key, _)| {
                !matches!(key.as_str(), "choices" | "model" | "usage" | "obfuscation")
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if meta.get("object").and_then(Value::as_str) == Some("chat.completion.chunk") {
            meta.insert("object".into(), "chat.completion".into());
        }
        if !meta.is_empty() {
            events.push(StreamEvent::Meta(meta));
        }
    }
    let choices = chunk.get("choices").and_then(Value::as_array);
    for choice in choices.into_iter().flatten() {
        let at = choice
            .get("index")
            .and_then(Value::as_u64)
            .map_or(0, |i| i as u32);
        let delta = choice.get("delta");
        let text = |key: &str| {
            delta
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        if let Some(text) = text("reasoning_content").or_else(|| text("reasoning")) {
            events.push(StreamEvent::Reasoning { choice: at, text });
        }
        if let Some(text) = text("content") {
            events.push(StreamEvent::Text { choice: at, text });
        }
        if let Some(text) = text("refusal") {
            events.push(StreamEvent::Refusal { choice: at, text });
        }
        let calls = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array);
        for (position, call) in calls.into_iter().flatten().enumerate() {
            let string = |pointer: &str| {
                call.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .map_or(position as u32, |i| i as u32);
            events.push(StreamEvent::ToolCall {
                choice: at,
                call: ToolCallDelta::new(
                    index,
                    string("/id"),
                    string("/function/name"),
                    string("/function/arguments").unwrap_or_default(),
                ),
            });
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            events.push(StreamEvent::Finish {
                choice: at,
                reason: FinishReason::from_provider(reason),
            });
        }
    }
    if let Some(Ok(usage)) = chunk
        .get("usage")
        .and_then(Value::as_object)
        .map(Usage::from_openai)
    {
        events.push(StreamEvent::Usage(usage));
    }
    events
}

/// The usage an Anthropic `usage` object reports, with the prompt counted whole: Anthropic's
/// `input_tokens` leaves out the tokens read from and written to its cache.
pub(crate) fn anthropic_usage(usage: &Value) -> Option<Usage> {
    let number = |key| usage.get(key).and_then(Value::as_u64);
    if usage.as_object().is_none_or(|fields| fields.is_empty()) {
        return None;
    }
    let read = number("cache_read_input_tokens").unwrap_or(0);
    let written = number("cache_creation_input_tokens").unwrap_or(0);
    let input = number("input_tokens").unwrap_or(0);
    Some(
        Usage::new(input + read + written, number("output_tokens").unwrap_or(0))
            .with_cached_input(read)
            .with_cache_write(written),
    )
}

/// What one Anthropic event says. `blocks` maps the message's content blocks to the tool calls
/// they open, so that `input_json_delta` pieces find their call.
fn anthropic_events(event: &Value, blocks: &mut Vec<(u64, u32)>) -> Parsed {
    let mut events = Vec::new();
    let block = || event.get("index").and_then(Value::as_u64).unwrap_or(0);
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            let message = event.get("message");
            if let Some(model) = message.and_then(|m| m.get("model")).and_then(Value::as_str) {
                events.push(StreamEvent::Model(model.to_owned()));
            }
            if let Some(id) = message.and_then(|m| m.get("id")) {
                let mut meta = JsonMap::new();
                meta.insert("id".into(), id.clone());
                events.push(StreamEvent::Meta(meta));
            }
            if let Some(usage) = message
                .and_then(|m| m.get("usage"))
                .and_then(anthropic_usage)
            {
                events.push(StreamEvent::Usage(usage));
            }
        }
        Some("content_block_start") => {
            let content = event.get("content_block");
            if content.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("tool_use") {
                let index = blocks.len() as u32;
                blocks.push((block(), index));
                let string = |key: &str| {
                    content
                        .and_then(|c| c.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                events.push(StreamEvent::ToolCall {
                    choice: 0,
                    call: ToolCallDelta::new(index, string("id"), string("name"), ""),
                });
            }
        }
        Some("content_block_delta") => {
            let delta = event.get("delta");
            let string = |key: &str| {
                delta
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                Some("thinking_delta") => {
                    if let Some(text) = string("thinking") {
                        events.push(StreamEvent::Reasoning { choice: 0, text });
                    }
                }
                Some("input_json_delta") => {
                    let at = block();
                    let call = blocks.iter().find(|(b, _)| *b == at).map(|(_, i)| *i);
                    if let (Some(index), Some(json)) = (call, string("partial_json")) {
                        events.push(StreamEvent::ToolCall {
                            choice: 0,
                            call: ToolCallDelta::new(index, None, None, json),
                        });
                    }
                }
                _ => {
                    if let Some(text) = string("text") {
                        events.push(StreamEvent::text(text));
                    }
                }
            }
        }
        Some("message_delta") => {
            if let Some(reason) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                events.push(StreamEvent::finish(FinishReason::from_provider(reason)));
            }
            if let Some(usage) = event.get("usage").and_then(anthropic_usage) {
                events.push(StreamEvent::Usage(usage));
            }
        }
        Some("message_stop") => return Parsed::Done,
        _ => {} // ping, content_block_stop
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

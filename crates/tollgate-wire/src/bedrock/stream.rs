//! A streamed Converse answer: AWS's binary event stream (`application/vnd.amazon.eventstream`),
//! cut into messages by [`aws_smithy_eventstream`]'s frame decoder (prelude, headers, payload,
//! both CRC32s checked), each event's JSON read into [`StreamEvent`]s.
//!
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>,
//! <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream>
//! (the framing).

use std::collections::VecDeque;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use serde_json::Value;
use tollgate_core::{
    ErrorKind, JsonMap, LlmError, UpstreamError, redact,
    stream::{StreamEvent, ToolCallDelta},
    upstream_summary,
};

use super::{
    answer::{converse_usage, finish_reason},
    error_kind,
};
use crate::sse::{Decode, cut_short, unreadable};

/// The bytes before an event-stream message's headers: total length, headers length, CRC.
const PRELUDE: usize = 12;

/// A ConverseStream body as it arrives, read into [`StreamEvent`]s: bytes go in with
/// [`feed`](Decode::feed), events come out of [`next_event`](Decode::next_event), whatever the
/// chunking.
///
/// It ends well only once both `messageStop` and `metadata` (the usage) have come. A body that
/// ends before, a message past the size bound (known from its prelude, before it is read), a
/// frame whose CRC does not match, an event that is not JSON, and an exception event
/// (`throttlingException` → `RateLimited`, `serviceUnavailableException` → `Overloaded`,
/// `validationException` → `InvalidRequest`, `modelStreamErrorException` and
/// `internalServerException` → `Server`, ...) each end it with an error; nothing follows an error.
///
/// ```
/// use aws_smithy_eventstream::frame::write_message_to;
/// use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
/// use tollgate_core::stream::StreamEvent;
/// use tollgate_wire::{bedrock::ConverseEvents, sse::Decode};
///
/// let mut body = Vec::new();
/// for (event, payload) in [
///     ("messageStart", r#"{"role":"assistant"}"#),
///     ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#),
///     ("messageStop", r#"{"stopReason":"end_turn"}"#),
///     ("metadata", r#"{"usage":{"inputTokens":5,"outputTokens":1,"totalTokens":6},"metrics":{"latencyMs":90}}"#),
/// ] {
///     let header = |name: &'static str, value: &'static str| {
///         Header::new(name, HeaderValue::String(value.into()))
///     };
///     let message = Message::new(payload.as_bytes().to_vec())
///         .add_header(header(":event-type", event))
///         .add_header(header(":message-type", "event"))
///         .add_header(header(":content-type", "application/json"));
///     write_message_to(&message, &mut body).unwrap();
/// }
/// let mut events = ConverseEvents::new("bedrock", 1 << 20);
/// events.feed(&body);
/// events.end();
/// let mut texts = Vec::new();
/// while let Some(event) = events.next_event() {
///     if let StreamEvent::Text { text, .. } = event.unwrap() {
///         texts.push(text);
///     }
/// }
/// assert_eq!(texts, ["Hi"]);
/// ```
#[derive(Debug)]
pub struct ConverseEvents {
    provider: String,
    frames: MessageFrameDecoder,
    buffer: BytesMut,
    /// The length of the message being read, once its prelude has been looked at.
    frame: Option<usize>,
    max_event: usize,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    done: bool,
    stopped: bool,
    metadata: bool,
    /// Which content block opened which tool call.
    calls: Vec<(u64, u32)>,
}

impl ConverseEvents {
    /// A decoder for `provider`'s ConverseStream body, refusing a message past `max_event` bytes.
    pub fn new(provider: &str, max_event: usize) -> Self {
        Self {
            provider: provider.to_owned(),
            frames: MessageFrameDecoder::new(),
            buffer: BytesMut::new(),
            frame: None,
            max_event,
            pending: VecDeque::new(),
            done: false,
            stopped: false,
            metadata: false,
            calls: Vec::new(),
        }
    }

    fn fail(&mut self, error: LlmError) {
        self.done = true;
        self.buffer = BytesMut::new();
        self.pending.push_back(Err(error));
    }

    /// Reads the next whole message in the buffer, if there is one.
    fn next_message(&mut self) -> Option<Result<Message, LlmError>> {
        if self.frame.is_none() {
            if self.buffer.len() < PRELUDE {
                return None;
            }
            let length = u32::from_be_bytes(self.buffer[..4].try_into().expect("four bytes"));
            let length = length as usize;
            if length > self.max_event {
                let most = self.max_event;
                return Some(Err(LlmError::new(
                    ErrorKind::Server,
                    format!(
                        "{}: the upstream sent a stream event over the limit of {most} bytes",
                        self.provider
                    ),
                )));
            }
            self.frame = Some(length);
        }
        match self.frames.decode_frame(&mut self.buffer) {
            Ok(DecodedFrame::Complete(message)) => {
                self.frame = None;
                Some(Ok(message))
            }
            Ok(DecodedFrame::Incomplete) => None,
            Err(error) => {
                tracing::debug!(provider = %self.provider, %error, "an event-stream frame could not be read");
                Some(Err(LlmError::new(
                    ErrorKind::Server,
                    format!(
                        "{}: the upstream sent a stream frame that could not be read",
                        self.provider
                    ),
                )))
            }
        }
    }

    fn read(&mut self, message: &Message) {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|value| value.as_str().to_owned())
        };
        let payload: Value = if message.payload().is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(message.payload()) {
                Ok(payload) => payload,
                Err(error) => return self.fail(unreadable(&self.provider, &error)),
            }
        };
        match header(":message-type").as_deref() {
            Some("exception") => {
                let name = header(":exception-type").unwrap_or_default();
                let error = exception(&self.provider, &name, &payload);
                return self.fail(error);
            }
            Some("error") => {
                let name = header(":error-code").unwrap_or_default();
                let said = header(":error-message").map(Value::from);
                let error = exception(&self.provider, &name, &json_message(said));
                return self.fail(error);
            }
            _ => {}
        }
        let event = header(":event-type").unwrap_or_default();
        let events = self.events(&event, &payload);
        self.pending.extend(events.into_iter().map(Ok));
        if self.stopped && self.metadata {
            self.done = true;
        }
    }

    fn events(&mut self, event: &str, payload: &Value) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        let block = payload
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let string = |pointer: &str| {
            payload
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match event {
            "contentBlockStart" if payload.pointer("/start/toolUse").is_some() => {
                let index = self.calls.len() as u32;
                self.calls.push((block, index));
                let call = ToolCallDelta::new(
                    index,
                    string("/start/toolUse/toolUseId"),
                    string("/start/toolUse/name"),
                    "",
                );
                events.push(StreamEvent::ToolCall { choice: 0, call });
            }
            "contentBlockDelta" => {
                if let Some(text) = string("/delta/text") {
                    events.push(StreamEvent::text(text));
                } else if let Some(input) = string("/delta/toolUse/input") {
                    let call = self.calls.iter().find(|(b, _)| *b == block);
                    if let Some((_, index)) = call {
                        let call = ToolCallDelta::new(*index, None, None, input);
                        events.push(StreamEvent::ToolCall { choice: 0, call });
                    }
                } else if let Some(text) = string("/delta/reasoningContent/text") {
                    events.push(StreamEvent::Reasoning { choice: 0, text });
                } else if let Some(signature) = string("/delta/reasoningContent/signature") {
                    events.push(StreamEvent::ReasoningSignature {
                        choice: 0,
                        signature,
                    });
                }
            }
            "messageStop" => {
                self.stopped = true;
                if let Some(reason) = string("/stopReason") {
                    events.push(StreamEvent::finish(finish_reason(&reason)));
                }
                if let Some(fields) = payload.get("additionalModelResponseFields") {
                    let mut meta = JsonMap::new();
                    meta.insert("additionalModelResponseFields".into(), fields.clone());
                    events.push(StreamEvent::Meta(meta));
                }
            }
            "metadata" => {
                self.metadata = true;
                if let Some(usage) = payload.get("usage").and_then(converse_usage) {
                    events.push(StreamEvent::Usage(usage));
                }
                let mut meta = JsonMap::new();
                for name in ["metrics", "trace", "performanceConfig"] {
                    if let Some(value) = payload.get(name) {
                        meta.insert(name.into(), value.clone());
                    }
                }
                if !meta.is_empty() {
                    events.push(StreamEvent::Meta(meta));
                }
            }
            // messageStart (the role), contentBlockStop, and events this reader does not know.
            _ => {}
        }
        events
    }
}

fn json_message(message: Option<Value>) -> Value {
    let mut object = serde_json::Map::new();
    if let Some(message) = message {
        object.insert("message".into(), message);
    }
    Value::Object(object)
}

/// The error for an exception event named `name` (`throttlingException`, ...) in a stream that
/// had begun: its kind from the name, a fixed sentence, and what the upstream said as an
/// [`UpstreamError`] (its words logged at debug level, redacted, and kept only where they explain
/// the caller's request).
fn exception(provider: &str, name: &str, payload: &Value) -> LlmError {
    let kind = error_kind(name).unwrap_or(ErrorKind::Server);
    let message = payload
        .get("message")
        .or_else(|| payload.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let said = UpstreamError::new(None)
        .with_identifiers(Some(name), None, None)
        .with_message(kind, message);
    tracing::debug!(provider, exception = name, message = %redact(message), "the upstream failed mid-stream");
    let mut text = format!("{provider}: {} (mid-stream)", upstream_summary(kind));
    if let Some(message) = &said.message {
        text.push_str(": ");
        text.push_str(message);
    }
    LlmError::new(kind, text).with_extension(said)
}

impl Decode for ConverseEvents {
    fn feed(&mut self, bytes: &[u8]) {
        if !self.done {
            self.buffer.extend_from_slice(bytes);
        }
    }

    fn end(&mut self) {
        if self.done {
            return;
        }
        // Whole messages still buffered are read first.
        while !self.done {
            match self.next_message() {
                Some(Ok(message)) => self.read(&message),
                Some(Err(error)) => self.fail(error),
                None => break,
            }
        }
        if !self.done {
            let missing = if self.stopped {
                "metadata"
            } else {
                "messageStop"
            };
            let why = format!("the upstream closed the stream before its end ({missing})");
            self.fail(cut_short(&self.provider, &why));
        }
    }

    fn stop(&mut self) {
        self.done = true;
        self.pending.clear();
    }

    fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    fn next_event(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            match self.next_message()? {
                Ok(message) => self.read(&message),
                Err(error) => self.fail(error),
            }
        }
    }
}

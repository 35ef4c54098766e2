//! A streamed Messages answer: its events read into [`StreamEvent`]s ([`MessageStream`], the
//! client's side), and written from them ([`MessageEvents`], the door's side), or passed on as
//! they came.

use serde_json::{Value, json};
use tollgate_core::{
    FinishReason, Usage,
    stream::{StreamEvent, ToolCallDelta},
};

use super::answer::{anthropic_usage, stop_reason, usage};
use crate::sse::{Format, Read, write_event, write_verbatim};

/// The Messages stream format: `message_start`, content blocks and their deltas, `message_delta`,
/// ending with `message_stop`.
#[derive(Debug, Default)]
pub struct MessageStream {
    model_said: bool,
    meta_said: bool,
    /// Which content block opened which tool call.
    blocks: Vec<(u64, u32)>,
}

impl Format for MessageStream {
    const END: &'static str = "message_stop";

    fn read(&mut self, event: &Value) -> Read {
        let blocks = &mut self.blocks;
        let mut events = Vec::new();
        let block = || event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = event.get("message");
                let model = message.and_then(|m| m.get("model")).and_then(Value::as_str);
                if let Some(model) = model.filter(|_| !self.model_said) {
                    self.model_said = true;
                    events.push(StreamEvent::Model(model.to_owned()));
                }
                if let Some(id) = message
                    .and_then(|m| m.get("id"))
                    .filter(|_| !self.meta_said)
                {
                    self.meta_said = true;
                    let mut meta = tollgate_core::JsonMap::new();
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
                    Some("signature_delta") => {
                        if let Some(signature) = string("signature") {
                            events.push(StreamEvent::ReasoningSignature {
                                choice: 0,
                                signature,
                            });
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
            Some("message_stop") => return Read::End,
            _ => {} // ping, content_block_stop
        }
        Read::Events(events)
    }
}

/// What kind of block is open in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool(u32),
}

/// Writes a stream's events as the Messages stream's `event:`/`data:` pairs. Only the first
/// choice is written: the Messages API has one.
///
/// A stream whose first event came as the upstream sent it ([`StreamEvent::Verbatim`]) is an
/// upstream that speaks this API: its events are passed on as they came, and the typed events
/// read from them pass by.
#[derive(Debug)]
pub struct MessageEvents {
    id: String,
    model: String,
    started: bool,
    /// Whether the events pass on as they came.
    verbatim: bool,
    open: Option<Block>,
    /// Blocks opened so far: the next block's index.
    blocks: u32,
    finish: Option<FinishReason>,
    usage: Usage,
}

impl MessageEvents {
    /// A writer for the answer to call `id` (`msg_<id>`, unless the answer names its own).
    pub fn new(id: String) -> Self {
        Self {
            id,
            model: String::new(),
            started: false,
            verbatim: false,
            open: None,
            blocks: 0,
            finish: None,
            usage: Usage::default(),
        }
    }

    /// Appends what `event` becomes to `out`.
    pub fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if let StreamEvent::Verbatim(raw) = event {
            if !self.started {
                self.verbatim = true;
            }
            if self.verbatim {
                write_verbatim(out, raw);
            }
            return;
        }
        if self.verbatim {
            return;
        }
        let (block, delta) = match event {
            StreamEvent::Model(model) => {
                self.model.clone_from(model);
                return;
            }
            StreamEvent::Meta(fields) => {
                if let Some(id) = fields.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                return;
            }
            StreamEvent::Usage(usage) => {
                self.usage = *usage;
                return;
            }
            StreamEvent::Finish { choice: 0, reason } => {
                self.finish = Some(reason.clone());
                return;
            }
            StreamEvent::Text { choice: 0, text } | StreamEvent::Refusal { choice: 0, text } => {
                (Block::Text, json!({ "type": "text_delta", "text": text }))
            }
            StreamEvent::Reasoning { choice: 0, text } => (
                Block::Thinking,
                json!({ "type": "thinking_delta", "thinking": text }),
            ),
            StreamEvent::ReasoningSignature {
                choice: 0,
                signature,
            } => (
                Block::Thinking,
                json!({ "type": "signature_delta", "signature": signature }),
            ),
            StreamEvent::ToolCall { choice: 0, call } => {
                let block = Block::Tool(call.index);
                if self.open != Some(block) {
                    self.open_block(
                        block,
                        json!({
                            "type": "tool_use",
                            "id": call.id.as_deref().unwrap_or(""),
                            "name": call.name.as_deref().unwrap_or(""),
                            "input": {},
                        }),
                        out,
                    );
                }
                if call.arguments.is_empty() {
                    return;
                }
                (
                    block,
                    json!({ "type": "input_json_delta", "partial_json": call.arguments }),
                )
            }
            _ => return,
        };
        if self.open != Some(block) {
            let start = match block {
                Block::Thinking => json!({ "type": "thinking", "thinking": "" }),
                _ => json!({ "type": "text", "text": "" }),
            };
            self.open_block(block, start, out);
        }
        let index = self.blocks - 1;
        event_line(
            out,
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "type": "message_start",
            "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            },
        });
        event_line(out, "message_start", &message);
    }

    fn open_block(&mut self, block: Block, start: Value, out: &mut Vec<u8>) {
        self.start(out);
        self.close_block(out);
        event_line(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": self.blocks, "content_block": start }),
        );
        self.open = Some(block);
        self.blocks += 1;
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let index = self.blocks - 1;
            event_line(
                out,
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
        }
    }

    /// The events that end the message once the stream has: the last block's stop, the stop
    /// reason and usage, and `message_stop`.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if self.verbatim {
            return; // `message_stop` passed on as it came
        }
        self.start(out);
        self.close_block(out);
        let delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason(self.finish.as_ref()), "stop_sequence": null },
            "usage": usage(&self.usage),
        });
        event_line(out, "message_delta", &delta);
        event_line(out, "message_stop", &json!({ "type": "message_stop" }));
    }

    /// Appends the `error` event that ends a stream that failed midway; `error` is its whole
    /// data object.
    pub fn fail(&mut self, error: &Value, out: &mut Vec<u8>) {
        write_event(out, Some("error"), error);
    }
}

fn event_line(out: &mut Vec<u8>, name: &str, data: &Value) {
    write_event(out, Some(name), data);
}

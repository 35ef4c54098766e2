//! An answer written as Anthropic writes one: a whole `message`, or the Messages stream's events
//! (`message_start`, content blocks, `message_delta`, `message_stop`).

use serde_json::{Value, json};
use tollgate::{FinishReason, LlmResponse, Usage, stream::StreamEvent};

/// Anthropic's `stop_reason` for a finish.
fn stop_reason(reason: Option<&FinishReason>) -> Value {
    match reason {
        None => Value::Null,
        Some(FinishReason::Stop) => "end_turn".into(),
        Some(FinishReason::Length) => "max_tokens".into(),
        Some(FinishReason::ToolCalls) => "tool_use".into(),
        Some(FinishReason::ContentFilter) => "refusal".into(),
        Some(other) => other.as_str().into(),
    }
}

/// Usage as Anthropic counts it: `input_tokens` are those neither read from nor written to the
/// cache.
fn usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.uncached_input_tokens(),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    })
}

/// The answer's first choice as a Messages `message`: thinking, text and `tool_use` blocks.
pub(crate) fn message(answer: &LlmResponse, id: &str) -> Value {
    let mut content = Vec::new();
    let choice = answer.choices.first();
    if let Some(message) = choice.map(|c| &c.message) {
        if let Some(thinking) = &message.reasoning {
            let signature = message
                .extra
                .get(tollgate::REASONING_SIGNATURE)
                .and_then(Value::as_str)
                .unwrap_or("");
            content
                .push(json!({ "type": "thinking", "thinking": thinking, "signature": signature }));
        }
        let text = message.content.as_deref().or(message.refusal.as_deref());
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            content.push(json!({ "type": "text", "text": text }));
        }
        for call in &message.tool_calls {
            let input: Value = serde_json::from_str(&call.function.arguments)
                .unwrap_or_else(|_| json!({ "arguments": call.function.arguments }));
            content.push(json!({
                "type": "tool_use", "id": call.id, "name": call.function.name, "input": input,
            }));
        }
    }
    json!({
        "id": answer.extra.get("id").and_then(Value::as_str).map_or_else(|| format!("msg_{id}"), str::to_owned),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": stop_reason(choice.and_then(|c| c.finish_reason.as_ref())),
        "stop_sequence": null,
        "usage": usage(&answer.usage),
    })
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
#[derive(Debug)]
pub(crate) struct MessageEvents {
    id: String,
    model: String,
    started: bool,
    open: Option<Block>,
    /// Blocks opened so far: the next block's index.
    blocks: u32,
    finish: Option<FinishReason>,
    usage: Usage,
}

impl MessageEvents {
    pub(crate) fn new(id: String) -> Self {
        Self {
            id,
            model: String::new(),
            started: false,
            open: None,
            blocks: 0,
            finish: None,
            usage: Usage::default(),
        }
    }

    /// Appends what `event` becomes to `out`.
    pub(crate) fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
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
    pub(crate) fn end(&mut self, out: &mut Vec<u8>) {
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
}

/// One server-sent event: `event: <name>` and its `data:` line.
pub(crate) fn event_line(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut *out, data).expect("an event serializes");
    out.extend_from_slice(b"\n\n");
}

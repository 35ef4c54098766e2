//! [`ChunkWriter`]: a stream's events as OpenAI `chat.completion.chunk` objects, for answering an
//! OpenAI client with server-sent events.

use serde_json::{Value, json};

use crate::{JsonMap, Usage};

use super::event::StreamEvent;

/// Writes a stream's events as OpenAI `chat.completion.chunk` objects: the `data:` lines of a
/// `text/event-stream` answer to an OpenAI client (the caller adds `data: [DONE]` at the end).
///
/// The model and the answer's own fields (`id`, `created`, ...) are held from the events that
/// carry them and repeated in every chunk, as OpenAI does. A choice's first piece also says
/// `role: assistant`. Usage becomes the last, choice-less chunk only for a caller who asked for it
/// (`stream_options.include_usage`).
///
/// ```
/// use tollgate_core::{FinishReason, stream::{ChunkWriter, StreamEvent}};
///
/// let mut writer = ChunkWriter::new(false);
/// assert!(writer.chunks(&StreamEvent::Model("gpt-4o".into())).is_empty());
/// let [first] = &writer.chunks(&StreamEvent::text("Hel"))[..] else { panic!() };
/// assert_eq!(first["object"], "chat.completion.chunk");
/// assert_eq!(first["choices"][0]["delta"], serde_json::json!({ "role": "assistant", "content": "Hel" }));
/// let [last] = &writer.chunks(&StreamEvent::finish(FinishReason::Stop))[..] else { panic!() };
/// assert_eq!(last["choices"][0]["finish_reason"], "stop");
/// ```
#[derive(Debug, Default)]
pub struct ChunkWriter {
    include_usage: bool,
    fields: JsonMap,
    /// The choices whose first piece has been written (and said their role).
    started: Vec<u32>,
}

impl ChunkWriter {
    /// A writer; `include_usage` when the caller asked for usage.
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            ..Self::default()
        }
    }

    /// The chunks `event` becomes: none for the model and the answer's fields (held for the
    /// chunks that follow) and for usage nobody asked for, one otherwise.
    pub fn chunks(&mut self, event: &StreamEvent) -> Vec<Value> {
        let (choice, delta) = match event {
            StreamEvent::Model(model) => {
                self.fields.insert("model".into(), model.as_str().into());
                return Vec::new();
            }
            StreamEvent::Meta(fields) => {
                for (key, value) in fields {
                    self.fields
                        .entry(key.clone())
                        .or_insert_with(|| value.clone());
                }
                return Vec::new();
            }
            StreamEvent::Usage(usage) => {
                return if self.include_usage {
                    vec![self.usage_chunk(*usage)]
                } else {
                    Vec::new()
                };
            }
            StreamEvent::Text { choice, text } => (*choice, json!({ "content": text })),
            StreamEvent::Reasoning { choice, text } => {
                (*choice, json!({ "reasoning_content": text }))
            }
            StreamEvent::ReasoningSignature { choice, signature } => {
                (*choice, json!({ crate::REASONING_SIGNATURE: signature }))
            }
            StreamEvent::Refusal { choice, text } => (*choice, json!({ "refusal": text })),
            StreamEvent::ToolCall { choice, call } => {
                let mut piece =
                    json!({ "index": call.index, "function": { "arguments": call.arguments } });
                if let Some(id) = &call.id {
                    piece["id"] = id.as_str().into();
                    piece["type"] = "function".into();
                }
                if let Some(name) = &call.name {
                    piece["function"]["name"] = name.as_str().into();
                }
                (*choice, json!({ "tool_calls": [piece] }))
            }
            StreamEvent::Finish { choice, reason } => {
                let mut chunk = self.chunk(*choice, json!({}));
                chunk["choices"][0]["finish_reason"] = reason.as_str().into();
                return vec![chunk];
            }
        };
        vec![self.chunk(choice, delta)]
    }

    /// A chunk carrying `delta` for `choice`, its role said on the choice's first.
    fn chunk(&mut self, choice: u32, mut delta: Value) -> Value {
        if !self.started.contains(&choice) {
            self.started.push(choice);
            let mut first = JsonMap::new();
            first.insert("role".into(), "assistant".into());
            first.extend(delta.as_object().cloned().unwrap_or_default());
            delta = Value::Object(first);
        }
        let mut chunk = self.head();
        chunk.insert(
            "choices".into(),
            json!([{ "index": choice, "delta": delta, "finish_reason": null }]),
        );
        Value::Object(chunk)
    }

    fn usage_chunk(&self, usage: Usage) -> Value {
        let mut chunk = self.head();
        chunk.insert("choices".into(), json!([]));
        // The usage fields tollgate does not model came with the answer's own fields.
        let rest = self.fields.get("usage").and_then(Value::as_object);
        chunk.insert("usage".into(), usage.write_openai(rest).into());
        Value::Object(chunk)
    }

    /// What every chunk starts with: the answer's fields, the model, the chunk's object type.
    fn head(&self) -> JsonMap {
        let mut head: JsonMap = self
            .fields
            .iter()
            .filter(|(key, _)| key.as_str() != "usage")
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        head.insert("object".into(), "chat.completion.chunk".into());
        head
    }
}

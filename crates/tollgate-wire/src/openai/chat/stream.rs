//! A streamed chat-completions answer: `chat.completion.chunk` events read into
//! [`StreamEvent`]s ([`Chunks`], the client's side) and written from them ([`ChunkWriter`] and
//! [`ChunkEvents`], the door's side).

use serde_json::{Value, json};
use tollgate_core::{
    FinishReason, JsonMap, REASONING_SIGNATURE, Usage,
    stream::{StreamEvent, ToolCallDelta},
};

use crate::sse::{Format, Read};

/// The chat-completions stream format: each event a `chat.completion.chunk`, the end `[DONE]`
/// once every answer (choice) the stream spoke of has finished.
#[derive(Debug, Default)]
pub struct Chunks {
    /// The model and the answer's fields go out once: OpenAI repeats them in every chunk.
    model_said: bool,
    meta_said: bool,
    /// The answers the stream spoke of, and those it finished.
    choices: Vec<u32>,
    finished: Vec<u32>,
}

impl Format for Chunks {
    const END: &'static str = "[DONE]";

    fn is_end(data: &str) -> bool {
        data == "[DONE]"
    }

    fn read(&mut self, chunk: &Value) -> Read {
        Read::Events(self.events(chunk))
    }

    fn whole(&self) -> Result<(), &'static str> {
        let unfinished = self.choices.iter().any(|c| !self.finished.contains(c));
        if unfinished || self.finished.is_empty() {
            return Err("without a finish reason for every answer");
        }
        Ok(())
    }
}

impl Chunks {
    /// What a chunk says: each choice's pieces and finish, its usage, and (until they have been
    /// said) the model and the answer's own fields.
    fn events(&mut self, chunk: &Value) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if let Some(model) = chunk
            .get("model")
            .and_then(Value::as_str)
            .filter(|_| !self.model_said)
        {
            self.model_said = true;
            events.push(StreamEvent::Model(model.to_owned()));
        }
        if let (false, Value::Object(fields)) = (self.meta_said, chunk) {
            let mut meta: JsonMap = fields
                .iter()
                // `obfuscation` pads each chunk against length side channels: not the answer's.
                .filter(|(key, _)| {
                    !matches!(key.as_str(), "choices" | "model" | "usage" | "obfuscation")
                })
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            if meta.get("object").and_then(Value::as_str) == Some("chat.completion.chunk") {
                meta.insert("object".into(), "chat.completion".into());
            }
            if !meta.is_empty() {
                self.meta_said = true;
                events.push(StreamEvent::Meta(meta));
            }
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            self.choice(choice, &mut events);
        }
        // Groq has sent a stream's usage under `x_groq` (and `x_groq` stays in the answer).
        let usage = chunk
            .get("usage")
            .filter(|usage| !usage.is_null())
            .or_else(|| chunk.pointer("/x_groq/usage"));
        if let Some(Ok(usage)) = usage.and_then(Value::as_object).map(Usage::from_openai) {
            events.push(StreamEvent::Usage(usage));
        }
        events
    }

    fn choice(&mut self, choice: &Value, events: &mut Vec<StreamEvent>) {
        let at = choice
            .get("index")
            .and_then(Value::as_u64)
            .map_or(0, |i| i as u32);
        if !self.choices.contains(&at) {
            self.choices.push(at);
        }
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
        if let Some(signature) = text(REASONING_SIGNATURE) {
            events.push(StreamEvent::ReasoningSignature {
                choice: at,
                signature,
            });
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
            if !self.finished.contains(&at) {
                self.finished.push(at);
            }
            events.push(StreamEvent::Finish {
                choice: at,
                reason: FinishReason::from_provider(reason),
            });
        }
    }
}

/// Writes a stream's events as OpenAI `chat.completion.chunk` objects: the `data:` lines of a
/// `text/event-stream` answer to an OpenAI client (the caller adds `data: [DONE]` at the end).
///
/// The model and the answer's own fields (`id`, `created`, ...) are held from the events that
/// carry them and repeated in every chunk, as OpenAI does. A choice's first piece also says
/// `role: assistant`. Usage becomes the last, choice-less chunk only for a caller who asked for it
/// (`stream_options.include_usage`).
///
/// ```
/// use tollgate_core::{FinishReason, stream::StreamEvent};
/// use tollgate_wire::openai::chat::ChunkWriter;
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
                (*choice, json!({ REASONING_SIGNATURE: signature }))
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
            // Another API's event as it came: this writer writes from what it says.
            _ => return Vec::new(),
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

/// A stream's events as a chat-completions caller reads them: `data:` lines of chunks, the
/// fields OpenAI's clients expect (`id`, `object`, `created`) given before the first piece where
/// the upstream's own chunks lack them, and `data: [DONE]` at a proper end.
#[derive(Debug)]
pub struct ChunkEvents {
    writer: ChunkWriter,
    /// Given to the writer before the first piece, after the upstream's own fields.
    required: Option<JsonMap>,
}

impl ChunkEvents {
    /// The events of call `id`; `include_usage` when the caller asked for usage.
    pub fn new(id: &str, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter::new(include_usage),
            required: Some(super::required_fields(id, "chat.completion.chunk", |_| {
                false
            })),
        }
    }

    /// Appends what `event` becomes (possibly nothing) to `out`.
    pub fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if !matches!(
            event,
            StreamEvent::Model(_) | StreamEvent::Meta(_) | StreamEvent::Verbatim(_)
        ) && let Some(required) = self.required.take()
        {
            // The writer keeps the first value of each field, so the upstream's win.
            self.writer.chunks(&StreamEvent::Meta(required));
        }
        for chunk in self.writer.chunks(event) {
            crate::sse::write_event(out, None, &chunk);
        }
    }

    /// Appends the end of a stream that ended well.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// Appends the error event (`data: {"error": ...}`, which OpenAI's clients raise) that ends a
    /// stream that failed midway; `error` is the whole object.
    pub fn fail(&mut self, error: &Value, out: &mut Vec<u8>) {
        crate::sse::write_event(out, None, error);
    }
}

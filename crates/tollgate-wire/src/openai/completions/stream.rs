//! A streamed completions answer: `text_completion` chunks read into [`StreamEvent`]s
//! ([`TextChunks`], the client's side), and written for a caller ([`CompletionEvents`], the
//! door's side), or passed on as they came.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tollgate_core::{FinishReason, JsonMap, Usage, stream::StreamEvent};

use crate::sse::{Format, Read, write_event, write_verbatim};

/// The completions stream format: each event a `text_completion` chunk (`choices[].text`, a
/// finish reason on each choice's last, a choice-less usage chunk when asked), the end `[DONE]`
/// once every choice the stream spoke of has finished.
#[derive(Debug, Default)]
pub struct TextChunks {
    model_said: bool,
    meta_said: bool,
    choices: Vec<u32>,
    finished: Vec<u32>,
}

impl Format for TextChunks {
    const END: &'static str = "[DONE]";

    fn is_end(data: &str) -> bool {
        data == "[DONE]"
    }

    fn read(&mut self, chunk: &Value) -> Read {
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
            let meta: JsonMap = fields
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "choices" | "model" | "usage"))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            if !meta.is_empty() {
                self.meta_said = true;
                events.push(StreamEvent::Meta(meta));
            }
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for (position, choice) in choices.into_iter().flatten().enumerate() {
            let at = choice
                .get("index")
                .and_then(Value::as_u64)
                .map_or(position as u32, |i| i as u32);
            if !self.choices.contains(&at) {
                self.choices.push(at);
            }
            if let Some(text) = choice
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                events.push(StreamEvent::Text {
                    choice: at,
                    text: text.to_owned(),
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
        let usage = chunk.get("usage").and_then(Value::as_object);
        if let Some(Ok(usage)) = usage.map(Usage::from_openai) {
            events.push(StreamEvent::Usage(usage));
        }
        Read::Events(events)
    }

    fn whole(&self) -> Result<(), &'static str> {
        let unfinished = self.choices.iter().any(|c| !self.finished.contains(c));
        if unfinished || self.finished.is_empty() {
            return Err("without a finish reason for every answer");
        }
        Ok(())
    }
}

/// Writes a stream's events for a completions caller: `data:` lines of `text_completion`
/// chunks, and `data: [DONE]` at a proper end.
///
/// A stream whose first event came as the upstream sent it ([`StreamEvent::Verbatim`]) is an
/// upstream that speaks this API: its chunks pass on as they came (its `[DONE]` among them), but
/// for the usage chunk the stack asked for when the caller did not. Any other stream (a cache
/// hit, a simulated provider) is written from its events, under the answer's fields, with
/// `cmpl-<id>` and `created` where it has none; usage only for a caller who asked for it
/// (`stream_options.include_usage`).
///
/// ```
/// use tollgate_core::{FinishReason, stream::StreamEvent};
/// use tollgate_wire::openai::completions::CompletionEvents;
///
/// let mut events = CompletionEvents::new("42", false);
/// let mut out = Vec::new();
/// events.write(&StreamEvent::Model("base".into()), &mut out);
/// events.write(&StreamEvent::text("Once"), &mut out);
/// events.write(&StreamEvent::finish(FinishReason::Length), &mut out);
/// events.end(&mut out);
/// let out = String::from_utf8(out).unwrap();
/// assert!(out.starts_with(r#"data: {"id":"cmpl-42","object":"text_completion","created":"#));
/// assert!(out.contains(r#""model":"base","choices":[{"text":"Once","index":0,"logprobs":null,"finish_reason":null}]}"#));
/// assert!(out.ends_with("\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n"));
/// ```
#[derive(Debug)]
pub struct CompletionEvents {
    include_usage: bool,
    /// Whether the events pass on as they came.
    verbatim: bool,
    started: bool,
    /// A chunk as it came, held until the events read from it say whether it is only usage.
    held: Option<Bytes>,
    held_usage: bool,
    head: Map<String, Value>,
}

impl CompletionEvents {
    /// The events of call `id`; `include_usage` when the caller asked for usage.
    pub fn new(id: &str, include_usage: bool) -> Self {
        let mut head = Map::new();
        head.insert("id".into(), format!("cmpl-{id}").into());
        head.insert("object".into(), "text_completion".into());
        head.insert("created".into(), super::answer::now().into());
        Self {
            include_usage,
            verbatim: false,
            started: false,
            held: None,
            held_usage: false,
            head,
        }
    }

    /// Appends what `event` becomes (possibly nothing) to `out`.
    pub fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if let StreamEvent::Verbatim(raw) = event {
            if !self.started {
                self.verbatim = true;
            }
            self.started = true;
            if self.verbatim {
                self.flush(out);
                self.held = Some(raw.clone());
            }
            return;
        }
        self.started = true;
        if self.verbatim {
            match event {
                StreamEvent::Usage(_) => self.held_usage = true,
                StreamEvent::Model(_) | StreamEvent::Meta(_) => {}
                // The chunk says more than usage: it goes now.
                _ => self.flush(out),
            }
            return;
        }
        let (choice, text, finish) = match event {
            StreamEvent::Model(model) => {
                self.head.insert("model".into(), model.as_str().into());
                return;
            }
            StreamEvent::Meta(fields) => {
                for (field, value) in fields {
                    if field != "object" {
                        self.head.insert(field.clone(), value.clone());
                    }
                }
                return;
            }
            StreamEvent::Usage(usage) => {
                if self.include_usage {
                    let mut chunk = self.head.clone();
                    chunk.insert("choices".into(), json!([]));
                    chunk.insert("usage".into(), usage.write_openai(None).into());
                    write_event(out, None, &Value::Object(chunk));
                }
                return;
            }
            StreamEvent::Text { choice, text } | StreamEvent::Refusal { choice, text } => {
                (*choice, text.as_str(), Value::Null)
            }
            StreamEvent::Finish { choice, reason } => (*choice, "", reason.as_str().into()),
            // What a text completion has no place for (reasoning, tool calls).
            _ => return,
        };
        let mut chunk = self.head.clone();
        chunk.insert(
            "choices".into(),
            json!([{ "text": text, "index": choice, "logprobs": null, "finish_reason": finish }]),
        );
        write_event(out, None, &Value::Object(chunk));
    }

    /// Writes the held chunk, unless it was only the usage the caller did not ask for.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(raw) = self.held.take()
            && (self.include_usage || !self.held_usage)
        {
            write_verbatim(out, &raw);
        }
        self.held_usage = false;
    }

    /// Appends the end of a stream that ended well.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if self.verbatim {
            self.flush(out); // `[DONE]` as it came
        } else {
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
    }

    /// Appends the error event (`data: {"error": ...}`, which OpenAI's clients raise) that ends a
    /// stream that failed midway; `error` is the whole object.
    pub fn fail(&mut self, error: &Value, out: &mut Vec<u8>) {
        if self.verbatim {
            self.flush(out);
        }
        write_event(out, None, error);
    }
}

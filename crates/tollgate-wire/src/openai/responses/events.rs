//! A streamed Responses answer written for a caller: the API's typed server-sent events, from
//! the stack's [`StreamEvent`]s or passed on as they came.

use serde_json::{Value, json};
use tollgate_core::{FinishReason, Usage, stream::StreamEvent};

use super::{
    ResponsesBody,
    answer::{Output, Said, json, now, status_of, write_item, write_response},
    item_id,
};
use crate::sse::write_verbatim;

/// Writes a stream's events as the Responses API's typed events, each with its
/// `sequence_number`, as OpenAI sends them: `response.created` and `response.in_progress`; per
/// output item `response.output_item.added`, its parts and deltas
/// (`response.reasoning_summary_text.delta`, `response.output_text.delta`,
/// `response.function_call_arguments.delta`), their `.done` events and
/// `response.output_item.done`; and last `response.completed` (or `response.incomplete`) with
/// the whole response. Only the first choice is written: the API has one.
///
/// A stream whose first event came as the upstream sent it ([`StreamEvent::Verbatim`]) is an
/// upstream that serves this API: its events are passed on as they came, and the typed events
/// read from them pass by.
///
/// ```
/// use tollgate_core::{Usage, stream::StreamEvent};
/// use tollgate_wire::openai::responses::{ResponseEvents, ResponsesBody, decode_request};
///
/// let request = decode_request(bytes::Bytes::from_static(br#"{"model": "m", "input": "Hi", "stream": true}"#), &Default::default()).unwrap();
/// let mut events = ResponseEvents::new("resp_1", request.extensions.get::<ResponsesBody>().unwrap());
/// let mut out = Vec::new();
/// events.write(&StreamEvent::Model("m-1".into()), &mut out);
/// events.write(&StreamEvent::text("Hel"), &mut out);
/// events.write(&StreamEvent::text("lo"), &mut out);
/// events.write(&StreamEvent::Usage(Usage::new(3, 2)), &mut out);
/// events.end(&mut out);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"));
/// assert!(text.contains(r#""type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1_0","output_index":0,"content_index":0,"delta":"Hel","logprobs":[]"#));
/// let completed: serde_json::Value = serde_json::from_slice(events.completed().unwrap()).unwrap();
/// assert_eq!(completed["output"][0]["content"][0]["text"], "Hello");
/// assert_eq!(completed["usage"]["output_tokens"], 2);
/// ```
#[derive(Debug)]
pub struct ResponseEvents {
    id: String,
    asked: ResponsesBody,
    created_at: u64,
    model: String,
    sequence: u64,
    started: bool,
    /// Whether the events pass on as they came.
    verbatim: bool,
    items: Vec<Item>,
    /// The item being written, when one is open.
    open: Option<usize>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    completed: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Item {
    Reasoning(String),
    Message(String),
    Call {
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    fn output(&self) -> Output<'_> {
        match self {
            Self::Reasoning(text) => Output::Reasoning(text.into()),
            Self::Message(text) => Output::Message(text.into()),
            Self::Call {
                call_id,
                name,
                arguments,
                ..
            } => Output::Call {
                call_id: call_id.into(),
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }
}

impl ResponseEvents {
    /// A writer for response `id` (`resp_...`), echoing what the call `asked` for.
    pub fn new(id: &str, asked: &ResponsesBody) -> Self {
        Self {
            id: id.to_owned(),
            asked: asked.clone(),
            created_at: now(),
            model: String::new(),
            sequence: 0,
            started: false,
            verbatim: false,
            items: Vec::new(),
            open: None,
            finish: None,
            usage: None,
            completed: None,
        }
    }

    /// Appends what `event` becomes to `out`.
    pub fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if let StreamEvent::Verbatim(raw) = event {
            if !self.started {
                self.started = true;
                self.verbatim = true;
            }
            if self.verbatim {
                self.keep_final(raw);
                write_verbatim(out, raw);
            }
            return;
        }
        if self.verbatim {
            return;
        }
        match event {
            // An empty piece says nothing, and opens no item (a whole answer has none for it).
            StreamEvent::Text { text, .. }
            | StreamEvent::Refusal { text, .. }
            | StreamEvent::Reasoning { text, .. }
                if text.is_empty() => {}
            StreamEvent::Model(model) if !self.started => self.model.clone_from(model),
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish { choice: 0, reason } => self.finish = Some(reason.clone()),
            StreamEvent::Text { choice: 0, text } | StreamEvent::Refusal { choice: 0, text } => {
                let at = self.open_item(
                    out,
                    |item| matches!(item, Item::Message(_)),
                    || Item::Message(String::new()),
                );
                if let Item::Message(all) = &mut self.items[at] {
                    all.push_str(text);
                }
                let item = self.id_of(at);
                self.event(
                    out,
                    "response.output_text.delta",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"content_index\":0,\"delta\":");
                        json(out, text);
                        out.extend_from_slice(b",\"logprobs\":[]");
                    },
                    &item,
                );
            }
            StreamEvent::Reasoning { choice: 0, text } => {
                let at = self.open_item(
                    out,
                    |item| matches!(item, Item::Reasoning(_)),
                    || Item::Reasoning(String::new()),
                );
                if let Item::Reasoning(all) = &mut self.items[at] {
                    all.push_str(text);
                }
                let item = self.id_of(at);
                self.event(
                    out,
                    "response.reasoning_summary_text.delta",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"summary_index\":0,\"delta\":");
                        json(out, text);
                    },
                    &item,
                );
            }
            StreamEvent::ToolCall { choice: 0, call } => {
                let index = call.index;
                let known = self
                    .items
                    .iter()
                    .position(|item| matches!(item, Item::Call { index: i, .. } if *i == index));
                let at = match known {
                    Some(at) => at,
                    None => {
                        let item = Item::Call {
                            index,
                            call_id: call.id.clone().unwrap_or_default(),
                            name: call.name.clone().unwrap_or_default(),
                            arguments: String::new(),
                        };
                        self.add_item(out, item)
                    }
                };
                if call.arguments.is_empty() {
                    return;
                }
                if let Item::Call { arguments, .. } = &mut self.items[at] {
                    arguments.push_str(&call.arguments);
                }
                let item = self.id_of(at);
                self.event(
                    out,
                    "response.function_call_arguments.delta",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"delta\":");
                        json(out, &call.arguments);
                    },
                    &item,
                );
            }
            _ => {}
        }
    }

    /// The open item `is` says fits, or a new one made by `make` (closing the open one).
    fn open_item(
        &mut self,
        out: &mut Vec<u8>,
        is: impl Fn(&Item) -> bool,
        make: impl FnOnce() -> Item,
    ) -> usize {
        match self.open {
            Some(at) if is(&self.items[at]) => at,
            _ => self.add_item(out, make()),
        }
    }

    /// Adds `item` to the output (closing the open one), with its `added` events.
    fn add_item(&mut self, out: &mut Vec<u8>, item: Item) -> usize {
        self.start(out);
        self.close_item(out);
        let at = self.items.len();
        self.items.push(item);
        self.open = Some(at);
        let item = self.id_of(at);
        let mut added = Vec::new();
        write_item(&mut added, &self.id, at, &self.items[at].output(), false);
        self.event(
            out,
            "response.output_item.added",
            |out, _| {
                out.extend_from_slice(b"\"output_index\":");
                json(out, &at);
                out.extend_from_slice(b",\"item\":");
                out.extend_from_slice(&added);
            },
            &item,
        );
        match self.items[at] {
            Item::Message(_) => {
                self.event(
                    out,
                    "response.content_part.added",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"content_index\":0,\"part\":");
                        super::answer::write_output_text(out, "");
                    },
                    &item,
                );
            }
            Item::Reasoning(_) => {
                self.event(
                    out,
                    "response.reasoning_summary_part.added",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"summary_index\":0,\"part\":");
                        super::answer::write_summary_text(out, "");
                    },
                    &item,
                );
            }
            Item::Call { .. } => {}
        }
        at
    }

    /// Closes the open item, with its `done` events.
    fn close_item(&mut self, out: &mut Vec<u8>) {
        let Some(at) = self.open.take() else {
            return;
        };
        let item = self.id_of(at);
        let items = std::mem::take(&mut self.items);
        match &items[at] {
            Item::Message(text) => {
                self.event(
                    out,
                    "response.output_text.done",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"content_index\":0,\"text\":");
                        json(out, text);
                        out.extend_from_slice(b",\"logprobs\":[]");
                    },
                    &item,
                );
                self.event(
                    out,
                    "response.content_part.done",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"content_index\":0,\"part\":");
                        super::answer::write_output_text(out, text);
                    },
                    &item,
                );
            }
            Item::Reasoning(text) => {
                self.event(
                    out,
                    "response.reasoning_summary_text.done",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"summary_index\":0,\"text\":");
                        json(out, text);
                    },
                    &item,
                );
                self.event(
                    out,
                    "response.reasoning_summary_part.done",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"summary_index\":0,\"part\":");
                        super::answer::write_summary_text(out, text);
                    },
                    &item,
                );
            }
            Item::Call {
                name, arguments, ..
            } => {
                self.event(
                    out,
                    "response.function_call_arguments.done",
                    |out, id| {
                        field(out, "item_id", id);
                        out.extend_from_slice(b",\"output_index\":");
                        json(out, &at);
                        out.extend_from_slice(b",\"name\":");
                        json(out, name);
                        out.extend_from_slice(b",\"arguments\":");
                        json(out, arguments);
                    },
                    &item,
                );
            }
        }
        let mut done = Vec::new();
        write_item(&mut done, &self.id, at, &items[at].output(), true);
        self.event(
            out,
            "response.output_item.done",
            |out, _| {
                out.extend_from_slice(b"\"output_index\":");
                json(out, &at);
                out.extend_from_slice(b",\"item\":");
                out.extend_from_slice(&done);
            },
            &item,
        );
        self.items = items;
    }

    /// The id of output item `at`.
    fn id_of(&self, at: usize) -> String {
        item_id(self.items[at].output().prefix(), &self.id, at)
    }

    /// Appends one event named `name`: its `type`, `sequence_number`, then what `body` writes
    /// (given `item`, the id of the output item it is about).
    fn event(
        &mut self,
        out: &mut Vec<u8>,
        name: &str,
        body: impl FnOnce(&mut Vec<u8>, &str),
        item: &str,
    ) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        json(out, &self.sequence);
        out.push(b',');
        body(out, item);
        out.extend_from_slice(b"}\n\n");
        self.sequence += 1;
    }

    /// The Response object as it stands.
    fn response(&self, status: &str, incomplete: Option<&str>, error: Option<&Value>) -> Vec<u8> {
        let items: Vec<Output<'_>> = self.items.iter().map(Item::output).collect();
        let said = Said {
            id: &self.id,
            created_at: self.created_at,
            model: &self.model,
            status,
            incomplete,
            error,
            usage: self.usage.as_ref().filter(|_| status != "in_progress"),
        };
        let mut out = Vec::with_capacity(1024);
        write_response(&mut out, &said, &self.asked, &items);
        out
    }

    /// An event carrying the whole response.
    fn response_event(&mut self, out: &mut Vec<u8>, name: &str, response: &[u8]) {
        self.event(
            out,
            name,
            |out, _| {
                out.extend_from_slice(b"\"response\":");
                out.extend_from_slice(response);
            },
            "",
        );
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress", None, None);
        self.response_event(out, "response.created", &response);
        self.response_event(out, "response.in_progress", &response);
    }

    /// The events that end the response once the stream has: the open item's `done` events and
    /// `response.completed` (or `response.incomplete`, when the output bound stopped it) with
    /// the whole response.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if self.verbatim {
            return; // the upstream's own `response.completed` passed on as it came
        }
        self.start(out);
        self.close_item(out);
        let (status, incomplete) = status_of(self.finish.as_ref());
        let response = self.response(status, incomplete, None);
        let name = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.response_event(out, name, &response);
        self.completed = Some(response);
    }

    /// A failure mid-stream: an `error` event, then `response.failed` with the response as it
    /// stood. `error` is the gateway's error body in OpenAI's shape
    /// (`{"error": {"message", "type", "param", "code"}}`).
    pub fn fail(&mut self, error: &Value, out: &mut Vec<u8>) {
        let error = error.get("error").unwrap_or(error);
        let said = |key: &str| error.get(key).cloned().unwrap_or(Value::Null);
        let message = said("message");
        let message = if message.is_string() {
            message
        } else {
            Value::from("the upstream failed mid-stream")
        };
        let (code, param) = (said("code"), said("param"));
        self.event(
            out,
            "error",
            |out, _| {
                out.extend_from_slice(b"\"code\":");
                json(out, &code);
                out.extend_from_slice(b",\"message\":");
                json(out, &message);
                out.extend_from_slice(b",\"param\":");
                json(out, &param);
            },
            "",
        );
        self.started = true;
        self.verbatim = false;
        self.open = None;
        // `response.failed` carries one of the codes OpenAI's client knows.
        let code = match error.get("type").and_then(Value::as_str) {
            Some("rate_limit_error" | "rate_limit_exceeded") => "rate_limit_exceeded",
            _ => "server_error",
        };
        let failed = json!({ "code": code, "message": message });
        let response = self.response("failed", None, Some(&failed));
        self.response_event(out, "response.failed", &response);
    }

    /// The final Response object once the stream completed (the `response` of
    /// `response.completed` or `response.incomplete`, written here or passed through): what a
    /// stored response keeps.
    pub fn completed(&self) -> Option<&[u8]> {
        self.completed.as_deref()
    }

    /// Keeps the `response` of an upstream's final event that passed through.
    fn keep_final(&mut self, raw: &[u8]) {
        let finals: [&[u8]; 2] = [b"response.completed", b"response.incomplete"];
        if !finals
            .iter()
            .any(|name| raw.windows(name.len()).any(|w| w == *name))
        {
            return;
        }
        let data = raw
            .split(|b| *b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .map(<[u8]>::trim_ascii)
            .collect::<Vec<_>>()
            .join(&b'\n');
        #[derive(serde::Deserialize)]
        struct Final<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(borrow)]
            response: &'a serde_json::value::RawValue,
        }
        if let Ok(event) = serde_json::from_slice::<Final<'_>>(&data)
            && (event.kind == "response.completed" || event.kind == "response.incomplete")
        {
            self.completed = Some(event.response.get().as_bytes().to_vec());
        }
    }
}

/// Writes `"key":"value"`.
fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    json(out, value);
}

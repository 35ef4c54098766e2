//! A streamed Responses answer read from an upstream: its typed events into [`StreamEvent`]s.

use serde_json::{Value, json};
use tollgate_core::{
    JsonMap,
    stream::{StreamEvent, ToolCallDelta},
};

use super::answer::{finish_of, usage_of};
use crate::sse::{Format, Read};

/// The Responses stream format: `response.created`, output items and their deltas, ending with
/// `response.completed` (or `response.incomplete`), after which the upstream closes the stream.
/// An `error` event or `response.failed` ends it with an error.
///
/// Text deltas become text, reasoning summary and reasoning text deltas reasoning, function calls
/// tool calls (numbered in the order they open), and the final response's `status` and `usage`
/// the finish and the usage.
#[derive(Debug, Default)]
pub struct ResponsesStream {
    said_model: bool,
    /// Which output item opened which tool call.
    calls: Vec<(u64, u32)>,
    /// Whether the stream reached its final event.
    ended: bool,
}

impl Format for ResponsesStream {
    const END: &'static str = "response.completed";
    const ENDS_AT_CLOSE: bool = true;

    fn read(&mut self, event: &Value) -> Read {
        let mut events = Vec::new();
        let string = |key: &str| event.get(key).and_then(Value::as_str);
        let output = event
            .get("output_index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match string("type") {
            Some("response.created") => {
                let response = event.get("response");
                let model = response
                    .and_then(|r| r.get("model"))
                    .and_then(Value::as_str);
                if let Some(model) = model.filter(|_| !self.said_model) {
                    self.said_model = true;
                    events.push(StreamEvent::Model(model.to_owned()));
                    if let Some(id) = response.and_then(|r| r.get("id")) {
                        let mut meta = JsonMap::new();
                        meta.insert("id".into(), id.clone());
                        events.push(StreamEvent::Meta(meta));
                    }
                }
            }
            Some("response.output_item.added") => {
                let item = event.get("item");
                let field = |key: &str| {
                    item.and_then(|i| i.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                if field("type").as_deref() == Some("function_call") {
                    let index = self.calls.len() as u32;
                    self.calls.push((output, index));
                    let arguments = field("arguments").unwrap_or_default();
                    events.push(StreamEvent::ToolCall {
                        choice: 0,
                        call: ToolCallDelta::new(index, field("call_id"), field("name"), arguments),
                    });
                }
            }
            Some("response.output_text.delta") => {
                if let Some(text) = string("delta") {
                    events.push(StreamEvent::text(text));
                }
            }
            Some("response.refusal.delta") => {
                if let Some(text) = string("delta") {
                    events.push(StreamEvent::Refusal {
                        choice: 0,
                        text: text.to_owned(),
                    });
                }
            }
            Some("response.reasoning_summary_text.delta" | "response.reasoning_text.delta") => {
                if let Some(text) = string("delta") {
                    events.push(StreamEvent::Reasoning {
                        choice: 0,
                        text: text.to_owned(),
                    });
                }
            }
            Some("response.function_call_arguments.delta") => {
                let call = self.calls.iter().find(|(o, _)| *o == output);
                if let (Some((_, index)), Some(delta)) = (call, string("delta")) {
                    events.push(StreamEvent::ToolCall {
                        choice: 0,
                        call: ToolCallDelta::new(*index, None, None, delta),
                    });
                }
            }
            Some("response.completed" | "response.incomplete") if !self.ended => {
                self.ended = true;
                let response = event.get("response");
                let field = |key: &str| response.and_then(|r| r.get(key));
                let status = field("status").and_then(Value::as_str);
                let finish = finish_of(status, field("incomplete_details"), !self.calls.is_empty());
                if let Some(finish) = finish {
                    events.push(StreamEvent::finish(finish));
                }
                if let Some(usage) = field("usage").filter(|u| u.is_object()) {
                    events.push(StreamEvent::Usage(usage_of(usage)));
                }
            }
            _ => {}
        }
        Read::Events(events)
    }

    /// An `error` event, or `response.failed` (its response's `error`), in the shape
    /// [`error_event`](crate::sse::error_event) reads: a rate limit as `rate_limit_error`.
    fn error(event: &Value) -> Option<Value> {
        let error = match event.get("type").and_then(Value::as_str) {
            Some("error") => event,
            Some("response.failed") => event.pointer("/response/error").unwrap_or(&Value::Null),
            _ => return event.get("error").filter(|e| !e.is_null()).cloned(),
        };
        let code = error.get("code").and_then(Value::as_str);
        let kind = match code {
            Some("rate_limit_exceeded") => "rate_limit_error",
            Some("server_is_overloaded" | "overloaded") => "overloaded_error",
            _ => "api_error",
        };
        Some(json!({
            "type": kind,
            "code": code,
            "message": error.get("message").and_then(Value::as_str).unwrap_or("the response failed"),
        }))
    }

    fn whole(&self) -> Result<(), &'static str> {
        if self.ended {
            Ok(())
        } else {
            Err("before response.completed")
        }
    }
}

//! From events to an answer ([`Assembled`]), and from an answer to events ([`events_of`]).

use crate::{AssistantMessage, Choice, LlmResponse, REASONING_SIGNATURE, ToolCall};

use super::event::{StreamEvent, ToolCallDelta};

/// An answer built from events: the same answer the call returns without streaming.
#[derive(Default)]
pub(super) struct Assembled {
    pub(super) response: LlmResponse,
}

impl Assembled {
    pub(super) fn add(&mut self, event: &StreamEvent) {
        let response = &mut self.response;
        match event {
            StreamEvent::Model(model) => response.model.clone_from(model),
            StreamEvent::Meta(extra) => {
                let fields = response.extra.make_mut();
                for (key, value) in extra {
                    fields.insert(key.clone(), value.clone());
                }
            }
            StreamEvent::Text { choice, text } => {
                push(&mut message(response, *choice).content, text);
            }
            StreamEvent::Reasoning { choice, text } => {
                push(&mut message(response, *choice).reasoning, text);
            }
            StreamEvent::ReasoningSignature { choice, signature } => {
                message(response, *choice)
                    .extra
                    .make_mut()
                    .insert(REASONING_SIGNATURE.into(), signature.as_str().into());
            }
            StreamEvent::Refusal { choice, text } => {
                push(&mut message(response, *choice).refusal, text);
            }
            StreamEvent::ToolCall { choice, call } => {
                add_call(&mut message(response, *choice).tool_calls, call);
            }
            StreamEvent::Finish { choice, reason } => {
                choice_at(response, *choice).finish_reason = Some(reason.clone());
            }
            StreamEvent::Usage(usage) => response.usage = *usage,
            // What it says comes in the typed events after it.
            StreamEvent::Verbatim(_) => {}
        }
    }
}

fn push(field: &mut Option<String>, text: &str) {
    field.get_or_insert_default().push_str(text);
}

/// The choice at `index`, made (with those before it) if it is not there yet.
fn choice_at(response: &mut LlmResponse, index: u32) -> &mut Choice {
    let position = match response.choices.iter().position(|c| c.index == index) {
        Some(position) => position,
        None => {
            let at = response.choices.partition_point(|c| c.index < index);
            response
                .choices
                .insert(at, Choice::new(index, AssistantMessage::default()));
            at
        }
    };
    &mut response.choices[position]
}

fn message(response: &mut LlmResponse, index: u32) -> &mut AssistantMessage {
    &mut choice_at(response, index).message
}

/// Adds a piece to the call at its index: the first piece opens it with its id and name, the
/// others add to its arguments.
fn add_call(calls: &mut Vec<ToolCall>, delta: &ToolCallDelta) {
    let index = delta.index as usize;
    while calls.len() <= index {
        calls.push(ToolCall::function("", "", ""));
    }
    let call = &mut calls[index];
    if let Some(id) = &delta.id {
        call.id.clone_from(id);
    }
    if let Some(name) = &delta.name {
        call.function.name.push_str(name);
    }
    call.function.arguments.push_str(&delta.arguments);
}

/// The events that say what `response` says, each whole piece in one event: its model, its
/// fields, each choice's reasoning, text, refusal, tool calls and finish, and its usage.
pub(super) fn events_of(response: &LlmResponse) -> Vec<StreamEvent> {
    let mut events = vec![StreamEvent::Model(response.model.clone())];
    if !response.extra.is_empty() {
        events.push(StreamEvent::Meta((*response.extra).clone()));
    }
    for choice in &response.choices {
        let at = choice.index;
        let message = &choice.message;
        if let Some(text) = &message.reasoning {
            events.push(StreamEvent::Reasoning {
                choice: at,
                text: text.clone(),
            });
        }
        if let Some(signature) = message
            .extra
            .get(REASONING_SIGNATURE)
            .and_then(serde_json::Value::as_str)
        {
            events.push(StreamEvent::ReasoningSignature {
                choice: at,
                signature: signature.to_owned(),
            });
        }
        if let Some(text) = &message.content {
            events.push(StreamEvent::Text {
                choice: at,
                text: text.clone(),
            });
        }
        if let Some(text) = &message.refusal {
            events.push(StreamEvent::Refusal {
                choice: at,
                text: text.clone(),
            });
        }
        for (index, call) in message.tool_calls.iter().enumerate() {
            events.push(StreamEvent::ToolCall {
                choice: at,
                call: ToolCallDelta::new(
                    index as u32,
                    Some(call.id.clone()),
                    Some(call.function.name.clone()),
                    call.function.arguments.clone(),
                ),
            });
        }
        if let Some(reason) = &choice.finish_reason {
            events.push(StreamEvent::Finish {
                choice: at,
                reason: reason.clone(),
            });
        }
    }
    events.push(StreamEvent::Usage(response.usage));
    events
}

//! A streamed Gemini answer (`streamGenerateContent?alt=sse`) read into [`StreamEvent`]s.

use serde_json::Value;
use tollgate_core::{
    FinishReason, JsonMap,
    stream::{StreamEvent, ToolCallDelta},
};

use super::{Part, call_id, candidate_index, finish_reason, gemini_usage, signature};
use crate::sse::{Format, Read};

/// The Gemini stream format: each event a whole `GenerateContentResponse` with the next parts;
/// no end event, the body's close ending it once every candidate has a finish reason (see the
/// [module's docs](super#the-stream)).
#[derive(Debug, Default)]
pub struct GenerateStream {
    model_said: bool,
    id: Option<String>,
    candidates: Vec<Candidate>,
    blocked: bool,
}

/// What the stream said of one candidate so far.
#[derive(Debug)]
struct Candidate {
    index: u32,
    calls: u32,
    finish: Option<String>,
}

impl Format for GenerateStream {
    const END: &'static str = "a finishReason for every candidate, then the close";
    const ENDS_AT_CLOSE: bool = true;

    fn read(&mut self, chunk: &Value) -> Read {
        let mut events = Vec::new();
        if let Some(model) = chunk
            .get("modelVersion")
            .and_then(Value::as_str)
            .filter(|_| !self.model_said)
        {
            self.model_said = true;
            events.push(StreamEvent::Model(model.to_owned()));
        }
        if let (None, Some(id)) = (&self.id, chunk.get("responseId").and_then(Value::as_str)) {
            self.id = Some(id.to_owned());
            let mut meta = JsonMap::new();
            meta.insert("id".into(), id.into());
            events.push(StreamEvent::Meta(meta));
        }
        if chunk
            .pointer("/promptFeedback/blockReason")
            .is_some_and(|r| !r.is_null())
        {
            self.blocked = true;
        }
        let candidates = chunk.get("candidates").and_then(Value::as_array);
        for (position, candidate) in candidates.into_iter().flatten().enumerate() {
            self.candidate(candidate, position, &mut events);
        }
        if let Some(usage) = chunk.get("usageMetadata").and_then(gemini_usage) {
            events.push(StreamEvent::Usage(usage));
        }
        Read::Events(events)
    }

    fn whole(&self) -> Result<(), &'static str> {
        let unfinished = self.candidates.iter().any(|c| c.finish.is_none());
        if unfinished || (self.candidates.is_empty() && !self.blocked) {
            return Err("without a finishReason for every candidate");
        }
        Ok(())
    }

    fn close(&mut self) -> Vec<StreamEvent> {
        let mut events: Vec<StreamEvent> = self
            .candidates
            .iter()
            .filter_map(|c| {
                let reason = c.finish.as_deref()?;
                Some(StreamEvent::Finish {
                    choice: c.index,
                    reason: finish_reason(reason, c.calls > 0),
                })
            })
            .collect();
        if events.is_empty() && self.blocked {
            events.push(StreamEvent::finish(FinishReason::ContentFilter));
        }
        events
    }
}

impl GenerateStream {
    fn candidate(&mut self, candidate: &Value, position: usize, events: &mut Vec<StreamEvent>) {
        let index = candidate_index(candidate, position);
        let at = match self.candidates.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.candidates.push(Candidate {
                    index,
                    calls: 0,
                    finish: None,
                });
                self.candidates.len() - 1
            }
        };
        let parts = candidate
            .pointer("/content/parts")
            .and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            let signed = signature(part);
            match Part::of(part) {
                Part::Text(text) if !text.is_empty() => events.push(StreamEvent::Text {
                    choice: index,
                    text: text.to_owned(),
                }),
                Part::Thought(text) if !text.is_empty() => events.push(StreamEvent::Reasoning {
                    choice: index,
                    text: text.to_owned(),
                }),
                Part::Call { name, args, id } => {
                    let state = &mut self.candidates[at];
                    let id = call_id(id, self.id.as_deref(), index, state.calls, signed);
                    events.push(StreamEvent::ToolCall {
                        choice: index,
                        call: ToolCallDelta::new(
                            state.calls,
                            Some(id),
                            Some(name.to_owned()),
                            args,
                        ),
                    });
                    state.calls += 1;
                    continue;
                }
                _ => {}
            }
            if let Some(signature) = signed {
                events.push(StreamEvent::ReasoningSignature {
                    choice: index,
                    signature: signature.to_owned(),
                });
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.candidates[at].finish = Some(reason.to_owned());
        }
    }
}

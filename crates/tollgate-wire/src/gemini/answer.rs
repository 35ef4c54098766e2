//! A whole Gemini answer (`GenerateContentResponse`) read into an [`LlmResponse`].

use serde_json::Value;
use tollgate_core::{
    AssistantMessage, Choice, FinishReason, JsonMap, LlmResponse, REASONING_SIGNATURE, ToolCall,
    Usage,
};

use super::{Part, call_id, candidate_index, finish_reason, signature};

/// Reads an upstream's `GenerateContentResponse`, with `asked` as its model when it names none
/// (see the [module's table](super)). A prompt Gemini blocked (`promptFeedback.blockReason`, no
/// candidates) reads as one choice finished by `content_filter`.
///
/// # Errors
///
/// Why it is not a Gemini answer: not a JSON object, or neither candidates nor a block reason.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let mut fields: JsonMap = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let candidates = match fields.remove("candidates") {
        Some(Value::Array(candidates)) => candidates,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err("candidates: expected a list".into()),
    };
    let blocked = fields
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .is_some_and(|r| !r.is_null());
    if candidates.is_empty() && !blocked {
        return Err("no candidates".into());
    }
    let usage = fields
        .remove("usageMetadata")
        .as_ref()
        .and_then(gemini_usage)
        .unwrap_or_default();
    let model = match fields.remove("modelVersion") {
        Some(Value::String(model)) => model,
        _ => asked.to_owned(),
    };
    let id = match fields.remove("responseId") {
        Some(Value::String(id)) => Some(id),
        _ => None,
    };
    let mut choices: Vec<Choice> = candidates
        .into_iter()
        .enumerate()
        .map(|(position, candidate)| choice(candidate, position, id.as_deref()))
        .collect();
    choices.sort_by_key(|c| c.index);
    if choices.is_empty() {
        choices.push(Choice::default().with_finish_reason(FinishReason::ContentFilter));
    }
    let mut extra = JsonMap::new();
    if let Some(id) = id {
        extra.insert("id".into(), id.into());
    }
    extra.extend(fields);
    let mut answer = LlmResponse::with_choices(model, choices).with_usage(usage);
    answer.extra = extra.into();
    Ok(answer)
}

/// One candidate as a choice.
fn choice(candidate: Value, position: usize, response: Option<&str>) -> Choice {
    let index = candidate_index(&candidate, position);
    let Value::Object(mut fields) = candidate else {
        return Choice::new(index, AssistantMessage::default());
    };
    let mut message = AssistantMessage::default();
    let parts = fields
        .remove("content")
        .and_then(|mut content| content.get_mut("parts").map(Value::take));
    let mut calls = 0;
    for part in parts
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let signed = signature(part);
        match Part::of(part) {
            // An empty piece says nothing, as in a stream.
            Part::Text(text) if !text.is_empty() => {
                message.content.get_or_insert_default().push_str(text);
            }
            Part::Thought(text) if !text.is_empty() => {
                message.reasoning.get_or_insert_default().push_str(text);
            }
            Part::Call { name, args, id } => {
                let id = call_id(id, response, index, calls, signed);
                message.tool_calls.push(ToolCall::function(id, name, args));
                calls += 1;
                continue;
            }
            _ => {}
        }
        if let Some(signed) = signed {
            message
                .extra
                .make_mut()
                .insert(REASONING_SIGNATURE.into(), signed.into());
        }
    }
    fields.remove("index");
    let mut choice = Choice::new(index, message);
    if let Some(Value::String(reason)) = fields.remove("finishReason") {
        choice.finish_reason = Some(finish_reason(&reason, calls > 0));
    }
    choice.extra = fields.into();
    choice
}

/// The usage a Gemini `usageMetadata` object reports (see the [module's table](super)): `None`
/// when it is not an object.
pub fn gemini_usage(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = number("thoughtsTokenCount");
    Some(
        Usage::new(
            number("promptTokenCount").saturating_add(number("toolUsePromptTokenCount")),
            number("candidatesTokenCount").saturating_add(thoughts),
        )
        .with_cached_input(number("cachedContentTokenCount"))
        .with_reasoning(thoughts),
    )
}

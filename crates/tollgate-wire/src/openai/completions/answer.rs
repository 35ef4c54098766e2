//! A whole completions answer (`text_completion`): read from an upstream's body into an
//! [`LlmResponse`] (the client's side), written from one for a caller (the door's side).

use serde_json::{Map, Value};
use tollgate_core::{AssistantMessage, Choice, FinishReason, JsonMap, LlmResponse, Usage};

/// Reads an upstream's `text_completion`, with `asked` as its model when it names none: each
/// choice's `text` as its content, its `finish_reason`, its `logprobs` and other fields as they
/// came; the usage; the answer's other fields (`id`, `created`, `system_fingerprint`, ...) in
/// [`LlmResponse::extra`].
///
/// # Errors
///
/// Why it is not a completions answer: not a JSON object, no `choices` array, a choice that is
/// not an object, a usage that is not OpenAI's.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let mut fields: JsonMap = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(Value::Array(choices)) = fields.remove("choices") else {
        return Err("no choices".into());
    };
    let choices = choices
        .into_iter()
        .enumerate()
        .map(|(position, choice)| match choice {
            Value::Object(choice) => Ok(choice_of(choice, position)),
            _ => Err(format!("choices[{position}] is not an object")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let usage = match fields.remove("usage") {
        Some(Value::Object(usage)) => Usage::from_openai(&usage)?,
        _ => Usage::default(),
    };
    let model = match fields.remove("model") {
        Some(Value::String(model)) if !model.is_empty() => model,
        _ => asked.to_owned(),
    };
    let mut answer = LlmResponse::with_choices(model, choices).with_usage(usage);
    answer.extra = fields.into();
    Ok(answer)
}

fn choice_of(mut choice: Map<String, Value>, position: usize) -> Choice {
    let index = choice
        .remove("index")
        .and_then(|index| index.as_u64())
        .map_or(position as u32, |index| index as u32);
    let text = match choice.remove("text") {
        Some(Value::String(text)) => text,
        _ => String::new(),
    };
    let mut out = Choice::new(index, AssistantMessage::text(text));
    out.finish_reason = match choice.remove("finish_reason") {
        Some(Value::String(reason)) => Some(FinishReason::from_provider(&reason)),
        _ => None,
    };
    out.logprobs = choice.remove("logprobs").filter(|l| !l.is_null());
    out.extra = choice.into();
    out
}

/// The answer's body for a caller as a `text_completion`: each choice's content as its `text`,
/// with its index, `logprobs` (or `null`) and finish reason; the usage; the answer's own fields,
/// and `id` (`cmpl-<id>` under the call's `id`) and `created` where it has none.
pub fn encode_answer(answer: &LlmResponse, id: &str) -> Vec<u8> {
    let mut object = Map::new();
    let own = |field: &str| answer.extra.get(field).cloned();
    object.insert(
        "id".into(),
        own("id").unwrap_or_else(|| format!("cmpl-{id}").into()),
    );
    object.insert("object".into(), "text_completion".into());
    object.insert(
        "created".into(),
        own("created").unwrap_or_else(|| now().into()),
    );
    object.insert("model".into(), answer.model.as_str().into());
    let choices: Vec<Value> = answer
        .choices
        .iter()
        .map(|choice| {
            let mut written = Map::new();
            let message = &choice.message;
            let text = message.content.as_deref().or(message.refusal.as_deref());
            written.insert("text".into(), text.unwrap_or("").into());
            written.insert("index".into(), choice.index.into());
            written.insert(
                "logprobs".into(),
                choice.logprobs.clone().unwrap_or(Value::Null),
            );
            written.insert(
                "finish_reason".into(),
                choice
                    .finish_reason
                    .as_ref()
                    .map_or(Value::Null, |reason| reason.as_str().into()),
            );
            for (field, value) in choice.extra.iter() {
                written
                    .entry(field.clone())
                    .or_insert_with(|| value.clone());
            }
            Value::Object(written)
        })
        .collect();
    object.insert("choices".into(), choices.into());
    object.insert("usage".into(), answer.usage.write_openai(None).into());
    for (field, value) in answer.extra.iter() {
        object.entry(field.clone()).or_insert_with(|| value.clone());
    }
    serde_json::to_vec(&object).expect("an answer serializes")
}

/// Seconds since the Unix epoch: `created` for an answer that has none.
pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs())
}

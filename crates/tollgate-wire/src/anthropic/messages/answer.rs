//! A whole Messages answer: read from an upstream's body into an [`LlmResponse`] (the client's
//! side), written from one for a caller (the door's side).

use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::{
    AssistantMessage, Choice, FinishReason, LlmResponse, REASONING_SIGNATURE, ToolCall, Usage,
};

/// Reads an upstream's `message`, with `asked` as its model when it names none: text blocks
/// joined as the content, `thinking` as the reasoning (its signature kept), `tool_use` blocks as
/// tool calls (their `input` as the arguments' JSON text), `stop_reason` as the finish reason,
/// the message id as `id`, and usage with the prompt counted whole. Blocks with no OpenAI form
/// (redacted thinking, server tools' blocks, citations) are not in the answer the stack reads; a
/// caller in this API gets them all the same, from the answer as it came.
///
/// # Errors
///
/// Why it is not a Messages answer.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut message = AssistantMessage::default();
    for block in &wire.content {
        let string = |key: &str| block.get(key).and_then(Value::as_str);
        match string("type") {
            Some("text") => {
                let text = string("text").unwrap_or_default();
                message.content.get_or_insert_default().push_str(text);
            }
            Some("thinking") => {
                let text = string("thinking").unwrap_or_default();
                message.reasoning.get_or_insert_default().push_str(text);
                if let Some(signature) = string("signature") {
                    message
                        .extra
                        .make_mut()
                        .insert(REASONING_SIGNATURE.into(), signature.into());
                }
            }
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or(Value::Null);
                message.tool_calls.push(ToolCall::function(
                    string("id").unwrap_or_default(),
                    string("name").unwrap_or_default(),
                    input.to_string(),
                ));
            }
            _ => {}
        }
    }
    let mut choice = Choice::new(0, message);
    choice.finish_reason = wire.stop_reason.as_deref().map(FinishReason::from_provider);
    let mut answer =
        LlmResponse::with_choices(wire.model.unwrap_or_else(|| asked.to_owned()), vec![choice])
            .with_usage(anthropic_usage(&wire.usage).unwrap_or_default());
    if let Some(id) = wire.id {
        answer.extra.make_mut().insert("id".into(), id.into());
    }
    Ok(answer)
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Value,
}

/// The usage an Anthropic `usage` object reports, with the prompt counted whole: Anthropic's
/// `input_tokens` leaves out the tokens read from and written to its cache.
pub fn anthropic_usage(usage: &Value) -> Option<Usage> {
    let number = |key| usage.get(key).and_then(Value::as_u64);
    if usage.as_object().is_none_or(|fields| fields.is_empty()) {
        return None;
    }
    let read = number("cache_read_input_tokens").unwrap_or(0);
    let written = number("cache_creation_input_tokens").unwrap_or(0);
    let input = number("input_tokens").unwrap_or(0);
    Some(
        Usage::new(input + read + written, number("output_tokens").unwrap_or(0))
            .with_cached_input(read)
            .with_cache_write(written),
    )
}

/// Anthropic's `stop_reason` for a finish.
pub(super) fn stop_reason(reason: Option<&FinishReason>) -> Value {
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
pub(super) fn usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.uncached_input_tokens(),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    })
}

/// The answer's first choice as a Messages `message` for a caller, under call `id` when the
/// answer has none: thinking, text and `tool_use` blocks.
pub fn encode_answer(answer: &LlmResponse, id: &str) -> Value {
    let mut content = Vec::new();
    let choice = answer.choices.first();
    if let Some(message) = choice.map(|c| &c.message) {
        if let Some(thinking) = &message.reasoning {
            let signature = message
                .extra
                .get(REASONING_SIGNATURE)
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

//! A whole Converse answer, read from an upstream's body into an [`LlmResponse`].
//!
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_ResponseSyntax>

use serde::Deserialize;
use serde_json::Value;
use tollgate_core::{
    AssistantMessage, Choice, FinishReason, LlmResponse, REASONING_SIGNATURE, ToolCall, Usage,
};

/// Reads a Converse answer for model `asked` (Converse names none): text blocks joined as the
/// content, `reasoningContent.reasoningText` as the reasoning (its signature kept), `toolUse`
/// blocks as tool calls (their `input` as the arguments' JSON text), `stopReason` as the finish
/// reason ([`finish_reason`]), usage with the prompt counted whole ([`converse_usage`]), and
/// `metrics`, `trace`, `additionalModelResponseFields` and `performanceConfig` kept as they came
/// in the answer's `extra`. Redacted reasoning has no OpenAI form and is not read.
///
/// # Errors
///
/// Why it is not a Converse answer.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut message = AssistantMessage::default();
    let content = wire
        .output
        .pointer("/message/content")
        .and_then(Value::as_array)
        .ok_or("no output.message.content")?;
    for block in content {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            message.content.get_or_insert_default().push_str(text);
        } else if let Some(reasoning) = block.pointer("/reasoningContent/reasoningText") {
            let text = reasoning.get("text").and_then(Value::as_str);
            message
                .reasoning
                .get_or_insert_default()
                .push_str(text.unwrap_or_default());
            if let Some(signature) = reasoning.get("signature").and_then(Value::as_str) {
                message
                    .extra
                    .make_mut()
                    .insert(REASONING_SIGNATURE.into(), signature.into());
            }
        } else if let Some(call) = block.get("toolUse") {
            let string = |key: &str| call.get(key).and_then(Value::as_str).unwrap_or_default();
            let input = call.get("input").cloned().unwrap_or(Value::Null);
            message.tool_calls.push(ToolCall::function(
                string("toolUseId"),
                string("name"),
                input.to_string(),
            ));
        }
    }
    let mut choice = Choice::new(0, message);
    choice.finish_reason = wire.stop_reason.as_deref().map(finish_reason);
    let usage = converse_usage(&wire.usage).unwrap_or_default();
    let mut answer = LlmResponse::with_choices(asked, vec![choice]).with_usage(usage);
    let kept = [
        ("metrics", wire.metrics),
        ("trace", wire.trace),
        (
            "additionalModelResponseFields",
            wire.additional_model_response_fields,
        ),
        ("performanceConfig", wire.performance_config),
    ];
    for (name, value) in kept {
        if !value.is_null() {
            answer.extra.make_mut().insert(name.into(), value);
        }
    }
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    output: Value,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Value,
    #[serde(default)]
    metrics: Value,
    #[serde(default)]
    trace: Value,
    #[serde(default)]
    additional_model_response_fields: Value,
    #[serde(default)]
    performance_config: Value,
}

/// Converse's `stopReason` as a finish reason: `end_turn` and `stop_sequence` stop, `max_tokens`
/// and `model_context_window_exceeded` are a length finish, `tool_use` asks for tool calls, and
/// `guardrail_intervened` and `content_filtered` are the provider withholding the answer.
pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        "model_context_window_exceeded" => FinishReason::Length,
        other => FinishReason::from_provider(other),
    }
}

/// The usage a Converse `usage` object reports, with the prompt counted whole: Converse's
/// `inputTokens` leaves out the tokens read from (`cacheReadInputTokens`) and written to
/// (`cacheWriteInputTokens`) the prompt cache, as Anthropic's API does, and its `totalTokens`
/// counts them.
pub fn converse_usage(usage: &Value) -> Option<Usage> {
    let fields = usage.as_object().filter(|fields| !fields.is_empty())?;
    let number = |key: &str| fields.get(key).and_then(Value::as_u64).unwrap_or(0);
    let read = number("cacheReadInputTokens");
    let written = number("cacheWriteInputTokens");
    Some(
        Usage::new(
            number("inputTokens")
                .saturating_add(read)
                .saturating_add(written),
            number("outputTokens"),
        )
        .with_cached_input(read)
        .with_cache_write(written),
    )
}

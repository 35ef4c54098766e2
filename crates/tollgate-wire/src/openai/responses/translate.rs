//! What of a call from the Responses door a translation carries, drops or refuses.

use serde_json::{Map, Value};
use tollgate_core::{Content, LlmRequest};

use super::{ResponsesBody, decode::UNTRANSLATED_ITEMS};

/// The chat-shape fields the door writes from a Responses body: every other field of a call from
/// the Responses door has no chat form, and a translating encoder leaves it out.
const TRANSLATED: [&str; 8] = [
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "user",
    "stream",
    "stream_options",
];

/// Responses fields with no chat form that ask for more detail or another service tier, not
/// another answer: a translation drops them (logged at debug level).
const DROPPED: [&str; 8] = [
    "include",
    "truncation",
    "max_tool_calls",
    "service_tier",
    "verbosity",
    "image",
    "access_programs",
    "background_options",
];

/// Whether a parameter of a call from the Responses door has no chat form, so a translating
/// encoder leaves it out: every field but those the door maps to chat ones (`tools`,
/// `tool_choice`, `parallel_tool_calls`, `response_format`, `reasoning_effort`, `user`, `stream`,
/// `stream_options`).
///
/// ```
/// use tollgate_wire::openai::responses::untranslated;
///
/// assert!(untranslated("include") && untranslated("truncation"));
/// assert!(!untranslated("tools") && !untranslated("reasoning_effort"));
/// ```
pub fn untranslated(field: &str) -> bool {
    !TRANSLATED.contains(&field)
}

/// Leaves out of a chat-shape body every field with no chat form, saying so at debug level.
pub(crate) fn drop_untranslated(fields: &mut Map<String, Value>) {
    fields.retain(|field, _| {
        let keep = !untranslated(field)
            || matches!(
                field.as_str(),
                "model"
                    | "messages"
                    | "temperature"
                    | "top_p"
                    | "max_tokens"
                    | "max_completion_tokens"
                    | "stop"
                    | "seed"
            );
        if !keep {
            tracing::debug!(field, "a Responses field with no chat form is left out");
        }
        keep
    });
}

/// What a translation of a call from the Responses door cannot honour, in words, for a
/// translating provider to refuse before anything is sent: a built-in tool (only OpenAI's
/// Responses API runs them) or a choice of one, an input item with no chat form, and a field
/// that would change the answer (`background: true`, `conversation`, `prompt`, `top_logprobs`,
/// `context_management`, `moderation`, any field this module does not know). A call from
/// another door is never refused.
///
/// ```
/// use tollgate_wire::openai::responses::{check_translatable, decode_request};
///
/// let call = |body: &'static [u8]| decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
/// assert!(check_translatable(&call(br#"{"model": "m", "input": "hi", "include": ["reasoning.encrypted_content"]}"#)).is_ok());
/// let refused = check_translatable(&call(br#"{"model": "m", "input": "hi", "tools": [{"type": "web_search_preview"}]}"#));
/// assert_eq!(refused.unwrap_err(), "the built-in tool `web_search_preview` runs only at OpenAI's Responses API");
/// ```
///
/// # Errors
///
/// The first thing refused, in words.
pub fn check_translatable(request: &LlmRequest) -> Result<(), String> {
    let Some(body) = request.extensions.get::<ResponsesBody>() else {
        return Ok(());
    };
    if let Some(tool) = body.hosted_tools().first() {
        return Err(format!(
            "the built-in tool `{tool}` runs only at OpenAI's Responses API"
        ));
    }
    let extra = &request.params.extra;
    if let Some(choice) = extra.get("tool_choice").filter(|c| c.is_object())
        && let Some(kind) = choice
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "function" && *k != "allowed_tools")
    {
        return Err(format!(
            "tool_choice: the built-in tool `{kind}` runs only at OpenAI's Responses API"
        ));
    }
    if let Some(Value::Array(items)) = extra.get(UNTRANSLATED_ITEMS) {
        let kind = items
            .first()
            .and_then(|item| item.get("type"))
            .and_then(Value::as_str);
        return Err(format!(
            "input: an item of type `{}` has no form outside OpenAI's Responses API",
            kind.unwrap_or("?")
        ));
    }
    for message in request.messages.iter() {
        if let Some(Content::Parts(parts)) = &message.content {
            for part in parts {
                if let Some(kind @ ("input_image" | "input_file")) =
                    part.get("type").and_then(Value::as_str)
                {
                    return Err(format!(
                        "input: an `{kind}` by file_id or file_url has no form outside OpenAI's \
                         Responses API"
                    ));
                }
            }
        }
    }
    for (field, value) in extra.iter() {
        if !untranslated(field) || field == UNTRANSLATED_ITEMS {
            continue;
        }
        if DROPPED.contains(&field.as_str()) {
            continue;
        }
        // Their off values ask for nothing a translation misses.
        let off = matches!(value, Value::Bool(false) | Value::Null)
            || (field == "top_logprobs" && value.as_u64() == Some(0));
        if !off {
            return Err(format!(
                "{field}: has no form outside OpenAI's Responses API; send the call to a \
                 provider that serves it"
            ));
        }
    }
    Ok(())
}

//! A Messages request, read from a caller's body into an [`LlmRequest`] (the OpenAI shape the
//! stack speaks): the system prompt as a system message, content blocks as content parts,
//! `tool_use` blocks as tool calls, `tool_result` blocks as tool messages, thinking as reasoning,
//! and every field with no OpenAI name kept as it came. The body itself rides along as it came
//! ([`MessagesBody`]), for an upstream that speaks this API.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};
use tollgate_core::{Content, JsonMap, LlmRequest, Message, Role};

use super::{FORWARDED_HEADERS, MessagesBody};
use crate::refusal::Refusal;

/// Reads a Messages request body, and keeps it as it came with the caller's
/// [`FORWARDED_HEADERS`] (as [`MessagesBody`], in the request's extensions).
///
/// The body is read once: its top level is looked through for where each field's value lies,
/// and each value is read from there.
///
/// ```
/// use tollgate_wire::anthropic::messages::{MessagesBody, decode_request};
///
/// let body = br#"{"model": "claude", "max_tokens": 1e3, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": "Hi"}], "top_k": 5}"#;
/// let request = decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
/// assert_eq!(request.params.max_tokens, Some(1000));
/// assert_eq!(request.messages.len(), 2);
/// assert_eq!(request.params.extra["top_k"], 5);
/// let kept = request.extensions.get::<MessagesBody>().unwrap();
/// assert_eq!(kept.field("max_tokens"), Some(&b"1e3"[..]));
///
/// let refused = decode_request(bytes::Bytes::from_static(br#"{"model": "c", "max_tokens": 10, "n": 2, "messages": []}"#), &Default::default());
/// assert_eq!(refused.unwrap_err().field.as_deref(), Some("n"));
/// ```
///
/// # Errors
///
/// A [`Refusal`] naming the field at fault: a missing or malformed `model`, `max_tokens` or
/// `messages`, a field given twice, `n` or `best_of` above 1, `top_logprobs`, another API's name
/// for the bound.
pub fn decode_request(body: Bytes, headers: &HeaderMap) -> Result<LlmRequest, Refusal> {
    let (object, kept) = crate::body::read_object(&body)?;
    let mut request = read(object)?;
    let mut forwarded = HeaderMap::new();
    for name in FORWARDED_HEADERS {
        for value in headers.get_all(&name) {
            forwarded.append(name.clone(), value.clone());
        }
    }
    request.extensions.insert(MessagesBody {
        body: body.clone(),
        fields: kept.into(),
        headers: forwarded,
    });
    Ok(request)
}

fn read(mut object: Map<String, Value>) -> Result<LlmRequest, Refusal> {
    let model = match object.remove("model") {
        Some(Value::String(model)) => model,
        _ => return Err(field_error("model", "required, a string")),
    };
    let max_tokens = match object.remove("max_tokens") {
        None | Some(Value::Null) => return Err(field_error("max_tokens", "required, a number")),
        Some(value) => count(&value, "max_tokens", 1)?,
    };
    // The Messages API answers with one message. An OpenAI upstream would bill `n` of them, and
    // the caller would see one: refused, unless it asks for just one.
    for field in ["n", "best_of"] {
        match object.remove(field) {
            None | Some(Value::Null) => {}
            Some(value) => {
                if count(&value, field, 1)? > 1 {
                    return Err(field_error(
                        field,
                        "the Messages API answers with one message: it must be 1",
                    ));
                }
            }
        }
    }
    // Other APIs' names for the bound would pass on as unknown fields, and bound nothing.
    for field in ["max_completion_tokens", "max_output_tokens"] {
        if object.remove(field).is_some_and(|v| !v.is_null()) {
            return Err(field_error(
                field,
                "the Messages API names its bound max_tokens",
            ));
        }
    }
    if let Some(value) = object.remove("top_logprobs").filter(|v| !v.is_null()) {
        count(&value, "top_logprobs", 0)?;
        return Err(field_error(
            "top_logprobs",
            "the Messages API has no log-probabilities",
        ));
    }
    let mut messages = Vec::new();
    match object.remove("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(Message::system(text)),
        Some(Value::Array(blocks)) => {
            messages.push(Message::new(Role::System, Content::Parts(blocks)));
        }
        Some(_) => return Err(field_error("system", "expected a string or text blocks")),
    }
    let Some(Value::Array(turns)) = object.remove("messages") else {
        return Err(field_error("messages", "required, an array"));
    };
    if turns.is_empty() {
        return Err(field_error("messages", "must not be empty"));
    }
    for (i, turn) in turns.into_iter().enumerate() {
        turn_messages(turn, &mut messages).map_err(|(field, reason)| {
            let at = if field.is_empty() {
                format!("messages[{i}]")
            } else {
                format!("messages[{i}].{field}")
            };
            field_error(&at, &reason)
        })?;
    }
    let mut request = LlmRequest::new(model, messages).with_max_tokens(max_tokens);
    let params = &mut request.params;
    if let Some(value) = object.remove("temperature") {
        params.temperature = Some(number(&value, "temperature")?);
    }
    if let Some(value) = object.remove("top_p") {
        params.top_p = Some(number(&value, "top_p")?);
    }
    if let Some(value) = object.remove("stop_sequences") {
        params.stop = serde_json::from_value(value)
            .map_err(|_| field_error("stop_sequences", "expected an array of strings"))?;
    }
    match object.remove("stream") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(stream)) => request.meta.stream = stream,
        Some(_) => return Err(field_error("stream", "expected true or false")),
    }
    let mut extra = JsonMap::new();
    if let Some(tools) = object.remove("tools") {
        extra.insert("tools".into(), tools_of(tools)?);
    }
    if let Some(choice) = object.remove("tool_choice") {
        let (choice, parallel) = tool_choice(&choice)?;
        extra.insert("tool_choice".into(), choice);
        if let Some(parallel) = parallel {
            extra.insert("parallel_tool_calls".into(), parallel.into());
        }
    }
    if let Some(user) = object
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        extra.insert("user".into(), user.into());
        object.remove("metadata");
    }
    if request.meta.stream {
        // A Messages stream always ends with its usage; the stack keeps it for callers who ask.
        extra.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    // Everything else (top_k, thinking, service_tier, ...) goes on as it came.
    extra.extend(object);
    if !extra.is_empty() {
        request.params.extra = extra.into();
    }
    Ok(request)
}

fn field_error(field: &str, reason: &str) -> Refusal {
    Refusal::field(field, reason)
}

/// A number that sets what a call may cost, read as core reads every such number: a whole
/// number from `least` up, nothing else.
fn count(value: &Value, field: &str, least: u32) -> Result<u32, Refusal> {
    tollgate_core::whole_number(value, least).map_err(|e| field_error(field, &e.to_string()))
}

fn number(value: &Value, field: &str) -> Result<f64, Refusal> {
    value
        .as_f64()
        .ok_or_else(|| field_error(field, "expected a number"))
}

type TurnError = (String, String);

/// One Messages turn as the OpenAI messages it becomes: a user turn's `tool_result` blocks as
/// `tool` messages (first, as OpenAI wants them right after the calls), then its other blocks; an
/// assistant turn's text, thinking and `tool_use` blocks as one assistant message.
fn turn_messages(turn: Value, out: &mut Vec<Message>) -> Result<(), TurnError> {
    let Value::Object(mut turn) = turn else {
        return Err((String::new(), "expected an object".into()));
    };
    let role = match turn.remove("role") {
        Some(Value::String(role)) if role == "user" => Role::User,
        Some(Value::String(role)) if role == "assistant" => Role::Assistant,
        _ => return Err(("role".into(), "expected `user` or `assistant`".into())),
    };
    let blocks = match turn.remove("content") {
        Some(Value::String(text)) => {
            out.push(Message::new(role, text));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return Err(("content".into(), "expected a string or blocks".into())),
    };
    match role {
        Role::Assistant => out.push(assistant(blocks)?),
        _ => user(blocks, out)?,
    }
    Ok(())
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn user(blocks: Vec<Value>, out: &mut Vec<Message>) -> Result<(), TurnError> {
    let mut parts = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        match block_type(&block) {
            "tool_result" => {
                let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                    return Err((
                        format!("content[{i}].tool_use_id"),
                        "required, a string".into(),
                    ));
                };
                let text = match block.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(inner)) => inner
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Some(_) => {
                        return Err((
                            format!("content[{i}].content"),
                            "expected a string or blocks".into(),
                        ));
                    }
                };
                let mut message = Message::new(Role::Tool, text);
                message.extra.insert("tool_call_id".into(), id.into());
                out.push(message);
            }
            "image" => parts.push(image_part(&block)),
            "text" | "" => parts.push(block),
            // Documents and whatever else the API grows: kept for an Anthropic upstream.
            _ => parts.push(block),
        }
    }
    if !parts.is_empty() {
        out.push(Message::new(Role::User, Content::Parts(parts)));
    }
    Ok(())
}

/// An image block as an OpenAI `image_url` part (the Anthropic client turns it back).
fn image_part(block: &Value) -> Value {
    let source = &block["source"];
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/png"),
            source["data"].as_str().unwrap_or("")
        ),
        Some("url") => source["url"].as_str().unwrap_or("").to_owned(),
        _ => return block.clone(),
    };
    json!({ "type": "image_url", "image_url": { "url": url } })
}

fn assistant(blocks: Vec<Value>) -> Result<Message, TurnError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut message = Message {
        role: Role::Assistant,
        content: None,
        extra: JsonMap::new(),
    };
    for (i, block) in blocks.into_iter().enumerate() {
        match block_type(&block) {
            "text" => text.push_str(block["text"].as_str().unwrap_or("")),
            "thinking" => {
                let field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or("");
                message
                    .extra
                    .insert("reasoning_content".into(), field("thinking").into());
                message.extra.insert(
                    tollgate_core::REASONING_SIGNATURE.into(),
                    field("signature").into(),
                );
            }
            "tool_use" => {
                let (Some(id), Some(name)) = (
                    block.get("id").and_then(Value::as_str),
                    block.get("name").and_then(Value::as_str),
                ) else {
                    return Err((
                        format!("content[{i}]"),
                        "a tool_use needs id and name".into(),
                    ));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": input.to_string() },
                }));
            }
            // redacted_thinking and others have no OpenAI place; dropping one is said nowhere
            // on the wire, so say it here.
            other => {
                tracing::debug!(
                    block = other,
                    "an assistant block with no OpenAI form is left out"
                );
            }
        }
    }
    if !text.is_empty() {
        message.content = Some(Content::Text(text));
    }
    if !calls.is_empty() {
        message.extra.insert("tool_calls".into(), calls.into());
    }
    Ok(message)
}

/// Anthropic tools (`name`, `description`, `input_schema`) as OpenAI function tools.
fn tools_of(tools: Value) -> Result<Value, Refusal> {
    let Value::Array(tools) = tools else {
        return Err(field_error("tools", "expected an array"));
    };
    tools
        .into_iter()
        .enumerate()
        .map(|(i, tool)| {
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| field_error(&format!("tools[{i}].name"), "required, a string"))?;
            let mut function = json!({ "name": name });
            if let Some(description) = tool.get("description") {
                function["description"] = description.clone();
            }
            function["parameters"] = tool
                .get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object" }));
            Ok(json!({ "type": "function", "function": function }))
        })
        .collect()
}

/// Anthropic's `tool_choice` as OpenAI's, and its `disable_parallel_tool_use` as
/// `parallel_tool_calls`.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), Refusal> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|disabled| !disabled);
    let openai = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| field_error("tool_choice.name", "required, a string"))?;
            json!({ "type": "function", "function": { "name": name } })
        }
        _ => {
            return Err(field_error(
                "tool_choice.type",
                "expected auto, any, tool or none",
            ));
        }
    };
    Ok((openai, parallel))
}

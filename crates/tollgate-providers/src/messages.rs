//! The Messages API's request body, from a request in the OpenAI shape.
//!
//! <https://docs.anthropic.com/en/api/messages>: system messages become `system`; assistant tool
//! calls become `tool_use` blocks and `tool` messages `tool_result` blocks with their id; image
//! parts become image blocks; `tools` get an `input_schema`; `tool_choice` and
//! `parallel_tool_calls` become Anthropic's `tool_choice`. What the API cannot express is refused
//! by name, never dropped.

use serde_json::{Map, Value, json};
use tollgate_core::{Content, ErrorKind, LlmError, LlmRequest, Message, REASONING_SIGNATURE, Role};

const NAME: &str = "anthropic";

fn refuse(reason: impl std::fmt::Display) -> LlmError {
    LlmError::new(ErrorKind::InvalidRequest, format!("{NAME}: {reason}"))
}

/// The body for `request`, with `default_max_tokens` when it sets no bound.
pub(crate) fn body(request: &LlmRequest, default_max_tokens: u32) -> Result<Value, LlmError> {
    let params = &request.params;
    let mut body = Map::new();
    body.insert("model".into(), Value::from(&*request.model));
    let max_tokens = params.max_tokens.unwrap_or(default_max_tokens);
    body.insert("max_tokens".into(), Value::from(max_tokens));
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => {
                system.extend(message.content.iter().flat_map(Content::texts));
            }
            Role::Assistant
                if !message.extra.contains_key("tool_calls")
                    && !message.extra.contains_key(REASONING_SIGNATURE) =>
            {
                messages.push(json!({
                    "role": "assistant",
                    "content": user_content(message.content.as_ref()),
                }));
            }
            Role::Assistant => messages.push(json!({
                "role": "assistant",
                "content": assistant_blocks(message).map_err(|e| refuse(format!("messages[{i}]: {e}")))?,
            })),
            Role::Tool => {
                let result = tool_result(message)
                    .map_err(|e| refuse(format!("messages[{i}]: {e}")))?;
                // Results of one turn's calls go back together, in one user turn.
                match messages.last_mut() {
                    Some(last) if is_tool_results(last) => {
                        last["content"]
                            .as_array_mut()
                            .expect("checked")
                            .push(result);
                    }
                    _ => messages.push(json!({ "role": "user", "content": [result] })),
                }
            }
            Role::User | Role::Function => messages.push(json!({
                "role": "user",
                "content": user_content(message.content.as_ref()),
            })),
        }
    }
    if !system.is_empty() {
        body.insert("system".into(), Value::from(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::from(messages));
    if let Some(temperature) = params.temperature {
        body.insert("temperature".into(), Value::from(temperature));
    }
    if let Some(top_p) = params.top_p {
        body.insert("top_p".into(), Value::from(top_p));
    }
    if !params.stop.is_empty() {
        body.insert("stop_sequences".into(), Value::from(params.stop.clone()));
    }
    let extra = &params.extra;
    if let Some(tools) = extra.get("tools") {
        body.insert("tools".into(), anthropic_tools(tools)?);
    }
    if let Some(choice) = tool_choice(extra.get("tool_choice"), extra.get("parallel_tool_calls"))? {
        body.insert("tool_choice".into(), choice);
    }
    match extra.get("response_format") {
        None | Some(Value::Null) => {}
        Some(format) if format.get("type").and_then(Value::as_str) == Some("text") => {}
        Some(format) => {
            return Err(refuse(format!(
                "the Messages API has no response_format ({}): describe the schema as a tool and \
                 force it with tool_choice, or ask for JSON in the prompt",
                format.get("type").unwrap_or(&Value::Null)
            )));
        }
    }
    if params.choices() > 1 {
        return Err(refuse(
            "the Messages API returns one answer per call: n (and best_of) must be 1",
        ));
    }
    if params.top_logprobs.is_some() {
        return Err(refuse(
            "the Messages API has no log-probabilities: leave out top_logprobs",
        ));
    }
    if let Some(user) = extra.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    for (key, value) in extra.iter() {
        // Already mapped, or OpenAI-only and rejected by the Messages API.
        if matches!(
            key.as_str(),
            "stream"
                | "stream_options"
                | "seed"
                | "tools"
                | "tool_choice"
                | "parallel_tool_calls"
                | "response_format"
                | "user"
        ) {
            continue;
        }
        body.entry(key.clone()).or_insert_with(|| value.clone());
    }
    Ok(Value::Object(body))
}

fn is_tool_results(message: &Value) -> bool {
    message["role"] == "user"
        && message["content"].as_array().is_some_and(|blocks| {
            blocks
                .iter()
                .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

/// A turn's content: its text, or its parts with images as image blocks.
fn user_content(content: Option<&Content>) -> Value {
    match content {
        Some(Content::Text(text)) => Value::from(text.as_str()),
        Some(Content::Parts(parts)) => parts.iter().map(part).collect(),
        None => Value::from(""),
    }
}

/// One content part as a block: `image_url` parts as image blocks (a `data:` URL as base64, any
/// other URL as a URL source); others as they are.
fn part(part: &Value) -> Value {
    if part.get("type").and_then(Value::as_str) != Some("image_url") {
        return part.clone();
    }
    let Some(url) = part.pointer("/image_url/url").and_then(Value::as_str) else {
        return part.clone();
    };
    let source = match url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((media_type, data)) => {
            json!({ "type": "base64", "media_type": media_type, "data": data })
        }
        None => json!({ "type": "url", "url": url }),
    };
    json!({ "type": "image", "source": source })
}

/// An assistant turn's blocks: its signed reasoning (which Anthropic needs back to go on
/// thinking across tool calls), its text, then a `tool_use` block per tool call.
fn assistant_blocks(message: &Message) -> Result<Vec<Value>, String> {
    let mut blocks = Vec::new();
    let field = |key: &str| message.extra.get(key).and_then(Value::as_str);
    if let (Some(thinking), Some(signature)) = (
        field("reasoning_content").or_else(|| field("reasoning")),
        field(REASONING_SIGNATURE),
    ) {
        blocks.push(json!({ "type": "thinking", "thinking": thinking, "signature": signature }));
    }
    let text: String = message.texts().collect();
    if !text.is_empty() {
        blocks.push(json!({ "type": "text", "text": text }));
    }
    let calls = message.extra.get("tool_calls").and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let field = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
        let arguments = field("/function/arguments").unwrap_or("{}");
        let input: Value = serde_json::from_str(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        })
        .map_err(|e| format!("tool_calls[{i}].function.arguments is not JSON: {e}"))?;
        blocks.push(json!({
            "type": "tool_use",
            "id": field("/id").ok_or(format!("tool_calls[{i}] has no id"))?,
            "name": field("/function/name").ok_or(format!("tool_calls[{i}] has no function name"))?,
            "input": input,
        }));
    }
    Ok(blocks)
}

/// A `tool` message as a `tool_result` block answering its call's id.
fn tool_result(message: &Message) -> Result<Value, String> {
    let id = message
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or("a tool message needs its tool_call_id")?;
    let content = match &message.content {
        Some(Content::Parts(parts)) => parts.iter().map(part).collect(),
        other => Value::from(other.iter().flat_map(Content::texts).collect::<String>()),
    };
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": content }))
}

/// OpenAI's function tools as Anthropic tools: name, description, and the parameters as
/// `input_schema`.
fn anthropic_tools(tools: &Value) -> Result<Value, LlmError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| refuse("tools must be a list"))?;
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                // Anthropic's own tools (`web_search_...`, `bash_...`) pass as they are.
                return Ok(tool.clone());
            }
            let function = tool.get("function").unwrap_or(&Value::Null);
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse(format!("tools[{i}].function has no name")))?;
            let mut out = json!({
                "name": name,
                "input_schema": function
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
            });
            if let Some(description) = function.get("description") {
                out["description"] = description.clone();
            }
            Ok(out)
        })
        .collect()
}

/// OpenAI's `tool_choice` (and `parallel_tool_calls: false`) as Anthropic's `tool_choice`.
fn tool_choice(
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Option<Value>, LlmError> {
    let mut out = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            other => return Err(refuse(format!("unknown tool_choice {other:?}"))),
        }),
        Some(object) => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse("tool_choice names no function"))?;
            Some(json!({ "type": "tool", "name": name }))
        }
    };
    if parallel == Some(&Value::Bool(false)) {
        let choice = out.get_or_insert_with(|| json!({ "type": "auto" }));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    Ok(out)
}

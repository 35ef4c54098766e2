//! The body a Messages upstream is sent: a call that came in this API as it came
//! ([`MessagesBody`]), or one in the OpenAI shape translated.
//!
//! Translated, system messages become `system`; assistant tool calls become `tool_use` blocks and
//! `tool` messages `tool_result` blocks with their id; image parts become image blocks; `tools`
//! get an `input_schema`; `tool_choice` and `parallel_tool_calls` become Anthropic's
//! `tool_choice`; `cache_control` marks on parts, messages and tools are kept. What the API cannot
//! express is refused by name, never dropped.

use serde_json::{Map, Value, json};
use tollgate_core::{Content, LlmRequest, Message, REASONING_SIGNATURE, Role};

use super::MessagesBody;
use crate::body::{json_bytes, rewritten};
use crate::openai::responses::{self, ResponsesBody};

/// The body for `request`: its own Messages body when it came in this API, else translated; with
/// `default_max_tokens` when it sets no bound, and `stream: true` for a stream.
///
/// # Errors
///
/// What the Messages API cannot express, in words: a `response_format` other than `text`, `n`
/// or `best_of` above 1, `top_logprobs`, tool calls whose arguments are not JSON, a tool message
/// with no call id.
pub fn encode_request(
    request: &LlmRequest,
    default_max_tokens: u32,
    stream: bool,
) -> Result<Vec<u8>, String> {
    let max_tokens = request.params.max_tokens.unwrap_or(default_max_tokens);
    if let Some(original) = request.extensions.get::<MessagesBody>() {
        return Ok(passed_through(original, request, max_tokens, stream));
    }
    let mut body = translated(request, max_tokens)?;
    if stream {
        body.insert("stream".into(), true.into());
    }
    Ok(serde_json::to_vec(&Value::Object(body)).expect("a JSON value serializes"))
}

/// The caller's own body, byte for byte, but for what the stack settled: the values of `model`,
/// `max_tokens` and `stream`, and a `temperature` where the caller set none.
fn passed_through(
    original: &MessagesBody,
    request: &LlmRequest,
    max_tokens: u32,
    stream: bool,
) -> Vec<u8> {
    let has = |name: &str| original.fields.iter().any(|(field, _)| field == name);
    let mut replaced = Vec::new();
    for (name, range) in original.fields.iter() {
        let value = match name.as_str() {
            "model" => json_bytes(&*request.model),
            "max_tokens" => json_bytes(&max_tokens),
            "stream" => json_bytes(&stream),
            _ => continue,
        };
        replaced.push((range.clone(), value));
    }
    let mut added = Vec::new();
    if let (false, Some(temperature)) = (has("temperature"), request.params.temperature) {
        added.push(("temperature", json_bytes(&temperature)));
    }
    if stream && !has("stream") {
        added.push(("stream", b"true".to_vec()));
    }
    rewritten(&original.body, replaced, &added)
}

/// `request`, from the OpenAI shape.
fn translated(request: &LlmRequest, max_tokens: u32) -> Result<Map<String, Value>, String> {
    let params = &request.params;
    let mut body = Map::new();
    body.insert("model".into(), Value::from(&*request.model));
    body.insert("max_tokens".into(), Value::from(max_tokens));
    let mut system = System::default();
    let mut messages: Vec<Value> = Vec::new();
    for (i, message) in request.messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => system.add(message),
            Role::Assistant
                if !message.extra.contains_key("tool_calls")
                    && !message.extra.contains_key(REASONING_SIGNATURE)
                    && !has_parts(message) =>
            {
                messages.push(json!({
                    "role": "assistant",
                    "content": user_content(message),
                }));
            }
            Role::Assistant => messages.push(json!({
                "role": "assistant",
                "content": assistant_blocks(message).map_err(|e| format!("messages[{i}]: {e}"))?,
            })),
            Role::Tool => {
                let result = tool_result(message).map_err(|e| format!("messages[{i}]: {e}"))?;
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
                "content": user_content(message),
            })),
        }
    }
    if let Some(system) = system.value() {
        body.insert("system".into(), system);
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
            return Err(format!(
                "the Messages API has no response_format ({}): describe the schema as a tool and \
                 force it with tool_choice, or ask for JSON in the prompt",
                format.get("type").unwrap_or(&Value::Null)
            ));
        }
    }
    if params.choices() > 1 {
        return Err(
            "the Messages API returns one answer per call: n (and best_of) must be 1".into(),
        );
    }
    if params.top_logprobs.is_some() {
        return Err("the Messages API has no log-probabilities: leave out top_logprobs".into());
    }
    if let Some(user) = extra.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    let from_responses = request.extensions.get::<ResponsesBody>().is_some();
    for (key, value) in extra.iter() {
        if from_responses && responses::untranslated(key) {
            tracing::debug!(field = %key, "a Responses field with no Messages form is left out");
            continue;
        }
        // OpenAI's effort is Anthropic's extended thinking, at a budget (unless the caller
        // set `thinking` itself).
        if key == "reasoning_effort" {
            if let Some(thinking) = thinking_for(value, max_tokens)? {
                body.entry("thinking").or_insert(thinking);
            }
            continue;
        }
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
    Ok(body)
}

/// Thinking budgets for OpenAI's `reasoning_effort`, as Anthropic's extended thinking takes them
/// (its least budget is 1,024 tokens).
const EFFORT_BUDGETS: [(&str, u32); 4] = [
    ("minimal", 1024),
    ("low", 1024),
    ("medium", 2048),
    ("high", 4096),
];

/// The thinking budget for a `reasoning_effort` (`minimal`, `low`, `medium`, `high`), the
/// Messages API's and Bedrock's Claude models' alike.
pub(crate) fn effort_budget(effort: &str) -> Option<u32> {
    EFFORT_BUDGETS
        .iter()
        .find(|(name, _)| *name == effort)
        .map(|(_, budget)| *budget)
}

/// The least thinking budget the Messages API takes.
const LEAST_BUDGET: u32 = 1024;

/// The `thinking` a `reasoning_effort` asks for (none for `none`): its budget, but never more
/// than half the output bound, so an answer has room after it; none where that half is under the
/// least budget the API takes (logged at debug level).
fn thinking_for(effort: &Value, max_tokens: u32) -> Result<Option<Value>, String> {
    let effort = effort.as_str().unwrap_or_default();
    if effort == "none" {
        return Ok(None);
    }
    let budget = effort_budget(effort).ok_or_else(|| {
        format!("reasoning_effort `{effort}` is not one of none, minimal, low, medium, high")
    })?;
    let budget = budget.min(max_tokens / 2);
    if budget < LEAST_BUDGET {
        tracing::debug!(
            effort,
            max_tokens,
            "the output bound leaves no room to think: no thinking asked"
        );
        return Ok(None);
    }
    Ok(Some(json!({ "type": "enabled", "budget_tokens": budget })))
}

/// The system and developer messages, as one string, or as text blocks when one of them carries
/// a `cache_control` mark (on a part, or on the message) that must reach the upstream.
#[derive(Default)]
struct System {
    blocks: Vec<Value>,
    marked: bool,
}

impl System {
    fn add(&mut self, message: &Message) {
        let mark = message.extra.get("cache_control");
        match &message.content {
            Some(Content::Parts(parts)) => {
                let texts: Vec<&Value> = parts
                    .iter()
                    .filter(|part| part.get("text").and_then(Value::as_str).is_some())
                    .collect();
                for (i, part) in texts.iter().enumerate() {
                    let mut block = json!({ "type": "text", "text": part["text"] });
                    let own = part.get("cache_control");
                    if let Some(mark) = own.or(mark.filter(|_| i + 1 == texts.len())) {
                        block["cache_control"] = mark.clone();
                        self.marked = true;
                    }
                    self.blocks.push(block);
                }
            }
            content => {
                let text: String = content.iter().flat_map(Content::texts).collect();
                let mut block = json!({ "type": "text", "text": text });
                if let Some(mark) = mark {
                    block["cache_control"] = mark.clone();
                    self.marked = true;
                }
                self.blocks.push(block);
            }
        }
    }

    fn value(self) -> Option<Value> {
        if self.blocks.is_empty() {
            return None;
        }
        if self.marked {
            return Some(Value::from(self.blocks));
        }
        let texts: Vec<&str> = self
            .blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect();
        Some(Value::from(texts.join("\n\n")))
    }
}

fn has_parts(message: &Message) -> bool {
    matches!(message.content, Some(Content::Parts(_)))
}

fn is_tool_results(message: &Value) -> bool {
    message["role"] == "user"
        && message["content"].as_array().is_some_and(|blocks| {
            blocks
                .iter()
                .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

/// A turn's content: its text, or its parts with images as image blocks; a `cache_control` mark
/// on the message goes on its last block.
fn user_content(message: &Message) -> Value {
    let mark = message.extra.get("cache_control");
    let mut blocks: Vec<Value> = match &message.content {
        Some(Content::Text(text)) if mark.is_none() => return Value::from(text.as_str()),
        None if mark.is_none() => return Value::from(""),
        Some(Content::Text(text)) => vec![json!({ "type": "text", "text": text })],
        Some(Content::Parts(parts)) => parts.iter().map(part).collect(),
        None => vec![json!({ "type": "text", "text": "" })],
    };
    if let (Some(mark), Some(last)) = (mark, blocks.last_mut())
        && let Some(last) = last.as_object_mut()
    {
        last.entry("cache_control").or_insert_with(|| mark.clone());
    }
    Value::from(blocks)
}

/// One content part as a block: `image_url` parts as image blocks (a `data:` URL as base64, any
/// other URL as a URL source), with the part's `cache_control`; others as they are.
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
    let mut block = json!({ "type": "image", "source": source });
    if let Some(mark) = part.get("cache_control") {
        block["cache_control"] = mark.clone();
    }
    block
}

/// An assistant turn's blocks: its signed reasoning (which Anthropic needs back to go on
/// thinking across tool calls), its text (each part its own block when parts came), then a
/// `tool_use` block per tool call.
fn assistant_blocks(message: &Message) -> Result<Vec<Value>, String> {
    let mut blocks = Vec::new();
    let field = |key: &str| message.extra.get(key).and_then(Value::as_str);
    if let (Some(thinking), Some(signature)) = (
        field("reasoning_content").or_else(|| field("reasoning")),
        field(REASONING_SIGNATURE),
    ) {
        blocks.push(json!({ "type": "thinking", "thinking": thinking, "signature": signature }));
    }
    match &message.content {
        Some(Content::Parts(parts)) => blocks.extend(parts.iter().map(part)),
        _ => {
            let text: String = message.texts().collect();
            if !text.is_empty() {
                blocks.push(json!({ "type": "text", "text": text }));
            }
        }
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
    if let (Some(mark), Some(last)) = (message.extra.get("cache_control"), blocks.last_mut()) {
        last["cache_control"] = mark.clone();
    }
    Ok(blocks)
}

/// A `tool` message as a `tool_result` block answering its call's id: its text, or its parts
/// (images as image blocks), with the message's `cache_control`.
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
    let mut result = json!({ "type": "tool_result", "tool_use_id": id, "content": content });
    if let Some(mark) = message.extra.get("cache_control") {
        result["cache_control"] = mark.clone();
    }
    Ok(result)
}

/// OpenAI's function tools as Anthropic tools: name, description, the parameters as
/// `input_schema`, and the tool's `cache_control`.
fn anthropic_tools(tools: &Value) -> Result<Value, String> {
    let tools = tools.as_array().ok_or("tools must be a list")?;
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
                .ok_or_else(|| format!("tools[{i}].function has no name"))?;
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
            if let Some(mark) = tool.get("cache_control").or(function.get("cache_control")) {
                out["cache_control"] = mark.clone();
            }
            Ok(out)
        })
        .collect()
}

/// OpenAI's `tool_choice` (and `parallel_tool_calls: false`) as Anthropic's `tool_choice`.
fn tool_choice(choice: Option<&Value>, parallel: Option<&Value>) -> Result<Option<Value>, String> {
    let mut out = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            other => return Err(format!("unknown tool_choice {other:?}")),
        }),
        Some(object) => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice names no function")?;
            Some(json!({ "type": "tool", "name": name }))
        }
    };
    if parallel == Some(&Value::Bool(false)) {
        let choice = out.get_or_insert_with(|| json!({ "type": "auto" }));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    Ok(out)
}

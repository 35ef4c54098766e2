//! The Converse request encoder as it was before it wrote its JSON straight from the request: a
//! `serde_json::Value` tree built field by field and serialized, kept here as the reference the
//! direct writer must match byte for byte (same fields, same order, same values, same refusals).
//!
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>

use serde_json::{Map, Value, json};
use tollgate_core::{Content, LlmRequest, Message, REASONING_SIGNATURE, Role};

/// Fields of the OpenAI shape that Converse has no form for, and that a model behind it would
/// refuse: refused by name rather than dropped or passed on.
const OPENAI_ONLY: [&str; 13] = [
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
];

/// Converse's own top-level fields, passed as they came when a caller sets them.
const CONVERSE_FIELDS: [&str; 6] = [
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
    "additionalModelResponseFieldPaths",
    "serviceTier",
];

/// Thinking budgets for Claude's `reasoning_effort`, as Anthropic's extended thinking takes them.
const EFFORT_BUDGETS: [(&str, u32); 4] = [
    ("minimal", 1024),
    ("low", 1024),
    ("medium", 2048),
    ("high", 4096),
];

/// The Converse body for `request` (the model goes in the path, not the body; a stream is the
/// same body sent to `converse-stream`).
///
/// # Errors
///
/// What Converse cannot express, naming the field: a `response_format` other than `text`, `n`
/// or `best_of` above 1, log-probabilities, OpenAI-only sampling fields, an image given by a URL
/// other than `data:`, tool-call arguments that are not JSON, a tool message with no call id,
/// `parallel_tool_calls: false`.
pub(crate) fn encode_request(request: &LlmRequest) -> Result<Vec<u8>, String> {
    let body = translated(request)?;
    Ok(serde_json::to_vec(&Value::Object(body)).expect("a JSON value serializes"))
}

fn translated(request: &LlmRequest) -> Result<Map<String, Value>, String> {
    let params = &request.params;
    let extra = &params.extra;
    refuse_what_cannot_map(request)?;
    let mut body = Map::new();
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut has_tool_blocks = false;
    for (i, message) in request.messages.iter().enumerate() {
        let at = |e: String| format!("messages[{i}]{e}");
        let (role, blocks) = match message.role {
            Role::System | Role::Developer => {
                system.extend(system_blocks(message).map_err(at)?);
                continue;
            }
            Role::Assistant => ("assistant", assistant_blocks(message).map_err(at)?),
            Role::Tool => {
                has_tool_blocks = true;
                ("user", vec![tool_result(message).map_err(at)?])
            }
            Role::User | Role::Function => ("user", user_blocks(message).map_err(at)?),
        };
        has_tool_blocks |= message.extra.contains_key("tool_calls");
        // Converse takes turns that alternate: turns of one role in a row become one turn.
        match messages.last_mut() {
            Some(last) if last["role"] == role => last["content"]
                .as_array_mut()
                .expect("a turn's content is a list")
                .extend(blocks),
            _ => messages.push(json!({ "role": role, "content": blocks })),
        }
    }
    body.insert("messages".into(), Value::from(messages));
    if !system.is_empty() {
        body.insert("system".into(), Value::from(system));
    }
    let mut inference = Map::new();
    if let Some(max_tokens) = params.max_tokens {
        inference.insert("maxTokens".into(), max_tokens.into());
    }
    if let Some(temperature) = params.temperature {
        inference.insert("temperature".into(), temperature.into());
    }
    if let Some(top_p) = params.top_p {
        inference.insert("topP".into(), top_p.into());
    }
    if !params.stop.is_empty() {
        inference.insert("stopSequences".into(), params.stop.clone().into());
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), inference.into());
    }
    if let Some(config) = tool_config(
        extra.get("tools"),
        extra.get("tool_choice"),
        has_tool_blocks,
    )? {
        body.insert("toolConfig".into(), config);
    }
    let mut additional = Map::new();
    for (key, value) in extra.iter() {
        match key.as_str() {
            // Mapped above, refused above, or the stack's own.
            "stream"
            | "stream_options"
            | "seed"
            | "tools"
            | "tool_choice"
            | "parallel_tool_calls"
            | "response_format" => {}
            "user" => {
                let metadata = body.entry("requestMetadata").or_insert_with(|| json!({}));
                if let Some(metadata) = metadata.as_object_mut() {
                    metadata.entry("user").or_insert_with(|| value.clone());
                }
            }
            "additionalModelRequestFields" => {
                let fields = value
                    .as_object()
                    .ok_or("additionalModelRequestFields must be an object")?;
                for (field, value) in fields {
                    additional.insert(field.clone(), value.clone());
                }
            }
            "reasoning_effort" if is_claude(&request.model) => {
                let effort = value.as_str().unwrap_or_default();
                let budget = EFFORT_BUDGETS
                    .iter()
                    .find(|(name, _)| *name == effort)
                    .map(|(_, budget)| *budget)
                    .ok_or_else(|| {
                        format!("reasoning_effort {value} is not one of minimal, low, medium, high")
                    })?;
                additional
                    .entry("thinking")
                    .or_insert_with(|| json!({ "type": "enabled", "budget_tokens": budget }));
            }
            "top_k" if request.model.contains("amazon.nova") => {
                additional.insert("inferenceConfig".into(), json!({ "topK": value }));
            }
            field if CONVERSE_FIELDS.contains(&field) => {
                let merged = match (body.get_mut(field), value) {
                    // `user` went there first; the caller's own fields win.
                    (Some(Value::Object(ours)), Value::Object(theirs)) => {
                        for (name, value) in theirs {
                            ours.insert(name.clone(), value.clone());
                        }
                        true
                    }
                    _ => false,
                };
                if !merged {
                    body.insert(key.clone(), value.clone());
                }
            }
            // Model-specific fields (`top_k`, `thinking`, ...) go to the model as they came.
            _ => {
                additional.insert(key.clone(), value.clone());
            }
        }
    }
    if !additional.is_empty() {
        body.insert("additionalModelRequestFields".into(), additional.into());
    }
    Ok(body)
}

/// Whether `model` (an id, an inference profile or an ARN) is Anthropic's Claude.
fn is_claude(model: &str) -> bool {
    model.contains("anthropic.") || model.contains("claude")
}

fn refuse_what_cannot_map(request: &LlmRequest) -> Result<(), String> {
    let params = &request.params;
    let extra = &params.extra;
    match extra.get("response_format") {
        None | Some(Value::Null) => {}
        Some(format) if format.get("type").and_then(Value::as_str) == Some("text") => {}
        Some(format) => {
            return Err(format!(
                "response_format ({}): Converse has no structured output mode; describe the \
                 schema as a tool and force it with tool_choice, or ask for JSON in the prompt",
                format.get("type").unwrap_or(&Value::Null)
            ));
        }
    }
    if params.choices() > 1 {
        return Err("n: Converse returns one answer per call; n (and best_of) must be 1".into());
    }
    if params.top_logprobs.is_some() {
        return Err("top_logprobs: Converse has no log-probabilities".into());
    }
    if let Some(field) = OPENAI_ONLY.iter().find(|field| {
        extra
            .get(**field)
            .is_some_and(|v| !v.is_null() && *v != false)
    }) {
        return Err(format!("{field}: Converse has no such field"));
    }
    if extra.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        return Err(
            "parallel_tool_calls: Converse cannot turn off parallel tool calls; leave it out"
                .into(),
        );
    }
    Ok(())
}

/// A system or developer message as system blocks: its text (each text part a block), with a
/// cache point after a part (or the message) that carries `cache_control`.
fn system_blocks(message: &Message) -> Result<Vec<Value>, String> {
    let mut blocks = Vec::new();
    match &message.content {
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    format!(".content[{j}]: a system message takes text parts only")
                })?;
                blocks.push(json!({ "text": text }));
                if part.get("cache_control").is_some() {
                    blocks.push(cache_point());
                }
            }
        }
        content => {
            let text: String = content.iter().flat_map(Content::texts).collect();
            blocks.push(json!({ "text": text }));
        }
    }
    mark_end(message, &mut blocks);
    Ok(blocks)
}

fn cache_point() -> Value {
    json!({ "cachePoint": { "type": "default" } })
}

/// A cache point after the message's last block, when the message carries `cache_control`.
fn mark_end(message: &Message, blocks: &mut Vec<Value>) {
    let marked = message.extra.get("cache_control").is_some();
    if marked && blocks.last().is_some_and(|b| b.get("cachePoint").is_none()) {
        blocks.push(cache_point());
    }
}

/// A user turn's blocks: text, and images from `data:` URLs, each part's `cache_control` as a
/// cache point after it.
fn user_blocks(message: &Message) -> Result<Vec<Value>, String> {
    let mut blocks = Vec::new();
    match &message.content {
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                blocks.push(content_part(part).map_err(|e| format!(".content[{j}]{e}"))?);
                if part.get("cache_control").is_some() {
                    blocks.push(cache_point());
                }
            }
        }
        Some(Content::Text(text)) => blocks.push(json!({ "text": text })),
        None => return Err(".content: a user turn needs content".into()),
    }
    mark_end(message, &mut blocks);
    Ok(blocks)
}

/// One content part as a Converse block: `text`, or `image_url` with a `data:` URL as an image
/// block of its bytes (base64, as the JSON form of the API takes them).
fn content_part(part: &Value) -> Result<Value, String> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = part.get("text").and_then(Value::as_str).unwrap_or_default();
            Ok(json!({ "text": text }))
        }
        Some("image_url") => {
            let url = part
                .pointer("/image_url/url")
                .and_then(Value::as_str)
                .ok_or(".image_url.url: required")?;
            image_block(url)
        }
        other => Err(format!(
            ": Converse takes text and image parts here, not {}",
            other.map_or_else(|| "a part with no type".to_owned(), |t| format!("{t:?}"))
        )),
    }
}

/// An image block from a `data:` URL; any other URL is refused, since Converse takes an image's
/// bytes (or an S3 location), never a URL to fetch.
fn image_block(url: &str) -> Result<Value, String> {
    let Some((media_type, data)) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    else {
        return Err(
            ".image_url.url: Converse takes an image's bytes, not a URL to fetch: send \
                    it as a data: URL (data:image/png;base64,...)"
                .into(),
        );
    };
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(format!(
                ".image_url.url: Converse takes png, jpeg, gif and webp images, not {other:?}"
            ));
        }
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
}

/// An assistant turn's blocks: its signed reasoning (which Claude needs back to go on thinking
/// across tool calls), its text, then a `toolUse` block per tool call.
fn assistant_blocks(message: &Message) -> Result<Vec<Value>, String> {
    let mut blocks = Vec::new();
    let field = |key: &str| message.extra.get(key).and_then(Value::as_str);
    if let (Some(text), Some(signature)) = (
        field("reasoning_content").or_else(|| field("reasoning")),
        field(REASONING_SIGNATURE),
    ) {
        blocks.push(json!({
            "reasoningContent": { "reasoningText": { "text": text, "signature": signature } }
        }));
    }
    match &message.content {
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                blocks.push(content_part(part).map_err(|e| format!(".content[{j}]{e}"))?);
                if part.get("cache_control").is_some() {
                    blocks.push(cache_point());
                }
            }
        }
        _ => {
            let text: String = message.texts().collect();
            if !text.is_empty() {
                blocks.push(json!({ "text": text }));
            }
        }
    }
    let calls = message.extra.get("tool_calls").and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let field = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
        let arguments = field("/function/arguments").unwrap_or("{}");
        let arguments = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        let input: Value = serde_json::from_str(arguments)
            .map_err(|e| format!(".tool_calls[{i}].function.arguments is not JSON: {e}"))?;
        blocks.push(json!({
            "toolUse": {
                "toolUseId": field("/id").ok_or(format!(".tool_calls[{i}]: no id"))?,
                "name": field("/function/name").ok_or(format!(".tool_calls[{i}]: no function name"))?,
                "input": input,
            }
        }));
    }
    if blocks.is_empty() {
        return Err(
            ": an assistant turn needs text or tool calls (Converse refuses an empty one)".into(),
        );
    }
    mark_end(message, &mut blocks);
    Ok(blocks)
}

/// A `tool` message as a `toolResult` block answering its call's id: its text, or its parts
/// (text and images), with the message's `status` (`success`, `error`) when it has one.
fn tool_result(message: &Message) -> Result<Value, String> {
    let id = message
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or(": a tool message needs its tool_call_id")?;
    let content: Vec<Value> = match &message.content {
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part.get("type").and_then(Value::as_str) {
                Some("json") => {
                    Ok(json!({ "json": part.get("json").cloned().unwrap_or(Value::Null) }))
                }
                _ => content_part(part).map_err(|e| format!(".content[{j}]{e}")),
            })
            .collect::<Result<_, _>>()?,
        other => vec![json!({ "text": other.iter().flat_map(Content::texts).collect::<String>() })],
    };
    let mut result = json!({ "toolUseId": id, "content": content });
    if let Some(status) = message.extra.get("status") {
        result["status"] = status.clone();
    }
    Ok(json!({ "toolResult": result }))
}

/// OpenAI's function `tools` and `tool_choice` as Converse's `toolConfig`: each tool a
/// `toolSpec` (its `parameters` as `inputSchema.json`, a cache point after one that carries
/// `cache_control`), `auto` / `required` (as `any`) / a named function (as `tool`). Converse has
/// no `none`: the tools are left out instead, which a conversation that holds tool calls cannot
/// do (Converse needs the tools defined to read them).
fn tool_config(
    tools: Option<&Value>,
    choice: Option<&Value>,
    has_tool_blocks: bool,
) -> Result<Option<Value>, String> {
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({ "auto": {} })),
            "required" => Some(json!({ "any": {} })),
            "none" if has_tool_blocks => {
                return Err(
                    "tool_choice none: Converse has no way to forbid tool calls in a \
                            conversation that holds them; leave tool_choice out"
                        .into(),
                );
            }
            "none" => {
                tracing::debug!("tool_choice none: the tools are left out of the Converse call");
                return Ok(None);
            }
            other => return Err(format!("tool_choice: unknown mode {other:?}")),
        },
        Some(object) => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice: names no function")?;
            Some(json!({ "tool": { "name": name } }))
        }
    };
    let Some(tools) = tools.filter(|t| !t.is_null()) else {
        if choice.is_some() {
            return Err("tool_choice: given without tools".into());
        }
        return Ok(None);
    };
    let tools = tools.as_array().ok_or("tools: must be a list")?;
    let mut specs = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!("tools[{i}]: Converse takes function tools only"));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tools[{i}].function: no name"))?;
        let schema = function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        let mut spec = json!({ "name": name, "inputSchema": { "json": schema } });
        if let Some(description) = function.get("description") {
            spec["description"] = description.clone();
        }
        specs.push(json!({ "toolSpec": spec }));
        if tool.get("cache_control").is_some() || function.get("cache_control").is_some() {
            specs.push(cache_point());
        }
    }
    let mut config = json!({ "tools": specs });
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

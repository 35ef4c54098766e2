//! The Gemini request encoder as it was before it wrote its JSON directly: a `serde_json::Value`
//! tree built field by field and serialized, kept here as the reference the direct writer must
//! match byte for byte (same fields, same order, same values, same refusals).

#![allow(dead_code)]

use serde_json::{Map, Value, json};
use tollgate_core::{Content, LlmRequest, Message, Role};

use tollgate_wire::gemini::THOUGHT_SIGNATURE_SEPARATOR;

/// The `generateContent` (and `streamGenerateContent`) body for `request`. The model goes in the
/// URL, not the body.
///
/// # Errors
///
/// What the Gemini API cannot express, in words naming the field: see the
/// [module's table](super).
pub(crate) fn encode_request(request: &LlmRequest) -> Result<Vec<u8>, String> {
    let mut body = Map::new();
    let (system, contents) = contents(&request.messages)?;
    body.insert("contents".into(), Value::from(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    apply(request, &mut body)?;
    Ok(serde_json::to_vec(&Value::Object(body)).expect("a JSON value serializes"))
}

/// The system instruction's parts, and the conversation's turns.
fn contents(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), String> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = |e: String| format!("messages[{i}]: {e}");
        match message.role {
            Role::System | Role::Developer => system.extend(system_parts(message).map_err(at)?),
            Role::User => contents.push(json!({
                "role": "user",
                "parts": user_parts(message).map_err(at)?,
            })),
            Role::Assistant => contents.push(json!({
                "role": "model",
                "parts": model_parts(message).map_err(at)?,
            })),
            Role::Tool | Role::Function => {
                let part = function_response(message, &messages[..i]).map_err(at)?;
                // The results of one turn's calls go back together, in one user turn.
                match contents.last_mut() {
                    Some(last) if is_responses(last) => {
                        last["parts"].as_array_mut().expect("checked").push(part)
                    }
                    _ => contents.push(json!({ "role": "user", "parts": [part] })),
                }
            }
        }
    }
    Ok((system, contents))
}

fn is_responses(content: &Value) -> bool {
    content["role"] == "user"
        && content["parts"].as_array().is_some_and(|parts| {
            parts
                .iter()
                .all(|part| part.get("functionResponse").is_some())
        })
}

/// A system message's text, as parts.
fn system_parts(message: &Message) -> Result<Vec<Value>, String> {
    match &message.content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(vec![json!({ "text": text })]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part.get("text").and_then(Value::as_str) {
                Some(text) => Ok(json!({ "text": text })),
                None => Err(format!(
                    "content[{j}]: a system instruction takes text parts only"
                )),
            })
            .collect(),
    }
}

/// A user turn's parts: text, images, audio, files.
fn user_parts(message: &Message) -> Result<Vec<Value>, String> {
    match &message.content {
        None => Ok(vec![json!({ "text": "" })]),
        Some(Content::Text(text)) => Ok(vec![json!({ "text": text })]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| user_part(part).map_err(|e| format!("content[{j}]{e}")))
            .collect(),
    }
}

fn user_part(part: &Value) -> Result<Value, String> {
    let string = |pointer: &str| part.pointer(pointer).and_then(Value::as_str);
    match string("/type") {
        Some("text") => Ok(json!({ "text": string("/text").unwrap_or_default() })),
        Some("image_url") => {
            let url = string("/image_url/url")
                .or_else(|| string("/image_url"))
                .ok_or(".image_url.url: required")?;
            media(url).map_err(|e| format!(".image_url.url: {e}"))
        }
        Some("input_audio") => {
            let data = string("/input_audio/data").ok_or(".input_audio.data: required")?;
            let format = string("/input_audio/format").unwrap_or("wav");
            Ok(json!({ "inlineData": { "mimeType": format!("audio/{format}"), "data": data } }))
        }
        Some("file") => match (string("/file/file_data"), string("/file/file_id")) {
            (Some(data), _) => media(data).map_err(|e| format!(".file.file_data: {e}")),
            (None, Some(id)) if id.starts_with("https://") || id.starts_with("gs://") => {
                media(id).map_err(|e| format!(".file.file_id: {e}"))
            }
            _ => Err(
                ".file: Gemini takes a file as file_data (a data: URL), or a file_id that \
                      is a gs:// or https:// URI"
                    .into(),
            ),
        },
        other => Err(format!(
            ": a {} part has no Gemini form",
            other.unwrap_or("typeless")
        )),
    }
}

/// A media URL as a part: a `data:` URL inline, a `gs://` or `https://` URL by reference.
fn media(url: &str) -> Result<Value, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime, data) = rest
            .split_once(";base64,")
            .ok_or("a data: URL must be base64 (data:<type>;base64,...)")?;
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    if url.starts_with("gs://") || url.starts_with("https://") {
        let mut file = json!({ "fileUri": url });
        if let Some(mime) = mime_of(url) {
            file["mimeType"] = mime.into();
        }
        return Ok(json!({ "fileData": file }));
    }
    Err("Gemini takes data: URLs, and gs:// or https:// URLs".into())
}

/// The MIME type a file's extension names, for the kinds Gemini reads.
fn mime_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "txt" => "text/plain",
        _ => return None,
    })
}

/// A model turn's parts: its text, then a `functionCall` part per tool call with the signature
/// its id carries. A `reasoning_signature` is not sent back: it may be another provider's (a
/// conversation moved from Claude), which Gemini refuses, and Gemini needs only its calls'.
fn model_parts(message: &Message) -> Result<Vec<Value>, String> {
    let mut parts: Vec<Value> = message
        .texts()
        .filter(|text| !text.is_empty())
        .map(|text| json!({ "text": text }))
        .collect();
    let calls = message.extra.get("tool_calls").and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let field = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
        let name = field("/function/name")
            .ok_or_else(|| format!("tool_calls[{i}] has no function name"))?;
        let arguments = field("/function/arguments").unwrap_or("{}");
        let args: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|e| format!("tool_calls[{i}].function.arguments is not JSON: {e}"))?
        };
        let mut part = json!({ "functionCall": { "name": name, "args": args } });
        let signature = field("/id")
            .and_then(|id| id.split_once(THOUGHT_SIGNATURE_SEPARATOR))
            .map(|(_, signature)| signature);
        if let Some(signature) = signature {
            part["thoughtSignature"] = signature.into();
        }
        parts.push(part);
    }
    if parts.is_empty() {
        parts.push(json!({ "text": "" }));
    }
    Ok(parts)
}

/// A `tool` message (or a legacy `function` one) as a `functionResponse` part: the function's
/// name from the earlier call it answers, its content as the response object.
fn function_response(message: &Message, earlier: &[Message]) -> Result<Value, String> {
    let name = match message.role {
        Role::Function => message
            .extra
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a function message needs its name")?
            .to_owned(),
        _ => {
            let id = message
                .extra
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or("a tool message needs its tool_call_id")?;
            called(id, earlier).ok_or_else(|| {
                format!(
                    "tool_call_id {id:?} answers no earlier tool call, so the function it \
                     answers is unknown (Gemini names it)"
                )
            })?
        }
    };
    let mut text = String::new();
    if let Some(Content::Parts(parts)) = &message.content
        && let Some(j) = parts
            .iter()
            .position(|p| p.get("text").and_then(Value::as_str).is_none())
    {
        return Err(format!("content[{j}]: a tool result takes text parts only"));
    }
    for piece in message.texts() {
        text.push_str(piece);
    }
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => json!({ "content": other }),
        Err(_) => json!({ "content": text }),
    };
    Ok(json!({ "functionResponse": { "name": name, "response": response } }))
}

/// The name of the function that the latest call with `id` named.
fn called(id: &str, earlier: &[Message]) -> Option<String> {
    earlier.iter().rev().find_map(|message| {
        let calls = message.extra.get("tool_calls")?.as_array()?;
        calls
            .iter()
            .find(|call| call.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|call| call.pointer("/function/name")?.as_str())
            .map(str::to_owned)
    })
}

/// Adds `request`'s tools and settings to `body`.
fn apply(request: &LlmRequest, body: &mut Map<String, Value>) -> Result<(), String> {
    let params = &request.params;
    let extra = &params.extra;
    let mut generation = Map::new();
    let mut set = |key: &str, value: Value| {
        generation.insert(key.to_owned(), value);
    };
    if let Some(temperature) = params.temperature {
        set("temperature", temperature.into());
    }
    if let Some(top_p) = params.top_p {
        set("topP", top_p.into());
    }
    if let Some(max) = params.max_tokens {
        set("maxOutputTokens", max.into());
    }
    if !params.stop.is_empty() {
        set("stopSequences", params.stop.clone().into());
    }
    if let Some(n) = params.n {
        set("candidateCount", n.into());
    }
    if let Some(seed) = params.seed {
        set("seed", seed.into());
    }
    if params.best_of.is_some_and(|b| b > 1) {
        return Err("best_of: Gemini has no best-of sampling; ask for n answers instead".into());
    }
    if params.top_logprobs.is_some() {
        return Err(refused("top_logprobs"));
    }
    let mut thinking: Option<Value> = None;
    for (key, value) in extra.iter() {
        match key.as_str() {
            "top_k" | "topK" => set("topK", value.clone()),
            "presence_penalty" => set("presencePenalty", value.clone()),
            "frequency_penalty" => set("frequencyPenalty", value.clone()),
            "response_format" => {
                for (key, value) in response_format(value)? {
                    set(key, value);
                }
            }
            "reasoning_effort" => {
                let effort = value.as_str().ok_or("reasoning_effort: must be a string")?;
                put_once(&mut thinking, key, effort_config(&request.model, effort)?)?;
            }
            "thinking_config" | "thinkingConfig" => put_once(&mut thinking, key, value.clone())?,
            // A call from the Messages door: Anthropic's thinking budget is Gemini's.
            "thinking" => put_once(&mut thinking, key, anthropic_thinking(value)?)?,
            "tools" => {
                body.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                if let Some(config) = tool_choice(value)? {
                    if extra.contains_key("toolConfig") {
                        return Err("tool_choice: toolConfig is set too; send one".into());
                    }
                    body.insert("toolConfig".into(), config);
                }
            }
            "parallel_tool_calls" if value == &Value::Bool(false) => {
                return Err(
                    "parallel_tool_calls: Gemini may call several functions in one \
                            turn and cannot be told not to"
                        .into(),
                );
            }
            "safetySettings" | "safety_settings" => {
                body.insert("safetySettings".into(), value.clone());
            }
            "cachedContent" | "cached_content" => {
                body.insert("cachedContent".into(), value.clone());
            }
            "toolConfig" | "labels" => {
                body.insert(key.clone(), value.clone());
            }
            "generationConfig" => {} // merged below, under the mapped fields
            "stream"
            | "stream_options"
            | "user"
            | "store"
            | "metadata"
            | "service_tier"
            | "parallel_tool_calls"
            | "cache_control"
            | "container"
            | "mcp_servers" => {}
            other => return Err(refused(other)),
        }
    }
    if let Some(thinking) = thinking {
        set("thinkingConfig", thinking);
    }
    if let Some(native) = extra.get("generationConfig") {
        let native = native
            .as_object()
            .ok_or("generationConfig: must be an object")?;
        for (key, value) in native {
            if generation.contains_key(key) {
                return Err(format!(
                    "generationConfig.{key}: also set by a chat-completions field; send one"
                ));
            }
            generation.insert(key.clone(), value.clone());
        }
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Ok(())
}

fn refused(field: &str) -> String {
    format!("{field}: has no Gemini form (Gemini refuses fields it does not know)")
}

fn put_once(slot: &mut Option<Value>, key: &str, value: Value) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!(
            "{key}: reasoning_effort and a thinking config are both set; send one"
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// `reasoning_effort` as a `thinkingConfig`: a level for Gemini 3, a budget before it.
fn effort_config(model: &str, effort: &str) -> Result<Value, String> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if effort == "none" {
        return Ok(json!({ "thinkingBudget": 0 }));
    }
    if !matches!(effort, "minimal" | "low" | "medium" | "high") {
        return Err(format!(
            "reasoning_effort: {effort:?} is not none, minimal, low, medium or high"
        ));
    }
    if model.starts_with("gemini-3") {
        return Ok(json!({ "thinkingLevel": effort, "includeThoughts": true }));
    }
    let budget = match effort {
        "minimal" => 128,
        "low" => 1024,
        "medium" => 2048,
        _ => 4096,
    };
    Ok(json!({ "thinkingBudget": budget, "includeThoughts": true }))
}

/// Anthropic's `thinking` (`{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`)
/// as a `thinkingConfig`.
fn anthropic_thinking(thinking: &Value) -> Result<Value, String> {
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or("thinking.budget_tokens: required, a whole number")?;
            Ok(json!({ "thinkingBudget": budget, "includeThoughts": true }))
        }
        Some("disabled") => Ok(json!({ "thinkingBudget": 0 })),
        _ => Err("thinking.type: enabled or disabled".into()),
    }
}

/// `response_format` as `responseMimeType` and `responseSchema`.
fn response_format(format: &Value) -> Result<Vec<(&'static str, Value)>, String> {
    match format.get("type").and_then(Value::as_str) {
        None if format.is_null() => Ok(Vec::new()),
        Some("text") => Ok(Vec::new()),
        Some("json_object") => Ok(vec![("responseMimeType", "application/json".into())]),
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .ok_or("response_format.json_schema.schema: required")?;
            Ok(vec![
                ("responseMimeType", "application/json".into()),
                (
                    "responseSchema",
                    clean_schema(schema, "response_format.json_schema.schema")?,
                ),
            ])
        }
        _ => Err(format!(
            "response_format: type {} has no Gemini form",
            format.get("type").unwrap_or(&Value::Null)
        )),
    }
}

/// OpenAI's tools as Gemini's: function tools as one tool's `functionDeclarations`, Gemini's own
/// tools as they came.
fn tools(tools: &Value) -> Result<Value, String> {
    let tools = tools.as_array().ok_or("tools: must be a list")?;
    let mut declarations = Vec::new();
    let mut native = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let function = tool.get("function").unwrap_or(&Value::Null);
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("tools[{i}].function.name: required"))?;
                let mut declaration = json!({ "name": name });
                if let Some(description) = function.get("description") {
                    declaration["description"] = description.clone();
                }
                if let Some(parameters) = function.get("parameters") {
                    let path = format!("tools[{i}].function.parameters");
                    declaration["parameters"] = clean_schema(parameters, &path)?;
                }
                declarations.push(declaration);
            }
            None if tool.is_object() => native.push(tool.clone()),
            Some(other) => {
                return Err(format!("tools[{i}]: a {other} tool has no Gemini form"));
            }
            None => return Err(format!("tools[{i}]: must be an object")),
        }
    }
    let mut out = Vec::new();
    if !declarations.is_empty() {
        out.push(json!({ "functionDeclarations": declarations }));
    }
    out.extend(native);
    Ok(Value::from(out))
}

/// `tool_choice` as `toolConfig.functionCallingConfig`.
fn tool_choice(choice: &Value) -> Result<Option<Value>, String> {
    let config = match choice {
        Value::Null => return Ok(None),
        Value::String(mode) => match mode.as_str() {
            "auto" => json!({ "mode": "AUTO" }),
            "required" => json!({ "mode": "ANY" }),
            "none" => json!({ "mode": "NONE" }),
            other => return Err(format!("tool_choice: unknown {other:?}")),
        },
        object => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice: names no function")?;
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
        }
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// Keys of JSON Schema that Gemini's schema refuses and that only constrain what a validator
/// accepts, dropped.
const DROPPED: [&str; 5] = [
    "$schema",
    "$id",
    "$comment",
    "additionalProperties",
    "strict",
];

/// A JSON Schema as Gemini's OpenAPI-style schema: [`DROPPED`] keys left out, a `[T, "null"]`
/// type as `T` with `nullable`, references refused (Gemini resolves none); `path` names it in
/// errors.
fn clean_schema(schema: &Value, path: &str) -> Result<Value, String> {
    let Value::Object(object) = schema else {
        return Ok(schema.clone());
    };
    let mut out = Map::new();
    for (key, value) in object {
        let at = || format!("{path}.{key}");
        match key.as_str() {
            key if DROPPED.contains(&key) => {}
            "$ref" | "$defs" | "definitions" => {
                return Err(format!(
                    "{}: Gemini resolves no schema references; inline the definitions",
                    at()
                ));
            }
            "type" => match value {
                Value::Array(types) => {
                    let named: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    let [only] = named[..] else {
                        return Err(format!("{}: Gemini takes one type (and null)", at()));
                    };
                    out.insert("type".into(), only.clone());
                    if named.len() < types.len() {
                        out.insert("nullable".into(), true.into());
                    }
                }
                other => {
                    out.insert(key.clone(), other.clone());
                }
            },
            "properties" => {
                let Value::Object(properties) = value else {
                    return Err(format!("{}: must be an object", at()));
                };
                let mut cleaned = Map::new();
                for (name, property) in properties {
                    cleaned.insert(
                        name.clone(),
                        clean_schema(property, &format!("{}.{name}", at()))?,
                    );
                }
                out.insert(key.clone(), Value::Object(cleaned));
            }
            "items" => {
                out.insert(key.clone(), clean_schema(value, &at())?);
            }
            "anyOf" | "oneOf" | "allOf" => {
                let Value::Array(schemas) = value else {
                    return Err(format!("{}: must be a list", at()));
                };
                let cleaned = schemas
                    .iter()
                    .enumerate()
                    .map(|(i, s)| clean_schema(s, &format!("{}[{i}]", at())))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(key.clone(), cleaned.into());
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

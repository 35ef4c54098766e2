//! The request's settings in a Gemini body: `tools`, `toolConfig`, `generationConfig`, and
//! Gemini's own fields a caller sent; everything else refused by name.

use serde_json::{Map, Value, json};
use tollgate_core::LlmRequest;

/// Adds `request`'s tools and settings to `body`.
pub(super) fn apply(request: &LlmRequest, body: &mut Map<String, Value>) -> Result<(), String> {
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
            | "mcp_servers" => {
                tracing::debug!(field = %key, "dropped: Gemini has no such field");
            }
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
pub(super) fn clean_schema(schema: &Value, path: &str) -> Result<Value, String> {
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

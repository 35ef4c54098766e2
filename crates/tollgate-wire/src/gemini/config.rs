//! The request's settings in a Gemini body: `tools`, `toolConfig`, `generationConfig`, and
//! Gemini's own fields a caller sent; everything else refused by name.

use serde_json::{Map, Value};
use tollgate_core::LlmRequest;

use super::json;

/// Writes `request`'s tools and settings into `out`, after the body's first fields.
pub(super) fn write(request: &LlmRequest, out: &mut Vec<u8>) -> Result<(), String> {
    let params = &request.params;
    let extra = &params.extra;
    if params.best_of.is_some_and(|b| b > 1) {
        return Err("best_of: Gemini has no best-of sampling; ask for n answers instead".into());
    }
    if params.top_logprobs.is_some() {
        return Err(refused("top_logprobs"));
    }
    // The generation settings mapped from fields of `extra`, in their order, written at the end.
    let mut generated = Vec::new();
    let mut set = Set::default();
    let mut thinking: Option<Thinking<'_>> = None;
    // The value of whichever of two spellings of a field comes last, at the first one's place.
    let (mut top_k, mut safety, mut cached) = (false, false, false);
    let from_responses = request
        .extensions
        .get::<crate::openai::responses::ResponsesBody>()
        .is_some();
    for (key, value) in extra.iter() {
        if from_responses && crate::openai::responses::untranslated(key) {
            tracing::debug!(field = %key, "dropped: a Responses field with no Gemini form");
            continue;
        }
        match key.as_str() {
            "top_k" | "topK" => {
                let other = if key == "top_k" { "topK" } else { "top_k" };
                if let Some(value) = later(extra, value, other, &mut top_k) {
                    entry(&mut generated, "topK", value);
                }
            }
            "presence_penalty" => {
                set.presence = true;
                entry(&mut generated, "presencePenalty", value);
            }
            "frequency_penalty" => {
                set.frequency = true;
                entry(&mut generated, "frequencyPenalty", value);
            }
            "response_format" => response_format(&mut generated, &mut set, value)?,
            "reasoning_effort" => {
                let effort = value.as_str().ok_or("reasoning_effort: must be a string")?;
                put_once(&mut thinking, key, effort_config(&request.model, effort)?)?;
            }
            "thinking_config" | "thinkingConfig" => {
                put_once(&mut thinking, key, Thinking::Native(value))?;
            }
            // A call from the Messages door: Anthropic's thinking budget is Gemini's.
            "thinking" => put_once(&mut thinking, key, anthropic_thinking(value)?)?,
            "tools" => {
                out.extend_from_slice(b",\"tools\":");
                tools(out, value)?;
            }
            "tool_choice" => {
                if let Some(choice) = tool_choice(value)? {
                    if extra.contains_key("toolConfig") {
                        return Err("tool_choice: toolConfig is set too; send one".into());
                    }
                    out.extend_from_slice(b",\"toolConfig\":{\"functionCallingConfig\":");
                    match choice {
                        Choice::Mode(mode) => {
                            out.extend_from_slice(b"{\"mode\":\"");
                            out.extend_from_slice(mode.as_bytes());
                            out.extend_from_slice(b"\"}");
                        }
                        Choice::Named(name) => {
                            out.extend_from_slice(b"{\"mode\":\"ANY\",\"allowedFunctionNames\":[");
                            json(out, name);
                            out.extend_from_slice(b"]}");
                        }
                    }
                    out.push(b'}');
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
                let other = if key == "safetySettings" {
                    "safety_settings"
                } else {
                    "safetySettings"
                };
                if let Some(value) = later(extra, value, other, &mut safety) {
                    entry(out, "safetySettings", value);
                }
            }
            "cachedContent" | "cached_content" => {
                let other = if key == "cachedContent" {
                    "cached_content"
                } else {
                    "cachedContent"
                };
                if let Some(value) = later(extra, value, other, &mut cached) {
                    entry(out, "cachedContent", value);
                }
            }
            "toolConfig" | "labels" => entry(out, key, value),
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
    set.top_k = top_k;
    set.thinking = thinking.is_some();
    let native = extra
        .get("generationConfig")
        .map(|native| {
            native
                .as_object()
                .ok_or("generationConfig: must be an object")
        })
        .transpose()?
        .into_iter()
        .flatten();
    for (key, _) in native.clone() {
        if set.has(params, key) {
            return Err(format!(
                "generationConfig.{key}: also set by a chat-completions field; send one"
            ));
        }
    }
    let start = out.len();
    out.extend_from_slice(b",\"generationConfig\":{");
    let open = out.len();
    if let Some(temperature) = params.temperature {
        entry(out, "temperature", &temperature);
    }
    if let Some(top_p) = params.top_p {
        entry(out, "topP", &top_p);
    }
    if let Some(max) = params.max_tokens {
        entry(out, "maxOutputTokens", &max);
    }
    if !params.stop.is_empty() {
        entry(out, "stopSequences", &params.stop);
    }
    if let Some(n) = params.n {
        entry(out, "candidateCount", &n);
    }
    if let Some(seed) = params.seed {
        entry(out, "seed", &seed);
    }
    if !generated.is_empty() {
        if out.len() == open {
            // `generated` starts with its entry's comma.
            out.extend_from_slice(&generated[1..]);
        } else {
            out.extend_from_slice(&generated);
        }
    }
    if let Some(thinking) = thinking {
        label(out, "thinkingConfig");
        thinking.write(out);
    }
    for (name, value) in native {
        entry(out, name, value);
    }
    if out.len() == open {
        out.truncate(start);
    } else {
        out.push(b'}');
    }
    Ok(())
}

/// Of two spellings of a field, `value`'s and `other`'s, the value of whichever comes last, for
/// the place of the first (`done` once that is written).
fn later<'a>(
    extra: &'a Map<String, Value>,
    value: &'a Value,
    other: &str,
    done: &mut bool,
) -> Option<&'a Value> {
    let value = match extra.get(other) {
        Some(_) if *done => return None,
        Some(other) => other,
        None => value,
    };
    *done = true;
    Some(value)
}

/// Which generation settings the mapped fields set, for refusing the same in `generationConfig`.
#[derive(Default)]
struct Set {
    top_k: bool,
    presence: bool,
    frequency: bool,
    mime: bool,
    schema: bool,
    thinking: bool,
}

impl Set {
    fn has(&self, params: &tollgate_core::Params, key: &str) -> bool {
        match key {
            "temperature" => params.temperature.is_some(),
            "topP" => params.top_p.is_some(),
            "maxOutputTokens" => params.max_tokens.is_some(),
            "stopSequences" => !params.stop.is_empty(),
            "candidateCount" => params.n.is_some(),
            "seed" => params.seed.is_some(),
            "topK" => self.top_k,
            "presencePenalty" => self.presence,
            "frequencyPenalty" => self.frequency,
            "responseMimeType" => self.mime,
            "responseSchema" => self.schema,
            "thinkingConfig" => self.thinking,
            _ => false,
        }
    }
}

/// `"key":` after a comma, or after the object's `{`.
fn label(out: &mut Vec<u8>, name: &str) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    json(out, name);
    out.push(b':');
}

/// `"key":value` after a comma, or after the object's `{`.
fn entry<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
    label(out, name);
    json(out, value);
}

fn refused(field: &str) -> String {
    format!("{field}: has no Gemini form (Gemini refuses fields it does not know)")
}

/// A `thinkingConfig`: the caller's own, or one mapped from another field.
enum Thinking<'a> {
    Native(&'a Value),
    /// `{"thinkingBudget": 0}`.
    Off,
    /// `{"thinkingBudget": N, "includeThoughts": true}`.
    Budget(u64),
    /// `{"thinkingLevel": level, "includeThoughts": true}`.
    Level(&'a str),
}

impl Thinking<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Native(value) => json(out, value),
            Self::Off => out.extend_from_slice(b"{\"thinkingBudget\":0}"),
            Self::Budget(budget) => {
                out.extend_from_slice(b"{\"thinkingBudget\":");
                json(out, budget);
                out.extend_from_slice(b",\"includeThoughts\":true}");
            }
            Self::Level(level) => {
                out.extend_from_slice(b"{\"thinkingLevel\":");
                json(out, level);
                out.extend_from_slice(b",\"includeThoughts\":true}");
            }
        }
    }
}

fn put_once<'a>(
    slot: &mut Option<Thinking<'a>>,
    key: &str,
    value: Thinking<'a>,
) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!(
            "{key}: reasoning_effort and a thinking config are both set; send one"
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// `reasoning_effort` as a `thinkingConfig`: a level for Gemini 3, a budget before it.
fn effort_config<'a>(model: &str, effort: &'a str) -> Result<Thinking<'a>, String> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if effort == "none" {
        return Ok(Thinking::Off);
    }
    if !matches!(effort, "minimal" | "low" | "medium" | "high") {
        return Err(format!(
            "reasoning_effort: {effort:?} is not none, minimal, low, medium or high"
        ));
    }
    if model.starts_with("gemini-3") {
        return Ok(Thinking::Level(effort));
    }
    let budget = match effort {
        "minimal" => 128,
        "low" => 1024,
        "medium" => 2048,
        _ => 4096,
    };
    Ok(Thinking::Budget(budget))
}

/// Anthropic's `thinking` (`{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`)
/// as a `thinkingConfig`.
fn anthropic_thinking(thinking: &Value) -> Result<Thinking<'_>, String> {
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or("thinking.budget_tokens: required, a whole number")?;
            Ok(Thinking::Budget(budget))
        }
        Some("disabled") => Ok(Thinking::Off),
        _ => Err("thinking.type: enabled or disabled".into()),
    }
}

/// `response_format` as `responseMimeType` and `responseSchema`, into `generated`.
fn response_format(generated: &mut Vec<u8>, set: &mut Set, format: &Value) -> Result<(), String> {
    match format.get("type").and_then(Value::as_str) {
        None if format.is_null() => Ok(()),
        Some("text") => Ok(()),
        Some("json_object") => {
            set.mime = true;
            entry(generated, "responseMimeType", "application/json");
            Ok(())
        }
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .ok_or("response_format.json_schema.schema: required")?;
            (set.mime, set.schema) = (true, true);
            entry(generated, "responseMimeType", "application/json");
            label(generated, "responseSchema");
            clean_schema(
                generated,
                schema,
                Path::Root("response_format.json_schema.schema"),
            )
        }
        _ => Err(format!(
            "response_format: type {} has no Gemini form",
            format.get("type").unwrap_or(&Value::Null)
        )),
    }
}

/// OpenAI's tools as Gemini's: function tools as one tool's `functionDeclarations`, Gemini's own
/// tools as they came, after.
fn tools(out: &mut Vec<u8>, tools: &Value) -> Result<(), String> {
    let tools = tools.as_array().ok_or("tools: must be a list")?;
    out.push(b'[');
    let mut declarations = 0;
    let mut native = false;
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let function = tool.get("function").unwrap_or(&Value::Null);
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("tools[{i}].function.name: required"))?;
                out.extend_from_slice(if declarations == 0 {
                    b"{\"functionDeclarations\":[{\"name\":"
                } else {
                    b",{\"name\":"
                });
                declarations += 1;
                json(out, name);
                if let Some(description) = function.get("description") {
                    entry(out, "description", description);
                }
                if let Some(parameters) = function.get("parameters") {
                    label(out, "parameters");
                    clean_schema(out, parameters, Path::Parameters(i))?;
                }
                out.push(b'}');
            }
            None if tool.is_object() => native = true,
            Some(other) => {
                return Err(format!("tools[{i}]: a {other} tool has no Gemini form"));
            }
            None => return Err(format!("tools[{i}]: must be an object")),
        }
    }
    if declarations > 0 {
        out.extend_from_slice(b"]}");
    }
    if native {
        let native = tools
            .iter()
            .filter(|tool| tool.get("type").and_then(Value::as_str).is_none());
        for (j, tool) in native.enumerate() {
            if declarations > 0 || j > 0 {
                out.push(b',');
            }
            json(out, tool);
        }
    }
    out.push(b']');
    Ok(())
}

/// A `tool_choice`, for `toolConfig.functionCallingConfig`.
enum Choice<'a> {
    /// `{"mode": mode}`.
    Mode(&'static str),
    /// `{"mode": "ANY", "allowedFunctionNames": [name]}`.
    Named(&'a str),
}

/// `tool_choice` as `toolConfig.functionCallingConfig`.
fn tool_choice(choice: &Value) -> Result<Option<Choice<'_>>, String> {
    Ok(Some(match choice {
        Value::Null => return Ok(None),
        Value::String(mode) => match mode.as_str() {
            "auto" => Choice::Mode("AUTO"),
            "required" => Choice::Mode("ANY"),
            "none" => Choice::Mode("NONE"),
            other => return Err(format!("tool_choice: unknown {other:?}")),
        },
        object => Choice::Named(
            object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice: names no function")?,
        ),
    }))
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

/// Where a schema is, for errors: built only when one is made.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'static str),
    /// `tools[i].function.parameters`.
    Parameters(usize),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root(root) => f.write_str(root),
            Self::Parameters(i) => write!(f, "tools[{i}].function.parameters"),
            Self::Key(path, key) => write!(f, "{path}.{key}"),
            Self::Index(path, i) => write!(f, "{path}[{i}]"),
        }
    }
}

/// A JSON Schema as Gemini's OpenAPI-style schema, into `out`: [`DROPPED`] keys left out, a
/// `[T, "null"]` type as `T` with `nullable` (at the place and with the value a `nullable` of the
/// schema's own would have taken), references refused (Gemini resolves none).
fn clean_schema(out: &mut Vec<u8>, schema: &Value, path: Path<'_>) -> Result<(), String> {
    let Value::Object(object) = schema else {
        json(out, schema);
        return Ok(());
    };
    // Whether the type list says null, and the schema's own `nullable`: of the two the later's
    // value, written where the earlier is.
    let own_nullable = object.get("nullable");
    let null_type = matches!(object.get("type"), Some(Value::Array(types))
        if types.iter().any(|t| t == "null"));
    let (mut seen_type, mut seen_nullable) = (false, false);
    out.push(b'{');
    for (key, value) in object {
        let at = Path::Key(&path, key);
        match key.as_str() {
            key if DROPPED.contains(&key) => {}
            "$ref" | "$defs" | "definitions" => {
                return Err(format!(
                    "{at}: Gemini resolves no schema references; inline the definitions"
                ));
            }
            "type" => {
                seen_type = true;
                match value {
                    Value::Array(types) => {
                        let mut named = types.iter().filter(|t| *t != "null");
                        let (Some(only), None) = (named.next(), named.next()) else {
                            return Err(format!("{at}: Gemini takes one type (and null)"));
                        };
                        entry(out, "type", only);
                        match own_nullable {
                            _ if !null_type => {}
                            None => entry(out, "nullable", &true),
                            Some(_) if seen_nullable => {} // written at its place, before
                            Some(own) => entry(out, "nullable", own),
                        }
                    }
                    other => entry(out, "type", other),
                }
            }
            "nullable" if null_type => {
                seen_nullable = true;
                if !seen_type {
                    entry(out, "nullable", &true);
                }
            }
            "properties" => {
                let Value::Object(properties) = value else {
                    return Err(format!("{at}: must be an object"));
                };
                label(out, "properties");
                out.push(b'{');
                for (name, property) in properties {
                    label(out, name);
                    clean_schema(out, property, Path::Key(&at, name))?;
                }
                out.push(b'}');
            }
            "items" => {
                label(out, "items");
                clean_schema(out, value, at)?;
            }
            "anyOf" | "oneOf" | "allOf" => {
                let Value::Array(schemas) = value else {
                    return Err(format!("{at}: must be a list"));
                };
                label(out, key);
                out.push(b'[');
                for (i, schema) in schemas.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    clean_schema(out, schema, Path::Index(&at, i))?;
                }
                out.push(b']');
            }
            _ => entry(out, key, value),
        }
    }
    out.push(b'}');
    Ok(())
}

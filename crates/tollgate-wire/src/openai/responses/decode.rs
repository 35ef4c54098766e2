//! A Responses request, read from a caller's body into an [`LlmRequest`] (the chat shape the
//! stack speaks), and what of it a translation can carry.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};
use tollgate_core::{Content, JsonMap, LlmRequest, MaxTokensName, Message, Role};

use super::ResponsesBody;
use crate::refusal::Refusal;

/// Fields with no meaning for the answer at all: read (and echoed), never a parameter.
const ECHOED: [&str; 8] = [
    "store",
    "previous_response_id",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "safety_identifier",
    "stream_options",
];

/// Where the door keeps input items with no chat form (for the cache key, and to refuse them).
pub(super) const UNTRANSLATED_ITEMS: &str = "input";

/// Reads a Responses request body into the chat shape, and keeps it as it came
/// ([`ResponsesBody`], in the request's extensions). `stream` becomes
/// [`RequestMeta::stream`](tollgate_core::RequestMeta::stream).
///
/// ```
/// use tollgate_wire::openai::responses::{ResponsesBody, decode_request};
///
/// let body = br#"{"model": "gpt-5", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}, {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"}, {"type": "function_call_output", "call_id": "c1", "output": "sunny"}], "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}, {"type": "web_search"}]}"#;
/// let request = decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
/// assert_eq!(request.messages.len(), 3); // user, assistant's call, tool output
/// assert_eq!(request.params.extra["tools"][0]["function"]["name"], "weather");
/// assert_eq!(request.extensions.get::<ResponsesBody>().unwrap().hosted_tools(), ["web_search"]);
///
/// let refused = decode_request(bytes::Bytes::from_static(br#"{"model": "m", "input": "hi", "max_tokens": 5}"#), &Default::default());
/// assert_eq!(refused.unwrap_err().field.as_deref(), Some("max_tokens"));
/// ```
///
/// # Errors
///
/// A [`Refusal`] naming the field at fault: a body that is not a JSON object, a missing or
/// malformed `model` or `input`, a field given twice, a malformed item, tool, `tool_choice`,
/// `text.format` or `reasoning`, another API's name for the bound, `n`.
pub fn decode_request(body: Bytes, headers: &HeaderMap) -> Result<LlmRequest, Refusal> {
    let _ = headers; // no header of this API changes the call
    let (object, kept) = crate::body::read_object(&body)?;
    let store = match object.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(store)) => *store,
        Some(_) => return Err(Refusal::field("store", "expected true or false")),
    };
    let previous_response_id = match object.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(Arc::from(id.as_str())),
        Some(_) => return Err(Refusal::field("previous_response_id", "expected a string")),
    };
    let mut hosted = Vec::new();
    let mut request = read(object, previous_response_id.is_some(), &mut hosted)?;
    request.extensions.insert(ResponsesBody {
        body,
        fields: kept.into(),
        store,
        previous_response_id,
        hosted: hosted.into(),
        history: None,
    });
    Ok(request)
}

fn read(
    mut object: Map<String, Value>,
    continues: bool,
    hosted: &mut Vec<String>,
) -> Result<LlmRequest, Refusal> {
    let model = match object.remove("model") {
        Some(Value::String(model)) if !model.is_empty() => model,
        _ => return Err(Refusal::field("model", "required, a string")),
    };
    // Other APIs' names for the bound, and `n`, would pass on as unknown fields and bound or
    // bill what the gateway never checked.
    for (field, why) in [
        (
            "max_tokens",
            "the Responses API names its bound max_output_tokens",
        ),
        (
            "max_completion_tokens",
            "the Responses API names its bound max_output_tokens",
        ),
        ("n", "the Responses API answers with one response"),
        ("best_of", "the Responses API answers with one response"),
    ] {
        if object.remove(field).is_some_and(|v| !v.is_null()) {
            return Err(Refusal::field(field, why));
        }
    }
    // What lives at the provider, outside the gateway's reach, whatever the provider: a
    // background response runs there unbilled and is fetched from there, and a conversation or
    // a referenced item is the provider account's, shared by every key.
    let set =
        |value: Option<&Value>| value.is_some_and(|v| !v.is_null() && *v != Value::Bool(false));
    if set(object.get("background")) {
        return Err(Refusal::field(
            "background",
            "not served: a background response runs at the provider, unbilled here; stream it instead",
        ));
    }
    if set(object.get("conversation")) {
        return Err(Refusal::field(
            "conversation",
            "not served: a provider's conversation is shared by every key; continue with previous_response_id, which the gateway keeps per key",
        ));
    }
    if let Some(Value::Array(items)) = object.get("input")
        && items
            .iter()
            .any(|item| item.get("type").and_then(Value::as_str) == Some("item_reference"))
    {
        return Err(Refusal::field(
            "input",
            "an item_reference names an item kept at the provider, shared by every key: send the item itself",
        ));
    }
    let mut messages = Vec::new();
    match object.remove("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(Message::system(text)),
        Some(_) => return Err(Refusal::field("instructions", "expected a string")),
    }
    let mut untranslated = Vec::new();
    match object.remove("input") {
        None | Some(Value::Null) if continues => {}
        None | Some(Value::Null) => return Err(Refusal::field("input", "required")),
        Some(Value::String(text)) => messages.push(Message::user(text)),
        Some(Value::Array(items)) => {
            items_to_messages(items, "input", &mut messages, &mut untranslated)?;
        }
        Some(_) => return Err(Refusal::field("input", "expected a string or items")),
    }
    let mut request = LlmRequest::new(model, messages);
    let params = &mut request.params;
    if let Some(value) = object.remove("max_output_tokens").filter(|v| !v.is_null()) {
        params.max_tokens = Some(
            tollgate_core::whole_number(&value, 1)
                .map_err(|e| Refusal::field("max_output_tokens", &e.to_string()))?,
        );
        params.max_tokens_name = Some(MaxTokensName::MaxOutputTokens);
    }
    for field in ["temperature", "top_p"] {
        let Some(value) = object.remove(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let number = value
            .as_f64()
            .ok_or_else(|| Refusal::field(field, "expected a number"))?;
        if field == "temperature" {
            params.temperature = Some(number);
        } else {
            params.top_p = Some(number);
        }
    }
    match object.remove("stream") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(stream)) => request.meta.stream = stream,
        Some(_) => return Err(Refusal::field("stream", "expected true or false")),
    }
    let mut extra = JsonMap::new();
    if let Some(tools) = object.remove("tools").filter(|v| !v.is_null()) {
        extra.insert("tools".into(), tools_of(tools, hosted)?);
    }
    if let Some(choice) = object.remove("tool_choice").filter(|v| !v.is_null()) {
        extra.insert("tool_choice".into(), tool_choice(choice)?);
    }
    match object.remove("parallel_tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(parallel)) => {
            extra.insert("parallel_tool_calls".into(), parallel.into());
        }
        Some(_) => {
            return Err(Refusal::field(
                "parallel_tool_calls",
                "expected true or false",
            ));
        }
    }
    if let Some(text) = object.remove("text").filter(|v| !v.is_null()) {
        text_config(text, &mut extra)?;
    }
    if let Some(reasoning) = object.remove("reasoning").filter(|v| !v.is_null()) {
        reasoning_config(&reasoning, &mut extra)?;
    }
    match object.remove("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) => {
            extra.insert("user".into(), user.into());
        }
        Some(_) => return Err(Refusal::field("user", "expected a string")),
    }
    match object.remove("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) if metadata.values().all(Value::is_string) => {}
        Some(_) => {
            return Err(Refusal::field("metadata", "expected an object of strings"));
        }
    }
    if request.meta.stream {
        // A Responses stream always ends with its usage (in `response.completed`).
        extra.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    for field in ECHOED {
        object.remove(field);
    }
    if !untranslated.is_empty() {
        extra.insert(UNTRANSLATED_ITEMS.into(), untranslated.into());
    }
    // The rest (include, truncation, background, prompt, ...) stays a parameter, so a cache
    // tells calls apart by it; translations drop or refuse it (`check_translatable`).
    extra.extend(object.into_iter().filter(|(_, value)| !value.is_null()));
    if !extra.is_empty() {
        request.params.extra = extra.into();
    }
    Ok(request)
}

/// Continues a stored conversation: `history` (the earlier call's input items followed by its
/// output items, as [`ResponsesBody::input_items`] and the stored response's `output` gave them)
/// goes before this call's input, both in the chat messages (after this call's `instructions`:
/// the earlier call's are not carried, as OpenAI does) and in the body an upstream that serves
/// the Responses API is sent, which leaves out `previous_response_id` (the gateway resolved it).
///
/// ```
/// use serde_json::json;
/// use tollgate_wire::openai::responses::{ResponsesBody, continue_from, decode_request};
///
/// let body = br#"{"model": "m", "previous_response_id": "resp_1", "input": "And in Paris?"}"#;
/// let mut request = decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
/// let history = vec![
///     json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Rome?"}]}),
///     json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]}),
/// ];
/// continue_from(&mut request, history).unwrap();
/// assert_eq!(request.messages.len(), 3);
/// assert_eq!(request.extensions.get::<ResponsesBody>().unwrap().input_items().len(), 3);
/// ```
///
/// # Errors
///
/// A [`Refusal`] naming the history item at fault (`history[2].content`).
pub fn continue_from(request: &mut LlmRequest, history: Vec<Value>) -> Result<(), Refusal> {
    let mut earlier = Vec::new();
    let mut untranslated = Vec::new();
    items_to_messages(history.clone(), "history", &mut earlier, &mut untranslated)?;
    let instructions = request
        .messages
        .first()
        .is_some_and(|m| m.role == Role::System && has_instructions(request));
    let mut messages: Vec<Message> = request.messages.to_vec();
    let at = usize::from(instructions);
    messages.splice(at..at, earlier);
    request.messages = messages.into();
    if !untranslated.is_empty() {
        let extra = request.params.extra.make_mut();
        let mut items = untranslated;
        if let Some(Value::Array(own)) = extra.remove(UNTRANSLATED_ITEMS) {
            items.extend(own);
        }
        extra.insert(UNTRANSLATED_ITEMS.into(), items.into());
    }
    if let Some(body) = request.extensions.get_mut::<ResponsesBody>() {
        body.history = Some(history.into());
    }
    Ok(())
}

fn has_instructions(request: &LlmRequest) -> bool {
    request
        .extensions
        .get::<ResponsesBody>()
        .and_then(|body| body.field("instructions"))
        .is_some_and(|raw| raw != b"null")
}

/// A string `input` as the user `message` item it stands for.
pub(super) fn user_item(text: String) -> Value {
    json!({ "type": "message", "role": "user", "content": [{ "type": "input_text", "text": text }] })
}

fn field_at(base: &str, i: usize, field: &str) -> String {
    if field.is_empty() {
        format!("{base}[{i}]")
    } else {
        format!("{base}[{i}].{field}")
    }
}

fn string<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

/// Input items as chat messages; items with no chat form go to `untranslated`, `reasoning`
/// items are left out.
fn items_to_messages(
    items: Vec<Value>,
    base: &str,
    out: &mut Vec<Message>,
    untranslated: &mut Vec<Value>,
) -> Result<(), Refusal> {
    // Whether the last message is an assistant turn tool calls may join.
    let mut open_turn = false;
    for (i, item) in items.into_iter().enumerate() {
        let refuse = |field: &str, why: &str| Refusal::field(&field_at(base, i, field), why);
        if !item.is_object() {
            return Err(refuse("", "expected an object"));
        }
        let kind = match item.get("type") {
            None | Some(Value::Null) => "message",
            Some(Value::String(kind)) => kind.as_str(),
            Some(_) => return Err(refuse("type", "expected a string")),
        };
        match kind {
            "message" => {
                let message = message_item(&item).map_err(|(f, why)| refuse(&f, &why))?;
                open_turn = message.role == Role::Assistant;
                match out.last_mut() {
                    // An assistant's text after its own calls in the same turn stays one turn.
                    Some(last)
                        if open_turn && last.role == Role::Assistant && last.content.is_none() =>
                    {
                        last.content = message.content;
                    }
                    _ => out.push(message),
                }
            }
            "function_call" => {
                let (Some(call_id), Some(name)) = (string(&item, "call_id"), string(&item, "name"))
                else {
                    return Err(refuse("", "a function_call needs call_id and name"));
                };
                let arguments = match item.get("arguments") {
                    Some(Value::String(arguments)) => arguments.clone(),
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(_) => return Err(refuse("arguments", "expected a string")),
                };
                let call = json!({
                    "id": call_id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                });
                let joins = open_turn && out.last().is_some_and(|m| m.role == Role::Assistant);
                if !joins {
                    out.push(Message {
                        role: Role::Assistant,
                        content: None,
                        extra: JsonMap::new(),
                    });
                }
                let last = out.last_mut().expect("pushed or an assistant turn");
                match last.extra.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        last.extra.insert("tool_calls".into(), vec![call].into());
                    }
                }
                open_turn = true;
            }
            "function_call_output" => {
                let Some(call_id) = string(&item, "call_id") else {
                    return Err(refuse("call_id", "required, a string"));
                };
                let content = match item.get("output") {
                    Some(Value::String(text)) => Content::Text(text.clone()),
                    Some(Value::Array(parts)) => Content::Parts(
                        parts
                            .iter()
                            .enumerate()
                            .map(|(j, p)| {
                                input_part(p).map_err(|why| refuse(&format!("output[{j}]"), &why))
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => return Err(refuse("output", "expected a string or content parts")),
                };
                let mut message = Message::new(Role::Tool, content);
                message.extra.insert("tool_call_id".into(), call_id.into());
                out.push(message);
                open_turn = false;
            }
            "reasoning" => {
                tracing::debug!("a reasoning item has no chat form and is left out");
            }
            _ => {
                // Built-in tools' calls and outputs, item references, ...: kept for a Responses
                // upstream, refused by a translation.
                untranslated.push(item);
                open_turn = false;
            }
        }
    }
    Ok(())
}

type ItemError = (String, String);

/// A `message` item (or an easy input message: `role` and `content`) as a chat message.
fn message_item(item: &Value) -> Result<Message, ItemError> {
    let role = match string(item, "role") {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        _ => {
            return Err((
                "role".into(),
                "expected user, assistant, system or developer".into(),
            ));
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => Content::Text(text.clone()),
        Some(Value::Array(parts)) if role == Role::Assistant => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match string(part, "type") {
                    Some("output_text" | "input_text" | "text") => {
                        text.push_str(string(part, "text").unwrap_or_default());
                    }
                    Some("refusal") => text.push_str(string(part, "refusal").unwrap_or_default()),
                    _ => {
                        return Err((
                            format!("content[{j}].type"),
                            "expected output_text or refusal".into(),
                        ));
                    }
                }
            }
            Content::Text(text)
        }
        Some(Value::Array(parts)) => Content::Parts(
            parts
                .iter()
                .enumerate()
                .map(|(j, part)| input_part(part).map_err(|why| (format!("content[{j}]"), why)))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err((
                "content".into(),
                "expected a string or content parts".into(),
            ));
        }
    };
    Ok(Message::new(role, content))
}

/// An input content part as a chat content part.
fn input_part(part: &Value) -> Result<Value, String> {
    match string(part, "type") {
        Some("input_text" | "output_text" | "text") => match part.get("text") {
            Some(Value::String(text)) => Ok(json!({ "type": "text", "text": text })),
            _ => Err("an input_text part needs its text".into()),
        },
        Some("input_image") => {
            let mut image = Map::new();
            match (string(part, "image_url"), string(part, "file_id")) {
                (Some(url), _) => image.insert("url".into(), url.into()),
                // An uploaded file: a translation refuses it (an unknown part type).
                (None, Some(_)) => return Ok(part.clone()),
                (None, None) => return Err("an input_image needs image_url or file_id".into()),
            };
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image.insert("detail".into(), detail.clone());
            }
            Ok(json!({ "type": "image_url", "image_url": image }))
        }
        Some("input_file") => {
            let mut file = Map::new();
            for key in ["file_id", "file_data", "filename"] {
                if let Some(value) = part.get(key).filter(|v| v.is_string()) {
                    file.insert(key.into(), value.clone());
                }
            }
            if file.is_empty() || part.get("file_url").is_some_and(Value::is_string) {
                // A file by URL has no chat form: kept as it came, for the upstream to judge.
                return Ok(part.clone());
            }
            Ok(json!({ "type": "file", "file": file }))
        }
        Some("input_audio") => Ok(part.clone()),
        Some(_) => Ok(part.clone()),
        None => Err("a content part needs its type".into()),
    }
}

/// Responses tools as chat tools: function tools nested; built-in tools kept as they came (so a
/// cache tells them apart) and named in `hosted`.
fn tools_of(tools: Value, hosted: &mut Vec<String>) -> Result<Value, Refusal> {
    let Value::Array(tools) = tools else {
        return Err(Refusal::field("tools", "expected an array"));
    };
    let mut chat = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let refuse = |field: &str, why: &str| Refusal::field(&field_at("tools", i, field), why);
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let Some(name) = string(&tool, "name") else {
                    return Err(refuse("name", "required, a string"));
                };
                let mut function = Map::new();
                function.insert("name".into(), name.into());
                if let Some(description) = tool.get("description").filter(|d| !d.is_null()) {
                    if !description.is_string() {
                        return Err(refuse("description", "expected a string"));
                    }
                    function.insert("description".into(), description.clone());
                }
                match tool.get("parameters") {
                    None | Some(Value::Null) => {}
                    Some(parameters @ Value::Object(_)) => {
                        function.insert("parameters".into(), parameters.clone());
                    }
                    Some(_) => return Err(refuse("parameters", "expected a JSON schema object")),
                }
                match tool.get("strict") {
                    None | Some(Value::Null) => {}
                    Some(strict @ Value::Bool(_)) => {
                        function.insert("strict".into(), strict.clone());
                    }
                    Some(_) => return Err(refuse("strict", "expected true or false")),
                }
                chat.push(json!({ "type": "function", "function": function }));
            }
            Some(kind) => {
                hosted.push(kind.to_owned());
                chat.push(tool);
            }
            None => return Err(refuse("type", "required, a string")),
        }
    }
    Ok(chat.into())
}

/// Responses' `tool_choice` as chat's.
fn tool_choice(choice: Value) -> Result<Value, Refusal> {
    let refuse = |field: &str, why: &str| Refusal::field(field, why);
    match &choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => Ok(choice),
        Value::String(_) => Err(refuse("tool_choice", "expected auto, none or required")),
        Value::Object(_) => match string(&choice, "type") {
            Some("function") => {
                let name = string(&choice, "name")
                    .ok_or_else(|| refuse("tool_choice.name", "required, a string"))?;
                Ok(json!({ "type": "function", "function": { "name": name } }))
            }
            Some("allowed_tools") => {
                let mode = match string(&choice, "mode") {
                    Some(mode @ ("auto" | "required")) => mode,
                    _ => return Err(refuse("tool_choice.mode", "expected auto or required")),
                };
                let Some(Value::Array(tools)) = choice.get("tools") else {
                    return Err(refuse("tool_choice.tools", "required, an array"));
                };
                let tools = tools
                    .iter()
                    .map(|tool| match (string(tool, "type"), string(tool, "name")) {
                        (Some("function"), Some(name)) => {
                            json!({ "type": "function", "function": { "name": name } })
                        }
                        _ => tool.clone(),
                    })
                    .collect::<Vec<_>>();
                Ok(json!({
                    "type": "allowed_tools",
                    "allowed_tools": { "mode": mode, "tools": tools },
                }))
            }
            // A built-in tool's choice: kept, refused by a translation.
            Some(_) => Ok(choice),
            None => Err(refuse("tool_choice.type", "required, a string")),
        },
        _ => Err(refuse("tool_choice", "expected a string or an object")),
    }
}

/// `text`: its `format` as `response_format`, its `verbosity` kept (dropped by translations).
fn text_config(text: Value, extra: &mut JsonMap) -> Result<(), Refusal> {
    let Value::Object(mut text) = text else {
        return Err(Refusal::field("text", "expected an object"));
    };
    if let Some(format) = text.remove("format").filter(|f| !f.is_null()) {
        let refuse = |field: &str, why: &str| Refusal::field(&format!("text.format.{field}"), why);
        match string(&format, "type") {
            Some("text") => {}
            Some("json_object") => {
                extra.insert("response_format".into(), json!({ "type": "json_object" }));
            }
            Some("json_schema") => {
                let name = string(&format, "name").ok_or_else(|| refuse("name", "required"))?;
                let Some(schema @ Value::Object(_)) = format.get("schema") else {
                    return Err(refuse("schema", "required, a JSON schema object"));
                };
                let mut json_schema = Map::new();
                json_schema.insert("name".into(), name.into());
                json_schema.insert("schema".into(), schema.clone());
                for key in ["description", "strict"] {
                    if let Some(value) = format.get(key).filter(|v| !v.is_null()) {
                        json_schema.insert(key.into(), value.clone());
                    }
                }
                extra.insert(
                    "response_format".into(),
                    json!({ "type": "json_schema", "json_schema": json_schema }),
                );
            }
            _ => return Err(refuse("type", "expected text, json_object or json_schema")),
        }
    }
    match text.remove("verbosity") {
        None | Some(Value::Null) => {}
        Some(verbosity @ Value::String(_)) => {
            extra.insert("verbosity".into(), verbosity);
        }
        Some(_) => return Err(Refusal::field("text.verbosity", "expected a string")),
    }
    Ok(())
}

/// Reasoning efforts OpenAI's client knows.
const EFFORTS: [&str; 7] = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];
const SUMMARIES: [&str; 3] = ["auto", "concise", "detailed"];

/// `reasoning`: its `effort` as `reasoning_effort`; a summary is not part of the answer.
fn reasoning_config(reasoning: &Value, extra: &mut JsonMap) -> Result<(), Refusal> {
    if !reasoning.is_object() {
        return Err(Refusal::field("reasoning", "expected an object"));
    }
    match reasoning.get("effort") {
        None | Some(Value::Null) => {}
        Some(Value::String(effort)) if EFFORTS.contains(&effort.as_str()) => {
            extra.insert("reasoning_effort".into(), effort.as_str().into());
        }
        Some(_) => {
            return Err(Refusal::field(
                "reasoning.effort",
                "expected none, minimal, low, medium, high, xhigh or max",
            ));
        }
    }
    for key in ["summary", "generate_summary"] {
        match reasoning.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(summary)) if SUMMARIES.contains(&summary.as_str()) => {}
            Some(_) => {
                return Err(Refusal::field(
                    &format!("reasoning.{key}"),
                    "expected auto, concise or detailed",
                ));
            }
        }
    }
    Ok(())
}

//! The body a Gemini upstream is sent, from the OpenAI shape: the conversation as `contents` and
//! `systemInstruction` here, the rest (tools, generation settings, Gemini's own fields) in
//! [`config`](super::config).

use serde_json::{Map, Value, json};
use tollgate_core::{Content, LlmRequest, Message, Role};

use super::THOUGHT_SIGNATURE_SEPARATOR;

/// The `generateContent` (and `streamGenerateContent`) body for `request`. The model goes in the
/// URL, not the body.
///
/// # Errors
///
/// What the Gemini API cannot express, in words naming the field: see the
/// [module's table](super).
pub fn encode_request(request: &LlmRequest) -> Result<Vec<u8>, String> {
    let mut body = Map::new();
    let (system, contents) = contents(&request.messages)?;
    body.insert("contents".into(), Value::from(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    super::config::apply(request, &mut body)?;
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

//! The body a Gemini upstream is sent, from the OpenAI shape: the conversation as `contents` and
//! `systemInstruction` here, the rest (tools, generation settings, Gemini's own fields) in
//! [`config`](super::config).
//!
//! The body is written as JSON text straight from the request, borrowing its strings, with no
//! `serde_json::Value` built on the way: the object's fields in the order they have always had,
//! each written once (where two spellings of a field are sent, the later one's value at the
//! earlier one's place). Only what Gemini takes in another form is parsed: tool calls' arguments
//! and tool results.

use std::borrow::Cow;

use serde_json::Value;
use tollgate_core::{Content, LlmRequest, Message, Role};

use super::{THOUGHT_SIGNATURE_SEPARATOR, json};

/// The `generateContent` (and `streamGenerateContent`) body for `request`. The model goes in the
/// URL, not the body.
///
/// # Errors
///
/// What the Gemini API cannot express, in words naming the field: see the
/// [module's table](super).
pub fn encode_request(request: &LlmRequest) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(capacity(&request.messages));
    out.extend_from_slice(b"{\"contents\":[");
    let system = contents(&mut out, &request.messages)?;
    out.push(b']');
    if system {
        out.extend_from_slice(b",\"systemInstruction\":{\"parts\":[");
        system_parts(&mut out, &request.messages);
        out.extend_from_slice(b"]}");
    }
    super::config::write(request, &mut out)?;
    out.push(b'}');
    Ok(out)
}

/// Room for the body at a guess: the messages' text, and some for the JSON around it.
fn capacity(messages: &[Message]) -> usize {
    let text: usize = messages.iter().flat_map(Message::texts).map(str::len).sum();
    256 + text + text / 8 + 64 * messages.len()
}

/// `{"text": text}`.
fn text_part(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"{\"text\":");
    json(out, text);
    out.push(b'}');
}

/// The conversation's turns, into `out`'s open `contents` list; whether any system message
/// gives the system instruction a part (each one's parts checked here, in the messages' order).
fn contents(out: &mut Vec<u8>, messages: &[Message]) -> Result<bool, String> {
    let mut system = false;
    let mut turns = 0;
    // The parts so far of the last turn when it is a user turn of function responses only (or of
    // no parts), left open for the next tool message's.
    let mut responses: Option<usize> = None;
    for (i, message) in messages.iter().enumerate() {
        let at = |e: String| format!("messages[{i}]: {e}");
        if matches!(message.role, Role::System | Role::Developer) {
            system |= system_has_parts(message).map_err(at)?;
            continue;
        }
        if let (Role::Tool | Role::Function, Some(parts)) = (message.role, responses) {
            // The results of one turn's calls go back together, in one user turn.
            if parts > 0 {
                out.push(b',');
            }
            function_response(out, message, &messages[..i]).map_err(at)?;
            responses = Some(parts + 1);
            continue;
        }
        if responses.take().is_some() {
            out.extend_from_slice(b"]}");
        }
        if turns > 0 {
            out.push(b',');
        }
        turns += 1;
        match message.role {
            Role::User => {
                out.extend_from_slice(b"{\"role\":\"user\",\"parts\":[");
                if user_parts(out, message).map_err(at)? == 0 {
                    responses = Some(0);
                    continue;
                }
            }
            Role::Assistant => {
                out.extend_from_slice(b"{\"role\":\"model\",\"parts\":[");
                model_parts(out, message).map_err(at)?;
            }
            _ => {
                out.extend_from_slice(b"{\"role\":\"user\",\"parts\":[");
                function_response(out, message, &messages[..i]).map_err(at)?;
                responses = Some(1);
                continue;
            }
        }
        out.extend_from_slice(b"]}");
    }
    if responses.is_some() {
        out.extend_from_slice(b"]}");
    }
    Ok(system)
}

/// Whether a system message gives the instruction any part, refusing a part that is not text.
fn system_has_parts(message: &Message) -> Result<bool, String> {
    match &message.content {
        None => Ok(false),
        Some(Content::Text(_)) => Ok(true),
        Some(Content::Parts(parts)) => match parts.iter().position(|p| text_of(p).is_none()) {
            Some(j) => Err(format!(
                "content[{j}]: a system instruction takes text parts only"
            )),
            None => Ok(!parts.is_empty()),
        },
    }
}

fn text_of(part: &Value) -> Option<&str> {
    part.get("text").and_then(Value::as_str)
}

/// The system and developer messages' text, as the instruction's parts (checked already).
fn system_parts(out: &mut Vec<u8>, messages: &[Message]) {
    let mut first = true;
    let system = messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer));
    for text in system.flat_map(Message::texts) {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        text_part(out, text);
    }
}

/// A user turn's parts: text, images, audio, files; how many.
fn user_parts(out: &mut Vec<u8>, message: &Message) -> Result<usize, String> {
    match &message.content {
        None => text_part(out, ""),
        Some(Content::Text(text)) => text_part(out, text),
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                user_part(out, part).map_err(|e| format!("content[{j}]{e}"))?;
            }
            return Ok(parts.len());
        }
    }
    Ok(1)
}

fn user_part(out: &mut Vec<u8>, part: &Value) -> Result<(), String> {
    let string = |pointer: &str| part.pointer(pointer).and_then(Value::as_str);
    match string("/type") {
        Some("text") => text_part(out, string("/text").unwrap_or_default()),
        Some("image_url") => {
            let url = string("/image_url/url")
                .or_else(|| string("/image_url"))
                .ok_or(".image_url.url: required")?;
            media(out, url).map_err(|e| format!(".image_url.url: {e}"))?;
        }
        Some("input_audio") => {
            let data = string("/input_audio/data").ok_or(".input_audio.data: required")?;
            let format = string("/input_audio/format").unwrap_or("wav");
            inline(out, &format!("audio/{format}"), data);
        }
        Some("file") => match (string("/file/file_data"), string("/file/file_id")) {
            (Some(data), _) => media(out, data).map_err(|e| format!(".file.file_data: {e}"))?,
            (None, Some(id)) if id.starts_with("https://") || id.starts_with("gs://") => {
                media(out, id).map_err(|e| format!(".file.file_id: {e}"))?;
            }
            _ => {
                return Err(
                    ".file: Gemini takes a file as file_data (a data: URL), or a \
                            file_id that is a gs:// or https:// URI"
                        .into(),
                );
            }
        },
        other => {
            return Err(format!(
                ": a {} part has no Gemini form",
                other.unwrap_or("typeless")
            ));
        }
    }
    Ok(())
}

/// `{"inlineData": {"mimeType": mime, "data": data}}`.
fn inline(out: &mut Vec<u8>, mime: &str, data: &str) {
    out.extend_from_slice(b"{\"inlineData\":{\"mimeType\":");
    json(out, mime);
    out.extend_from_slice(b",\"data\":");
    json(out, data);
    out.extend_from_slice(b"}}");
}

/// A media URL as a part: a `data:` URL inline, a `gs://` or `https://` URL by reference.
fn media(out: &mut Vec<u8>, url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime, data) = rest
            .split_once(";base64,")
            .ok_or("a data: URL must be base64 (data:<type>;base64,...)")?;
        inline(out, mime, data);
        return Ok(());
    }
    if url.starts_with("gs://") || url.starts_with("https://") {
        out.extend_from_slice(b"{\"fileData\":{\"fileUri\":");
        json(out, url);
        if let Some(mime) = mime_of(url) {
            out.extend_from_slice(b",\"mimeType\":");
            json(out, mime);
        }
        out.extend_from_slice(b"}}");
        return Ok(());
    }
    Err("Gemini takes data: URLs, and gs:// or https:// URLs".into())
}

/// The MIME type a file's extension names, for the kinds Gemini reads.
fn mime_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path.rsplit_once('.')?.1;
    let is = |name: &str| extension.eq_ignore_ascii_case(name);
    Some(if is("png") {
        "image/png"
    } else if is("jpg") || is("jpeg") {
        "image/jpeg"
    } else if is("webp") {
        "image/webp"
    } else if is("gif") {
        "image/gif"
    } else if is("heic") {
        "image/heic"
    } else if is("heif") {
        "image/heif"
    } else if is("pdf") {
        "application/pdf"
    } else if is("mp3") {
        "audio/mp3"
    } else if is("wav") {
        "audio/wav"
    } else if is("mp4") {
        "video/mp4"
    } else if is("txt") {
        "text/plain"
    } else {
        return None;
    })
}

/// A model turn's parts: its text, then a `functionCall` part per tool call with the signature
/// its id carries. A `reasoning_signature` is not sent back: it may be another provider's (a
/// conversation moved from Claude), which Gemini refuses, and Gemini needs only its calls'.
fn model_parts(out: &mut Vec<u8>, message: &Message) -> Result<(), String> {
    let mut parts = 0;
    for text in message.texts().filter(|text| !text.is_empty()) {
        if parts > 0 {
            out.push(b',');
        }
        parts += 1;
        text_part(out, text);
    }
    let calls = message.extra.get("tool_calls").and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let field = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
        let name = field("/function/name")
            .ok_or_else(|| format!("tool_calls[{i}] has no function name"))?;
        let arguments = field("/function/arguments").unwrap_or("{}");
        if parts > 0 {
            out.push(b',');
        }
        parts += 1;
        out.extend_from_slice(b"{\"functionCall\":{\"name\":");
        json(out, name);
        out.extend_from_slice(b",\"args\":");
        if arguments.trim().is_empty() {
            out.extend_from_slice(b"{}");
        } else {
            // Parsed and written again, as Gemini takes an object and not its text.
            let args: Value = serde_json::from_str(arguments)
                .map_err(|e| format!("tool_calls[{i}].function.arguments is not JSON: {e}"))?;
            json(out, &args);
        }
        out.push(b'}');
        let signature = field("/id")
            .and_then(|id| id.split_once(THOUGHT_SIGNATURE_SEPARATOR))
            .map(|(_, signature)| signature);
        if let Some(signature) = signature {
            out.extend_from_slice(b",\"thoughtSignature\":");
            json(out, signature);
        }
        out.push(b'}');
    }
    if parts == 0 {
        text_part(out, "");
    }
    Ok(())
}

/// A `tool` message (or a legacy `function` one) as a `functionResponse` part: the function's
/// name from the earlier call it answers, its content as the response object.
fn function_response(
    out: &mut Vec<u8>,
    message: &Message,
    earlier: &[Message],
) -> Result<(), String> {
    let name = match message.role {
        Role::Function => message
            .extra
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a function message needs its name")?,
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
    if let Some(Content::Parts(parts)) = &message.content
        && let Some(j) = parts.iter().position(|p| text_of(p).is_none())
    {
        return Err(format!("content[{j}]: a tool result takes text parts only"));
    }
    let mut pieces = message.texts();
    let text: Cow<'_, str> = match (pieces.next(), pieces.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(only), None) => Cow::Borrowed(only),
        (Some(first), Some(second)) => {
            let mut text = [first, second].concat();
            pieces.for_each(|piece| text.push_str(piece));
            Cow::Owned(text)
        }
    };
    out.extend_from_slice(b"{\"functionResponse\":{\"name\":");
    json(out, name);
    out.extend_from_slice(b",\"response\":");
    match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => json(out, &object),
        Ok(other) => {
            out.extend_from_slice(b"{\"content\":");
            json(out, &other);
            out.push(b'}');
        }
        Err(_) => {
            out.extend_from_slice(b"{\"content\":");
            json(out, &*text);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

/// The name of the function that the latest call with `id` named.
fn called<'a>(id: &str, earlier: &'a [Message]) -> Option<&'a str> {
    earlier.iter().rev().find_map(|message| {
        let calls = message.extra.get("tool_calls")?.as_array()?;
        calls
            .iter()
            .find(|call| call.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|call| call.pointer("/function/name")?.as_str())
    })
}

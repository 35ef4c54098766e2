//! A chat-completions answer: read from an upstream's body (the client), written for a caller
//! (the gateway's door). The answer's own serde is core's: [`LlmResponse`] is the OpenAI shape,
//! and writes back exactly what it read.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tollgate_core::{JsonMap, LlmResponse};

/// A response extension: an upstream's whole chat answer as it came, when it has everything a
/// caller's answer needs (its `model`, `id`, `object` and `created`). [`encode_answer`] writes it
/// as it came rather than writing the typed answer again.
#[derive(Debug, Clone)]
pub struct ChatAnswer(pub Bytes);

/// Reads an upstream's whole answer, with `asked` as its model when it names none.
///
/// # Errors
///
/// Why it is not a chat-completions answer: not its JSON, or no choices.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    decode(body, asked).map(|(answer, _)| answer)
}

/// [`decode_answer`], keeping `body` as the answer's [`ChatAnswer`] when a caller can have it as
/// it came: what reads the answer still reads the typed one, and what writes it writes these bytes.
///
/// # Errors
///
/// As [`decode_answer`].
pub fn decode_kept_answer(body: &Bytes, asked: &str) -> Result<LlmResponse, String> {
    let (mut answer, named) = decode(body, asked)?;
    let has = |field| answer.extra.contains_key(field);
    if named && has("id") && has("object") && has("created") {
        answer.extensions.insert(ChatAnswer(body.clone()));
    }
    Ok(answer)
}

/// The answer, and whether the upstream named its model.
fn decode(body: &[u8], asked: &str) -> Result<(LlmResponse, bool), String> {
    let mut answer: LlmResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if answer.choices.is_empty() {
        return Err("no choices".into());
    }
    let named = !answer.model.is_empty();
    if !named {
        answer.model = asked.to_owned();
    }
    Ok((answer, named))
}

/// The fields OpenAI's clients expect in every answer (`object`) or chunk, among `id`, `object`
/// and `created`, that `has` says it lacks: an upstream or a cached answer that left them out.
/// `id` becomes `chatcmpl-<id>`.
pub fn required_fields(id: &str, object: &str, has: impl Fn(&str) -> bool) -> JsonMap {
    let mut fields = JsonMap::new();
    if !has("id") {
        fields.insert("id".into(), format!("chatcmpl-{id}").into());
    }
    if !has("object") {
        fields.insert("object".into(), object.into());
    }
    if !has("created") {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        fields.insert("created".into(), created.into());
    }
    fields
}

/// The answer's body for a caller, with [`required_fields`] filled in under the call's `id`: an
/// upstream's [`ChatAnswer`] as it came, else the typed answer written.
pub fn encode_answer(mut answer: LlmResponse, id: &str) -> Bytes {
    if let Some(ChatAnswer(body)) = answer.extensions.remove::<ChatAnswer>() {
        return body;
    }
    let missing = required_fields(id, "chat.completion", |field| {
        answer.extra.contains_key(field)
    });
    if !missing.is_empty() {
        answer.extra.make_mut().extend(missing);
    }
    serde_json::to_vec(&answer)
        .expect("an answer serializes")
        .into()
}

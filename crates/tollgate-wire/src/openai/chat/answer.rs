//! A chat-completions answer: read from an upstream's body (the client), written for a caller
//! (the gateway's door). The answer's own serde is core's: [`LlmResponse`] is the OpenAI shape,
//! and writes back exactly what it read.

use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_core::{JsonMap, LlmResponse};

/// Reads an upstream's whole answer, with `asked` as its model when it names none.
///
/// # Errors
///
/// Why it is not a chat-completions answer: not its JSON, or no choices.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let mut answer: LlmResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if answer.choices.is_empty() {
        return Err("no choices".into());
    }
    if answer.model.is_empty() {
        answer.model = asked.to_owned();
    }
    Ok(answer)
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

/// The answer's body for a caller, with [`required_fields`] filled in under the call's `id`.
pub fn encode_answer(mut answer: LlmResponse, id: &str) -> Vec<u8> {
    let missing = required_fields(id, "chat.completion", |field| {
        answer.extra.contains_key(field)
    });
    if !missing.is_empty() {
        answer.extra.make_mut().extend(missing);
    }
    serde_json::to_vec(&answer).expect("an answer serializes")
}

//! OpenAI's embeddings (`POST /v1/embeddings`), both ways. A request is its `model` and the
//! provider's fields (`input`, `dimensions`, `encoding_format`, ...) in
//! [`Params::extra`](tollgate_core::Params::extra); an answer has no choices, its vectors
//! (`data`) and other fields in [`LlmResponse::extra`], and its tokens as input.
//!
//! <https://platform.openai.com/docs/api-reference/embeddings>

use serde_json::{Map, Value, json};
use tollgate_core::{JsonMap, LlmRequest, LlmResponse, Operation, Usage};

use crate::refusal::Refusal;

/// Reads an embeddings request body: `model` and `input` are required; every other field goes
/// on as it came.
///
/// # Errors
///
/// A [`Refusal`] naming `model` or `input`, or saying the body is not JSON.
pub fn decode_request(body: &[u8]) -> Result<LlmRequest, Refusal> {
    let mut object: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        Refusal::json(format!(
            "the request body is not a valid embeddings request: {e}"
        ))
    })?;
    let Some(Value::String(model)) = object.remove("model") else {
        return Err(Refusal::field("model", "required, a string"));
    };
    match object.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if !items.is_empty() => {}
        _ => {
            return Err(Refusal::field(
                "input",
                "required, a string or a non-empty array of strings or token arrays",
            ));
        }
    }
    let mut request = LlmRequest::new(model, Vec::new());
    request.meta.operation = Operation::Embeddings;
    request.params.extra = object.into();
    Ok(request)
}

/// The body for an upstream: the model and the request's fields.
pub fn encode_request(request: &LlmRequest) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("model".into(), request.model.as_ref().into());
    for (field, value) in request.params.extra.iter() {
        body.insert(field.clone(), value.clone());
    }
    serde_json::to_vec(&body).expect("a JSON object serializes")
}

/// Reads an upstream's answer, with `asked` as its model when it names none.
///
/// # Errors
///
/// Why it is not an embeddings answer: not a JSON object, or no `data`.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let mut fields: JsonMap = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !fields.get("data").is_some_and(Value::is_array) {
        return Err("no data".into());
    }
    let tokens = fields
        .remove("usage")
        .and_then(|usage| usage.get("prompt_tokens")?.as_u64())
        .unwrap_or(0);
    let model = match fields.remove("model") {
        Some(Value::String(model)) => model,
        _ => asked.to_owned(),
    };
    let mut answer = LlmResponse::with_choices(model, Vec::new()).with_usage(Usage::new(tokens, 0));
    answer.extra = fields.into();
    Ok(answer)
}

/// The answer's body for a caller: its fields, its model and its tokens as `usage`.
pub fn encode_answer(answer: &LlmResponse) -> Vec<u8> {
    let mut object: Map<String, Value> = (*answer.extra).clone();
    object.insert("model".into(), answer.model.clone().into());
    let tokens = answer.usage.input_tokens;
    object.insert(
        "usage".into(),
        json!({ "prompt_tokens": tokens, "total_tokens": tokens }),
    );
    serde_json::to_vec(&object).expect("an answer serializes")
}

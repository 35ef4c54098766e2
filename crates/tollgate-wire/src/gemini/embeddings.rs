//! Gemini's embeddings (`POST /v1beta/models/{model}:batchEmbedContents`), from and to the
//! OpenAI shape: a request's `input` (a string or a list of strings) as one `requests[]` entry
//! each, `dimensions` as `outputDimensionality`, `task_type` / `taskType` and `title` as
//! Gemini's; the answer's `embeddings[].values` as OpenAI's `data[].embedding`, so an OpenAI
//! caller reads it as it would OpenAI's (`object: list`, each item `object: embedding` with its
//! `index`).
//!
//! <https://ai.google.dev/api/embeddings#method:-models.batchembedcontents>
//!
//! | OpenAI field | Gemini |
//! |---|---|
//! | `input`: a string or strings | `requests[].content.parts[0].text` |
//! | `input`: token arrays, `encoding_format: base64` | refused |
//! | `dimensions` | `outputDimensionality` |
//! | `task_type` / `taskType`, `title` | `taskType`, `title` |
//! | `user`, `encoding_format: float` | dropped |
//! | any other field | refused, by name |
//!
//! Gemini reports no tokens for embeddings: the answer's usage is zero unless it carries a
//! `usageMetadata.promptTokenCount`.

use serde_json::{Map, Value, json};
use tollgate_core::{JsonMap, LlmRequest, LlmResponse, Usage};

/// The `batchEmbedContents` body for `request`, whose model Gemini names `models/{model}`.
///
/// # Errors
///
/// What Gemini's embeddings cannot take, naming the field.
pub fn encode_request(request: &LlmRequest) -> Result<Vec<u8>, String> {
    let model = request.model.as_ref();
    let model = if model.contains('/') {
        model.to_owned()
    } else {
        format!("models/{model}")
    };
    let mut settings = Map::new();
    let mut texts: Vec<&str> = Vec::new();
    for (key, value) in request.params.extra.iter() {
        match key.as_str() {
            "input" => match value {
                Value::String(text) => texts.push(text),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        texts.push(item.as_str().ok_or_else(|| {
                            format!("input[{i}]: Gemini embeds text, not token arrays")
                        })?);
                    }
                }
                _ => return Err("input: a string or a list of strings".into()),
            },
            "dimensions" => {
                settings.insert("outputDimensionality".into(), value.clone());
            }
            "task_type" | "taskType" => {
                settings.insert("taskType".into(), value.clone());
            }
            "title" => {
                settings.insert("title".into(), value.clone());
            }
            "encoding_format" if value == "float" => {}
            "encoding_format" => {
                return Err("encoding_format: Gemini answers floats only".into());
            }
            "user" => {}
            other => {
                return Err(format!("{other}: Gemini's embeddings have no such field"));
            }
        }
    }
    if texts.is_empty() {
        return Err("input: required".into());
    }
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|text| {
            let mut one = settings.clone();
            one.insert("model".into(), model.as_str().into());
            one.insert("content".into(), json!({ "parts": [{ "text": text }] }));
            Value::Object(one)
        })
        .collect();
    Ok(serde_json::to_vec(&json!({ "requests": requests })).expect("JSON serializes"))
}

/// Reads a `batchEmbedContents` answer as OpenAI's embeddings answer, with `asked` as its model.
///
/// # Errors
///
/// Why it is not an embeddings answer: not a JSON object, or no `embeddings` list of `values`.
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let embeddings = answer
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or("no embeddings")?;
    let data = embeddings
        .iter()
        .enumerate()
        .map(|(index, embedding)| {
            let values = embedding
                .get("values")
                .filter(|v| v.is_array())
                .ok_or_else(|| format!("embeddings[{index}]: no values"))?;
            Ok(json!({ "object": "embedding", "index": index, "embedding": values }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let tokens = answer
        .pointer("/usageMetadata/promptTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut extra = JsonMap::new();
    extra.insert("object".into(), "list".into());
    extra.insert("data".into(), data.into());
    let mut response =
        LlmResponse::with_choices(asked, Vec::new()).with_usage(Usage::new(tokens, 0));
    response.extra = extra.into();
    Ok(response)
}

//! Embeddings on Bedrock (`POST /model/{modelId}/invoke`), whose bodies are each model family's
//! own: Amazon Titan's, one text per call, and Cohere's, many texts per call. Both answer in
//! OpenAI's embeddings shape ([`openai::embeddings`](crate::openai::embeddings)), so a gateway's
//! `/v1/embeddings` returns it as it returns any other.
//!
//! - Titan: <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>
//! - Cohere: <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>
//!
//! | OpenAI field | Titan | Cohere |
//! |---|---|---|
//! | `input` (a string, or a list of strings) | `inputText`, one call per string | `texts` |
//! | `dimensions` | `dimensions` | refused |
//! | `encoding_format: float` | kept (the default) | kept |
//! | `encoding_format` otherwise, token arrays as `input` | refused | refused |
//! | `input_type`, `truncate`, `normalize`, `embeddingTypes` | as they came | as they came (`input_type` is `search_document` when unset) |

use serde_json::{Map, Value, json};
use tollgate_core::{LlmRequest, LlmResponse, Usage};

/// The families of embedding models on Bedrock whose bodies are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbeddingFamily {
    /// Amazon Titan text embeddings (`amazon.titan-embed-text-v2:0`): one text per call.
    Titan,
    /// Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`): many per call.
    Cohere,
}

impl EmbeddingFamily {
    /// The family of `model` (an id, an inference profile or an ARN), when it is a known one.
    pub fn of(model: &str) -> Option<Self> {
        if model.contains("amazon.titan-embed") {
            Some(Self::Titan)
        } else if model.contains("cohere.embed") {
            Some(Self::Cohere)
        } else {
            None
        }
    }
}

/// The most texts one embeddings call takes: OpenAI's bound, which also bounds the calls Titan
/// (one text a call) makes for one request.
pub const MAX_INPUTS: usize = 2_048;

/// The texts an embeddings request asks for, in order.
///
/// # Errors
///
/// `input` missing, not a string or a list of strings (token arrays have no form here), or a list
/// longer than [`MAX_INPUTS`].
pub fn inputs(request: &LlmRequest) -> Result<Vec<String>, String> {
    let input = request.params.extra.get("input").ok_or("input: required")?;
    match input {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) if items.len() > MAX_INPUTS => Err(format!(
            "input: at most {MAX_INPUTS} texts a call (OpenAI's own bound), got {}",
            items.len()
        )),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    format!("input[{i}]: Bedrock's embedding models take text, not token arrays")
                })
            })
            .collect(),
        _ => Err("input: a string or a non-empty list of strings".into()),
    }
}

/// The fields every family refuses or handles itself.
fn check(request: &LlmRequest) -> Result<(), String> {
    match request.params.extra.get("encoding_format") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(format)) if format == "float" => Ok(()),
        Some(other) => Err(format!(
            "encoding_format {other}: Bedrock's embedding models answer with floats only"
        )),
    }
}

/// The fields passed to the model as they came: all but OpenAI's own.
fn passed(request: &LlmRequest, body: &mut Map<String, Value>) {
    for (key, value) in request.params.extra.iter() {
        if !matches!(
            key.as_str(),
            "input" | "encoding_format" | "dimensions" | "user" | "model"
        ) {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

/// Titan's body for one `text`, with `dimensions` and the model's own fields.
///
/// # Errors
///
/// A field Titan cannot take (`encoding_format` other than `float`).
pub fn encode_titan(request: &LlmRequest, text: &str) -> Result<Vec<u8>, String> {
    check(request)?;
    let mut body = Map::new();
    body.insert("inputText".into(), text.into());
    if let Some(dimensions) = request.params.extra.get("dimensions") {
        body.insert("dimensions".into(), dimensions.clone());
    }
    passed(request, &mut body);
    Ok(serde_json::to_vec(&body).expect("a JSON object serializes"))
}

/// Titan's answer: the vector and the tokens it read.
///
/// # Errors
///
/// Why it is not a Titan answer.
pub fn decode_titan(body: &[u8]) -> Result<(Value, u64), String> {
    let mut answer: Map<String, Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let vector = answer
        .remove("embedding")
        .filter(Value::is_array)
        .ok_or("no embedding")?;
    let tokens = answer
        .get("inputTextTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok((vector, tokens))
}

/// Cohere's body for `texts`: `input_type` `search_document` unless the request sets one, and
/// the model's own fields.
///
/// # Errors
///
/// A field Cohere cannot take (`dimensions`, `encoding_format` other than `float`).
pub fn encode_cohere(request: &LlmRequest, texts: &[String]) -> Result<Vec<u8>, String> {
    check(request)?;
    if request.params.extra.contains_key("dimensions") {
        return Err(
            "dimensions: Cohere's embedding models on Bedrock have fixed dimensions".into(),
        );
    }
    let mut body = Map::new();
    body.insert("texts".into(), json!(texts));
    passed(request, &mut body);
    body.entry("input_type")
        .or_insert_with(|| "search_document".into());
    Ok(serde_json::to_vec(&body).expect("a JSON object serializes"))
}

/// Cohere's answer: its vectors, in order (`embeddings` as a list, or as `{"float": [...]}` when
/// embedding types were asked for).
///
/// # Errors
///
/// Why it is not a Cohere answer.
pub fn decode_cohere(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut answer: Map<String, Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match answer.remove("embeddings") {
        Some(Value::Array(vectors)) => Ok(vectors),
        Some(Value::Object(mut types)) => match types.remove("float") {
            Some(Value::Array(vectors)) => Ok(vectors),
            _ => Err("embeddings has no float vectors".into()),
        },
        _ => Err("no embeddings".into()),
    }
}

/// The answer in OpenAI's embeddings shape: `data` with each vector at its index, `model`, and
/// the prompt's `tokens` as the usage.
pub fn answer(model: &str, vectors: Vec<Value>, tokens: u64) -> LlmResponse {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({ "object": "embedding", "index": index, "embedding": embedding }))
        .collect();
    let mut answer = LlmResponse::with_choices(model, Vec::new()).with_usage(Usage::new(tokens, 0));
    let extra = answer.extra.make_mut();
    extra.insert("object".into(), "list".into());
    extra.insert("data".into(), data.into());
    answer
}

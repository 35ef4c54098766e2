//! A completions request: read from a caller's body (the gateway's door), written for an
//! upstream (the client): the caller's own bytes when it came in this API, else built from the
//! request.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tollgate_core::{
    Content, JsonMap, LlmRequest, MaxTokensName, Message, Operation, Quirks, Role,
};

use super::CompletionsBody;
use crate::{
    body::{json_bytes, rewritten},
    refusal::Refusal,
};

/// The part a token-array prompt becomes in its user message.
const TOKENS: &str = "tokens";

/// Reads a completions request body, and keeps it as it came ([`CompletionsBody`], in the
/// request's extensions).
///
/// ```
/// use tollgate_wire::openai::completions::decode_request;
///
/// let body = br#"{"model": "m", "prompt": [[1, 2], [3]], "n": 2, "best_of": 3, "stream": true, "stream_options": {"include_usage": true}}"#;
/// let request = decode_request(bytes::Bytes::from_static(body)).unwrap();
/// assert_eq!(request.messages.len(), 2);
/// assert_eq!(request.params.choices(), 3);
/// assert!(request.meta.stream && request.params.include_usage());
///
/// let refused = decode_request(bytes::Bytes::from_static(br#"{"model": "m", "prompt": "hi", "max_tokens": -1}"#));
/// assert_eq!(refused.unwrap_err().field.as_deref(), Some("max_tokens"));
/// ```
///
/// # Errors
///
/// A [`Refusal`] naming the field at fault: a missing or malformed `model` or `prompt`, a
/// `max_tokens`, `n` or `best_of` that is not a whole number (`n` and `best_of` from 1), another
/// API's name for the bound, a malformed `temperature`, `top_p`, `seed`, `stop` or `stream`, a
/// field given twice.
pub fn decode_request(body: Bytes) -> Result<LlmRequest, Refusal> {
    let (mut object, kept) = crate::body::read_object(&body)?;
    let model = match object.shift_remove("model") {
        Some(Value::String(model)) => model,
        _ => return Err(Refusal::field("model", "required, a string")),
    };
    let prompts = prompts(object.shift_remove("prompt"))?;
    let mut request = LlmRequest::new(model, prompts);
    request.meta.operation = Operation::Completions;
    let params = &mut request.params;
    if let Some(value) = present(&mut object, "max_tokens") {
        params.max_tokens = Some(count(&value, "max_tokens", 0)?);
        params.max_tokens_name = Some(MaxTokensName::MaxTokens);
    }
    // Other APIs' names for the bound would pass on as unknown fields, and bound nothing.
    for field in ["max_completion_tokens", "max_output_tokens"] {
        if present(&mut object, field).is_some() {
            return Err(Refusal::field(
                field,
                "the completions API names its bound max_tokens",
            ));
        }
    }
    if let Some(value) = present(&mut object, "n") {
        params.n = Some(count(&value, "n", 1)?);
    }
    if let Some(value) = present(&mut object, "best_of") {
        params.best_of = Some(count(&value, "best_of", 1)?);
    }
    if let Some(value) = present(&mut object, "temperature") {
        params.temperature = Some(number(&value, "temperature")?);
    }
    if let Some(value) = present(&mut object, "top_p") {
        params.top_p = Some(number(&value, "top_p")?);
    }
    if let Some(value) = present(&mut object, "seed") {
        params.seed = Some(
            value
                .as_i64()
                .ok_or_else(|| Refusal::field("seed", "expected a whole number"))?,
        );
    }
    match present(&mut object, "stop") {
        None => {}
        Some(Value::String(stop)) => params.stop = vec![stop],
        Some(value) => {
            params.stop = serde_json::from_value(value)
                .map_err(|_| Refusal::field("stop", "expected a string or an array of strings"))?;
        }
    }
    match present(&mut object, "stream") {
        None => {}
        Some(Value::Bool(stream)) => request.meta.stream = stream,
        Some(_) => return Err(Refusal::field("stream", "expected true or false")),
    }
    // Everything else (echo, suffix, logprobs, logit_bias, user, stream_options, ...) goes on
    // as it came.
    if !object.is_empty() {
        request.params.extra = object.into();
    }
    request.extensions.insert(CompletionsBody {
        body: body.clone(),
        fields: kept.into(),
    });
    Ok(request)
}

/// A field's value, unless it is absent or `null` (which asks for the API's default).
fn present(object: &mut Map<String, Value>, field: &str) -> Option<Value> {
    object.shift_remove(field).filter(|value| !value.is_null())
}

/// A number that sets what a call may cost, read as core reads every such number: a whole
/// number from `least` up, nothing else.
fn count(value: &Value, field: &str, least: u32) -> Result<u32, Refusal> {
    tollgate_core::whole_number(value, least).map_err(|e| Refusal::field(field, &e.to_string()))
}

fn number(value: &Value, field: &str) -> Result<f64, Refusal> {
    value
        .as_f64()
        .ok_or_else(|| Refusal::field(field, "expected a number"))
}

/// The prompts as user messages: a string, strings, a token array, or token arrays.
fn prompts(prompt: Option<Value>) -> Result<Vec<Message>, Refusal> {
    const EXPECTED: &str =
        "required: a string, an array of strings, an array of tokens or an array of token arrays";
    let refuse = |reason: &str| Refusal::field("prompt", reason);
    let items = match prompt {
        Some(Value::String(text)) => return Ok(vec![Message::user(text)]),
        Some(Value::Array(items)) => items,
        _ => return Err(refuse(EXPECTED)),
    };
    if items.is_empty() {
        return Err(refuse("must not be empty"));
    }
    if items.iter().all(is_token) {
        return Ok(vec![tokens_message(items)]);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(Message::user(text)),
            Value::Array(tokens) if tokens.iter().all(is_token) => Ok(tokens_message(tokens)),
            _ => Err(Refusal::field(
                &format!("prompt[{i}]"),
                "expected a string or an array of tokens, as every other prompt in the array",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|messages| {
            let texts = messages.iter().filter(|m| token_part(m).is_none()).count();
            if texts == 0 || texts == messages.len() {
                Ok(messages)
            } else {
                Err(refuse("mixes strings and token arrays"))
            }
        })
}

fn is_token(value: &Value) -> bool {
    value
        .as_u64()
        .is_some_and(|token| token <= u64::from(u32::MAX))
}

fn tokens_message(tokens: Vec<Value>) -> Message {
    Message::new(
        Role::User,
        Content::Parts(vec![json!({ "type": TOKENS, "tokens": tokens })]),
    )
}

/// The token array of a message that is a token prompt.
fn token_part(message: &Message) -> Option<&Value> {
    match &message.content {
        Some(Content::Parts(parts)) if parts.len() == 1 => {
            let part = &parts[0];
            (part.get("type").and_then(Value::as_str) == Some(TOKENS))
                .then(|| part.get(TOKENS))
                .flatten()
        }
        _ => None,
    }
}

/// The body for an upstream that speaks this API: the caller's own bytes when the call came in
/// it ([`CompletionsBody`]), with `model`, the bound, `stream` and (for a stream) its
/// `stream_options` settled, and a `temperature` a layer set where the caller set none; else the
/// request written whole. A stream asks for its usage (`stream_options.include_usage`) from a
/// server that takes stream options (`quirks`); a whole answer is asked for with no stream
/// options.
///
/// # Errors
///
/// For a request built without a body: what cannot be a prompt (messages mixing text and token
/// prompts, a non-finite number), in words.
pub fn encode_request(
    request: &LlmRequest,
    stream: bool,
    quirks: &Quirks,
) -> Result<Vec<u8>, String> {
    let options = stream_options(request, stream, quirks);
    if let Some(original) = request.extensions.get::<CompletionsBody>() {
        return Ok(passed_through(original, request, stream, options));
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::from(&*request.model));
    body.insert("prompt".into(), prompt_of(&request.messages)?);
    let params = &request.params;
    let typed = serde_json::to_value(params).map_err(|e| e.to_string())?;
    for (field, value) in typed.as_object().into_iter().flatten() {
        // The bound goes under the one name this API has.
        let field = if field == "max_completion_tokens" {
            "max_tokens"
        } else {
            field
        };
        body.insert(field.to_owned(), value.clone());
    }
    body.remove("stream");
    body.remove("stream_options");
    if stream {
        body.insert("stream".into(), true.into());
    }
    if let Some(options) = options {
        body.insert("stream_options".into(), options);
    }
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

/// The `stream_options` to send: the caller's, with `include_usage`, for a stream to a server
/// that takes them; none otherwise.
fn stream_options(request: &LlmRequest, stream: bool, quirks: &Quirks) -> Option<Value> {
    if !(stream && quirks.stream_options) {
        return None;
    }
    let mut options: JsonMap = request
        .params
        .extra
        .get("stream_options")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    options.insert("include_usage".into(), true.into());
    Some(options.into())
}

/// The prompt the messages are: one prompt as itself, several as an array.
fn prompt_of(messages: &[Message]) -> Result<Value, String> {
    let mut prompts: Vec<Value> = messages
        .iter()
        .map(|message| match token_part(message) {
            Some(tokens) => tokens.clone(),
            None => Value::String(message.texts().collect()),
        })
        .collect();
    let tokens = prompts.iter().filter(|p| p.is_array()).count();
    if tokens != 0 && tokens != prompts.len() {
        return Err("the messages mix text and token prompts".into());
    }
    Ok(match prompts.len() {
        1 => prompts.remove(0),
        _ => Value::Array(prompts),
    })
}

/// The caller's own body, byte for byte, but for what the stack settled.
fn passed_through(
    original: &CompletionsBody,
    request: &LlmRequest,
    stream: bool,
    options: Option<Value>,
) -> Vec<u8> {
    let has = |name: &str| original.fields.iter().any(|(field, _)| field == name);
    let params = &request.params;
    let mut replaced = Vec::new();
    for (name, range) in original.fields.iter() {
        let value = match name.as_str() {
            "model" => json_bytes(&*request.model),
            "max_tokens" => match params.max_tokens {
                Some(bound) => json_bytes(&bound),
                None => continue,
            },
            "stream" => json_bytes(&stream),
            "stream_options" => options
                .as_ref()
                .map_or_else(|| b"null".to_vec(), json_bytes),
            _ => continue,
        };
        replaced.push((range.clone(), value));
    }
    let mut added = Vec::new();
    if let (false, Some(bound)) = (has("max_tokens"), params.max_tokens) {
        added.push(("max_tokens", json_bytes(&bound)));
    }
    if let (false, Some(temperature)) = (has("temperature"), params.temperature) {
        added.push(("temperature", json_bytes(&temperature)));
    }
    if stream && !has("stream") {
        added.push(("stream", b"true".to_vec()));
    }
    if let (false, Some(options)) = (has("stream_options"), &options) {
        added.push(("stream_options", json_bytes(options)));
    }
    rewritten(&original.body, replaced, &added)
}

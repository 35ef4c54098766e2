//! The body an upstream that serves the Responses API is sent: the caller's own, as it came,
//! but for what the stack settled.

use tollgate_core::LlmRequest;

use super::ResponsesBody;

/// The body for `request` to an upstream that serves the Responses API: the caller's own body
/// byte for byte, but for the values of `model`, the output bound the stack settled
/// (`max_output_tokens`, added when the caller set none and the stack did), a `temperature` its
/// role set where the caller set none, and `stream`; after [`continue_from`](super::continue_from),
/// `input` with the history first and `previous_response_id` cleared (`null`).
///
/// ```
/// use tollgate_wire::openai::responses::{decode_request, encode_request};
///
/// let body = br#"{"model": "alias", "input": "Hi", "include": ["reasoning.encrypted_content"]}"#;
/// let mut request = decode_request(bytes::Bytes::from_static(body), &Default::default()).unwrap();
/// request.model = "gpt-5".into();
/// request.params.max_tokens = Some(512);
/// let sent = encode_request(&request, true).unwrap();
/// assert_eq!(sent, br#"{"model": "gpt-5", "input": "Hi", "include": ["reasoning.encrypted_content"],"max_output_tokens":512,"stream":true}"#);
/// ```
///
/// # Errors
///
/// When the call did not come in the Responses API (it has no [`ResponsesBody`]): it goes
/// through chat completions instead.
pub fn encode_request(request: &LlmRequest, stream: bool) -> Result<Vec<u8>, String> {
    let Some(original) = request.extensions.get::<ResponsesBody>() else {
        return Err("the call did not come in the Responses API".into());
    };
    let body = &original.body[..];
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut settled: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    let has = |name: &str| original.fields.iter().any(|(field, _)| field == name);
    let max = request.params.max_tokens;
    for (name, range) in original.fields.iter() {
        let value = match name.as_str() {
            "model" => json(&*request.model),
            "max_output_tokens" => match max {
                Some(max) => json(&max),
                None => continue,
            },
            "stream" => json(&stream),
            // A role's temperature where the caller's was null.
            "temperature" if &body[range.clone()] == b"null" => match request.params.temperature {
                Some(temperature) => json(&temperature),
                None => continue,
            },
            "input" if original.history.is_some() => json(&original.input_items()),
            "previous_response_id" if original.history.is_some() => b"null".to_vec(),
            _ => continue,
        };
        settled.push((range.clone(), value));
    }
    settled.sort_by_key(|(range, _)| range.start);
    let mut at = 0;
    for (range, value) in settled {
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(&value);
        at = range.end;
    }
    // What the caller did not write goes in before the object's closing brace.
    let end = body.iter().rposition(|b| *b == b'}').unwrap_or(body.len());
    out.extend_from_slice(&body[at..end]);
    let mut add = |name: &str, value: &[u8]| {
        out.push(b',');
        out.extend_from_slice(&json(name));
        out.push(b':');
        out.extend_from_slice(value);
    };
    if original.history.is_some() && !has("input") {
        add("input", &json(&original.input_items()));
    }
    if let (false, Some(max)) = (has("max_output_tokens"), max) {
        add("max_output_tokens", &json(&max));
    }
    if let (false, Some(temperature)) = (has("temperature"), request.params.temperature) {
        add("temperature", &json(&temperature));
    }
    if stream && !has("stream") {
        add("stream", b"true");
    }
    out.extend_from_slice(&body[end..]);
    Ok(out)
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}

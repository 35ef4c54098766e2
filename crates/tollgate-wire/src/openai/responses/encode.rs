//! The body an upstream that serves the Responses API is sent: the caller's own, as it came,
//! but for what the stack settled.

use tollgate_core::LlmRequest;

use super::ResponsesBody;
use crate::body::{json_bytes, rewritten};

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
    let has = |name: &str| original.fields.iter().any(|(field, _)| field == name);
    let max = request.params.max_tokens;
    let continued = original.history.is_some();
    let mut replaced = Vec::new();
    for (name, range) in original.fields.iter() {
        let value = match name.as_str() {
            "model" => json_bytes(&*request.model),
            "max_output_tokens" => match max {
                Some(max) => json_bytes(&max),
                None => continue,
            },
            "stream" => json_bytes(&stream),
            // A role's temperature where the caller's was null.
            "temperature" if &body[range.clone()] == b"null" => match request.params.temperature {
                Some(temperature) => json_bytes(&temperature),
                None => continue,
            },
            "input" if continued => json_bytes(&original.input_items()),
            "previous_response_id" if continued => b"null".to_vec(),
            _ => continue,
        };
        replaced.push((range.clone(), value));
    }
    let mut added = Vec::new();
    if continued && !has("input") {
        added.push(("input", json_bytes(&original.input_items())));
    }
    if let (false, Some(max)) = (has("max_output_tokens"), max) {
        added.push(("max_output_tokens", json_bytes(&max)));
    }
    if let (false, Some(temperature)) = (has("temperature"), request.params.temperature) {
        added.push(("temperature", json_bytes(&temperature)));
    }
    if stream && !has("stream") {
        added.push(("stream", b"true".to_vec()));
    }
    Ok(rewritten(body, replaced, &added))
}

//! A chat-completions request: read from a caller's body (the gateway's door), written for an
//! upstream (the client).

use serde_json::Value;
use tollgate_core::{LlmRequest, MaxTokensName, Quirks};

use crate::{
    anthropic::messages::MessagesBody,
    openai::responses::{self, ResponsesBody},
    refusal::Refusal,
};

/// Reads a chat-completions request body, naming the field at fault when it does not parse.
///
/// `stream` becomes [`RequestMeta::stream`](tollgate_core::RequestMeta::stream) and leaves the
/// parameters (each client writes it itself); every other field is kept, in order.
///
/// ```
/// use tollgate_wire::openai::chat;
///
/// let request = chat::decode_request(br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "n": 2}"#).unwrap();
/// assert!(request.meta.stream);
/// assert_eq!(request.params.n, Some(2));
///
/// let refused = chat::decode_request(br#"{"model": "m", "messages": [], "n": 1.5}"#).unwrap_err();
/// assert_eq!(refused.field.as_deref(), Some("n"));
/// ```
///
/// # Errors
///
/// A [`Refusal`] naming the field at fault, when there is one.
pub fn decode_request(body: &[u8]) -> Result<LlmRequest, Refusal> {
    // Read plainly first: tracking the path costs on every field, and is only needed to name
    // the field at fault in a body that does not parse, read again for that.
    let mut request: LlmRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => return Err(refusal(body)),
    };
    if request.messages.is_empty() {
        return Err(Refusal::field("messages", "must not be empty"));
    }
    // The stack asks for a stream by `meta.stream`; each client writes `stream` itself.
    if let Some(stream) = request.params.extra.get("stream") {
        match stream {
            Value::Bool(stream) => request.meta.stream = *stream,
            Value::Null => {}
            _ => return Err(Refusal::field("stream", "expected true or false")),
        }
        request.params.extra.make_mut().remove("stream");
    }
    Ok(request)
}

/// Why `body` is not a chat request, naming the field at fault when there is one.
fn refusal(body: &[u8]) -> Refusal {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let read: Result<LlmRequest, _> = serde_path_to_error::deserialize(&mut reader);
    let error = match read {
        Ok(_) => {
            return match reader.end() {
                Err(e) => Refusal::json(format!(
                    "the request body has more after its JSON object: {e}"
                )),
                // Unreachable while both reads agree; said plainly if they ever do not.
                Ok(()) => Refusal::json("the request body is not a valid chat request"),
            };
        }
        Err(error) => error,
    };
    let path = error.path().to_string();
    let error = error.into_inner();
    // The top-level parameters are read as one flattened map, whose errors name their field
    // in the message (`max_tokens: expected a whole number ...`).
    let field = if path == "." {
        named_field(&error.to_string())
    } else {
        Some(path)
    };
    Refusal::json(format!(
        "the request body is not a valid chat request: {error}"
    ))
    .at(field)
}

/// The field an error message begins with (`max_tokens: ...`), if it begins with one.
fn named_field(message: &str) -> Option<String> {
    let (field, _) = message.split_once(": ")?;
    let plain = !field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    plain.then(|| field.to_owned())
}

/// The fields of an Anthropic Messages request that mean nothing to a chat-completions server,
/// which refuses arguments it does not know: left out when a call from the Messages door is
/// translated (and logged at debug level).
pub const MESSAGES_ONLY: [&str; 7] = [
    "top_k",
    "thinking",
    "metadata",
    "cache_control",
    "container",
    "mcp_servers",
    "service_tier",
];

/// The body for an upstream: `request` in the chat-completions shape, its bound (when a layer
/// set it) under `name`, and for a stream, `stream: true` with `stream_options.include_usage`
/// (the limiter and the cost report settle on the usage chunk; the caller's other stream options
/// stay). A whole answer is asked for without `stream` and `stream_options`.
///
/// A call from the Messages door leaves out what only that API means
/// ([`MESSAGES_ONLY`], and `cache_control` marks on messages, parts and tools); one from the
/// Responses door, every field with no chat-completions form
/// ([`responses::untranslated`](crate::openai::responses::untranslated)).
///
/// # Errors
///
/// When the request does not serialize (a non-finite number in it).
pub fn encode_request(
    request: &LlmRequest,
    name: MaxTokensName,
    stream: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    encode_request_with(request, name, stream, &Quirks::OPENAI)
}

/// As [`encode_request`], for a server that differs from OpenAI as `quirks` say: no
/// `stream_options` for one that refuses them, `seed` under its name, messages without their
/// `name`, `tool_choice: "required"` as it writes it.
///
/// ```
/// use tollgate_core::{LlmRequest, MaxTokensName, Message, Preset};
/// use tollgate_wire::openai::chat;
///
/// let mut request = LlmRequest::new("mistral-large", vec![Message::user("hi")]);
/// request.params.seed = Some(7);
/// let body = chat::encode_request_with(&request, MaxTokensName::MaxTokens, true, &Preset::Mistral.quirks()).unwrap();
/// let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(body["random_seed"], 7);
/// assert!(body.get("seed").is_none() && body.get("stream_options").is_none());
/// ```
///
/// # Errors
///
/// When the request does not serialize (a non-finite number in it).
pub fn encode_request_with(
    request: &LlmRequest,
    name: MaxTokensName,
    stream: bool,
    quirks: &Quirks,
) -> Result<Vec<u8>, serde_json::Error> {
    let from_messages = request.extensions.get::<MessagesBody>().is_some();
    let from_responses = request.extensions.get::<ResponsesBody>().is_some();
    // No chat-completions server takes the Responses API's name for the bound.
    let name = match name {
        MaxTokensName::MaxOutputTokens => MaxTokensName::MaxTokens,
        name => name,
    };
    // A bound a layer set is written under the server's name; the caller's, under its own (but
    // for the Responses API's name, which no chat-completions server takes).
    let params = &request.params;
    let caller_named = params
        .max_tokens_name
        .filter(|named| *named != MaxTokensName::MaxOutputTokens);
    let written_as = params.max_tokens_name.unwrap_or(MaxTokensName::MaxTokens);
    let rename = params.max_tokens.is_some()
        && caller_named.is_none()
        && (name != MaxTokensName::MaxTokens || written_as != MaxTokensName::MaxTokens);
    let plain = !from_messages
        && !from_responses
        && quirks.is_openai()
        && !rename
        && !stream
        && !params.extra.contains_key("stream")
        && !params.extra.contains_key("stream_options");
    if plain {
        return serde_json::to_vec(request);
    }
    let mut body = serde_json::to_value(request)?;
    if let Some(fields) = body.as_object_mut() {
        if let Some(max) = rename
            .then(|| fields.remove(written_as.names()[0]))
            .flatten()
        {
            for field in name.names() {
                fields.insert((*field).to_owned(), max.clone());
            }
        }
        let options = fields.remove("stream_options");
        fields.remove("stream");
        if stream {
            fields.insert("stream".into(), true.into());
            if quirks.stream_options {
                let mut options = options
                    .and_then(|o| o.as_object().cloned())
                    .unwrap_or_default();
                options.insert("include_usage".into(), true.into());
                fields.insert("stream_options".into(), options.into());
            }
        }
        if from_messages {
            drop_messages_only(fields);
        }
        if from_responses {
            responses::drop_untranslated(fields);
        }
        apply(quirks, fields);
    }
    serde_json::to_vec(&body)
}

/// Writes `fields` as a server with `quirks` takes them.
fn apply(quirks: &Quirks, fields: &mut serde_json::Map<String, Value>) {
    if quirks.seed_field != "seed"
        && let Some(seed) = fields.remove("seed")
    {
        fields.insert(quirks.seed_field.to_owned(), seed);
    }
    if quirks.drops_message_names {
        let messages = fields.get_mut("messages").and_then(Value::as_array_mut);
        for message in messages.into_iter().flatten() {
            if let Some(message) = message.as_object_mut() {
                message.remove("name");
            }
        }
    }
    if quirks.required_tool_choice != "required"
        && fields.get("tool_choice").and_then(Value::as_str) == Some("required")
    {
        fields.insert("tool_choice".into(), quirks.required_tool_choice.into());
    }
}

/// Leaves out what only the Messages API means, saying so at debug level.
fn drop_messages_only(fields: &mut serde_json::Map<String, Value>) {
    for field in MESSAGES_ONLY {
        if fields.remove(field).is_some() {
            tracing::debug!(
                field,
                "a Messages field with no chat-completions meaning is left out"
            );
        }
    }
    let mut marks = 0;
    let mut unmark = |object: &mut Value| {
        if let Some(object) = object.as_object_mut() {
            marks += usize::from(object.remove("cache_control").is_some());
        }
    };
    for message in fields
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        unmark(message);
        if let Some(parts) = message.get_mut("content").and_then(Value::as_array_mut) {
            parts.iter_mut().for_each(&mut unmark);
        }
    }
    for tool in fields
        .get_mut("tools")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        unmark(tool);
    }
    if marks > 0 {
        tracing::debug!(
            marks,
            "cache_control marks with no chat-completions meaning are left out"
        );
    }
}

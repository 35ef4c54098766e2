//! `POST /v1/chat/completions`: the OpenAI front door, whole answers and streams.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use serde_json::Value;
use tollgate::{
    JsonMap, LlmRequest, LlmResponse,
    stream::{ChunkWriter, StreamEvent},
};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    sse::{self, EventWriter},
};

/// The OpenAI front door.
pub(crate) struct Chat;

impl FrontDoor for Chat {
    const DIALECT: Dialect = Dialect::OpenAi;

    fn parse(body: &[u8]) -> Result<LlmRequest, ApiError> {
        parse(body)
    }

    fn answer(mut answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response {
        match call::stream_of(&mut answer, asked.stream) {
            Some(stream) => sse::response(stream, OpenAiEvents::new(asked.usage, meta)),
            None => {
                fill_defaults(&mut answer, meta);
                let body = serde_json::to_vec(&answer).expect("an answer serializes");
                call::json_response(body)
            }
        }
    }
}

/// Reads an OpenAI chat request, naming the field at fault when it does not parse.
fn parse(body: &[u8]) -> Result<LlmRequest, ApiError> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let mut request: LlmRequest = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        let error = e.into_inner();
        let mut api = ApiError::invalid(format!(
            "the request body is not a valid chat request: {error}"
        ))
        .with_code("invalid_json");
        // The top-level parameters are read as one flattened map, whose errors name their field
        // in the message (`max_tokens: expected a whole number ...`).
        let field = (path == ".")
            .then(|| named_field(&error.to_string()))
            .flatten();
        match field {
            Some(field) => api = api.with_param(field),
            None if path != "." => api = api.with_param(path),
            None => {}
        }
        api
    })?;
    reader.end().map_err(|e| {
        ApiError::invalid(format!(
            "the request body has more after its JSON object: {e}"
        ))
        .with_code("invalid_json")
    })?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages: must not be empty").with_param("messages"));
    }
    // The stack asks for a stream by `meta.stream`; each provider writes `stream` itself.
    if let Some(stream) = request.params.extra.get("stream") {
        match stream {
            Value::Bool(stream) => request.meta.stream = *stream,
            Value::Null => {}
            _ => {
                return Err(
                    ApiError::invalid("stream: expected true or false").with_param("stream")
                );
            }
        }
        request.params.extra.make_mut().remove("stream");
    }
    Ok(request)
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

/// The fields OpenAI's clients expect in every answer that `has` says the answer lacks (an
/// upstream or a cached answer that left them out).
fn defaults(meta: &CallMeta, object: &str, has: impl Fn(&str) -> bool) -> JsonMap {
    let mut fields = JsonMap::new();
    if !has("id") {
        let id = meta.id.to_str().unwrap_or("request");
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

fn fill_defaults(answer: &mut LlmResponse, meta: &CallMeta) {
    let missing = defaults(meta, "chat.completion", |field| {
        answer.extra.contains_key(field)
    });
    if !missing.is_empty() {
        answer.extra.make_mut().extend(missing);
    }
}

/// A stream's events as OpenAI's `data:` lines, ending with `data: [DONE]`, or with an error
/// event (`data: {"error": ...}`, which OpenAI's clients raise) when the stream fails midway.
struct OpenAiEvents {
    writer: ChunkWriter,
    /// Given to the writer before the first piece, after the provider's own fields.
    defaults: Option<JsonMap>,
}

impl OpenAiEvents {
    fn new(include_usage: bool, meta: &CallMeta) -> Self {
        Self {
            writer: ChunkWriter::new(include_usage),
            defaults: Some(defaults(meta, "chat.completion.chunk", |_| false)),
        }
    }
}

impl EventWriter for OpenAiEvents {
    fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if !matches!(event, StreamEvent::Model(_) | StreamEvent::Meta(_)) {
            if let Some(defaults) = self.defaults.take() {
                // The writer keeps the first value of each field, so the provider's win.
                self.writer.chunks(&StreamEvent::Meta(defaults));
            }
        }
        for chunk in self.writer.chunks(event) {
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut *out, &chunk).expect("a chunk serializes");
            out.extend_from_slice(b"\n\n");
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn fail(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut *out, &error.stream_event(Dialect::OpenAi))
            .expect("an error serializes");
        out.extend_from_slice(b"\n\n");
    }
}

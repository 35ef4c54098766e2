//! `POST /v1/responses`: OpenAI's Responses API front door, whole answers and typed event
//! streams; and `GET` / `DELETE /v1/responses/{id}` for the answers it stored.
//!
//! The wire format is `tollgate_wire::openai::responses`': a call is read into the chat shape
//! the stack speaks and kept as it came, so a deployment that serves the Responses API itself
//! gets it as it came and its answer comes back as it went (pass-through), and any other
//! provider is asked through chat completions and its answer written as a Response
//! (`resp_` and 32 hex digits, made here).
//!
//! With a `database` section, an answer is kept (`store`, true unless the call says `false`):
//! the Response object as the caller got it, whole or the final object of a stream, and the
//! input items it answered, under the key that asked. A call naming it in
//! `previous_response_id` continues that conversation: the history goes before its input, to
//! any provider, since the gateway holds it. Another key's response is not found (404), as
//! one that never was.

use std::{sync::Arc, time::SystemTime};

use axum::{
    extract::{Path, Request, State},
    response::Response,
};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tollgate::{LlmRequest, LlmResponse, stream::StreamEvent};
use tollgate_control::StoredResponse;
use tollgate_wire::openai::responses::{self, ResponseEvents, ResponsesAnswer, ResponsesBody};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    keys::VirtualKey,
    sse::{self, EventWriter},
    state::Gateway,
    stored_responses::ResponseStore,
};

/// The Responses API's front door.
pub(crate) struct Responses;

/// What a call keeps from its request for its answer.
#[derive(Clone)]
struct Keep {
    /// The body as it came, with the history it continues (what the answer echoes, and the
    /// input items a stored response keeps).
    asked: ResponsesBody,
    /// Where its answer is stored, and under whose name: `None` for `store: false`, or a
    /// gateway without a `database` section.
    store: Option<(Arc<ResponseStore>, String)>,
}

impl FrontDoor for Responses {
    const DIALECT: Dialect = Dialect::OpenAi;

    fn parse(body: Bytes, headers: &HeaderMap) -> Result<LlmRequest, ApiError> {
        responses::decode_request(body, headers).map_err(ApiError::refused)
    }

    async fn prepare(
        gateway: &Gateway,
        key: &VirtualKey,
        request: &mut LlmRequest,
        meta: &mut CallMeta,
    ) -> Result<(), ApiError> {
        let owner = owner(key);
        let store = gateway.response_store();
        let previous = request
            .extensions
            .get::<ResponsesBody>()
            .ok_or_else(|| inside("the Responses body was not kept"))?
            .previous_response_id()
            .map(str::to_owned);
        if let Some(previous) = previous {
            let Some(store) = store else {
                return Err(ApiError::invalid(
                    "previous_response_id needs the gateway's `database` section: without one, \
                     no response is stored to continue",
                )
                .with_param(PREVIOUS));
            };
            let found = store
                .get(&previous, &owner)
                .await
                .map_err(|error| ApiError::from_llm(&error))?;
            let Some(found) = found else {
                return Err(not_found(&previous).with_param(PREVIOUS));
            };
            responses::continue_from(request, history(&found)?).map_err(ApiError::refused)?;
        }
        let asked = request
            .extensions
            .get::<ResponsesBody>()
            .cloned()
            .ok_or_else(|| inside("the Responses body was not kept"))?;
        let store = store
            .filter(|_| asked.store())
            .map(|store| (store.clone(), owner));
        meta.carry.insert(Keep { asked, store });
        Ok(())
    }

    fn answer(mut answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response {
        let Some(keep) = meta.carry.get::<Keep>().cloned() else {
            return inside("the call's Responses body was not kept").into_response(Self::DIALECT);
        };
        if let Some(stream) = call::stream_of(&mut answer, asked.stream) {
            let events = match new_id() {
                Ok(id) => ResponseEvents::new(&id, &keep.asked),
                Err(error) => return error.into_response(Self::DIALECT),
            };
            let events = Events {
                events,
                keep,
                kept: false,
            };
            return sse::response(stream, events);
        }
        // An upstream that serves this API: its answer as it came, under its own id.
        let body = match answer.extensions.remove::<ResponsesAnswer>() {
            Some(ResponsesAnswer(body)) => body,
            None => match new_id() {
                Ok(id) => Bytes::from(responses::encode_answer(&answer, &id, &keep.asked)),
                Err(error) => return error.into_response(Self::DIALECT),
            },
        };
        keep.keep(&body);
        call::json_response(body)
    }
}

/// The field that names the response a call continues.
const PREVIOUS: &str = "previous_response_id";

impl Keep {
    /// Stores `response` (a Response object's JSON), when the call asked and the gateway can.
    fn keep(&self, response: &[u8]) {
        let Some((store, owner)) = &self.store else {
            return;
        };
        #[derive(serde::Deserialize)]
        struct Named {
            id: String,
        }
        let (Ok(text), Ok(Named { id })) = (
            std::str::from_utf8(response),
            serde_json::from_slice::<Named>(response),
        ) else {
            tracing::warn!(target: "tollgate::responses", "an answer with no id was not stored");
            return;
        };
        store.put(StoredResponse::new(
            id,
            owner.clone(),
            SystemTime::now(),
            text,
            self.asked.input_items(),
        ));
    }
}

/// A stream in the Responses API's events; its final Response stored as soon as it is written,
/// before the caller reads it (a caller may continue from it at once, or leave there).
struct Events {
    events: ResponseEvents,
    keep: Keep,
    kept: bool,
}

impl Events {
    fn keep_once_completed(&mut self) {
        if !self.kept
            && let Some(response) = self.events.completed()
        {
            self.kept = true;
            self.keep.keep(response);
        }
    }
}

impl EventWriter for Events {
    fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        self.events.write(event, out);
        self.keep_once_completed();
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.events.end(out);
        self.keep_once_completed();
    }

    fn fail(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        self.events.fail(&error.stream_event(Dialect::OpenAi), out);
    }
}

/// `GET /v1/responses/{id}`: a response the caller's key stored, as it was answered.
pub(crate) async fn read(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    match stored(&gateway, &id, request.headers()).await {
        Ok((store, owner)) => match store.get(&id, &owner).await {
            Ok(Some(found)) => call::json_response(found.response.clone()),
            Ok(None) => not_found(&id).into_response(Dialect::OpenAi),
            Err(error) => ApiError::from_llm(&error).into_response(Dialect::OpenAi),
        },
        Err(error) => error.into_response(Dialect::OpenAi),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a response the caller's key stored.
pub(crate) async fn delete(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    match stored(&gateway, &id, request.headers()).await {
        Ok((store, owner)) => match store.delete(&id, &owner).await {
            Ok(true) => call::json_response(
                json!({"id": id, "object": "response.deleted", "deleted": true}).to_string(),
            ),
            Ok(false) => not_found(&id).into_response(Dialect::OpenAi),
            Err(error) => ApiError::from_llm(&error).into_response(Dialect::OpenAi),
        },
        Err(error) => error.into_response(Dialect::OpenAi),
    }
}

/// The store and the caller's name in it, for a request that reads or deletes `id`: a 401 for
/// a key the gateway does not know, a 404 where nothing is stored.
async fn stored(
    gateway: &Gateway,
    id: &str,
    headers: &HeaderMap,
) -> Result<(Arc<ResponseStore>, String), ApiError> {
    let live = gateway.live();
    let key = call::presented_key(headers)
        .and_then(|presented| gateway.find_key(&live, presented))
        .ok_or_else(ApiError::unauthorized)?;
    let store = gateway.response_store().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "{}: the gateway stores responses only with a `database` section",
                not_found_message(id)
            ),
        )
    })?;
    Ok((store.clone(), owner(&key)))
}

/// Whose a stored response is: the key, under its tenant (as an idempotent answer's is).
fn owner(key: &VirtualKey) -> String {
    format!("{}\n{}", key.tenant, key.name)
}

/// What a call continuing `stored` puts before its own input: the input items it answered,
/// then its output.
fn history(stored: &StoredResponse) -> Result<Vec<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Output {
        #[serde(default)]
        output: Option<Vec<Value>>,
    }
    let Output { output } = serde_json::from_str(&stored.response)
        .map_err(|_| inside("a stored response cannot be read"))?;
    let mut items = stored.input_items.clone();
    items.extend(output.into_iter().flatten());
    Ok(items)
}

/// A new response id: `resp_` and 32 random hex digits; a 500 when the system gives no
/// randomness (an id made without it could replace another stored response).
fn new_id() -> Result<String, ApiError> {
    use std::fmt::Write as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| inside("the system gave no randomness for an id"))?;
    let mut id = String::with_capacity(37);
    id.push_str("resp_");
    for byte in bytes {
        let _ = write!(id, "{byte:02x}");
    }
    Ok(id)
}

/// OpenAI's 404 for a response that is not found (or is another key's).
fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        not_found_message(id),
    )
}

/// OpenAI's words, with the id only when it is one (a path may carry anything).
fn not_found_message(id: &str) -> String {
    let sane = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if sane {
        format!("Response with id '{id}' not found.")
    } else {
        "No response with that id was found.".to_owned()
    }
}

/// A failure of the gateway's own.
fn inside(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
}

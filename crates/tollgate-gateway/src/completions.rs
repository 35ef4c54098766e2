//! `POST /v1/completions`: OpenAI's legacy text completions, through the same stack as chat
//! (keys, limits, budgets, cache, router, retries, breaker, call log, cost report). The wire
//! format is `tollgate_wire::openai::completions`': the caller's body passed to an
//! OpenAI-compatible upstream as it came, and its answer passed back as it came, whole or
//! streamed; an answer from elsewhere (a cache hit, a simulated provider) written as a
//! `text_completion`.

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate::{LlmRequest, LlmResponse, ProviderKind, stream::StreamEvent};
use tollgate_wire::openai::completions::{self, CompletionAnswer, CompletionEvents};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    embeddings,
    error::{ApiError, Dialect},
    sse::{self, EventWriter},
    state::Live,
};

/// The legacy completions front door.
pub(crate) struct Completions;

/// The providers that serve text completions: OpenAI-compatible servers (Azure's deployments
/// among them), and the simulated provider, which answers them as it answers a chat.
const SERVING: [ProviderKind; 3] = [
    ProviderKind::Openai,
    ProviderKind::Azure,
    ProviderKind::Simulated,
];

impl FrontDoor for Completions {
    const DIALECT: Dialect = Dialect::OpenAi;

    fn parse(body: Bytes, _: &HeaderMap) -> Result<LlmRequest, ApiError> {
        completions::decode_request(body).map_err(ApiError::refused)
    }

    /// The gateway's bounds, and a provider that serves the API: the one the request names, or
    /// every one its role may route to.
    fn check(live: &Live, request: &LlmRequest) -> Result<(), ApiError> {
        call::check_bounds(live, request)?;
        embeddings::served_by(live, request, &SERVING, "legacy text completions")
    }

    fn answer(mut answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response {
        let id = meta.id.to_str().unwrap_or("request");
        if let Some(stream) = call::stream_of(&mut answer, asked.stream) {
            return sse::response(stream, CompletionEvents::new(id, asked.usage));
        }
        // An upstream that speaks this API: its answer as it came.
        if let Some(body) = CompletionAnswer::of(&answer) {
            return call::json_response(body.clone());
        }
        call::json_response(completions::encode_answer(&answer, id))
    }
}

impl EventWriter for CompletionEvents {
    fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        CompletionEvents::write(self, event, out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        CompletionEvents::end(self, out);
    }

    fn fail(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        CompletionEvents::fail(self, &error.stream_event(Dialect::OpenAi), out);
    }
}

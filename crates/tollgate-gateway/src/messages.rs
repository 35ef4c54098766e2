//! `POST /v1/messages`: the Anthropic front door. The wire format is
//! `tollgate_wire::anthropic::messages`': a request read into the OpenAI shape the stack speaks
//! and kept as it came, for an upstream that speaks this API too; the answer written back as
//! Anthropic writes it, whole or streamed, or passed on as it came.

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate::{LlmRequest, LlmResponse, stream::StreamEvent};
use tollgate_wire::anthropic::messages::{self, MessageEvents, MessagesAnswer};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    sse::{self, EventWriter},
};

/// The Anthropic front door.
pub(crate) struct Messages;

impl FrontDoor for Messages {
    const DIALECT: Dialect = Dialect::Anthropic;

    fn parse(body: Bytes, headers: &HeaderMap) -> Result<LlmRequest, ApiError> {
        messages::decode_request(body, headers).map_err(ApiError::refused)
    }

    fn answer(mut answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response {
        let id = meta.id.to_str().unwrap_or("request");
        if let Some(stream) = call::stream_of(&mut answer, asked.stream) {
            return sse::response(stream, MessageEvents::new(format!("msg_{id}")));
        }
        // An upstream that speaks this API: its answer as it came.
        if let Some(MessagesAnswer(body)) = answer.extensions.remove::<MessagesAnswer>() {
            return call::json_response(body);
        }
        let message = messages::encode_answer(&answer, id);
        call::json_response(serde_json::to_vec(&message).expect("a message serializes"))
    }
}

impl EventWriter for MessageEvents {
    fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        MessageEvents::write(self, event, out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        MessageEvents::end(self, out);
    }

    fn fail(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        MessageEvents::fail(self, &error.stream_event(Dialect::Anthropic), out);
    }
}

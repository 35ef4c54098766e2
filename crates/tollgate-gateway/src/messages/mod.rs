//! `POST /v1/messages`: the Anthropic front door. A Messages request is read into the OpenAI shape
//! the stack speaks, served by whichever provider its `model` names, and the answer written back
//! as Anthropic writes it, whole or streamed.

mod request;
mod response;

use axum::response::Response;
use tollgate::{LlmRequest, LlmResponse, stream::StreamEvent};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    sse::{self, EventWriter},
};

use response::{MessageEvents, event_line};

/// The Anthropic front door.
pub(crate) struct Messages;

impl FrontDoor for Messages {
    const DIALECT: Dialect = Dialect::Anthropic;

    fn parse(body: &[u8]) -> Result<LlmRequest, ApiError> {
        request::parse(body)
    }

    fn answer(mut answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response {
        let id = meta.id.to_str().unwrap_or("request");
        match call::stream_of(&mut answer, asked.stream) {
            Some(stream) => sse::response(stream, MessageEvents::new(format!("msg_{id}"))),
            None => {
                let message = response::message(&answer, id);
                call::json_response(serde_json::to_vec(&message).expect("a message serializes"))
            }
        }
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
        event_line(out, "error", &error.stream_event(Dialect::Anthropic));
    }
}

//! `POST /v1/chat/completions`: the OpenAI front door, whole answers and streams. The wire
//! format is `tollgate_wire::openai::chat`'s; this door adds the gateway's own: the call's id,
//! its errors, its headers.

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tollgate::{LlmRequest, LlmResponse, stream::StreamEvent};
use tollgate_wire::openai::chat::{self, ChunkEvents};

use crate::{
    call::{self, Asked, CallMeta, FrontDoor},
    error::{ApiError, Dialect},
    sse::{self, EventWriter},
};

/// The OpenAI front door.
pub(crate) struct Chat;

impl FrontDoor for Chat {
    const DIALECT: Dialect = Dialect::OpenAi;

    fn parse(body: Bytes, _: &HeaderMap) -> Result<LlmRequest, ApiError> {
        chat::decode_request(&body).map_err(ApiError::refused)
    }

    fn answer(mut answer: LlmResponse, meta: &CallMeta, asked: Asked) -> Response {
        let id = meta.id.to_str().unwrap_or("request");
        match call::stream_of(&mut answer, asked.stream) {
            Some(stream) => sse::response(stream, ChunkEvents::new(id, asked.usage)),
            None => call::json_response(chat::encode_answer(answer, id)),
        }
    }
}

impl EventWriter for ChunkEvents {
    fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        ChunkEvents::write(self, event, out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        ChunkEvents::end(self, out);
    }

    fn fail(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        ChunkEvents::fail(self, &error.stream_event(Dialect::OpenAi), out);
    }
}

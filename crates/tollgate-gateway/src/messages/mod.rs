//! `POST /v1/messages`: the Anthropic front door. A Messages request is read into the OpenAI shape
//! the stack speaks, served by whichever provider its `model` names, and the answer written back
//! as Anthropic writes it, whole or streamed.

mod request;
mod response;

use axum::{
    extract::{Request, State},
    response::Response,
};
use tollgate::stream::StreamEvent;
use tower::ServiceExt;

use crate::{
    call::{self, Accepted},
    error::{ApiError, Dialect},
    sse::{self, EventWriter},
    state::Gateway,
};

pub(crate) use request::parse;
use response::{MessageEvents, event_line};

/// Answers a Messages call.
pub(crate) async fn handle(State(gateway): State<Gateway>, request: Request) -> Response {
    let Accepted {
        live,
        key,
        body,
        meta,
    } = match call::accept(&gateway, request, Dialect::Anthropic).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let mut request = match parse(&body) {
        Ok(request) => request,
        Err(error) => return meta.fail(error),
    };
    if let Err(error) =
        call::route(&live, &key, &mut request).and_then(|()| call::check_bounds(&live, &request))
    {
        return meta.fail(error);
    }
    meta.tag(&mut request);
    let streaming = request.meta.stream;
    let id = meta.id.to_str().unwrap_or("request").to_owned();
    match live.stack.clone().oneshot(request).await {
        Ok(mut answer) => {
            let cache = answer.headers.get("x-cache").cloned();
            let cache = cache
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .or(Some("MISS"));
            match call::stream_of(&mut answer, streaming) {
                Some(stream) => {
                    let writer = MessageEvents::new(format!("msg_{id}"));
                    meta.finish(sse::response(stream, writer), cache)
                }
                None => {
                    let message = response::message(&answer, &id);
                    let body = serde_json::to_vec(&message).expect("a message serializes");
                    meta.finish(call::json_response(body), cache)
                }
            }
        }
        Err(error) => meta.fail(ApiError::from_llm(&error)),
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

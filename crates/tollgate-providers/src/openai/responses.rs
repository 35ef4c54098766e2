//! `POST {base_url}/responses`: OpenAI's Responses API, for a call that came in it
//! ([`ResponsesBody`]) to a server that serves it. The call passes through: the caller's body
//! goes up as it came (but for what the stack settled), and the answer comes back as it came
//! ([`ResponsesAnswer`], or the stream's events verbatim), read all the same for usage, text
//! and tool calls.

use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_wire::openai::responses::{self, ResponsesAnswer, ResponsesBody, ResponsesStream};

use super::{Inner, OpenAiCompatible};
use crate::{
    stream::ChatStream,
    transport::{Call, answered, malformed, open_stream},
};

impl Inner {
    /// Whether `request` goes to `/responses`: it came in the Responses API and this server
    /// serves it.
    pub(super) fn serves_responses(&self, request: &LlmRequest) -> bool {
        self.responses_api && request.extensions.get::<ResponsesBody>().is_some()
    }

    fn responses_body(&self, request: &LlmRequest, stream: bool) -> Result<Vec<u8>, LlmError> {
        responses::encode_request(request, stream).map_err(|why| {
            LlmError::new(ErrorKind::InvalidRequest, format!("{}: {why}", self.name))
        })
    }

    /// A whole answer from `/responses`: read for the stack, and kept as it came for the caller.
    pub(super) async fn respond(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        let answer = self
            .post_whole(
                &self.responses_url,
                self.responses_body(&request, false)?,
                &request,
            )
            .await?;
        let mut response = responses::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        response
            .extensions
            .insert(ResponsesAnswer(answer.body.clone()));
        answered(answer, response, name)
    }
}

impl OpenAiCompatible {
    /// A stream from `/responses`: its events handed out as they came, and read for the stack.
    pub(super) async fn respond_streamed(
        &self,
        request: LlmRequest,
    ) -> Result<ChatStream, LlmError> {
        let inner = &self.inner;
        let call = Call {
            url: &inner.responses_url,
            body: inner.responses_body(&request, true)?,
            headers: request.extensions.get(),
            provider: &inner.name,
            sign: None,
        };
        let (response, first_byte) = open_stream(&inner.http, call).await?;
        Ok(ChatStream::new(
            response,
            ResponsesStream::default(),
            true,
            &inner.name,
            inner.http.limits,
            first_byte,
        ))
    }
}

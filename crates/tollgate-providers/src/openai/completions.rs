//! Legacy text completions (`POST {base}/completions`) on an [`OpenAiCompatible`] server: OpenAI,
//! vLLM, Ollama and the other servers that still serve base models through them. The wire shapes
//! are [`tollgate_wire::openai::completions`]'.

use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse, Operation};
use tollgate_wire::openai::completions::{self, CompletionAnswer, CompletionsBody, TextChunks};

use super::{Inner, OpenAiCompatible};
use crate::{
    stream::ChatStream,
    transport::{Call, answered, malformed, open_stream},
};

impl OpenAiCompatible {
    /// Sends a text completion ([`Operation::Completions`]) with `stream: true` and
    /// `stream_options.include_usage`, and returns the stream of `text_completion` chunks once
    /// the server has accepted it. A call that came in this API
    /// ([`CompletionsBody`]) is sent its caller's body, and its stream also hands out each chunk
    /// as it came, for the caller.
    ///
    /// # Errors
    ///
    /// The same errors as a call, for everything that happens before the stream starts.
    pub async fn stream_completion(&self, request: LlmRequest) -> Result<ChatStream, LlmError> {
        let inner = &self.inner;
        inner.check(&request)?;
        let call = inner.completion_call(&request, true)?;
        let (response, first_byte) = open_stream(
            &inner.http,
            Call {
                url: &call.0,
                body: call.1,
                headers: request.extensions.get(),
                provider: &inner.name,
                sign: None,
            },
        )
        .await?;
        let verbatim = request.extensions.get::<CompletionsBody>().is_some();
        Ok(ChatStream::new(
            response,
            TextChunks::default(),
            verbatim,
            &inner.name,
            inner.http.limits,
            first_byte,
        ))
    }

    /// A text completion through the tower service: streamed or whole, as the request asks.
    pub(crate) async fn completions(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        if request.meta.stream {
            let model = request.model.clone();
            let stream = self.stream_completion(request).await?;
            return Ok(stream.into_response(&model));
        }
        self.inner.text_complete(request).await
    }
}

impl Inner {
    /// Where a text completion for `model` goes: beside the chat URL, `completions` for
    /// `chat/completions` (an Azure deployment's too, its `api-version` kept).
    fn completions_url(&self, model: &str) -> Result<String, LlmError> {
        let chat = self.url_for(model, Operation::Chat)?;
        let (path, query) = chat
            .split_once('?')
            .map_or((&*chat, None), |(p, q)| (p, Some(q)));
        let base = path.strip_suffix("/chat/completions").unwrap_or(path);
        Ok(match query {
            Some(query) => format!("{base}/completions?{query}"),
            None => format!("{base}/completions"),
        })
    }

    /// The URL and body of a text completion.
    fn completion_call(
        &self,
        request: &LlmRequest,
        stream: bool,
    ) -> Result<(String, Vec<u8>), LlmError> {
        let body = completions::encode_request(request, stream, &self.quirks).map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                format!("{}: the request is no text completion: {e}", self.name),
            )
        })?;
        Ok((self.completions_url(&request.model)?, body))
    }

    /// `POST /completions`, whole: the answer's texts as its choices' content, and for a caller
    /// in this API the answer as it came ([`CompletionAnswer`]).
    pub(super) async fn text_complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let name = &self.name;
        self.check(&request)?;
        let (url, body) = self.completion_call(&request, false)?;
        let answer = self.post_whole(&url, body, &request).await?;
        let mut response = completions::decode_answer(&answer.body, &request.model)
            .map_err(|e| malformed(name, e))?;
        if request.extensions.get::<CompletionsBody>().is_some() {
            response
                .extensions
                .insert(CompletionAnswer(answer.body.clone()));
        }
        answered(answer, response, name)
    }
}

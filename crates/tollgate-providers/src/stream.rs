//! Streamed answers: server-sent events read as they arrive, as typed events.

use std::time::SystemTime;

use http::HeaderMap;
use tokio::time::Instant;
use tollgate_core::{
    ErrorKind, FinishReason, LlmError, LlmResponse,
    stream::{LlmStream, StreamEvent},
};

use tollgate_core::RateLimitSnapshot;
use tollgate_wire::sse::{Decode, Decoder, Format};

use crate::transport::{Limits, silent, too_large, transport_error};

/// A streamed answer, read event by event with [`next`](Self::next) or whole with
/// [`collect`](Self::collect).
///
/// It exists once the provider has accepted the call (a success status): failures before that
/// are the client's usual errors. After that, a connection lost or an error event sent by the
/// provider ends the stream with an error, and what arrived before it has been delivered: a
/// caller that retries must not do so after the first event without accepting a repeated start.
///
/// A stream is trusted no further than it proves itself. It ends well only with its proper end
/// (OpenAI's `[DONE]` after a finish reason for every answer, Anthropic's `message_stop`,
/// Bedrock's `messageStop` and `metadata`); one the
/// upstream closes before that ends with a `Server` error, never as an answer that looks whole.
/// It is bounded in time (the first byte within the client's first-byte timeout, then no silence
/// longer than its idle timeout) and in size (each event, and the whole).
///
/// ```no_run
/// use tollgate_core::{LlmRequest, Message};
/// use tollgate_providers::{OpenAiCompatible, StreamEvent};
///
/// # async fn run() -> Result<(), tollgate_core::LlmError> {
/// let client = OpenAiCompatible::builder("http://localhost:11434/v1").build().unwrap();
/// let mut stream = client
///     .stream(LlmRequest::new("llama3.2", vec![Message::user("Count to five")]))
///     .await?;
/// while let Some(event) = stream.next().await {
///     if let StreamEvent::Text { text, .. } = event? {
///         print!("{text}");
///     }
/// }
/// # Ok(()) }
/// ```
pub struct ChatStream {
    response: reqwest::Response,
    headers: HeaderMap,
    provider: String,
    decoder: Box<dyn Decode>,
    limits: Limits,
    /// When the first byte is due, until it has come.
    first_byte: Option<Instant>,
    /// Bytes read so far.
    read: usize,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("done", &self.decoder.is_done())
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    /// The stream of `response`, read in `format`; with each event also as it came when
    /// `verbatim` (for a caller who speaks the upstream's own API).
    pub(crate) fn new<F: Format + std::fmt::Debug>(
        response: reqwest::Response,
        format: F,
        verbatim: bool,
        provider: &str,
        limits: Limits,
        first_byte: Instant,
    ) -> Self {
        let decoder = Decoder::new(format, provider, limits.max_event_bytes);
        let decoder = if verbatim {
            decoder.verbatim()
        } else {
            decoder
        };
        Self::with_decoder(response, Box::new(decoder), provider, limits, first_byte)
    }

    /// The stream of `response`, read by `decoder` (a framing other than server-sent events).
    pub(crate) fn with_decoder(
        response: reqwest::Response,
        decoder: Box<dyn Decode>,
        provider: &str,
        limits: Limits,
        first_byte: Instant,
    ) -> Self {
        Self {
            headers: response.headers().clone(),
            response,
            provider: provider.to_owned(),
            decoder,
            limits,
            first_byte: Some(first_byte),
            read: 0,
        }
    }

    /// The provider's response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// This stream as the response of a streaming call through a tollgate stack: an empty
    /// response (the model asked for, the provider's headers, the rate-limit snapshot) carrying
    /// the events as its [`LlmStream`].
    pub(crate) fn into_response(self, model: &str) -> LlmResponse {
        let mut response = LlmResponse::new(model, "");
        response.headers = self.headers.clone();
        if let Some(snapshot) = RateLimitSnapshot::from_headers(&self.headers, SystemTime::now()) {
            response.extensions.insert(snapshot);
        }
        response.with_stream(self.into_stream())
    }

    /// The events as an [`LlmStream`].
    pub fn into_stream(self) -> LlmStream {
        LlmStream::new(futures_util::stream::unfold(
            self,
            |mut stream| async move { stream.next().await.map(|event| (event, stream)) },
        ))
    }

    /// The next event; `None` once the provider has said it is done (or closed the stream).
    ///
    /// # Errors
    ///
    /// The connection failing (`Connect` or `Timeout`), an error event from the provider (its
    /// kind: `overloaded_error` is `Overloaded`, others `Server`), an event that is not the JSON
    /// the provider promised, an event or a stream over its size bound, or a stream that closed
    /// before its proper end (`Server`); no first byte in time, or a silence past the idle
    /// timeout (`Timeout`).
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(event) = self.decoder.next_event() {
                return Some(event);
            }
            if self.decoder.is_done() {
                return None;
            }
            let chunk = match self.first_byte {
                Some(due) => tokio::time::timeout_at(due, self.response.chunk()).await,
                None => {
                    tokio::time::timeout(self.limits.stream_idle_timeout, self.response.chunk())
                        .await
                }
            };
            let failed = match chunk {
                Ok(Ok(Some(bytes))) => {
                    self.first_byte = None;
                    self.read += bytes.len();
                    if self.read <= self.limits.max_response_bytes {
                        self.decoder.feed(&bytes);
                        continue;
                    }
                    too_large(&self.provider, self.limits.max_response_bytes)
                }
                Ok(Ok(None)) => {
                    self.decoder.end();
                    continue;
                }
                Ok(Err(error)) => transport_error(error, &self.provider),
                Err(_) if self.first_byte.is_some() => {
                    silent(&self.provider, self.limits.stream_first_byte())
                }
                Err(_) => LlmError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{}: the upstream fell silent mid-stream for {}",
                        self.provider,
                        tollgate_core::duration::format(self.limits.stream_idle_timeout)
                    ),
                ),
            };
            self.decoder.stop();
            return Some(Err(failed));
        }
    }

    /// Reads the whole stream into one response, the same the call returns without streaming:
    /// every choice with its text, reasoning, refusal and tool calls, the usage, the headers and
    /// the rate-limit snapshot.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next); a `content_filter` or `refusal` finish is a `ContentFilter` error.
    pub async fn collect(self) -> Result<LlmResponse, LlmError> {
        let (headers, provider) = (self.headers.clone(), self.provider.clone());
        let mut response = self.into_stream().collect().await?;
        if response.finish_reason() == Some(&FinishReason::ContentFilter) {
            return Err(LlmError::new(
                ErrorKind::ContentFilter,
                format!("{provider} withheld the rest of the answer"),
            ));
        }
        if let Some(snapshot) = RateLimitSnapshot::from_headers(&headers, SystemTime::now()) {
            response.extensions.insert(snapshot);
        }
        response.headers = headers;
        Ok(response)
    }
}

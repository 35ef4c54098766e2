//! Streamed answers, as they pass through a tollgate stack.
//!
//! A request marked [`LlmRequest::streaming`](crate::LlmRequest::streaming) asks the provider
//! for a stream. The provider's service answers as soon as the provider has accepted the call,
//! with an [`LlmResponse`] whose content is empty and whose [`LlmStream`] the caller takes with
//! [`LlmResponse::take_stream`]. So every layer sees a streamed call end when the stream starts:
//!
//! - retry: a call is retried only for failures before the stream starts; once the caller has
//!   the stream, an error in it ends the stream and is the caller's to handle;
//! - circuit breaker and health: the outcome is whether the stream started;
//! - cache: a hit answers a streaming request with a replay of the stored answer (one text
//!   event); a miss passes the provider's stream through and stores the assembled answer once
//!   the stream has ended without an error (a stream dropped or failed midway stores nothing).
//!   Streaming misses do not coalesce: each caller gets its own stream;
//! - rate limit: the reservation (estimated tokens) is taken when the call starts and settled
//!   with the usage the stream reports when it ends.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use futures_core::Stream;

use crate::{FinishReason, LlmError, LlmResponse, Usage};

/// One thing a streamed answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The model that answers (sent once, first).
    Model(String),
    /// The next piece of text.
    Text(String),
    /// Why generation stopped.
    Finish(FinishReason),
    /// Tokens consumed so far (the last one sent is the total).
    Usage(Usage),
}

type Events = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// A streamed answer: [`StreamEvent`]s as they arrive, ending with `None` (done) or an error.
pub struct LlmStream {
    events: Events,
}

impl fmt::Debug for LlmStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmStream").finish_non_exhaustive()
    }
}

impl LlmStream {
    /// A stream of `events`.
    pub fn new(events: impl Stream<Item = Result<StreamEvent, LlmError>> + Send + 'static) -> Self {
        Self {
            events: Box::pin(events),
        }
    }

    /// A stream that says what `response` says: its model, its whole text in one event, its
    /// finish reason and its usage (how a cached answer is replayed).
    pub fn replay(response: &LlmResponse) -> Self {
        let mut events = Vec::with_capacity(4);
        events.push(StreamEvent::Model(response.model.clone()));
        if !response.content.is_empty() {
            events.push(StreamEvent::Text(response.content.clone()));
        }
        if let Some(reason) = &response.finish_reason {
            events.push(StreamEvent::Finish(reason.clone()));
        }
        events.push(StreamEvent::Usage(response.usage));
        Self::new(Replay(events.into_iter()))
    }

    /// The next event, or `None` once the stream has ended.
    ///
    /// # Errors
    ///
    /// What the provider or the connection failed with; the stream ends after it.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        std::future::poll_fn(|cx| self.events.as_mut().poll_next(cx)).await
    }

    /// Reads the whole stream into one response (text joined, last finish reason and usage).
    ///
    /// # Errors
    ///
    /// The first error in the stream.
    pub async fn collect(mut self) -> Result<LlmResponse, LlmError> {
        let mut answer = Assembled::default();
        while let Some(event) = self.next().await {
            answer.add(&event?);
        }
        Ok(answer.response)
    }

    /// Calls `done` with the assembled answer when the stream ends without an error (not when it
    /// fails or is dropped midway); the events pass through unchanged. How the cache stores a
    /// streamed answer and the limiter settles its usage.
    pub fn on_complete(self, done: impl FnOnce(&LlmResponse) + Send + 'static) -> Self {
        Self::new(OnComplete {
            inner: self.events,
            answer: Assembled::default(),
            done: Some(Box::new(done)),
        })
    }
}

impl Stream for LlmStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }
}

/// An answer built from events.
#[derive(Default)]
struct Assembled {
    response: LlmResponse,
}

impl Assembled {
    fn add(&mut self, event: &StreamEvent) {
        let response = &mut self.response;
        match event {
            StreamEvent::Model(model) => response.model.clone_from(model),
            StreamEvent::Text(text) => response.content.push_str(text),
            StreamEvent::Finish(reason) => response.finish_reason = Some(reason.clone()),
            StreamEvent::Usage(usage) => response.usage = *usage,
        }
    }
}

struct Replay(std::vec::IntoIter<StreamEvent>);

impl Stream for Replay {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }
}

type Done = Box<dyn FnOnce(&LlmResponse) + Send>;

struct OnComplete {
    inner: Events,
    answer: Assembled,
    done: Option<Done>,
}

impl Stream for OnComplete {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = ready!(this.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(event)) => this.answer.add(event),
            // A failed stream is not a complete answer.
            Some(Err(_)) => this.done = None,
            None => {
                if let Some(done) = this.done.take() {
                    done(&this.answer.response);
                }
            }
        }
        Poll::Ready(item)
    }
}

/// Where a response keeps its stream: an extension, so a response stays `Clone` (clones share
/// the one stream, and the first to take it has it).
#[derive(Clone)]
pub(crate) struct StreamSlot(pub(crate) Arc<Mutex<Option<LlmStream>>>);

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_replay_assembles_into_the_same_answer_and_on_complete_sees_it() {
        let answer = LlmResponse::new("m", "hello")
            .with_usage(Usage::new(3, 1))
            .with_finish_reason(FinishReason::Stop);
        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let stream = LlmStream::replay(&answer)
            .on_complete(move |done| *sink.lock().unwrap() = Some(done.clone()));
        let collected = block_on(stream.collect()).unwrap();
        assert_eq!(
            (
                collected.model.as_str(),
                collected.content.as_str(),
                collected.usage
            ),
            ("m", "hello", Usage::new(3, 1))
        );
        let done = seen.lock().unwrap().clone().expect("called at the end");
        assert_eq!(done.content, "hello");
        assert_eq!(done.finish_reason, Some(FinishReason::Stop));
    }
}

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
//! - cache: a hit answers a streaming request with a replay of the stored answer, whole (each
//!   piece in one event: reasoning, text, refusal, every tool call, finish and usage); a miss passes the provider's stream through and stores the assembled answer once
//!   the stream has ended without an error (a stream dropped or failed midway stores nothing).
//!   Streaming misses do not coalesce: each caller gets its own stream;
//! - rate limit: the reservation (estimated tokens) is taken when the call starts and settled
//!   with the usage the stream reports when it ends;
//! - rate limit and cost tracking (the `tollgate` facade) count a stream however it ends
//!   ([`LlmStream::on_end`]), since a provider bills a stream the caller stopped reading: one
//!   dropped or failed midway counts the usage reported by then, estimated where it was not
//!   ([`Usage::of_unfinished_stream`](crate::Usage::of_unfinished_stream)).
//!
//! Events name the choice they belong to and carry text, reasoning, refusal and tool-call pieces,
//! the answer's own fields and its usage ([`StreamEvent`]); they assemble into the answer the same
//! call returns unstreamed ([`LlmStream::collect`]).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use futures_core::Stream;

mod assemble;
mod event;

pub use event::{StreamEvent, ToolCallDelta};

use crate::{LlmError, LlmResponse};
use assemble::{Assembled, events_of};

type Events = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// A streamed answer: [`StreamEvent`]s as they arrive, ending with `None` (done) or an error.
pub struct LlmStream {
    events: Events,
    // The callbacks of `on_end`, sharing one assembled copy of the answer: a stack registers one
    // per layer that settles a stream (limits, costs, cache), and a copy each would hold the
    // text that many times. Boxed, so a stream nobody watches stays two words.
    watch: Option<Box<Watch>>,
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
            watch: None,
        }
    }

    /// A stream that says what `response` says, each whole piece in one event: its model, its
    /// fields, each choice's reasoning, text, refusal, tool calls and finish, and its usage (how a
    /// cached answer is replayed). It assembles back into the same answer.
    pub fn replay(response: &LlmResponse) -> Self {
        Self::from_events(events_of(response).into_iter().map(Ok))
    }

    /// A stream of events already at hand, each ready at once: a scripted upstream in a test, an
    /// answer kept elsewhere.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use tollgate_core::{ErrorKind, LlmError, stream::{LlmStream, StreamEvent}};
    ///
    /// // Says one thing, then the connection drops.
    /// let stream = LlmStream::from_events([
    ///     Ok(StreamEvent::text("Once upon")),
    ///     Err(LlmError::new(ErrorKind::Connect, "connection reset")),
    /// ]);
    /// assert_eq!(stream.collect().await.unwrap_err().kind(), ErrorKind::Connect);
    /// # });
    /// ```
    pub fn from_events<I>(events: I) -> Self
    where
        I: IntoIterator<Item = Result<StreamEvent, LlmError>>,
        I::IntoIter: Send + 'static,
    {
        Self::new(Ready(events.into_iter()))
    }

    /// The next event, or `None` once the stream has ended.
    ///
    /// # Errors
    ///
    /// What the provider or the connection failed with; the stream ends after it.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Reads the whole stream into one response: every choice with its text, reasoning, refusal
    /// and tool calls (arguments joined in order), each choice's finish reason, the last usage.
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

    /// The same stream without its [`Usage`](StreamEvent::Usage) events, for a caller who did not
    /// ask for usage (`stream_options.include_usage`) when tollgate asked for it on its own
    /// account. Callbacks registered before this still see every event.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use tollgate_core::{LlmResponse, Usage, stream::LlmStream};
    ///
    /// let answer = LlmResponse::new("m", "hi").with_usage(Usage::new(3, 1));
    /// let quiet = LlmStream::replay(&answer).without_usage().collect().await.unwrap();
    /// assert_eq!((quiet.content(), quiet.usage), ("hi", Usage::default()));
    /// # });
    /// ```
    #[must_use]
    pub fn without_usage(self) -> Self {
        struct Quiet(LlmStream);
        impl Stream for Quiet {
            type Item = Result<StreamEvent, LlmError>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                loop {
                    match ready!(Pin::new(&mut self.0).poll_next(cx)) {
                        Some(Ok(StreamEvent::Usage(_))) => {}
                        other => return Poll::Ready(other),
                    }
                }
            }
        }
        Self::new(Quiet(self))
    }

    /// The same stream, cut off with a `Timeout` error if it has not ended by `deadline`: a whole
    /// call's bound, kept while the answer streams. Callbacks registered before this see the
    /// stream as dropped at the deadline, which is how they bill what it had used.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// use std::{pin::Pin, task::{Context, Poll}, time::Duration};
    /// use tollgate_core::{ErrorKind, LlmError, stream::{LlmStream, StreamEvent}};
    ///
    /// struct Silent; // an upstream that never says another word
    /// impl futures_core::Stream for Silent {
    ///     type Item = Result<StreamEvent, LlmError>;
    ///     fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
    ///         Poll::Pending
    ///     }
    /// }
    /// let endless = LlmStream::new(Silent);
    /// let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    /// let error = endless.with_deadline(deadline).collect().await.unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::Timeout);
    /// # });
    /// ```
    #[must_use]
    pub fn with_deadline(self, deadline: tokio::time::Instant) -> Self {
        struct Bounded {
            events: Option<LlmStream>,
            deadline: Pin<Box<tokio::time::Sleep>>,
        }
        impl Stream for Bounded {
            type Item = Result<StreamEvent, LlmError>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                let Some(events) = self.events.as_mut() else {
                    return Poll::Ready(None);
                };
                if let Poll::Ready(item) = Pin::new(events).poll_next(cx) {
                    return Poll::Ready(item);
                }
                ready!(self.deadline.as_mut().poll(cx));
                // Dropped here, so what it read is settled as a stream cut off.
                self.events = None;
                Poll::Ready(Some(Err(LlmError::new(
                    crate::ErrorKind::Timeout,
                    "the answer did not end within the call's deadline",
                ))))
            }
        }
        Self::new(Bounded {
            events: Some(self),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    /// Calls `done` with the assembled answer when the stream ends without an error (not when it
    /// fails or is dropped midway); the events pass through unchanged. How the cache stores a
    /// streamed answer and the limiter settles its usage.
    pub fn on_complete(self, done: impl FnOnce(&LlmResponse) + Send + 'static) -> Self {
        self.on_end(move |answer, end| {
            if end == StreamEnd::Complete {
                done(answer);
            }
        })
    }

    /// Calls `done` exactly once, when the stream ends however it ends, with what was read of the
    /// answer by then and how it ended; the events pass through unchanged. A stream dropped
    /// before its end (the caller stopped reading, or never took the stream) calls it from its
    /// drop. How the cost tracker counts a stream the caller abandoned.
    ///
    /// Every `done` given to one stream shares one assembled answer (read from the first
    /// registration on), and they are called in the order they were given.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use tollgate_core::{LlmResponse, stream::{LlmStream, StreamEnd}};
    ///
    /// let ended = Arc::new(Mutex::new(None));
    /// let seen = ended.clone();
    /// let mut stream = LlmStream::replay(&LlmResponse::new("m", "hello"))
    ///     .on_end(move |answer, end| *seen.lock().unwrap() = Some((answer.model.clone(), end)));
    /// stream.next().await; // the model
    /// drop(stream);
    /// assert_eq!(*ended.lock().unwrap(), Some(("m".to_owned(), StreamEnd::Dropped)));
    /// # });
    /// ```
    pub fn on_end(mut self, done: impl FnOnce(&LlmResponse, StreamEnd) + Send + 'static) -> Self {
        self.watch
            .get_or_insert_with(Box::default)
            .done
            .push(Box::new(done));
        self
    }
}

/// How a stream ended, as [`LlmStream::on_end`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// It ran to its end: the answer is whole.
    Complete,
    /// It ended with an error midway.
    Failed,
    /// It was dropped before its end.
    Dropped,
}

impl Stream for LlmStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = ready!(this.events.as_mut().poll_next(cx));
        if let Some(watch) = &mut this.watch {
            match &item {
                Some(Ok(event)) => watch.answer.add(event),
                Some(Err(_)) => watch.end(StreamEnd::Failed),
                None => watch.end(StreamEnd::Complete),
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for LlmStream {
    fn drop(&mut self) {
        // Still unreported: the stream never reached its end or an error.
        if let Some(watch) = &mut self.watch {
            watch.end(StreamEnd::Dropped);
        }
    }
}

/// Events from an iterator, each ready at once.
struct Ready<I>(I);

// The iterator is never pinned (it is only ever used through `&mut`), so any iterator will do.
impl<I> Unpin for Ready<I> {}

impl<I: Iterator<Item = Result<StreamEvent, LlmError>>> Stream for Ready<I> {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next())
    }
}

type Done = Box<dyn FnOnce(&LlmResponse, StreamEnd) + Send>;

/// What a watched stream has read, and who is still to be told how it ended.
#[derive(Default)]
struct Watch {
    answer: Assembled,
    done: Vec<Done>,
}

impl Watch {
    /// Tells each one still waiting, once: a later end (a poll after the stream's end, or its
    /// drop) finds nobody left, except those given after the first end.
    fn end(&mut self, end: StreamEnd) {
        for done in self.done.drain(..) {
            done(&self.answer.response, end);
        }
    }
}

/// Where a response keeps its stream: an extension, so a response stays `Clone` (clones share
/// the one stream, and the first to take it has it).
#[derive(Clone)]
pub(crate) struct StreamSlot(pub(crate) Arc<Mutex<Option<LlmStream>>>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FinishReason, Usage};

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
                collected.content(),
                collected.usage
            ),
            ("m", "hello", Usage::new(3, 1))
        );
        let done = seen.lock().unwrap().clone().expect("called at the end");
        assert_eq!(done.content(), "hello");
        assert_eq!(done.finish_reason(), Some(&FinishReason::Stop));
    }

    fn script(fails: bool) -> LlmStream {
        let mut events = vec![
            Ok(StreamEvent::Usage(Usage::new(6, 0))),
            Ok(StreamEvent::text("abc")),
            Ok(StreamEvent::text("def")),
        ];
        if fails {
            events.push(Err(LlmError::new(crate::ErrorKind::Server, "cut off")));
        }
        LlmStream::from_events(events)
    }

    type Ends = Arc<Mutex<Vec<(String, Usage, StreamEnd)>>>;

    fn watched(stream: LlmStream) -> (LlmStream, Ends) {
        let ends = Ends::default();
        let sink = ends.clone();
        let stream = stream.on_end(move |answer, end| {
            sink.lock()
                .unwrap()
                .push((answer.content().to_owned(), answer.usage, end));
        });
        (stream, ends)
    }

    #[test]
    fn on_end_reports_each_ending_once_with_what_was_read() {
        let (stream, ends) = watched(script(false));
        block_on(stream.collect()).unwrap();
        assert_eq!(
            *ends.lock().unwrap(),
            [("abcdef".to_owned(), Usage::new(6, 0), StreamEnd::Complete)]
        );

        let (stream, ends) = watched(script(true));
        assert_eq!(
            block_on(stream.collect()).unwrap_err().kind(),
            crate::ErrorKind::Server
        );
        assert_eq!(
            *ends.lock().unwrap(),
            [("abcdef".to_owned(), Usage::new(6, 0), StreamEnd::Failed)]
        );

        // Two events read (the usage, then "abc"), then dropped.
        let (mut stream, ends) = watched(script(false));
        block_on(async {
            stream.next().await;
            stream.next().await;
        });
        drop(stream);
        assert_eq!(
            *ends.lock().unwrap(),
            [("abc".to_owned(), Usage::new(6, 0), StreamEnd::Dropped)]
        );

        // Never read at all.
        let (stream, ends) = watched(script(false));
        drop(stream);
        assert_eq!(
            *ends.lock().unwrap(),
            [(String::new(), Usage::default(), StreamEnd::Dropped)]
        );
    }

    #[test]
    fn every_callback_on_one_stream_sees_the_whole_answer_in_the_order_given() {
        let ends = Ends::default();
        let watch = |stream: LlmStream, name: &'static str| {
            let sink = ends.clone();
            stream.on_end(move |answer, end| {
                sink.lock().unwrap().push((
                    format!("{name}: {}", answer.content()),
                    answer.usage,
                    end,
                ));
            })
        };
        let stream = watch(watch(watch(script(false), "limits"), "costs"), "cache");
        block_on(stream.collect()).unwrap();
        let complete = |name: &str| {
            (
                format!("{name}: abcdef"),
                Usage::new(6, 0),
                StreamEnd::Complete,
            )
        };
        assert_eq!(
            *ends.lock().unwrap(),
            [complete("limits"), complete("costs"), complete("cache")]
        );

        ends.lock().unwrap().clear();
        let mut stream = watch(watch(script(false), "limits"), "costs");
        block_on(stream.next());
        block_on(stream.next());
        drop(stream);
        let dropped = |name: &str| (format!("{name}: abc"), Usage::new(6, 0), StreamEnd::Dropped);
        assert_eq!(*ends.lock().unwrap(), [dropped("limits"), dropped("costs")]);
    }

    #[test]
    fn on_complete_is_not_called_for_a_stream_that_fails_or_is_dropped() {
        let called = Arc::new(Mutex::new(0));
        for fails in [false, true] {
            let count = called.clone();
            let stream = script(fails).on_complete(move |_| *count.lock().unwrap() += 1);
            let _ = block_on(stream.collect());
        }
        let count = called.clone();
        drop(script(false).on_complete(move |_| *count.lock().unwrap() += 1));
        assert_eq!(*called.lock().unwrap(), 1);
    }
}

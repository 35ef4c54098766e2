//! A streamed answer as a `text/event-stream` body, written by each front door's
//! [`EventWriter`].

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderValue, header};
use tollgate::{
    LlmError,
    stream::{LlmStream, StreamEvent},
};

use crate::error::ApiError;

/// How a front door writes a stream's events.
pub(crate) trait EventWriter: Send + Unpin + 'static {
    /// Appends what `event` becomes (possibly nothing) to `out`.
    fn write(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
    /// Appends the stream's last words once it has ended.
    fn end(&mut self, out: &mut Vec<u8>);
    /// Appends the event that ends a stream which failed midway.
    fn fail(&mut self, error: &ApiError, out: &mut Vec<u8>);
}

/// Whether a stream's body came to its proper end: set once the writer's last words are out, never
/// for a stream that failed midway (its error event ends it) or was dropped. A response extension
/// of every stream, for what must tell a whole stream from a failed one once the body is over (an
/// idempotent call keeps only a whole one).
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamEnd(Arc<AtomicBool>);

impl StreamEnd {
    /// Whether the stream ended well.
    pub(crate) fn is_whole(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The answer for `events`, written by `writer`. A stream that fails midway ends with the
/// writer's error event, never as a cut-off answer that looks whole; one the client drops is
/// dropped here too, which cancels the upstream call (and the stack bills what it used).
pub(crate) fn response(events: LlmStream, writer: impl EventWriter) -> Response {
    let end = StreamEnd::default();
    let body = SseBody {
        events,
        writer,
        done: false,
        end: end.clone(),
    };
    let mut response = Response::new(Body::from_stream(body));
    response.extensions_mut().insert(end);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

struct SseBody<W> {
    events: LlmStream,
    writer: W,
    done: bool,
    end: StreamEnd,
}

impl<W: EventWriter> Stream for SseBody<W> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut out = Vec::new();
        while !this.done {
            match Pin::new(&mut this.events).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => this.writer.write(&event, &mut out),
                Poll::Ready(Some(Err(error))) => {
                    this.done = true;
                    failed(&error);
                    this.writer.fail(&ApiError::from_llm(&error), &mut out);
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.writer.end(&mut out);
                    // Before the last bytes go: whoever reads the body's end finds it set.
                    this.end.0.store(true, Ordering::Release);
                }
                // Send what is written so far; the rest comes when the upstream says more.
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => break,
            }
            if !out.is_empty() {
                break;
            }
        }
        if out.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(out.into())))
        }
    }
}

fn failed(error: &LlmError) {
    tracing::warn!(kind = error.kind().name(), "a stream failed after it began");
}

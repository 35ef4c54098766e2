//! A call with an `Idempotency-Key` runs to its end whether or not its caller stays: a client
//! that timed out retries with the same key, and must find the first call's answer kept (or wait
//! for it), not start a second call the provider bills again.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use tokio::sync::{mpsc, oneshot};

/// Frames relayed ahead of a slow caller.
const AHEAD: usize = 16;

/// Runs `call` on a task of its own and relays its answer: the head when it is ready, then each
/// frame of the body. A caller that leaves stops the relay, not the call: the task reads the body
/// to its end, so the answer is kept for the retry (and billed once).
pub(crate) async fn run_to_end(
    call: impl Future<Output = Response> + Send + 'static,
    failed: impl FnOnce() -> Response,
) -> Response {
    let (head, answer) = oneshot::channel();
    let task = async move {
        let (parts, mut body) = call.await.into_parts();
        let (frames, relay) = mpsc::channel(AHEAD);
        let mut caller = head
            .send(Response::from_parts(parts, Body::new(Relay(relay))))
            .is_ok()
            .then_some(frames);
        while let Some(frame) = body.frame().await {
            let cut = frame.is_err();
            if let Some(frames) = &caller
                && frames.send(frame).await.is_err()
            {
                // The caller left: the rest is read for the answer to be kept.
                caller = None;
            }
            if cut {
                break;
            }
        }
    };
    tokio::spawn(tracing::Instrument::in_current_span(task));
    // The task ended without a head only if the call panicked.
    answer.await.unwrap_or_else(|_| failed())
}

/// The body a caller reads: the frames the task relays.
struct Relay(mpsc::Receiver<Result<Frame<Bytes>, axum::Error>>);

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.0.poll_recv(cx)
    }
}

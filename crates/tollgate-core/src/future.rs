//! A response future shared by layers that watch how a call ends without changing it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use crate::LlmError;

/// Waits for `service` to be ready, then calls it with `request`; either step's error becomes an
/// [`LlmError`]. For a layer that finishes a call in a future of its own (after a cache miss, a
/// wait for quota, a health probe).
pub async fn call_when_ready<S, R>(service: &mut S, request: R) -> Result<S::Response, LlmError>
where
    S: tower_service::Service<R>,
    S::Error: Into<LlmError>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    service.call(request).await.map_err(Into::into)
}

/// The ready `service`, taken for a call that finishes in a future of its own; `service` keeps a
/// fresh clone in its place, which the layer's `poll_ready` drives before its next call. The
/// taken one goes to [`call_when_ready`], so the readiness the caller obtained is not wasted.
pub fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}

/// Told once how a watched call ended: `Ok(())` for a response, or its error.
///
/// A layer's observer is dropped unnotified when the call is dropped before it ends, so its
/// `Drop` can tell the difference.
pub trait Observer {
    /// The call ended with `outcome`.
    fn observe(self, outcome: Result<(), &LlmError>);
}

pin_project! {
    /// A call's future watched by an [`Observer`], passed through unwatched, or refused before it
    /// started. The circuit breaker and the health layer return it.
    pub struct Observed<F, O> {
        #[pin]
        state: State<F, O>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, O> {
        Watched { #[pin] future: F, observer: Option<O> },
        Unwatched { #[pin] future: F },
        Refused { error: Option<LlmError> },
    }
}

impl<F, O> Observed<F, O> {
    /// `future`, with `observer` told how it ends.
    pub fn watched(future: F, observer: O) -> Self {
        Self {
            state: State::Watched {
                future,
                observer: Some(observer),
            },
        }
    }

    /// `future`, passed through as it is.
    pub fn unwatched(future: F) -> Self {
        Self {
            state: State::Unwatched { future },
        }
    }

    /// No call: `error` at once.
    pub fn refused(error: LlmError) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, O, R, E> Future for Observed<F, O>
where
    F: Future<Output = Result<R, E>>,
    E: Into<LlmError>,
    O: Observer,
{
    type Output = Result<R, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Watched { future, observer } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(observer) = observer.take() {
                    observer.observe(result.as_ref().map(|_| ()));
                }
                Poll::Ready(result)
            }
            StateProj::Unwatched { future } => future.poll(cx).map_err(Into::into),
            StateProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}

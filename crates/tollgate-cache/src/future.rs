//! The response future of [`Cache`](crate::Cache).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tollgate_core::{LlmError, LlmResponse};

pub(crate) type Boxed = Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send>>;

pin_project! {
    /// The future [`Cache`](crate::Cache) returns.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Ready { result: Option<Result<LlmResponse, LlmError>> },
        Bypass { #[pin] future: F },
        Boxed { future: Boxed },
    }
}

impl<F> ResponseFuture<F> {
    /// Answered without waiting: a hit, or a refusal.
    pub(crate) fn ready(result: Result<LlmResponse, LlmError>) -> Self {
        Self {
            state: State::Ready {
                result: Some(result),
            },
        }
    }

    /// Not cacheable: the inner call as it is.
    pub(crate) fn bypass(future: F) -> Self {
        Self {
            state: State::Bypass { future },
        }
    }

    /// A call that waits on the store, a flight or upstream, then settles.
    pub(crate) fn boxed(future: Boxed) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<LlmResponse, E>>,
    E: Into<LlmError>,
{
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { result } => {
                Poll::Ready(result.take().expect("polled after completion"))
            }
            StateProj::Bypass { future } => future.poll(cx).map_err(Into::into),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

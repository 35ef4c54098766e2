//! The response future of [`RateLimit`](crate::RateLimit).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tollgate_core::{LlmError, LlmResponse};

use std::sync::Arc;

use crate::shared::{Keys, Reservation, Shared};

type Waiting = Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send>>;

/// What a call must settle with its limiter once its real usage is known.
pub(crate) struct Settle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) keys: Keys,
    pub(crate) reservation: Reservation,
}

/// Gives back or charges the difference between a call's reservation and its real usage.
///
/// An error refunds the token and cost reservation: a provider bills no usage we can see for a
/// failed call. The request itself stays counted.
pub(crate) fn settle(
    settle: Option<Settle>,
    result: Result<LlmResponse, LlmError>,
) -> Result<LlmResponse, LlmError> {
    let Some(Settle {
        shared,
        keys,
        reservation,
    }) = settle
    else {
        return result;
    };
    if shared.limiter.local().is_none() {
        return result;
    }
    let reserved = reservation.amounts;
    let mut result = result;
    match &mut result {
        Ok(response) if response.is_stream() => {
            // A stream's usage is known when it ends: settle then.
            let reservation = reservation.answered(response);
            let shared = shared.clone();
            response.on_stream_end(move |answer, end| {
                if let (Some(limiter), Some(actual)) = (
                    shared.limiter.local(),
                    shared.streamed(&reservation, answer, end),
                ) {
                    limiter.reconcile(keys.as_slice(), reserved, actual);
                }
            });
        }
        Ok(response) => {
            let reservation = reservation.answered(response);
            if let (Some(limiter), Some(actual)) = (
                shared.limiter.local(),
                shared.actual(&reservation, response.usage),
            ) {
                limiter.reconcile(keys.as_slice(), reserved, actual);
            }
        }
        Err(_) => {
            if let Some(limiter) = shared.limiter.local() {
                limiter.refund(keys.as_slice(), reservation.unused_on_failure());
            }
        }
    }
    result
}

pin_project! {
    /// The future [`RateLimit`](crate::RateLimit) returns.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F, settle: Option<Settle> },
        Waiting { future: Waiting },
        Failed { error: Option<LlmError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, settle: Option<Settle>) -> Self {
        Self {
            state: State::Called { future, settle },
        }
    }

    pub(crate) fn waiting(future: Waiting) -> Self {
        Self {
            state: State::Waiting { future },
        }
    }

    pub(crate) fn failed(error: LlmError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
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
            StateProj::Called { future, settle } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                Poll::Ready(self::settle(settle.take(), result))
            }
            StateProj::Waiting { future } => future.as_mut().poll(cx),
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}

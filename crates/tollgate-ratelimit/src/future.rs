//! The response future of [`RateLimit`](crate::RateLimit).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tollgate_core::{LlmError, LlmResponse};

use std::sync::Arc;

use crate::{
    either::{Counted, Keys},
    shared::{Reservation, Shared},
};

type Waiting = Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send>>;

/// What a call must settle with its limiter once its real usage is known.
pub(crate) struct Settle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) keys: Keys,
    pub(crate) reservation: Reservation,
    pub(crate) counted: Counted,
}

/// Gives back or charges the difference between a call's reservation and its real usage, where
/// the call was counted.
///
/// An error refunds the token and cost reservation: a provider bills no usage we can see for a
/// failed call, unless the error says what it billed ([`BilledUsage`](tollgate_core::BilledUsage):
/// an answer a content filter withheld), which is settled as an answer's. The request itself
/// stays counted.
pub(crate) fn settle(
    settle: Option<Settle>,
    mut result: Result<LlmResponse, LlmError>,
) -> Result<LlmResponse, LlmError> {
    let Some(Settle {
        shared,
        keys,
        reservation,
        counted,
    }) = settle
    else {
        return result;
    };
    let reserved = reservation.amounts;
    match &mut result {
        Ok(response) if response.is_stream() => {
            // A stream's usage is known when it ends: settle then.
            let reservation = reservation.answered(response);
            response.on_stream_end(move |answer, end| {
                if let Some(actual) = shared.streamed(&reservation, answer, end) {
                    shared.limiter.settle(counted, keys, reserved, actual);
                }
            });
        }
        Ok(response) => {
            let reservation = reservation.answered(response);
            if let Some(actual) = shared.actual(&reservation, response.usage) {
                shared.limiter.settle(counted, keys, reserved, actual);
            }
        }
        // A failure the provider billed all the same (a content filter's): settled with it.
        Err(error) => match tollgate_core::BilledUsage::of(error)
            .and_then(|usage| shared.actual(&reservation, usage))
        {
            Some(actual) => shared.limiter.settle(counted, keys, reserved, actual),
            None => shared
                .limiter
                .give_back(counted, keys, reservation.unused_on_failure()),
        },
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

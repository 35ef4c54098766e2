//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tollgate_core::{Key, LlmError};

use crate::{
    breaker::{Admission, Breaker},
    layer::{Keying, Shared},
};

/// A call let through a breaker: counts its outcome once, or gives its probe slot back if the
/// call is dropped before it ends.
pub(crate) struct Guard {
    shared: Arc<Shared>,
    keyed: Option<Arc<Breaker>>,
    key: Key,
    admission: Admission,
    started: u64,
    done: bool,
}

impl Guard {
    pub(crate) fn new(
        shared: Arc<Shared>,
        keyed: Option<Arc<Breaker>>,
        key: Key,
        admission: Admission,
        started: u64,
    ) -> Self {
        Self {
            shared,
            keyed,
            key,
            admission,
            started,
            done: false,
        }
    }

    fn breaker(&self) -> &Breaker {
        match (&self.keyed, &self.shared.keying) {
            (Some(breaker), _) => breaker,
            (None, Keying::One(_, breaker)) => breaker,
            (None, Keying::By(_)) => unreachable!("a keyed call has its breaker"),
        }
    }

    fn finish(&mut self, outcome: Result<(), &LlmError>) {
        self.done = true;
        let breakers = &self.shared.breakers;
        let verdict = self.shared.classifier.classify(outcome);
        let now = breakers.now();
        let elapsed = now.saturating_sub(self.started);
        let change = self.breaker().record(
            &breakers.inner.settings,
            self.admission,
            verdict,
            elapsed,
            now,
        );
        if let Some(change) = change {
            breakers.announce(&self.key, change);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.breaker().release(self.admission);
        }
    }
}

pin_project! {
    /// The future [`CircuitBreaker`](crate::CircuitBreaker) returns.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Guarded { #[pin] future: F, guard: Option<Guard> },
        Unguarded { #[pin] future: F },
        Refused { error: Option<LlmError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn guarded(future: F, guard: Guard) -> Self {
        Self {
            state: State::Guarded {
                future,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn unguarded(future: F) -> Self {
        Self {
            state: State::Unguarded { future },
        }
    }

    pub(crate) fn refused(error: LlmError) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: Into<LlmError>,
{
    type Output = Result<R, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Guarded { future, guard } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(mut guard) = guard.take() {
                    guard.finish(result.as_ref().map(|_| ()));
                }
                Poll::Ready(result)
            }
            StateProj::Unguarded { future } => future.poll(cx).map_err(Into::into),
            StateProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}

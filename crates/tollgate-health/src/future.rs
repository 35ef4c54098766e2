//! The response future of [`Health`](crate::Health).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tollgate_core::LlmError;

use crate::{
    layer::{Keying, Shared},
    stats::ComponentStats,
};

/// Where and since when a call is being timed.
pub(crate) struct Record {
    pub(crate) shared: Arc<Shared>,
    pub(crate) component: Option<Arc<ComponentStats>>,
    pub(crate) started: u64,
}

impl Record {
    fn finish(self, error: Option<&LlmError>) {
        let stats = &self.shared.stats;
        let component = match (&self.component, &self.shared.keying) {
            (Some(component), _) => component,
            (None, Keying::One(component)) => component,
            (None, Keying::By(_)) => unreachable!("a keyed call has its component"),
        };
        let now = stats.now();
        component.record(
            &stats.inner.config,
            error.map(LlmError::kind),
            now.saturating_sub(self.started),
            now,
        );
    }
}

pin_project! {
    /// The future [`Health`](crate::Health) returns.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Recorded { #[pin] future: F, record: Option<Record> },
        Unrecorded { #[pin] future: F },
        Refused { error: Option<LlmError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn recorded(future: F, record: Record) -> Self {
        Self {
            state: State::Recorded {
                future,
                record: Some(record),
            },
        }
    }

    pub(crate) fn unrecorded(future: F) -> Self {
        Self {
            state: State::Unrecorded { future },
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
            StateProj::Recorded { future, record } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(record) = record.take() {
                    record.finish(result.as_ref().err());
                }
                Poll::Ready(result)
            }
            StateProj::Unrecorded { future } => future.poll(cx).map_err(Into::into),
            StateProj::Refused { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}

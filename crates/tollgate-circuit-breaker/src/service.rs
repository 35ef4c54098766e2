//! `CircuitBreaker<S>`: fails fast while open, counts every outcome while closed.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::{ErrorKind, Key, LlmError, LlmRequest, duration};
use tower_service::Service;

use crate::{
    breaker::Refusal,
    future::{Guard, ResponseFuture},
    shared::Shared,
};

/// Guards calls to `S` with a circuit breaker; built by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.shared.breakers)
            .finish()
    }
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    tollgate_core::define_inner_service_accessors!();
}

fn open_error(key: &Key, refusal: Refusal) -> LlmError {
    match refusal {
        Refusal::Open { retry_after } => LlmError::new(
            ErrorKind::CircuitOpen,
            format!(
                "circuit breaker {:?} is open; it lets a probe through in {}",
                key.as_str(),
                duration::format(retry_after)
            ),
        )
        .with_retry_after(retry_after),
        Refusal::ProbesBusy => LlmError::new(
            ErrorKind::CircuitOpen,
            format!(
                "circuit breaker {:?} is half-open and every probe slot is taken",
                key.as_str()
            ),
        ),
        Refusal::Forced => LlmError::new(
            ErrorKind::CircuitOpen,
            format!(
                "circuit breaker {:?} is held open by an operator",
                key.as_str()
            ),
        ),
    }
}

impl<S, R> Service<LlmRequest> for CircuitBreaker<S>
where
    S: Service<LlmRequest, Response = R>,
    S::Error: Into<LlmError>,
{
    type Response = R;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let shared = &self.shared;
        let breakers = &shared.breakers;
        // Past the key cap the call goes unguarded (the registry warns) rather than failing.
        let Some((key, found)) = shared.keyed.find(&request, |key| breakers.breaker(key)) else {
            return ResponseFuture::unwatched(self.inner.call(request));
        };
        let now = breakers.now();
        let (admitted, change) = shared.keyed.get(&found).acquire(now);
        if let Some(change) = change {
            breakers.announce(&key, change);
        }
        match admitted {
            Ok(admission) => ResponseFuture::watched(
                self.inner.call(request),
                Guard::new(shared.clone(), found, key, admission, now),
            ),
            Err(refusal) => ResponseFuture::refused(open_error(&key, refusal)),
        }
    }
}

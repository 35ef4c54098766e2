//! `CircuitBreaker<S>`: fails fast while open, counts every outcome while closed.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::{ErrorKind, Key, LlmError, LlmRequest, duration};
use tower_service::Service;

use crate::{
    breaker::{Breaker, Refusal},
    future::{Guard, ResponseFuture},
    layer::{CircuitBreakerLayer, Keying},
};

/// Guards calls to `S` with a circuit breaker; built by [`CircuitBreakerLayer`].
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    layer: CircuitBreakerLayer,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: CircuitBreakerLayer) -> Self {
        Self { inner, layer }
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
        let shared = &self.layer.shared;
        let (key, keyed): (Key, Option<Arc<Breaker>>) = match &shared.keying {
            Keying::One(key, _) => (key.clone(), None),
            Keying::By(extract) => {
                let key = extract.extract(&request);
                match shared.breakers.breaker(&key) {
                    Some(breaker) => (key, Some(breaker)),
                    None => return ResponseFuture::unwatched(self.inner.call(request)),
                }
            }
        };
        let breaker = match (&keyed, &shared.keying) {
            (Some(breaker), _) => breaker,
            (None, Keying::One(_, breaker)) => breaker,
            (None, Keying::By(_)) => unreachable!("a keyed call has its breaker"),
        };
        let breakers = &shared.breakers;
        let now = breakers.now();
        let (admitted, change) = breaker.acquire(now);
        if let Some(change) = change {
            breakers.announce(&key, change);
        }
        match admitted {
            Ok(admission) => ResponseFuture::watched(
                self.inner.call(request),
                Guard::new(self.layer.shared.clone(), keyed, key, admission, now),
            ),
            Err(refusal) => ResponseFuture::refused(open_error(&key, refusal)),
        }
    }
}

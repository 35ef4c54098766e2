//! `RateLimit<S>`: admits, waits for or refuses each call, then settles its real usage.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tollgate_core::{
    LlmError, LlmRequest, LlmResponse,
    future::{call_when_ready, take_ready},
};
use tower_service::Service;

use crate::{
    future::{ResponseFuture, Settle},
    policy::{OnLimit, Waited},
    shared::Shared,
};

/// Limits calls to `S` by a [`RateLimiter`](crate::RateLimiter); built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.shared.limiter)
            .finish_non_exhaustive()
    }
}

impl<S> RateLimit<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    tollgate_core::define_inner_service_accessors!();
}

impl<S> Service<LlmRequest> for RateLimit<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + 'static,
    S::Error: Into<LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: LlmRequest) -> Self::Future {
        let shared = &self.shared;
        let keys = shared.keys(&request);
        if keys.as_slice().is_empty() {
            // No scope limits this request: nothing to reserve, so nothing to settle.
            return ResponseFuture::called(self.inner.call(request), None);
        }
        let reservation = match shared.reserve(&request, keys.as_slice()) {
            Ok(reservation) => reservation,
            Err(error) => return ResponseFuture::failed(error),
        };
        if let Some(bound) = reservation.bound {
            // What was reserved is what the provider may write, and no more.
            request.params.max_tokens = Some(bound);
        }
        let tried = match shared
            .limiter
            .admit_now(keys.as_slice(), reservation.amounts)
        {
            Some(Ok(counted)) => {
                shared.telemetry.admitted();
                let settle = reservation.settles().then(|| Settle {
                    shared: shared.clone(),
                    keys,
                    reservation,
                    counted,
                });
                return ResponseFuture::called(self.inner.call(request), settle);
            }
            Some(Err(denial)) if shared.on_limit == OnLimit::Reject => {
                shared.telemetry.denied(&denial);
                return ResponseFuture::failed(denial.into());
            }
            Some(Err(denial)) => Some(denial),
            None => None,
        };
        // Waiting, or a round trip to Redis. The ready inner service goes with the call; this
        // one keeps a fresh clone, which `poll_ready` drives before the next call.
        let shared = shared.clone();
        let mut inner = take_ready(&mut self.inner);
        ResponseFuture::waiting(Box::pin(async move {
            let admitted = shared
                .limiter
                .admit(keys.as_slice(), reservation.amounts, shared.on_limit, tried)
                .await;
            let (counted, waited) = match admitted {
                Ok(admitted) => admitted,
                Err(denial) => {
                    shared.telemetry.denied(&denial);
                    return Err(denial.into());
                }
            };
            shared.telemetry.admitted();
            shared.telemetry.waited(waited);
            let settle = reservation.settles().then(|| Settle {
                shared: shared.clone(),
                keys,
                reservation,
                counted,
            });
            // Admitted: from here on, a failure settles the reservation like any failed call.
            let result = call_when_ready(&mut inner, request).await;
            marked(crate::future::settle(settle, result)?, waited)
        }))
    }
}

/// Marks a response that waited for the limiter.
fn marked(mut response: LlmResponse, waited: Duration) -> Result<LlmResponse, LlmError> {
    if waited > Duration::ZERO {
        response.extensions.insert(Waited(waited));
    }
    Ok(response)
}

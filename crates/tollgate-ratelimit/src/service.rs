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
    policy::{Limiter, OnLimit, Waited},
    shared::{Keys, Shared},
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
        let keys = match shared.bindings.as_slice() {
            [one] if one.when.is_none() => Keys::One([(one.scope, one.key.extract(&request))]),
            many => Keys::Many(
                many.iter()
                    .filter(|binding| binding.applies(&request))
                    .map(|binding| (binding.scope, binding.key.extract(&request)))
                    .collect(),
            ),
        };
        if keys.as_slice().is_empty() {
            // No scope limits this request: nothing to reserve, so nothing to settle.
            return ResponseFuture::called(self.inner.call(request), None);
        }
        let reservation = match shared.reserve(&request) {
            Ok(reservation) => reservation,
            Err(error) => return ResponseFuture::failed(error),
        };
        if let Some(bound) = reservation.bound {
            // What was reserved is what the provider may write, and no more.
            request.params.max_tokens = Some(bound);
        }
        // One arm when Redis is compiled out; the match keeps both builds on one path.
        #[cfg_attr(not(feature = "redis"), allow(clippy::infallible_destructuring_match))]
        let limiter = match &shared.limiter {
            Limiter::Local(limiter) => limiter,
            #[cfg(feature = "redis")]
            Limiter::Redis(_) => return self.call_redis(request, keys, reservation),
        };
        let denial = match limiter.check_and_consume(keys.as_slice(), reservation.amounts) {
            Ok(()) => {
                shared.telemetry.admitted();
                let settle = shared.settles().then(|| Settle {
                    shared: shared.clone(),
                    keys,
                    reservation,
                });
                return ResponseFuture::called(self.inner.call(request), settle);
            }
            Err(denial) => denial,
        };
        let OnLimit::Wait(max_wait) = shared.on_limit else {
            shared.telemetry.denied(&denial);
            return ResponseFuture::failed(denial.into());
        };
        // The ready inner service goes with the waiting call; this one keeps a fresh clone, which
        // `poll_ready` drives before the next call.
        let shared = shared.clone();
        let mut inner = take_ready(&mut self.inner);
        ResponseFuture::waiting(Box::pin(async move {
            let limiter = shared.limiter.local().expect("matched above");
            let waited = match limiter
                .wait_after(keys.as_slice(), reservation.amounts, denial, max_wait)
                .await
            {
                Ok(waited) => waited,
                Err(denial) => {
                    shared.telemetry.denied(&denial);
                    return Err(denial.into());
                }
            };
            shared.telemetry.admitted();
            shared.telemetry.waited(waited);
            let settle = shared.settles().then(|| Settle {
                shared: shared.clone(),
                keys,
                reservation,
            });
            // Admitted: from here on, a failure settles the reservation like any failed call.
            let result = call_when_ready(&mut inner, request).await;
            marked(crate::future::settle(settle, result)?, waited)
        }))
    }
}

#[cfg(feature = "redis")]
impl<S> RateLimit<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + 'static,
    S::Error: Into<LlmError>,
    S::Future: Send + 'static,
{
    /// A call decided by Redis: one round trip (or the failure policy) before the inner call,
    /// and the settlement sent afterwards without holding up the response.
    fn call_redis(
        &mut self,
        request: LlmRequest,
        keys: Keys,
        reservation: crate::shared::Reservation,
    ) -> ResponseFuture<S::Future> {
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        ResponseFuture::waiting(Box::pin(async move {
            let Limiter::Redis(limiter) = &shared.limiter else {
                unreachable!("only a Redis limiter calls through here")
            };
            let amounts = reservation.amounts;
            let (via, waited) = match shared.on_limit {
                OnLimit::Reject => (
                    limiter.admit(keys.as_slice(), amounts).await,
                    Duration::ZERO,
                ),
                OnLimit::Wait(max_wait) => match limiter
                    .admit_waiting(keys.as_slice(), amounts, max_wait)
                    .await
                {
                    Ok((via, waited)) => (Ok(via), waited),
                    Err(denial) => (Err(denial), Duration::ZERO),
                },
            };
            let via = match via {
                Ok(via) => via,
                Err(denial) => {
                    shared.telemetry.denied(&denial);
                    return Err(denial.into());
                }
            };
            shared.telemetry.admitted();
            shared.telemetry.waited(waited);
            let mut result = call_when_ready(&mut inner, request).await;
            if shared.settles() {
                let limiter = limiter.clone();
                match &mut result {
                    Ok(response) if response.is_stream() => {
                        // A stream's usage is known when it ends: settle then.
                        let reservation = reservation.answered(response);
                        let shared = shared.clone();
                        response.on_stream_end(move |answer, end| {
                            let Some(actual) = shared.streamed(&reservation, answer, end) else {
                                return;
                            };
                            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                                runtime.spawn(async move {
                                    limiter
                                        .reconcile_via(keys.as_slice(), amounts, actual, via)
                                        .await;
                                });
                            }
                        });
                    }
                    settled => {
                        let actual = match settled {
                            Ok(response) => {
                                shared.actual(&reservation.answered(response), response.usage)
                            }
                            Err(_) => None,
                        };
                        let failed = settled.is_err();
                        tokio::spawn(async move {
                            let keys = keys.as_slice();
                            if failed {
                                limiter
                                    .refund_via(keys, reservation.unused_on_failure(), via)
                                    .await;
                            } else if let Some(actual) = actual {
                                limiter.reconcile_via(keys, amounts, actual, via).await;
                            }
                        });
                    }
                }
            }
            marked(result?, waited)
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

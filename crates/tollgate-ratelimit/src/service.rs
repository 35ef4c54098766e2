//! `RateLimit<S>`: admits, waits for or refuses each call, then settles its real usage.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use tollgate_core::{Key, LlmError, LlmRequest, LlmResponse};
use tower_service::Service;

use crate::{
    future::{ResponseFuture, Settle},
    layer::{OnLimit, RateLimitLayer, Waited},
    limiter::Scope,
};

/// The keys one request is limited by: one per bound scope, kept inline for the common single scope.
pub(crate) enum Keys {
    One([(Scope, Key); 1]),
    Many(Vec<(Scope, Key)>),
}

impl Keys {
    pub(crate) fn as_slice(&self) -> &[(Scope, Key)] {
        match self {
            Self::One(one) => one,
            Self::Many(many) => many,
        }
    }
}

/// Limits calls to `S` by a [`RateLimiter`](crate::RateLimiter); built by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: RateLimitLayer) -> Self {
        Self { inner, layer }
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

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let shared = &self.layer.shared;
        let keys = match shared.bindings.as_slice() {
            [(scope, key)] => Keys::One([(*scope, key.extract(&request))]),
            many => Keys::Many(
                many.iter()
                    .map(|(scope, key)| (*scope, key.extract(&request)))
                    .collect(),
            ),
        };
        let reservation = match shared.reserve(&request) {
            Ok(reservation) => reservation,
            Err(error) => return ResponseFuture::failed(error),
        };
        let denial = match shared
            .limiter
            .check_and_consume(keys.as_slice(), reservation.amounts)
        {
            Ok(()) => {
                let settle = shared.settles().then(|| Settle {
                    layer: self.layer.clone(),
                    keys,
                    reservation,
                });
                return ResponseFuture::called(self.inner.call(request), settle);
            }
            Err(denial) => denial,
        };
        let OnLimit::Wait(max_wait) = shared.on_limit else {
            return ResponseFuture::failed(denial.into());
        };
        // The ready inner service goes with the waiting call; this one keeps a fresh clone, which
        // `poll_ready` drives before the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::waiting(Box::pin(async move {
            let shared = &layer.shared;
            let waited = shared
                .limiter
                .wait_after(keys.as_slice(), reservation.amounts, denial, max_wait)
                .await
                .map_err(LlmError::from)?;
            let settle = shared.settles().then(|| Settle {
                layer: layer.clone(),
                keys,
                reservation,
            });
            // Admitted: from here on, a failure settles the reservation like any failed call.
            let ready: Result<(), LlmError> = std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into);
            let result = match ready {
                Ok(()) => inner.call(request).await.map_err(Into::into),
                Err(error) => Err(error),
            };
            let mut response = crate::future::settle(settle, result)?;
            if waited > Duration::ZERO {
                response.extensions.insert(Waited(waited));
            }
            Ok(response)
        }))
    }
}

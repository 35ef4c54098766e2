//! `Health<S>`: times each call and records its outcome.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::{ErrorKind, LlmError, LlmRequest};
use tower_service::Service;

use crate::{
    future::{Record, ResponseFuture},
    shared::Shared,
    status::Status,
};

/// Records calls to `S` in [`HealthStats`](crate::HealthStats); built by
/// [`HealthLayer`](crate::HealthLayer).
#[derive(Clone)]
pub struct Health<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Health<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("inner", &self.inner)
            .field("stats", &self.shared.stats)
            .finish()
    }
}

impl<S> Health<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    tollgate_core::define_inner_service_accessors!();
}

impl<S, R> Service<LlmRequest> for Health<S>
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
        // Past the component cap the call is served but not recorded (the statistics warn).
        let Some((key, found)) = shared
            .keyed
            .find(&request, |key| shared.stats.component(key))
        else {
            return ResponseFuture::unwatched(self.inner.call(request));
        };
        let component = shared.keyed.get(&found);
        if component.fails_fast() && component.status() == Status::Unhealthy {
            return ResponseFuture::refused(LlmError::new(
                ErrorKind::Unavailable,
                format!("component {:?} is unhealthy; failing fast", key.as_str()),
            ));
        }
        let started = shared.stats.now();
        let record = Record {
            shared: Arc::clone(shared),
            found,
            started,
        };
        ResponseFuture::watched(self.inner.call(request), record)
    }
}

//! `Cache<S>`: answers from the store, or calls upstream once for every identical request.

use std::{
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use tollgate_core::{
    LlmError, LlmRequest, LlmResponse,
    future::{call_when_ready, take_ready},
};
use tower_service::Service;

use crate::{
    CachedResponse,
    flight::{Flight, Lead},
    future::ResponseFuture,
    shared::{Call, Looked, Shared, Turn},
    store::StoreFuture,
};

/// Caches calls to `S`; built by [`CacheLayer`](crate::CacheLayer).
#[derive(Clone)]
pub struct Cache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Cache<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    tollgate_core::define_inner_service_accessors!();
}

impl<S> Service<LlmRequest> for Cache<S>
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
        let Some(call) = self.shared.begin(&request) else {
            return ResponseFuture::bypass(self.inner.call(request));
        };
        match self.shared.look_up(&call) {
            Looked::Hit(hit) => return ResponseFuture::ready(Ok(hit)),
            Looked::Pending(lookup) => return self.later(request, call, Some(lookup), None),
            Looked::Miss => {}
        }
        // The store answered at once, so who calls upstream is known now: a leader, or a call
        // that never coalesces, goes through the service its caller readied, with no clone of it.
        match self.shared.lead_or_follow(&call, None) {
            Turn::Landed(hit) => ResponseFuture::ready(Ok(hit)),
            Turn::Follow(flight) => self.later(request, call, None, Some(flight)),
            Turn::Alone => self.upstream(request, call, None),
            Turn::Lead(lead) => self.upstream(request, call, Some(lead)),
        }
    }
}

impl<S> Cache<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + 'static,
    S::Error: Into<LlmError>,
    S::Future: Send + 'static,
{
    /// A miss decided at once: the call upstream, settled when it ends.
    fn upstream(
        &mut self,
        request: LlmRequest,
        call: Call,
        lead: Option<Lead>,
    ) -> ResponseFuture<S::Future> {
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        self.shared.telemetry.misses.increment(1);
        let future = self.inner.call(request);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            let result = future.await.map_err(Into::into);
            shared.settle(call, lead, result).await
        }))
    }

    /// A call that must wait first, for a lookup still under way or for the flight it follows.
    /// The ready inner service goes with it; this one keeps a clone.
    fn later(
        &mut self,
        request: LlmRequest,
        call: Call,
        lookup: Option<StoreFuture<Option<Arc<CachedResponse>>>>,
        mut following: Option<Arc<Flight>>,
    ) -> ResponseFuture<S::Future> {
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            if let Some(lookup) = lookup
                && let Some(entry) = lookup.await
            {
                if let Some(hit) = shared.fresh(&call, entry) {
                    return Ok(hit);
                }
                shared.store.remove(call.key).await;
            }
            let lead = loop {
                match shared.lead_or_follow(&call, following.take()) {
                    Turn::Landed(hit) => return Ok(hit),
                    Turn::Alone => break None,
                    Turn::Lead(lead) => break Some(lead),
                    Turn::Follow(flight) => match shared.follow(&flight).await {
                        Some(answer) => return answer,
                        // The leader's caller went away: take its place.
                        None => continue,
                    },
                }
            };
            shared.misses.fetch_add(1, Ordering::Relaxed);
            shared.telemetry.misses.increment(1);
            let result = call_when_ready(&mut inner, request).await;
            shared.settle(call, lead, result).await
        }))
    }
}

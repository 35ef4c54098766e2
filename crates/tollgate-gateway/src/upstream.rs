//! Time spent waiting on upstreams, so a call's overhead (its total time less that) can be told.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use pin_project_lite::pin_project;
use tollgate::{BoxedProvider, LlmError, LlmRequest, LlmResponse};
use tower::{Service, util::BoxCloneSyncService};

/// A call's time waiting on upstreams so far, over every attempt: a request extension the
/// gateway sets, and the clients' wrappers add to. A stream counts until the provider accepted
/// it, which is when the gateway's answer to it can begin.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpstreamTime(Arc<AtomicU64>);

impl UpstreamTime {
    pub(crate) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn add(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// `client`, adding each call's time to the request's [`UpstreamTime`], and the call's trace to
/// what it sends when spans are exported.
pub(crate) fn timed(client: BoxedProvider) -> BoxedProvider {
    BoxCloneSyncService::new(Timed { inner: client })
}

#[derive(Clone)]
struct Timed {
    inner: BoxedProvider,
}

impl Service<LlmRequest> for Timed {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = TimedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: LlmRequest) -> TimedFuture {
        crate::otel::pass_trace(&mut request);
        let clock = request.extensions.get::<UpstreamTime>().cloned();
        TimedFuture {
            call: self.inner.call(request),
            clock: clock.map(|clock| (clock, Instant::now())),
        }
    }
}

pin_project! {
    struct TimedFuture {
        #[pin]
        call: <BoxedProvider as Service<LlmRequest>>::Future,
        clock: Option<(UpstreamTime, Instant)>,
    }
}

impl Future for TimedFuture {
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.call.poll(cx));
        if let Some((clock, started)) = this.clock.take() {
            clock.add(started.elapsed());
        }
        Poll::Ready(out)
    }
}

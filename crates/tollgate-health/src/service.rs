//! `Health<S>`: times each call and records its outcome.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::{ErrorKind, LlmError, LlmRequest};
use tower_service::Service;

use crate::{
    Status,
    future::{Record, ResponseFuture},
    layer::{HealthLayer, Keying},
};

/// Records calls to `S` in [`HealthStats`](crate::HealthStats); built by [`HealthLayer`].
#[derive(Clone, Debug)]
pub struct Health<S> {
    inner: S,
    layer: HealthLayer,
}

impl<S> Health<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: HealthLayer) -> Self {
        Self { inner, layer }
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
        let shared = &self.layer.shared;
        let keyed = match &shared.keying {
            Keying::One(..) => None,
            Keying::By(extract) => {
                let key = extract.extract(&request);
                match shared.stats.component(&key) {
                    Some(component) => Some((key, component)),
                    None => return ResponseFuture::unwatched(self.inner.call(request)),
                }
            }
        };
        let component = match (&keyed, &shared.keying) {
            (Some((_, component)), _) => component,
            (None, Keying::One(component)) => component,
            (None, Keying::By(_)) => unreachable!("a keyed call has its component"),
        };
        if component.fails_fast() && component.status() == Status::Unhealthy {
            let key = keyed.as_ref().map_or("*", |(key, _)| key.as_str());
            return ResponseFuture::refused(LlmError::new(
                ErrorKind::Unavailable,
                format!("component {key:?} is unhealthy; failing fast"),
            ));
        }
        let started = shared.stats.now();
        let record = Record {
            shared: Arc::clone(shared),
            component: keyed.map(|(_, component)| component),
            started,
        };
        ResponseFuture::watched(self.inner.call(request), record)
    }
}

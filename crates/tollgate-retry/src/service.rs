use std::task::{Context, Poll};

use tollgate_core::LlmError;
use tower_service::Service;

use crate::{attempts::RecordAttempts, cap::RetryCap, future::ResponseFuture, policy::RetryPolicy};

/// Retries failed calls to the inner service according to a [`RetryPolicy`].
///
/// The inner service must be `Clone` (each retry calls a clone made ready again) and the request
/// `Clone` (each attempt gets its own copy; an `LlmRequest` clone shares the prompt).
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Retry<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    tollgate_core::define_inner_service_accessors!();
}

impl<S, R> Service<R> for Retry<S>
where
    S: Service<R> + Clone,
    S::Error: Into<LlmError>,
    S::Response: RecordAttempts,
    R: Clone + RetryCap,
{
    type Response = S::Response;
    type Error = LlmError;
    type Future = ResponseFuture<S, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        ResponseFuture::start(&mut self.inner, request, &self.policy)
    }
}

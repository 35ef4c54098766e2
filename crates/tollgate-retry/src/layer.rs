use tower_layer::Layer;

use crate::{Retry, RetryPolicy};

/// Wraps a service in [`Retry`] with a shared [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer applying `policy`; every service it wraps shares the policy's budget.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl Default for RetryLayer {
    /// The default policy (see [`RetryConfig`](crate::RetryConfig)).
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}

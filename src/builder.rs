//! `ServiceBuilder` methods for tollgate's layers, so a stack reads in order.

use tower::ServiceBuilder;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds one method per tollgate layer to [`ServiceBuilder`]; each takes the layer.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{ServiceBuilderExt, prelude::*};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stack = ServiceBuilder::new()
///     .retries(RetryLayer::new(RetryPolicy::builder().max_retries(2).build().unwrap()))
///     .service(SimulatedProvider::new());
/// let answer = stack.oneshot(LlmRequest::new("sim", vec![Message::user("hi")])).await.unwrap();
/// assert_eq!(answer.usage.input_tokens, 7); // "hi" is 1 token, plus 3 framing and 3 priming
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Answers repeated requests from a cache ([`CacheLayer`](crate::cache::CacheLayer)).
    #[cfg(feature = "cache")]
    fn cache(
        self,
        layer: tollgate_cache::CacheLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_cache::CacheLayer, L>>;

    /// Records every call's outcome and latency ([`HealthLayer`](crate::health::HealthLayer)).
    #[cfg(feature = "health")]
    fn health(
        self,
        layer: tollgate_health::HealthLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_health::HealthLayer, L>>;

    /// Guards calls with circuit breakers
    /// ([`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer)).
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker(
        self,
        layer: tollgate_circuit_breaker::CircuitBreakerLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_circuit_breaker::CircuitBreakerLayer, L>>;

    /// Limits calls by quotas ([`RateLimitLayer`](crate::ratelimit::RateLimitLayer)).
    ///
    /// Named so that tower's own `ServiceBuilder::rate_limit` (one fixed window per service
    /// instance) cannot shadow it.
    #[cfg(feature = "ratelimit")]
    fn rate_limits(
        self,
        layer: tollgate_ratelimit::RateLimitLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_ratelimit::RateLimitLayer, L>>;

    /// Retries failed calls ([`RetryLayer`](crate::retry::RetryLayer)).
    ///
    /// Named so that tower's own `ServiceBuilder::retry` (which takes a tower policy) cannot
    /// shadow it.
    #[cfg(feature = "retry")]
    fn retries(
        self,
        layer: tollgate_retry::RetryLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_retry::RetryLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "cache")]
    fn cache(
        self,
        layer: tollgate_cache::CacheLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_cache::CacheLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "health")]
    fn health(
        self,
        layer: tollgate_health::HealthLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_health::HealthLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker(
        self,
        layer: tollgate_circuit_breaker::CircuitBreakerLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_circuit_breaker::CircuitBreakerLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "ratelimit")]
    fn rate_limits(
        self,
        layer: tollgate_ratelimit::RateLimitLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_ratelimit::RateLimitLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn retries(
        self,
        layer: tollgate_retry::RetryLayer,
    ) -> ServiceBuilder<tower_layer::Stack<tollgate_retry::RetryLayer, L>> {
        self.layer(layer)
    }
}

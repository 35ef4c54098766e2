//! tollgate: production hardening for LLM API calls, as tower middleware.
//!
//! This facade re-exports the core types every layer speaks ([`LlmRequest`], [`LlmResponse`],
//! [`LlmError`] and its [`ErrorKind`]s, keys, pricing, and the [`SimulatedProvider`]). Each layer
//! lives in its own crate and is re-exported here as a module behind a feature of the same name:
//!
//! | feature | module | layer |
//! |---|---|---|
//! | `cache` (default) | [`cache`] | `CacheLayer`: exact-match response cache, memory and file stores, single-flight |
//! | `circuit-breaker` (default) | [`circuit_breaker`] | `CircuitBreakerLayer`: per-key breakers, sliding windows, slow calls, half-open probes |
//! | `health` (default) | [`health`] | `HealthLayer` + `HealthRegistry`: passive call statistics, active checks, health reports |
//! | `ratelimit` (default) | [`ratelimit`] | `RateLimitLayer`: multi-tier request, token and cost quotas per key |
//! | `retry` (default) | [`retry`] | `RetryLayer`: backoff with jitter, `Retry-After`, retry budget |
//!
//! With the `config` feature (default), [`Config`] reads the whole stack from one YAML file and
//! [`Stack::from_config`] builds it in the recommended order, with a [`CostReport`] of spend per
//! tenant, provider, model and role. [`ServiceBuilderExt`] adds one method per layer to tower's
//! `ServiceBuilder`, for stacks built by hand.
//!
//! # Example
//!
//! ```
//! use tollgate::prelude::*;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let provider = SimulatedProvider::new();
//! let stack = ServiceBuilder::new().service(provider.clone());
//!
//! let req = LlmRequest::new("sim-small", vec![Message::user("Say hi")]).with_tenant("acme");
//! let answer = stack.oneshot(req).await.unwrap();
//! assert_eq!(answer.usage.input_tokens, 8);
//! assert_eq!(provider.calls(), 1);
//! # }
//! ```

pub use tollgate_core::*;

mod builder;
pub use builder::ServiceBuilderExt;

#[cfg(feature = "config")]
mod config;
#[cfg(feature = "config")]
mod cost;
#[cfg(feature = "config")]
mod stack;
#[cfg(feature = "config")]
pub use config::{
    CachingConfig, Config, ConfigErrors, DEFAULT_QUOTA_VAR, DEFAULT_ROLE, Limits, PerProvider,
    ProviderConfig, ProviderKind, REDIS_URL_VAR, RateLimitingConfig, RedisSection, ResolvedRole,
    RoleConfig, StoreKind, Switch,
};
#[cfg(feature = "config")]
pub use cost::{
    Budget, CostReport, CostTracker, CostsConfig, DEFAULT_MAX_TENANTS, NO_TENANT, OtherTenants,
    Spend, TenantSpend,
};
#[cfg(feature = "config")]
pub use stack::{BoxedProvider, Stack, StackBuilder};

/// Exact-match response caching with memory and file stores (crate `tollgate-cache`).
#[cfg(feature = "cache")]
pub mod cache {
    pub use tollgate_cache::*;
}

/// Circuit breakers per key with count or time windows (crate `tollgate-circuit-breaker`).
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker {
    pub use tollgate_circuit_breaker::*;
}

/// Passive call statistics, active checks and health reports (crate `tollgate-health`).
#[cfg(feature = "health")]
pub mod health {
    pub use tollgate_health::*;
}

/// Provider clients: OpenAI-compatible servers and Anthropic (crate `tollgate-providers`).
#[cfg(feature = "providers")]
pub mod providers {
    pub use tollgate_providers::*;
}

/// Multi-tier request, token and cost quotas per key (crate `tollgate-ratelimit`).
#[cfg(feature = "ratelimit")]
pub mod ratelimit {
    pub use tollgate_ratelimit::*;
}

/// Retries with backoff, jitter, `Retry-After` and a retry budget (crate `tollgate-retry`).
#[cfg(feature = "retry")]
pub mod retry {
    pub use tollgate_retry::*;
}

/// The types most programs using tollgate need, in one import.
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    #[cfg(feature = "circuit-breaker")]
    pub use tollgate_circuit_breaker::{
        CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers,
    };
    pub use tollgate_core::{
        ErrorKind, Key, KeyExtractor, LlmError, LlmRequest, LlmResponse, Message, MicroUsd,
        PricingTable, SimulatedProvider, Usage,
    };
    #[cfg(feature = "ratelimit")]
    pub use tollgate_ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier};
    #[cfg(feature = "retry")]
    pub use tollgate_retry::{RetryLayer, RetryPolicy};
}

// Compiles and runs the README's Rust blocks as doctests, so the README cannot drift from the API.
// They use every layer and Redis, so they run with `--all-features` (the README's test command).
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

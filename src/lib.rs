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
//!
//! # Memory
//!
//! Every table that grows with the keys it sees (tenants, users, providers, prompts) has a bound
//! and a stated policy at the bound, so a process that lives for weeks, or whose tenants are end
//! users, stays the size it was after warm-up. [`Stack::sizes`] tells how full each table is.
//! `benches/tenants.rs` measures the process under two million new tenants.
//!
//! | table | bounded by | at the bound | shown by |
//! |---|---|---|---|
//! | cost report, per tenant | `costs.max_tenants` (default [`DEFAULT_MAX_TENANTS`]) | the eighth idle longest are folded into [`CostReport::other_tenants`], every sum exact; [`CostTracker::drain`] hands spend off first | `tests/bounded_memory.rs`, `tests/costs.rs` |
//! | cost report, per provider / model / role | the configuration's providers and roles, and the models they answer to | never folded: exact | `tests/bounded_memory.rs` |
//! | limiter keys (in this process, or Redis's local fallback) | `rate_limiting.max_keys` (default 100,000) | keys whose tiers are full again are dropped first; if none is, the new key is refused (`Unavailable`), never evicting one that still owes time | `keys_that_refill_are_forgotten_and_the_cap_refuses_new_keys`, `one_description_of_the_limits_builds_the_redis_limiter_and_caps_its_fallback` |
//! | limiter counts per key (opt-in) | the live keys | a key's counts go when it is dropped or reset | `a_reset_key_takes_its_counts_with_it` |
//! | limiter wait queues | the callers waiting | the last caller out (served, timed out or dropped) removes its queue | `a_dropped_waiter_does_not_block_the_next` |
//! | limiter keys in Redis | Redis's memory, not this process's | each key expires once every tier is full again | `keys_expire_once_every_tier_is_full_again_and_carry_a_hash_tag` |
//! | Redis leases (hybrid mode) | 10,000 key sets (`ratelimit::MAX_LEASE_SETS`, feature `redis`) | every lease nobody is refilling is dropped and its permits handed back to Redis | `past_the_lease_set_bound_idle_leases_are_dropped_and_their_permits_handed_back` |
//! | circuit breakers | `max_keys` (default 1,000) | the breaker idle longest past `idle_timeout` (default 1 h) is forgotten; if none is, the call goes through unguarded, with a warning | `keys_are_bounded_and_idle_breakers_make_room` |
//! | a breaker's window | its size: a ring of `count` calls, or one bucket per second of `time` | old calls leave as new ones come | `a_time_window_forgets_old_failures` |
//! | health components | `max_components` (default 100) | calls for a new component are served but not recorded, with a warning | `components_past_the_cap_are_not_recorded_and_their_calls_go_through` |
//! | a component's window | `window_calls` (default 1,000) and `window_span` (default 5 m) | the oldest call leaves | `a_components_window_keeps_at_most_window_calls`, `failures_in_a_row_and_an_old_window_are_judged_too` |
//! | cache single-flight | the distinct requests calling upstream | an entry leaves when its call lands, or its leader is dropped | `a_waiter_takes_over_when_the_leader_is_dropped` |
//! | memory cache store | `max_bytes` of memory: each answer's text and record, plus [`cache::store::MEMORY_ENTRY_OVERHEAD`] for what moka and the allocator spend on it | moka evicts (TinyLFU admission, LRU eviction); each entry also leaves when its TTL is up | `the_memory_store_stays_under_its_byte_bound` |
//! | file cache store and its index | `max_bytes`, and `max_entries` (default one per 4 KiB of `max_bytes`; 150 to 200 bytes of index each) | the oldest entries are removed first | `the_file_store_evicts_oldest_first_and_cleans_up_in_the_background`, `the_file_store_holds_at_most_its_entry_bound_however_small_the_answers` |
//! | retry budget | fixed: ten counters per budget, one budget per provider | no per-key state | `an_exhausted_budget_stops_retries_until_successes_refill_it` |
//!
//! The tests are in the `tests/` folder of the crate that owns the table.

// Core's types and the modules a user reads time, streams and HTTP types through; its internal
// helpers (`counted`, `non_zero`, `rng`, `duration`, its Redis connection) stay in core.
pub use tollgate_core::{
    AssistantMessage, BoxError, ByModel, ByPrincipal, ByProvider, ByRole, ByTenant, CacheControl,
    CharEstimator, Choice, ConfigError, Content, ErrorKind, ExtraParams, Fault, FinishReason,
    FunctionCall, Global, InvalidPrice, JsonMap, Key, KeyExtractor, LlmError, LlmRequest,
    LlmResponse, LongContext, Message, MicroUsd, ModelPrice, Operation, Outcome, Params, Preset,
    PriceCatalog, PricingTable, Priority, REASONING_SIGNATURE, RequestMeta, Role, SharedMap,
    SimulatedFuture, SimulatedProvider, SimulatedProviderBuilder, TokenEstimator, ToolCall, Usage,
    WordEstimator, clock, future, http, stream, telemetry,
};
// What a request may cost, and what an upstream may be shown saying.
pub use tollgate_core::{
    DEFAULT_MAX_TOKENS, MAX_MODEL_ID, MaxTokensName, NoRetry, NotAWholeNumber, UpstreamError,
    is_model_id, known_output_limit, redact, upstream_summary, whole_number,
};

mod builder;
pub use builder::ServiceBuilderExt;

#[cfg(feature = "config")]
mod billed;
#[cfg(feature = "config")]
mod call_metrics;
#[cfg(feature = "config")]
mod config;
#[cfg(feature = "config")]
mod cost;
#[cfg(feature = "config")]
mod recorder;
#[cfg(feature = "config")]
mod stack;
#[cfg(feature = "config")]
pub use billed::{BilledCall, OnBilled};
#[cfg(feature = "config")]
pub use call_metrics::MetricsConfig;
#[cfg(feature = "config")]
pub use config::{
    CachingConfig, Config, ConfigDocument, ConfigErrors, DEFAULT_QUOTA_VAR, DEFAULT_ROLE, Limits,
    PerProvider, PricingConfig, ProviderConfig, ProviderKind, REDIS_URL_VAR, RateLimitingConfig,
    RedisConfig, ResolvedRole, ResolvedTarget, RoleConfig, RoutingConfig, StoreKind, Switch,
    TargetConfig,
};
#[cfg(feature = "config")]
pub use cost::{
    Budget, CostReport, CostTracker, CostsConfig, DEFAULT_MAX_TENANTS, NO_TENANT, OtherTenants,
    Spend, TenantSpend,
};
#[cfg(feature = "config")]
pub use recorder::{CallRecorder, OnCall};
#[cfg(feature = "config")]
pub use stack::{BoxedProvider, OutsideCall, Sizes, Stack, StackBuilder, StackFuture};

/// One record per call ([`CallRecord`](log::CallRecord)) and the log that writes them to sinks
/// off the call path ([`tollgate_log`]); [`StackBuilder::on_call`] hands a stack's records on.
#[cfg(feature = "config")]
pub mod log {
    pub use tollgate_log::*;
}

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

/// Routing over deployments: balancing, fallbacks, cooldowns, bulkheads and hedging (crate
/// `tollgate-router`).
#[cfg(feature = "router")]
pub mod router {
    pub use tollgate_router::*;
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

/// Where Redis is (one server, a Redis Cluster, Sentinel) and the one connection the limiter, the
/// cache and the health check share (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use tollgate_core::redis::*;
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

//! Rate limits for LLM calls as a tower layer: multi-tier GCRA quotas on requests, tokens and
//! cost, per key, checked across several keys at once.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::{ByTenant, ErrorKind, LlmRequest, Message, SimulatedProvider, clock::TokioClock};
//! use tollgate_ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 60 requests a minute per tenant, at most 10 at once; and 1,000 an hour.
//! let quota = Quota::new([
//!     Tier::requests(60, Duration::from_secs(60)).with_burst(10),
//!     Tier::requests(1_000, Duration::from_secs(3_600)),
//! ])
//! .unwrap();
//! // Tokio's clock, so this example runs on paused time; leave it out for the faster default.
//! let limiter = RateLimiter::builder().scope("tenant", quota).clock(TokioClock::new()).build().unwrap();
//! let mut stack = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter.clone(), ByTenant))
//!     .service(SimulatedProvider::new());
//!
//! let req = LlmRequest::new("sim", vec![Message::user("hi")]).with_tenant("acme");
//! for _ in 0..10 {
//!     stack.ready().await.unwrap().call(req.clone()).await.unwrap();
//! }
//! let err = stack.ready().await.unwrap().call(req).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::RateLimited);
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(1))); // one request a second refills
//! assert_eq!(limiter.metrics().denied, 1);
//! # }
//! ```
//!
//! # Quotas
//!
//! A [`Quota`] is any number of [`Tier`]s, each `limit` units of a [`Dimension`] per `period` with
//! a `burst`: requests per minute, tokens per hour, dollars per day. Every tier is a GCRA with one
//! timestamp of state; a call is admitted only when every tier admits it, and a refused call
//! consumes nothing in any tier.
//!
//! # Scopes and hierarchies
//!
//! A [`RateLimiter`] has named scopes (`user`, `org`, `provider`), each with a default quota and
//! per-key overrides. A call names one key per scope; every key must admit it, or nothing is
//! consumed anywhere, and the [`Denial`] names the scope, key and tier that refused. Several users
//! drawing on one organization's pool is two scopes: the users' own and the organization's.
//!
//! # Tokens and cost
//!
//! When a quota counts tokens, the layer reserves the most the provider can bill before the call:
//! the prompt's estimate (by a [`TokenEstimator`](tollgate_core::TokenEstimator), over everything
//! the provider reads), plus the answer's bound times every answer the call asks for (`n`,
//! `best_of`). A call that sets no bound is reserved the layer's
//! [`default_output_tokens`](RateLimitLayerBuilder::default_output_tokens) (by default the
//! model's known output limit, else 4,096) and sent it as its `max_tokens`, so its answer cannot
//! outgrow the reservation. The call then settles with the response's real
//! [`Usage`](tollgate_core::Usage): refunding what went unused, charging what went over (a
//! provider that ignored its bound; it is counted as `tollgate.limiter.overrun.*`). Cost works the
//! same in micro-dollars from a [`PricingTable`](tollgate_core::PricingTable), at the request's
//! [`PriceCeiling`](tollgate_core::PriceCeiling) when it carries one and settled at its answer's
//! [`AnsweredPrice`](tollgate_core::AnsweredPrice); a cost tier that refuses is a spent budget, and
//! converts to [`ErrorKind::BudgetExceeded`](tollgate_core::ErrorKind::BudgetExceeded). A rolling
//! budget refills continuously (GCRA): `$100 per 30d` allows $100 at once, then about $3.33 a day,
//! so up to about $200 within one 30-day span.
//!
//! A calendar tier ([`Tier::calendar`], `budgets:` in [`Limits`]) is the hard cap finance means:
//! at most its limit within each calendar day, week or month of a [`Calendar`] (UTC or a named
//! time zone), whatever the concurrency, with nothing back until the next period begins. Its
//! refusal's [`Denial::period`] says what the period spent and when it resets. A budget may carry
//! a [`Degrade`]: the share under which a gateway sends calls to a cheaper role instead.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tollgate_core::{MicroUsd, clock::ManualClock};
//! use tollgate_ratelimit::{Amounts, Calendar, Dimension, Period, Quota, RateLimiter, Tier};
//!
//! let clock = ManualClock::new();
//! let monthly = Tier::calendar(Dimension::Cost, MicroUsd::from_dollars(500).0, Calendar::utc(Period::Month));
//! let limiter = RateLimiter::builder()
//!     .scope("team", Quota::new([monthly]).unwrap())
//!     .clock(clock.clone())
//!     // 2026-12-31T23:00:00Z: an hour of December left.
//!     .wall_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_758_000))
//!     .build()
//!     .unwrap();
//! let team = limiter.scope("team").unwrap();
//! let spend = |dollars| Amounts::cost(MicroUsd::from_dollars(dollars));
//! limiter.check_and_consume(&[(team, "search")], spend(450)).unwrap();
//! let denial = limiter.check_and_consume(&[(team, "search")], spend(100)).unwrap_err();
//! assert_eq!(denial.retry_after(), Some(Duration::from_secs(3_600)));
//! assert_eq!(denial.period().unwrap().0, MicroUsd::from_dollars(450).0);
//! clock.advance(Duration::from_secs(3_600)); // January: the whole $500 again
//! limiter.check_and_consume(&[(team, "search")], spend(500)).unwrap();
//! ```
//!
//! So a budget is passed only by what a provider bills past the bound it was sent, or past the
//! prompt's estimate, and each is charged as soon as the call settles.
//!
//! # On denial
//!
//! [`OnLimit::Reject`] fails at once with `RateLimited` and the exact `retry_after`.
//! [`OnLimit::Wait`] waits in a first-come-first-served line per key, up to a deadline; a dropped
//! caller leaves the line at once. Either way a call that can never fit (more tokens than a tier's
//! burst) fails at once.
//!
//! # Time
//!
//! A limiter reads time on every call through a [`Clock`](tollgate_core::clock::Clock): by default
//! the CPU's time-stamp counter ([`QuantaClock`](tollgate_core::clock::QuantaClock)), which costs a
//! few nanoseconds where `Instant::now` costs 20–30. Tests on tokio's paused time give the builder
//! a [`TokioClock`](tollgate_core::clock::TokioClock), as the example above does.
//!
//! # Shared through Redis
//!
//! With the `redis` feature, a `RedisRateLimiter` holds the same quotas in Redis, so every
//! process shares them and a restart forgets nothing: one Lua script per decision checks and
//! consumes every tier of every key atomically on the server's clock. When Redis does not answer
//! within its timeout, an `OnRedisFailure` policy decides (fail open, fail closed, or a local
//! limiter with a share of each tier); a small breaker stops calling a dead Redis and probes it
//! back. Redis is one server, a Redis Cluster or the master Sentinel names, and a failover is
//! followed by itself. Hybrid mode leases batches of permits to cut round trips.
//! See the type's docs for keys, Redis Cluster, failover and the hybrid bound.
//!
//! [`RateLimitLayer`] takes either limiter as a [`Limiter`], which gives both one API: check,
//! admit, wait, settle, read and reset a key the same way whichever store holds it.
//!
//! # Memory
//!
//! A key whose tiers are all full again is the same as a key never seen, so it is forgotten: by a
//! sweep that runs whenever a shard's table would grow, or by [`RateLimiter::sweep`]. A cap on
//! tracked keys ([`RateLimiterBuilder::max_keys`]) bounds the rest. A tracked key costs one 64-byte
//! table slot (keys of up to 22 bytes and quotas of up to 3 tiers fit inside it) at the table's
//! load: about 140 bytes of resident memory per key as `benches/ratelimit.rs` measures it, with
//! no allocation of its own.

mod admission;
mod calendar;
mod config;
mod defaults;
mod definition;
mod degrade;
mod denial;
mod either;
pub mod future;
mod gcra;
mod layer;
mod limiter;
mod limits;
mod metrics;
mod policy;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod shared;
mod store;
mod telemetry;

pub use admission::Admission;
pub use calendar::{Calendar, Period};
pub use config::{
    DEFAULT_TENANT, KeyBy, KeyField, PRINCIPAL_SCOPE, PROVIDER_SCOPE, REDIS_URL_VAR, ROLE_SCOPE,
    RateLimitConfig, ScopeConfig, TENANT_SCOPE, cross_slot_error, tiers_var,
};
pub use defaults::{
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_LOCAL_SHARE, DEFAULT_PREFIX, DEFAULT_PROBE_INTERVAL,
    DEFAULT_REDIS_TIMEOUT,
};
pub use degrade::{Degrade, Share};
pub use denial::{Denial, DenialReason};
pub use either::Limiter;
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
pub use limiter::{DEFAULT_MAX_KEYS, RateLimiter, RateLimiterBuilder, Scope, Status, TierStatus};
pub use limits::{Amount, BudgetConfig, Limits, TierConfig};
pub use metrics::Metrics;
pub use policy::{OnLimit, UnpricedModels, Waited};
pub use quota::{Amounts, Dimension, Quota, Tier};
#[cfg(feature = "redis")]
pub use redis::{
    Backend, MAX_LEASE_SETS, OnRedisFailure, RedisMetrics, RedisRateLimiter,
    RedisRateLimiterBuilder,
};
pub use service::RateLimit;
#[doc(no_inline)]
pub use tollgate_core::redis::{LeaseConfig, OnFailureConfig, RedisConfig};

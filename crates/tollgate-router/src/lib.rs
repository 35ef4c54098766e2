//! Routing for LLM calls across many deployments, as a tower `Service<LlmRequest>`: balancing
//! inside a group, fallbacks to other groups, cooldowns read from the provider's own headers,
//! a bulkhead per deployment, and hedging.
//!
//! A **deployment** is one place a call can go: a provider's client (with its own retry, circuit
//! breaker and health layers), the model it serves, a weight and a bulkhead. A **group** is the
//! set of deployments that can serve one role or model; a request goes to the group its role
//! names (`meta.role`), or to the default group.
//!
//! # Example
//!
//! ```
//! use tollgate_core::{LlmRequest, Message, Outcome, SimulatedProvider};
//! use tollgate_router::{Deployment, Group, Router, Served, Strategy};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let primary = SimulatedProvider::builder().script([Outcome::Overloaded]).build();
//! let secondary = SimulatedProvider::new();
//!
//! let router = Router::builder()
//!     .deployment(Deployment::new("primary", primary.clone()).model("big-model"))
//!     .deployment(Deployment::new("secondary", secondary.clone()).model("big-model"))
//!     .group(Group::new("default", ["primary", "secondary"]).strategy(Strategy::Priority))
//!     .build()
//!     .unwrap();
//!
//! let answer = router
//!     .oneshot(LlmRequest::new("", vec![Message::user("hi")]))
//!     .await
//!     .unwrap();
//! let served = answer.extensions.get::<Served>().unwrap();
//! assert_eq!((&*served.deployment, served.moves), ("secondary", 1));
//! assert_eq!((primary.calls(), secondary.calls()), (1, 1));
//! # }
//! ```
//!
//! # Balancing
//!
//! Each group has a [`Strategy`]: weighted random (the default), priority order, least calls in
//! flight, or lowest latency (power of two choices over a peak-EWMA of each deployment's
//! latency times its calls in flight, as tower's `p2c` balancer over `PeakEwma`). Only
//! deployments that can take a call now are considered: not tried by this call, not cooling
//! down, not at their `max_in_flight`.
//!
//! # Moves
//!
//! | The deployment failed with | The call goes to |
//! |---|---|
//! | `Overloaded`, `RateLimited`, `CircuitOpen`, `Server`, `Timeout`, `Connect`, `Unavailable` | the next deployment of its group, then the groups in its `fallbacks`, in order |
//! | `Auth` (the deployment's key was refused) | the same, and the deployment is left out for `cooldown.auth` |
//! | `ContextWindow` (or an `InvalidRequest` saying the prompt is too long) | the group's `context_window_fallbacks` |
//! | `ContentFilter` | the group's `content_policy_fallbacks` |
//! | an upstream status listed in the group's `fallback_on_status` | the next deployment, then `fallbacks` |
//! | anything else (`InvalidRequest`, `BudgetExceeded`, ...) | nowhere: the error is the answer |
//!
//! A call makes at most [`max_fallbacks`](RouterConfig::max_fallbacks) moves (a hedge is one),
//! all within the router's `timeout` or the request's [`Deadline`]. A stream moves only before
//! its first event: the router reads that event before it answers, and an error after it is the
//! caller's. Every answer carries a [`Served`] extension: the deployment, its group, the moves.
//! When every move failed, the last error is returned, with the deployments tried in its message.
//!
//! # Cooldowns and adaptive traffic
//!
//! A deployment is skipped, with no call sent to learn it, while:
//! - a 429 (or overloaded) answer's `Retry-After` runs; a 429 without one cools it for
//!   `cooldown.duration`;
//! - its provider's rate-limit headers (a [`RateLimitSnapshot`](tollgate_core::RateLimitSnapshot)
//!   on its answers and errors) say a limit has nothing left, until that limit resets;
//! - it has failed `cooldown.failures` times within `cooldown.window`, for `cooldown.duration`;
//! - its circuit breaker is open, for as long as the breaker says.
//!
//! A group with nowhere else to go (one deployment, no fallbacks) still calls its deployment,
//! leaving the provider and its breaker to answer for themselves. When every deployment a call
//! could go to is cooling down, the error says why, in the kind a direct call would have had
//! (`RateLimited` for a pause the provider asked for or a spent limit, `CircuitOpen`, `Auth`,
//! `Unavailable` after repeated failures), with a `retry_after` for when the first is free.
//!
//! A deployment whose provider says less than [`adaptive_below`](RouterConfig::adaptive_below)
//! of a limit is left gets proportionally less traffic until that limit resets, so calls slow
//! down before the provider says no. Every cooldown is logged (`tracing`, at info) and counted
//! ([`Router::stats`]).
//!
//! Cooldowns and limit readings are shared across processes with a `redis` section (in the
//! facade's and the gateway's configuration): [`Router::health`] is the router's
//! [`HealthBoard`], which hands out each cooldown it decides (deployment, reason, end) and each
//! limit reading that moved as a [`Notice`], and applies those of other processes, the later
//! cooldown winning; the facade carries them through Redis, so a 429 one process receives keeps
//! every process's calls away within a second. Calls still read only memory: a call that
//! changes a cooldown marks it, and the board's holder carries the news on its own time.
//!
//! # Bulkhead and hedging
//!
//! A deployment with `max_in_flight` takes no more calls at once: the router picks another, or,
//! for a group with `wait: true`, waits in line (first come, first served) for room. A group with
//! [`hedge_after`](GroupConfig::hedge_after) sends a second call to another deployment when the
//! first has not answered in time (a fixed time, or the deployment's recent 95th percentile);
//! the first answer wins and the other call is dropped.

mod attempt;
mod builder;
mod config;
mod future;
mod moves;
mod news;
mod pick;
mod served;
mod service;
mod shared;
mod state;
mod table;

pub use builder::{Deployment, Group, RouterBuilder};
pub use config::{CooldownConfig, GroupConfig, HedgeAfter, RouterConfig, Strategy};
pub use future::RouteFuture;
pub use served::{Deadline, Served};
pub use service::Router;
pub use shared::{BoardMetrics, HealthBoard, Notice};
pub use state::{CooldownReason, DeploymentStats};
pub use table::RouterMetrics;

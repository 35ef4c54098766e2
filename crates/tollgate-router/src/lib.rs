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
//! **A failure moves before it is retried.** While a call has somewhere else to go (a deployment
//! of its group or of a later fallback group that it has not tried and that is not cooling
//! down, and a move left under `max_fallbacks`), the router caps the retries the deployment's own
//! retry layer may make for it ([`RequestMeta::retry_cap`](tollgate_core::RequestMeta::retry_cap))
//! at the group's [`retries_before_move`](GroupConfig::retries_before_move), 0 by default: a
//! failing deployment costs the call one attempt, not its backoff schedule. The last place left
//! runs its retry policy in full, as a call with no router would.
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
//!   when that ends it is on trial: it takes one call at a time (where calls can go elsewhere)
//!   until one answers, and a failed trial cools it again at once, so calls arriving together
//!   do not all pay for learning whether it is back;
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
//!
//! # Prompt-cache affinity
//!
//! A provider's prompt cache matches the first tokens of a prompt, on the deployment that saw
//! them. A group with [`affinity: prefix`](GroupConfig::affinity) sends the calls that open with
//! the same system (or developer) messages and tools to the same deployment, the prefix's home,
//! while it can take them:
//!
//! - A call's prefix is hashed once (foldhash, in the order its fields came); a call with no
//!   system message and no tools has no prefix, and the group's strategy picks for it.
//! - A new prefix's home is the deployment, among those that can take a call now, with the
//!   fewest prefixes for its weight (ties broken by rendezvous rank): prefixes are spread by the
//!   weights exactly, whatever order they arrive in, so 20 prefixes over weights 2:1:1 are 10, 5
//!   and 5. Prefixes are spread, not calls: a prefix busier than the others weighs on its home
//!   alone, as it must for its cache to be hit.
//! - A home that cannot take a call (cooling down, at its `max_in_flight`, already tried by this
//!   call, or passing on part of its traffic while its provider's limit runs low) hands it to the
//!   prefix's stand-in, the open deployment ranked first for the prefix by weighted rendezvous
//!   hashing (`-weight / ln(u)`). Only that home's prefixes move, each to one deployment; they go
//!   back home when it can take them again, where a short cooldown leaves the cache warm.
//! - The answer's [`Served`] names the deployment, as for any call; moves, hedges and fallback
//!   groups work as without affinity (a hedge goes to the stand-in; another group uses its own
//!   strategy, or its own affinity).
//!
//! The homes are a table in the process, two generations of 4,096 prefixes per group: a prefix
//! unseen for a whole generation is forgotten and given a home again when it returns. The
//! trade-off, against stateless rendezvous hashing over all deployments (which every process
//! would agree on): rendezvous spreads a few dozen prefixes by the weights only roughly (with 20
//! prefixes its split varies by about ten points either way), while the table spreads them
//! exactly but is its own in each process, so with several gateway processes a prefix may have a
//! home in each, and be cached at most once per process rather than once per deployment. The
//! added cost is one hash of the prefix and one uncontended lock per call
//! (`benches/README.md`).
//!
//! # Active probes
//!
//! A group with [`probe: { every }`](GroupConfig::probe) sends a deployment cooling down after
//! failures, an open circuit breaker or a refused key a tiny call every `every`: one user message
//! and `max_tokens: 1` to its model (one word to embed, for a deployment whose last call asked
//! for embeddings). When one is answered, its cooldown ends and its failures are forgotten: it
//! comes back then, instead of on the first real call after the cooldown. A probe that fails
//! keeps it out until the next probe has had its time to answer (twice `every`, or the
//! `Retry-After` it gave); one refused as a bad request (a model that takes no chat) says nothing
//! either way, and the cooldown runs its course. A pause the provider asked for (`Retry-After`,
//! a 429, a spent rate limit) is not probed: the provider said when to come back.
//!
//! Probes go through the deployment's own service, so they are real upstream calls, billed like
//! any other, and count in its breaker and statistics; each is counted in
//! [`DeploymentStats::probes`] and `tollgate.router.probes` (by deployment and outcome). They run
//! as one future, [`Router::probes`], for the application to spawn; it ends when the router is
//! dropped. A probe that has not answered within `every` has failed. A probe makes one attempt
//! (no retries below the router: the next probe is the retry). Where cooldowns are shared
//! between processes ([`HealthBoard`]), each process probes for itself, and a cooldown another
//! process shares that an answered probe here has already ended is not taken back.

mod affinity;
mod attempt;
mod builder;
mod config;
mod future;
mod moves;
mod news;
mod pick;
mod probe;
mod served;
mod service;
mod shared;
mod state;
mod table;

pub use builder::{Deployment, Group, RouterBuilder};
pub use config::{
    Affinity, CooldownConfig, GroupConfig, HedgeAfter, ProbeConfig, RouterConfig, Strategy,
};
pub use future::RouteFuture;
pub use probe::Probes;
pub use served::{Deadline, Served};
pub use service::Router;
pub use shared::{BoardMetrics, HealthBoard, Notice};
pub use state::{CooldownReason, DeploymentStats};
pub use table::RouterMetrics;

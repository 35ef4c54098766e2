//! Health for LLM calls: passive statistics from every call through a tower layer, active checks
//! run on a schedule, and health reports with liveness and readiness views.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::{LlmRequest, Message, Outcome, SimulatedProvider, clock::TokioClock};
//! use tollgate_health::{HealthConfig, HealthLayer, HealthStats, Status};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let config = HealthConfig { minimum_calls: 4, ..Default::default() };
//! // Tokio's clock, so this example runs on paused time; leave it out for the faster default.
//! let stats = HealthStats::with_clock(config, TokioClock::new()).unwrap();
//! let provider = SimulatedProvider::builder()
//!     .latency(Duration::from_millis(200))
//!     .script([Outcome::Success, Outcome::Server, Outcome::Success, Outcome::Success])
//!     .build();
//! let mut stack = ServiceBuilder::new().layer(HealthLayer::new(stats.clone())).service(provider);
//! for _ in 0..4 {
//!     let _ = stack.ready().await.unwrap().call(LlmRequest::new("sim", vec![Message::user("hi")])).await;
//! }
//! let component = stats.component_snapshot("*").unwrap();
//! assert_eq!(component.calls, 4);
//! assert_eq!(component.failures["server"], 1);
//! assert_eq!(component.window.latency_ms.p95, 200.0);
//! assert_eq!(component.status, Status::Unhealthy); // 25 % errors: the default unhealthy rate
//! # }
//! ```
//!
//! # Passive statistics
//!
//! [`HealthLayer`] records, per component (one, or one per key such as the provider), calls,
//! successes, failures by error kind, failures in a row, and latency over a sliding window (the
//! last N calls, and only those of the last T): min, mean, p50, p95, p99, max. A status follows
//! from thresholds ([`HealthConfig`]) and moves both ways as the window moves. With `fail_fast`,
//! calls to an unhealthy component are refused with `Unavailable`.
//!
//! # Active checks
//!
//! A [`HealthRegistry`] runs [`HealthCheck`]s on tokio at their intervals, each under a timeout (a
//! check that hangs is a failed run, not a stuck registry); a check is unhealthy after N failed runs
//! in a row and healthy again after M passing ones ([`CheckOptions`]). Built in: [`ProviderCheck`]
//! (a one-token request through any `Service<LlmRequest>`), [`StatsCheck`] (a component's passive
//! status), and `RedisCheck` (feature `redis`).
//!
//! # Reports
//!
//! [`HealthReport`] serializes in the `pass | warn | fail` style of the health-check response
//! draft (`application/health+json`): a failing critical check fails it, a failing non-critical
//! one only degrades it. [`HealthReport::liveness`] and [`HealthReport::readiness`] are the views an
//! orchestrator probes; [`HealthStats::snapshot`] is the telemetry view of the passive statistics.

mod check;
mod config;
pub mod future;
mod layer;
mod registry;
mod report;
mod service;
mod shared;
mod stats;
mod status;

#[cfg(feature = "redis")]
pub use check::RedisCheck;
pub use check::{
    CheckFuture, CheckOutcome, FnCheck, HealthCheck, ProviderCheck, StatsCheck, check_fn,
};
pub use config::HealthConfig;
pub use layer::{HealthLayer, HealthLayerBuilder};
pub use registry::{CheckOptions, HealthRegistry, HealthRegistryBuilder};
pub use report::{CheckReport, HealthReport, Probe};
pub use service::Health;
pub use stats::{
    ComponentSnapshot, HealthStats, HealthStatsBuilder, LatencySnapshot, WindowSnapshot,
};
pub use status::Status;

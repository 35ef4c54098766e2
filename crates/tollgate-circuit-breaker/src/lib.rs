//! Circuit breakers for LLM calls as a tower layer: per-key breakers over count or time windows,
//! failure and slow-call rates, half-open probes, and operator controls.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tollgate_circuit_breaker::{
//!     CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers, SlidingWindow, State,
//! };
//! use tollgate_core::{ErrorKind, LlmRequest, Message, Outcome, SimulatedProvider, clock::TokioClock};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let config = CircuitBreakerConfig {
//!     window: SlidingWindow::Count(4),
//!     failure_rate_threshold: 50.0,
//!     wait_in_open: Duration::from_secs(30),
//!     permitted_calls_in_half_open: 1,
//!     ..Default::default()
//! };
//! // Tokio's clock, so this example runs on paused time; leave it out for the faster default.
//! let breakers = CircuitBreakers::builder(config).clock(TokioClock::new()).build().unwrap();
//! let provider = SimulatedProvider::builder()
//!     .script([Outcome::Success, Outcome::Server, Outcome::Success, Outcome::Server])
//!     .build();
//! let mut stack = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breakers.clone()))
//!     .service(provider.clone());
//! let req = LlmRequest::new("sim", vec![Message::user("hi")]);
//!
//! for _ in 0..4 {
//!     let _ = stack.ready().await.unwrap().call(req.clone()).await;
//! }
//! // 2 failures in a window of 4: 50 %, so it opened, and now fails fast.
//! assert_eq!(breakers.state("*"), Some(State::Open));
//! let err = stack.ready().await.unwrap().call(req.clone()).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::CircuitOpen);
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
//! assert_eq!(provider.calls(), 4);
//!
//! // After the wait one probe goes through; it succeeds, so the breaker closes.
//! tokio::time::advance(Duration::from_secs(30)).await;
//! stack.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(breakers.state("*"), Some(State::Closed));
//! # }
//! ```
//!
//! # How it decides
//!
//! While **closed**, every outcome is classified ([`Classifier`]; by default Server, Timeout,
//! Connect and Overloaded are failures, caller errors such as InvalidRequest are successes, and
//! 429s are ignored) and counted in a sliding window, by count (last N calls) or by time (last N
//! seconds, in buckets). Once the window holds `minimum_calls`, the breaker **opens** when the
//! failure rate or the slow-call rate reaches its threshold.
//!
//! While **open**, calls fail at once with `CircuitOpen` and the time left as `retry_after`; the
//! inner service is not called. After `wait_in_open` (growing by `wait_multiplier` with each open
//! in a row, up to `max_wait_in_open`) the next call moves it to **half-open**: exactly
//! `permitted_calls_in_half_open` probes go through, the rest fail fast. When they have all
//! finished, the breaker closes (window emptied) or opens again. A probe whose call is dropped, or
//! whose outcome is ignored, gives its slot back.
//!
//! # Keys
//!
//! By default one breaker guards every call. [`CircuitBreakerLayerBuilder::key`] gives each key
//! (provider, model, any extractor) its own; at most `max_keys` are kept, and a closed breaker idle
//! for `idle_timeout` makes room for a new key.
//!
//! # Cost
//!
//! On the closed path a call reads the state from an atomic, takes the breaker's lock once to
//! count its outcome, and reads the clock twice; it allocates nothing on a known key.

mod breaker;
mod classify;
mod config;
pub mod future;
mod layer;
mod registry;
mod service;
mod shared;
mod window;

pub use breaker::{BreakerMetrics, Reason, State};
pub use classify::{Classifier, DefaultClassifier, Verdict};
pub use config::{CircuitBreakerConfig, SlidingWindow};
pub use layer::{CircuitBreakerLayer, CircuitBreakerLayerBuilder};
pub use registry::{CircuitBreakers, CircuitBreakersBuilder, Transition};
pub use service::CircuitBreaker;

//! Retries for LLM calls as a tower layer: exponential backoff with jitter, the provider's
//! `Retry-After`, retries only for transient errors, an overall deadline and a retry budget.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::{LlmRequest, Message, Outcome, SimulatedProvider};
//! use tollgate_retry::{Attempts, Jitter, RetryLayer, RetryPolicy};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let provider = SimulatedProvider::builder()
//!     .script([Outcome::rate_limited(Duration::from_secs(7)), Outcome::Server, Outcome::Success])
//!     .build();
//!
//! let policy = RetryPolicy::builder()
//!     .max_retries(3)                      // up to 4 calls in all
//!     .base_delay(Duration::from_millis(500))
//!     .jitter(Jitter::Full)
//!     .deadline(Duration::from_secs(30))
//!     .build()
//!     .expect("valid policy");
//!
//! let stack = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(provider.clone());
//! let started = tokio::time::Instant::now();
//! let answer = stack
//!     .oneshot(LlmRequest::new("sim", vec![Message::user("hi")]))
//!     .await
//!     .expect("the third attempt succeeds");
//!
//! assert_eq!(answer.extensions.get::<Attempts>(), Some(&Attempts(3)));
//! assert_eq!(provider.calls(), 3);
//! // The 429's Retry-After (7 s) was waited exactly, then a jittered backoff of at most 1 s.
//! assert!(started.elapsed() >= Duration::from_secs(7));
//! assert!(started.elapsed() <= Duration::from_secs(8));
//! # }
//! ```
//!
//! # What is retried
//!
//! By default only errors whose [`ErrorKind::is_retryable`](tollgate_core::ErrorKind::is_retryable)
//! is true: `RateLimited`, `Overloaded`, `Timeout`, `Connect`, `Server`. `Auth`, `InvalidRequest`,
//! `ContentFilter`, `BudgetExceeded`, `CircuitOpen` and `Unavailable` fail at once — sending them
//! again cannot help, and for the last three it would defeat the layer that said no.
//! [`RetryPolicyBuilder::retry_if`] replaces the rule.
//!
//! # How long it waits
//!
//! Before retry *n* (1-based) the delay is `base_delay × multiplier^(n-1)`, capped at `max_delay`,
//! then jittered ([`Jitter`]). When the error carries a `Retry-After`, that is waited instead,
//! exactly (capped at `max_delay`). If the wait would end past the deadline the call fails at once
//! with the last error rather than sleeping for nothing.
//!
//! # Why a budget
//!
//! See [`RetryBudget`]: it bounds the extra load retries add during an outage to a fraction of the
//! recent request rate, where a fixed retry count would multiply it.
//!
//! # Fewer retries when the call can go elsewhere
//!
//! A request may cap its retries ([`RequestMeta::retry_cap`](tollgate_core::RequestMeta::retry_cap)):
//! the layer then makes at most that many, whatever the policy allows. A router that has another
//! deployment for the call sets it (to `0` unless its group asks for more), so a failing
//! deployment costs the caller one attempt, not its backoff schedule; the last place left runs
//! the policy in full.
//!
//! # Other request types
//!
//! [`Retry`] works for any `Clone` request type that implements [`RetryCap`] (whose default
//! caps nothing) and whose response implements [`RecordAttempts`].

mod attempts;
mod budget;
mod cap;
pub mod future;
mod layer;
mod operation;
mod policy;
mod service;

pub use attempts::{Attempts, RecordAttempts};
pub use budget::{BudgetConfig, RetryBudget};
pub use cap::RetryCap;
pub use layer::RetryLayer;
pub use operation::retry;
pub use policy::{Jitter, RetryConfig, RetryPolicy, RetryPolicyBuilder};
pub use service::Retry;

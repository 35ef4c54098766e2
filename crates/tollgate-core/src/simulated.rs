//! A deterministic fake upstream for tests, examples and benchmarks.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::{
    CharEstimator, ErrorKind, FinishReason, LlmError, LlmRequest, LlmResponse, TokenEstimator,
    Usage, rng::SplitMix64,
};

/// What the [`SimulatedProvider`] does with one call.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Answer normally.
    Success,
    /// HTTP 429, with a `Retry-After` when given.
    RateLimited {
        /// The provider's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// HTTP 500.
    Server,
    /// HTTP 529 (Anthropic's "overloaded").
    Overloaded,
    /// The call takes its latency and then times out.
    Timeout,
    /// The connection is refused at once.
    Connect,
    /// Any other error, returned after the latency.
    Fail(LlmError),
}

impl Outcome {
    /// A 429 with `Retry-After: retry_after`.
    pub const fn rate_limited(retry_after: Duration) -> Self {
        Self::RateLimited {
            retry_after: Some(retry_after),
        }
    }

    /// A failure of the given kind with no status or hint.
    pub fn fail(kind: ErrorKind) -> Self {
        Self::Fail(LlmError::new(kind, "simulated failure"))
    }

    /// A failure with the given HTTP status, mapped as providers map it.
    pub fn status(status: StatusCode) -> Self {
        Self::Fail(LlmError::from_status(status, "simulated failure"))
    }

    fn error(&self) -> Option<LlmError> {
        Some(match self {
            Self::Success => return None,
            Self::RateLimited { retry_after } => {
                let err =
                    LlmError::from_status(StatusCode::TOO_MANY_REQUESTS, "simulated rate limit");
                match retry_after {
                    Some(after) => err.with_retry_after(*after),
                    None => err,
                }
            }
            Self::Server => {
                LlmError::from_status(StatusCode::INTERNAL_SERVER_ERROR, "simulated server error")
            }
            Self::Overloaded => LlmError::from_status(
                StatusCode::from_u16(529).expect("valid"),
                "simulated overload",
            ),
            Self::Timeout => LlmError::new(ErrorKind::Timeout, "simulated timeout"),
            Self::Connect => LlmError::new(ErrorKind::Connect, "simulated connection refused"),
            Self::Fail(err) => err.clone(),
        })
    }
}

/// A `Service<LlmRequest>` that behaves like an LLM provider without a network: configurable
/// latency on tokio's clock (so paused-time tests run instantly), token usage from an estimator,
/// scripted outcomes, then seeded random failures. Clones share one call counter and one script.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{ErrorKind, LlmRequest, Message, Outcome, SimulatedProvider};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let provider = SimulatedProvider::builder()
///     .latency(Duration::from_millis(200))
///     .script([Outcome::rate_limited(Duration::from_secs(7)), Outcome::Success])
///     .build();
///
/// let req = LlmRequest::new("sim-1", vec![Message::user("hello")]);
/// let err = provider.clone().oneshot(req.clone()).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::RateLimited);
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
///
/// let ok = provider.clone().oneshot(req).await.unwrap();
/// assert_eq!(ok.usage.input_tokens, 8); // 2 for "hello" + 3 framing + 3 priming
/// assert_eq!(provider.calls(), 2);
/// # }
/// ```
#[derive(Clone)]
pub struct SimulatedProvider {
    shared: Arc<Shared>,
}

struct Shared {
    latency: Duration,
    output_tokens: u64,
    estimator: Box<dyn TokenEstimator>,
    random: Vec<(Outcome, f64)>,
    calls: AtomicU64,
    // Lets the common unscripted, failure-free case skip the lock entirely.
    scripted_left: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    script: VecDeque<Outcome>,
    rng: SplitMix64,
}

impl SimulatedProvider {
    /// A provider that answers every call at once with success.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a provider.
    pub fn builder() -> SimulatedProviderBuilder {
        SimulatedProviderBuilder::default()
    }

    /// How many calls the provider has received (across all clones).
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    fn next_outcome(&self) -> Outcome {
        let shared = &*self.shared;
        if shared.random.is_empty() && shared.scripted_left.load(Ordering::Acquire) == 0 {
            return Outcome::Success;
        }
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(next) = state.script.pop_front() {
            shared.scripted_left.fetch_sub(1, Ordering::Release);
            return next;
        }
        if shared.random.is_empty() {
            return Outcome::Success;
        }
        let mut draw = state.rng.next_f64();
        for (outcome, probability) in &shared.random {
            if draw < *probability {
                return outcome.clone();
            }
            draw -= probability;
        }
        Outcome::Success
    }
}

impl Default for SimulatedProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedProvider")
            .field("latency", &self.shared.latency)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl Service<LlmRequest> for SimulatedProvider {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = SimulatedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let n = self.shared.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let outcome = self.next_outcome();
        let shared = &*self.shared;
        let latency = match outcome {
            Outcome::Connect => Duration::ZERO,
            _ => shared.latency,
        };
        let result = match outcome.error() {
            Some(err) => Err(err),
            None => {
                let input_tokens = shared.estimator.estimate_prompt(&request);
                let output_tokens = request
                    .params
                    .max_output_tokens()
                    .map_or(shared.output_tokens, |max| max.min(shared.output_tokens));
                let finish = if output_tokens < shared.output_tokens {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                Ok(
                    LlmResponse::new(&*request.model, format!("simulated reply #{n}"))
                        .with_usage(Usage::new(input_tokens, output_tokens))
                        .with_finish_reason(finish),
                )
            }
        };
        SimulatedFuture {
            delay: (!latency.is_zero()).then(|| tokio::time::sleep(latency)),
            result: Some(result),
        }
    }
}

pin_project! {
    /// The future of a [`SimulatedProvider`] call: waits the latency, then yields the outcome.
    pub struct SimulatedFuture {
        #[pin]
        delay: Option<Sleep>,
        result: Option<Result<LlmResponse, LlmError>>,
    }
}

impl Future for SimulatedFuture {
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(delay) = this.delay.as_pin_mut() {
            ready!(delay.poll(cx));
        }
        Poll::Ready(
            this.result
                .take()
                .expect("SimulatedFuture polled after completion"),
        )
    }
}

/// Configures a [`SimulatedProvider`]. Defaults: no latency, 16 output tokens, no script, no random
/// failures, seed 0, [`CharEstimator`].
#[must_use]
pub struct SimulatedProviderBuilder {
    latency: Duration,
    output_tokens: u64,
    estimator: Box<dyn TokenEstimator>,
    script: VecDeque<Outcome>,
    random: Vec<(Outcome, f64)>,
    seed: u64,
}

impl std::fmt::Debug for SimulatedProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProviderBuilder")
            .field("latency", &self.latency)
            .field("output_tokens", &self.output_tokens)
            .field("script", &self.script)
            .field("random", &self.random)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Default for SimulatedProviderBuilder {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            output_tokens: 16,
            estimator: Box::new(CharEstimator),
            script: VecDeque::new(),
            random: Vec::new(),
            seed: 0,
        }
    }
}

impl SimulatedProviderBuilder {
    /// How long every call takes (on tokio's clock), except connection failures, which are immediate.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Generated tokens per successful call (capped by the request's `max_tokens`).
    pub fn output_tokens(mut self, tokens: u64) -> Self {
        self.output_tokens = tokens;
        self
    }

    /// The estimator that fills `usage.input_tokens`.
    pub fn estimator(mut self, estimator: impl TokenEstimator) -> Self {
        self.estimator = Box::new(estimator);
        self
    }

    /// Outcomes for the first calls, in order; after the script runs out, random failures apply.
    pub fn script(mut self, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        self.script.extend(outcomes);
        self
    }

    /// After the script, each call fails with `outcome` with this probability.
    ///
    /// # Panics
    ///
    /// When `probability` is not within `0.0..=1.0`, or (in [`build`](Self::build)) when the
    /// probabilities add up to more than 1.
    pub fn failure_rate(mut self, outcome: Outcome, probability: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&probability),
            "failure_rate: probability must be within 0.0..=1.0, got {probability}"
        );
        self.random.push((outcome, probability));
        self
    }

    /// Seed for the random failures: the same seed gives the same outcome sequence.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Builds the provider.
    pub fn build(self) -> SimulatedProvider {
        let total: f64 = self.random.iter().map(|(_, p)| p).sum();
        assert!(
            total <= 1.0 + 1e-9,
            "failure rates add up to {total}, more than 1.0"
        );
        SimulatedProvider {
            shared: Arc::new(Shared {
                latency: self.latency,
                output_tokens: self.output_tokens,
                estimator: self.estimator,
                random: self.random,
                calls: AtomicU64::new(0),
                scripted_left: AtomicUsize::new(self.script.len()),
                state: Mutex::new(State {
                    script: self.script,
                    rng: SplitMix64::new(self.seed),
                }),
            }),
        }
    }
}

//! When to retry and how long to wait: [`RetryPolicy`], built from a [`RetryConfig`].

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tollgate_core::{ConfigError, LlmError, duration, rng::SplitMix64};

use tollgate_core::telemetry::{Counter, RETRY_ATTEMPTS, RETRY_BUDGET_REFUSALS};

use crate::budget::{BudgetConfig, RetryBudget};

/// How much randomness to add to each backoff delay, so clients that failed together do not all
/// retry together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// Uniform in `[0, delay]` (AWS's recommendation: the least contention).
    #[default]
    Full,
    /// Uniform in `[delay / 2, delay]`: never much shorter than planned.
    Equal,
    /// Uniform in `[base, previous × 3]`, capped: spreads out without a fixed schedule.
    Decorrelated,
}

/// Serializable retry settings. Defaults: 3 retries (4 attempts in all), 1 s base delay doubling up
/// to 60 s, full jitter, no deadline, no per-attempt timeout, and the default [`BudgetConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt: `3` means up to 4 calls in all.
    pub max_retries: u32,
    /// Delay before the first retry (before jitter).
    #[serde(with = "duration")]
    pub base_delay: Duration,
    /// Growth of the delay per retry.
    pub multiplier: f64,
    /// Upper bound on any delay, including a provider's `Retry-After`.
    #[serde(with = "duration")]
    pub max_delay: Duration,
    /// Randomness added to backoff delays (never to `Retry-After`).
    pub jitter: Jitter,
    /// Bound on the whole call, all attempts and waits included.
    #[serde(with = "duration::option")]
    pub deadline: Option<Duration>,
    /// Bound on each attempt; an attempt that takes longer fails with `Timeout` (and may be retried).
    #[serde(with = "duration::option")]
    pub attempt_timeout: Option<Duration>,
    /// The retry budget; `null` turns it off (not recommended in production).
    pub budget: Option<BudgetConfig>,
    /// Seed for the jitter; random when absent.
    pub seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: Jitter::Full,
            deadline: None,
            attempt_timeout: None,
            budget: Some(BudgetConfig::default()),
            seed: None,
        }
    }
}

impl RetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(ConfigError::new(
                "multiplier",
                format!("must be a number of at least 1.0, got {}", self.multiplier),
            ));
        }
        if self.max_delay < self.base_delay {
            return Err(ConfigError::new(
                "max_delay",
                format!(
                    "must be at least base_delay ({})",
                    duration::format(self.base_delay)
                ),
            ));
        }
        if let Some(deadline) = self.deadline {
            tollgate_core::non_zero("deadline", deadline)?;
        }
        if let Some(timeout) = self.attempt_timeout {
            tollgate_core::non_zero("attempt_timeout", timeout)?;
        }
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|err| err.under("budget"))?;
        }
        Ok(())
    }
}

type Predicate = dyn Fn(&LlmError) -> bool + Send + Sync;
type OnRetry = dyn Fn(u32, Duration, &LlmError) + Send + Sync;

/// When to retry and how long to wait. Cheap to clone; clones share the budget and the hooks.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::ErrorKind;
/// use tollgate_retry::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .max_retries(5)
///     .base_delay(Duration::from_millis(200))
///     .jitter(Jitter::Equal)
///     .deadline(Duration::from_secs(30))
///     // Retry 429s and 529s only; everything else fails at once.
///     .retry_if(|err| matches!(err.kind(), ErrorKind::RateLimited | ErrorKind::Overloaded))
///     .on_retry(|attempt, delay, err| eprintln!("attempt {attempt} failed ({err}); next in {delay:?}"))
///     .build()
///     .unwrap();
/// assert_eq!(policy.max_retries(), 5);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    shared: Arc<Shared>,
}

struct Shared {
    config: RetryConfig,
    budget: Option<RetryBudget>,
    retry_if: Option<Box<Predicate>>,
    on_retry: Option<Box<OnRetry>>,
    seed: u64,
    // Failed calls so far: each one's jitter sequence is seeded from this, so runs repeat.
    calls: AtomicU64,
    time_bound: bool,
    // Registered when the policy is built (feature `metrics`).
    retries: Counter,
    budget_refusals: Counter,
}

/// What the policy decided after a failed attempt.
pub(crate) enum Decision {
    Retry(Duration),
    /// Give up; the note (if any) says why, for the final error.
    Stop(Option<String>),
}

/// Per-call backoff state: the jitter generator and the previous delay (for decorrelated jitter).
pub(crate) struct Backoff {
    rng: SplitMix64,
    previous: Duration,
}

impl RetryPolicy {
    /// Starts from the defaults of [`RetryConfig`].
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            config: RetryConfig::default(),
            retry_if: None,
            on_retry: None,
        }
    }

    /// A policy from configuration alone.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field.
    pub fn from_config(config: RetryConfig) -> Result<Self, ConfigError> {
        RetryPolicyBuilder {
            config,
            retry_if: None,
            on_retry: None,
        }
        .build()
    }

    /// Retries after the first attempt.
    #[inline]
    pub fn max_retries(&self) -> u32 {
        self.shared.config.max_retries
    }

    /// The settings this policy was built from.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The shared retry budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// Records a new logical call: the budget earns its share.
    #[inline]
    pub(crate) fn begin(&self) {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
    }

    /// Backoff state for a call's first retry; made only when a call fails, so the success path
    /// pays for no random generator.
    fn backoff(&self) -> Backoff {
        let failed_call = self.shared.calls.fetch_add(1, Ordering::Relaxed);
        Backoff {
            rng: SplitMix64::new(
                self.shared.seed ^ failed_call.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            previous: self.shared.config.base_delay,
        }
    }

    #[inline]
    pub(crate) fn attempt_timeout(&self) -> Option<Duration> {
        self.shared.config.attempt_timeout
    }

    #[inline]
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.shared.config.deadline
    }

    /// Whether calls have a deadline or an attempt timeout.
    #[inline]
    pub(crate) fn time_bound(&self) -> bool {
        self.shared.time_bound
    }

    fn should_retry(&self, error: &LlmError) -> bool {
        match &self.shared.retry_if {
            Some(predicate) => predicate(error),
            None => error.is_retryable(),
        }
    }

    /// Decides what follows failed attempt number `attempt` (1-based), `elapsed` into the call.
    pub(crate) fn decide(
        &self,
        attempt: u32,
        error: &LlmError,
        elapsed: Duration,
        backoff: &mut Option<Backoff>,
    ) -> Decision {
        let config = &self.shared.config;
        if !self.should_retry(error) {
            return Decision::Stop(None);
        }
        if attempt > config.max_retries {
            return Decision::Stop(Some(format!("gave up after {}", attempts(attempt))));
        }
        let delay = match error.retry_after() {
            Some(after) => after.min(config.max_delay),
            None => backoff
                .get_or_insert_with(|| self.backoff())
                .next(config, attempt - 1),
        };
        if let Some(deadline) = config.deadline
            && elapsed + delay >= deadline
        {
            return Decision::Stop(Some(format!(
                "stopped after {}: waiting {} would pass the {} deadline",
                attempts(attempt),
                duration::format(delay),
                duration::format(deadline)
            )));
        }
        if let Some(budget) = &self.shared.budget
            && !budget.withdraw()
        {
            self.shared.budget_refusals.increment(1);
            return Decision::Stop(Some(format!(
                "stopped after {}: retry budget exhausted",
                attempts(attempt)
            )));
        }
        self.shared.retries.increment(1);
        if let Some(hook) = &self.shared.on_retry {
            hook(attempt, delay, error);
        }
        tracing::debug!(
            attempt,
            delay_ms = delay.as_millis() as u64,
            kind = %error.kind(),
            error = %error,
            "retrying LLM call"
        );
        Decision::Retry(delay)
    }
}

impl Backoff {
    /// The delay before retry number `retry + 1` (0-based `retry`).
    fn next(&mut self, config: &RetryConfig, retry: u32) -> Duration {
        let max = config.max_delay.as_secs_f64();
        let exponential = (config.base_delay.as_secs_f64()
            * config.multiplier.powi(retry.min(i32::MAX as u32) as i32))
        .min(max);
        let nanos = |secs: f64| (secs * 1e9) as u64;
        let delay = match config.jitter {
            Jitter::None => nanos(exponential),
            Jitter::Full => self.rng.between(0, nanos(exponential)),
            Jitter::Equal => {
                let half = nanos(exponential) / 2;
                half + self.rng.between(0, nanos(exponential) - half)
            }
            Jitter::Decorrelated => {
                let base = config.base_delay.as_nanos() as u64;
                let upper = (self.previous.as_nanos() as u64).saturating_mul(3);
                self.rng.between(base, upper.max(base)).min(nanos(max))
            }
        };
        let delay = Duration::from_nanos(delay);
        self.previous = delay;
        delay
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::builder().build().expect("the defaults are valid")
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.shared.config)
            .field("budget", &self.shared.budget)
            .finish_non_exhaustive()
    }
}

/// `1 attempt`, `2 attempts`.
fn attempts(count: u32) -> String {
    tollgate_core::counted(count.into(), "attempt")
}

/// Builds a [`RetryPolicy`]; every setting starts at the [`RetryConfig`] default and is checked in
/// [`build`](Self::build).
#[must_use]
pub struct RetryPolicyBuilder {
    config: RetryConfig,
    retry_if: Option<Box<Predicate>>,
    on_retry: Option<Box<OnRetry>>,
}

impl std::fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("config", &self.config)
            .field("retry_if", &self.retry_if.is_some())
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

impl RetryPolicyBuilder {
    /// Takes every setting from `config` (what [`RetryPolicy::from_config`] builds), so that a
    /// predicate or hook can be added to a policy read from a file.
    pub fn config(mut self, config: RetryConfig) -> Self {
        self.config = config;
        self
    }

    /// Retries after the first attempt (default 3).
    #[inline]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.config.max_retries = retries;
        self
    }

    /// Delay before the first retry (default 1 s).
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.config.base_delay = delay;
        self
    }

    /// Growth per retry (default 2).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.config.multiplier = multiplier;
        self
    }

    /// Upper bound on every delay, `Retry-After` included (default 60 s).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.config.max_delay = delay;
        self
    }

    /// Jitter mode (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Bound on the whole call (default none).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// Bound on each attempt (default none).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = Some(timeout);
        self
    }

    /// The retry budget (default [`BudgetConfig::default`]); `None` turns it off.
    pub fn budget(mut self, budget: Option<BudgetConfig>) -> Self {
        self.config.budget = budget;
        self
    }

    /// Seed for the jitter, for runs that must repeat (default random).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Decides which errors are retried, replacing [`LlmError::is_retryable`].
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&LlmError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Box::new(predicate));
        self
    }

    /// Called before each retry with the number of the attempt that failed (1-based), the delay
    /// about to be waited, and the error.
    pub fn on_retry(
        mut self,
        hook: impl Fn(u32, Duration, &LlmError) + Send + Sync + 'static,
    ) -> Self {
        self.on_retry = Some(Box::new(hook));
        self
    }

    /// Checks the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: a multiplier below 1, a `max_delay` below
    /// `base_delay`, a zero deadline or attempt timeout, or an invalid budget.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        self.config.validate()?;
        let budget = self.config.budget.map(RetryBudget::new).transpose()?;
        let seed = self.config.seed.unwrap_or_else(|| {
            // Per-process randomness without a dependency: std seeds RandomState from the OS.
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        Ok(RetryPolicy {
            shared: Arc::new(Shared {
                time_bound: self.config.deadline.is_some() || self.config.attempt_timeout.is_some(),
                config: self.config,
                budget,
                retry_if: self.retry_if,
                on_retry: self.on_retry,
                seed,
                calls: AtomicU64::new(0),
                retries: Counter::new(RETRY_ATTEMPTS, &[]),
                budget_refusals: Counter::new(RETRY_BUDGET_REFUSALS, &[]),
            }),
        })
    }
}

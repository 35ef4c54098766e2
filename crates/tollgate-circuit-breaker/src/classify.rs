//! Which outcomes a breaker counts as failures, which as successes, and which it ignores.

use tollgate_core::{Fault, LlmError};

/// How a breaker counts one finished call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered: a success (slow if it took longer than the slow-call duration).
    Success,
    /// The upstream is failing.
    Failure,
    /// Says nothing about the upstream's health: not counted at all (a half-open probe slot is
    /// given back).
    Ignore,
}

/// Decides how a breaker counts each outcome. Any `Fn(Result<(), &LlmError>) -> Verdict` works.
pub trait Classifier: Send + Sync + 'static {
    /// The verdict for a call that succeeded (`Ok(())`) or failed with an error.
    fn classify(&self, outcome: Result<(), &LlmError>) -> Verdict;
}

impl<F> Classifier for F
where
    F: Fn(Result<(), &LlmError>) -> Verdict + Send + Sync + 'static,
{
    fn classify(&self, outcome: Result<(), &LlmError>) -> Verdict {
        self(outcome)
    }
}

/// The default classifier, from the outcome's [`Fault`].
///
/// | outcome | verdict |
/// |---|---|
/// | success | `Success` |
/// | `Server`, `Timeout`, `Connect`, `Overloaded` | `Failure` |
/// | `RateLimited` | `Ignore`, or `Failure` with [`rate_limited_is_failure`](Self::rate_limited_is_failure) |
/// | `InvalidRequest`, `Auth`, `ContentFilter` | `Success`: the upstream answered; the caller was wrong |
/// | `CircuitOpen`, `BudgetExceeded`, `Unavailable`, `Internal` | `Ignore`: decided by tollgate, not the upstream |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier {
    /// Count a 429 as a failure. Off by default: a rate limit says "slow down", not "broken",
    /// and opening the breaker on it would turn a quota problem into an outage.
    pub rate_limited_is_failure: bool,
}

impl DefaultClassifier {
    /// The default classifier, counting 429s as failures when `yes`.
    pub const fn rate_limited_is_failure(yes: bool) -> Self {
        Self {
            rate_limited_is_failure: yes,
        }
    }
}

impl Classifier for DefaultClassifier {
    fn classify(&self, outcome: Result<(), &LlmError>) -> Verdict {
        let Err(error) = outcome else {
            return Verdict::Success;
        };
        match error.kind().fault() {
            Fault::Upstream => Verdict::Failure,
            Fault::Throttled if self.rate_limited_is_failure => Verdict::Failure,
            Fault::Caller => Verdict::Success,
            _ => Verdict::Ignore,
        }
    }
}

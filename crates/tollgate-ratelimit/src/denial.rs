//! Why a limiter said no, naming the scope, key and tier that refused.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tollgate_core::{ErrorKind, LlmError, MicroUsd, duration};

use crate::quota::{Dimension, Tier};

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenialReason {
    /// A tier has no room now; it will after [`Denial::retry_after`].
    Exhausted,
    /// The call asks for more than a tier's burst: it can never be admitted, so it is refused at
    /// once rather than queued forever.
    TooLarge,
    /// Other callers are already waiting for this key; a newcomer may not pass them.
    Queued,
    /// The key is new and the limiter already tracks its maximum number of keys (none of which is
    /// idle); refusing is safer than forgetting a key that still owes time.
    Capacity,
    /// The call named more keys than one call may (8).
    TooManyKeys,
    /// The shared store (Redis) did not answer in time and the failure policy is fail-closed.
    Unavailable,
    /// On Redis Cluster, the call named keys of several scopes but none of the hash-tag scope,
    /// so they would live in different slots and no script could check them together.
    CrossSlot,
}

/// A refusal from a [`RateLimiter`](crate::RateLimiter).
///
/// Converts into an [`LlmError`] whose kind a caller can match on:
///
/// | reason | dimension of the tier | kind |
/// |---|---|---|
/// | `Exhausted`, `Queued` | requests, tokens | `RateLimited`, with `retry_after` |
/// | `Exhausted` | cost | `BudgetExceeded`, with `retry_after` |
/// | `TooLarge` | requests, tokens | `InvalidRequest` (retrying cannot help) |
/// | `TooLarge` | cost | `BudgetExceeded` |
/// | `Capacity`, `Unavailable` | | `Unavailable` |
/// | `TooManyKeys` | | `InvalidRequest` |
/// | `CrossSlot` | | `Internal` (the limiter's configuration) |
///
/// The error also carries the `Denial` itself as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(pub(crate) Box<DenialDetail>);

/// Boxed so a `Result<(), Denial>` stays one pointer wide on the admit path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DenialDetail {
    pub(crate) reason: DenialReason,
    pub(crate) scope: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) tier: Option<(usize, Tier)>,
    pub(crate) needed: u64,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) waited: Duration,
    /// For a calendar tier that had no room: what its period had spent, and when it ends.
    pub(crate) period: Option<(u64, SystemTime)>,
}

impl Denial {
    /// Why the call was refused.
    pub fn reason(&self) -> DenialReason {
        self.0.reason
    }

    /// The name of the scope whose key refused (`user`, `org`, ...).
    pub fn scope(&self) -> &str {
        &self.0.scope
    }

    /// The key that refused.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    /// The index (in its quota) and definition of the tier that refused, when a tier did.
    pub fn tier(&self) -> Option<(usize, &Tier)> {
        self.0.tier.as_ref().map(|(i, tier)| (*i, tier))
    }

    /// How long until the refusing tier has room for this call: exact for the limiter's clock.
    /// `None` when waiting cannot help or is not known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// For a calendar tier ([`Tier::calendar`]) that had no room: what its current period had
    /// spent (in the tier's units; micro-dollars for a budget), and when the period ends and the
    /// whole limit is there again.
    pub fn period(&self) -> Option<(u64, SystemTime)> {
        self.0.period
    }

    /// How long the call waited before it was refused (zero unless it queued).
    pub fn waited(&self) -> Duration {
        self.0.waited
    }

    /// The [`ErrorKind`] this denial converts into.
    pub fn kind(&self) -> ErrorKind {
        let cost = matches!(&self.0.tier, Some((_, tier)) if tier.dimension() == Dimension::Cost);
        match self.0.reason {
            DenialReason::Exhausted | DenialReason::TooLarge if cost => ErrorKind::BudgetExceeded,
            DenialReason::Exhausted | DenialReason::Queued => ErrorKind::RateLimited,
            DenialReason::TooLarge | DenialReason::TooManyKeys => ErrorKind::InvalidRequest,
            DenialReason::Capacity | DenialReason::Unavailable => ErrorKind::Unavailable,
            DenialReason::CrossSlot => ErrorKind::Internal,
        }
    }
}

impl Denial {
    /// What refused and why, without the kind (an [`LlmError`] prints that) or the retry-after.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = format!("scope {:?} key {:?}", self.0.scope, self.0.key);
        let tier = |f: &mut fmt::Formatter<'_>| match &self.0.tier {
            Some((i, tier)) => write!(f, "tier {i} ({tier})"),
            None => write!(f, "its quota"),
        };
        match self.0.reason {
            DenialReason::Exhausted => {
                write!(f, "{who}: ")?;
                tier(f)?;
                match (&self.0.tier, self.0.period) {
                    (Some((_, tier)), Some((spent, ends))) => {
                        let spent = match tier.dimension() {
                            Dimension::Cost => MicroUsd(spent).to_string(),
                            dimension => format!("{spent} {}", dimension.unit()),
                        };
                        let ends = jiff::Timestamp::try_from(ends)
                            .map_or_else(|_| "later".to_owned(), |at| at.to_string());
                        write!(
                            f,
                            " has no room for this call: {spent} spent this period, which resets at {ends}"
                        )?;
                    }
                    _ => write!(f, " has no room")?,
                }
            }
            DenialReason::TooLarge => {
                let (amount, unit) = match &self.0.tier {
                    Some((_, t)) if t.dimension() == Dimension::Cost => {
                        (MicroUsd(self.0.needed).to_string(), "")
                    }
                    Some((_, t)) if t.dimension() == Dimension::Tokens => {
                        (self.0.needed.to_string(), " tokens")
                    }
                    _ => (self.0.needed.to_string(), " requests"),
                };
                write!(
                    f,
                    "too large for the limit: the call needs {amount}{unit} but "
                )?;
                tier(f)?;
                write!(f, " of {who} never has that much room")?;
            }
            DenialReason::Queued => write!(f, "{who}: callers are already waiting")?,
            DenialReason::Capacity => write!(
                f,
                "rate limiter full: {who} is new and no tracked key is idle enough to forget"
            )?,
            DenialReason::Unavailable => write!(
                f,
                "{who}: the shared rate-limit store did not answer and the policy is to fail closed"
            )?,
            DenialReason::TooManyKeys => write!(
                f,
                "a call may be checked against at most {} keys",
                crate::quota::MAX_TARGETS
            )?,
            DenialReason::CrossSlot => write!(
                f,
                "{who}: on Redis Cluster this call's keys would span slots; set the limiter's \
                 hash_tag_scope to a scope every call names"
            )?,
        }
        if !self.0.waited.is_zero() {
            write!(f, " after waiting {}", duration::format(self.0.waited))?;
        }
        Ok(())
    }
}

impl fmt::Display for Denial {
    /// `rate limited: scope "user" key "alice": tier 0 (60 requests per 1m) has no room; retry after 1s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind().as_str())?;
        self.describe(f)?;
        if let Some(after) = self.0.retry_after {
            write!(f, "; retry after {}", duration::format(after))?;
        }
        Ok(())
    }
}

struct Described<'a>(&'a Denial);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f)
    }
}

impl std::error::Error for Denial {}

impl From<Denial> for LlmError {
    fn from(denial: Denial) -> Self {
        let mut error = LlmError::new(denial.kind(), Described(&denial).to_string());
        if let Some(after) = denial.0.retry_after {
            error = error.with_retry_after(after);
        }
        error.with_extension(denial)
    }
}

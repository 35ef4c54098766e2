//! Which limiter a layer asks, and what it does when the limiter refuses.

use std::time::Duration;

use crate::{
    definition::Definition,
    limiter::{RateLimiter, Scope},
};

/// What a layer does when its limiter refuses a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLimit {
    /// Fail at once with `RateLimited` (or `BudgetExceeded`) and the exact `retry_after`.
    #[default]
    Reject,
    /// Wait in a first-come-first-served line for up to this long, then fail as `Reject` does.
    /// A call whose wait is already known to be longer fails at once.
    Wait(Duration),
}

/// What to do with a call to a model the pricing table has no price for, when a quota counts cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnpricedModels {
    /// Refuse it (`InvalidRequest`): a budget that cannot price a call cannot bound it.
    #[default]
    Reject,
    /// Let it through at zero cost.
    Free,
}

/// How long a response waited for the limiter, marked on responses that did wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited(pub Duration);

/// The limiter a [`RateLimitLayer`](crate::RateLimitLayer) asks: one in this process, or one shared through Redis.
///
/// Both convert into it, so [`RateLimitLayer::new`](crate::RateLimitLayer::new) takes either.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Limiter {
    /// Quotas held in this process.
    Local(RateLimiter),
    /// Quotas shared by every process through Redis.
    #[cfg(feature = "redis")]
    Redis(crate::RedisRateLimiter),
}

impl Limiter {
    /// The handle of the scope named `name`.
    pub fn scope(&self, name: &str) -> Option<Scope> {
        self.definition().scope(name)
    }

    /// The names of the scopes, in the order they were added.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.definition().scope_names()
    }

    /// The in-process limiter, when that is what this is.
    pub(crate) fn local(&self) -> Option<&RateLimiter> {
        match self {
            Self::Local(limiter) => Some(limiter),
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }

    /// The scopes and quotas the limiter keeps counts for.
    pub(crate) fn definition(&self) -> &Definition {
        match self {
            Self::Local(limiter) => limiter.definition(),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.definition(),
        }
    }
}

impl From<RateLimiter> for Limiter {
    fn from(limiter: RateLimiter) -> Self {
        Self::Local(limiter)
    }
}

#[cfg(feature = "redis")]
impl From<crate::RedisRateLimiter> for Limiter {
    fn from(limiter: crate::RedisRateLimiter) -> Self {
        Self::Redis(limiter)
    }
}

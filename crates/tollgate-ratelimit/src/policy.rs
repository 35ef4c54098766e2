//! What a layer does when its limiter refuses, and with calls it cannot price.

use std::time::Duration;

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

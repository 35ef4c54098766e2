//! Counts of what a limiter decided.

use std::ops::Add;

/// What a [`RateLimiter`](crate::RateLimiter) decided since it was built or its metrics were reset.
///
/// Every call that tries to consume ends in exactly one of `allowed` or `denied` on its first try;
/// a denied call that then queues (wait mode) also ends in `waited` or `timed_out`, unless it is
/// dropped first. Counted per key checked: a call checked against a user and its organization
/// counts once for each. Checks that consume nothing ([`RateLimiter::check`](crate::RateLimiter::check))
/// and charges or refunds are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Calls admitted at once.
    pub allowed: u64,
    /// Calls refused at once, including those that then queued.
    pub denied: u64,
    /// Calls admitted after waiting in a queue.
    pub waited: u64,
    /// Calls that waited and gave up at their deadline.
    pub timed_out: u64,
}

impl Metrics {
    /// The share of decisions that admitted, from 0 to 1 (1 when nothing was decided).
    pub fn allowed_ratio(&self) -> f64 {
        let decided = self.allowed + self.denied;
        if decided == 0 {
            1.0
        } else {
            self.allowed as f64 / decided as f64
        }
    }
}

impl Add for Metrics {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            allowed: self.allowed + other.allowed,
            denied: self.denied + other.denied,
            waited: self.waited + other.waited,
            timed_out: self.timed_out + other.timed_out,
        }
    }
}

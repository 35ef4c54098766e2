//! What a Redis limiter did: the public counts, and the atomic counters behind them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counts of what a [`RedisRateLimiter`](super::RedisRateLimiter) did, since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisMetrics {
    /// Calls admitted, by any backend.
    pub allowed: u64,
    /// Calls refused, by any backend (including fail-closed refusals).
    pub denied: u64,
    /// Script calls sent to Redis.
    pub redis_calls: u64,
    /// Script calls that failed with an error.
    pub redis_errors: u64,
    /// Script calls that did not answer within the timeout.
    pub redis_timeouts: u64,
    /// Decisions the failure policy made because Redis was not asked or did not answer.
    pub failure_decisions: u64,
    /// Times the limiter left Redis for its failure policy.
    pub switched_to_fallback: u64,
    /// Times the limiter came back to Redis.
    pub switched_to_redis: u64,
    /// Leases taken from Redis (hybrid mode).
    pub leases: u64,
    /// Calls admitted from a local lease without asking Redis (hybrid mode).
    pub lease_admits: u64,
    /// Permits handed back to Redis unused when their lease ended (hybrid mode), counted once
    /// Redis has them.
    pub lease_returned: u64,
    /// Key sets holding a lease now (hybrid mode). When a new key set would pass
    /// [`MAX_LEASE_SETS`](crate::MAX_LEASE_SETS), every lease nobody is refilling is dropped and its permits handed back.
    pub lease_sets: u64,
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) allowed: AtomicU64,
    pub(super) denied: AtomicU64,
    pub(super) redis_calls: AtomicU64,
    pub(super) redis_errors: AtomicU64,
    pub(super) redis_timeouts: AtomicU64,
    pub(super) failure_decisions: AtomicU64,
    pub(super) leases: AtomicU64,
    pub(super) lease_admits: AtomicU64,
    pub(super) lease_returned: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Relaxed);
}

impl Counts {
    pub(super) fn snapshot(&self) -> RedisMetrics {
        let get = |c: &AtomicU64| c.load(Relaxed);
        RedisMetrics {
            allowed: get(&self.allowed),
            denied: get(&self.denied),
            redis_calls: get(&self.redis_calls),
            redis_errors: get(&self.redis_errors),
            redis_timeouts: get(&self.redis_timeouts),
            failure_decisions: get(&self.failure_decisions),
            switched_to_fallback: 0,
            switched_to_redis: 0,
            leases: get(&self.leases),
            lease_admits: get(&self.lease_admits),
            lease_returned: get(&self.lease_returned),
            lease_sets: 0,
        }
    }
}

//! The defaults of the Redis limiter's settings, named whatever features are on. Those a
//! configuration's `redis` section also sets are core's (`tollgate_core::redis`), so the section
//! and the builder read the same ones.

use std::time::Duration;

pub use tollgate_core::redis::{
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_LOCAL_SHARE, DEFAULT_PROBE_INTERVAL,
};

/// Default key prefix of a [`RedisRateLimiter`](crate::RedisRateLimiter)'s keys: the `redis`
/// section's default prefix, under `:rl`.
pub const DEFAULT_PREFIX: &str = "tollgate:rl";

/// Default time a Redis call may take before the failure policy decides instead: a limit
/// decision must not hold a call up for longer.
pub const DEFAULT_REDIS_TIMEOUT: Duration = tollgate_core::redis::DEFAULT_LIMITER_TIMEOUT;

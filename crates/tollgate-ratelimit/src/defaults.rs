//! The defaults of the Redis limiter's settings, named whatever features are on, so the
//! configuration of this crate and of the facade read them from here instead of copying them.

use std::time::Duration;

/// Default key prefix of a [`RedisRateLimiter`](crate::RedisRateLimiter)'s keys.
pub const DEFAULT_PREFIX: &str = "tollgate:rl";

/// Default time a Redis call may take before the failure policy decides instead: a limit
/// decision must not hold a call up for longer.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(5);

/// Default number of failed Redis calls in a row after which the limiter stops calling it.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Default time between probes of a Redis the limiter stopped calling.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Default share of each tier a process may use on its own while Redis is away.
pub const DEFAULT_LOCAL_SHARE: f64 = 0.5;

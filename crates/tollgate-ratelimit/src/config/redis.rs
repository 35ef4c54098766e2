//! `RedisConfig`: where and how quotas are shared through Redis.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::duration;

/// Where and how quotas are shared through Redis. Unknown fields are errors.
///
/// ```yaml
/// redis:
///   url: redis://127.0.0.1:6379/   # REDIS_URL overrides it
///   prefix: myapp:rl                # default tollgate:rl
///   timeout: 5ms                    # per Redis call (default 5ms)
///   on_failure: local               # local (default), fail_open or fail_closed
///   local_share: 0.25               # of each tier, for `local` (default 0.5)
///   failure_threshold: 3            # failures in a row before Redis is left alone
///   probe_interval: 500ms           # how often a call tries it again
///   hash_tag_scope: org             # put a call's keys in this scope's Cluster slot
///   lease: { batch: 100, ttl: 1s }  # hybrid mode
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`; the `REDIS_URL` environment variable overrides it
    /// ([`RateLimitConfig::with_env`](crate::RateLimitConfig::with_env)).
    pub url: String,
    /// Key prefix (default `tollgate:rl`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Per Redis call (default 5 ms).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// What decides when Redis does not answer.
    #[serde(default)]
    pub on_failure: OnFailureConfig,
    /// The share of each tier the local fallback holds (default 0.5).
    #[serde(default = "default_share")]
    pub local_share: f64,
    /// Failed calls in a row before Redis is left alone (default 3).
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// How often one call probes a Redis that was left alone (default 500 ms).
    #[serde(default = "default_probe", with = "duration")]
    pub probe_interval: Duration,
    /// The scope whose key gives every key of a call its Redis Cluster hash tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_tag_scope: Option<String>,
    /// Hybrid mode: lease permits in batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseConfig>,
}

/// What decides while Redis does not answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailureConfig {
    /// An in-process limiter with `local_share` of each tier.
    #[default]
    Local,
    /// Admit.
    FailOpen,
    /// Refuse with `Unavailable`.
    FailClosed,
}

/// Hybrid mode's leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Permits per lease.
    pub batch: u32,
    /// How long a lease's permits may be spent before the rest go back.
    #[serde(with = "duration")]
    pub ttl: Duration,
}

#[cfg(feature = "redis")]
impl RedisConfig {
    /// A [`RedisRateLimiter`](crate::redis::RedisRateLimiter) builder with every setting of this
    /// section applied; add the scopes and build.
    pub fn builder(&self) -> crate::redis::RedisRateLimiterBuilder {
        use crate::redis::{OnRedisFailure, RedisRateLimiter};
        let mut builder = RedisRateLimiter::builder(&self.url)
            .prefix(&self.prefix)
            .timeout(self.timeout)
            .failure_threshold(self.failure_threshold)
            .probe_interval(self.probe_interval)
            .on_failure(match self.on_failure {
                OnFailureConfig::Local => OnRedisFailure::Local {
                    share: self.local_share,
                },
                OnFailureConfig::FailOpen => OnRedisFailure::FailOpen,
                OnFailureConfig::FailClosed => OnRedisFailure::FailClosed,
            });
        if let Some(scope) = &self.hash_tag_scope {
            builder = builder.hash_tag_scope(scope);
        }
        if let Some(lease) = self.lease {
            builder = builder.lease(lease.batch, lease.ttl);
        }
        builder
    }
}

fn default_prefix() -> String {
    crate::DEFAULT_PREFIX.to_owned()
}

fn default_timeout() -> Duration {
    crate::DEFAULT_REDIS_TIMEOUT
}

fn default_share() -> f64 {
    crate::DEFAULT_LOCAL_SHARE
}

fn default_threshold() -> u32 {
    crate::DEFAULT_FAILURE_THRESHOLD
}

fn default_probe() -> Duration {
    crate::DEFAULT_PROBE_INTERVAL
}

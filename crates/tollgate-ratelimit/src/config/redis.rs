//! `RedisConfig`: where and how quotas are shared through Redis.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::{
    duration,
    redis::{ClusterConfig, SentinelConfig},
};

/// Where and how quotas are shared through Redis. Unknown fields are errors.
///
/// ```yaml
/// redis:
///   url: redis://127.0.0.1:6379/   # one server; REDIS_URL overrides it
///   # or: cluster: { nodes: [redis://10.0.0.1:7000/, redis://10.0.0.2:7000/] }
///   # or: sentinel: { master_name: mymaster, nodes: [redis://10.0.0.5:26379/], password_env: REDIS_PASSWORD }
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
    /// One server, `redis://host:port/db`; the `REDIS_URL` environment variable replaces
    /// whichever Redis the section names with it
    /// ([`RateLimitConfig::with_env`](crate::RateLimitConfig::with_env)). Exactly one of `url`,
    /// `cluster` and `sentinel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Redis Cluster, found through some of its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// The master Redis Sentinel names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelConfig>,
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
    /// section applied; add the scopes and build. `sentinel.password_env` is read from the
    /// process environment.
    ///
    /// # Errors
    ///
    /// None or several of `url`, `cluster` and `sentinel`, a URL that is not `redis://`, an
    /// empty node list, or an unset password variable.
    pub fn builder(
        &self,
    ) -> Result<crate::redis::RedisRateLimiterBuilder, tollgate_core::ConfigError> {
        let target = tollgate_core::redis::target_of(
            self.url.as_deref(),
            self.cluster.as_ref(),
            self.sentinel.as_ref(),
            |var| std::env::var(var).ok(),
        )?;
        Ok(self.builder_on(target))
    }

    /// A builder with every setting of this section but the Redis it names: on `redis`
    /// instead (a connection shared with other layers, say).
    pub fn builder_on(
        &self,
        redis: impl Into<tollgate_core::redis::RedisTarget>,
    ) -> crate::redis::RedisRateLimiterBuilder {
        use crate::redis::{OnRedisFailure, RedisRateLimiter};
        let mut builder = RedisRateLimiter::builder(redis)
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

/// The refusal of scopes whose keys one call could name together, in different Redis Cluster
/// slots, with the fix (`redis.hash_tag_scope`). The limiter's builder and the facade's
/// configuration check both refuse with it.
pub fn cross_slot_error(scopes: &[&str]) -> tollgate_core::ConfigError {
    tollgate_core::ConfigError::new(
        "redis.hash_tag_scope",
        format!(
            "on Redis Cluster, one call's keys must share a slot, but a call limited by the scopes {} \
             would check keys in different slots (CROSSSLOT); set redis.hash_tag_scope to the scope \
             every call names (e.g. tenant), so each call's keys are stored in its key's slot (the \
             other scopes' quotas then count per key of that scope)",
            scopes
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

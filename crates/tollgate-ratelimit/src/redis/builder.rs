//! Builds a [`RedisRateLimiter`]: checks every setting, connects, loads the script.

use std::{sync::Arc, time::Duration};

use tollgate_core::{
    ConfigError,
    redis::{OnFailureConfig, RedisConfig, RedisConnection, RedisTarget},
};

use super::{
    FallbackBreaker, Inner, OnRedisFailure, RedisRateLimiter, lease::Leases, metrics, script,
};
use crate::{
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_PREFIX, DEFAULT_PROBE_INTERVAL, DEFAULT_REDIS_TIMEOUT,
    limiter::{RateLimiter, RateLimiterBuilder},
    quota::Quota,
};

/// Builds a [`RedisRateLimiter`]; checks everything in [`build`](Self::build).
#[must_use]
pub struct RedisRateLimiterBuilder {
    target: RedisTarget,
    limits: RateLimiterBuilder,
    prefix: String,
    hash_tag_scope: Option<String>,
    timeout: Duration,
    policy: OnRedisFailure,
    failure_threshold: u32,
    probe_interval: Duration,
    lease: Option<(u32, Duration)>,
}

impl std::fmt::Debug for RedisRateLimiterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiterBuilder")
            .field("target", &self.target)
            .field("limits", &self.limits)
            .field("prefix", &self.prefix)
            .field("hash_tag_scope", &self.hash_tag_scope)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiterBuilder {
    pub(super) fn new(target: RedisTarget) -> Self {
        Self {
            target,
            limits: RateLimiter::builder(),
            prefix: DEFAULT_PREFIX.to_owned(),
            hash_tag_scope: None,
            timeout: DEFAULT_REDIS_TIMEOUT,
            policy: OnRedisFailure::default(),
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            lease: None,
        }
    }

    /// Takes every limiter setting of a configuration's `redis` section: keys under
    /// `<prefix>:rl`, `limiter_timeout`, `on_failure` with `local_share`, `failure_threshold`,
    /// `probe_interval`, `hash_tag_scope` and `lease`. The section's cache settings are the
    /// cache's, and where Redis is comes from the target given to
    /// [`builder`](RedisRateLimiter::builder).
    pub fn config(mut self, redis: &RedisConfig) -> Self {
        self.prefix = redis.limiter_prefix();
        self.timeout = redis.limiter_timeout;
        self.failure_threshold = redis.failure_threshold;
        self.probe_interval = redis.probe_interval;
        self.policy = match redis.on_failure {
            OnFailureConfig::Local => OnRedisFailure::Local {
                share: redis.local_share,
            },
            OnFailureConfig::FailOpen => OnRedisFailure::FailOpen,
            OnFailureConfig::FailClosed => OnRedisFailure::FailClosed,
        };
        self.hash_tag_scope.clone_from(&redis.hash_tag_scope);
        self.lease = redis.lease.map(|lease| (lease.batch, lease.ttl));
        self
    }

    /// Takes the scopes and quotas (defaults and overrides) of `limits`, replacing any added so
    /// far, and for the in-process fallback ([`OnRedisFailure::Local`]) its key cap and clock.
    /// One description of the quotas can then build either limiter: `limits.build()` for this
    /// process alone, or this builder for Redis.
    pub fn limits(mut self, limits: RateLimiterBuilder) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a scope: a family of keys with `quota` as their default.
    pub fn scope(mut self, name: impl Into<String>, quota: Quota) -> Self {
        self.limits = self.limits.scope(name, quota);
        self
    }

    /// Gives `key` in scope `scope` its own quota instead of the scope's default.
    pub fn override_quota(
        mut self,
        scope: impl Into<String>,
        key: impl Into<String>,
        quota: Quota,
    ) -> Self {
        self.limits = self.limits.override_quota(scope, key, quota);
        self
    }

    /// Starts every Redis key name with `prefix` (default [`DEFAULT_PREFIX`]); processes share a
    /// quota exactly when they share a prefix (and a Redis).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Puts every key of a call in the Redis Cluster slot of its key in scope `scope` (e.g.
    /// `org`), so calls limited by a user and its organization stay in one slot. Required on a
    /// cluster when there are several scopes; calls that name one key are stored as without it.
    /// See [the type's docs](RedisRateLimiter#keys-and-redis-cluster) for the trade-off.
    pub fn hash_tag_scope(mut self, scope: impl Into<String>) -> Self {
        self.hash_tag_scope = Some(scope.into());
        self
    }

    /// How long one Redis call may take before the failure policy decides instead (default
    /// [`DEFAULT_REDIS_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do when Redis does not answer (default: decide locally with half of each tier).
    pub fn on_failure(mut self, policy: OnRedisFailure) -> Self {
        self.policy = policy;
        self
    }

    /// Leave Redis alone after this many failed calls in a row (default
    /// [`DEFAULT_FAILURE_THRESHOLD`]).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// While Redis is left alone, let one call try it this often (default
    /// [`DEFAULT_PROBE_INTERVAL`]); its success brings every call back to Redis.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Hybrid mode: lease `batch` permits per key at a time and admit from them locally, handing
    /// back what is unused after `ttl`. See [the type's docs](RedisRateLimiter#hybrid-mode).
    pub fn lease(mut self, batch: u32, ttl: Duration) -> Self {
        self.lease = Some((batch, ttl));
        self
    }

    /// The limiter. It connects lazily, so it starts (under its failure policy) while Redis is
    /// down; it must be built inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad URL, a zero timeout, threshold, batch or lease time, a share
    /// outside (0, 1], an unknown hash-tag scope, several scopes on a Redis Cluster without a
    /// hash-tag scope (a call naming two of them would span slots), a tier whose burst spans more than about 104
    /// days (the Redis script keeps nanoseconds in Lua's 53-bit integers), no Tokio runtime, or
    /// anything [`RateLimiterBuilder::build`] refuses.
    pub fn build(self) -> Result<RedisRateLimiter, ConfigError> {
        let definition = self.limits.definition()?;
        tollgate_core::non_zero("redis.timeout", self.timeout)?;
        tollgate_core::non_zero("redis.probe_interval", self.probe_interval)?;
        if self.failure_threshold == 0 {
            return Err(ConfigError::new(
                "redis.failure_threshold",
                "must be at least 1",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "redis.prefix",
                "must be non-empty and free of '{' and '}' (they make Redis Cluster hash tags)",
            ));
        }
        let hash_tag = match &self.hash_tag_scope {
            None => None,
            Some(name) => Some(definition.scope(name).ok_or_else(|| {
                ConfigError::new(
                    "redis.hash_tag_scope",
                    format!("no scope is named {name:?}"),
                )
            })?),
        };
        if self.target.is_cluster() && hash_tag.is_none() {
            let scopes: Vec<&str> = definition.scope_names().collect();
            if scopes.len() > 1 {
                return Err(crate::cross_slot_error(&scopes));
            }
        }
        for quota in definition.all_quotas() {
            fits(quota)?;
        }
        let fallback = match self.policy {
            OnRedisFailure::Local { share } => {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(ConfigError::new(
                        "redis.on_failure.share",
                        format!("must be more than 0 and at most 1, got {share}"),
                    ));
                }
                // Nobody reads the fallback's per-key counts, so it keeps none.
                Some(self.limits.limiter_over(definition.scaled(share)?, false))
            }
            _ => None,
        };
        let leases = match self.lease {
            None => None,
            Some((0, _)) => {
                return Err(ConfigError::new("redis.lease.batch", "must be at least 1"));
            }
            Some((batch, ttl)) => {
                tollgate_core::non_zero("redis.lease.ttl", ttl)?;
                Some(Leases::new(batch, ttl))
            }
        };
        let connection = RedisConnection::open(&self.target, self.timeout, self.probe_interval)?;
        let (clock, wall_origin) = self.limits.timeline();
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                definition,
                clock,
                wall_origin,
                fallback,
                connection,
                script: redis::Script::new(script::SOURCE),
                prefix: self.prefix,
                hash_tag,
                timeout: self.timeout,
                policy: self.policy,
                breaker: FallbackBreaker::new(self.failure_threshold, self.probe_interval),
                leases,
                counts: metrics::Counts::default(),
            }),
        })
    }
}

/// Refuses a quota with a tier whose schedule the script cannot hold exactly.
pub(super) fn fits(quota: &crate::Quota) -> Result<(), ConfigError> {
    let too_long = quota
        .tiers()
        .iter()
        .find(|tier| tier.window_nanos() > script::MAX_WINDOW_NANOS);
    match too_long {
        Some(tier) => Err(ConfigError::new(
            format!("tiers.{tier}"),
            "a tier's burst spans more than about 104 days of schedule, which the Redis store cannot hold exactly; use a shorter period or a smaller burst",
        )),
        None => Ok(()),
    }
}

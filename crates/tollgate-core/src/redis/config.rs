//! [`RedisConfig`]: the one `redis` section, where Redis is and how the rate limiter and the
//! cache use it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
use super::{
    connection::{RedisConnection, RedisTarget},
    node::shown,
    sentinel::SentinelTarget,
};
use crate::{ConfigError, duration};

/// The environment variable that replaces the Redis a `redis` section names
/// ([`RedisConfig::with_env_from`]).
pub const REDIS_URL_VAR: &str = "REDIS_URL";

/// Default key prefix: the rate limiter's keys go under `<prefix>:rl`, the cache's under
/// `<prefix>:cache`, and a configured stack's router shares its deployments' cooldowns in
/// `<prefix>:{router}:health`.
pub const DEFAULT_PREFIX: &str = "tollgate";

/// Default time a limiter call to Redis may take before the failure policy decides instead: a
/// limit decision must not hold a call up for longer.
pub const DEFAULT_LIMITER_TIMEOUT: Duration = Duration::from_millis(5);

/// Default time a cache read or write may take; past it a read is a miss, a write is dropped.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(50);

/// Default largest answer (after compression) the cache writes to Redis.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 512 * 1024;

/// Default number of failed limiter calls in a row after which the limiter stops calling Redis.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Default time between probes of a Redis the limiter stopped calling.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Default share of each tier a process may use on its own while Redis is away.
pub const DEFAULT_LOCAL_SHARE: f64 = 0.5;

/// The `redis` section of a configuration: where Redis is, and how each layer that keeps state
/// there uses it. The facade's and the gateway's configuration and the rate limiter's own read
/// this one type; the limiter and the cache each take their own settings from it (their
/// builders' `config`), and [`check`](Self::check) holds every rule of the section itself (whether
/// the limits fit a Redis Cluster's slots is checked where the limits are known: the facade's
/// configuration and the limiter's builder). Unknown fields are errors. A stack built from a
/// configuration also shares its router's cooldowns and rate-limit readings there, with nothing
/// to set: it reads them every 250 ms, and a read or write bounded at 500 ms never holds up a
/// call, which reads only memory.
///
/// ```yaml
/// redis:
///   url: redis://127.0.0.1:6379/    # one server; REDIS_URL overrides it
///   # or: cluster: { nodes: [redis://10.0.0.1:7000/, redis://10.0.0.2:7000/] }
///   # or: sentinel: { master_name: mymaster, nodes: [redis://10.0.0.5:26379/], password_env: REDIS_PASSWORD }
///   prefix: myapp                   # keys under myapp:rl, myapp:cache and myapp:{router}:health (default tollgate)
///   limiter_timeout: 5ms            # per limiter call (default 5ms)
///   on_failure: local               # local (default), fail_open or fail_closed
///   local_share: 0.25               # of each tier, for `local` (default 0.5)
///   failure_threshold: 3            # failures in a row before Redis is left alone
///   probe_interval: 500ms           # how often a call tries it again
///   hash_tag_scope: tenant          # put a call's keys in this scope's Cluster slot
///   lease: { batch: 100, ttl: 1s }  # hybrid mode
///   cache_timeout: 50ms             # per cache call (default 50ms)
///   cache_max_value_bytes: 524288   # larger answers are not written (default 512 KiB)
///   cache_compress: true            # LZ4 (default false)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// One server, `redis://host:port/db`. Exactly one of `url`, `cluster` and `sentinel`; the
    /// [`REDIS_URL_VAR`] environment variable replaces whichever is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Redis Cluster, found through some of its nodes (`{ nodes: [redis://host:7000/, ...] }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// The master Redis Sentinel names
    /// (`{ master_name: mymaster, nodes: [redis://host:26379/], password_env: REDIS_PASSWORD }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelConfig>,
    /// Key prefix (default [`DEFAULT_PREFIX`]): the limiter's keys go under `<prefix>:rl`, the
    /// cache's under `<prefix>:cache`, the router's shared cooldowns in `<prefix>:{router}:health`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The rate-limit scope whose key gives every key of a call its Cluster slot (e.g.
    /// `tenant`). Required on a cluster when the limits have several scopes, since one script
    /// checks a call's keys together and a cluster runs a script only within one slot. The
    /// other scopes' quotas then count per key of this scope: with `tenant`, a provider's
    /// quota is each tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_tag_scope: Option<String>,
    /// What the limiter does while Redis does not answer: `local` (default: an in-process limiter
    /// with `local_share` of each tier), `fail_open` or `fail_closed`. The cache always treats an
    /// unanswered read as a miss.
    #[serde(default)]
    pub on_failure: OnFailureConfig,
    /// The share of each tier the local fallback holds (default [`DEFAULT_LOCAL_SHARE`]).
    #[serde(default = "default_share")]
    pub local_share: f64,
    /// Limiter calls failed in a row before Redis is left alone for a while (default
    /// [`DEFAULT_FAILURE_THRESHOLD`]).
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// How often one limiter call probes a Redis that was left alone (default 500 ms).
    #[serde(default = "default_probe", with = "duration")]
    pub probe_interval: Duration,
    /// Bound on each limiter call to Redis (default 5 ms).
    #[serde(default = "default_limiter_timeout", with = "duration")]
    pub limiter_timeout: Duration,
    /// Hybrid mode for request limits: lease permits in batches (`{ batch: 100, ttl: 1s }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseConfig>,
    /// Bound on each cache call to Redis (default 50 ms).
    #[serde(default = "default_cache_timeout", with = "duration")]
    pub cache_timeout: Duration,
    /// Cached answers larger than this in Redis (after compression) are not written there
    /// (default 512 KiB).
    #[serde(default = "default_max_value_bytes")]
    pub cache_max_value_bytes: usize,
    /// Compress cached answers in Redis with LZ4 (default false): natural-language answers shrink
    /// to about half, for a few microseconds per kilobyte on each write and read.
    #[serde(default)]
    pub cache_compress: bool,
}

/// What the limiter decides by while Redis does not answer.
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

/// The `cluster` part of a `redis` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Some of the cluster's nodes (`redis://host:port/`); the rest are found through them.
    pub nodes: Vec<String>,
}

/// The `sentinel` part of a `redis` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the Sentinels monitor the master under.
    pub master_name: String,
    /// The Sentinels' URLs.
    pub nodes: Vec<String>,
    /// The database on the master (default 0).
    #[serde(default)]
    pub db: i64,
    /// The master's user, when it has ACLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The environment variable holding the master's password (the password itself is never
    /// written in a configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

impl Default for RedisConfig {
    /// Every default, and no Redis named yet.
    fn default() -> Self {
        Self {
            url: None,
            cluster: None,
            sentinel: None,
            prefix: default_prefix(),
            hash_tag_scope: None,
            on_failure: OnFailureConfig::default(),
            local_share: DEFAULT_LOCAL_SHARE,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            limiter_timeout: DEFAULT_LIMITER_TIMEOUT,
            lease: None,
            cache_timeout: DEFAULT_CACHE_TIMEOUT,
            cache_max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            cache_compress: false,
        }
    }
}

impl RedisConfig {
    /// One server at `url`, with every default.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// This section with [`REDIS_URL_VAR`], read through `lookup`, in place of the Redis it names
    /// (its `url`, `cluster` or `sentinel`).
    #[must_use]
    pub fn with_env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(url) = lookup(REDIS_URL_VAR) {
            self.url = Some(url);
            self.cluster = None;
            self.sentinel = None;
        }
        self
    }

    /// The limiter's key prefix: `<prefix>:rl`.
    pub fn limiter_prefix(&self) -> String {
        format!("{}:rl", self.prefix)
    }

    /// The cache's key prefix: `<prefix>:cache`.
    pub fn cache_prefix(&self) -> String {
        format!("{}:cache", self.prefix)
    }

    /// The hash a configured stack's router shares its deployments' cooldowns and rate-limit
    /// readings in: `<prefix>:{router}:health` (a hash tag of its own, for a Redis Cluster).
    pub fn router_health_key(&self) -> String {
        format!("{}:{{router}}:health", self.prefix)
    }

    /// Every mistake in the section, each named under `redis` (`redis.local_share: must be above
    /// 0 and at most 1, got 2`). The shape of the Redis named is checked with the `redis`
    /// feature; password variables are read only when a connection is opened.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        #[cfg(feature = "redis")]
        if let Err(e) = target_of(
            self.url.as_deref(),
            self.cluster.as_ref(),
            self.sentinel.as_ref(),
            |_| Some(String::new()),
        ) {
            errors.push(e);
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            errors.push(ConfigError::new(
                "redis.prefix",
                "must be non-empty and free of '{' and '}' (they make Redis Cluster hash tags)",
            ));
        }
        if !(self.local_share > 0.0 && self.local_share <= 1.0) {
            errors.push(ConfigError::new(
                "redis.local_share",
                format!("must be above 0 and at most 1, got {}", self.local_share),
            ));
        }
        if self.failure_threshold == 0 {
            errors.push(ConfigError::new("redis.failure_threshold", "must be > 0"));
        }
        if self.cache_max_value_bytes == 0 {
            errors.push(ConfigError::new(
                "redis.cache_max_value_bytes",
                "must be > 0",
            ));
        }
        for (field, value) in [
            ("probe_interval", self.probe_interval),
            ("limiter_timeout", self.limiter_timeout),
            ("cache_timeout", self.cache_timeout),
        ] {
            if let Err(e) = crate::non_zero(&format!("redis.{field}"), value) {
                errors.push(e);
            }
        }
        if let Some(lease) = self.lease {
            if lease.batch == 0 {
                errors.push(ConfigError::new("redis.lease.batch", "must be > 0"));
            }
            if let Err(e) = crate::non_zero("redis.lease.ttl", lease.ttl) {
                errors.push(e);
            }
        }
        errors
    }

    /// Where the section says Redis is; `env` reads `sentinel.password_env`.
    ///
    /// # Errors
    ///
    /// As [`target_of`].
    #[cfg(feature = "redis")]
    pub fn target(&self, env: impl Fn(&str) -> Option<String>) -> Result<RedisTarget, ConfigError> {
        target_of(
            self.url.as_deref(),
            self.cluster.as_ref(),
            self.sentinel.as_ref(),
            env,
        )
    }

    /// One connection to the Redis the section names, for every layer that uses it: connection
    /// attempts bounded by the longer of the limiter's and the cache's timeouts, and backing off
    /// up to `probe_interval`. `env` reads `sentinel.password_env`.
    ///
    /// The section's settings are those [`check`](Self::check) passed: this checks only what
    /// it needs to connect.
    ///
    /// # Errors
    ///
    /// As [`target`](Self::target), and what
    /// [`RedisConnection::open`] refuses.
    #[cfg(feature = "redis")]
    pub fn connect(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RedisConnection, ConfigError> {
        RedisConnection::open(
            &self.target(env)?,
            self.limiter_timeout.max(self.cache_timeout),
            self.probe_interval,
        )
    }
}

/// The target a configuration's `redis` section names: exactly one of `url`, `cluster` and
/// `sentinel`. `env` reads `sentinel.password_env`. Mistakes are named under `redis`.
///
/// # Errors
///
/// None or more than one of the three; an empty node list; a URL that is not `redis://` (or
/// `rediss://`, `unix://`, `redis+unix://`); a password variable that is not set.
#[cfg(feature = "redis")]
pub fn target_of(
    url: Option<&str>,
    cluster: Option<&ClusterConfig>,
    sentinel: Option<&SentinelConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RedisTarget, ConfigError> {
    let given = [url.is_some(), cluster.is_some(), sentinel.is_some()];
    match given.iter().filter(|given| **given).count() {
        0 => {
            return Err(ConfigError::new(
                "redis",
                "name the Redis to use: `url` (one server), `cluster: { nodes }` or `sentinel: { master_name, nodes }`",
            ));
        }
        1 => {}
        _ => {
            return Err(ConfigError::new(
                "redis",
                "give only one of `url`, `cluster` and `sentinel`",
            ));
        }
    }
    if let Some(url) = url {
        check_url("redis.url", url)?;
        return Ok(RedisTarget::Server(url.to_owned()));
    }
    if let Some(cluster) = cluster {
        check_nodes("redis.cluster.nodes", &cluster.nodes)?;
        return Ok(RedisTarget::Cluster(cluster.nodes.clone()));
    }
    let sentinel = sentinel.expect("one of the three");
    check_nodes("redis.sentinel.nodes", &sentinel.nodes)?;
    if sentinel.master_name.trim().is_empty() {
        return Err(ConfigError::new(
            "redis.sentinel.master_name",
            "must not be empty",
        ));
    }
    let password = match &sentinel.password_env {
        None => None,
        Some(var) => Some(env(var).ok_or_else(|| {
            ConfigError::new(
                "redis.sentinel.password_env",
                format!("the environment variable {var} is not set"),
            )
        })?),
    };
    Ok(RedisTarget::Sentinel(SentinelTarget {
        master_name: sentinel.master_name.clone(),
        sentinels: sentinel.nodes.clone(),
        db: sentinel.db,
        username: sentinel.username.clone(),
        password,
    }))
}

#[cfg(feature = "redis")]
fn check_nodes(path: &str, nodes: &[String]) -> Result<(), ConfigError> {
    if nodes.is_empty() {
        return Err(ConfigError::new(path, "list at least one node"));
    }
    for (i, node) in nodes.iter().enumerate() {
        check_url(&format!("{path}.{i}"), node)?;
    }
    Ok(())
}

#[cfg(feature = "redis")]
fn check_url(path: &str, url: &str) -> Result<(), ConfigError> {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!(
                "must start with redis:// (or rediss://, unix://, redis+unix://), got {:?}",
                shown(url)
            ),
        ))
    }
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}

fn default_share() -> f64 {
    DEFAULT_LOCAL_SHARE
}

fn default_threshold() -> u32 {
    DEFAULT_FAILURE_THRESHOLD
}

fn default_probe() -> Duration {
    DEFAULT_PROBE_INTERVAL
}

fn default_limiter_timeout() -> Duration {
    DEFAULT_LIMITER_TIMEOUT
}

fn default_cache_timeout() -> Duration {
    DEFAULT_CACHE_TIMEOUT
}

fn default_max_value_bytes() -> usize {
    DEFAULT_MAX_VALUE_BYTES
}

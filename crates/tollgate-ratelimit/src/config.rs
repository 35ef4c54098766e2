//! `RateLimitConfig`: the whole layer from one serde document.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use tollgate_core::{
    ByModel, ByPrincipal, ByProvider, ByRole, ByTenant, ConfigError, Global, Key, KeyExtractor,
    LlmRequest, MicroUsd, PricingTable, duration,
};

use crate::{
    layer::{DEFAULT_OUTPUT_TOKENS, RateLimitLayer},
    limiter::{DEFAULT_MAX_KEYS, RateLimiter, RateLimiterBuilder},
    policy::{Limiter, OnLimit, UnpricedModels},
    quota::{Dimension, Quota, Tier},
};

/// The rate-limit section of a configuration. Unknown fields are errors.
///
/// ```
/// use tollgate_ratelimit::RateLimitConfig;
///
/// let config: RateLimitConfig = serde_json::from_str(r#"{
///     "wait": "2s",
///     "scopes": [
///         { "name": "user", "key": "principal",
///           "tiers": [ { "requests": 60, "per": "1m", "burst": 10 },
///                      { "tokens": 100000, "per": "1h" } ],
///           "overrides": { "vip": [ { "requests": 600, "per": "1m" } ] } },
///         { "name": "org", "key": "tenant",
///           "tiers": [ { "cost": "50.00", "per": "1d" }, { "cost": "1000", "per": "30d" } ] },
///         { "name": "provider", "key": ["provider", "model"],
///           "tiers": [ { "requests": 60, "per": "1m" },
///                      { "requests": 1000, "per": "1h" },
///                      { "requests": 10000, "per": "1d" } ] }
///     ]
/// }"#).unwrap();
///
/// let pricing = serde_json::from_str(r#"{ "gpt-4o": { "input": "2.50", "output": "10.00" } }"#).unwrap();
/// let layer = config.build(Some(pricing)).unwrap();
/// assert_eq!(layer.limiter().scope_names().collect::<Vec<_>>(), ["user", "org", "provider"]);
///
/// // Mistakes name the field.
/// let bad: RateLimitConfig = serde_json::from_str(
///     r#"{ "scopes": [ { "name": "user", "key": "tenant", "tiers": [ { "requests": -5, "per": "1m" } ] } ] }"#,
/// ).unwrap();
/// let err = bad.build(None).unwrap_err();
/// assert_eq!(err.path(), "scopes[0].tiers[0].requests");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Wait up to this long for room before refusing (`"2s"`); absent, refuse at once.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub wait: Option<Duration>,
    /// At most this many keys tracked at once (default 100,000).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Count decisions per key too.
    #[serde(default)]
    pub per_key_metrics: bool,
    /// Tokens reserved for an answer when a request sets no `max_tokens` (default 1,024).
    #[serde(default = "default_output_tokens")]
    pub default_output_tokens: u64,
    /// Calls to models without a price, when a quota counts cost: `reject` (default) or `free`.
    #[serde(default)]
    pub unpriced_models: UnpricedModels,
    /// The scopes every request is checked against, all at once.
    pub scopes: Vec<ScopeConfig>,
    /// Share the quotas through Redis (needs the `redis` feature); absent, they live in this
    /// process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
}

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
    /// ([`RateLimitConfig::with_env`]).
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

/// The environment variable whose value replaces `redis.url`.
pub const REDIS_URL_VAR: &str = "REDIS_URL";

/// The environment variable that replaces scope `scope`'s default tiers:
/// `TOLLGATE_RATELIMIT_<SCOPE>_TIERS`, the scope's name upper-cased with every other character than
/// letters and digits as `_`. Its value is the tiers as JSON, in the configuration's shape:
/// `[{"requests": 60, "per": "1m"}]`.
pub fn tiers_var(scope: &str) -> String {
    let name: String = scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TOLLGATE_RATELIMIT_{name}_TIERS")
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

fn default_output_tokens() -> u64 {
    DEFAULT_OUTPUT_TOKENS
}

/// One scope: how a request's key is made, its default tiers, and per-key overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// The scope's name, used in denials and metrics.
    pub name: String,
    /// Which request fields make the key.
    pub key: KeyBy,
    /// The default quota.
    pub tiers: Vec<TierConfig>,
    /// Quotas for particular keys, replacing the default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, Vec<TierConfig>>,
}

/// Request fields a key is made of: one (`"tenant"`) or several joined by `|` (`["provider", "model"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyBy {
    /// One field.
    One(KeyField),
    /// Several fields, joined by `|`.
    Many(Vec<KeyField>),
}

/// A request field a key can be made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// The same key for every request.
    Global,
    /// `meta.tenant`.
    Tenant,
    /// `meta.principal`.
    Principal,
    /// `provider`.
    Provider,
    /// `model`.
    Model,
    /// `meta.role`.
    Role,
}

impl KeyField {
    fn extract(self, request: &LlmRequest) -> Key {
        match self {
            Self::Global => Global.extract(request),
            Self::Tenant => ByTenant.extract(request),
            Self::Principal => ByPrincipal.extract(request),
            Self::Provider => ByProvider.extract(request),
            Self::Model => ByModel.extract(request),
            Self::Role => ByRole.extract(request),
        }
    }
}

impl KeyExtractor for KeyBy {
    fn extract(&self, request: &LlmRequest) -> Key {
        match self {
            Self::One(field) => field.extract(request),
            Self::Many(fields) => {
                let parts: Vec<Key> = fields.iter().map(|f| f.extract(request)).collect();
                Key::from(parts.iter().map(Key::as_str).collect::<Vec<_>>().join("|"))
            }
        }
    }
}

/// A number in a tier: a whole count, or (for cost) dollars as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// A whole number (for cost: whole dollars).
    Whole(i64),
    /// A decimal string of dollars, e.g. `"2.50"` (cost only).
    Dollars(String),
}

/// One tier: exactly one of `requests`, `tokens` or `cost`, a period `per`, and an optional `burst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Requests per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Amount>,
    /// Tokens per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Amount>,
    /// Dollars per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Amount>,
    /// The period (`"1m"`, `"1h"`, `"1d"`, `"30d"`).
    #[serde(with = "duration")]
    pub per: Duration,
    /// At most this much at once (default: the whole limit); dollars for a cost tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Amount>,
}

impl TierConfig {
    /// The tier this describes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose path is the offending field (`requests`, `burst`, ...), or empty
    /// when not exactly one of `requests`, `tokens` and `cost` is given.
    pub fn to_tier(&self) -> Result<Tier, ConfigError> {
        let given = [
            ("requests", Dimension::Requests, &self.requests),
            ("tokens", Dimension::Tokens, &self.tokens),
            ("cost", Dimension::Cost, &self.cost),
        ];
        let mut set = given.iter().filter(|(_, _, value)| value.is_some());
        let (Some((field, dimension, Some(limit))), None) = (set.next(), set.next()) else {
            return Err(ConfigError::new(
                "",
                "give exactly one of requests, tokens or cost",
            ));
        };
        let limit = amount(field, *dimension, limit)?;
        let mut tier = Tier::new(*dimension, limit, self.per);
        if let Some(burst) = &self.burst {
            tier = tier.with_burst(amount("burst", *dimension, burst)?);
        }
        Ok(tier)
    }

    fn field(&self) -> &'static str {
        if self.tokens.is_some() {
            "tokens"
        } else if self.cost.is_some() {
            "cost"
        } else {
            "requests"
        }
    }
}

fn amount(field: &str, dimension: Dimension, value: &Amount) -> Result<u64, ConfigError> {
    match (dimension, value) {
        (_, Amount::Whole(n)) if *n <= 0 => Err(ConfigError::new(
            field,
            format!("must be positive, got {n}"),
        )),
        (Dimension::Cost, Amount::Whole(n)) => Ok(MicroUsd::from_dollars(*n as u64).0),
        (Dimension::Cost, Amount::Dollars(text)) => match text.parse::<MicroUsd>() {
            Ok(MicroUsd(0)) => Err(ConfigError::new(field, "must be more than $0")),
            Ok(micros) => Ok(micros.0),
            Err(e) => Err(ConfigError::new(field, e.to_string())),
        },
        (_, Amount::Whole(n)) => Ok(*n as u64),
        (_, Amount::Dollars(text)) => Err(ConfigError::new(
            field,
            format!("expected a whole number, got {text:?}"),
        )),
    }
}

fn quota(tiers: &[TierConfig]) -> Result<Quota, ConfigError> {
    let built = tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| tier.to_tier().map_err(|e| e.under(&format!("tiers[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    Quota::new(built).map_err(|e| {
        // Quota names a tier's limit `limit`; in configuration it is the dimension's own field.
        match e.path().strip_suffix(".limit").and_then(|tier| {
            let index: usize = tier
                .strip_prefix("tiers[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            Some((tier.to_owned(), tiers.get(index)?.field()))
        }) {
            Some((tier, field)) => ConfigError::new(format!("{tier}.{field}"), e.reason()),
            None => e,
        }
    })
}

#[cfg(not(feature = "redis"))]
fn redis_limiter(_: &RedisConfig, _: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    Err(ConfigError::new(
        "redis",
        "this build has no Redis support: enable the `redis` feature of tollgate-ratelimit (or tollgate)",
    ))
}

#[cfg(feature = "redis")]
fn redis_limiter(redis: &RedisConfig, limits: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    redis.builder().limits(limits).build().map(Limiter::Redis)
}

impl RateLimitConfig {
    /// This configuration with the environment's overrides: [`REDIS_URL_VAR`] replaces
    /// `redis.url` (when there is a `redis` section), and [`tiers_var`] replaces a scope's default
    /// tiers.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable when its value is not valid tiers.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// [`with_env`](Self::with_env), reading variables through `lookup` (for tests and for
    /// sources other than the process environment).
    ///
    /// ```
    /// use tollgate_ratelimit::RateLimitConfig;
    ///
    /// let config: RateLimitConfig = serde_json::from_str(r#"{
    ///     "scopes": [ { "name": "user", "key": "principal", "tiers": [ { "requests": 60, "per": "1m" } ] } ],
    ///     "redis": { "url": "redis://config-host/" }
    /// }"#).unwrap();
    /// let env = |name: &str| match name {
    ///     "REDIS_URL" => Some("redis://env-host:6380/".to_owned()),
    ///     "TOLLGATE_RATELIMIT_USER_TIERS" => Some(r#"[{ "requests": 600, "per": "1m" }]"#.to_owned()),
    ///     _ => None,
    /// };
    /// let config = config.with_env_from(env).unwrap();
    /// assert_eq!(config.redis.unwrap().url, "redis://env-host:6380/");
    /// assert_eq!(config.scopes[0].tiers[0].requests, Some(tollgate_ratelimit::Amount::Whole(600)));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`with_env`](Self::with_env).
    pub fn with_env_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if let (Some(redis), Some(url)) = (&mut self.redis, lookup(REDIS_URL_VAR)) {
            redis.url = url;
        }
        for scope in &mut self.scopes {
            let var = tiers_var(&scope.name);
            if let Some(value) = lookup(&var) {
                scope.tiers = serde_json::from_str(&value).map_err(|e| {
                    ConfigError::new(
                        format!("env.{var}"),
                        format!("expected tiers as JSON, e.g. [{{\"requests\": 60, \"per\": \"1m\"}}]: {e}"),
                    )
                })?;
            }
        }
        Ok(self)
    }

    /// The limiter this configuration describes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field, e.g. `scopes[1].tiers[0].burst`.
    pub fn build_limiter(&self) -> Result<RateLimiter, ConfigError> {
        self.limits()?.build()
    }

    /// The scopes, quotas and key cap, checked, for whichever limiter is built from them.
    fn limits(&self) -> Result<RateLimiterBuilder, ConfigError> {
        if self.scopes.is_empty() {
            return Err(ConfigError::new("scopes", "add at least one scope"));
        }
        let mut builder = RateLimiter::builder()
            .max_keys(self.max_keys)
            .per_key_metrics(self.per_key_metrics);
        for (i, scope) in self.scopes.iter().enumerate() {
            let at = format!("scopes[{i}]");
            if scope.name.trim().is_empty() {
                return Err(ConfigError::new(format!("{at}.name"), "must not be empty"));
            }
            if let KeyBy::Many(fields) = &scope.key {
                if fields.is_empty() {
                    return Err(ConfigError::new(
                        format!("{at}.key"),
                        "name at least one field",
                    ));
                }
            }
            builder = builder.scope(&scope.name, quota(&scope.tiers).map_err(|e| e.under(&at))?);
            for (key, tiers) in &scope.overrides {
                let quota = quota(tiers).map_err(|e| e.under(&format!("{at}.overrides.{key}")))?;
                builder = builder.override_quota(&scope.name, key, quota);
            }
        }
        Ok(builder)
    }

    /// The limiter this configuration describes: in this process, or through Redis when there is
    /// a `redis` section (which needs the `redis` feature and a Tokio runtime).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field.
    pub fn limiter(&self) -> Result<Limiter, ConfigError> {
        let limits = self.limits()?;
        match &self.redis {
            None => limits.build().map(Limiter::Local),
            Some(redis) => redis_limiter(redis, limits),
        }
    }

    /// The layer this configuration describes, pricing cost tiers with `pricing`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field; `pricing` when a tier counts cost and no table is given.
    pub fn build(&self, pricing: Option<PricingTable>) -> Result<RateLimitLayer, ConfigError> {
        let limiter = self.limiter()?;
        let mut builder = RateLimitLayer::builder(limiter.clone())
            .on_limit(self.wait.map_or(OnLimit::Reject, OnLimit::Wait))
            .default_output_tokens(self.default_output_tokens)
            .unpriced_models(self.unpriced_models);
        if let Some(pricing) = pricing {
            builder = builder.pricing(pricing);
        }
        for scope in &self.scopes {
            let handle = limiter.scope(&scope.name).expect("built from these scopes");
            builder = builder.key(handle, scope.key.clone());
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<RateLimitLayer, ConfigError> {
        let config: RateLimitConfig = serde_json::from_str(json).expect("parses");
        config.build(None)
    }

    fn path(json: &str) -> String {
        build(json).unwrap_err().path().to_owned()
    }

    #[test]
    fn mistakes_name_their_field() {
        let scope = |tiers: &str| {
            format!(
                r#"{{ "scopes": [ {{ "name": "u", "key": "tenant", "tiers": [ {tiers} ] }} ] }}"#
            )
        };
        assert_eq!(
            path(&scope(r#"{ "requests": 0, "per": "1m" }"#)),
            "scopes[0].tiers[0].requests"
        );
        assert_eq!(
            path(&scope(r#"{ "tokens": "lots", "per": "1m" }"#)),
            "scopes[0].tiers[0].tokens"
        );
        assert_eq!(
            path(&scope(r#"{ "requests": 5, "tokens": 5, "per": "1m" }"#)),
            "scopes[0].tiers[0]"
        );
        assert_eq!(
            path(&scope(r#"{ "requests": 5, "per": "1m", "burst": 6 }"#)),
            "scopes[0].tiers[0].burst"
        );
        assert_eq!(
            path(&scope(
                r#"{ "requests": 60, "per": "1m" }, { "requests": 10, "per": "1h" }"#
            )),
            "scopes[0].tiers[1].requests"
        );
        assert_eq!(
            path(&scope(r#"{ "cost": "-1", "per": "1d" }"#)),
            "scopes[0].tiers[0].cost"
        );
        assert_eq!(path(&scope(r#"{ "cost": "5", "per": "1d" }"#)), "pricing");
        assert_eq!(path(r#"{ "scopes": [] }"#), "scopes");
        assert_eq!(path(r#"{ "scopes": [], "wait": "0s" }"#), "scopes");
    }

    #[test]
    fn unknown_fields_and_bad_durations_do_not_parse() {
        for json in [
            r#"{ "scopes": [], "max_key": 5 }"#,
            r#"{ "scopes": [ { "name": "u", "key": "tenant", "tiers": [ { "requests": 5, "per": "1m", "brust": 2 } ] } ] }"#,
            r#"{ "scopes": [ { "name": "u", "key": "tenant", "tiers": [ { "requests": 5, "per": 60 } ] } ] }"#,
            r#"{ "scopes": [ { "name": "u", "key": "tenant_id", "tiers": [] } ] }"#,
        ] {
            assert!(
                serde_json::from_str::<RateLimitConfig>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn keys_join_fields() {
        let key = KeyBy::Many(vec![KeyField::Provider, KeyField::Model]);
        let req = LlmRequest::new("m", vec![]).with_provider("p");
        assert_eq!(key.extract(&req), "p|m");
    }
}

//! `RateLimitConfig`: the whole layer from one serde document. The facade's `rate_limiting:`
//! section is this type.

mod build;
mod redis;

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use tollgate_core::{
    ByModel, ByPrincipal, ByProvider, ByRole, ByTenant, ConfigError, Global, Key, KeyExtractor,
    LlmRequest, duration,
};

pub use redis::cross_slot_error;
use tollgate_core::redis::RedisConfig;

use crate::{
    limiter::DEFAULT_MAX_KEYS,
    limits::{Limits, TierConfig},
    policy::UnpricedModels,
};

/// The scope the `tenants` entries make, keyed by `meta.tenant`.
pub const TENANT_SCOPE: &str = "tenant";
/// The scope the `providers` entries make, keyed by `provider`.
pub const PROVIDER_SCOPE: &str = "provider";
/// The scope the `principals` entries make, keyed by `meta.principal`.
pub const PRINCIPAL_SCOPE: &str = "principal";
/// The scope the `roles` entries make, keyed by `meta.role`.
pub const ROLE_SCOPE: &str = "role";
/// The `tenants` entry every tenant without its own gets.
pub const DEFAULT_TENANT: &str = "default";

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
///
/// `tenants` and `providers` are two scopes written shortly, as the facade's YAML does:
///
/// ```
/// use tollgate_ratelimit::RateLimitConfig;
///
/// let config: RateLimitConfig = serde_json::from_str(r#"{
///     "tenants": { "default": { "per_minute": 60 }, "acme": { "per_minute": 600, "cost_per_day": "20" } },
///     "providers": { "openai": { "tokens_per_minute": 200000 } }
/// }"#).unwrap();
/// assert_eq!(config.tenant_limits("globex").unwrap().per_minute, Some(60));
/// assert!(config.has_budget());
/// let pricing = serde_json::from_str(r#"{ "gpt-4o": { "input": "2.50", "output": "10.00" } }"#).unwrap();
/// let layer = config.build(Some(pricing)).unwrap();
/// assert_eq!(layer.limiter().scope_names().collect::<Vec<_>>(), ["tenant", "provider"]);
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
    /// The output bound of a request that sets no `max_tokens`, where a quota counts tokens or
    /// cost: reserved, and sent to the provider as the request's `max_tokens` (default: the
    /// model's own limit where tollgate knows it, else 4,096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_output_tokens: Option<u32>,
    /// Calls to models without a price, when a quota counts cost: `reject` (default) or `free`.
    #[serde(default)]
    pub unpriced_models: UnpricedModels,
    /// Per tenant (the scope `tenant`): `default` for every tenant not listed, and a tenant's own
    /// entry instead of it; without a `default`, only the tenants listed are limited. Cost tiers
    /// here are the tenants' budgets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, Limits>,
    /// Per provider (the scope `provider`), shared by everyone calling it; providers not listed
    /// are not limited by it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, Limits>,
    /// Per principal (the scope `principal`, keyed by `meta.principal`: a user, an API key, an
    /// agent); principals not listed are not limited by it. The gateway puts each virtual key's
    /// own limits here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub principals: BTreeMap<String, Limits>,
    /// Per role (the scope `role`, keyed by `meta.role`), shared by every caller of the role:
    /// `roles: { gpt4: { budgets: [{ limit: "500", period: month }] } }`. Roles not listed are
    /// not limited by it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Limits>,
    /// More scopes, each keyed by the request fields it names. Every scope is checked against
    /// every request, all at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ScopeConfig>,
    /// Share the quotas through Redis (needs the `redis` feature); absent, they live in this
    /// process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// The scopes among `tenant`, `principal` and `role` the limiter has even with no entries,
    /// so their keys can be given quotas while it runs ([`Limiter::set_quotas`](crate::Limiter::set_quotas));
    /// set with [`open_scope`](Self::open_scope), never read from a file.
    #[serde(skip)]
    open: Vec<&'static str>,
}

impl Default for RateLimitConfig {
    /// No limits yet, every other setting at its default.
    fn default() -> Self {
        Self {
            wait: None,
            max_keys: DEFAULT_MAX_KEYS,
            per_key_metrics: false,
            default_output_tokens: None,
            unpriced_models: UnpricedModels::default(),
            tenants: BTreeMap::new(),
            providers: BTreeMap::new(),
            principals: BTreeMap::new(),
            roles: BTreeMap::new(),
            scopes: Vec::new(),
            redis: None,
            open: Vec::new(),
        }
    }
}

#[doc(no_inline)]
pub use tollgate_core::redis::REDIS_URL_VAR;

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

impl RateLimitConfig {
    /// Keeps the scope `scope` (one of [`TENANT_SCOPE`], [`PRINCIPAL_SCOPE`] and
    /// [`ROLE_SCOPE`]) in the limiter even when this configuration gives it no entry, so that
    /// keys can be given quotas of their own while it runs, as a gateway does for keys and teams
    /// kept in a database. Only keys with a quota of their own are limited by such a scope.
    ///
    /// # Panics
    ///
    /// For any other scope.
    #[must_use]
    pub fn open_scope(mut self, scope: &'static str) -> Self {
        assert!(
            [TENANT_SCOPE, PRINCIPAL_SCOPE, ROLE_SCOPE].contains(&scope),
            "only the tenant, principal and role scopes can be opened, not {scope:?}"
        );
        if !self.open.contains(&scope) {
            self.open.push(scope);
        }
        self
    }

    /// Whether a scope is kept open ([`open_scope`](Self::open_scope)) for quotas given at run
    /// time.
    pub fn has_open_scope(&self) -> bool {
        !self.open.is_empty()
    }

    /// This configuration with the environment's overrides: [`REDIS_URL_VAR`] replaces the Redis
    /// the `redis` section names (its `url`, `cluster` or `sentinel`; when there is a section), and [`tiers_var`] replaces a scope's default
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
    /// assert_eq!(config.redis.unwrap().url.unwrap(), "redis://env-host:6380/");
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
        self.redis = self.redis.map(|redis| redis.with_env_from(&lookup));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<crate::RateLimitLayer, ConfigError> {
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

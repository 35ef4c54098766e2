//! From a [`RateLimitConfig`] to its limiter and its layer.

use std::collections::BTreeMap;

use tollgate_core::{
    ByPrincipal, ByProvider, ByRole, ByTenant, ConfigError, LlmRequest, PricingTable,
};

use tollgate_core::redis::RedisConfig;

use super::{
    DEFAULT_TENANT, KeyBy, PRINCIPAL_SCOPE, PROVIDER_SCOPE, ROLE_SCOPE, RateLimitConfig,
    TENANT_SCOPE,
};
use crate::{
    either::Limiter,
    layer::{RateLimitLayer, RateLimitLayerBuilder},
    limiter::{RateLimiter, RateLimiterBuilder},
    limits::{Limits, tiers_quota},
    policy::OnLimit,
    quota::Quota,
};

#[cfg(not(feature = "redis"))]
fn redis_limiter(_: &RedisConfig, _: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    Err(ConfigError::new(
        "redis",
        "this build has no Redis support: enable the `redis` feature of tollgate-ratelimit (or tollgate)",
    ))
}

/// The limiter the `redis` section describes, on the Redis it names (`sentinel.password_env` is
/// read from the process environment).
#[cfg(feature = "redis")]
fn redis_limiter(redis: &RedisConfig, limits: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    if let Some(mistake) = redis.check().into_iter().next() {
        return Err(mistake);
    }
    let target = redis.target(|var| std::env::var(var).ok())?;
    crate::RedisRateLimiter::builder(target)
        .config(redis)
        .limits(limits)
        .build()
        .map(Limiter::Redis)
}

/// The scope that `tenants`, `providers`, `principals` or `roles` makes: its name, the field it is in, and
/// its entries.
struct Section<'a> {
    scope: &'static str,
    field: &'static str,
    entries: &'a BTreeMap<String, Limits>,
}

impl Section<'_> {
    /// Whether this scope limits every key (tenants with a `default`), not only those with a
    /// quota of their own.
    fn every_key(&self) -> bool {
        self.scope == TENANT_SCOPE && self.entries.contains_key(DEFAULT_TENANT)
    }
}

impl RateLimitConfig {
    /// The `tenant`, `provider`, `principal` and `role` scopes, those that have entries.
    fn sections(&self) -> impl Iterator<Item = Section<'_>> {
        [
            Section {
                scope: TENANT_SCOPE,
                field: "tenants",
                entries: &self.tenants,
            },
            Section {
                scope: PROVIDER_SCOPE,
                field: "providers",
                entries: &self.providers,
            },
            Section {
                scope: PRINCIPAL_SCOPE,
                field: "principals",
                entries: &self.principals,
            },
            Section {
                scope: ROLE_SCOPE,
                field: "roles",
                entries: &self.roles,
            },
        ]
        .into_iter()
        .filter(|section| !section.entries.is_empty() || self.open.contains(&section.scope))
    }

    /// The limiter this configuration describes, in this process.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field, e.g. `scopes[1].tiers[0].burst`.
    pub fn build_limiter(&self) -> Result<RateLimiter, ConfigError> {
        self.limits()?.build()
    }

    /// The scopes, their quotas and the key cap, checked, for whichever limiter is built from
    /// them: `tenants` (the scope `tenant`), then `providers` (`provider`), then `scopes`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range.
    pub fn limits(&self) -> Result<RateLimiterBuilder, ConfigError> {
        if self.scopes.is_empty() && self.sections().next().is_none() {
            return Err(ConfigError::new(
                "scopes",
                "add at least one scope (or tenants, providers, principals or roles)",
            ));
        }
        let mut builder = RateLimiter::builder()
            .max_keys(self.max_keys)
            .per_key_metrics(self.per_key_metrics);
        for section in self.sections() {
            let mut quotas = Vec::new();
            for (key, limits) in section.entries {
                let at = format!("{}.{key}", section.field);
                let quota = limits.quota(&at).map_err(|mut errors| errors.remove(0))?;
                quotas.push((key, quota));
            }
            // A scope's default is what keys without an entry get: for tenants the `default`
            // entry; otherwise no key without an entry is limited, so any entry serves, and an
            // open scope with none yet has a default no call reaches.
            let default = quotas
                .iter()
                .find(|(key, _)| section.scope == TENANT_SCOPE && *key == DEFAULT_TENANT)
                .or(quotas.first())
                .map_or_else(Quota::unreached, |(_, quota)| quota.clone());
            builder = builder.scope(section.scope, default);
            for (key, quota) in quotas {
                builder = builder.override_quota(section.scope, key, quota);
            }
        }
        let made: Vec<&str> = self.sections().map(|section| section.scope).collect();
        for (i, scope) in self.scopes.iter().enumerate() {
            let at = format!("scopes[{i}]");
            if scope.name.trim().is_empty() {
                return Err(ConfigError::new(format!("{at}.name"), "must not be empty"));
            }
            if made.contains(&scope.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!(
                        "`{}` is the scope the `{}s` entries make",
                        scope.name, scope.name
                    ),
                ));
            }
            if let KeyBy::Many(fields) = &scope.key
                && fields.is_empty()
            {
                return Err(ConfigError::new(
                    format!("{at}.key"),
                    "name at least one field",
                ));
            }
            builder = builder.scope(&scope.name, quota(&scope.tiers, &at)?);
            for (key, tiers) in &scope.overrides {
                let quota = quota(tiers, &format!("{at}.overrides.{key}"))?;
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

    /// A layer builder over `limiter` (built from this configuration's
    /// [`limits`](Self::limits)) with every setting of this configuration applied: each scope
    /// keyed as configured, `tenants` and `providers` only for the keys they list (every tenant
    /// when there is a `default`). Add an estimator or pricing and build.
    ///
    /// # Panics
    ///
    /// When `limiter` lacks one of this configuration's scopes.
    pub fn layer_builder(&self, limiter: Limiter) -> RateLimitLayerBuilder {
        let mut builder = RateLimitLayer::builder(limiter.clone())
            .on_limit(self.wait.map_or(OnLimit::Reject, OnLimit::Wait))
            .unpriced_models(self.unpriced_models);
        if let Some(tokens) = self.default_output_tokens {
            builder = builder.default_output_tokens(tokens);
        }
        let scope = |name: &str| {
            limiter
                .scope(name)
                .unwrap_or_else(|| panic!("the limiter has no scope `{name}`"))
        };
        for section in self.sections() {
            let handle = scope(section.scope);
            if section.every_key() {
                builder = builder.key(handle, ByTenant);
                continue;
            }
            // Only keys with a quota of their own are limited: those listed here, and those
            // given one since (`Limiter::set_quotas`), so the limiter is asked.
            let limiter = limiter.clone();
            let covered =
                move |key: Option<&str>| key.is_some_and(|k| limiter.has_own_quota(handle, k));
            builder = match section.scope {
                TENANT_SCOPE => builder.key_if(handle, ByTenant, move |req: &LlmRequest| {
                    covered(req.meta.tenant.as_deref())
                }),
                PROVIDER_SCOPE => builder.key_if(handle, ByProvider, move |req: &LlmRequest| {
                    covered(req.provider.as_deref())
                }),
                ROLE_SCOPE => builder.key_if(handle, ByRole, move |req: &LlmRequest| {
                    covered(req.meta.role.as_deref())
                }),
                _ => builder.key_if(handle, ByPrincipal, move |req: &LlmRequest| {
                    covered(req.meta.principal.as_deref())
                }),
            };
        }
        for config in &self.scopes {
            builder = builder.key(scope(&config.name), config.key.clone());
        }
        builder
    }

    /// The layer this configuration describes, pricing cost tiers with `pricing`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field; `pricing` when a tier counts cost and no table is given.
    pub fn build(&self, pricing: Option<PricingTable>) -> Result<RateLimitLayer, ConfigError> {
        let mut builder = self.layer_builder(self.limiter()?);
        if let Some(pricing) = pricing {
            builder = builder.pricing(pricing);
        }
        builder.build()
    }

    /// The quota a tenant has: its own entry in `tenants`, else the `default` one.
    pub fn tenant_limits(&self, tenant: &str) -> Option<&Limits> {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.get(DEFAULT_TENANT))
    }

    /// Whether any quota counts dollars: a budget, which needs prices.
    pub fn has_budget(&self) -> bool {
        let listed = self
            .scopes
            .iter()
            .flat_map(|scope| scope.overrides.values().chain([&scope.tiers]))
            .flatten()
            .any(|tier| tier.cost.is_some());
        listed
            || self
                .tenants
                .values()
                .chain(self.providers.values())
                .chain(self.principals.values())
                .chain(self.roles.values())
                .any(Limits::has_budget)
    }
}

/// A scope's tiers as a quota, its mistakes under `at`.
fn quota(tiers: &[super::TierConfig], at: &str) -> Result<Quota, ConfigError> {
    tiers_quota(tiers).map_err(|e| e.under(at))
}

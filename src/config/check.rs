//! The checks of a configuration that parsed: every section's values, and what the sections say
//! of each other (a role's provider exists, a budget's model has a price, ...).

use std::{collections::BTreeSet, time::Duration};

use tollgate_circuit_breaker::CircuitBreakerConfig;
use tollgate_core::ConfigError;
use tollgate_health::HealthConfig;
use tollgate_ratelimit::UnpricedModels;
use tollgate_retry::RetryPolicy;

use super::{
    kinds::{self, is_env_var_name},
    sections::{Config, PerProvider},
    switch::Switch,
};

impl Config {
    /// Every mistake, skipping the checks that need a section that did not parse.
    pub(super) fn mistakes(&self, broken: &BTreeSet<&str>) -> Vec<ConfigError> {
        let ok = |names: &[&str]| names.iter().all(|name| !broken.contains(name));
        let mut errors = Vec::new();
        if ok(&["providers"]) {
            self.check_providers(&mut errors);
        }
        if ok(&["providers", "roles"]) {
            self.check_roles(&mut errors);
        }
        errors.extend(
            self.routing
                .mistakes()
                .into_iter()
                .map(|e| e.under("routing")),
        );
        if ok(&["providers", "roles", "pricing", "rate_limiting"]) {
            self.check_pricing(&mut errors);
        }
        if ok(&["providers", "caching", "redis"]) {
            self.check_caching(&mut errors);
        }
        if ok(&["providers", "rate_limiting"]) {
            self.check_rate_limiting(&mut errors);
        }
        if ok(&["providers", "roles", "rate_limiting", "caching"]) {
            self.check_routed_rules(&mut errors);
        }
        if let Switch::On(retry) = &self.retry {
            self.check_per_provider("retry", retry, &ok, &mut errors, |policy| {
                RetryPolicy::from_config(policy.clone()).map(|_| ())
            });
        }
        if let Switch::On(breaker) = &self.circuit_breaker {
            self.check_per_provider(
                "circuit_breaker",
                breaker,
                &ok,
                &mut errors,
                CircuitBreakerConfig::validate,
            );
        }
        if let Switch::On(health) = &self.health {
            self.check_per_provider("health", health, &ok, &mut errors, HealthConfig::validate);
        }
        if let Some(redis) = &self.redis {
            errors.extend(redis.check());
            if let (Switch::On(limiting), true) = (&self.rate_limiting, ok(&["rate_limiting"])) {
                check_slots(redis, limiting, &mut errors);
            }
        }
        if let Err(error) = self.costs.validate() {
            errors.push(error.under("costs"));
        }
        if let Err(error) = self.metrics.validate() {
            errors.push(error.under("metrics"));
        }
        errors
    }

    /// A per-provider section: its settings and each provider's are valid, and every provider it
    /// names exists.
    fn check_per_provider<T>(
        &self,
        name: &str,
        section: &PerProvider<T>,
        ok: &dyn Fn(&[&str]) -> bool,
        errors: &mut Vec<ConfigError>,
        validate: impl Fn(&T) -> Result<(), ConfigError>,
    ) {
        if let Err(e) = validate(&section.defaults) {
            errors.push(e.under(name));
        }
        for (provider, own) in &section.providers {
            let at = format!("{name}.providers.{provider}");
            if ok(&["providers"]) && !self.providers.contains_key(provider) {
                errors.push(ConfigError::new(
                    &at,
                    format!("unknown provider (providers: {})", self.provider_names()),
                ));
            }
            if let Switch::On(settings) = own
                && let Err(e) = validate(settings)
            {
                errors.push(e.under(&at));
            }
        }
    }

    fn check_providers(&self, errors: &mut Vec<ConfigError>) {
        if self.providers.is_empty() {
            errors.push(ConfigError::new("providers", "name at least one provider"));
        }
        for (name, provider) in &self.providers {
            let at = |field: &str| format!("providers.{name}.{field}");
            if provider.pasted_key.is_some() {
                errors.push(ConfigError::new(
                    at("api_key"),
                    "API keys never go in the file: put the key in an environment variable and name \
                     it with api_key_env (e.g. api_key_env: OPENAI_API_KEY)",
                ));
            }
            if let Some(var) = &provider.api_key_env
                && !is_env_var_name(var)
            {
                // The value is not repeated: it may well be the key itself.
                errors.push(ConfigError::new(
                    at("api_key_env"),
                    "must be the name of an environment variable (letters, digits and _, \
                         e.g. OPENAI_API_KEY), not the key itself",
                ));
            }
            for (field, value) in [
                ("timeout", provider.timeout),
                ("connect_timeout", provider.connect_timeout),
                ("first_byte_timeout", provider.first_byte_timeout),
                ("stream_idle_timeout", provider.stream_idle_timeout),
            ] {
                if let Some(value) = value
                    && let Err(e) = tollgate_core::non_zero(&at(field), value)
                {
                    errors.push(e);
                }
            }
            for (field, value) in [
                ("max_response_bytes", provider.max_response_bytes),
                ("max_event_bytes", provider.max_event_bytes),
            ] {
                if value == Some(0) {
                    errors.push(ConfigError::new(at(field), "must be > 0"));
                }
            }
            if let Some(url) = &provider.base_url {
                errors.extend(base_url_mistake(url, &at("base_url")));
            }
            kinds::check(name, provider, errors);
        }
    }

    fn check_pricing(&self, errors: &mut Vec<ConfigError>) {
        for provider in self.pricing.providers.keys() {
            if !self.providers.contains_key(provider) {
                errors.push(ConfigError::new(
                    format!("pricing.providers.{provider}"),
                    "no provider of this name in `providers`",
                ));
            }
        }
        let budgets = matches!(&self.rate_limiting, Switch::On(limiting)
            if limiting.has_budget() && limiting.unpriced_models != UnpricedModels::Free);
        if !budgets && !self.pricing.refuse_unpriced {
            return;
        }
        let why = if self.pricing.refuse_unpriced {
            "pricing.refuse_unpriced is on"
        } else {
            "rate_limiting has dollar budgets (or set rate_limiting.unpriced_models: free)"
        };
        let prices = self.prices();
        for name in self.roles.keys() {
            let Some(role) = self.role(name) else {
                continue;
            };
            for target in &role.targets {
                if prices
                    .get_for(Some(&target.provider), &target.model)
                    .is_none()
                {
                    errors.push(ConfigError::new(
                        format!("pricing.{}", target.model),
                        format!(
                            "missing: role {name:?} uses this model, which neither the catalog \
                             nor the configuration prices, and {why}"
                        ),
                    ));
                }
            }
        }
        errors.sort_by(|a, b| a.path().cmp(b.path()));
        errors.dedup_by(|a, b| a.path() == b.path());
    }

    fn check_caching(&self, errors: &mut Vec<ConfigError>) {
        let Switch::On(caching) = &self.caching else {
            return;
        };
        if let Err(e) = caching.validate() {
            errors.push(e.under("caching"));
        }
        if caching.store.is_shared() && self.redis.is_none() {
            errors.push(ConfigError::new(
                "caching.store",
                "needs the redis section (url, prefix)",
            ));
        }
        for name in caching.providers.keys() {
            if !self.providers.contains_key(name) {
                errors.push(ConfigError::new(
                    format!("caching.providers.{name}"),
                    format!("unknown provider (providers: {})", self.provider_names()),
                ));
            }
        }
    }

    fn check_rate_limiting(&self, errors: &mut Vec<ConfigError>) {
        let Switch::On(limiting) = &self.rate_limiting else {
            return;
        };
        let before = errors.len();
        if limiting.max_keys == 0 {
            errors.push(ConfigError::new("rate_limiting.max_keys", "must be > 0"));
        }
        if limiting.wait == Some(Duration::ZERO) {
            errors.push(ConfigError::new(
                "rate_limiting.wait",
                "must be > 0 (leave it out to refuse at once)",
            ));
        }
        for (name, limits) in &limiting.providers {
            let at = format!("rate_limiting.providers.{name}");
            if !self.providers.contains_key(name) {
                errors.push(ConfigError::new(
                    &at,
                    format!("unknown provider (providers: {})", self.provider_names()),
                ));
            }
            if let Err(mistakes) = limits.quota(&at) {
                errors.extend(mistakes);
            }
        }
        for (name, limits) in &limiting.roles {
            let at = format!("rate_limiting.roles.{name}");
            if !self.roles.contains_key(name) {
                let roles: Vec<&str> = self.roles.keys().map(String::as_str).collect();
                errors.push(ConfigError::new(
                    &at,
                    format!("unknown role (roles: {})", roles.join(", ")),
                ));
            }
            if let Err(mistakes) = limits.quota(&at) {
                errors.extend(mistakes);
            }
        }
        for (field, entries) in [
            ("tenants", &limiting.tenants),
            ("principals", &limiting.principals),
        ] {
            for (name, limits) in entries {
                if let Err(mistakes) = limits.quota(&format!("rate_limiting.{field}.{name}")) {
                    errors.extend(mistakes);
                }
            }
        }
        if limiting.redis.is_some() {
            errors.push(ConfigError::new(
                "rate_limiting.redis",
                "Redis is set in the top-level `redis` section, which the cache shares",
            ));
        }
        if limiting.tenants.is_empty()
            && limiting.providers.is_empty()
            && limiting.principals.is_empty()
            && limiting.roles.is_empty()
            && limiting.scopes.is_empty()
            && !limiting.has_open_scope()
        {
            errors.push(ConfigError::new(
                "rate_limiting",
                "no limits: add tenants, providers, principals, roles or scopes (or set \
                 rate_limiting: false)",
            ));
        } else if errors.len() == before {
            // The tenants' and providers' quotas are sound; what is left to check is the scopes.
            if let Err(e) = limiting.limits() {
                errors.push(e.under("rate_limiting"));
            }
        }
    }

    pub(super) fn provider_names(&self) -> String {
        self.providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The mistake in a base URL that is not http or https, if any.
pub(super) fn base_url_mistake(url: &str, at: &str) -> Option<ConfigError> {
    (!(url.starts_with("http://") || url.starts_with("https://"))).then(|| {
        ConfigError::new(
            at,
            format!("expected an http:// or https:// URL, got {url:?}"),
        )
    })
}

/// On a Redis Cluster, one script checks all of a call's keys, so they must share a slot: with
/// several scopes, `redis.hash_tag_scope` must name a scope every call has a key in.
fn check_slots(
    redis: &tollgate_core::redis::RedisConfig,
    limiting: &crate::RateLimitingConfig,
    errors: &mut Vec<ConfigError>,
) {
    use tollgate_ratelimit::{
        DEFAULT_TENANT, PRINCIPAL_SCOPE, PROVIDER_SCOPE, ROLE_SCOPE, TENANT_SCOPE,
    };
    if redis.cluster.is_none() {
        return;
    }
    let mut scopes: Vec<&str> = Vec::new();
    for (scope, entries) in [
        (TENANT_SCOPE, &limiting.tenants),
        (PROVIDER_SCOPE, &limiting.providers),
        (PRINCIPAL_SCOPE, &limiting.principals),
        (ROLE_SCOPE, &limiting.roles),
    ] {
        if !entries.is_empty() {
            scopes.push(scope);
        }
    }
    scopes.extend(limiting.scopes.iter().map(|scope| scope.name.as_str()));
    let every_call = |name: &str| {
        (name == TENANT_SCOPE && limiting.tenants.contains_key(DEFAULT_TENANT))
            || limiting.scopes.iter().any(|scope| scope.name == name)
    };
    match &redis.hash_tag_scope {
        None if scopes.len() > 1 => errors.push(tollgate_ratelimit::cross_slot_error(&scopes)),
        None => {}
        Some(name) if !scopes.contains(&name.as_str()) => errors.push(ConfigError::new(
            "redis.hash_tag_scope",
            format!(
                "no rate-limit scope is named {name:?} (scopes: {})",
                scopes.join(", ")
            ),
        )),
        Some(name) if scopes.len() > 1 && !every_call(name) => errors.push(ConfigError::new(
            "redis.hash_tag_scope",
            format!(
                "`{name}` limits only the keys listed under it, so a call without one would \
                 still check keys of {} in different Cluster slots; name a scope every call has \
                 (`tenant` with a `default` entry, or one of `scopes`)",
                scopes.join(", ")
            ),
        )),
        Some(_) => {}
    }
}

//! What serves each role, resolved from the configuration, and the checks of what roles name:
//! providers, deployments, fallback roles, and the limits routing would bypass.

use std::collections::BTreeMap;

use tollgate_core::ConfigError;
use tollgate_router::{HedgeAfter, Strategy};

use super::{
    check::base_url_mistake,
    kinds::is_env_var_name,
    roles::{ResolvedRole, ResolvedTarget, RoleConfig, fallback_names, has_fallbacks, single},
    sections::{Config, DEFAULT_ROLE, ProviderKind},
};

impl Config {
    /// `role` with what it takes from the `default` role filled in, or `None` when there is no
    /// such role (or what serves it is incomplete).
    pub fn role(&self, role: &str) -> Option<ResolvedRole> {
        let own = self.roles.get(role)?;
        let fallback = self.roles.get(DEFAULT_ROLE);
        let targets = self.targets_of(own, fallback)?;
        let first = targets.first()?;
        Some(ResolvedRole {
            provider: first.client.clone(),
            model: first.model.clone(),
            temperature: own.temperature.or(fallback.and_then(|r| r.temperature)),
            default_max_tokens: own
                .default_max_tokens
                .or(fallback.and_then(|r| r.default_max_tokens)),
            timeout: own.timeout.or(fallback.and_then(|r| r.timeout)),
            moves: targets.len() > 1 || has_fallbacks(own),
            targets,
        })
    }

    /// Every model a call to `role` may be answered by: its targets' models, and those of every
    /// role it may fall back to, and theirs in turn; each once, in the order first met.
    pub fn reachable_models(&self, role: &str) -> Vec<std::sync::Arc<str>> {
        let mut models: Vec<std::sync::Arc<str>> = Vec::new();
        let mut seen = vec![role.to_owned()];
        let mut next = 0;
        while let Some(name) = seen.get(next).cloned() {
            next += 1;
            for target in self.role(&name).map(|r| r.targets).unwrap_or_default() {
                if !models.contains(&target.model) {
                    models.push(target.model);
                }
            }
            let fallbacks = self.roles.get(&name).into_iter().flat_map(fallback_names);
            for (_, fallback) in fallbacks {
                if !seen.iter().any(|s| s == fallback) {
                    seen.push(fallback.to_owned());
                }
            }
        }
        models
    }

    fn targets_of(
        &self,
        own: &RoleConfig,
        fallback: Option<&RoleConfig>,
    ) -> Option<Vec<ResolvedTarget>> {
        let listed = match (&own.targets, own.provider.is_some()) {
            (Some(targets), _) => targets.clone(),
            (None, true) => vec![single(own, fallback)?],
            // Neither: the default role's targets, or its provider.
            (None, false) => match fallback.and_then(|d| d.targets.as_ref()) {
                Some(targets) => targets.clone(),
                None => vec![single(own, fallback)?],
            },
        };
        let role_model = own
            .model
            .as_ref()
            .or_else(|| fallback.and_then(|d| d.model.as_ref()));
        let inherited = own.targets.is_none() && own.provider.is_none();
        listed
            .iter()
            .map(|target| {
                // A role that takes the default's targets puts its own model on each.
                let model = match (inherited, &own.model) {
                    (true, Some(model)) => model,
                    _ => target.model.as_ref().or(role_model)?,
                };
                let client = match (&target.name, target.has_own_client()) {
                    (Some(name), true) => name.as_str(),
                    _ => target.provider.as_str(),
                };
                Some(ResolvedTarget {
                    name: target
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("{}/{model}", target.provider))
                        .into(),
                    client: client.into(),
                    provider: target.provider.as_str().into(),
                    model: model.as_str().into(),
                    weight: target.weight,
                    max_in_flight: target.max_in_flight,
                    api_key_env: target.api_key_env.clone(),
                    base_url: target.base_url.clone(),
                })
            })
            .collect()
    }

    /// Every role's targets checked: the providers they name exist, each deployment name means
    /// one thing, and every role a fallback names exists.
    pub(super) fn check_roles(&self, errors: &mut Vec<ConfigError>) {
        if !self.roles.contains_key(DEFAULT_ROLE) {
            errors.push(ConfigError::new(
                "roles.default",
                "missing: a request without a role uses it, and other roles fall back to it",
            ));
        }
        let fallback = self.roles.get(DEFAULT_ROLE);
        let mut deployments: BTreeMap<std::sync::Arc<str>, (String, ResolvedTarget)> =
            BTreeMap::new();
        for (name, role) in &self.roles {
            let at = |field: &str| format!("roles.{name}.{field}");
            self.check_role_fields(name, role, fallback, errors);
            for (field, other) in fallback_names(role) {
                if other == name {
                    errors.push(ConfigError::new(at(field), "names the role itself"));
                } else if !self.roles.contains_key(other) {
                    errors.push(ConfigError::new(
                        at(field),
                        format!("unknown role {other:?}"),
                    ));
                }
            }
            for (i, status) in role.fallback_on_status.iter().enumerate() {
                if !(400..=599).contains(status) {
                    errors.push(ConfigError::new(
                        format!("roles.{name}.fallback_on_status[{i}]"),
                        format!("{status} is not an error status (400 to 599)"),
                    ));
                }
            }
            if let Some(after) = role.hedge_after
                && after == HedgeAfter::After(std::time::Duration::ZERO)
            {
                errors.push(ConfigError::new(at("hedge_after"), "must be > 0"));
            }
            if role.probe.is_some_and(|probe| probe.every.is_zero()) {
                errors.push(ConfigError::new(at("probe.every"), "must be > 0"));
            }
            let Some(resolved) = self.role(name) else {
                continue;
            };
            if role.probe.is_some() && !resolved.moves {
                errors.push(ConfigError::new(
                    at("probe"),
                    "the role has nowhere else to go (one target, no fallbacks): its target is \
                     called while it cools down, so there is nothing for a probe to bring back",
                ));
            }
            for (i, target) in resolved.targets.into_iter().enumerate() {
                let here = match &role.targets {
                    Some(_) => at(&format!("targets.{i}")),
                    None => at("provider"),
                };
                match deployments.get(&target.name) {
                    Some((there, seen)) if *seen != target => {
                        errors.push(ConfigError::new(
                            here,
                            format!(
                                "the deployment `{}` is also listed at {there} with other \
                                 settings: give one of them a `name` of its own",
                                target.name
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        deployments.insert(target.name.clone(), (here, target));
                    }
                }
            }
        }
        for (name, (at, target)) in &deployments {
            if target.client != target.provider && self.providers.contains_key(&*target.client) {
                errors.push(ConfigError::new(
                    format!("{at}.name"),
                    format!(
                        "`{name}` is also a provider's name: a target with a key or base URL of its \
                         own needs a name of its own"
                    ),
                ));
            }
        }
    }

    fn check_role_fields(
        &self,
        name: &str,
        role: &RoleConfig,
        fallback: Option<&RoleConfig>,
        errors: &mut Vec<ConfigError>,
    ) {
        let at = |field: &str| format!("roles.{name}.{field}");
        self.check_serving(name, role, fallback, errors);
        if let Some(t) = role.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push(ConfigError::new(
                at("temperature"),
                format!("must be between 0 and 2, got {t}"),
            ));
        }
        if role.default_max_tokens == Some(0) {
            errors.push(ConfigError::new(at("default_max_tokens"), "must be > 0"));
        }
        if let Some(timeout) = role.timeout
            && let Err(e) = tollgate_core::non_zero(&at("timeout"), timeout)
        {
            errors.push(e);
        }
    }

    /// What serves a role: its targets, or its provider and model.
    fn check_serving(
        &self,
        name: &str,
        role: &RoleConfig,
        fallback: Option<&RoleConfig>,
        errors: &mut Vec<ConfigError>,
    ) {
        let at = |field: &str| format!("roles.{name}.{field}");
        if let Some(model) = &role.model
            && model.trim().is_empty()
        {
            errors.push(ConfigError::new(at("model"), "must not be empty"));
        }
        let Some(targets) = &role.targets else {
            let inherits = role.provider.is_none()
                && fallback.is_some_and(|d| d.targets.is_some())
                && name != DEFAULT_ROLE;
            if !inherits {
                self.check_single(name, role, fallback, errors);
            }
            return;
        };
        if role.provider.is_some() {
            errors.push(ConfigError::new(
                at("provider"),
                "a role has either a provider or targets, not both",
            ));
        }
        if targets.is_empty() {
            errors.push(ConfigError::new(at("targets"), "must list a target"));
        }
        let role_model = role
            .model
            .as_ref()
            .or_else(|| fallback.and_then(|d| d.model.as_ref()));
        for (i, target) in targets.iter().enumerate() {
            let at = |field: &str| format!("roles.{name}.targets.{i}.{field}");
            self.check_provider_name(&target.provider, &at("provider"), errors);
            match target.model.as_ref().or(role_model) {
                None => errors.push(ConfigError::new(
                    at("model"),
                    "missing (and the role has no model)",
                )),
                Some(model) if model.trim().is_empty() => {
                    errors.push(ConfigError::new(at("model"), "must not be empty"));
                }
                Some(_) => {}
            }
            if target.weight == 0 {
                errors.push(ConfigError::new(at("weight"), "must be > 0"));
            }
            if target.max_in_flight == Some(0) {
                errors.push(ConfigError::new(at("max_in_flight"), "must be > 0"));
            }
            if target.has_own_client() {
                if target.name.is_none() {
                    errors.push(ConfigError::new(
                        at("name"),
                        "missing: a target with its own api_key_env or base_url needs a name",
                    ));
                }
                if let Some(var) = &target.api_key_env
                    && !is_env_var_name(var)
                {
                    errors.push(ConfigError::new(
                        at("api_key_env"),
                        "must be the name of an environment variable, not the key itself",
                    ));
                }
                if let Some(url) = &target.base_url {
                    errors.extend(base_url_mistake(url, &at("base_url")));
                }
                let simulated = self
                    .providers
                    .get(&target.provider)
                    .is_some_and(|p| p.kind == ProviderKind::Simulated);
                if simulated {
                    errors.push(ConfigError::new(
                        at("provider"),
                        "a simulated provider makes no network calls: it takes no key or URL",
                    ));
                }
            }
        }
    }

    /// A role served by one provider and model (its own, or the default role's).
    fn check_single(
        &self,
        name: &str,
        role: &RoleConfig,
        fallback: Option<&RoleConfig>,
        errors: &mut Vec<ConfigError>,
    ) {
        let at = |field: &str| format!("roles.{name}.{field}");
        match role
            .provider
            .as_ref()
            .or_else(|| fallback.and_then(|d| d.provider.as_ref()))
        {
            None => errors.push(ConfigError::new(
                at("provider"),
                "missing (and no default): give a provider and model, or targets",
            )),
            Some(provider) => self.check_provider_name(provider, &at("provider"), errors),
        }
        if role
            .model
            .as_ref()
            .or_else(|| fallback.and_then(|d| d.model.as_ref()))
            .is_none()
        {
            errors.push(ConfigError::new(at("model"), "missing (and no default)"));
        }
        for (field, set) in [
            ("strategy", role.strategy != Strategy::default()),
            ("hedge_after", role.hedge_after.is_some()),
            ("wait", role.wait),
            ("affinity", role.affinity.is_some()),
        ] {
            if set {
                errors.push(ConfigError::new(
                    at(field),
                    "only for a role with targets: one provider has nothing to choose between",
                ));
            }
        }
    }

    fn check_provider_name(&self, provider: &str, at: &str, errors: &mut Vec<ConfigError>) {
        if !self.providers.contains_key(provider) {
            errors.push(ConfigError::new(
                at,
                format!(
                    "unknown provider {provider:?} (providers: {})",
                    self.provider_names()
                ),
            ));
        }
    }

    /// A provider's own quota, and its own cache rule, are applied before a call is routed, so
    /// they cannot hold for a provider that serves a role whose calls may move (or through a key
    /// of a target's own): refused, rather than silently not applied.
    pub(super) fn check_routed_rules(&self, errors: &mut Vec<ConfigError>) {
        let routed = self.routed_providers();
        if let Some(limiting) = self.rate_limiting.get() {
            for provider in limiting.providers.keys() {
                if let Some(role) = routed.get(provider) {
                    errors.push(ConfigError::new(
                        format!("rate_limiting.providers.{provider}"),
                        format!(
                            "role {role:?} routes calls to this provider among others, after the \
                             limiter has admitted them, so a quota of its own cannot apply: limit \
                             tenants or scopes instead, and let the router read the provider's \
                             own rate-limit headers"
                        ),
                    ));
                }
            }
        }
        if let Some(caching) = self.caching.get() {
            for provider in caching.providers.keys() {
                if let Some(role) = routed.get(provider) {
                    errors.push(ConfigError::new(
                        format!("caching.providers.{provider}"),
                        format!(
                            "role {role:?} routes calls to this provider among others, after the \
                             cache has looked them up, so a rule of its own cannot apply: set the \
                             rule for the role's model under caching.models instead"
                        ),
                    ));
                }
            }
        }
    }

    /// The providers whose calls the rate limiter cannot tell apart before they are routed:
    /// those serving a role whose calls may move, or through a target's own key.
    fn routed_providers(&self) -> BTreeMap<String, String> {
        let mut routed = BTreeMap::new();
        for name in self.roles.keys() {
            let Some(role) = self.role(name) else {
                continue;
            };
            for target in &role.targets {
                if role.moves || target.client != target.provider {
                    routed
                        .entry(target.provider.to_string())
                        .or_insert_with(|| name.clone());
                }
            }
            // A call that moves to a fallback role reaches its providers unlimited too.
            for (_, other) in fallback_names(&self.roles[name]) {
                for target in self.role(other).map(|r| r.targets).unwrap_or_default() {
                    routed
                        .entry(target.provider.to_string())
                        .or_insert_with(|| name.clone());
                }
            }
        }
        routed
    }
}

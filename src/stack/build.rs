//! Turns a checked [`Config`] into the layers and clients of a [`Stack`].

use std::{collections::HashMap, sync::Arc};

use tollgate_cache::CacheLayer;
use tollgate_circuit_breaker::{CircuitBreakerLayer, CircuitBreakers};
use tollgate_core::{
    ByProvider, ConfigError, ErrorKind, ModelPrice, PricingTable, SimulatedProvider,
    TokenEstimator, clock::Clock,
};
use tollgate_health::{HealthLayer, HealthStats};
use tollgate_ratelimit::{Limiter, RateLimitLayer, RateLimiterBuilder, TENANT_SCOPE};
use tollgate_retry::{RetryLayer, RetryPolicy};
use tollgate_router::{Deployment, Group, GroupConfig, Router};
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use super::{
    BoxedProvider, LimitHandles, Parts, Stack,
    route::{Billed, Dispatch, ProviderStack, Providers},
};
use crate::{
    CachingConfig, Config, ConfigErrors, DEFAULT_ROLE, ProviderConfig, ProviderKind,
    RateLimitingConfig, RedisSection, ResolvedTarget, Switch, call_metrics::CallMetrics,
    cost::CostTracker,
};

/// Wraps a provider's client, given the provider's name ([`StackBuilder::wrap_clients`]).
///
/// [`StackBuilder::wrap_clients`]: super::StackBuilder::wrap_clients
pub(super) type WrapClient = dyn Fn(&str, BoxedProvider) -> BoxedProvider;

/// What the builder's caller plugs in: where API keys are read, and what wraps each client.
pub(super) struct Hooks<'a> {
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) wrap: Option<&'a WrapClient>,
}

pub(super) fn build(
    config: &Config,
    mut given: HashMap<String, BoxedProvider>,
    hooks: Hooks<'_>,
    clock: Option<Arc<dyn Clock>>,
    estimator: Arc<dyn TokenEstimator>,
) -> Result<Stack, ConfigErrors> {
    config.validate()?;
    let mut errors = Vec::new();
    let own = own_clients(config);
    for name in given.keys() {
        let targets = own.iter().any(|(_, target)| *target.client == **name);
        if !config.providers.contains_key(name) && !targets {
            errors.push(ConfigError::new(
                format!("providers.{name}"),
                "a service was given for a provider the configuration does not have",
            ));
        }
    }
    let mut providers = HashMap::new();
    for (name, provider) in &config.providers {
        let client = match given.remove(name) {
            Some(client) => Ok(client),
            None => client(name, provider, hooks.env),
        };
        match client {
            Ok(client) => {
                let client = match hooks.wrap {
                    Some(wrap) => wrap(name, client),
                    None => client,
                };
                providers.insert(Arc::<str>::from(name.as_str()), (name.clone(), client));
            }
            Err(e) => errors.push(e),
        }
    }
    // Targets with a key or base URL of their own get a client of their own, from their
    // provider's section with those replaced.
    for (at, target) in &own {
        let mut section = config.providers[&*target.provider].clone();
        if let Some(var) = &target.api_key_env {
            section.api_key_env = Some(var.clone());
        }
        if let Some(url) = &target.base_url {
            section.base_url = Some(url.clone());
        }
        let client = match given.remove(&*target.client) {
            Some(client) => Ok(client),
            None => client(&target.client, &section, hooks.env),
        };
        match client {
            Ok(client) => {
                let client = match hooks.wrap {
                    Some(wrap) => wrap(&target.client, client),
                    None => client,
                };
                providers.insert(target.client.clone(), (target.provider.to_string(), client));
            }
            // Named where the target is, not under `providers`.
            Err(e) => {
                let field = e.path().rsplit('.').next().unwrap_or_default();
                errors.push(ConfigError::new(format!("{at}.{field}"), e.reason()));
            }
        }
    }
    // One connection, shared by the cache and the limiter.
    let redis = match config
        .redis
        .as_ref()
        .map(|section| open_redis(section, hooks.env))
    {
        Some(Ok(redis)) => Some(redis),
        Some(Err(e)) => return Err(e.into()),
        None => None,
    };
    let cache = match &config.caching {
        Switch::On(caching) => cache(caching, redis.as_ref())
            .map_err(|e| errors.push(e))
            .ok(),
        Switch::Off => None,
    };
    let limits = match &config.rate_limiting {
        Switch::On(limiting) => rate_limits(
            limiting,
            redis.as_ref(),
            &config.pricing,
            clock.clone(),
            estimator.clone(),
        )
        .map_err(|e| errors.push(e))
        .ok(),
        Switch::Off => None,
    };
    ConfigErrors::check(errors)?;

    // Each section was validated above, so these cannot fail.
    let breakers = config.circuit_breaker.get().map(|section| {
        let mut builder = CircuitBreakers::builder(section.defaults.clone());
        for (provider, rules) in section.own_settings() {
            builder = builder.key_config(provider, rules.clone());
        }
        for (_, target) in &own {
            if let Some(Switch::On(rules)) = section.providers.get(&*target.provider) {
                builder = builder.key_config(&*target.client, rules.clone());
            }
        }
        if let Some(clock) = &clock {
            builder = builder.clock(clock.clone());
        }
        builder.build().expect("validated")
    });
    let health = config.health.get().map(|section| {
        let mut builder = HealthStats::builder(section.defaults.clone());
        for (provider, thresholds) in section.own_settings() {
            builder = builder.component_config(provider, thresholds.clone());
        }
        for (_, target) in &own {
            if let Some(Switch::On(thresholds)) = section.providers.get(&*target.provider) {
                builder = builder.component_config(&*target.client, thresholds.clone());
            }
        }
        if let Some(clock) = &clock {
            builder = builder.clock(clock.clone());
        }
        builder.build().expect("validated")
    });
    // Below the router, each provider has its own retry policy (its own budget: one provider's
    // outage does not spend the others' retries) over the shared breakers and statistics, which
    // key by provider.
    let breaker = breakers.as_ref().map(|breakers| {
        CircuitBreakerLayer::builder(breakers.clone())
            .key(ByProvider)
            .build()
    });
    let observe = health
        .as_ref()
        .map(|stats| HealthLayer::builder(stats.clone()).key(ByProvider).build());
    let costs = CostTracker::new(config.pricing.clone(), &config.costs);
    // The models per-call metrics may name: those the roles use, and those the pricing table
    // prices; any other is `other`.
    let models = config
        .roles
        .keys()
        .filter_map(|role| config.role(role))
        .flat_map(|role| role.targets.into_iter().map(|target| target.model))
        .chain(config.pricing.models().map(Arc::from));
    let calls = CallMetrics::new(&config.metrics, models, config.pricing.clone());
    let providers: Arc<Providers> = Arc::new(
        providers
            .into_iter()
            .map(|(name, (section, client))| {
                // A target's own client takes its provider's retry, breaker and health settings.
                let moves_on = only_serves_moving_roles(config, &name);
                let retry = config.retry.for_provider(&section).map(|policy| {
                    let mut policy = RetryPolicy::builder().config(policy.clone());
                    if moves_on {
                        // Where the router has somewhere else to go, a throttled or overloaded
                        // deployment is left to cool down rather than waited for.
                        policy = policy.retry_if(|error| {
                            error.is_retryable()
                                && !matches!(
                                    error.kind(),
                                    ErrorKind::RateLimited | ErrorKind::Overloaded
                                )
                        });
                    }
                    RetryLayer::new(policy.build().expect("validated"))
                });
                let breaker = config
                    .circuit_breaker
                    .for_provider(&section)
                    .and(breaker.clone());
                let observe = config.health.for_provider(&section).and(observe.clone());
                let billed = Billed {
                    client,
                    costs: costs.clone(),
                    estimator: estimator.clone(),
                    calls: calls
                        .as_ref()
                        .map(|calls| Arc::new(calls.for_client(&name))),
                };
                let stack = ServiceBuilder::new()
                    .option_layer(retry)
                    .option_layer(breaker)
                    .option_layer(observe)
                    .service(billed);
                (name, stack)
            })
            .collect(),
    );
    let router = router(config, &providers, clock.clone());
    let service = ServiceBuilder::new()
        .option_layer(cache.clone())
        .option_layer(limits.as_ref().map(|(layer, _)| layer.clone()))
        .service(Dispatch {
            router: router.clone(),
            providers: providers.clone(),
        });

    let roles = config
        .roles
        .keys()
        .filter_map(|name| Some((Arc::from(name.as_str()), config.role(name)?)))
        .collect();
    let ceilings = ceilings(config);
    Ok(Stack {
        service: BoxCloneSyncService::new(service),
        parts: Arc::new(Parts {
            roles,
            ceilings,
            default_role: Arc::from(DEFAULT_ROLE),
            providers,
            router,
            whole: calls.as_ref().map(|calls| calls.whole_calls()),
            costs,
            cache,
            limits: limits.map(|(_, limits)| limits),
            breakers,
            health,
        }),
    })
}

/// The router over every role's targets: one deployment per target name (a target listed in
/// several roles is one deployment, with one state), one group per role.
fn router(
    config: &Config,
    providers: &Providers,
    clock: Option<Arc<dyn Clock>>,
) -> Router<ProviderStack> {
    let mut builder = Router::builder().config(config.routing.clone());
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in config.roles.keys() {
        let role = config.role(name).expect("validated");
        for target in &role.targets {
            if !seen.insert(target.name.clone()) {
                continue;
            }
            let mut deployment =
                Deployment::new(target.name.clone(), providers[&target.client].clone())
                    .provider(target.client.clone())
                    .model(target.model.clone())
                    .weight(target.weight);
            if let Some(max) = target.max_in_flight {
                deployment = deployment.max_in_flight(max);
            }
            builder = builder.deployment(deployment);
        }
        let own = &config.roles[name];
        builder = builder.group(
            Group::new(
                name.as_str(),
                role.targets.iter().map(|t| t.name.to_string()),
            )
            .config(GroupConfig {
                strategy: own.strategy,
                fallbacks: own.fallbacks.clone(),
                context_window_fallbacks: own.context_window_fallbacks.clone(),
                content_policy_fallbacks: own.content_policy_fallbacks.clone(),
                hedge_after: own.hedge_after,
                wait: own.wait,
            }),
        );
    }
    builder
        .default_group(DEFAULT_ROLE)
        .build()
        .expect("validated")
}

/// For each role whose calls may be answered by another model than its first: the highest rate
/// of each kind among the models that may answer (what a budget reserves a call at), where it is
/// higher than the first's; and the least output they can all write (the most a call that sets
/// no bound is sent), where it is less than the first's.
fn ceilings(config: &Config) -> super::Ceilings {
    let limit = |model: &str| {
        tollgate_core::known_output_limit(model).unwrap_or(tollgate_core::DEFAULT_MAX_TOKENS)
    };
    config
        .roles
        .keys()
        .filter_map(|name| {
            let first = config.role(name)?.model;
            let models = config.reachable_models(name);
            let price = models
                .iter()
                .filter_map(|model| config.pricing.get(model).copied())
                .reduce(ModelPrice::max)
                .filter(|dearest| Some(dearest) != config.pricing.get(&first));
            let output = models
                .iter()
                .map(|model| limit(model))
                .min()
                .filter(|least| *least < limit(&first));
            (price.is_some() || output.is_some())
                .then(|| (Arc::from(name.as_str()), super::Ceiling { price, output }))
        })
        .collect()
}

/// Whether every role that client `name` serves may move its calls elsewhere.
fn only_serves_moving_roles(config: &Config, name: &str) -> bool {
    let mut serves = false;
    for role in config.roles.keys().filter_map(|role| config.role(role)) {
        if role.targets.iter().any(|t| &*t.client == name) {
            if !role.moves {
                return false;
            }
            serves = true;
        }
    }
    serves
}

/// The targets with a client of their own (a key or base URL), each once, with its path.
fn own_clients(config: &Config) -> Vec<(String, ResolvedTarget)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for name in config.roles.keys() {
        let Some(role) = config.role(name) else {
            continue;
        };
        for (i, target) in role.targets.into_iter().enumerate() {
            if target.client != target.provider && seen.insert(target.client.clone()) {
                found.push((format!("roles.{name}.targets.{i}"), target));
            }
        }
    }
    found
}

/// The client a provider's section describes.
fn client(
    name: &str,
    provider: &ProviderConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BoxedProvider, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    if provider.kind == ProviderKind::Simulated {
        let mut simulated = SimulatedProvider::builder();
        if let Some(latency) = provider.latency {
            simulated = simulated.latency(latency);
        }
        if let Some(tokens) = provider.output_tokens {
            simulated = simulated.output_tokens(tokens);
        }
        return Ok(BoxCloneSyncService::new(simulated.build()));
    }
    let key = match &provider.api_key_env {
        Some(var) => match env(var).filter(|key| !key.trim().is_empty()) {
            Some(key) => Some(key),
            None => {
                return Err(ConfigError::new(
                    at("api_key_env"),
                    format!("the environment variable {var} is not set"),
                ));
            }
        },
        None => None,
    };
    network_client(name, provider, key)
}

#[cfg(feature = "providers")]
fn network_client(
    name: &str,
    provider: &ProviderConfig,
    key: Option<String>,
) -> Result<BoxedProvider, ConfigError> {
    use tollgate_providers::{Anthropic, OpenAiCompatible};

    let under = |e: ConfigError| e.under(&format!("providers.{name}"));
    macro_rules! common {
        ($builder:expr) => {{
            let mut builder = $builder;
            if let Some(timeout) = provider.timeout {
                builder = builder.timeout(timeout);
            }
            if let Some(timeout) = provider.connect_timeout {
                builder = builder.connect_timeout(timeout);
            }
            if let Some(timeout) = provider.first_byte_timeout {
                builder = builder.first_byte_timeout(timeout);
            }
            if let Some(timeout) = provider.stream_idle_timeout {
                builder = builder.stream_idle_timeout(timeout);
            }
            if let Some(bytes) = provider.max_response_bytes {
                builder = builder.max_response_bytes(bytes);
            }
            if let Some(bytes) = provider.max_event_bytes {
                builder = builder.max_event_bytes(bytes);
            }
            for (header, value) in &provider.headers {
                builder = builder.header(header, value);
            }
            builder
        }};
    }
    match provider.kind {
        ProviderKind::Openai => {
            let url = provider
                .base_url
                .as_deref()
                .unwrap_or("https://api.openai.com/v1");
            let mut builder = common!(OpenAiCompatible::builder(url).name(name));
            if let Some(key) = key {
                builder = builder.api_key(key);
            }
            if let Some(field) = provider.max_tokens_name {
                builder = builder.max_tokens_name(field);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Anthropic => {
            let Some(key) = key else {
                return Err(ConfigError::new(
                    format!("providers.{name}.api_key_env"),
                    "missing: Anthropic needs an API key (e.g. api_key_env: ANTHROPIC_API_KEY)",
                ));
            };
            let mut builder = common!(Anthropic::builder(key));
            if let Some(url) = &provider.base_url {
                builder = builder.base_url(url);
            }
            builder.build().map(BoxCloneSyncService::new).map_err(under)
        }
        ProviderKind::Simulated => unreachable!("handled by the caller"),
    }
}

#[cfg(not(feature = "providers"))]
fn network_client(
    name: &str,
    _: &ProviderConfig,
    _: Option<String>,
) -> Result<BoxedProvider, ConfigError> {
    Err(ConfigError::new(
        format!("providers.{name}.kind"),
        "this build has no provider clients: enable tollgate's `providers` feature (or give the \
         stack a service for it with StackBuilder::provider)",
    ))
}

fn cache(caching: &CachingConfig, redis: Option<&Redis<'_>>) -> Result<CacheLayer, ConfigError> {
    let layer = if caching.store.is_shared() {
        caching.build_with_shared(redis_store(redis.expect("validated"))?)
    } else {
        caching.build()
    };
    layer.map_err(|e| e.under("caching"))
}

/// The `redis` section and the connection opened from it.
pub(super) struct Redis<'a> {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    section: &'a RedisSection,
    #[cfg(feature = "redis")]
    connection: tollgate_core::redis::RedisConnection,
}

#[cfg(feature = "redis")]
fn open_redis<'a>(
    section: &'a RedisSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Redis<'a>, ConfigError> {
    let target = tollgate_core::redis::target_of(
        section.url.as_deref(),
        section.cluster.as_ref(),
        section.sentinel.as_ref(),
        env,
    )?;
    let connection = tollgate_core::redis::RedisConnection::open(
        &target,
        section.limiter_timeout.max(section.cache_timeout),
        section.probe_interval,
    )?;
    Ok(Redis {
        section,
        connection,
    })
}

#[cfg(not(feature = "redis"))]
fn open_redis<'a>(
    section: &'a RedisSection,
    _: &dyn Fn(&str) -> Option<String>,
) -> Result<Redis<'a>, ConfigError> {
    Ok(Redis { section })
}

#[cfg(feature = "redis")]
fn redis_store(redis: &Redis<'_>) -> Result<tollgate_cache::RedisStore, ConfigError> {
    let section = redis.section;
    tollgate_cache::RedisStore::builder(redis.connection.clone())
        .prefix(format!("{}:cache", section.prefix))
        .timeout(section.cache_timeout)
        .max_value_bytes(section.cache_max_value_bytes)
        .compress(section.cache_compress)
        .build()
        .map_err(|e| e.under("redis"))
}

#[cfg(not(feature = "redis"))]
fn redis_store(_: &Redis<'_>) -> Result<tollgate_cache::MemoryStore, ConfigError> {
    Err(no_redis("caching.store"))
}

#[cfg(not(feature = "redis"))]
fn no_redis(path: &str) -> ConfigError {
    ConfigError::new(
        path,
        "this build has no Redis support: enable tollgate's `redis` feature",
    )
}

/// The rate-limit layer the section describes, its limiter shared through Redis when there is a
/// `redis` section.
fn rate_limits(
    limiting: &RateLimitingConfig,
    redis: Option<&Redis<'_>>,
    pricing: &PricingTable,
    clock: Option<Arc<dyn Clock>>,
    estimator: Arc<dyn TokenEstimator>,
) -> Result<(RateLimitLayer, LimitHandles), ConfigError> {
    let under = |e: ConfigError| e.under("rate_limiting");
    let mut limits = limiting.limits().map_err(under)?;
    if let Some(clock) = clock {
        limits = limits.clock(clock);
    }
    let limiter = match redis {
        None => Limiter::Local(limits.build().map_err(under)?),
        Some(redis) => redis_limiter(redis, limits)?,
    };
    let mut builder = limiting.layer_builder(limiter.clone()).estimator(estimator);
    if !pricing.is_empty() {
        builder = builder.pricing(pricing.clone());
    }
    let layer = builder.build().map_err(under)?;
    Ok((
        layer,
        LimitHandles {
            tenant_scope: limiter.scope(TENANT_SCOPE),
            limiter,
            config: limiting.clone(),
        },
    ))
}

#[cfg(feature = "redis")]
fn redis_limiter(redis: &Redis<'_>, limits: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    let section = redis.section;
    let settings = tollgate_ratelimit::RedisConfig {
        url: None,
        cluster: None,
        sentinel: None,
        prefix: format!("{}:rl", section.prefix),
        timeout: section.limiter_timeout,
        on_failure: section.on_failure,
        local_share: section.local_share,
        failure_threshold: section.failure_threshold,
        probe_interval: section.probe_interval,
        hash_tag_scope: section.hash_tag_scope.clone(),
        lease: section.lease,
    };
    settings
        .builder_on(redis.connection.clone())
        .limits(limits)
        .build()
        .map(Limiter::Redis)
        .map_err(|e| e.under("redis"))
}

#[cfg(not(feature = "redis"))]
fn redis_limiter(_: &Redis<'_>, _: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    Err(no_redis("redis"))
}

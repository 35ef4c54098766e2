//! The layers above and beside the clients: the cache and the limits (over one Redis
//! connection when there is a `redis` section), and the breakers and statistics every
//! provider's stack shares.

use std::sync::Arc;

use tollgate_cache::CacheLayer;
use tollgate_circuit_breaker::CircuitBreakers;
use tollgate_core::{ConfigError, PricingTable, TokenEstimator, clock::Clock, redis::RedisConfig};
use tollgate_health::HealthStats;
use tollgate_ratelimit::{Limiter, RateLimitLayer, RateLimiterBuilder, TENANT_SCOPE};

use super::{LimitHandles, clients::own_clients, sharing::Shared};
use crate::{CachingConfig, Config, RateLimitingConfig, Switch};

/// The cache and the limits, each when configured; and where the router shares its
/// deployments' health, with a `redis` section.
pub(super) struct Layers {
    pub(super) cache: Option<CacheLayer>,
    pub(super) limits: Option<(RateLimitLayer, LimitHandles)>,
    pub(super) shared: Option<Shared>,
}

/// The cache and the limits `config` describes, over one Redis connection when it has a
/// `redis` section; every mistake found in `errors`.
///
/// # Errors
///
/// A Redis that cannot be named (its mistakes are not worth piling others onto).
pub(super) fn layers(
    config: &Config,
    prices: &PricingTable,
    env: &dyn Fn(&str) -> Option<String>,
    (clock, wall_time): (Option<Arc<dyn Clock>>, Option<std::time::SystemTime>),
    estimator: Arc<dyn TokenEstimator>,
    errors: &mut Vec<ConfigError>,
) -> Result<Layers, ConfigError> {
    // One connection, shared by the cache and the limiter.
    let redis = config
        .redis
        .as_ref()
        .map(|section| open_redis(section, env))
        .transpose()?;
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
            prices,
            (clock, wall_time),
            estimator,
        )
        .map_err(|e| errors.push(e))
        .ok(),
        Switch::Off => None,
    };
    let shared = redis.as_ref().and_then(Redis::shared);
    Ok(Layers {
        cache,
        limits,
        shared,
    })
}

/// The circuit breakers and the call statistics, each provider (and each target with a client
/// of its own) under its own rules; from validated sections, so they cannot fail.
pub(super) fn guards(
    config: &Config,
    clock: Option<&Arc<dyn Clock>>,
) -> (Option<CircuitBreakers>, Option<HealthStats>) {
    let own = own_clients(config);
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
        if let Some(clock) = clock {
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
        if let Some(clock) = clock {
            builder = builder.clock(clock.clone());
        }
        builder.build().expect("validated")
    });
    (breakers, health)
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
    section: &'a RedisConfig,
    #[cfg(feature = "redis")]
    connection: tollgate_core::redis::RedisConnection,
}

impl Redis<'_> {
    /// Where the router's deployments' health is shared: the same connection, under the
    /// section's prefix.
    #[cfg(feature = "redis")]
    fn shared(&self) -> Option<Shared> {
        Some(Shared::new(self.connection.clone(), self.section))
    }

    #[cfg(not(feature = "redis"))]
    fn shared(&self) -> Option<Shared> {
        None
    }
}

#[cfg(feature = "redis")]
fn open_redis<'a>(
    section: &'a RedisConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Redis<'a>, ConfigError> {
    Ok(Redis {
        section,
        connection: section.connect(env)?,
    })
}

#[cfg(not(feature = "redis"))]
fn open_redis<'a>(
    section: &'a RedisConfig,
    _: &dyn Fn(&str) -> Option<String>,
) -> Result<Redis<'a>, ConfigError> {
    Ok(Redis { section })
}

#[cfg(feature = "redis")]
fn redis_store(redis: &Redis<'_>) -> Result<tollgate_cache::RedisStore, ConfigError> {
    tollgate_cache::RedisStore::builder(redis.connection.clone())
        .config(redis.section)
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
    (clock, wall_time): (Option<Arc<dyn Clock>>, Option<std::time::SystemTime>),
    estimator: Arc<dyn TokenEstimator>,
) -> Result<(RateLimitLayer, LimitHandles), ConfigError> {
    let under = |e: ConfigError| e.under("rate_limiting");
    let mut limits = limiting.limits().map_err(under)?;
    if let Some(clock) = clock {
        limits = limits.clock(clock);
    }
    if let Some(now) = wall_time {
        limits = limits.wall_time(now);
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
            layer: None,
            config: limiting.clone(),
        },
    ))
}

#[cfg(feature = "redis")]
fn redis_limiter(redis: &Redis<'_>, limits: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    tollgate_ratelimit::RedisRateLimiter::builder(redis.connection.clone())
        .config(redis.section)
        .limits(limits)
        .build()
        .map(Limiter::Redis)
        // The builder names the section's own fields (`redis.…`); the rest is the limits'.
        .map_err(|e| {
            if e.path().starts_with("redis") {
                e
            } else {
                e.under("rate_limiting")
            }
        })
}

#[cfg(not(feature = "redis"))]
fn redis_limiter(_: &Redis<'_>, _: RateLimiterBuilder) -> Result<Limiter, ConfigError> {
    Err(no_redis("redis"))
}

//! `Config`: the whole stack from one YAML document.
//!
//! Read with [`Config::from_yaml`] or [`Config::load`], which report every mistake they find
//! together, each with its path; build with [`Stack::from_config`](crate::Stack::from_config).
//! `examples/config.yaml` is a commented example of every section.

mod check;
mod errors;
mod kinds;
mod pricing;
mod read;
mod roles;
mod routes;
mod sections;
mod switch;

use std::{collections::BTreeSet, path::Path};

use serde_yaml_ng::Value;
use tollgate_core::ConfigError;

pub use errors::ConfigErrors;
pub use pricing::PricingConfig;
pub use read::ConfigDocument;
pub use roles::{ResolvedRole, ResolvedTarget, RoleConfig, TargetConfig};
pub use sections::{
    CachingConfig, Config, DEFAULT_QUOTA_VAR, DEFAULT_ROLE, PerProvider, ProviderConfig,
    ProviderKind, RateLimitingConfig, RoutingConfig,
};
pub use switch::Switch;
pub use tollgate_cache::StoreKind;
pub use tollgate_ratelimit::Limits;

use read::typed;

/// The environment variable that replaces `redis.url`: the same one the rate limiter's own
/// configuration reads.
pub use tollgate_core::redis::REDIS_URL_VAR;
#[doc(no_inline)]
pub use tollgate_core::redis::RedisConfig;

impl Config {
    /// Reads, checks and returns the configuration in the YAML file at `path`, with the
    /// environment's overrides ([`with_env`](Self::with_env)).
    ///
    /// # Errors
    ///
    /// Every mistake found: an unreadable file, YAML that does not parse, and then each section's
    /// mistakes together.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::parse(&text)?.with_env()
    }

    /// Reads and checks a YAML document (without environment overrides).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        Self::parse(text)
    }

    /// This configuration with the environment's overrides: [`REDIS_URL_VAR`] replaces the Redis
    /// the `redis` section names (its `url`, `cluster` or `sentinel`), and [`DEFAULT_QUOTA_VAR`] replaces `rate_limiting.tenants.default`.
    ///
    /// # Errors
    ///
    /// A variable that does not parse, or an override that makes the configuration invalid; each
    /// named (`env.TOLLGATE_DEFAULT_QUOTA.per_minute: must be > 0`).
    pub fn with_env(self) -> Result<Self, ConfigErrors> {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// [`with_env`](Self::with_env), reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// As [`with_env`](Self::with_env).
    pub fn with_env_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        self.redis = self.redis.map(|redis| redis.with_env_from(&lookup));
        if let Some(text) = lookup(DEFAULT_QUOTA_VAR) {
            let at = format!("env.{DEFAULT_QUOTA_VAR}");
            let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
                ConfigError::new(
                    &at,
                    format!(
                        "expected limits such as {{per_minute: 600, cost_per_day: \"20\"}}: {e}"
                    ),
                )
            })?;
            let limits: Limits = typed(value, &at)?;
            limits.quota(&at).map_err(ConfigErrors)?;
            match &mut self.rate_limiting {
                Switch::On(limiting) => {
                    limiting.tenants.insert(DEFAULT_ROLE.to_owned(), limits);
                }
                Switch::Off => {
                    let mut limiting = RateLimitingConfig::default();
                    limiting.tenants.insert(DEFAULT_ROLE.to_owned(), limits);
                    self.rate_limiting = Switch::On(limiting);
                }
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every section.
    ///
    /// # Errors
    ///
    /// Every mistake found, each with its path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        ConfigErrors::check(self.mistakes(&BTreeSet::new()))
    }
}

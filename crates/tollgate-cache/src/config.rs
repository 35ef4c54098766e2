//! `CacheConfig`: what is cached, for how long, and whose answers are shared.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use tollgate_core::{ConfigError, LlmRequest, duration};

use crate::Scope;

/// Caching rules; unknown fields are errors.
///
/// ```
/// use tollgate_cache::CacheConfig;
///
/// let config: CacheConfig = serde_json::from_str(r#"{
///     "default_ttl": "1h",
///     "normalize_whitespace": true,
///     "providers": { "openai": { "ttl": "10m" } },
///     "models": { "gpt-4o-realtime": { "enabled": false } }
/// }"#).unwrap();
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an answer is served (default 1 h); a request's own `ttl` overrides it.
    #[serde(with = "duration")]
    pub default_ttl: Duration,
    /// Answers longer than this many bytes are not stored (default 1 MiB).
    pub max_entry_bytes: usize,
    /// Cache only requests that ask for a reproducible answer: temperature 0, or a seed.
    pub deterministic_only: bool,
    /// Treat runs of whitespace inside message text as one space (text is always trimmed).
    pub normalize_whitespace: bool,
    /// `tenant` (default: tenants never see each other's answers) or `shared`.
    pub scope: Scope,
    /// Per provider: on or off, and its own time to live.
    pub providers: BTreeMap<String, Override>,
    /// Per model (wins over its provider's rule).
    pub models: BTreeMap<String, Override>,
}

/// A provider's or model's own caching rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Override {
    /// Cache it at all (default true).
    pub enabled: Option<bool>,
    /// Its own time to live.
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3_600),
            max_entry_bytes: 1 << 20,
            deterministic_only: false,
            normalize_whitespace: false,
            scope: Scope::Tenant,
            providers: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }
}

impl CacheConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tollgate_core::non_zero("default_ttl", self.default_ttl)?;
        if self.max_entry_bytes == 0 {
            return Err(ConfigError::new("max_entry_bytes", "must be at least 1"));
        }
        for (section, rules) in [("providers", &self.providers), ("models", &self.models)] {
            for (name, rule) in rules {
                if let Some(ttl) = rule.ttl {
                    tollgate_core::non_zero(&format!("{section}.{name}.ttl"), ttl)?;
                }
            }
        }
        Ok(())
    }

    /// How long to keep `request`'s answer, or `None` when it is not cached at all.
    pub fn ttl_for(&self, request: &LlmRequest) -> Option<Duration> {
        if self.deterministic_only
            && request.params.temperature != Some(0.0)
            && request.params.seed.is_none()
        {
            return None;
        }
        let provider = request
            .provider
            .as_deref()
            .and_then(|provider| self.providers.get(provider));
        let model = self.models.get(&*request.model);
        let enabled = model
            .and_then(|m| m.enabled)
            .or_else(|| provider.and_then(|p| p.enabled))
            .unwrap_or(true);
        if !enabled {
            return None;
        }
        Some(
            request
                .meta
                .cache
                .ttl
                .or_else(|| model.and_then(|m| m.ttl))
                .or_else(|| provider.and_then(|p| p.ttl))
                .unwrap_or(self.default_ttl),
        )
    }
}

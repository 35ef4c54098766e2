//! `CacheConfig`: where answers are kept, what is cached, for how long, and whose answers are
//! shared. The facade's `caching:` section is this type.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use tollgate_core::{ConfigError, LlmRequest, duration};

use crate::Scope;

/// The whole cache from one serde document: its store and its rules. Unknown fields are errors.
///
/// ```
/// use tollgate_cache::{CacheConfig, StoreKind};
///
/// let config: CacheConfig = serde_json::from_str(r#"{
///     "store": "memory",
///     "max_bytes": 1048576,
///     "ttl": "1h",
///     "normalize_whitespace": true,
///     "providers": { "openai": { "ttl": "10m" } },
///     "models": { "gpt-4o-realtime": { "enabled": false } }
/// }"#).unwrap();
/// assert_eq!(config.store, StoreKind::Memory);
/// let cache = config.build().unwrap();
/// assert_eq!(cache.metrics().entries, 0);
///
/// // Mistakes name the field.
/// let bad: CacheConfig = serde_json::from_str(r#"{ "store": "file" }"#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().path(), "path");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Where answers are kept: `memory` (default), `file`, `redis` or `tiered` (memory in front
    /// of Redis). The last two are given their Redis store by
    /// [`build_with_shared`](Self::build_with_shared).
    pub store: StoreKind,
    /// Bytes the memory or file store (or a tiered store's memory) holds (default 64 MiB).
    pub max_bytes: u64,
    /// The file store's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// How long an answer is served (default 1 h); a request's own `ttl` overrides it. Written
    /// `ttl` (`default_ttl` is read too).
    #[serde(rename = "ttl", alias = "default_ttl", with = "duration")]
    pub default_ttl: Duration,
    /// Answers whose text (every choice's content, reasoning, refusal and tool calls) is longer
    /// than this many bytes are not stored (default 1 MiB).
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

/// Where a cache keeps its answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A [`MemoryStore`](crate::MemoryStore) in this process, bounded by `max_bytes` (default).
    #[default]
    Memory,
    /// A [`FileStore`](crate::FileStore) under `path`, bounded by `max_bytes`; survives restarts.
    File,
    /// A store every process shares (a `RedisStore`).
    Redis,
    /// A [`MemoryStore`](crate::MemoryStore) of `max_bytes` in front of a store every process shares.
    Tiered,
}

impl StoreKind {
    /// Whether this store needs one that every process shares.
    pub fn is_shared(self) -> bool {
        matches!(self, Self::Redis | Self::Tiered)
    }
}

/// The memory or file store's bound when none is given: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            max_bytes: DEFAULT_MAX_BYTES,
            path: None,
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
        self.validate_store()?;
        self.validate_rules()
    }

    /// Checks the store's fields.
    fn validate_store(&self) -> Result<(), ConfigError> {
        if self.max_bytes == 0 {
            return Err(ConfigError::new("max_bytes", "must be > 0"));
        }
        if self.store == StoreKind::File && self.path.is_none() {
            return Err(ConfigError::new(
                "path",
                "missing: the file store needs a directory",
            ));
        }
        Ok(())
    }

    /// Checks the rules, which are all a layer given its own store reads.
    pub(crate) fn validate_rules(&self) -> Result<(), ConfigError> {
        tollgate_core::non_zero("ttl", self.default_ttl)?;
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

//! The `idempotency` section.

use std::time::Duration;

use serde::Deserialize;
use tollgate::{ConfigError, Switch};

/// How answers to calls with an `Idempotency-Key` are kept for their retries (the `idempotency`
/// section). On by default, as the header is the caller's own request for it; `idempotency:
/// false` turns it off, and the header is then ignored. Unknown fields are errors.
///
/// ```
/// use std::time::Duration;
/// use tollgate_gateway::{GatewayConfig, IdempotencyStore};
///
/// let yaml = |more: &str| format!(r#"
/// providers: {{ local: {{ kind: simulated }} }}
/// roles: {{ default: {{ provider: local, model: sim-small }} }}
/// keys: {{ demo: {{ hash: "{}", tenant: acme }} }}
/// {more}
/// "#, tollgate_gateway::hash_key("tg-demo"));
///
/// // On, in memory, for a day, when the file says nothing.
/// let config = GatewayConfig::from_yaml(&yaml("")).unwrap();
/// let settings = config.idempotency.get().unwrap();
/// assert_eq!(settings.ttl, Duration::from_secs(24 * 3600));
/// assert_eq!(settings.store, None); // memory here; Redis with a `redis` section
///
/// let config = GatewayConfig::from_yaml(&yaml("idempotency: { ttl: 1h, max_bytes: 16777216 }")).unwrap();
/// assert_eq!(config.idempotency.get().unwrap().ttl, Duration::from_secs(3600));
/// // An answer larger than the whole store could never be kept (each is 4 MiB at most by default).
/// let err = GatewayConfig::from_yaml(&yaml("idempotency: { max_bytes: 1048576 }")).unwrap_err();
/// assert_eq!(err.paths(), ["idempotency.max_entry_bytes"]);
/// assert!(GatewayConfig::from_yaml(&yaml("idempotency: false")).unwrap().idempotency.get().is_none());
///
/// // Mistakes name the field.
/// let err = GatewayConfig::from_yaml(&yaml("idempotency: { ttl: 0s, store: redis }")).unwrap_err();
/// assert_eq!(err.paths(), ["idempotency.ttl", "idempotency.store"]);
/// let err = GatewayConfig::from_yaml(&yaml("idempotency: { tll: 1h }")).unwrap_err();
/// assert_eq!(err.paths(), ["idempotency.tll"]);
/// # let _ = IdempotencyStore::Memory;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct IdempotencyConfig {
    /// How long an answer is kept for its retries (default 24 h, as Stripe keeps them). After
    /// it, a call with the same key runs again.
    #[serde(with = "tollgate_core::duration")]
    pub ttl: Duration,
    /// Where answers are kept: `memory` (this process only) or `redis` (every process on the
    /// configuration's `redis` section, and each process's own in its memory too). Absent:
    /// `redis` when there is a `redis` section, else `memory`.
    pub store: Option<IdempotencyStore>,
    /// Bytes of answers this process keeps in memory at most, their bookkeeping counted (default
    /// 64 MiB). When it is full, the answers used least recently leave first.
    pub max_bytes: u64,
    /// The largest answer kept, in bytes (default 4 MiB): a larger one is served but not kept, so
    /// its retry runs again.
    pub max_entry_bytes: usize,
}

/// Where a gateway keeps its idempotent answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyStore {
    /// In this process, bounded by `max_bytes`: a retry that reaches another process runs again.
    Memory,
    /// In the `redis` section's Redis, shared by every process that uses it (and each process's
    /// own answers in its memory as well).
    Redis,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            store: None,
            max_bytes: 64 << 20,
            max_entry_bytes: 4 << 20,
        }
    }
}

impl IdempotencyConfig {
    /// The store answers go to, given whether the configuration has a `redis` section.
    pub fn store_for(&self, redis: bool) -> IdempotencyStore {
        self.store.unwrap_or(if redis {
            IdempotencyStore::Redis
        } else {
            IdempotencyStore::Memory
        })
    }
}

/// Every mistake in the section; `redis`: whether the configuration has a `redis` section (`None`
/// when the stack's sections could not be read, and the store is not checked).
pub(crate) fn check(section: &Switch<IdempotencyConfig>, redis: Option<bool>) -> Vec<ConfigError> {
    let Switch::On(settings) = section else {
        return Vec::new();
    };
    let at = |field: &str| format!("idempotency.{field}");
    let mut errors = Vec::new();
    if settings.ttl.is_zero() {
        errors.push(ConfigError::new(at("ttl"), "must be > 0"));
    }
    if settings.max_bytes == 0 {
        errors.push(ConfigError::new(at("max_bytes"), "must be > 0"));
    }
    if settings.max_entry_bytes == 0 {
        errors.push(ConfigError::new(at("max_entry_bytes"), "must be > 0"));
    } else if settings.max_entry_bytes as u64 > settings.max_bytes {
        // An answer larger than the whole store could never be kept.
        errors.push(ConfigError::new(
            at("max_entry_bytes"),
            "must be at most max_bytes",
        ));
    }
    if settings.store == Some(IdempotencyStore::Redis) && redis == Some(false) {
        errors.push(ConfigError::new(
            at("store"),
            "`redis` needs a `redis` section to say where Redis is",
        ));
    }
    errors
}

//! `CacheLayer`: builds a cache over a store, and reads its counts.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tollgate_core::{ConfigError, LlmRequest};
use tower_layer::Layer;

use crate::{
    CacheConfig, CacheKey, WallClock,
    config::StoreKind,
    flight::Flights,
    key::cache_key,
    service::Cache,
    shared::Shared,
    store::{CacheStore, FileStore, MemoryStore, StoreStats, TieredStore},
    telemetry::Telemetry,
};

/// What a cache did since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Answers served from the store.
    pub hits: u64,
    /// Answers shared from an identical call in flight.
    pub coalesced: u64,
    /// Cacheable requests that had to call upstream.
    pub misses: u64,
    /// Requests the policy left alone (not cacheable).
    pub bypassed: u64,
    /// Answers written to the store.
    pub stores: u64,
    /// Entries the store dropped to stay under its size bound.
    pub evictions: u64,
    /// Entries the store dropped when their time was up.
    pub expirations: u64,
    /// Bytes held by the store.
    pub bytes: u64,
    /// Entries held by the store.
    pub entries: u64,
    /// Distinct requests calling upstream now, each with any identical ones waiting on it: an
    /// entry lives in the single-flight table only while its call is under way.
    pub in_flight: u64,
    /// `(hits + coalesced) / (hits + coalesced + misses)`, 0 before any lookup.
    pub hit_rate: f64,
}

/// Caches answers in a [`CacheStore`]: see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// A cache over `store` under `config`, reading the system's wall clock.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field of `config` out of range.
    pub fn new(store: impl CacheStore, config: CacheConfig) -> Result<Self, ConfigError> {
        Self::with_clock(store, config, WallClock::system())
    }

    /// A cache reading time from `clock` (tests on paused time pass a clock on tokio's).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field of `config` out of range.
    pub fn with_clock(
        store: impl CacheStore,
        config: CacheConfig,
        clock: WallClock,
    ) -> Result<Self, ConfigError> {
        config.validate_rules()?;
        Ok(Self {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                config,
                clock,
                flights: Arc::new(Flights::default()),
                hits: AtomicU64::new(0),
                coalesced: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                bypassed: AtomicU64::new(0),
                stores: AtomicU64::new(0),
                telemetry: Telemetry::register(),
            }),
        })
    }

    /// The key `request` is cached under.
    pub fn key_of(&self, request: &LlmRequest) -> CacheKey {
        let config = &self.shared.config;
        cache_key(request, config.scope, config.normalize_whitespace)
    }

    /// Removes the answer cached for `request`.
    pub async fn invalidate(&self, request: &LlmRequest) {
        self.invalidate_key(self.key_of(request)).await;
    }

    /// Removes the answer cached under `key`.
    pub async fn invalidate_key(&self, key: CacheKey) {
        self.shared.store.remove(key).await;
    }

    /// Removes every cached answer.
    pub async fn clear(&self) {
        self.shared.store.clear().await;
    }

    /// Counts so far, with the store's own.
    pub fn metrics(&self) -> CacheMetrics {
        let shared = &self.shared;
        let StoreStats {
            entries,
            bytes,
            evictions,
            expirations,
            ..
        } = shared.store.stats();
        let hits = shared.hits.load(Ordering::Relaxed);
        let coalesced = shared.coalesced.load(Ordering::Relaxed);
        let misses = shared.misses.load(Ordering::Relaxed);
        let looked = hits + coalesced + misses;
        CacheMetrics {
            hits,
            coalesced,
            misses,
            bypassed: shared.bypassed.load(Ordering::Relaxed),
            stores: shared.stores.load(Ordering::Relaxed),
            evictions,
            expirations,
            bytes,
            entries,
            in_flight: shared.flights.len() as u64,
            hit_rate: if looked == 0 {
                0.0
            } else {
                (hits + coalesced) as f64 / looked as f64
            },
        }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache::new(inner, self.clone())
    }
}

impl<S> Cache<S> {
    /// Wraps `inner` in `layer`'s cache.
    pub fn new(inner: S, layer: CacheLayer) -> Self {
        Self::from_shared(inner, layer.shared)
    }
}

/// Building the cache a configuration describes, store included.
impl CacheConfig {
    /// The cache this describes, over a memory or file store.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range, `path` when the file store's
    /// directory cannot be opened, or `store` for a store every process shares (build those with
    /// [`build_with_shared`](Self::build_with_shared)).
    pub fn build(&self) -> Result<CacheLayer, ConfigError> {
        self.validate()?;
        match self.store {
            StoreKind::Memory => CacheLayer::new(MemoryStore::new(self.max_bytes), self.clone()),
            StoreKind::File => {
                let path = self.path.as_ref().expect("validated");
                let store = FileStore::builder(path)
                    .max_bytes(self.max_bytes)
                    .open()
                    .map_err(|e| {
                        ConfigError::new("path", format!("cannot open {}: {e}", path.display()))
                    })?;
                CacheLayer::new(store, self.clone())
            }
            StoreKind::Redis | StoreKind::Tiered => Err(ConfigError::new(
                "store",
                "needs a store every process shares: build it with build_with_shared",
            )),
        }
    }

    /// The cache this describes, with `shared` (a `RedisStore`) as the store every process
    /// shares: the store itself for `redis`, behind a memory store for `tiered`, and unused for
    /// `memory` and `file`.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_shared(&self, shared: impl CacheStore) -> Result<CacheLayer, ConfigError> {
        match self.store {
            StoreKind::Memory | StoreKind::File => self.build(),
            StoreKind::Redis => {
                self.validate()?;
                CacheLayer::new(shared, self.clone())
            }
            StoreKind::Tiered => {
                self.validate()?;
                let front = MemoryStore::new(self.max_bytes);
                CacheLayer::new(TieredStore::new(front, shared), self.clone())
            }
        }
    }
}

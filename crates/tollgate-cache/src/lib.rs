//! Response caching for LLM calls as a tower layer: exact-match keys over everything that changes
//! the answer, tenant isolation, memory and file stores, and single-flight for identical misses.
//!
//! # Example
//!
//! ```
//! use tollgate_cache::{CacheConfig, CacheLayer, CacheStatus, MemoryStore};
//! use tollgate_core::{LlmRequest, Message, SimulatedProvider};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cache = CacheLayer::new(MemoryStore::new(64 << 20), CacheConfig::default()).unwrap();
//! let provider = SimulatedProvider::new();
//! let mut stack = ServiceBuilder::new().layer(cache.clone()).service(provider.clone());
//!
//! let ask = || LlmRequest::new("sim", vec![Message::user("What is a tollgate?")]).with_tenant("acme");
//! let first = stack.ready().await.unwrap().call(ask()).await.unwrap();
//! let second = stack.ready().await.unwrap().call(ask()).await.unwrap();
//! assert_eq!(first.headers["x-cache"], "MISS");
//! assert_eq!(second.headers["x-cache"], "HIT");
//! assert!(matches!(second.extensions.get::<CacheStatus>(), Some(CacheStatus::Hit { .. })));
//! assert_eq!(second.usage, first.usage); // the original cost, so reports stay honest
//! assert_eq!(provider.calls(), 1);
//!
//! // Another tenant never sees acme's answer.
//! let other = stack.ready().await.unwrap().call(ask().with_tenant("globex")).await.unwrap();
//! assert_eq!(other.headers["x-cache"], "MISS");
//! # }
//! ```
//!
//! # What is cached
//!
//! Successful answers only (errors never), no longer than `max_entry_bytes`, for the configured
//! time to live; [`CacheConfig`] switches providers and models on or off, gives them their own
//! TTL, and can limit caching to reproducible requests (temperature 0 or a seed). A request's own
//! cache control wins: `no_cache` skips the lookup (the fresh answer may still be stored),
//! `no_store` does not store, `ttl` overrides the TTL.
//!
//! # Keys
//!
//! SHA-256 over a canonical encoding of tenant scope, provider, model, normalized messages and
//! every output-affecting parameter; see [`key`] for the exact encoding. Tenants are isolated by
//! default; [`Scope::Shared`] shares answers across tenants on purpose.
//!
//! # Single-flight
//!
//! Concurrent identical misses make one upstream call: the first caller leads, the rest wait for
//! its answer ([`CacheStatus::Coalesced`]) or its error. If the leader is dropped mid-call, a
//! waiter takes over.
//!
//! # Stores
//!
//! [`MemoryStore`] (moka, bounded in bytes of memory with its bookkeeping counted, per-entry TTL;
//! each answer packed into one allocation of about its JSON's length, read back on a hit) and
//! [`FileStore`] (a file per entry, atomic writes, bounded in bytes and in entries with
//! oldest-first eviction, background cleanup, survives restarts, corrupt files are misses); with the `redis` feature, `RedisStore` (shared by every process,
//! `PX` expiry, optional LZ4 compression, bounded values, corrupt values are misses). A
//! [`TieredStore`] puts one in front of another (memory before Redis). All implement
//! [`CacheStore`]; a store never fails a request.

mod config;
mod entry;
mod flight;
mod future;
pub mod key;
mod layer;
mod packed;
mod service;
mod shared;
mod status;
pub mod store;
mod telemetry;

pub use config::{CacheConfig, DEFAULT_MAX_BYTES, Override, StoreKind};
pub use entry::CachedResponse;
pub use future::ResponseFuture;
pub use key::{CacheKey, Scope, cache_key};
pub use layer::{CacheLayer, CacheMetrics};
pub use service::Cache;
pub use status::{CacheStatus, X_CACHE};
pub use store::{CacheStore, FileStore, MemoryStore, StoreStats, TieredStore};
#[cfg(feature = "redis")]
pub use store::{RedisStore, RedisStoreBuilder};
/// The wall clock the stores read expiry times from (core's, re-exported where stores take it).
pub use tollgate_core::clock::WallClock;

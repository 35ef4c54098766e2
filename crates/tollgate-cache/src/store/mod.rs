//! Where entries live: the [`CacheStore`] trait and its stores.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::LlmResponse;

use crate::{CacheKey, CachedResponse};

mod file;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod tiered;

pub use file::{FileStore, FileStoreBuilder};
pub use memory::{MEMORY_ENTRY_OVERHEAD, MemoryStore};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder, RedisStoreErrors};
pub use tiered::TieredStore;

// The Redis store's defaults, named whatever features are on. Those a configuration's `redis`
// section also sets are core's, so the section and the builder read the same ones.

/// Default key prefix of a Redis store (feature `redis`): the `redis` section's default prefix,
/// under `:cache`.
pub const DEFAULT_CACHE_PREFIX: &str = "tollgate:cache";

#[doc(no_inline)]
pub use tollgate_core::redis::{DEFAULT_CACHE_TIMEOUT, DEFAULT_MAX_VALUE_BYTES};

/// A boxed store operation.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A store operation that finished when it was called. It has no size, so boxing it allocates
/// nothing (a boxed `std::future::Ready<()>` would, on every put).
pub(crate) fn done() -> StoreFuture<()> {
    struct Done;

    impl Future for Done {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }

    Box::pin(Done)
}

/// The result of a lookup: at once for stores that can answer without waiting, or later.
pub enum Lookup {
    /// The answer, available now (the memory store).
    Ready(Option<Arc<CachedResponse>>),
    /// The answer, once the store has read it (the file store).
    Pending(StoreFuture<Option<Arc<CachedResponse>>>),
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(entry) => f.debug_tuple("Ready").field(entry).finish(),
            Self::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Counts a store keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Entries held.
    pub entries: u64,
    /// Bytes held (as the store weighs them).
    pub bytes: u64,
    /// Entries dropped to stay under the size bound.
    pub evictions: u64,
    /// Entries dropped because their time was up.
    pub expirations: u64,
}

/// Keeps cached answers. A store never fails a request: an error reading is a miss and an error
/// writing is a lost entry, each reported through `tracing`.
pub trait CacheStore: Send + Sync + 'static {
    /// The entry under `key`, if any. Entries past their time may be returned; the layer checks.
    fn get(&self, key: CacheKey) -> Lookup;

    /// Stores `entry` under `key`, replacing any other.
    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()>;

    /// Stores `response` under `key`, replacing any other: the entry
    /// [`CachedResponse::from_response`]`(response, stored_at_ms, ttl_ms)`, as [`put`](Self::put)
    /// stores it. The cache layer stores every answer it keeps through this.
    ///
    /// The default makes that entry and puts it; a store that keeps answers in a form of its own
    /// writes that form from the response, without the entry's copy of the answer in between
    /// (the [`MemoryStore`] packs it into one allocation).
    fn put_response(
        &self,
        key: CacheKey,
        response: &LlmResponse,
        stored_at_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<()> {
        let entry = CachedResponse::from_response(response, stored_at_ms, ttl_ms);
        self.put(key, Arc::new(entry))
    }

    /// Removes the entry under `key`.
    fn remove(&self, key: CacheKey) -> StoreFuture<()>;

    /// Removes every entry.
    fn clear(&self) -> StoreFuture<()>;

    /// The store's own counts.
    fn stats(&self) -> StoreStats;
}

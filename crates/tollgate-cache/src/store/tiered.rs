//! Two stores as one: a fast one in front (memory), a shared or lasting one behind (Redis, files).

use std::sync::Arc;

use tollgate_core::LlmResponse;

use super::{CacheStore, Lookup, StoreFuture, StoreStats};
use crate::{CacheKey, CachedResponse};

/// Reads the front store first and the back store on a front miss, copying what the back store
/// had into the front; writes and removals go to both.
///
/// With a [`MemoryStore`](super::MemoryStore) in front of a `RedisStore` (feature `redis`),
/// an answer any process stored is served from memory after this process's first read of it.
/// Each process's memory copy lives until its own TTL, so a [`remove`](CacheStore::remove) or
/// [`clear`](CacheStore::clear) in one process reaches the other processes' memory only when
/// those copies expire.
#[derive(Debug, Clone)]
pub struct TieredStore<F, B> {
    front: Arc<F>,
    back: Arc<B>,
}

impl<F: CacheStore, B: CacheStore> TieredStore<F, B> {
    /// `front` before `back`.
    pub fn new(front: F, back: B) -> Self {
        Self {
            front: Arc::new(front),
            back: Arc::new(back),
        }
    }

    /// The front store.
    pub fn front(&self) -> &F {
        &self.front
    }

    /// The back store.
    pub fn back(&self) -> &B {
        &self.back
    }
}

impl<F: CacheStore, B: CacheStore> CacheStore for TieredStore<F, B> {
    fn get(&self, key: CacheKey) -> Lookup {
        let front = match self.front.get(key) {
            Lookup::Ready(Some(entry)) => return Lookup::Ready(Some(entry)),
            Lookup::Ready(None) => None,
            Lookup::Pending(lookup) => Some(lookup),
        };
        let (front_store, back) = (self.front.clone(), self.back.clone());
        Lookup::Pending(Box::pin(async move {
            if let Some(lookup) = front
                && let Some(entry) = lookup.await
            {
                return Some(entry);
            }
            let entry = match back.get(key) {
                Lookup::Ready(entry) => entry,
                Lookup::Pending(lookup) => lookup.await,
            }?;
            front_store.put(key, entry.clone()).await;
            Some(entry)
        }))
    }

    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()> {
        let front = self.front.put(key, entry.clone());
        let back = self.back.put(key, entry);
        Box::pin(async move {
            front.await;
            back.await;
        })
    }

    fn put_response(
        &self,
        key: CacheKey,
        response: &LlmResponse,
        stored_at_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<()> {
        let front = self.front.put_response(key, response, stored_at_ms, ttl_ms);
        let back = self.back.put_response(key, response, stored_at_ms, ttl_ms);
        Box::pin(async move {
            front.await;
            back.await;
        })
    }

    fn remove(&self, key: CacheKey) -> StoreFuture<()> {
        let (front, back) = (self.front.remove(key), self.back.remove(key));
        Box::pin(async move {
            front.await;
            back.await;
        })
    }

    fn clear(&self) -> StoreFuture<()> {
        let (front, back) = (self.front.clear(), self.back.clear());
        Box::pin(async move {
            front.await;
            back.await;
        })
    }

    /// The front store's counts (the back store's are its own: [`back`](Self::back)).
    fn stats(&self) -> StoreStats {
        self.front.stats()
    }
}

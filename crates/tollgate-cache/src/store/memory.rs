//! The memory store: moka, weighed in bytes, with a per-entry time to live.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, sync::Cache};
use tollgate_core::LlmResponse;

use super::{CacheStore, Lookup, StoreFuture, StoreStats, done};
use crate::{
    CacheKey, CachedResponse,
    packed::{Packed, Parts},
};

/// Entries in memory, bounded in bytes (moka's TinyLFU admission and LRU eviction).
///
/// Each answer is kept packed into one allocation of about its JSON's length, and read back on a
/// hit (a typed answer is dozens of small allocations, several times its length in all). An
/// entry weighs that allocation and its record ([`CachedResponse::weight`]) plus
/// [`MEMORY_ENTRY_OVERHEAD`], what moka spends on it besides, so the bound is on the memory the
/// store takes, however small the answers. Each entry leaves memory when its time to live is up,
/// even if it is never read again.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<CacheKey, Packed, foldhash::fast::RandomState>,
    counts: Arc<Counts>,
}

/// Bytes an entry costs beyond its [`CachedResponse::weight`]: moka's own per-entry
/// allocations (the key, the value's node and its record, its hash table's bucket, the LRU deque
/// and timer-wheel nodes). Measured with a counting allocator, moka takes 297 bytes per entry;
/// the rest is left for the allocator's rounding of those small allocations.
///
/// `tests/memory_weight.rs` checks it: an entry's weight with this overhead covers the heap the
/// store takes for it (within 5 %) and is within 1.5× of it, for short answers as OpenAI sends
/// them and for large ones (short ones take about 500 to 700 bytes, where typed they took 2 to
/// 6 KB), and a full 8 MiB store of the gateway bench's answer takes no more than 1.5× the bytes
/// it weighs. Resident memory can be more: the allocator's fragmentation around entries that live
/// long among requests that do not (`benches/README.md`, "Gateway").
pub const MEMORY_ENTRY_OVERHEAD: usize = 320;

#[derive(Default)]
struct Counts {
    evictions: AtomicU64,
    expirations: AtomicU64,
}

struct TimeToLive;

impl moka::Expiry<CacheKey, Packed> for TimeToLive {
    fn expire_after_create(&self, _: &CacheKey, entry: &Packed, _: Instant) -> Option<Duration> {
        Some(Duration::from_millis(
            entry.expires_at_ms.saturating_sub(entry.stored_at_ms),
        ))
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        let counts = Arc::new(Counts::default());
        let listener = counts.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, entry: &Packed| {
                u32::try_from(entry.weight().saturating_add(MEMORY_ENTRY_OVERHEAD))
                    .unwrap_or(u32::MAX)
            })
            .expire_after(TimeToLive)
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Size => {
                    listener.evictions.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    listener.expirations.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            // Keys are SHA-256 outputs already: a fast hasher is enough to spread them.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self { cache, counts }
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: CacheKey) -> Lookup {
        let Some(packed) = self.cache.get(&key) else {
            return Lookup::Ready(None);
        };
        match packed.unpack() {
            Some(answer) => Lookup::Ready(Some(Arc::new(CachedResponse::from_answer(
                answer,
                packed.stored_at_ms,
                packed.expires_at_ms,
            )))),
            None => {
                // Only this store writes these bytes, and always whole.
                tracing::error!(%key, "a packed cache entry did not read back; dropped");
                self.cache.invalidate(&key);
                Lookup::Ready(None)
            }
        }
    }

    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()> {
        let packed = Packed::new(entry.parts(), entry.stored_at_ms, entry.expires_at_ms);
        self.cache.insert(key, packed);
        done()
    }

    fn put_response(
        &self,
        key: CacheKey,
        response: &LlmResponse,
        stored_at_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<()> {
        let parts = Parts {
            model: &response.model,
            choices: &response.choices,
            usage: response.usage,
            extra: &response.extra,
        };
        let packed = Packed::new(parts, stored_at_ms, stored_at_ms.saturating_add(ttl_ms));
        self.cache.insert(key, packed);
        done()
    }

    fn remove(&self, key: CacheKey) -> StoreFuture<()> {
        self.cache.invalidate(&key);
        done()
    }

    fn clear(&self) -> StoreFuture<()> {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        done()
    }

    fn stats(&self) -> StoreStats {
        // Moka applies writes and evictions in batches; settle them so the counts are current.
        self.cache.run_pending_tasks();
        StoreStats {
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
            evictions: self.counts.evictions.load(Ordering::Relaxed),
            expirations: self.counts.expirations.load(Ordering::Relaxed),
        }
    }
}

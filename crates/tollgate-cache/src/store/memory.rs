//! The memory store: moka, weighed in bytes, with a per-entry time to live.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, sync::Cache};

use super::{CacheStore, Lookup, StoreFuture, StoreStats, done};
use crate::{CacheKey, CachedResponse};

/// Entries in memory, bounded in bytes (moka's TinyLFU admission and LRU eviction).
///
/// An entry weighs its answer's text and record plus [`MEMORY_ENTRY_OVERHEAD`], what moka and the
/// allocator spend on it besides, so the bound is on the memory the store takes, however small
/// the answers. Each entry leaves memory when its time to live is up, even if it is never read
/// again.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<CacheKey, Arc<CachedResponse>, foldhash::fast::RandomState>,
    counts: Arc<Counts>,
}

/// Bytes an entry costs beyond its [`CachedResponse::weight`]: the key, moka's node, deque and
/// timer entries, the `Arc`, and the allocator's rounding. Measured: 100,000 short answers in a
/// 64 MiB store took 584 bytes of resident memory each, against a weight of 127.
/// `tests/memory_weight.rs` checks the weight against the heap an entry takes, counted by the
/// allocator: above it for short answers as OpenAI sends them, within 5 % for large ones.
/// Resident memory can be more:
/// in a busy server, the allocator's fragmentation around entries that live long among requests
/// that do not (`benches/README.md`, "Gateway").
pub const MEMORY_ENTRY_OVERHEAD: usize = 456;

#[derive(Default)]
struct Counts {
    evictions: AtomicU64,
    expirations: AtomicU64,
}

struct TimeToLive;

impl moka::Expiry<CacheKey, Arc<CachedResponse>> for TimeToLive {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Arc<CachedResponse>,
        _: Instant,
    ) -> Option<Duration> {
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
            .weigher(|_, entry: &Arc<CachedResponse>| {
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
        Lookup::Ready(self.cache.get(&key))
    }

    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()> {
        self.cache.insert(key, entry);
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

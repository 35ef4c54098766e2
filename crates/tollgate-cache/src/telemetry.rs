//! What the cache records through the `metrics` facade (feature `metrics`): handles made when
//! the layer is built, so a call without a recorder pays a branch and nothing more. After the
//! first store and every 64th, the store's size and evictions, as it counts them.

use tollgate_core::telemetry::{
    CACHE_BYTES, CACHE_COALESCED, CACHE_ENTRIES, CACHE_EVICTIONS, CACHE_HITS, CACHE_MISSES,
    CACHE_STORES, Counter, Gauge,
};

use crate::store::StoreStats;

/// The cache's counters.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) stores: Counter,
    evictions: Counter,
    bytes: Gauge,
    entries: Gauge,
}

impl Telemetry {
    /// Registers the counters with the recorder installed now.
    pub(crate) fn register() -> Self {
        Self {
            hits: Counter::new(CACHE_HITS, &[]),
            misses: Counter::new(CACHE_MISSES, &[]),
            coalesced: Counter::new(CACHE_COALESCED, &[]),
            stores: Counter::new(CACHE_STORES, &[]),
            evictions: Counter::new(CACHE_EVICTIONS, &[]),
            bytes: Gauge::new(CACHE_BYTES, &[]),
            entries: Gauge::new(CACHE_ENTRIES, &[]),
        }
    }

    /// What the store holds and has evicted, as it says after a store.
    pub(crate) fn store_holds(&self, stats: StoreStats) {
        self.evictions.absolute(stats.evictions);
        self.bytes.set(stats.bytes as f64);
        self.entries.set(stats.entries as f64);
    }
}

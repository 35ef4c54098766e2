//! What the cache records through the `metrics` facade (feature `metrics`): handles made when
//! the layer is built, so a call without a recorder pays a branch and nothing more.

use tollgate_core::telemetry::{CACHE_COALESCED, CACHE_HITS, CACHE_MISSES, CACHE_STORES, Counter};

/// The cache's counters.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) stores: Counter,
}

impl Telemetry {
    /// Registers the counters with the recorder installed now.
    pub(crate) fn register() -> Self {
        Self {
            hits: Counter::new(CACHE_HITS, &[]),
            misses: Counter::new(CACHE_MISSES, &[]),
            coalesced: Counter::new(CACHE_COALESCED, &[]),
            stores: Counter::new(CACHE_STORES, &[]),
        }
    }
}

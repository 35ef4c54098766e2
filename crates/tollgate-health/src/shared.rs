//! What every clone of a health layer, its services and their futures share.

use tollgate_core::key::Keyed;

use crate::stats::{ComponentStats, HealthStats};

/// The statistics, and which component a call is recorded as.
pub(crate) struct Shared {
    pub(crate) stats: HealthStats,
    pub(crate) keyed: Keyed<ComponentStats>,
}

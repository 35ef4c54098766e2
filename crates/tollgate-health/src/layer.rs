//! `HealthLayer`: records every call's outcome and latency for its component.

use std::{fmt, sync::Arc};

use tollgate_core::{
    Key, KeyExtractor,
    key::{Keyed, extractor},
};
use tower_layer::Layer;

use crate::{service::Health, shared::Shared, stats::HealthStats};

/// Records each call's outcome and latency in [`HealthStats`]: see the [crate docs](crate).
#[derive(Clone)]
pub struct HealthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl HealthLayer {
    /// Records every call as one component, `*`.
    pub fn new(stats: HealthStats) -> Self {
        Self::builder(stats).build()
    }

    /// A builder, to record per key (`ByProvider`, `ByModel`, ...).
    pub fn builder(stats: HealthStats) -> HealthLayerBuilder {
        HealthLayerBuilder { stats, key: None }
    }

    /// The statistics, for reports and [`StatsCheck`](crate::StatsCheck)s.
    pub fn stats(&self) -> &HealthStats {
        &self.shared.stats
    }
}

impl fmt::Debug for HealthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthLayer")
            .field("stats", &self.shared.stats)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Health::new(inner, self.clone())
    }
}

impl<S> Health<S> {
    /// Wraps `inner`, recording its calls in `layer`'s statistics.
    pub fn new(inner: S, layer: HealthLayer) -> Self {
        Self::from_shared(inner, layer.shared)
    }
}

/// Builds a [`HealthLayer`].
#[must_use]
pub struct HealthLayerBuilder {
    stats: HealthStats,
    key: Option<Box<dyn KeyExtractor>>,
}

impl std::fmt::Debug for HealthLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthLayerBuilder")
            .field("stats", &self.stats)
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl HealthLayerBuilder {
    /// One component per key; default: every call is component `*`.
    pub fn key<E: KeyExtractor>(mut self, key: E) -> Self {
        self.key = extractor(key);
        self
    }

    /// The layer.
    pub fn build(self) -> HealthLayer {
        // `*` always has its record: it is created here even past the component cap.
        let keyed = Keyed::new(self.key, || self.stats.pinned(&Key::GLOBAL));
        HealthLayer {
            shared: Arc::new(Shared {
                stats: self.stats,
                keyed,
            }),
        }
    }
}

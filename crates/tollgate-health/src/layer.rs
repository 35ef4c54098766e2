//! `HealthLayer`: records every call's outcome and latency for its component.

use std::{fmt, sync::Arc};

use tollgate_core::{Global, Key, KeyExtractor};
use tower_layer::Layer;

use crate::{
    service::Health,
    stats::{ComponentStats, HealthStats},
};

/// Records each call's outcome and latency in [`HealthStats`]: see the [crate docs](crate).
#[derive(Clone)]
pub struct HealthLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) stats: HealthStats,
    pub(crate) keying: Keying,
}

pub(crate) enum Keying {
    One(Arc<ComponentStats>),
    By(Box<dyn KeyExtractor>),
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
        self.key = (std::any::TypeId::of::<E>() != std::any::TypeId::of::<Global>())
            .then(|| Box::new(key) as Box<dyn KeyExtractor>);
        self
    }

    /// The layer.
    pub fn build(self) -> HealthLayer {
        let keying = match self.key {
            // `*` always has its record: it is created here even past the component cap.
            None => Keying::One(self.stats.pinned(&Key::GLOBAL)),
            Some(key) => Keying::By(key),
        };
        HealthLayer {
            shared: Arc::new(Shared {
                stats: self.stats,
                keying,
            }),
        }
    }
}

//! `CircuitBreakerLayer`: which breaker a request goes through, and how outcomes are classified.

use std::{fmt, sync::Arc};

use tollgate_core::{
    Key, KeyExtractor,
    key::{Keyed, extractor},
};
use tower_layer::Layer;

use crate::{
    classify::{Classifier, DefaultClassifier},
    registry::CircuitBreakers,
    service::CircuitBreaker,
    shared::Shared,
};

/// Guards an inner service with [`CircuitBreakers`]: see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    pub(crate) shared: Arc<Shared>,
}

impl CircuitBreakerLayer {
    /// One breaker for every call through the layer, with the [`DefaultClassifier`] (429s counted
    /// as failures when the configuration says so).
    pub fn new(breakers: CircuitBreakers) -> Self {
        Self::builder(breakers).build()
    }

    /// A builder: a breaker per key, a classifier.
    pub fn builder(breakers: CircuitBreakers) -> CircuitBreakerLayerBuilder {
        let classifier = DefaultClassifier::rate_limited_is_failure(
            breakers.inner.config.rate_limited_is_failure,
        );
        CircuitBreakerLayerBuilder {
            breakers,
            key: None,
            classifier: Box::new(classifier),
        }
    }

    /// The breakers, to read states and metrics or to force them.
    pub fn breakers(&self) -> &CircuitBreakers {
        &self.shared.breakers
    }
}

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breakers", &self.shared.breakers)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.clone())
    }
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in `layer`'s breakers.
    pub fn new(inner: S, layer: CircuitBreakerLayer) -> Self {
        Self::from_shared(inner, layer.shared)
    }
}

/// Builds a [`CircuitBreakerLayer`].
#[must_use]
pub struct CircuitBreakerLayerBuilder {
    breakers: CircuitBreakers,
    key: Option<Box<dyn KeyExtractor>>,
    classifier: Box<dyn Classifier>,
}

impl std::fmt::Debug for CircuitBreakerLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayerBuilder")
            .field("breakers", &self.breakers)
            .field("keyed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayerBuilder {
    /// A breaker per key (`ByProvider`, `ByModel`, `(ByProvider, ByModel)`, a closure);
    /// default: one breaker for every call.
    pub fn key<E: KeyExtractor>(mut self, key: E) -> Self {
        self.key = extractor(key);
        self
    }

    /// Decides which outcomes are failures (default: [`DefaultClassifier`]).
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = Box::new(classifier);
        self
    }

    /// The layer.
    pub fn build(self) -> CircuitBreakerLayer {
        let keyed = Keyed::new(self.key, || self.breakers.pinned(&Key::GLOBAL));
        CircuitBreakerLayer {
            shared: Arc::new(Shared {
                breakers: self.breakers,
                keyed,
                classifier: self.classifier,
            }),
        }
    }
}

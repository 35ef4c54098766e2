//! What every clone of a breaker layer, its services and their futures share.

use tollgate_core::key::Keyed;

use crate::{breaker::Breaker, classify::Classifier, registry::CircuitBreakers};

/// The breakers, which one a call goes through, and how its outcome is judged.
pub(crate) struct Shared {
    pub(crate) breakers: CircuitBreakers,
    pub(crate) keyed: Keyed<Breaker>,
    pub(crate) classifier: Box<dyn Classifier>,
}

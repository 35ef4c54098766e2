//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::sync::Arc;

use tollgate_core::{Key, LlmError, future::Observer, key::Found};

use crate::{
    breaker::{Admission, Breaker},
    shared::Shared,
};

/// The future [`CircuitBreaker`](crate::CircuitBreaker) returns.
pub type ResponseFuture<F> = tollgate_core::future::Observed<F, Guard>;

/// A call let through a breaker: counts its outcome once, or gives its probe slot back if the
/// call is dropped before it ends.
pub struct Guard {
    shared: Arc<Shared>,
    found: Found<Breaker>,
    key: Key,
    admission: Admission,
    started: u64,
    done: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("key", &self.key)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub(crate) fn new(
        shared: Arc<Shared>,
        found: Found<Breaker>,
        key: Key,
        admission: Admission,
        started: u64,
    ) -> Self {
        Self {
            shared,
            found,
            key,
            admission,
            started,
            done: false,
        }
    }

    fn breaker(&self) -> &Breaker {
        self.shared.keyed.get(&self.found)
    }
}

impl Observer for Guard {
    fn observe(mut self, outcome: Result<(), &LlmError>) {
        self.done = true;
        let breakers = &self.shared.breakers;
        let verdict = self.shared.classifier.classify(outcome);
        let now = breakers.now();
        let elapsed = now.saturating_sub(self.started);
        let change = self.breaker().record(self.admission, verdict, elapsed, now);
        if let Some(change) = change {
            breakers.announce(&self.key, change);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.breaker().release(self.admission);
        }
    }
}

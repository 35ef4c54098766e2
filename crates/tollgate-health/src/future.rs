//! The response future of [`Health`](crate::Health).

use std::sync::Arc;

use tollgate_core::{LlmError, future::Observer, key::Found};

use crate::{shared::Shared, stats::ComponentStats};

/// The future [`Health`](crate::Health) returns.
pub type ResponseFuture<F> = tollgate_core::future::Observed<F, Record>;

/// Where and since when a call is being timed.
pub struct Record {
    pub(crate) shared: Arc<Shared>,
    pub(crate) found: Found<ComponentStats>,
    pub(crate) started: u64,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Observer for Record {
    fn observe(self, outcome: Result<(), &LlmError>) {
        let error = outcome.err();
        let stats = &self.shared.stats;
        let component = self.shared.keyed.get(&self.found);
        let now = stats.now();
        component.record(
            error.map(LlmError::kind),
            now.saturating_sub(self.started),
            now,
        );
    }
}

//! The router as a `Service<LlmRequest>`.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::{LlmError, LlmRequest, LlmResponse};
use tower_service::Service;

use crate::{
    future::RouteFuture,
    state::DeploymentStats,
    table::{RouterMetrics, Table},
};

/// Routes each call to a deployment of its group (its request's role, or the default group),
/// moving to another when one fails; see the [crate docs](crate). Built with
/// [`Router::builder`]; cheap to clone, and every clone shares the deployments' state.
pub struct Router<S> {
    pub(crate) table: Arc<Table<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.groups().collect::<Vec<_>>())
            .field("deployments", &self.table.states.len())
            .finish_non_exhaustive()
    }
}

impl<S> Router<S> {
    /// Each deployment as it stands now: calls in flight, cooldown, quota left, counts.
    pub fn stats(&self) -> Vec<DeploymentStats> {
        let now = self.table.now();
        self.table
            .states
            .iter()
            .map(|state| state.stats(now))
            .collect()
    }

    /// What the router has done since it was built.
    pub fn metrics(&self) -> RouterMetrics {
        self.table.counters.snapshot()
    }

    /// The groups' names.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.table.groups.iter().map(|group| &*group.name)
    }

    /// The names of the deployments in group `name`, in the group's order.
    pub fn members(&self, name: &str) -> Option<Vec<&str>> {
        let group = &self.table.groups[*self.table.by_name.get(name)?];
        Some(
            group
                .members
                .iter()
                .map(|&i| &*self.table.states[i].name)
                .collect(),
        )
    }
}

impl<S> Service<LlmRequest> for Router<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone,
    S::Error: Into<LlmError>,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = RouteFuture<S>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        // Each attempt readies its own clone of a deployment's service, so the router always is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> RouteFuture<S> {
        RouteFuture::new(self.table.clone(), request)
    }
}

//! Active probes (`probe: { every }` on a group): a deployment cooling down after failures, an
//! open breaker or a refused key is sent a tiny call every `every`, and comes back as soon as
//! one is answered, instead of on the first real call after its cooldown. A probe that fails
//! keeps it out until the next has had its time to answer.
//!
//! The probes run as one future ([`Probes`], from [`Router::probes`]) that the application
//! spawns; it holds the router's table weakly and ends once every clone of the router (and every
//! [`HealthBoard`](crate::HealthBoard) taken from it) is gone.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, MissedTickBehavior};
use tollgate_core::{
    ErrorKind, LlmError, LlmRequest, LlmResponse, Message, Operation, RateLimitSnapshot,
    telemetry::{Counter, ROUTER_PROBES},
};
use tower::ServiceExt;
use tower_service::Service;

use crate::{
    service::Router,
    state::CooldownReason,
    table::{Table, Target},
};

/// The probes of a router's groups that set [`probe`](crate::GroupConfig::probe), as one
/// future to spawn: it runs until the router (every clone of it) is dropped.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::SimulatedProvider;
/// use tollgate_router::{Deployment, Group, ProbeConfig, Router};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let router = Router::builder()
///     .deployment(Deployment::new("a", SimulatedProvider::new()))
///     .deployment(Deployment::new("b", SimulatedProvider::new()))
///     .group(Group::new("default", ["a", "b"]).probe(ProbeConfig { every: Duration::from_secs(10) }))
///     .build()
///     .unwrap();
/// let probes = tokio::spawn(router.probes().expect("a group probes"));
/// drop(router);
/// probes.await.unwrap(); // ends once the router is gone
/// # }
/// ```
#[must_use = "probes do nothing unless spawned"]
pub struct Probes {
    run: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

impl Future for Probes {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.run.as_mut().poll(cx)
    }
}

impl<S> Router<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<LlmError>,
{
    /// The probes of the groups that set [`probe`](crate::GroupConfig::probe), to spawn on the
    /// application's runtime; `None` when no group does. A deployment in several such groups is
    /// probed at the shortest of their intervals. Spawn it once: each future it returns probes
    /// on its own.
    pub fn probes(&self) -> Option<Probes> {
        let table = &*self.table;
        let mut plan: Vec<Option<(Duration, Arc<str>)>> = vec![None; table.states.len()];
        for group in &table.groups {
            let Some(probe) = group.config.probe else {
                continue;
            };
            for &index in &group.members {
                let entry = &mut plan[index];
                if entry.as_ref().is_none_or(|(every, _)| probe.every < *every) {
                    *entry = Some((probe.every, group.name.clone()));
                }
            }
        }
        let watches: Vec<_> = plan
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let (every, group) = entry?;
                Some(watch(Arc::downgrade(&self.table), index, every, group))
            })
            .collect();
        if watches.is_empty() {
            return None;
        }
        let run = async move {
            futures_util::future::join_all(watches).await;
        };
        Some(Probes { run: Box::pin(run) })
    }
}

/// Probes deployment `index` every `every` while it wants one, until the router is gone.
async fn watch<S>(table: Weak<Table<S>>, index: usize, every: Duration, group: Arc<str>)
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<LlmError>,
{
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    // A probe that took long delays the next rather than sending two at once.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let call = {
            let Some(table) = table.upgrade() else {
                return;
            };
            if !table.states[index].wants_probe(table.now()) {
                continue;
            }
            let target = &table.targets[index];
            let operation = table.states[index].operation();
            target
                .service
                .clone()
                .oneshot(probe_request(target, &group, operation))
        };
        // A probe may take as long as the interval: one that has not answered by then failed.
        let result = match tokio::time::timeout(every, call).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(LlmError::new(
                ErrorKind::Timeout,
                format!(
                    "the probe had no answer within {}",
                    tollgate_core::duration::format(every)
                ),
            )),
        };
        let Some(table) = table.upgrade() else {
            return;
        };
        settle(&table, index, every, result);
    }
}

/// The request a probe sends to `target`: the smallest call its model answers, one user word and
/// at most one token back (for a deployment whose last call asked for embeddings, one word to
/// embed; for one whose last call was a text completion, a one-word prompt: a server of base
/// models may serve no chat), in the name of the probing `group`, so its cost is reported there, with no retries
/// below the router.
pub(crate) fn probe_request<S>(
    target: &Target<S>,
    group: &Arc<str>,
    operation: Operation,
) -> LlmRequest {
    let model = target.model.clone().unwrap_or_default();
    let mut request = match operation {
        Operation::Embeddings => {
            let mut request = LlmRequest::new(model, Vec::new());
            request.meta.operation = Operation::Embeddings;
            request.params.set_extra("input", "ping".into());
            request
        }
        operation => {
            let mut request =
                LlmRequest::new(model, vec![Message::user("ping")]).with_max_tokens(1);
            request.meta.operation = operation;
            request
        }
    };
    request.provider = target.provider.clone();
    request.meta.role = Some(group.clone());
    request.meta.request_id = Some(Arc::from("tollgate-probe"));
    // One attempt: the next probe is the retry.
    request.meta.retry_cap = Some(0);
    request
}

/// What a probe's outcome means for deployment `index`.
fn settle<S>(
    table: &Table<S>,
    index: usize,
    every: Duration,
    result: Result<LlmResponse, LlmError>,
) {
    let state = &table.states[index];
    let now = table.now();
    let cooldown = &table.config.cooldown;
    let outcome = match result {
        Ok(answer) => {
            state.probed(false);
            state.recover(now);
            // It answered: a trial, if any, is over even when its cooldown ran out meanwhile.
            state.answered();
            if let Some(snapshot) = answer.extensions.get::<RateLimitSnapshot>() {
                state.observe_limits(now, snapshot, cooldown.duration);
            }
            "answered"
        }
        Err(error) => {
            if let Some(snapshot) = error.extensions().get::<RateLimitSnapshot>() {
                state.observe_limits(now, snapshot, cooldown.duration);
            }
            match error.kind() {
                // The provider says when to come back: probes wait for that.
                ErrorKind::RateLimited => {
                    state.probed(true);
                    match error.retry_after() {
                        Some(after) => state.cool(now, after, CooldownReason::RetryAfter),
                        None => state.cool(now, cooldown.duration, CooldownReason::RateLimited),
                    };
                    "failed"
                }
                // Slower than `every` is not down: the cooldown runs its course, no longer.
                ErrorKind::Timeout => {
                    state.probed(true);
                    "failed"
                }
                ErrorKind::Overloaded
                | ErrorKind::Server
                | ErrorKind::Connect
                | ErrorKind::Unavailable
                | ErrorKind::Auth
                | ErrorKind::CircuitOpen => {
                    state.probed(true);
                    // Out until the next probe has had its time to answer.
                    let hint = error.retry_after().unwrap_or_default();
                    state.extend(now, (2 * every).max(hint));
                    tracing::info!(
                        deployment = &*state.name,
                        kind = error.kind().name(),
                        "probe failed: the deployment stays out"
                    );
                    "failed"
                }
                // The deployment refused the probe itself (a model that takes no chat, say):
                // that says nothing of its health, and its cooldown runs its course.
                _ => {
                    state.probed(false);
                    tracing::warn!(
                        deployment = &*state.name,
                        error = %error,
                        "a probe was refused as a bad request; the deployment comes back when its cooldown ends"
                    );
                    "refused"
                }
            }
        }
    };
    if cfg!(feature = "metrics") {
        let labels = [
            ("deployment", state.name.to_string()),
            ("outcome", outcome.to_owned()),
        ];
        Counter::new(ROUTER_PROBES, &labels).increment(1);
    }
}

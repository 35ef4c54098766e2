//! The wait line: a caller the limiter refuses waits, first come first served per key, for
//! room or for its deadline.

use std::{sync::Arc, time::Duration};

use super::RateLimiter;
use crate::{
    definition::Scope,
    denial::{Denial, DenialReason},
    quota::Amounts,
    store::{Mode, Reason, Refusal, Store, Target},
};

impl RateLimiter {
    /// Admits a call like [`check_and_consume`](Self::check_and_consume), but when it must wait
    /// for room, waits up to `max_wait` in a first-come-first-served line for the refusing key, and
    /// returns how long it waited.
    ///
    /// Refuses at once when waiting cannot help: the call can never fit, or the wait it needs is
    /// longer than `max_wait`. Dropping the future leaves the line at once, and the next caller
    /// moves up. Waiting sleeps on tokio's timer, so the limiter's clock must keep real time (the
    /// default) or be a [`TokioClock`](tollgate_core::clock::TokioClock) on paused time in tests.
    ///
    /// # Errors
    ///
    /// A [`Denial`]: at once as above, or when the deadline comes first (then
    /// [`Denial::waited`] says how long it waited).
    ///
    /// # Panics
    ///
    /// If a [`Scope`] comes from another limiter with fewer scopes.
    pub async fn acquire(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
        max_wait: Duration,
    ) -> Result<Duration, Denial> {
        let (targets, n) = self.resolve(keys)?;
        let targets = &targets[..n];
        let refusal = match self.first_try(targets, &amounts) {
            Ok(()) => return Ok(Duration::ZERO),
            Err(refusal) => refusal,
        };
        if !worth_waiting(&refusal, max_wait) {
            return Err(self.denial(targets, refusal, &amounts, Duration::ZERO));
        }
        self.wait_in_line(targets, &amounts, refusal.target, max_wait)
            .await
    }

    /// The waiting half of [`acquire`](Self::acquire), for a caller that already tried once and got
    /// `denial`: waits in line if that can help, or returns `denial` as it is.
    pub(crate) async fn wait_after(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
        denial: Denial,
        max_wait: Duration,
    ) -> Result<Duration, Denial> {
        let worth = match denial.0.reason {
            DenialReason::Exhausted => denial.0.retry_after.is_some_and(|after| after <= max_wait),
            DenialReason::Queued => !max_wait.is_zero(),
            _ => false,
        };
        let line = keys.iter().position(|(scope, key)| {
            self.definition().scope_name(*scope) == &*denial.0.scope
                && key.as_ref() == &*denial.0.key
        });
        let (Some(line), true) = (line, worth) else {
            return Err(denial);
        };
        let (targets, n) = self.resolve(keys)?;
        self.wait_in_line(&targets[..n], &amounts, line, max_wait)
            .await
    }

    fn first_try(&self, targets: &[Target<'_>], amounts: &Amounts) -> Result<(), Refusal> {
        let now = self.now();
        match targets {
            [] => Ok(()),
            [one] => {
                self.inner
                    .store
                    .decide_one(one, amounts, now, Mode::Consume { queued: false })
            }
            many => {
                self.inner
                    .store
                    .decide_many(many, amounts, now, Mode::Consume { queued: false })
            }
        }
    }

    async fn wait_in_line(
        &self,
        targets: &[Target<'_>],
        amounts: &Amounts,
        line: usize,
        max_wait: Duration,
    ) -> Result<Duration, Denial> {
        let store = &self.inner.store;
        let started = tokio::time::Instant::now();
        let deadline = started + max_wait;
        let place = Place::join(store, targets[line]);
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, place.turn.acquire()).await else {
            // The line did not move far enough in time: say how long the quota alone would take.
            store.record(&targets[line], |m| m.timed_out += 1);
            let mut denial = match self.decide_targets(targets, amounts, Mode::Check) {
                Err(denial) => denial,
                Ok(()) => self.denial(
                    targets,
                    Refusal {
                        target: line,
                        reason: Reason::Queued,
                    },
                    amounts,
                    Duration::ZERO,
                ),
            };
            denial.0.waited = started.elapsed();
            return Err(denial);
        };
        loop {
            let now = self.now();
            let decided = match targets {
                [one] => store.decide_one(one, amounts, now, Mode::Consume { queued: true }),
                many => store.decide_many(many, amounts, now, Mode::Consume { queued: true }),
            };
            let refusal = match decided {
                Ok(()) => {
                    store.record(&targets[line], |m| m.waited += 1);
                    return Ok(started.elapsed());
                }
                Err(refusal) => refusal,
            };
            let wake = match refusal.reason {
                Reason::Wait { after, .. } => {
                    tokio::time::Instant::now() + Duration::from_nanos(after)
                }
                Reason::Never { .. } | Reason::Capacity | Reason::Queued => {
                    deadline + Duration::from_nanos(1)
                }
            };
            if wake > deadline {
                store.record(&targets[line], |m| m.timed_out += 1);
                return Err(self.denial(targets, refusal, amounts, started.elapsed()));
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

fn worth_waiting(refusal: &Refusal, max_wait: Duration) -> bool {
    match refusal.reason {
        Reason::Wait { after, .. } => Duration::from_nanos(after) <= max_wait,
        Reason::Queued => !max_wait.is_zero(),
        Reason::Never { .. } | Reason::Capacity => false,
    }
}

/// A caller's place in a key's line; leaving (even by being dropped) lets the next one move up.
struct Place<'a> {
    store: &'a Store,
    target: Target<'a>,
    turn: Arc<tokio::sync::Semaphore>,
}

impl<'a> Place<'a> {
    fn join(store: &'a Store, target: Target<'a>) -> Self {
        let turn = store.join_queue(&target);
        Self {
            store,
            target,
            turn,
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.store.leave_queue(&self.target);
    }
}

//! `RateLimiter`: the quota engine, usable with or without tower.

use std::{fmt, sync::Arc, time::Duration};

use tollgate_core::{
    ConfigError,
    clock::{Clock, QuantaClock},
};

pub use crate::definition::Scope;
use crate::{
    definition::Definition,
    denial::{Denial, DenialReason},
    gcra,
    metrics::Metrics,
    quota::{Amounts, MAX_TARGETS, Quota, Tier},
    store::{Mode, Reason, Refusal, Store, Target},
};

/// One tier's state for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStatus {
    /// The tier.
    pub tier: Tier,
    /// Units the tier would admit at once, now.
    pub remaining: u64,
    /// How long until the tier is full again (zero when it is).
    pub resets_in: Duration,
}

/// A key's state in every tier of its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Per tier, in the quota's order.
    pub tiers: Vec<TierStatus>,
}

/// Multi-tier GCRA quotas per (scope, key), shared by every clone.
///
/// Each call names one key per scope it is limited by (a user, its organization, a shared pool, a
/// provider) and how much it draws ([`Amounts`]: requests, tokens, cost). Every tier of every key
/// must admit it, or nothing is consumed anywhere.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::clock::ManualClock;
/// use tollgate_ratelimit::{Amounts, DenialReason, Quota, RateLimiter, Tier};
///
/// let limiter = RateLimiter::builder()
///     .scope("user", Quota::new([Tier::requests(10, Duration::from_secs(60))]).unwrap())
///     .scope("org", Quota::new([Tier::requests(15, Duration::from_secs(60))]).unwrap())
///     .clock(ManualClock::new()) // time stands still, so the figures below are exact
///     .build()
///     .unwrap();
/// let (user, org) = (limiter.scope("user").unwrap(), limiter.scope("org").unwrap());
///
/// // Two users of one organization: each is under its own limit of 10...
/// for _ in 0..10 {
///     limiter.check_and_consume(&[(user, "alice"), (org, "acme")], Amounts::requests(1)).unwrap();
/// }
/// for _ in 0..5 {
///     limiter.check_and_consume(&[(user, "bob"), (org, "acme")], Amounts::requests(1)).unwrap();
/// }
/// // ...but the organization's pool of 15 is spent, and the denial says so.
/// let denial = limiter
///     .check_and_consume(&[(user, "bob"), (org, "acme")], Amounts::requests(1))
///     .unwrap_err();
/// assert_eq!(denial.reason(), DenialReason::Exhausted);
/// assert_eq!((denial.scope(), denial.key()), ("org", "acme"));
/// assert_eq!(denial.retry_after(), Some(Duration::from_secs(4)));
/// // Nothing was taken from bob's own limit.
/// assert_eq!(limiter.status(user, "bob").tiers[0].remaining, 5);
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("scopes", &self.scope_names().collect::<Vec<_>>())
            .field("live_keys", &self.live_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter with one scope (`default`) under `quota`.
    pub fn new(quota: Quota) -> Self {
        Self::builder()
            .scope("default", quota)
            .build()
            .expect("one scope with a valid quota always builds")
    }

    /// A builder for scopes, per-key overrides, the key cap and the clock.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    /// The handle of the scope named `name`.
    pub fn scope(&self, name: &str) -> Option<Scope> {
        self.definition().scope(name)
    }

    /// The names of the scopes, in the order they were added.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.definition().scope_names()
    }

    /// The scopes and quotas this limiter keeps counts for.
    pub(crate) fn definition(&self) -> &Definition {
        self.inner.store.definition()
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    fn resolve<'a>(
        &self,
        keys: &'a [(Scope, impl AsRef<str>)],
    ) -> Result<([Target<'a>; MAX_TARGETS], usize), Denial> {
        let mut targets = [Target::default(); MAX_TARGETS];
        if keys.len() > MAX_TARGETS {
            let (scope, key) = &keys[0];
            let denial =
                self.definition()
                    .denial(*scope, key.as_ref(), DenialReason::TooManyKeys, None);
            return Err(denial);
        }
        for (slot, (scope, key)) in targets.iter_mut().zip(keys) {
            *slot = self.target(*scope, key.as_ref());
        }
        Ok((targets, keys.len()))
    }

    fn decide(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        mode: Mode,
    ) -> Result<(), Denial> {
        if let [(scope, key)] = keys {
            // One key: skip the bookkeeping of the many-key path.
            let target = self.target(*scope, key.as_ref());
            return self
                .inner
                .store
                .decide_one(&target, amounts, self.now(), mode)
                .map_err(|refusal| self.denial(&[target], refusal, amounts, Duration::ZERO));
        }
        let (targets, n) = self.resolve(keys)?;
        self.decide_targets(&targets[..n], amounts, mode)
    }

    fn decide_targets(
        &self,
        targets: &[Target<'_>],
        amounts: &Amounts,
        mode: Mode,
    ) -> Result<(), Denial> {
        let now = self.now();
        let result = match targets {
            [] => Ok(()),
            [one] => self.inner.store.decide_one(one, amounts, now, mode),
            many => self.inner.store.decide_many(many, amounts, now, mode),
        };
        result.map_err(|refusal| self.denial(targets, refusal, amounts, Duration::ZERO))
    }

    fn target<'a>(&self, scope: Scope, key: &'a str) -> Target<'a> {
        assert!(
            self.definition().owns(scope),
            "scope {} does not belong to this RateLimiter (it has {} scopes)",
            scope.0,
            self.definition().len()
        );
        self.inner.store.target(scope.0, key)
    }

    /// Whether a call of `amounts` would be admitted now, consuming nothing.
    ///
    /// # Errors
    ///
    /// The [`Denial`] a [`check_and_consume`](Self::check_and_consume) would return now.
    ///
    /// # Panics
    ///
    /// If a [`Scope`] comes from another limiter with fewer scopes.
    pub fn check(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) -> Result<(), Denial> {
        self.decide(keys, &amounts, Mode::Check)
    }

    /// Admits a call of `amounts` against every key in `keys` and consumes it from every tier, or
    /// refuses it and consumes nothing anywhere.
    ///
    /// Refuses keys that have callers waiting in [`acquire`](Self::acquire), so nobody passes them.
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming the scope, key and tier that refused: the one with the longest wait
    /// when several would, or the first that can never admit the call.
    ///
    /// # Panics
    ///
    /// If a [`Scope`] comes from another limiter with fewer scopes.
    pub fn check_and_consume(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
    ) -> Result<(), Denial> {
        self.decide(keys, &amounts, Mode::Consume { queued: false })
    }

    /// Takes `amounts` from every key without asking, even into debt (later calls then wait longer).
    ///
    /// For usage learned after the fact, e.g. a response that used more tokens than reserved.
    /// Silently skipped for a new key when the limiter is at its key cap.
    pub fn consume(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) {
        self.adjust(keys, &amounts, false);
    }

    /// Gives `amounts` back to every key (never beyond a full tier), e.g. a reservation that went unused.
    pub fn refund(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) {
        self.adjust(keys, &amounts, true);
    }

    /// Settles a call that reserved `reserved` and actually used `actual`: charges what it used
    /// beyond the reservation and refunds what it did not use, per dimension.
    pub fn reconcile(&self, keys: &[(Scope, impl AsRef<str>)], reserved: Amounts, actual: Amounts) {
        self.adjust(keys, &actual.saturating_sub(&reserved), false);
        self.adjust(keys, &reserved.saturating_sub(&actual), true);
    }

    fn adjust(&self, keys: &[(Scope, impl AsRef<str>)], amounts: &Amounts, refund: bool) {
        if amounts.is_zero() {
            return;
        }
        let Ok((targets, n)) = self.resolve(keys) else {
            return;
        };
        self.inner
            .store
            .adjust(&targets[..n], amounts, refund, self.now());
    }

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

    fn denial(
        &self,
        targets: &[Target<'_>],
        refusal: Refusal,
        amounts: &Amounts,
        waited: Duration,
    ) -> Denial {
        let target = &targets[refusal.target];
        let (reason, tier, retry_after) = match refusal.reason {
            Reason::Wait { tier, after } => (
                DenialReason::Exhausted,
                Some(tier),
                Some(Duration::from_nanos(after)),
            ),
            Reason::Never { tier } => (DenialReason::TooLarge, Some(tier), None),
            Reason::Queued => (DenialReason::Queued, None, None),
            Reason::Capacity => (DenialReason::Capacity, None, None),
        };
        let mut denial = self.definition().make_denial(
            Scope(target.scope),
            target.key,
            reason,
            tier,
            amounts,
            retry_after,
        );
        denial.0.waited = waited;
        denial
    }

    /// The state of every tier of `key`'s quota in `scope` (full tiers for a key never seen).
    ///
    /// # Panics
    ///
    /// If `scope` comes from another limiter with fewer scopes.
    pub fn status(&self, scope: Scope, key: &str) -> Status {
        let target = self.target(scope, key);
        let (quota, tats) = self.inner.store.state(&target);
        let now = self.now();
        let tiers = self.definition().quotas.all[quota as usize].tiers();
        Status {
            tiers: tiers
                .iter()
                .zip(tats)
                .map(|(tier, tat)| {
                    let (remaining, resets_in) = gcra::remaining(tier, tat, now);
                    TierStatus {
                        tier: *tier,
                        remaining,
                        resets_in: Duration::from_nanos(resets_in),
                    }
                })
                .collect(),
        }
    }

    /// Forgets `key`'s state in `scope`: every tier is full again. Returns whether it was tracked.
    pub fn reset(&self, scope: Scope, key: &str) -> bool {
        self.inner.store.remove(&self.target(scope, key))
    }

    /// Totals over every key since the limiter was built or [`reset_metrics`](Self::reset_metrics).
    pub fn metrics(&self) -> Metrics {
        self.inner.store.metrics()
    }

    /// One key's counts, when the limiter keeps them per key
    /// ([`RateLimiterBuilder::per_key_metrics`]). Counts are kept for tracked keys only: they
    /// start when a key is first admitted and go when it is forgotten (full again, or reset), so
    /// they take no memory beyond the key cap.
    pub fn key_metrics(&self, scope: Scope, key: &str) -> Option<Metrics> {
        self.inner.store.key_metrics(&self.target(scope, key))
    }

    /// Sets every count to zero.
    pub fn reset_metrics(&self) {
        self.inner.store.reset_metrics();
    }

    /// Forgets every key whose tiers are all full again (such a key is indistinguishable from one
    /// never seen). Runs by itself whenever a shard would otherwise grow; returns how many it dropped.
    pub fn sweep(&self) -> usize {
        self.inner.store.sweep(self.now())
    }

    /// How many keys the limiter tracks now: at most the key cap
    /// ([`RateLimiterBuilder::max_keys`]).
    pub fn live_keys(&self) -> usize {
        self.inner.store.live_keys()
    }

    /// How many keys have callers waiting for room now (wait mode): a queue lives only while a
    /// caller is in it, so this is never more than the callers waiting.
    pub fn queued_keys(&self) -> usize {
        self.inner.store.queued_keys()
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

/// Builds a [`RateLimiter`]; checks everything in [`build`](Self::build).
#[must_use]
#[derive(Debug)]
pub struct RateLimiterBuilder {
    scopes: Vec<(String, Quota)>,
    overrides: Vec<(String, String, Quota)>,
    max_keys: usize,
    per_key_metrics: bool,
    clock: Option<Arc<dyn Clock>>,
}

impl Default for RateLimiterBuilder {
    fn default() -> Self {
        Self {
            scopes: Vec::new(),
            overrides: Vec::new(),
            max_keys: DEFAULT_MAX_KEYS,
            per_key_metrics: false,
            clock: None,
        }
    }
}

/// Default cap on tracked keys: about 15 MB of state at the measured cost per key.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl RateLimiterBuilder {
    /// Adds a scope: a family of keys with `quota` as their default.
    pub fn scope(mut self, name: impl Into<String>, quota: Quota) -> Self {
        self.scopes.push((name.into(), quota));
        self
    }

    /// Gives `key` in scope `scope` its own quota instead of the scope's default.
    pub fn override_quota(
        mut self,
        scope: impl Into<String>,
        key: impl Into<String>,
        quota: Quota,
    ) -> Self {
        self.overrides.push((scope.into(), key.into(), quota));
        self
    }

    /// At most `max_keys` keys tracked at once (default [`DEFAULT_MAX_KEYS`]). When a new key
    /// would pass the cap, keys whose tiers are full again are dropped first; if none is, the new
    /// key is refused ([`DenialReason::Capacity`]) rather than evicting a key that still owes time,
    /// which would hand it a fresh burst. Calls adding new keys at the same instant may pass the
    /// cap by at most the keys they add.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Also count decisions per key ([`RateLimiter::key_metrics`]); off by default, as it costs
    /// a second table entry per key.
    pub fn per_key_metrics(mut self, enabled: bool) -> Self {
        self.per_key_metrics = enabled;
        self
    }

    /// Reads time from `clock` (default: a [`QuantaClock`] started at `build`, the cheapest
    /// monotonic clock). Tests on tokio's paused time use a
    /// [`TokioClock`](tollgate_core::clock::TokioClock); code without a runtime can use a
    /// [`ManualClock`](tollgate_core::clock::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when there is no scope, a scope name repeats, an override names an
    /// unknown scope or repeats a key, or `max_keys` is zero.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        let definition = self.definition()?;
        Ok(self.limiter_over(definition, self.per_key_metrics))
    }

    /// The scopes and quotas, checked, with the key cap.
    pub(crate) fn definition(&self) -> Result<Definition, ConfigError> {
        if self.scopes.is_empty() {
            return Err(ConfigError::new("scopes", "add at least one scope"));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        Definition::new(self.scopes.clone(), self.overrides.clone())
    }

    /// A limiter in this process keeping counts for `definition`, with this builder's key cap and
    /// clock.
    pub(crate) fn limiter_over(
        &self,
        definition: Definition,
        per_key_metrics: bool,
    ) -> RateLimiter {
        RateLimiter {
            inner: Arc::new(Inner {
                store: Store::new(definition, self.max_keys, per_key_metrics),
                clock: self
                    .clock
                    .clone()
                    .unwrap_or_else(|| Arc::new(QuantaClock::new())),
            }),
        }
    }
}

//! `RateLimiter`: the quota engine, usable with or without tower. Its wait line is in `wait`,
//! its builder in `builder`.

mod builder;
mod wait;

use std::{fmt, sync::Arc, time::Duration};

use tollgate_core::clock::Clock;

pub use self::builder::{DEFAULT_MAX_KEYS, RateLimiterBuilder};
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        if let (Reason::Wait { tier, .. }, Some((_, refusing))) = (refusal.reason, &denial.0.tier)
            && let Some(calendar) = refusing.calendar_period()
        {
            let span = calendar.span(self.inner.store.at(self.now()).wall);
            let (_, tats) = self.inner.store.state(target);
            let spent = crate::calendar::spent::in_period(tats[tier], span.index);
            denial.0.period = Some((spent, crate::calendar::instant(span.ends)));
        }
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
        let at = self.inner.store.at(self.now());
        let tiers = self.definition().quotas.all[quota as usize].tiers();
        Status {
            tiers: tiers
                .iter()
                .zip(tats)
                .map(|(tier, tat)| {
                    let (remaining, resets_in) = gcra::remaining(tier, tat, at);
                    TierStatus {
                        tier: tier.clone(),
                        remaining,
                        resets_in: Duration::from_nanos(resets_in),
                    }
                })
                .collect(),
        }
    }

    /// Gives keys of `scope` quotas of their own, or (`None`) takes them back to the scope's
    /// default, while calls go on: for limits kept in a database and changed at run time. What a
    /// key has counted carries over to its new quota where a tier counts the same thing: an
    /// unchanged tier keeps its schedule, and a calendar budget on the same calendar keeps what
    /// the period has spent, whatever its new limit; any other new tier starts full.
    ///
    /// Each distinct quota is kept once, however many keys share it, for the limiter's life.
    ///
    /// # Panics
    ///
    /// If `scope` comes from another limiter with fewer scopes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::clock::ManualClock;
    /// use tollgate_ratelimit::{Amounts, Quota, RateLimiter, Tier};
    ///
    /// let per_minute = |n| Quota::new([Tier::requests(n, Duration::from_secs(60))]).unwrap();
    /// let limiter = RateLimiter::builder().scope("key", per_minute(1)).clock(ManualClock::new()).build().unwrap();
    /// let key = limiter.scope("key").unwrap();
    /// limiter.check_and_consume(&[(key, "k1")], Amounts::requests(1)).unwrap();
    /// assert!(limiter.check_and_consume(&[(key, "k1")], Amounts::requests(1)).is_err());
    ///
    /// limiter.set_quotas(key, [("k1".to_owned(), Some(per_minute(2)))]);
    /// assert!(limiter.has_own_quota(key, "k1"));
    /// limiter.check_and_consume(&[(key, "k1")], Amounts::requests(1)).unwrap();
    /// ```
    pub fn set_quotas(
        &self,
        scope: Scope,
        changes: impl IntoIterator<Item = (String, Option<Quota>)>,
    ) {
        for (key, quota) in self.definition().set_quotas(scope, changes) {
            self.inner.store.requota(&self.target(scope, &key), quota);
        }
    }

    /// Has each calendar budget of `dimension` on `calendar` in `key`'s quota count at least
    /// `spent` in its current period, for a process that starts again and reads what the period
    /// has spent so far from a ledger (the gateway's database). Other tiers are left alone, and
    /// calling it again with the same figure changes nothing. Returns whether the key is tracked
    /// (a new key past the key cap is not).
    ///
    /// # Panics
    ///
    /// If `scope` comes from another limiter with fewer scopes.
    pub fn restore_period_spend(
        &self,
        scope: Scope,
        key: &str,
        (dimension, calendar): (crate::Dimension, &crate::Calendar),
        spent: u64,
    ) -> bool {
        self.inner.store.restore_spent(
            &self.target(scope, key),
            (dimension, calendar),
            spent,
            self.now(),
        )
    }

    /// Whether `key` has a quota of its own in `scope` (built with, or set since).
    pub fn has_own_quota(&self, scope: Scope, key: &str) -> bool {
        self.definition().quotas.has_own(scope.0, key)
    }

    /// The keys of `scope` with a quota of their own.
    pub fn own_quota_keys(&self, scope: Scope) -> Vec<String> {
        self.definition().own_keys(scope)
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

//! [`Limiter`]: either store of counts, in this process or shared through Redis, behind one API.
//!
//! Every operation is written here once, and each store answers it its own way: the limiter in
//! this process at once, the one in Redis in a round trip (or by its failure policy). The layer
//! admits and settles through this type too, remembering where each call was counted (in Redis,
//! a lease, the fallback, or nowhere under fail-open) so that it settles there; and a limiter in
//! this process decides without a future.

use std::time::Duration;

use tollgate_core::{Key, LlmError};

use crate::{
    definition::Definition,
    denial::Denial,
    limiter::{RateLimiter, Scope, Status},
    policy::OnLimit,
    quota::Amounts,
};

/// The limiter a [`RateLimitLayer`](crate::RateLimitLayer) asks: one in this process, or one
/// shared through Redis.
///
/// Both convert into it, so [`RateLimitLayer::new`](crate::RateLimitLayer::new) takes either,
/// and code that checks, settles or reads limits outside the layer can hold either the same way:
///
/// ```
/// use std::time::Duration;
/// use tollgate_ratelimit::{Amounts, Limiter, Quota, RateLimiter, Tier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let quota = Quota::new([Tier::requests(2, Duration::from_secs(60))]).unwrap();
/// // Or a `RedisRateLimiter`, with the `redis` feature: the calls below are the same.
/// let limiter = Limiter::from(RateLimiter::new(quota));
/// let tenant = limiter.scope("default").unwrap();
/// let keys = [(tenant, "acme")];
/// limiter.check_and_consume(&keys, Amounts::requests(1)).await.unwrap();
/// limiter.check_and_consume(&keys, Amounts::requests(1)).await.unwrap();
/// assert!(limiter.check(&keys, Amounts::requests(1)).await.is_err());
/// limiter.refund(&keys, Amounts::requests(1)).await;
/// assert_eq!(limiter.status(tenant, "acme").await.unwrap().tiers[0].remaining, 1);
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Limiter {
    /// Quotas held in this process.
    Local(RateLimiter),
    /// Quotas shared by every process through Redis.
    #[cfg(feature = "redis")]
    Redis(crate::RedisRateLimiter),
}

/// The keys one request is limited by: one per bound scope, kept inline for the common single scope.
pub(crate) enum Keys {
    One([(Scope, Key); 1]),
    Many(Vec<(Scope, Key)>),
}

impl Keys {
    pub(crate) fn as_slice(&self) -> &[(Scope, Key)] {
        match self {
            Self::One(one) => one,
            Self::Many(many) => many,
        }
    }
}

/// Where an admitted call was counted, so that it settles in the same place.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counted {
    Local,
    #[cfg(feature = "redis")]
    Redis(crate::redis::Via),
}

impl Limiter {
    /// The handle of the scope named `name`.
    pub fn scope(&self, name: &str) -> Option<Scope> {
        self.definition().scope(name)
    }

    /// The names of the scopes, in the order they were added.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.definition().scope_names()
    }

    /// Gives keys of `scope` quotas of their own, or (`None`) takes them back to the scope's
    /// default, while calls go on; see [`RateLimiter::set_quotas`] for what carries over.
    ///
    /// # Errors
    ///
    /// From Redis, a [`ConfigError`](tollgate_core::ConfigError) naming a tier whose schedule it
    /// cannot hold exactly; nothing is changed then.
    ///
    /// # Panics
    ///
    /// If `scope` comes from another limiter with fewer scopes.
    pub fn set_quotas(
        &self,
        scope: Scope,
        changes: impl IntoIterator<Item = (String, Option<crate::Quota>)>,
    ) -> Result<(), tollgate_core::ConfigError> {
        match self {
            Self::Local(limiter) => {
                limiter.set_quotas(scope, changes);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.set_quotas(scope, changes),
        }
    }

    /// In process, [`RateLimiter::restore_period_spend`]; in Redis, which keeps what every
    /// period spent across restarts, nothing (`false`).
    ///
    /// # Panics
    ///
    /// If `scope` comes from another limiter with fewer scopes.
    pub fn restore_period_spend(
        &self,
        scope: Scope,
        key: &str,
        budget: (crate::Dimension, &crate::Calendar),
        spent: u64,
    ) -> bool {
        match self {
            Self::Local(limiter) => limiter.restore_period_spend(scope, key, budget, spent),
            #[cfg(feature = "redis")]
            Self::Redis(_) => false,
        }
    }

    /// Whether `key` has a quota of its own in `scope` (built with, or set since).
    pub fn has_own_quota(&self, scope: Scope, key: &str) -> bool {
        self.definition().quotas.has_own(scope.0, key)
    }

    /// The keys of `scope` with a quota of their own.
    pub fn own_quota_keys(&self, scope: Scope) -> Vec<String> {
        self.definition().own_keys(scope)
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
    pub async fn check(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
    ) -> Result<(), Denial> {
        match self {
            Self::Local(limiter) => limiter.check(keys, amounts),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.check(keys, amounts).await,
        }
    }

    /// Admits a call of `amounts` against every key in `keys` and consumes it from every tier of
    /// every key, or refuses it and consumes nothing anywhere.
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming the scope, key and tier that refused; from Redis, also one that says
    /// Redis did not answer, under a fail-closed policy.
    ///
    /// # Panics
    ///
    /// If a [`Scope`] comes from another limiter with fewer scopes.
    pub async fn check_and_consume(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
    ) -> Result<(), Denial> {
        match self {
            Self::Local(limiter) => limiter.check_and_consume(keys, amounts),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.check_and_consume(keys, amounts).await,
        }
    }

    /// Admits like [`check_and_consume`](Self::check_and_consume), waiting up to `max_wait` for
    /// room, and returns how long it waited. In this process waiters form one
    /// first-come-first-served line per key ([`RateLimiter::acquire`]); through Redis, the first
    /// to ask after a tier refills gets the room.
    ///
    /// # Errors
    ///
    /// A [`Denial`]: at once when waiting cannot help, or when the deadline comes first.
    pub async fn acquire(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
        max_wait: Duration,
    ) -> Result<Duration, Denial> {
        match self {
            Self::Local(limiter) => limiter.acquire(keys, amounts, max_wait).await,
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.acquire(keys, amounts, max_wait).await,
        }
    }

    /// Takes `amounts` from every key without asking, even into debt.
    ///
    /// Through Redis, this and [`refund`](Self::refund) and [`reconcile`](Self::reconcile) go to
    /// Redis whatever decided the call they settle (a call its failure policy admitted was
    /// counted in this process, or nowhere); one Redis does not take is logged and counted, not
    /// an error. The layer settles each call where it was counted.
    pub async fn consume(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) {
        match self {
            Self::Local(limiter) => limiter.consume(keys, amounts),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.consume(keys, amounts).await,
        }
    }

    /// Gives `amounts` back to every key (never beyond a full tier).
    pub async fn refund(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) {
        match self {
            Self::Local(limiter) => limiter.refund(keys, amounts),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.refund(keys, amounts).await,
        }
    }

    /// Settles a call that reserved `reserved` and used `actual`: charges what it used beyond
    /// the reservation and refunds what it did not use, per dimension.
    pub async fn reconcile(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        reserved: Amounts,
        actual: Amounts,
    ) {
        match self {
            Self::Local(limiter) => limiter.reconcile(keys, reserved, actual),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.reconcile(keys, reserved, actual).await,
        }
    }

    /// The state of every tier of `key`'s quota in `scope`.
    ///
    /// # Errors
    ///
    /// From Redis, an `Unavailable` [`LlmError`] when it does not answer in time; a limiter in
    /// this process always answers.
    pub async fn status(&self, scope: Scope, key: &str) -> Result<Status, LlmError> {
        match self {
            Self::Local(limiter) => Ok(limiter.status(scope, key)),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.status(scope, key).await,
        }
    }

    /// [`status`](Self::status) where it is known without a round trip: from a limiter in this
    /// process, and `None` from Redis. For code that cannot wait, such as a metrics scrape.
    pub fn status_now(&self, scope: Scope, key: &str) -> Option<Status> {
        match self {
            Self::Local(limiter) => Some(limiter.status(scope, key)),
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }

    /// Forgets `key` in `scope`: every tier is full again. Returns whether it was held.
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status).
    pub async fn reset(&self, scope: Scope, key: &str) -> Result<bool, LlmError> {
        match self {
            Self::Local(limiter) => Ok(limiter.reset(scope, key)),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.reset(scope, key).await,
        }
    }

    /// The scopes and quotas the limiter keeps counts for.
    pub(crate) fn definition(&self) -> &Definition {
        match self {
            Self::Local(limiter) => limiter.definition(),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.definition(),
        }
    }

    /// The layer's first try: decided here and now where no round trip is needed (in this
    /// process), `None` where [`admit`](Self::admit) must ask.
    pub(crate) fn admit_now(
        &self,
        keys: &[(Scope, Key)],
        amounts: Amounts,
    ) -> Option<Result<Counted, Denial>> {
        match self {
            Self::Local(limiter) => Some(
                limiter
                    .check_and_consume(keys, amounts)
                    .map(|()| Counted::Local),
            ),
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }

    /// Admits a call as `on_limit` says, after `tried` (the denial [`admit_now`](Self::admit_now)
    /// gave, if it gave one): where it was counted, and how long it waited.
    pub(crate) async fn admit(
        &self,
        keys: &[(Scope, Key)],
        amounts: Amounts,
        on_limit: OnLimit,
        tried: Option<Denial>,
    ) -> Result<(Counted, Duration), Denial> {
        match (self, on_limit, tried) {
            (Self::Local(_), OnLimit::Reject, Some(denial)) => Err(denial),
            (Self::Local(limiter), OnLimit::Wait(max_wait), Some(denial)) => limiter
                .wait_after(keys, amounts, denial, max_wait)
                .await
                .map(|waited| (Counted::Local, waited)),
            (Self::Local(limiter), OnLimit::Reject, None) => limiter
                .check_and_consume(keys, amounts)
                .map(|()| (Counted::Local, Duration::ZERO)),
            (Self::Local(limiter), OnLimit::Wait(max_wait), None) => limiter
                .acquire(keys, amounts, max_wait)
                .await
                .map(|waited| (Counted::Local, waited)),
            #[cfg(feature = "redis")]
            (Self::Redis(limiter), OnLimit::Reject, _) => limiter
                .admit(keys, amounts)
                .await
                .map(|via| (Counted::Redis(via), Duration::ZERO)),
            #[cfg(feature = "redis")]
            (Self::Redis(limiter), OnLimit::Wait(max_wait), _) => limiter
                .admit_waiting(keys, amounts, max_wait)
                .await
                .map(|(via, waited)| (Counted::Redis(via), waited)),
        }
    }

    /// Settles an admitted call where it was counted: at once in this process, and in the
    /// background through Redis, so that the answer does not wait on it.
    pub(crate) fn settle(&self, counted: Counted, keys: Keys, reserved: Amounts, actual: Amounts) {
        match (self, counted) {
            (Self::Local(limiter), _) => limiter.reconcile(keys.as_slice(), reserved, actual),
            #[cfg(feature = "redis")]
            (Self::Redis(limiter), Counted::Redis(via)) => {
                let limiter = limiter.clone();
                spawn(async move {
                    limiter
                        .reconcile_via(keys.as_slice(), reserved, actual, via)
                        .await;
                });
            }
            #[cfg(feature = "redis")]
            (Self::Redis(_), Counted::Local) => unreachable!("Redis counts its own calls"),
        }
    }

    /// Gives a failed call's unused reservation back where it was counted, as
    /// [`settle`](Self::settle) does.
    pub(crate) fn give_back(&self, counted: Counted, keys: Keys, amounts: Amounts) {
        match (self, counted) {
            (Self::Local(limiter), _) => limiter.refund(keys.as_slice(), amounts),
            #[cfg(feature = "redis")]
            (Self::Redis(limiter), Counted::Redis(via)) => {
                let limiter = limiter.clone();
                spawn(async move {
                    limiter.refund_via(keys.as_slice(), amounts, via).await;
                });
            }
            #[cfg(feature = "redis")]
            (Self::Redis(_), Counted::Local) => unreachable!("Redis counts its own calls"),
        }
    }
}

/// Runs a settlement on the current runtime. A stream can end where there is none (dropped by
/// a runtime shutting down): its settlement is then lost, as the reservation stands.
#[cfg(feature = "redis")]
fn spawn(settlement: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(settlement);
    }
}

impl From<RateLimiter> for Limiter {
    fn from(limiter: RateLimiter) -> Self {
        Self::Local(limiter)
    }
}

#[cfg(feature = "redis")]
impl From<crate::RedisRateLimiter> for Limiter {
    fn from(limiter: crate::RedisRateLimiter) -> Self {
        Self::Redis(limiter)
    }
}

//! `RedisRateLimiter`: the same quotas, shared by every process through one Redis.
//!
//! Every decision is one `EVALSHA` of a Lua script that reads the server's clock (`TIME`), checks
//! every tier of every key of the call, and consumes from all of them or none. The script is
//! loaded once and run by its SHA; after a `SCRIPT FLUSH` or a server restart, the `NOSCRIPT`
//! reply makes the client load it again and retry.

mod builder;
mod decide;
mod fallback;
mod keys;
mod lease;
mod metrics;
mod script;

use std::{fmt, sync::Arc, time::Duration};

use tollgate_core::{
    LlmError,
    redis::{RedisConnection, RedisTarget},
};

use crate::{
    definition::Definition,
    denial::{Denial, DenialReason},
    limiter::{RateLimiter, Scope, Status, TierStatus},
    quota::Amounts,
};
pub use builder::RedisRateLimiterBuilder;
use decide::{Failure, unavailable};
pub use fallback::Backend;
use fallback::FallbackBreaker;
use lease::Leases;
pub use lease::MAX_LEASE_SETS;
pub use metrics::RedisMetrics;
use metrics::bump;
use script::{Invocation, Op, Reply};

/// What a [`RedisRateLimiter`] does when Redis does not answer in time (or answers with an error).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnRedisFailure {
    /// Admit the call: availability over the limit.
    FailOpen,
    /// Refuse the call with [`DenialReason::Unavailable`] (an `Unavailable` error): the limit over
    /// availability.
    FailClosed,
    /// Decide with an in-process limiter holding `share` (0 < share ≤ 1) of every tier. With `n`
    /// processes, a share of `1/n` keeps the fleet's total near the quota while Redis is away.
    Local {
        /// The fraction of each tier's limit and burst this process may use on its own.
        share: f64,
    },
}

impl Default for OnRedisFailure {
    /// Half of each tier, locally.
    fn default() -> Self {
        Self::Local {
            share: crate::DEFAULT_LOCAL_SHARE,
        }
    }
}

/// Multi-tier quotas shared through Redis by every process that uses the same key prefix.
///
/// The quotas, scopes, overrides and failure policy are those of the builder. Each decision is
/// atomic in Redis across every tier and every key of the call, on the server's clock, so the
/// clocks of the clients never matter. A decision that Redis cannot make in time follows the
/// [`OnRedisFailure`] policy; after [`failure_threshold`](RedisRateLimiterBuilder::failure_threshold)
/// failures in a row the limiter stops calling Redis, probes it every
/// [`probe_interval`](RedisRateLimiterBuilder::probe_interval), and goes back to it by itself.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate_ratelimit::{Amounts, OnRedisFailure, Quota, RedisRateLimiter, Tier};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::builder("redis://127.0.0.1:6379/")
///     .scope("tenant", Quota::new([Tier::requests(600, Duration::from_secs(60))])?)
///     .prefix("myapp:limits")
///     .timeout(Duration::from_millis(5))
///     .on_failure(OnRedisFailure::Local { share: 0.25 }) // four processes
///     .build()?;
/// let tenant = limiter.scope("tenant").unwrap();
/// limiter.check_and_consume(&[(tenant, "acme")], Amounts::requests(1)).await?;
/// # Ok(()) }
/// ```
///
/// # Keys and Redis Cluster
///
/// A key is one Redis hash named `<prefix>:{<scope>:<key>}`, holding one field per tier, so a
/// key's tiers always share a Cluster slot. A call limited by several keys (a user and its
/// organization) checks them in one script, which Redis Cluster allows only when they share a
/// slot: [`hash_tag_scope`](RedisRateLimiterBuilder::hash_tag_scope) names `<prefix>:{org:acme}:user:alice`
/// after the organization, putting the whole call in the organization's slot. The trade-off:
/// every key under one organization lands on one node, and a user who moves to another
/// organization starts afresh. On a cluster ([`RedisTarget::Cluster`]), a limiter with several
/// scopes and no hash-tag scope is refused by `build()`, and a call that names keys of two scopes
/// but none of the hash-tag scope is refused before it is sent
/// ([`DenialReason::CrossSlot`]); on a single server or behind Sentinel any keys can be checked
/// together. Idle keys expire (`PEXPIRE`) as soon as every tier is full again.
///
/// # Failover
///
/// On a cluster, redis-rs follows `MOVED` and re-reads the slot map when a master stops
/// answering; behind Sentinel, the connection asks the Sentinels again. While a master is being
/// replaced, its keys' calls fail or time out and the [`OnRedisFailure`] policy decides them
/// (after [`failure_threshold`](RedisRateLimiterBuilder::failure_threshold) failures in a row,
/// without asking Redis at all); a probe every
/// [`probe_interval`](RedisRateLimiterBuilder::probe_interval) brings calls back once the
/// promoted replica answers. Each switch is logged, counted in [`metrics`](Self::metrics) and
/// [`RedisConnection::master_switches`], and recorded as `tollgate.limiter.backend_switches`
/// and `tollgate.redis.master_switches`.
///
/// What the fleet may admit beyond a quota across a failover is bounded: with `n` processes
/// under `Local { share }`, each admits at most `share` of every tier on its own while Redis is
/// away, so at most `n × share × limit` more than the quota; and the replica may miss the writes
/// of the last moment before its master died (Redis replicates asynchronously), which a fleet
/// admits again. `FailClosed` admits nothing while Redis is away, `FailOpen` everything.
///
/// # Hybrid mode
///
/// With [`lease`](RedisRateLimiterBuilder::lease), a process takes a batch of permits for a key
/// from Redis in one call and admits from it locally, cutting round trips by up to the batch size.
/// Leases cover calls that draw one request and nothing else (token and cost draws vary per call
/// and go to Redis each time). Every leased permit was taken from the shared quota, so the fleet
/// never admits more than the quota in total; but a permit taken at one moment may be spent up to
/// the lease's time to live later, so over any window the fleet may admit up to
/// `processes × batch` more than the quota alone would within that window. A lease's unused
/// permits go back to Redis when it ends.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    definition: Definition,
    /// Calendar tiers read their period from `wall_origin` plus this clock's reading: the
    /// processes' wall clocks, where rolling tiers read the server's.
    clock: std::sync::Arc<dyn tollgate_core::clock::Clock>,
    wall_origin: u64,
    fallback: Option<RateLimiter>,
    connection: RedisConnection,
    script: redis::Script,
    prefix: String,
    hash_tag: Option<Scope>,
    timeout: Duration,
    policy: OnRedisFailure,
    breaker: FallbackBreaker,
    leases: Option<Leases>,
    counts: metrics::Counts,
}

/// Which backend decided a call, so its settlement goes to the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Redis,
    Lease,
    Local,
    Open,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.inner.prefix)
            .field("scopes", &self.scope_names().collect::<Vec<_>>())
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// The wall clock calendar tiers read, in nanoseconds since the Unix epoch.
    pub(super) fn wall_now(&self) -> u64 {
        self.inner
            .wall_origin
            .saturating_add(self.inner.clock.now_nanos())
    }

    /// A builder for a limiter on `redis`: a URL (`redis://host:port/db`), a
    /// [`RedisTarget`] (a cluster, Sentinel), or a [`RedisConnection`] shared with other layers.
    pub fn builder(redis: impl Into<RedisTarget>) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder::new(redis.into())
    }

    /// The connection decisions go through (to share it, or to read its
    /// [`master_switches`](RedisConnection::master_switches)).
    pub fn connection(&self) -> &RedisConnection {
        &self.inner.connection
    }

    /// The Lua script every decision runs, for those who audit what runs on their Redis (or
    /// measure it: `benches/redis.rs` sends it raw as the floor). Its layout is documented at its
    /// top; it is not a stable interface.
    pub fn script() -> &'static str {
        script::SOURCE
    }

    /// The handle of the scope named `name`.
    pub fn scope(&self, name: &str) -> Option<Scope> {
        self.inner.definition.scope(name)
    }

    /// The names of the scopes, in the order they were added.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.inner.definition.scope_names()
    }

    /// Where decisions are made now: Redis, or the failure policy while Redis is away.
    pub fn backend(&self) -> Backend {
        self.inner.breaker.backend()
    }

    /// What the limiter has done so far.
    pub fn metrics(&self) -> RedisMetrics {
        let mut metrics = self.inner.counts.snapshot();
        (metrics.switched_to_fallback, metrics.switched_to_redis) = self.inner.breaker.switches();
        metrics.lease_sets = self.inner.leases.as_ref().map_or(0, |l| l.len() as u64);
        metrics
    }

    pub(crate) fn definition(&self) -> &Definition {
        &self.inner.definition
    }

    /// Gives keys of `scope` quotas of their own, or (`None`) takes them back to the scope's
    /// default, while calls go on, as [`RateLimiter::set_quotas`] does. In Redis a tier's count
    /// is kept under the tier's parameters, so an unchanged tier and a calendar budget on the
    /// same calendar carry over and any other new tier starts full, as in process. A lease
    /// already taken is spent at the quota it was taken under.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](tollgate_core::ConfigError) naming a tier whose schedule Redis cannot hold exactly; nothing is
    /// changed then.
    ///
    /// # Panics
    ///
    /// If `scope` comes from another limiter with fewer scopes.
    pub fn set_quotas(
        &self,
        scope: Scope,
        changes: impl IntoIterator<Item = (String, Option<crate::Quota>)>,
    ) -> Result<(), tollgate_core::ConfigError> {
        let changes: Vec<(String, Option<crate::Quota>)> = changes.into_iter().collect();
        for quota in changes.iter().filter_map(|(_, quota)| quota.as_ref()) {
            builder::fits(quota)?;
        }
        if let (Some(fallback), OnRedisFailure::Local { share }) =
            (&self.inner.fallback, self.inner.policy)
        {
            let mut scaled = Vec::with_capacity(changes.len());
            for (key, quota) in &changes {
                let quota = quota
                    .as_ref()
                    .map(|quota| crate::definition::scaled(quota, share))
                    .transpose()?;
                scaled.push((key.clone(), quota));
            }
            fallback.set_quotas(scope, scaled);
        }
        self.inner.definition.set_quotas(scope, changes);
        Ok(())
    }

    /// Whether a call of `amounts` would be admitted now, consuming nothing.
    ///
    /// # Errors
    ///
    /// The [`Denial`] a [`check_and_consume`](Self::check_and_consume) would return now.
    pub async fn check(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
    ) -> Result<(), Denial> {
        self.decide(keys, &amounts, Op::Check).await.map(drop)
    }

    /// Admits a call of `amounts` against every key in `keys` and consumes it from every tier of
    /// every key in one atomic script, or refuses it and consumes nothing anywhere.
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming the scope, key and tier that refused (the longest wait); or, when Redis
    /// does not answer and the policy is [`OnRedisFailure::FailClosed`], one with
    /// [`DenialReason::Unavailable`].
    ///
    /// # Panics
    ///
    /// If a [`Scope`] comes from another limiter with fewer scopes.
    pub async fn check_and_consume(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
    ) -> Result<(), Denial> {
        self.admit(keys, amounts).await.map(drop)
    }

    /// Admits like [`check_and_consume`](Self::check_and_consume), waiting (by sleeping until the
    /// refusing tier has room, then asking again) up to `max_wait`; returns how long it waited.
    ///
    /// Unlike [`RateLimiter::acquire`], waiters in different processes do not form one line: the
    /// first to ask after a tier refills gets the room.
    ///
    /// # Errors
    ///
    /// As [`check_and_consume`](Self::check_and_consume), at once when the wait would pass
    /// `max_wait`.
    pub async fn acquire(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
        max_wait: Duration,
    ) -> Result<Duration, Denial> {
        self.admit_waiting(keys, amounts, max_wait)
            .await
            .map(|(_, waited)| waited)
    }

    pub(crate) async fn admit(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
    ) -> Result<Via, Denial> {
        let decided = match &self.inner.leases {
            Some(leases) if amounts == Amounts::requests(1) => {
                leases.admit(self, keys, &amounts).await
            }
            _ => self
                .decide(keys, &amounts, Op::Admit)
                .await
                .map(|(via, _)| via),
        };
        let counter = match decided {
            Ok(_) => &self.inner.counts.allowed,
            Err(_) => &self.inner.counts.denied,
        };
        bump(counter, 1);
        decided
    }

    pub(crate) async fn admit_waiting(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
        max_wait: Duration,
    ) -> Result<(Via, Duration), Denial> {
        let started = tokio::time::Instant::now();
        let deadline = started + max_wait;
        let mut slept = false;
        loop {
            let mut denial = match self.admit(keys, amounts).await {
                // A call admitted on its first ask did not wait: its round trip is not a wait.
                Ok(via) if !slept => return Ok((via, Duration::ZERO)),
                Ok(via) => return Ok((via, started.elapsed())),
                Err(denial) => denial,
            };
            let wake = match (denial.reason(), denial.retry_after()) {
                (DenialReason::Exhausted, Some(after)) => tokio::time::Instant::now() + after,
                _ => return Err(denial),
            };
            if wake > deadline {
                denial.0.waited = started.elapsed();
                return Err(denial);
            }
            tokio::time::sleep_until(wake).await;
            slept = true;
        }
    }

    /// Takes `amounts` from every key without asking, even into debt.
    pub async fn consume(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) {
        self.adjust(keys, &amounts, 1, Via::Redis).await;
    }

    /// Gives `amounts` back to every key (never beyond a full tier).
    pub async fn refund(&self, keys: &[(Scope, impl AsRef<str>)], amounts: Amounts) {
        self.adjust(keys, &amounts, -1, Via::Redis).await;
    }

    /// Settles a call that reserved `reserved` and used `actual`, charging and refunding each
    /// tier by the difference in one atomic script.
    pub async fn reconcile(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        reserved: Amounts,
        actual: Amounts,
    ) {
        self.reconcile_via(keys, reserved, actual, Via::Redis).await;
    }

    pub(crate) async fn reconcile_via(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        reserved: Amounts,
        actual: Amounts,
        via: Via,
    ) {
        match via {
            Via::Local => {
                if let Some(fallback) = &self.inner.fallback {
                    fallback.reconcile(keys, reserved, actual);
                }
            }
            Via::Open => {}
            Via::Redis | Via::Lease => {
                let charge = actual.saturating_sub(&reserved);
                let refund = reserved.saturating_sub(&actual);
                self.adjust_signed(keys, |dimension| {
                    i128::from(charge.get(dimension)) - i128::from(refund.get(dimension))
                })
                .await;
            }
        }
    }

    pub(crate) async fn refund_via(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: Amounts,
        via: Via,
    ) {
        self.adjust(keys, &amounts, -1, via).await;
    }

    async fn adjust(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        sign: i128,
        via: Via,
    ) {
        if amounts.is_zero() {
            return;
        }
        match via {
            Via::Local => {
                if let Some(fallback) = &self.inner.fallback {
                    if sign > 0 {
                        fallback.consume(keys, *amounts);
                    } else {
                        fallback.refund(keys, *amounts);
                    }
                }
            }
            Via::Open => {}
            Via::Redis | Via::Lease => {
                self.adjust_signed(keys, |dimension| sign * i128::from(amounts.get(dimension)))
                    .await;
            }
        }
    }

    /// Adds `units(dimension)` (signed) to every tier of every key, in one script; whether Redis
    /// took it. A failure is logged and counted: a settlement never fails a call.
    pub(crate) async fn adjust_signed(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        units: impl Fn(crate::quota::Dimension) -> i128,
    ) -> bool {
        let mut invocation = Invocation::new(Op::Adjust);
        for (scope, key) in keys {
            let quota = self.inner.definition.quota_of(*scope, key.as_ref());
            invocation.key(
                self.redis_key(keys, *scope, key.as_ref()),
                quota.tiers(),
                self.wall_now(),
                |tier| units(tier.dimension()) * i128::from(tier.interval_nanos()),
            );
        }
        match self.run(Op::Adjust, &invocation).await {
            Ok(_) => true,
            Err(failure) => {
                tracing::warn!(
                    target: "tollgate::ratelimit",
                    error = %failure,
                    "could not settle a call's usage in Redis; the reservation stands"
                );
                false
            }
        }
    }

    /// The state of every tier of `key`'s quota in `scope`, as Redis holds it.
    ///
    /// With [`hash_tag_scope`](RedisRateLimiterBuilder::hash_tag_scope), a key of another scope is
    /// named after its call's key in the tag scope: ask with [`status_under`](Self::status_under).
    ///
    /// # Errors
    ///
    /// An `Unavailable` [`LlmError`] when Redis does not answer in time.
    pub async fn status(&self, scope: Scope, key: &str) -> Result<Status, LlmError> {
        self.status_of(self.redis_key(&[(scope, key)], scope, key), scope, key)
            .await
    }

    /// [`status`](Self::status) of `key` in `scope` as calls that also name `tag_key` in the hash
    /// tag scope store it (e.g. user `alice` under organization `acme`).
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status).
    pub async fn status_under(
        &self,
        scope: Scope,
        key: &str,
        tag_key: &str,
    ) -> Result<Status, LlmError> {
        let name = self.tagged_key(scope, key, tag_key);
        self.status_of(name, scope, key).await
    }

    async fn status_of(&self, name: String, scope: Scope, key: &str) -> Result<Status, LlmError> {
        let quota = self.inner.definition.quota_of(scope, key);
        let mut invocation = Invocation::new(Op::Status);
        let wall = self.wall_now();
        invocation.key(name, quota.tiers(), wall, |_| 0);
        let Reply::Debts(debts) = self
            .run(Op::Status, &invocation)
            .await
            .map_err(unavailable)?
        else {
            return Err(unavailable(Failure::Reply("not a status".into())));
        };
        Ok(Status {
            tiers: quota
                .tiers()
                .iter()
                .zip(debts)
                .map(|(tier, debt)| {
                    // A debt is counted from now: as a TAT, it is the debt at clock 0.
                    let at = crate::gcra::At { now: 0, wall };
                    let state = match tier.calendar_period() {
                        Some(calendar) => {
                            crate::calendar::spent::state(calendar.span(wall).index, debt)
                        }
                        None => debt,
                    };
                    let (remaining, resets_in) = crate::gcra::remaining(tier, state, at);
                    TierStatus {
                        tier: tier.clone(),
                        remaining,
                        resets_in: Duration::from_nanos(resets_in),
                    }
                })
                .collect(),
        })
    }

    /// Forgets `key` in `scope` in Redis: every tier is full again. Returns whether it was held.
    /// With a hash tag scope, see [`reset_under`](Self::reset_under).
    ///
    /// # Errors
    ///
    /// An `Unavailable` [`LlmError`] when Redis does not answer in time.
    pub async fn reset(&self, scope: Scope, key: &str) -> Result<bool, LlmError> {
        self.reset_named(self.redis_key(&[(scope, key)], scope, key))
            .await
    }

    /// [`reset`](Self::reset) of `key` in `scope` as calls that also name `tag_key` in the hash tag
    /// scope store it.
    ///
    /// # Errors
    ///
    /// As [`reset`](Self::reset).
    pub async fn reset_under(
        &self,
        scope: Scope,
        key: &str,
        tag_key: &str,
    ) -> Result<bool, LlmError> {
        self.reset_named(self.tagged_key(scope, key, tag_key)).await
    }

    async fn reset_named(&self, name: String) -> Result<bool, LlmError> {
        let mut connection = self.inner.connection.clone();
        let deleted: i64 = tokio::time::timeout(
            self.inner.timeout,
            redis::cmd("DEL").arg(name).query_async(&mut connection),
        )
        .await
        .map_err(|_| unavailable(Failure::Timeout))?
        .map_err(|e| unavailable(Failure::Error(e)))?;
        Ok(deleted > 0)
    }

    /// Hands every unused leased permit back to Redis (hybrid mode), e.g. before shutting down.
    pub async fn release_leases(&self) {
        if let Some(leases) = &self.inner.leases {
            leases.release_all(self).await;
        }
    }
}

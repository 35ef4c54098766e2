//! `RedisRateLimiter`: the same quotas, shared by every process through one Redis.
//!
//! Every decision is one `EVALSHA` of a Lua script that reads the server's clock (`TIME`), checks
//! every tier of every key of the call, and consumes from all of them or none. The script is
//! loaded once and run by its SHA; after a `SCRIPT FLUSH` or a server restart, the `NOSCRIPT`
//! reply makes the client load it again and retry.

mod health;
mod lease;
mod script;

use std::{fmt, sync::Arc, time::Duration};

use redis::aio::ConnectionManager;
use tollgate_core::{ConfigError, ErrorKind, LlmError};

use crate::{
    denial::{Denial, DenialReason},
    limiter::{RateLimiter, RateLimiterBuilder, Scope, Status, TierStatus},
    quota::{Amounts, Quota},
};
use health::{Gate, Health};
use lease::Leases;
pub use lease::MAX_LEASE_SETS;
use script::{Invocation, Op, Reply};

pub use health::Backend;

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
        Self::Local { share: 0.5 }
    }
}

/// Default time a Redis call may take before the failure policy decides instead.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(5);

/// Default number of consecutive failed calls after which Redis is left alone.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Default time between probes of a Redis that was left alone.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Counts of what a [`RedisRateLimiter`] did, since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisMetrics {
    /// Calls admitted, by any backend.
    pub allowed: u64,
    /// Calls refused, by any backend (including fail-closed refusals).
    pub denied: u64,
    /// Script calls sent to Redis.
    pub redis_calls: u64,
    /// Script calls that failed with an error.
    pub redis_errors: u64,
    /// Script calls that did not answer within the timeout.
    pub redis_timeouts: u64,
    /// Decisions the failure policy made because Redis was not asked or did not answer.
    pub failure_decisions: u64,
    /// Times the limiter left Redis for its failure policy.
    pub switched_to_fallback: u64,
    /// Times the limiter came back to Redis.
    pub switched_to_redis: u64,
    /// Leases taken from Redis (hybrid mode).
    pub leases: u64,
    /// Calls admitted from a local lease without asking Redis (hybrid mode).
    pub lease_admits: u64,
    /// Permits handed back to Redis unused when their lease ended (hybrid mode).
    pub lease_returned: u64,
    /// Key sets holding a lease now (hybrid mode). When a new key set would pass
    /// [`MAX_LEASE_SETS`], every lease nobody is refilling is dropped and its permits handed back.
    pub lease_sets: u64,
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
/// organization starts afresh. On a single Redis server (what this crate connects to) any keys
/// can be checked together. Idle keys expire (`PEXPIRE`) as soon as every tier is full again.
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
    definition: RateLimiter,
    fallback: Option<RateLimiter>,
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
    hash_tag: Option<Scope>,
    timeout: Duration,
    policy: OnRedisFailure,
    health: Health,
    leases: Option<Leases>,
    counts: counts::Counts,
}

mod counts {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::RedisMetrics;

    #[derive(Default)]
    pub(super) struct Counts {
        pub(super) allowed: AtomicU64,
        pub(super) denied: AtomicU64,
        pub(super) redis_calls: AtomicU64,
        pub(super) redis_errors: AtomicU64,
        pub(super) redis_timeouts: AtomicU64,
        pub(super) failure_decisions: AtomicU64,
        pub(super) leases: AtomicU64,
        pub(super) lease_admits: AtomicU64,
        pub(super) lease_returned: AtomicU64,
    }

    pub(super) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Relaxed);
    }

    impl Counts {
        pub(super) fn snapshot(&self) -> RedisMetrics {
            let get = |c: &AtomicU64| c.load(Relaxed);
            RedisMetrics {
                allowed: get(&self.allowed),
                denied: get(&self.denied),
                redis_calls: get(&self.redis_calls),
                redis_errors: get(&self.redis_errors),
                redis_timeouts: get(&self.redis_timeouts),
                failure_decisions: get(&self.failure_decisions),
                switched_to_fallback: 0,
                switched_to_redis: 0,
                leases: get(&self.leases),
                lease_admits: get(&self.lease_admits),
                lease_returned: get(&self.lease_returned),
                lease_sets: 0,
            }
        }
    }
}

/// Which backend decided a call, so its settlement goes to the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Redis,
    Lease,
    Local,
    Open,
}

/// Why a script call produced no answer.
enum Failure {
    Timeout,
    Error(redis::RedisError),
    Reply(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => write!(f, "no answer in time"),
            Self::Error(error) => write!(f, "{error}"),
            Self::Reply(reply) => write!(f, "{reply}"),
        }
    }
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
    /// A builder for a limiter on the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            url: url.into(),
            limits: RateLimiter::builder(),
            prefix: DEFAULT_PREFIX.to_owned(),
            hash_tag_scope: None,
            timeout: DEFAULT_REDIS_TIMEOUT,
            policy: OnRedisFailure::default(),
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            lease: None,
        }
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
        self.inner.health.backend()
    }

    /// What the limiter has done so far.
    pub fn metrics(&self) -> RedisMetrics {
        let mut metrics = self.inner.counts.snapshot();
        (metrics.switched_to_fallback, metrics.switched_to_redis) = self.inner.health.switches();
        metrics.lease_sets = self.inner.leases.as_ref().map_or(0, |l| l.len() as u64);
        metrics
    }

    pub(crate) fn definition(&self) -> &RateLimiter {
        &self.inner.definition
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
        counts::bump(counter, 1);
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
        loop {
            let mut denial = match self.admit(keys, amounts).await {
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

    /// Adds `units(dimension)` (signed) to every tier of every key, in one script. A failure is
    /// logged and counted: a settlement never fails a call.
    pub(crate) async fn adjust_signed(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        units: impl Fn(crate::quota::Dimension) -> i128,
    ) {
        let mut invocation = Invocation::new(Op::Adjust);
        for (scope, key) in keys {
            let quota = self.inner.definition.quota_of(*scope, key.as_ref());
            invocation.key(
                self.redis_key(keys, *scope, key.as_ref()),
                quota.tiers().iter().map(|tier| {
                    let cost = units(tier.dimension()) * i128::from(tier.interval_nanos());
                    (field(tier), cost, tier.window_nanos())
                }),
            );
        }
        if let Err(failure) = self.run(Op::Adjust, &invocation).await {
            tracing::warn!(
                target: "tollgate::ratelimit",
                error = %failure,
                "could not settle a call's usage in Redis; the reservation stands"
            );
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

    /// The Redis name of `key` in `scope` when its call names `tag_key` in the hash tag scope.
    fn tagged_key(&self, scope: Scope, key: &str, tag_key: &str) -> String {
        match self.inner.hash_tag {
            Some(tag) => self.redis_key(&[(scope, key), (tag, tag_key)], scope, key),
            None => self.redis_key(&[(scope, key)], scope, key),
        }
    }

    async fn status_of(&self, name: String, scope: Scope, key: &str) -> Result<Status, LlmError> {
        let quota = self.inner.definition.quota_of(scope, key);
        let mut invocation = Invocation::new(Op::Status);
        invocation.key(
            name,
            quota
                .tiers()
                .iter()
                .map(|tier| (field(tier), 0, tier.window_nanos())),
        );
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
                    let (remaining, resets_in) = crate::gcra::remaining(tier, debt, 0);
                    TierStatus {
                        tier: *tier,
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

    /// Decides one call by the script (or the failure policy), without counting it.
    async fn decide(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> Result<(Via, u64), Denial> {
        let (via, decided) = self.decide_by(keys, amounts, op).await;
        decided.map(|granted| (via, granted))
    }

    /// [`decide`](Self::decide), saying who decided even when the answer is a refusal.
    async fn decide_by(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> (Via, Result<u64, Denial>) {
        let invocation = match self.invocation(keys, amounts, op) {
            Ok(invocation) => invocation,
            Err(denial) => return (Via::Local, Err(denial)),
        };
        match self.run(op, &invocation).await {
            Ok(Reply::Admitted(granted)) => (Via::Redis, Ok(granted)),
            Ok(Reply::Refused { key, tier, wait }) => {
                let (scope, name) = &keys[key];
                let denial = self.inner.definition.make_denial(
                    *scope,
                    name.as_ref(),
                    DenialReason::Exhausted,
                    Some(tier),
                    amounts,
                    Some(Duration::from_nanos(wait)),
                );
                (Via::Redis, Err(denial))
            }
            Ok(Reply::Debts(_)) => unreachable!("only status replies with debts"),
            Err(_) => {
                let via = match self.inner.policy {
                    OnRedisFailure::FailOpen => Via::Open,
                    _ => Via::Local,
                };
                (via, self.on_failure(keys, amounts, op).await.map(|_| 1))
            }
        }
    }

    /// The script's arguments for a call, or the denial that needs no round trip: too many keys,
    /// or more than a tier's burst.
    fn invocation(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> Result<Invocation, Denial> {
        let definition = &self.inner.definition;
        if keys.len() > crate::store::MAX_TARGETS {
            let (scope, key) = &keys[0];
            return Err(definition.make_denial(
                *scope,
                key.as_ref(),
                DenialReason::TooManyKeys,
                None,
                amounts,
                None,
            ));
        }
        let mut invocation = Invocation::new(op);
        for (scope, key) in keys {
            assert!(
                definition.owns(*scope),
                "scope {scope:?} does not belong to this RedisRateLimiter"
            );
            let quota = definition.quota_of(*scope, key.as_ref());
            if let Some(tier) = never_fits(quota, amounts) {
                return Err(definition.make_denial(
                    *scope,
                    key.as_ref(),
                    DenialReason::TooLarge,
                    Some(tier),
                    amounts,
                    None,
                ));
            }
            invocation.key(
                self.redis_key(keys, *scope, key.as_ref()),
                quota.tiers().iter().map(|tier| {
                    let cost = i128::from(tier.cost_nanos(amounts.get(tier.dimension())));
                    (field(tier), cost, tier.window_nanos())
                }),
            );
        }
        Ok(invocation)
    }

    /// Runs the script through the breaker and the timeout.
    async fn run(&self, op: Op, invocation: &Invocation) -> Result<Reply, Failure> {
        let inner = &self.inner;
        let probe = match inner.health.gate() {
            Gate::Skip => return Err(Failure::Reply("Redis is left alone for now".into())),
            Gate::Try => None,
            Gate::Probe(guard) => Some(guard),
        };
        counts::bump(&inner.counts.redis_calls, 1);
        let mut call = inner.script.prepare_invoke();
        for key in &invocation.keys {
            call.key(key);
        }
        for arg in &invocation.args {
            call.arg(arg);
        }
        let mut connection = inner.connection.clone();
        let answer: Result<Vec<i64>, Failure> =
            match tokio::time::timeout(inner.timeout, call.invoke_async(&mut connection)).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(error)) => {
                    counts::bump(&inner.counts.redis_errors, 1);
                    Err(Failure::Error(error))
                }
                Err(_) => {
                    counts::bump(&inner.counts.redis_timeouts, 1);
                    Err(Failure::Timeout)
                }
            };
        let parsed = answer.and_then(|reply| script::parse(op, &reply).map_err(Failure::Reply));
        match &parsed {
            Ok(_) => inner.health.succeeded(probe),
            Err(failure) => inner.health.failed(probe, failure),
        }
        parsed
    }

    /// What the policy says when Redis could not decide.
    async fn on_failure(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> Result<Via, Denial> {
        counts::bump(&self.inner.counts.failure_decisions, 1);
        match self.inner.policy {
            OnRedisFailure::FailOpen => Ok(Via::Open),
            OnRedisFailure::FailClosed => {
                let (scope, key) = &keys[0];
                Err(self.inner.definition.make_denial(
                    *scope,
                    key.as_ref(),
                    DenialReason::Unavailable,
                    None,
                    amounts,
                    None,
                ))
            }
            OnRedisFailure::Local { .. } => {
                let fallback = self.inner.fallback.as_ref().expect("built with the policy");
                let decided = if op == Op::Check {
                    fallback.check(keys, *amounts)
                } else {
                    fallback.check_and_consume(keys, *amounts)
                };
                decided.map(|()| Via::Local)
            }
        }
    }

    /// `<prefix>:{<scope>:<key>}`, or with a hash tag scope, `<prefix>:{<tag scope>:<its key>}:<scope>:<key>`.
    fn redis_key(&self, keys: &[(Scope, impl AsRef<str>)], scope: Scope, key: &str) -> String {
        let definition = &self.inner.definition;
        let own = format!("{}:{}", escape(definition.scope_name(scope)), escape(key));
        let tag = self.inner.hash_tag.and_then(|tag_scope| {
            keys.iter().find(|(s, _)| *s == tag_scope).map(|(s, k)| {
                format!(
                    "{}:{}",
                    escape(definition.scope_name(*s)),
                    escape(k.as_ref())
                )
            })
        });
        match tag {
            Some(tag) if tag != own => format!("{}:{{{tag}}}:{own}", self.inner.prefix),
            _ => format!("{}:{{{own}}}", self.inner.prefix),
        }
    }
}

/// The first tier `amounts` can never fit in, checked before any round trip.
fn never_fits(quota: &Quota, amounts: &Amounts) -> Option<usize> {
    quota
        .tiers()
        .iter()
        .position(|tier| tier.cost_nanos(amounts.get(tier.dimension())) > tier.window_nanos())
}

/// A tier's field in a key's hash, named after its parameters.
fn field(tier: &crate::quota::Tier) -> String {
    let dimension = match tier.dimension() {
        crate::quota::Dimension::Requests => 'r',
        crate::quota::Dimension::Tokens => 't',
        crate::quota::Dimension::Cost => 'c',
    };
    format!(
        "{dimension}:{}:{}",
        tier.interval_nanos(),
        tier.window_nanos()
    )
}

/// Keeps `{`, `}` (hash tags) and `:` (our separator) out of key parts.
fn escape(part: &str) -> std::borrow::Cow<'_, str> {
    if !part.contains(['{', '}', ':', '%']) {
        return part.into();
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out.into()
}

fn unavailable(failure: Failure) -> LlmError {
    LlmError::new(
        ErrorKind::Unavailable,
        format!("the rate-limit store (Redis) did not answer: {failure}"),
    )
}

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "tollgate:rl";

/// Builds a [`RedisRateLimiter`]; checks everything in [`build`](Self::build).
#[must_use]
pub struct RedisRateLimiterBuilder {
    url: String,
    limits: RateLimiterBuilder,
    prefix: String,
    hash_tag_scope: Option<String>,
    timeout: Duration,
    policy: OnRedisFailure,
    failure_threshold: u32,
    probe_interval: Duration,
    lease: Option<(u32, Duration)>,
}

impl std::fmt::Debug for RedisRateLimiterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: left out.
        f.debug_struct("RedisRateLimiterBuilder")
            .field("limits", &self.limits)
            .field("prefix", &self.prefix)
            .field("hash_tag_scope", &self.hash_tag_scope)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiterBuilder {
    /// Takes the scopes and quotas (defaults and overrides) of `limits`, replacing any added so
    /// far, and for the in-process fallback ([`OnRedisFailure::Local`]) its key cap and clock.
    /// One description of the quotas can then build either limiter: `limits.build()` for this
    /// process alone, or this builder for Redis.
    pub fn limits(mut self, limits: RateLimiterBuilder) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a scope: a family of keys with `quota` as their default.
    pub fn scope(mut self, name: impl Into<String>, quota: Quota) -> Self {
        self.limits = self.limits.scope(name, quota);
        self
    }

    /// Gives `key` in scope `scope` its own quota instead of the scope's default.
    pub fn override_quota(
        mut self,
        scope: impl Into<String>,
        key: impl Into<String>,
        quota: Quota,
    ) -> Self {
        self.limits = self.limits.override_quota(scope, key, quota);
        self
    }

    /// Starts every Redis key name with `prefix` (default [`DEFAULT_PREFIX`]); processes share a
    /// quota exactly when they share a prefix (and a Redis).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Puts every key of a call in the Redis Cluster slot of its key in scope `scope` (e.g.
    /// `org`), so calls limited by a user and its organization stay in one slot. See
    /// [the type's docs](RedisRateLimiter#keys-and-redis-cluster) for the trade-off.
    pub fn hash_tag_scope(mut self, scope: impl Into<String>) -> Self {
        self.hash_tag_scope = Some(scope.into());
        self
    }

    /// How long one Redis call may take before the failure policy decides instead (default
    /// [`DEFAULT_REDIS_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do when Redis does not answer (default: decide locally with half of each tier).
    pub fn on_failure(mut self, policy: OnRedisFailure) -> Self {
        self.policy = policy;
        self
    }

    /// Leave Redis alone after this many failed calls in a row (default
    /// [`DEFAULT_FAILURE_THRESHOLD`]).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// While Redis is left alone, let one call try it this often (default
    /// [`DEFAULT_PROBE_INTERVAL`]); its success brings every call back to Redis.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Hybrid mode: lease `batch` permits per key at a time and admit from them locally, handing
    /// back what is unused after `ttl`. See [the type's docs](RedisRateLimiter#hybrid-mode).
    pub fn lease(mut self, batch: u32, ttl: Duration) -> Self {
        self.lease = Some((batch, ttl));
        self
    }

    /// The limiter. It connects lazily, so it starts (under its failure policy) while Redis is
    /// down; it must be built inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad URL, a zero timeout, threshold, batch or lease time, a share
    /// outside (0, 1], an unknown hash-tag scope, a tier whose burst spans more than about 104
    /// days (the Redis script keeps nanoseconds in Lua's 53-bit integers), no Tokio runtime, or
    /// anything [`RateLimiterBuilder::build`] refuses.
    pub fn build(self) -> Result<RedisRateLimiter, ConfigError> {
        let definition = self.limits.build()?;
        tollgate_core::non_zero("redis.timeout", self.timeout)?;
        tollgate_core::non_zero("redis.probe_interval", self.probe_interval)?;
        if self.failure_threshold == 0 {
            return Err(ConfigError::new(
                "redis.failure_threshold",
                "must be at least 1",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "redis.prefix",
                "must be non-empty and free of '{' and '}' (they make Redis Cluster hash tags)",
            ));
        }
        let hash_tag = match &self.hash_tag_scope {
            None => None,
            Some(name) => Some(definition.scope(name).ok_or_else(|| {
                ConfigError::new(
                    "redis.hash_tag_scope",
                    format!("no scope is named {name:?}"),
                )
            })?),
        };
        for quota in definition.all_quotas() {
            let too_long = quota
                .tiers()
                .iter()
                .find(|tier| tier.window_nanos() > script::MAX_WINDOW_NANOS);
            if let Some(tier) = too_long {
                return Err(ConfigError::new(
                    format!("tiers.{tier}"),
                    "a tier's burst spans more than about 104 days of schedule, which the Redis store cannot hold exactly; use a shorter period or a smaller burst",
                ));
            }
        }
        let fallback = match self.policy {
            OnRedisFailure::Local { share } => {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(ConfigError::new(
                        "redis.on_failure.share",
                        format!("must be more than 0 and at most 1, got {share}"),
                    ));
                }
                Some(definition.scaled(share)?)
            }
            _ => None,
        };
        let leases = match self.lease {
            None => None,
            Some((0, _)) => {
                return Err(ConfigError::new("redis.lease.batch", "must be at least 1"));
            }
            Some((batch, ttl)) => {
                tollgate_core::non_zero("redis.lease.ttl", ttl)?;
                Some(Leases::new(batch, ttl))
            }
        };
        let connection =
            tollgate_core::redis::lazy_connection(&self.url, self.timeout, self.probe_interval)?;
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                definition,
                fallback,
                connection,
                script: redis::Script::new(script::SOURCE),
                prefix: self.prefix,
                hash_tag,
                timeout: self.timeout,
                policy: self.policy,
                health: Health::new(self.failure_threshold, self.probe_interval),
                leases,
                counts: counts::Counts::default(),
            }),
        })
    }
}

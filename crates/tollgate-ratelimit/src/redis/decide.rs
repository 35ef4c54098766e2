//! One decision in Redis: the script's invocation, its round trip under the timeout, and the
//! failure policy when Redis does not answer.

use std::{fmt, time::Duration};

use tollgate_core::{ErrorKind, LlmError, redis::Topology};

use super::{
    OnRedisFailure, RedisRateLimiter, Via,
    fallback::Gate,
    metrics::bump,
    script::{self, Invocation, Op, Reply},
};
use crate::{
    denial::{Denial, DenialReason},
    limiter::Scope,
    quota::{Amounts, Quota},
};

impl RedisRateLimiter {
    /// Decides one call by the script (or the failure policy), without counting it.
    pub(super) async fn decide(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> Result<(Via, u64), Denial> {
        let (via, decided) = self.decide_by(keys, amounts, op).await;
        decided.map(|granted| (via, granted))
    }

    /// [`decide`](Self::decide), saying who decided even when the answer is a refusal.
    pub(super) async fn decide_by(
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
            Ok(Reply::Refused {
                key,
                tier,
                wait,
                debt,
            }) => {
                let (scope, name) = &keys[key];
                let mut denial = self.inner.definition.make_denial(
                    *scope,
                    name.as_ref(),
                    DenialReason::Exhausted,
                    Some(tier),
                    amounts,
                    Some(Duration::from_nanos(wait)),
                );
                let calendar = denial
                    .tier()
                    .and_then(|(_, t)| t.calendar_period().cloned());
                if let Some(calendar) = calendar {
                    let ends = calendar.span(self.wall_now()).ends;
                    denial.0.period = Some((debt, crate::calendar::instant(ends)));
                }
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
    pub(super) fn invocation(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> Result<Invocation, Denial> {
        let definition = &self.inner.definition;
        if keys.len() > crate::quota::MAX_TARGETS {
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
        // On a Redis Cluster, a call whose keys would span slots is refused before it is sent.
        if self.inner.connection.topology() == Topology::Cluster && !self.one_slot(keys) {
            let (scope, key) = &keys[0];
            return Err(definition.make_denial(
                *scope,
                key.as_ref(),
                DenialReason::CrossSlot,
                None,
                amounts,
                None,
            ));
        }
        let mut invocation = Invocation::new(op);
        let wall = self.wall_now();
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
                quota.tiers(),
                wall,
                |tier| i128::from(tier.cost_nanos(amounts.get(tier.dimension()))),
            );
        }
        Ok(invocation)
    }

    /// Runs the script through the breaker and the timeout.
    pub(super) async fn run(&self, op: Op, invocation: &Invocation) -> Result<Reply, Failure> {
        let inner = &self.inner;
        let probe = match inner.breaker.gate() {
            Gate::Skip => return Err(Failure::Reply("Redis is left alone for now".into())),
            Gate::Try => None,
            Gate::Probe(guard) => Some(guard),
        };
        bump(&inner.counts.redis_calls, 1);
        let mut connection = inner.connection.clone();
        let call = invoke(&inner.script, invocation, &mut connection);
        let answer: Result<Vec<i64>, Failure> =
            match tokio::time::timeout(inner.timeout, call).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(error)) => {
                    bump(&inner.counts.redis_errors, 1);
                    Err(Failure::Error(error))
                }
                Err(_) => {
                    bump(&inner.counts.redis_timeouts, 1);
                    Err(Failure::Timeout)
                }
            };
        let parsed = answer.and_then(|reply| script::parse(op, &reply).map_err(Failure::Reply));
        match &parsed {
            Ok(_) => inner.breaker.succeeded(probe),
            Err(failure) => inner.breaker.failed(probe, failure),
        }
        parsed
    }

    /// What the policy says when Redis could not decide.
    pub(super) async fn on_failure(
        &self,
        keys: &[(Scope, impl AsRef<str>)],
        amounts: &Amounts,
        op: Op,
    ) -> Result<Via, Denial> {
        bump(&self.inner.counts.failure_decisions, 1);
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
}

/// Runs the script by its SHA, and by its source when the node has not seen it (`NOSCRIPT`, after
/// a restart, a failover or `SCRIPT FLUSH`). `EVAL` caches it on the node that holds the call's
/// keys; redis-rs's own `SCRIPT LOAD` would go to every master of a cluster at once, and fail for
/// as long as any one of them is unreachable.
async fn invoke(
    script: &redis::Script,
    invocation: &Invocation,
    connection: &mut tollgate_core::redis::RedisConnection,
) -> redis::RedisResult<Vec<i64>> {
    let call = |command: &str, script: &str| {
        let count = 3 + invocation.keys.len() + invocation.args.len();
        let mut call = redis::Cmd::with_capacity(count, 64 * count + script.len());
        call.arg(command).arg(script).arg(invocation.keys.len());
        for key in &invocation.keys {
            call.arg(key);
        }
        for arg in &invocation.args {
            call.arg(arg);
        }
        call
    };
    match call("EVALSHA", script.get_hash())
        .query_async(connection)
        .await
    {
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            call("EVAL", script::SOURCE).query_async(connection).await
        }
        answer => answer,
    }
}

/// Why a script call produced no answer.
pub(super) enum Failure {
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

/// The first tier `amounts` can never fit in, checked before any round trip.
pub(super) fn never_fits(quota: &Quota, amounts: &Amounts) -> Option<usize> {
    quota
        .tiers()
        .iter()
        .position(|tier| tier.cost_nanos(amounts.get(tier.dimension())) > tier.window_nanos())
}

pub(super) fn unavailable(failure: Failure) -> LlmError {
    LlmError::new(
        ErrorKind::Unavailable,
        format!("the rate-limit store (Redis) did not answer: {failure}"),
    )
}

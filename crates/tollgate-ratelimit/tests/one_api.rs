//! One API over both stores: the same calls through [`Limiter`], on a limiter in this process and
//! on Redis in each topology, give the same answers. Redis keeps its own clock, so the quota
//! refills slowly enough (per hour) that the milliseconds a test takes cannot add a permit.

use std::time::Duration;

use tollgate_ratelimit::{Amounts, DenialReason, Dimension, Limiter, Quota, RateLimiter, Tier};

const HOUR: Duration = Duration::from_secs(3_600);

fn quota() -> Quota {
    Quota::new([Tier::requests(3, HOUR), Tier::tokens(1_000, HOUR)]).unwrap()
}

/// Every operation of the one API, in an order whose figures are exact on either store.
async fn the_same_calls_give_the_same_answers(limiter: Limiter) {
    let tenant = limiter.scope("tenant").unwrap();
    assert_eq!(limiter.scope_names().collect::<Vec<_>>(), ["tenant"]);
    let acme = [(tenant, "acme")];
    let call = |tokens| Amounts::requests(1).with_tokens(tokens);
    let left =
        |status: tollgate_ratelimit::Status| (status.tiers[0].remaining, status.tiers[1].remaining);

    // Nothing held yet: every tier is full, and a reset finds nothing to forget.
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (3, 1_000)
    );
    assert!(!limiter.reset(tenant, "acme").await.unwrap());

    // A check takes nothing; an admission takes the call from every tier.
    limiter.check(&acme, call(400)).await.unwrap();
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (3, 1_000)
    );
    limiter.check_and_consume(&acme, call(400)).await.unwrap();
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (2, 600)
    );

    // Settled at 100 of the 400 reserved: 300 tokens come back, the request stays counted.
    limiter.reconcile(&acme, call(400), call(100)).await;
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (2, 900)
    );
    // Settled past the reservation: the difference is charged.
    limiter.reconcile(&acme, call(0), call(250)).await;
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (2, 650)
    );

    // A refused call names its tier and takes nothing anywhere.
    let denial = limiter
        .check_and_consume(&acme, call(700))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Exhausted);
    assert_eq!(denial.tier().unwrap().1.dimension(), Dimension::Tokens);
    assert_eq!(denial.key(), "acme");
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (2, 650)
    );
    // One that can never fit says so, at once, without waiting.
    let denial = limiter.acquire(&acme, call(5_000), HOUR).await.unwrap_err();
    assert_eq!(denial.reason(), DenialReason::TooLarge);

    // With room, a wait is no wait.
    assert_eq!(
        limiter.acquire(&acme, call(50), HOUR).await.unwrap(),
        Duration::ZERO
    );
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (1, 600)
    );

    // Consumed without asking, into debt; then given back.
    limiter.consume(&acme, Amounts::requests(2)).await;
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (0, 600)
    );
    let denial = limiter.check(&acme, call(1)).await.unwrap_err();
    assert_eq!(denial.tier().unwrap().1.dimension(), Dimension::Requests);
    limiter.refund(&acme, Amounts::requests(1)).await;
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (0, 600)
    );
    limiter.refund(&acme, Amounts::requests(1)).await;
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (1, 600)
    );

    // Another key was never touched; a reset forgets this one.
    assert_eq!(
        left(limiter.status(tenant, "globex").await.unwrap()),
        (3, 1_000)
    );
    assert!(limiter.reset(tenant, "acme").await.unwrap());
    assert_eq!(
        left(limiter.status(tenant, "acme").await.unwrap()),
        (3, 1_000)
    );
}

#[tokio::test]
async fn in_this_process() {
    let limiter = RateLimiter::builder()
        .scope("tenant", quota())
        .build()
        .unwrap();
    let limiter = Limiter::from(limiter);
    let tenant = limiter.scope("tenant").unwrap();
    assert!(limiter.status_now(tenant, "acme").is_some());
    the_same_calls_give_the_same_answers(limiter).await;
}

#[cfg(feature = "redis")]
mod redis {
    use tollgate_ratelimit::{Limiter, OnRedisFailure, RedisRateLimiter};
    use tollgate_testkit::{TestRedis, Topology, each_topology};

    async fn through_redis(topology: Topology) {
        let Some(redis) = TestRedis::start(topology) else {
            return;
        };
        let limiter = RedisRateLimiter::builder(redis.target())
            .scope("tenant", super::quota())
            // Fail closed, and patient: any trouble with Redis fails the test loudly rather
            // than being decided by a fallback.
            .timeout(std::time::Duration::from_secs(5))
            .on_failure(OnRedisFailure::FailClosed)
            .build()
            .unwrap();
        let limiter = Limiter::from(limiter);
        let tenant = limiter.scope("tenant").unwrap();
        assert!(limiter.status_now(tenant, "acme").is_none());
        super::the_same_calls_give_the_same_answers(limiter).await;
    }
    each_topology!(through_redis, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);
}

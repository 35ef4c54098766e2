//! What the Redis limiter's test files share: quotas, a fail-closed builder, and a hammer.
#![allow(dead_code, unreachable_pub)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tollgate_ratelimit::{
    Amounts, DenialReason, OnRedisFailure, Quota, RedisRateLimiter, RedisRateLimiterBuilder, Tier,
};
use tollgate_testkit::TestRedis;

pub const HOUR: Duration = Duration::from_secs(3_600);
pub const DAY: Duration = Duration::from_secs(86_400);
/// Long enough that a loaded CI machine never turns a slow answer into a failure-policy decision
/// in tests that count exact admissions.
pub const PATIENT: Duration = Duration::from_secs(5);
/// How long a test waits for background work (leases handed back, settlements) before it fails:
/// generous, as CI's two cores run every test at once.
pub const BACKGROUND: Duration = Duration::from_secs(60);

pub fn quota(tiers: impl IntoIterator<Item = Tier>) -> Quota {
    Quota::new(tiers).expect("valid quota")
}

/// A fail-closed limiter with one scope, `tenant`, so any Redis trouble fails the test loudly.
pub fn builder(redis: &TestRedis, quota: Quota) -> RedisRateLimiterBuilder {
    RedisRateLimiter::builder(redis.target())
        .scope("tenant", quota)
        .timeout(PATIENT)
        .on_failure(OnRedisFailure::FailClosed)
}

/// Hammers `key` with `attempts` calls from `tasks` concurrent tasks; returns how many were admitted.
pub async fn hammer(limiter: &RedisRateLimiter, key: &str, tasks: usize, attempts: usize) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (limiter, admitted, key) = (limiter.clone(), admitted.clone(), key.to_owned());
        handles.push(tokio::spawn(async move {
            let tenant = limiter.scope("tenant").unwrap();
            for _ in 0..attempts {
                match limiter
                    .check_and_consume(&[(tenant, &key)], Amounts::requests(1))
                    .await
                {
                    Ok(()) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(denial) => assert_eq!(denial.reason(), DenialReason::Exhausted, "{denial}"),
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    admitted.load(Ordering::Relaxed)
}

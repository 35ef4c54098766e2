//! Calendar budgets shared through Redis: one period's spend counted atomically by every process,
//! a fresh field each period, and the period read from the processes' own (here, a test) clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tollgate_core::{ErrorKind, MicroUsd, clock::ManualClock};
use tollgate_ratelimit::{
    Amounts, Calendar, DenialReason, Dimension, Period, RateLimiter, RedisRateLimiter, Tier,
};
use tollgate_testkit::{Reply, TestRedis, Topology, each_topology};

mod redis_support;

use redis_support::*;

const DOLLAR: u64 = 1_000_000;
/// A UTC month's calendar in a field's name: the FNV-1a hash of `month/UTC`.
const MONTH_UTC: u64 = 13_134_910_167_823_832_756;
/// 2026-12-31T23:59:00Z.
const NEW_YEARS_EVE: u64 = 1_798_761_540;

fn limiter(redis: &TestRedis, clock: &ManualClock) -> RedisRateLimiter {
    let monthly = Tier::calendar(Dimension::Cost, DOLLAR, Calendar::utc(Period::Month));
    RedisRateLimiter::builder(redis.target())
        .limits(
            RateLimiter::builder()
                .scope("team", quota([monthly]))
                .clock(clock.clone())
                .wall_time(SystemTime::UNIX_EPOCH + Duration::from_secs(NEW_YEARS_EVE)),
        )
        .prefix("cal")
        .timeout(PATIENT)
        .on_failure(tollgate_ratelimit::OnRedisFailure::FailClosed)
        .build()
        .unwrap()
}

/// Spends $0.01 a call from `tasks` tasks on each limiter at once; returns the calls admitted.
async fn spend_cents(limiters: &[RedisRateLimiter], tasks: usize, calls: usize) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for limiter in limiters {
        for _ in 0..tasks {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            handles.push(tokio::spawn(async move {
                let team = limiter.scope("team").unwrap();
                for _ in 0..calls {
                    let cent = Amounts::requests(1).with_cost(MicroUsd(10_000));
                    match limiter.check_and_consume(&[(team, "acme")], cent).await {
                        Ok(()) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(denial) => {
                            assert_eq!(denial.reason(), DenialReason::Exhausted, "{denial}");
                        }
                    }
                }
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    admitted.load(Ordering::Relaxed)
}

fn fields(redis: &TestRedis, key: &str) -> Vec<String> {
    match redis.command(&["HKEYS", key]).unwrap() {
        Reply::Array(items) => {
            let mut names: Vec<String> = items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(bytes) => String::from_utf8(bytes).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect();
            names.sort();
            names
        }
        other => panic!("{other:?}"),
    }
}

async fn two_processes_share_one_months_budget_and_the_next_month_starts_afresh(
    topology: Topology,
) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let clock = ManualClock::new();
    let (a, b) = (limiter(&redis, &clock), limiter(&redis, &clock));
    assert_eq!(spend_cents(&[a.clone(), b.clone()], 8, 20).await, 100);

    let team = a.scope("team").unwrap();
    let denial = b
        .check_and_consume(&[(team, "acme")], Amounts::cost(MicroUsd(1)))
        .await
        .unwrap_err();
    assert_eq!(denial.kind(), ErrorKind::BudgetExceeded);
    let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(NEW_YEARS_EVE + 60);
    assert_eq!(denial.period(), Some((DOLLAR, new_year)));
    assert_eq!(denial.retry_after(), Some(Duration::from_secs(60)));
    let status = a.status(team, "acme").await.unwrap();
    assert_eq!(status.tiers[0].remaining, 0);
    assert_eq!(status.tiers[0].resets_in, Duration::from_secs(60));
    // The month's spend is kept past the month's end (an hour, for clocks a little behind).
    let ttl = match redis.command(&["PTTL", "cal:{team:acme}"]).unwrap() {
        Reply::Integer(ms) => ms,
        other => panic!("{other:?}"),
    };
    assert!(ttl > 3_600_000 && ttl <= 3_660_000, "{ttl}");

    // January: the whole budget again, in a field of its own.
    clock.advance(Duration::from_secs(60));
    assert_eq!(spend_cents(&[a.clone(), b.clone()], 8, 20).await, 100);
    // Months since January 1970: December 2026 is 683.
    assert_eq!(
        fields(&redis, "cal:{team:acme}"),
        [
            format!("C:683:{MONTH_UTC}"),
            format!("C:684:{MONTH_UTC}"),
            "at".into()
        ]
    );

    // February's first call drops December's field and keeps January's.
    clock.advance(Duration::from_secs(31 * 86_400));
    a.check_and_consume(&[(team, "acme")], Amounts::cost(MicroUsd(5)))
        .await
        .unwrap();
    assert_eq!(
        fields(&redis, "cal:{team:acme}"),
        [
            format!("C:684:{MONTH_UTC}"),
            format!("C:685:{MONTH_UTC}"),
            "at".into()
        ]
    );
    assert_eq!(
        a.status(team, "acme").await.unwrap().tiers[0].remaining,
        DOLLAR - 5
    );

    // Raised to $2 on both processes while the month runs, the budget keeps what it spent.
    let doubled = quota([Tier::calendar(
        Dimension::Cost,
        2 * DOLLAR,
        Calendar::utc(Period::Month),
    )]);
    for limiter in [&a, &b] {
        limiter
            .set_quotas(team, [("acme".to_owned(), Some(doubled.clone()))])
            .unwrap();
    }
    assert_eq!(
        b.status(team, "acme").await.unwrap().tiers[0].remaining,
        2 * DOLLAR - 5
    );
    b.check_and_consume(&[(team, "acme")], Amounts::cost(MicroUsd(2 * DOLLAR - 5)))
        .await
        .unwrap();
    assert!(
        a.check_and_consume(&[(team, "acme")], Amounts::cost(MicroUsd(1)))
            .await
            .is_err()
    );
}
each_topology!(two_processes_share_one_months_budget_and_the_next_month_starts_afresh, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

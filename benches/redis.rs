//! The Redis rate limiter against a local redis-server (started by the bench on a free port),
//! beside the floor: the same Lua script sent raw by redis-rs (`EVALSHA` through a
//! `ConnectionManager`) with the same keys and arguments, in the same run.
//!
//! - `redis_limiter/<callers>`: decisions per second with 1, 16 and 64 concurrent callers on one
//!   key, for `raw_evalsha` (the floor), `tollgate` (direct mode: one script call per decision)
//!   and `tollgate_hybrid` (leases of 100 permits). Criterion's time is wall time per decision;
//!   its throughput line is decisions per second.
//!
//! Before the timings it prints hybrid mode's over-admission: four hybrid limiters (four
//! connections, as four processes would have) with 64 callers hammer one key whose quota refills
//! during the run, and the admitted count is compared with the most the quota itself allows
//! over the run (its burst plus its rate times the elapsed time).
//!
//! Run: `cargo bench -p tollgate-benches --bench redis` (needs `redis-server` on the PATH).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput};
use tollgate::ratelimit::{Amounts, OnRedisFailure, Quota, RedisRateLimiter, Tier};
use tollgate_testkit::RedisServer;

const HOUR: Duration = Duration::from_secs(3_600);
/// A billion an hour: never refused during a run.
const LIMIT: u64 = 1_000_000_000;
/// Leases of a thousand: four processes could run 4,000 permits ahead of the quota within a
/// window, 0.0004% of this quota and 1% of the over-admission run's burst.
const LEASE: u32 = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn limiter(redis: &RedisServer, quota: Quota, lease: Option<u32>) -> RedisRateLimiter {
    let mut builder = RedisRateLimiter::builder(redis.url())
        .scope("tenant", quota)
        .timeout(Duration::from_secs(5))
        .on_failure(OnRedisFailure::FailClosed);
    if let Some(batch) = lease {
        builder = builder.lease(batch, Duration::from_secs(1));
    }
    builder.build().expect("builds")
}

/// Runs `total` calls of `one` spread over `callers` tasks; returns the wall time.
async fn spread<F, Fut>(callers: u64, total: u64, one: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let one = one.clone();
            let share = total / callers + u64::from(i < total % callers);
            tokio::spawn(async move {
                for _ in 0..share {
                    one().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    started.elapsed()
}

fn over_admission(redis: &RedisServer, runtime: &tokio::runtime::Runtime) {
    // 4,000,000 an hour with a burst of 400,000: the run spends the burst, then lives on the refill.
    let (burst, limit) = (400_000u64, 4_000_000u64);
    let quota = Quota::new([Tier::requests(limit, HOUR).with_burst(burst)]).expect("valid");
    let (processes, batch, calls) = (4, LEASE, 10_000);
    let (admitted, elapsed) = runtime.block_on(async {
        let limiters: Vec<_> = (0..processes)
            .map(|_| limiter(redis, quota.clone(), Some(batch)))
            .collect();
        let admitted = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let callers: Vec<_> = (0..64)
            .map(|i| {
                let limiter = limiters[i % processes].clone();
                let admitted = admitted.clone();
                tokio::spawn(async move {
                    let tenant = limiter.scope("tenant").expect("scope");
                    for _ in 0..calls {
                        if limiter
                            .check_and_consume(&[(tenant, "hot")], Amounts::requests(1))
                            .await
                            .is_ok()
                        {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller");
        }
        (admitted.load(Ordering::Relaxed), started.elapsed())
    });
    let allowed = burst as f64 + limit as f64 * elapsed.as_secs_f64() / 3_600.0;
    let over = (admitted as f64 - allowed).max(0.0);
    let bound = processes as u64 * u64::from(batch);
    println!(
        "hybrid over-admission: {processes} limiters × lease {batch}, 64 callers × {calls} calls in {:.2}s: \
         admitted {admitted}, the quota allows {allowed:.0} → over by {over:.0} ({:.3}% of the burst); \
         the bound within any window is {bound} permits ({:.1}% of the burst)",
        elapsed.as_secs_f64(),
        100.0 * over / burst as f64,
        100.0 * bound as f64 / burst as f64,
    );
}

fn main() {
    let Some(redis) = RedisServer::start() else {
        println!("skipped: redis-server is not installed");
        return;
    };
    let runtime = runtime();
    over_admission(&redis, &runtime);

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let quota = Quota::new([Tier::requests(LIMIT, HOUR)]).expect("valid");
    let (direct, hybrid) = runtime.block_on(async {
        (
            limiter(&redis, quota.clone(), None),
            limiter(&redis, quota.clone(), Some(LEASE)),
        )
    });
    let tier = quota.tiers()[0].clone();
    let interval = (tier.period().as_nanos() / u128::from(tier.limit())) as u64;
    let window = interval * tier.burst();
    // The same key, field and arguments the limiter sends for one request of this quota.
    let raw = Arc::new((
        redis::Script::new(RedisRateLimiter::script()),
        runtime.block_on(async {
            redis::aio::ConnectionManager::new(redis::Client::open(redis.url()).expect("url"))
                .await
                .expect("connects")
        }),
    ));
    let field = format!("r:{interval}:{window}");

    let mut group = criterion.benchmark_group("redis_limiter");
    group.throughput(Throughput::Elements(1));
    for callers in [1u64, 16, 64] {
        group.bench_function(BenchmarkId::new("raw_evalsha", callers), |b| {
            b.iter_custom(|iters| {
                let (raw, field) = (raw.clone(), field.clone());
                runtime.block_on(spread(callers, iters, move || {
                    let (raw, field) = (raw.clone(), field.clone());
                    async move {
                        let mut connection = raw.1.clone();
                        let reply: Vec<i64> = raw
                            .0
                            .key("tollgate:rl:{tenant:raw}")
                            .arg("a")
                            .arg(0)
                            .arg(1)
                            .arg(&field)
                            .arg(interval)
                            .arg(window)
                            // A rolling tier: no calendar period.
                            .arg(0)
                            .invoke_async(&mut connection)
                            .await
                            .expect("answers");
                        assert_eq!(reply, [1]);
                    }
                }))
            })
        });
        for (name, limiter) in [("tollgate", &direct), ("tollgate_hybrid", &hybrid)] {
            group.bench_function(BenchmarkId::new(name, callers), |b| {
                b.iter_custom(|iters| {
                    let limiter = limiter.clone();
                    runtime.block_on(spread(callers, iters, move || {
                        let limiter = limiter.clone();
                        async move {
                            let tenant = limiter.scope("tenant").expect("scope");
                            limiter
                                .check_and_consume(&[(tenant, "bench")], Amounts::requests(1))
                                .await
                                .expect("admitted");
                        }
                    }))
                })
            });
        }
    }
    group.finish();
    criterion.final_summary();
}

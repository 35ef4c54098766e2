//! RedisRateLimiter through a master's failover, on a real Redis Cluster with replicas and on a
//! real Sentinel setup, and the slot rules a cluster imposes. Real time: failovers take seconds.
#![cfg(feature = "redis")]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::RwLock;

use tollgate_core::{
    ErrorKind, LlmError,
    redis::{RedisTarget, SentinelTarget},
};
use tollgate_ratelimit::{
    Amounts, Backend, DenialReason, OnRedisFailure, Quota, RedisRateLimiter, Tier,
};
use tollgate_testkit::{MASTER_NAME, RedisCluster, RedisSentinel, Reply};

/// A quota that does not refill within a test: one permit every 3.6 s.
fn quota(limit: u64) -> Quota {
    Quota::new([Tier::requests(limit, Duration::from_secs(3_600 * limit))]).unwrap()
}

/// What the callers saw.
#[derive(Default)]
struct Seen {
    admitted: AtomicU64,
    exhausted: AtomicU64,
    failed: AtomicU64,
}

/// `callers` tasks per limiter, each calling for `key` every 2 ms until `stop`. Each call holds
/// `gate` open for reading: whoever holds it for writing has every call finished and none begun.
fn load(
    limiters: &[RedisRateLimiter],
    key: &'static str,
    callers: usize,
    seen: &Arc<Seen>,
    gate: &Arc<RwLock<()>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for limiter in limiters {
        for _ in 0..callers {
            let (limiter, seen, gate, stop) =
                (limiter.clone(), seen.clone(), gate.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let tenant = limiter.scope("tenant").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    {
                        let _open = gate.read().await;
                        match limiter
                            .check_and_consume(&[(tenant, key)], Amounts::requests(1))
                            .await
                        {
                            Ok(()) => seen.admitted.fetch_add(1, Ordering::Relaxed),
                            Err(denial) if denial.reason() == DenialReason::Exhausted => {
                                seen.exhausted.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(_) => seen.failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
    }
    tasks
}

/// Waits up to 30 s for `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened within 30s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn limiter(target: RedisTarget, limit: u64, share: f64) -> RedisRateLimiter {
    RedisRateLimiter::builder(target)
        .scope("tenant", quota(limit))
        .timeout(Duration::from_millis(50))
        .on_failure(OnRedisFailure::Local { share })
        .failure_threshold(3)
        .probe_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_hot_keys_master_fails_no_call_and_the_shared_quota_returns_after_promotion() {
    let Some(mut cluster) = RedisCluster::with_replicas() else {
        return;
    };
    // Two processes' limiters, each holding a quarter of the quota locally while Redis is away.
    let (limit, share) = (300, 0.25);
    let limiters: Vec<_> = (0..2)
        .map(|_| limiter(RedisTarget::Cluster(cluster.urls()), limit, share))
        .collect();
    let (seen, gate, stop) = (
        Arc::new(Seen::default()),
        Arc::new(RwLock::new(())),
        Arc::new(AtomicBool::new(false)),
    );
    let tasks = load(&limiters, "hot", 4, &seen, &gate, &stop);
    until("100 calls admitted through Redis", || {
        seen.admitted.load(Ordering::Relaxed) >= 100
    })
    .await;
    assert!(limiters.iter().all(|l| l.backend() == Backend::Redis));

    // The replica has every decision so far (Redis replicates asynchronously; what it would miss
    // is the documented extra), then its master dies under load.
    // Every call in flight finishes, and none begins, until the master is dead.
    let closed = gate.write().await;
    let hot = cluster.master_of("tollgate:rl:{tenant:hot}");
    let synced = cluster.node_command(hot, &["WAIT", "1", "5000"]).unwrap();
    assert_eq!(synced, Reply::Integer(1));
    cluster.kill_node(hot);
    drop(closed);
    until("both limiters decide locally", || {
        limiters.iter().all(|l| l.backend() == Backend::Fallback)
    })
    .await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_for_failover(hot);
        cluster
    })
    .await
    .unwrap();
    until("both limiters are back on Redis", || {
        limiters.iter().all(|l| l.backend() == Backend::Redis)
    })
    .await;
    // Back on the shared quota, which the callers spend to the last permit.
    let tenant = limiters[0].scope("tenant").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while limiters[0].status(tenant, "hot").await.unwrap().tiers[0].remaining > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the quota is spent within 30s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    // Redis refuses every process now.
    for limiter in &limiters {
        let denial = limiter
            .check_and_consume(&[(tenant, "hot")], Amounts::requests(1))
            .await
            .unwrap_err();
        assert_eq!(denial.reason(), DenialReason::Exhausted);
        assert_eq!(limiter.backend(), Backend::Redis);
    }

    assert_eq!(seen.failed.load(Ordering::Relaxed), 0, "no call failed");
    let admitted = seen.admitted.load(Ordering::Relaxed);
    let bound = limit + 2 * (share * limit as f64) as u64;
    println!(
        "admitted {admitted} (bound {bound}), refused {}",
        seen.exhausted.load(Ordering::Relaxed)
    );
    assert!(
        (limit..=bound).contains(&admitted),
        "admitted {admitted}: the quota {limit} plus at most 2 × {share} of it while away"
    );
    for limiter in &limiters {
        let metrics = limiter.metrics();
        assert_eq!(
            (metrics.switched_to_fallback, metrics.switched_to_redis),
            (1, 1)
        );
        assert!(metrics.failure_decisions > 0);
    }
    // The connection saw the master replaced, and counted it once.
    until("the switch is counted", || {
        limiters
            .iter()
            .all(|l| l.connection().master_switches() >= 1)
    })
    .await;
    for limiter in &limiters {
        assert_eq!(limiter.connection().master_switches(), 1);
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_names_a_new_master_and_the_limiter_follows_it_without_a_restart() {
    let Some(mut sentinel) = RedisSentinel::with_replica() else {
        return;
    };
    let target = RedisTarget::Sentinel(SentinelTarget::new(MASTER_NAME, sentinel.urls()));
    let limiter = self::limiter(target, 100, 0.5);
    let tenant = limiter.scope("tenant").unwrap();
    for _ in 0..10 {
        limiter
            .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
            .await
            .unwrap();
    }
    assert_eq!(limiter.metrics().redis_calls, 10);
    assert_eq!(
        sentinel.command(&["WAIT", "1", "5000"]).unwrap(),
        Reply::Integer(1)
    );
    let old = sentinel.kill_master();
    let sentinel = tokio::task::spawn_blocking(move || {
        sentinel.wait_for_new_master(old);
        sentinel
    })
    .await
    .unwrap();
    // Calls go on (decided locally while the master is away) until they reach the new master.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while limiter.connection().master_switches() == 0 || limiter.backend() != Backend::Redis {
        assert!(std::time::Instant::now() < deadline, "followed within 30s");
        limiter
            .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
            .await
            .expect("no call fails while the master is replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limiter.connection().master_switches(), 1);
    // The new master holds the old one's decisions, and takes new ones: a process that starts
    // now sees what this one sees.
    let left = limiter.status(tenant, "acme").await.unwrap().tiers[0].remaining;
    assert!(
        left <= 90,
        "{left} left: the ten decided before the failover stay spent"
    );
    limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    let fresh = self::limiter(
        RedisTarget::Sentinel(SentinelTarget::new(MASTER_NAME, sentinel.urls())),
        100,
        0.5,
    );
    assert_eq!(
        fresh.status(tenant, "acme").await.unwrap().tiers[0].remaining,
        left - 1
    );
}

#[test]
fn on_a_cluster_several_scopes_without_a_hash_tag_scope_are_refused_at_build() {
    let cluster = RedisTarget::cluster(["redis://127.0.0.1:7000/"]);
    let error = RedisRateLimiter::builder(cluster)
        .scope("user", quota(10))
        .scope("org", quota(100))
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "redis.hash_tag_scope");
    assert!(
        error.reason().contains(
            "a call limited by the scopes `user`, `org` would check keys in different slots"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_call_whose_keys_would_span_slots_is_refused_before_it_is_sent() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let limiter = RedisRateLimiter::builder(RedisTarget::Cluster(cluster.urls()))
        .scope("user", quota(10))
        .scope("org", quota(100))
        .scope("model", quota(1_000))
        .hash_tag_scope("org")
        .timeout(Duration::from_secs(5))
        .on_failure(OnRedisFailure::FailClosed)
        .build()
        .unwrap();
    let scope = |name| limiter.scope(name).unwrap();
    let (user, org, model) = (scope("user"), scope("org"), scope("model"));
    // With the organization named, every key is in its slot.
    limiter
        .check_and_consume(
            &[(user, "alice"), (org, "acme"), (model, "gpt-4o")],
            Amounts::requests(1),
        )
        .await
        .unwrap();
    // One key alone is one slot.
    limiter
        .check_and_consume(&[(model, "gpt-4o")], Amounts::requests(1))
        .await
        .unwrap();
    let calls = limiter.metrics().redis_calls;
    let denial = limiter
        .check_and_consume(&[(user, "alice"), (model, "gpt-4o")], Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::CrossSlot);
    assert_eq!(limiter.metrics().redis_calls, calls, "nothing was sent");
    let error = LlmError::from(denial);
    assert_eq!(error.kind(), ErrorKind::Internal);
    assert!(error.to_string().contains("hash_tag_scope"), "{error}");
}

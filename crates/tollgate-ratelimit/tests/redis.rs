//! RedisRateLimiter against a real Redis started on free ports by the test fixture: each test runs
//! on one server, on a three-master Redis Cluster and behind Sentinel.
//!
//! These tests use real time (Redis keeps its own clock), so every quota here refills slowly
//! enough (per hour or per day) that the few milliseconds a test takes cannot add a permit.
#![cfg(feature = "redis")]

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tollgate_core::redis::RedisTarget;
use tollgate_core::{ByTenant, ErrorKind, LlmError, LlmRequest, Message, SimulatedProvider};
use tollgate_ratelimit::{
    Amounts, Backend, DenialReason, OnRedisFailure, Quota, RateLimitLayer, RateLimiter,
    RedisRateLimiter, RedisRateLimiterBuilder, Tier,
};
use tollgate_testkit::{TestRedis, Topology, each_topology};
use tower::{Service, ServiceExt};

mod redis_support;

use redis_support::*;

async fn two_limiters_on_two_connections_admit_exactly_the_quota(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let quota = quota([Tier::requests(100, HOUR)]);
    let a = builder(&redis, quota.clone()).build().unwrap();
    let b = builder(&redis, quota).build().unwrap();
    let (left, right) = tokio::join!(hammer(&a, "acme", 8, 40), hammer(&b, "acme", 8, 40));
    assert_eq!(left + right, 100, "{left} + {right}");
    for limiter in [&a, &b] {
        let metrics = limiter.metrics();
        assert_eq!(metrics.redis_errors + metrics.redis_timeouts, 0);
        assert_eq!(metrics.failure_decisions, 0);
    }
    assert_eq!(a.metrics().allowed + b.metrics().allowed, 100);
    assert_eq!(a.metrics().denied + b.metrics().denied, 640 - 100);
}
each_topology!(two_limiters_on_two_connections_admit_exactly_the_quota, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

async fn every_tier_of_every_key_is_consumed_together_or_not_at_all(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = RedisRateLimiter::builder(redis.target())
        .scope(
            "user",
            quota([Tier::requests(5, HOUR), Tier::requests(20, DAY)]),
        )
        .scope("org", quota([Tier::requests(8, HOUR)]))
        // A call names a user and its organization: on a cluster, in the organization's slot.
        .hash_tag_scope("org")
        .timeout(PATIENT)
        .on_failure(OnRedisFailure::FailClosed)
        .build()
        .unwrap();
    let (user, org) = (
        limiter.scope("user").unwrap(),
        limiter.scope("org").unwrap(),
    );
    for _ in 0..5 {
        limiter
            .check_and_consume(&[(user, "alice"), (org, "acme")], Amounts::requests(1))
            .await
            .unwrap();
    }
    // Alice's hour tier refuses, naming itself; nothing is taken from the organization.
    let denial = limiter
        .check_and_consume(&[(user, "alice"), (org, "acme")], Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!((denial.scope(), denial.key()), ("user", "alice"));
    assert_eq!(denial.tier().map(|(i, _)| i), Some(0));
    assert_eq!(denial.reason(), DenialReason::Exhausted);
    let after = denial.retry_after().unwrap();
    assert!(
        after > Duration::from_secs(700) && after <= Duration::from_secs(720),
        "{after:?}"
    );
    let remaining = |status: tollgate_ratelimit::Status| {
        status.tiers.iter().map(|t| t.remaining).collect::<Vec<_>>()
    };
    assert_eq!(
        remaining(limiter.status_under(user, "alice", "acme").await.unwrap()),
        [0, 15]
    );
    assert_eq!(remaining(limiter.status(org, "acme").await.unwrap()), [3]);

    // Bob is refused by the organization after 3; his own tiers keep what the refusal did not take.
    for _ in 0..3 {
        limiter
            .check_and_consume(&[(user, "bob"), (org, "acme")], Amounts::requests(1))
            .await
            .unwrap();
    }
    let denial = limiter
        .check_and_consume(&[(user, "bob"), (org, "acme")], Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!((denial.scope(), denial.key()), ("org", "acme"));
    assert_eq!(
        remaining(limiter.status_under(user, "bob", "acme").await.unwrap()),
        [2, 17]
    );

    // A call larger than a tier's burst is refused without a round trip.
    let calls = limiter.metrics().redis_calls;
    let denial = limiter
        .check_and_consume(&[(user, "carol")], Amounts::requests(6))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::TooLarge);
    assert_eq!(limiter.metrics().redis_calls, calls);

    assert!(limiter.reset_under(user, "alice", "acme").await.unwrap());
    assert_eq!(
        remaining(limiter.status_under(user, "alice", "acme").await.unwrap()),
        [5, 20]
    );
}
each_topology!(every_tier_of_every_key_is_consumed_together_or_not_at_all);

async fn tokens_are_reconciled_in_one_script(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = builder(&redis, quota([Tier::tokens(8_640, DAY)]))
        .build()
        .unwrap();
    let tenant = limiter.scope("tenant").unwrap();
    let keys = [(tenant, "acme")];
    limiter
        .check_and_consume(&keys, Amounts::tokens(1_000))
        .await
        .unwrap();
    let remaining = || async { limiter.status(tenant, "acme").await.unwrap().tiers[0].remaining };
    assert_eq!(remaining().await, 7_640);
    limiter
        .reconcile(&keys, Amounts::tokens(1_000), Amounts::tokens(300))
        .await;
    assert_eq!(remaining().await, 8_340);
    limiter
        .reconcile(&keys, Amounts::tokens(300), Amounts::tokens(2_300))
        .await;
    assert_eq!(remaining().await, 6_340);
    limiter.refund(&keys, Amounts::tokens(100_000)).await;
    assert_eq!(
        remaining().await,
        8_640,
        "a refund never passes a full tier"
    );
}
each_topology!(tokens_are_reconciled_in_one_script);

async fn noscript_after_script_flush_is_recovered(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = builder(&redis, quota([Tier::requests(3, HOUR)]))
        .build()
        .unwrap();
    let tenant = limiter.scope("tenant").unwrap();
    limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    redis.command(&["SCRIPT", "FLUSH"]).unwrap();
    limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    let denial = limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Exhausted);
    assert_eq!(limiter.metrics().redis_errors, 0);
    assert_eq!(limiter.metrics().failure_decisions, 0);
}
each_topology!(noscript_after_script_flush_is_recovered);

async fn keys_expire_once_every_tier_is_full_again_and_carry_a_hash_tag(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = RedisRateLimiter::builder(redis.target())
        .scope("user", quota([Tier::requests(10, HOUR)]))
        .scope("org", quota([Tier::requests(100, DAY)]))
        .prefix("app")
        .hash_tag_scope("org")
        .timeout(PATIENT)
        .build()
        .unwrap();
    let (user, org) = (
        limiter.scope("user").unwrap(),
        limiter.scope("org").unwrap(),
    );
    limiter
        .check_and_consume(&[(user, "a{l}ice"), (org, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    let ttl = |key: &str| match redis.command(&["PTTL", key]).unwrap() {
        tollgate_testkit::Reply::Integer(ms) => ms,
        other => panic!("{other:?}"),
    };
    // One request of 10 an hour is 6 minutes of schedule; one of 100 a day, 14.4 minutes.
    let user_ttl = ttl("app:{org:acme}:user:a%7Bl%7Dice");
    assert!(user_ttl > 359_000 && user_ttl <= 360_000, "{user_ttl}");
    let org_ttl = ttl("app:{org:acme}");
    assert!(org_ttl > 863_000 && org_ttl <= 864_000, "{org_ttl}");
    // Alice's state lives under her organization's tag: ask for it there.
    let alice = limiter.status_under(user, "a{l}ice", "acme").await.unwrap();
    assert_eq!(alice.tiers[0].remaining, 9);
    assert_eq!(
        limiter.status(user, "a{l}ice").await.unwrap().tiers[0].remaining,
        10
    );
    assert!(limiter.reset_under(user, "a{l}ice", "acme").await.unwrap());
    assert_eq!(ttl("app:{org:acme}:user:a%7Bl%7Dice"), -2, "gone");
}
each_topology!(keys_expire_once_every_tier_is_full_again_and_carry_a_hash_tag);

async fn fallback_policy_keeps_every_call_going_while_redis_is_down_and_returns_by_itself(
    topology: Topology,
) {
    let Some(mut redis) = TestRedis::start(topology) else {
        return;
    };
    // A quota no caller can spend while Redis is away, however long a cluster takes to re-form,
    // refilling one permit every 3.6 ms.
    let limiter = RedisRateLimiter::builder(redis.target())
        .scope(
            "tenant",
            quota([Tier::requests(1_000_000_000, 1_000 * HOUR)]),
        )
        .timeout(Duration::from_millis(500))
        .on_failure(OnRedisFailure::Local { share: 0.5 })
        .failure_threshold(2)
        .probe_interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let tenant = limiter.scope("tenant").unwrap();
    // Eight callers hammer the limiter for the whole test; every call must be admitted.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, stop) = (limiter.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    limiter
                        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
                        .await
                        .expect("no call fails because of the limiter");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    until(&limiter, |m| m.allowed >= 200).await;
    assert_eq!(limiter.backend(), Backend::Redis);
    redis.kill();
    until(&limiter, |m| m.failure_decisions >= 500).await;
    assert_eq!(limiter.backend(), Backend::Fallback);
    assert_eq!(limiter.metrics().switched_to_fallback, 1);

    redis.restart();
    // Within a few probes one reaches the new server and brings every caller back.
    until(&limiter, |m| m.switched_to_redis == 1).await;
    let back = limiter.metrics();
    until(&limiter, |m| m.allowed >= back.allowed + 200).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let end = limiter.metrics();
    assert_eq!(limiter.backend(), Backend::Redis);
    assert_eq!((end.switched_to_fallback, end.switched_to_redis), (1, 1));
    assert_eq!(end.denied, 0);
    assert!(
        end.redis_calls - back.redis_calls >= 150,
        "decided by Redis again: {back:?} → {end:?}"
    );
    let status = limiter.status(tenant, "acme").await.unwrap();
    assert!(
        status.tiers[0].remaining < 1_000_000_000,
        "the restarted Redis counts again"
    );
}
each_topology!(fallback_policy_keeps_every_call_going_while_redis_is_down_and_returns_by_itself, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

async fn one_description_of_the_limits_builds_the_redis_limiter_and_caps_its_fallback(
    topology: Topology,
) {
    let Some(mut redis) = TestRedis::start(topology) else {
        return;
    };
    // The scopes and the key cap come from the in-process builder; with Redis gone, the
    // fallback holds one key, so a second new key is refused for capacity.
    let limits = RateLimiter::builder()
        .scope("tenant", quota([Tier::requests(1_000_000, HOUR)]))
        .max_keys(1);
    let limiter = RedisRateLimiter::builder(redis.target())
        .limits(limits)
        .timeout(PATIENT)
        .on_failure(OnRedisFailure::Local { share: 1.0 })
        .failure_threshold(1)
        .build()
        .unwrap();
    let tenant = limiter
        .scope("tenant")
        .expect("the scope of the given limits");
    let one = |key: &'static str| {
        let limiter = limiter.clone();
        async move {
            limiter
                .check_and_consume(&[(tenant, key)], Amounts::requests(1))
                .await
        }
    };
    one("a").await.unwrap();
    one("b").await.unwrap();
    assert_eq!(limiter.metrics().redis_calls, 2);
    redis.kill();
    one("a").await.unwrap();
    assert_eq!(limiter.backend(), Backend::Fallback);
    let denial = one("b").await.unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Capacity);
}
each_topology!(one_description_of_the_limits_builds_the_redis_limiter_and_caps_its_fallback);

#[tokio::test]
async fn an_open_scope_with_no_quota_yet_builds_with_a_local_fallback() {
    let Some(redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    // What a gateway with a `redis` section and no limits of its own builds: the scopes its keys'
    // quotas will come to, none given yet.
    let limits = tollgate_ratelimit::RateLimitConfig::default()
        .open_scope(tollgate_ratelimit::TENANT_SCOPE)
        .limits()
        .unwrap();
    let limiter = RedisRateLimiter::builder(redis.target())
        .limits(limits)
        .timeout(PATIENT)
        .on_failure(OnRedisFailure::Local { share: 0.5 })
        .build()
        .unwrap();
    let tenant = limiter.scope(tollgate_ratelimit::TENANT_SCOPE).unwrap();
    let keys = [(tenant, "acme")];
    let one = || limiter.check_and_consume(&keys, Amounts::requests(1));
    for _ in 0..3 {
        one().await.unwrap();
    }
    limiter
        .set_quotas(
            tenant,
            [("acme".into(), Some(quota([Tier::requests(1, HOUR)])))],
        )
        .unwrap();
    one().await.unwrap();
    assert_eq!(one().await.unwrap_err().reason(), DenialReason::Exhausted);
}

async fn fail_closed_refuses_with_unavailable_when_redis_is_gone(topology: Topology) {
    let Some(mut redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = builder(&redis, quota([Tier::requests(10, HOUR)]))
        .build()
        .unwrap();
    let tenant = limiter.scope("tenant").unwrap();
    limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    redis.kill();
    let denial = limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Unavailable);
    let error = LlmError::from(denial);
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.to_string().contains("fail closed"), "{error}");
}
each_topology!(fail_closed_refuses_with_unavailable_when_redis_is_gone);

/// Waits (yielding to the callers) until the limiter's metrics satisfy `done`, for at most 30
/// seconds: a cluster's nodes take a while to find each other again after a restart.
async fn until(
    limiter: &RedisRateLimiter,
    done: impl Fn(tollgate_ratelimit::RedisMetrics) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if done(limiter.metrics()) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {:?}", limiter.metrics());
}

/// A server that accepts connections and never answers: only the timeout can end a call.
#[tokio::test(start_paused = true)]
async fn fail_closed_answers_within_the_timeout_when_redis_hangs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(20);
    let limiter = RedisRateLimiter::builder(format!("redis://127.0.0.1:{port}/"))
        .scope("tenant", quota([Tier::requests(10, HOUR)]))
        .timeout(timeout)
        .on_failure(OnRedisFailure::FailClosed)
        .build()
        .unwrap();
    let tenant = limiter.scope("tenant").unwrap();
    let started = tokio::time::Instant::now();
    let denial = limiter
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Unavailable);
    assert_eq!(
        started.elapsed(),
        timeout,
        "on tokio's paused clock: exactly the timeout"
    );
    assert_eq!(limiter.metrics().redis_timeouts, 1);
    hold.abort();
}

async fn a_rate_limit_layer_shares_its_limit_through_redis(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let quota = quota([Tier::requests(3, HOUR)]);
    let provider = SimulatedProvider::new();
    let mut stacks = Vec::new();
    for _ in 0..2 {
        let limiter = builder(&redis, quota.clone()).build().unwrap();
        let layer = RateLimitLayer::new(limiter, ByTenant);
        stacks.push(
            tower::ServiceBuilder::new()
                .layer(layer)
                .service(provider.clone()),
        );
    }
    let request = LlmRequest::new("sim", vec![Message::user("hi")]).with_tenant("acme");
    for i in 0..3 {
        let stack = &mut stacks[i % 2];
        stack
            .ready()
            .await
            .unwrap()
            .call(request.clone())
            .await
            .unwrap();
    }
    let error = stacks[1]
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert!(error.retry_after().unwrap() > Duration::from_secs(1_100));
    assert_eq!(provider.calls(), 3);
}
each_topology!(a_rate_limit_layer_shares_its_limit_through_redis);

async fn hybrid_leases_never_admit_more_than_the_quota_and_save_round_trips(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let quota = quota([Tier::requests(1_000, HOUR)]);
    let a = builder(&redis, quota.clone())
        .lease(10, HOUR)
        .build()
        .unwrap();
    let b = builder(&redis, quota).lease(10, HOUR).build().unwrap();
    let (left, right) = tokio::join!(hammer(&a, "acme", 8, 80), hammer(&b, "acme", 8, 80));
    assert_eq!(left + right, 1_000, "{left} + {right}");
    let calls = a.metrics().redis_calls + b.metrics().redis_calls;
    // 100 leases of 10, plus the refusals once the quota is spent (one per refused call).
    assert!(calls <= 100 + 280 + 2, "{calls}");
    assert!(a.metrics().lease_admits + b.metrics().lease_admits >= 900);
}
each_topology!(hybrid_leases_never_admit_more_than_the_quota_and_save_round_trips, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

async fn an_ended_lease_hands_its_unused_permits_back(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let quota = quota([Tier::requests(100, HOUR)]);
    // A lease that is over as soon as it is taken: every call after the first returns the last.
    let hybrid = builder(&redis, quota.clone())
        .lease(10, Duration::from_nanos(1))
        .build()
        .unwrap();
    let direct = builder(&redis, quota).build().unwrap();
    let tenant = hybrid.scope("tenant").unwrap();
    let remaining = || async { direct.status(tenant, "acme").await.unwrap().tiers[0].remaining };
    hybrid
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    assert_eq!(remaining().await, 90, "one used, nine held");
    hybrid
        .check_and_consume(&[(tenant, "acme")], Amounts::requests(1))
        .await
        .unwrap();
    assert_eq!(
        remaining().await,
        89,
        "nine returned, then a new lease of ten"
    );
    hybrid.release_leases().await;
    assert_eq!(remaining().await, 98, "two used, the rest back");
    assert_eq!(hybrid.metrics().lease_returned, 18);
}
each_topology!(an_ended_lease_hands_its_unused_permits_back);

async fn past_the_lease_set_bound_idle_leases_are_dropped_and_their_permits_handed_back(
    topology: Topology,
) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let quota = quota([Tier::requests(100, HOUR)]);
    let hybrid = builder(&redis, quota.clone())
        .lease(2, HOUR)
        .build()
        .unwrap();
    let direct = builder(&redis, quota).build().unwrap();
    let tenant = hybrid.scope("tenant").unwrap();
    // One call per key: each key set leases two permits and holds the second.
    for n in 0..tollgate_ratelimit::MAX_LEASE_SETS {
        hybrid
            .check_and_consume(&[(tenant, format!("t{n}"))], Amounts::requests(1))
            .await
            .unwrap();
    }
    assert_eq!(hybrid.metrics().lease_sets, 10_000);
    assert_eq!(
        direct.status(tenant, "t0").await.unwrap().tiers[0].remaining,
        98
    );

    // One more key set: nobody is refilling the others, so they all go.
    hybrid
        .check_and_consume(&[(tenant, "newcomer")], Amounts::requests(1))
        .await
        .unwrap();
    assert_eq!(hybrid.metrics().lease_sets, 1);
    // Their held permits go back in the background, each counted once Redis has it.
    let deadline = tokio::time::Instant::now() + BACKGROUND;
    while hybrid.metrics().lease_returned < 10_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hybrid.metrics().lease_returned, 10_000);
    assert_eq!(
        direct.status(tenant, "t0").await.unwrap().tiers[0].remaining,
        99
    );
}
each_topology!(past_the_lease_set_bound_idle_leases_are_dropped_and_their_permits_handed_back);

#[tokio::test]
async fn bad_settings_are_refused_with_the_field() {
    let quota = quota([Tier::requests(10, HOUR)]);
    let path = |builder: RedisRateLimiterBuilder| builder.build().unwrap_err().path().to_owned();
    let base = || RedisRateLimiter::builder("redis://127.0.0.1:1/").scope("t", quota.clone());
    assert_eq!(path(base().timeout(Duration::ZERO)), "redis.timeout");
    assert_eq!(
        path(base().on_failure(OnRedisFailure::Local { share: 1.5 })),
        "redis.on_failure.share"
    );
    assert_eq!(path(base().lease(0, HOUR)), "redis.lease.batch");
    assert_eq!(path(base().hash_tag_scope("nope")), "redis.hash_tag_scope");
    assert_eq!(path(base().prefix("a{b}")), "redis.prefix");
    assert_eq!(
        path(RedisRateLimiter::builder("http://x").scope("t", quota.clone())),
        "redis.url"
    );
    let long = Quota::new([Tier::requests(1, Duration::from_secs(200 * 86_400))]).unwrap();
    assert_eq!(
        path(RedisRateLimiter::builder("redis://127.0.0.1:1/").scope("t", long)),
        "tiers.1 requests per 200d"
    );
}

async fn a_configuration_with_a_redis_section_shares_through_redis_and_the_environment_overrides_it(
    topology: Topology,
) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    // One server is named by a wrong URL that REDIS_URL replaces; a cluster and Sentinel are
    // named in the section itself.
    let target = match redis.target() {
        RedisTarget::Server(_) => serde_json::json!({ "url": "redis://127.0.0.1:1/" }),
        RedisTarget::Cluster(nodes) => serde_json::json!({ "cluster": { "nodes": nodes } }),
        RedisTarget::Sentinel(sentinel) => serde_json::json!({
            "sentinel": { "master_name": sentinel.master_name, "nodes": sentinel.sentinels }
        }),
        other => panic!("{other:?}"),
    };
    let mut section = serde_json::json!({ "prefix": "cfg", "limiter_timeout": "5s", "on_failure": "fail_closed" });
    section
        .as_object_mut()
        .unwrap()
        .extend(target.as_object().unwrap().clone());
    let config: tollgate_ratelimit::RateLimitConfig = serde_json::from_value(serde_json::json!({
        "scopes": [ { "name": "tenant", "key": "tenant", "tiers": [ { "requests": 100, "per": "1h" } ] } ],
        "redis": section,
    }))
    .unwrap();
    let url = match redis.target() {
        RedisTarget::Server(url) => Some(url),
        _ => None,
    };
    let env = |name: &str| match name {
        "REDIS_URL" => url.clone(),
        "TOLLGATE_RATELIMIT_TENANT_TIERS" => {
            Some(r#"[ { "requests": 2, "per": "1h" } ]"#.to_owned())
        }
        _ => None,
    };
    let config = config.with_env_from(env).unwrap();
    let provider = SimulatedProvider::new();
    let mut a = tower::ServiceBuilder::new()
        .layer(config.build(None).unwrap())
        .service(provider.clone());
    let mut b = tower::ServiceBuilder::new()
        .layer(config.build(None).unwrap())
        .service(provider.clone());
    let request = LlmRequest::new("sim", vec![Message::user("hi")]).with_tenant("acme");
    a.ready()
        .await
        .unwrap()
        .call(request.clone())
        .await
        .unwrap();
    b.ready()
        .await
        .unwrap()
        .call(request.clone())
        .await
        .unwrap();
    let error = a.ready().await.unwrap().call(request).await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::RateLimited,
        "two an hour, from the environment"
    );
    // The one `redis` section's prefix, under the limiter's own `:rl`, as the facade names it.
    assert_eq!(
        redis.command(&["EXISTS", "cfg:rl:{tenant:acme}"]).unwrap(),
        tollgate_testkit::Reply::Integer(1)
    );

    let bad = config
        .clone()
        .with_env_from(|name| {
            (name == "TOLLGATE_RATELIMIT_TENANT_TIERS").then(|| "60/min".to_owned())
        })
        .unwrap_err();
    assert_eq!(bad.path(), "env.TOLLGATE_RATELIMIT_TENANT_TIERS");
    let typo = serde_json::from_str::<tollgate_ratelimit::RateLimitConfig>(
        r#"{ "scopes": [], "redis": { "url": "redis://x/", "timout": "5ms" } }"#,
    );
    assert!(typo.unwrap_err().to_string().contains("timout"));
}
each_topology!(
    a_configuration_with_a_redis_section_shares_through_redis_and_the_environment_overrides_it
);

async fn a_process_runs_ahead_of_the_shared_quota_by_at_most_its_lease(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let quota = quota([Tier::requests(20, HOUR)]);
    let hybrid = builder(&redis, quota.clone())
        .lease(10, HOUR)
        .build()
        .unwrap();
    let direct = builder(&redis, quota).build().unwrap();
    let tenant = hybrid.scope("tenant").unwrap();
    let keys = [(tenant, "acme")];
    // The hybrid process leases ten and uses one; the other process spends the remaining ten.
    hybrid
        .check_and_consume(&keys, Amounts::requests(1))
        .await
        .unwrap();
    for _ in 0..10 {
        direct
            .check_and_consume(&keys, Amounts::requests(1))
            .await
            .unwrap();
    }
    direct
        .check_and_consume(&keys, Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!(
        direct.status(tenant, "acme").await.unwrap().tiers[0].remaining,
        0
    );
    // Redis has nothing left, yet the hybrid process still admits what it leased: nine, no more.
    for _ in 0..9 {
        hybrid
            .check_and_consume(&keys, Amounts::requests(1))
            .await
            .unwrap();
    }
    let denial = hybrid
        .check_and_consume(&keys, Amounts::requests(1))
        .await
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Exhausted);
    assert_eq!(
        hybrid.metrics().allowed + direct.metrics().allowed,
        20,
        "the quota, in total"
    );
}
each_topology!(a_process_runs_ahead_of_the_shared_quota_by_at_most_its_lease);

#[test]
fn building_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let error = RedisRateLimiter::builder("redis://127.0.0.1:1/")
        .scope("t", quota([Tier::requests(10, HOUR)]))
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "redis");
}

async fn the_layer_settles_token_usage_in_redis_after_the_call(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = builder(&redis, quota([Tier::tokens(86_400, DAY)]))
        .build()
        .unwrap();
    let provider = SimulatedProvider::builder().output_tokens(40).build();
    let mut stack = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone(), ByTenant))
        .service(provider);
    let request = LlmRequest::new("sim", vec![Message::user("hi")])
        .with_tenant("acme")
        .with_max_tokens(500);
    let answer = stack.ready().await.unwrap().call(request).await.unwrap();
    let used = answer.usage.total();
    assert!(used < 100, "{used}");
    // The settlement goes to Redis off the response's path: wait for it to land.
    let tenant = limiter.scope("tenant").unwrap();
    for _ in 0..10_000 {
        let remaining = limiter.status(tenant, "acme").await.unwrap().tiers[0].remaining;
        if remaining == 86_400 - used {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the reservation was never settled to the {used} tokens used");
}
each_topology!(the_layer_settles_token_usage_in_redis_after_the_call);

async fn a_stream_dropped_midway_settles_in_redis_with_what_it_used(topology: Topology) {
    use tollgate_core::{
        CharEstimator, LlmError, LlmResponse, TokenEstimator, Usage,
        stream::{LlmStream, StreamEvent},
    };
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let limiter = builder(&redis, quota([Tier::tokens(86_400, DAY)]))
        .build()
        .unwrap();
    let upstream = tower::service_fn(|request: LlmRequest| async move {
        let stream = LlmStream::from_events([
            Ok(StreamEvent::text("abcd")),
            Ok(StreamEvent::text("efgh")),
            Ok(StreamEvent::Usage(Usage::new(7, 2))),
        ]);
        Ok::<_, LlmError>(LlmResponse::new(&*request.model, "").with_stream(stream))
    });
    let mut stack = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone(), ByTenant))
        .service(upstream);
    let request = LlmRequest::new("sim", vec![Message::user("hi")])
        .with_tenant("acme")
        .with_max_tokens(500)
        .streaming();
    let prompt = CharEstimator.estimate_prompt(&request);
    let mut response = stack.ready().await.unwrap().call(request).await.unwrap();
    let mut stream = response.take_stream().unwrap();
    stream.next().await.unwrap().unwrap(); // "abcd": 1 token, then the caller stops reading
    drop(stream);
    // Settled off the caller's path, as a finished call is: wait for it to land.
    let tenant = limiter.scope("tenant").unwrap();
    let mut remaining = 0;
    for _ in 0..10_000 {
        remaining = limiter.status(tenant, "acme").await.unwrap().tiers[0].remaining;
        if remaining == 86_400 - prompt - 1 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("left at {remaining}: never settled to the prompt's {prompt} tokens and 1 read");
}
each_topology!(a_stream_dropped_midway_settles_in_redis_with_what_it_used);

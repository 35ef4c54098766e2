//! Redis failovers are counted through the `metrics` facade: a master Sentinel replaces, and the
//! limiter's switches to its failure policy and back, read from a debugging recorder.

use std::{collections::BTreeMap, time::Duration};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tollgate::{
    ratelimit::{Amounts, Backend, OnRedisFailure, Quota, RedisRateLimiter, Tier},
    redis::{RedisTarget, SentinelTarget},
};
use tollgate_testkit::{MASTER_NAME, RedisSentinel};

/// Each counter as `name{label=value}` with its value.
fn counters(snapshotter: &metrics_util::debugging::Snapshotter) -> BTreeMap<String, u64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let DebugValue::Counter(n) = value else {
                return None;
            };
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            Some((format!("{}{{{}}}", key.name(), labels.join(",")), n))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_master_and_the_limiters_switches_are_counted() {
    let Some(mut sentinel) = RedisSentinel::with_replica() else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the limiter and its connection are built, on this thread.
    let limiter = {
        let _local = metrics::set_default_local_recorder(&recorder);
        RedisRateLimiter::builder(RedisTarget::Sentinel(SentinelTarget::new(
            MASTER_NAME,
            sentinel.urls(),
        )))
        .scope(
            "tenant",
            Quota::new([Tier::requests(1_000, Duration::from_secs(3_600))]).unwrap(),
        )
        .timeout(Duration::from_millis(50))
        .on_failure(OnRedisFailure::Local { share: 0.5 })
        .failure_threshold(1)
        .probe_interval(Duration::from_millis(50))
        .build()
        .unwrap()
    };
    let tenant = limiter.scope("tenant").unwrap();
    let keys = [(tenant, "acme")];
    let call = || limiter.check_and_consume(&keys, Amounts::requests(1));
    call().await.unwrap();
    let old = sentinel.kill_master();
    call().await.unwrap();
    assert_eq!(limiter.backend(), Backend::Fallback);
    let sentinel = tokio::task::spawn_blocking(move || {
        sentinel.wait_for_new_master(old);
        sentinel
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while limiter.backend() != Backend::Redis || limiter.connection().master_switches() == 0 {
        assert!(std::time::Instant::now() < deadline, "followed within 30s");
        call().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counted = counters(&snapshotter);
    let get = |name: &str| counted.get(name).copied().unwrap_or_default();
    assert_eq!(
        get("tollgate.redis.master_switches{topology=sentinel}"),
        1,
        "{counted:?}"
    );
    assert_eq!(
        get("tollgate.limiter.backend_switches{to=fallback}"),
        1,
        "{counted:?}"
    );
    assert_eq!(
        get("tollgate.limiter.backend_switches{to=redis}"),
        1,
        "{counted:?}"
    );
    drop(sentinel);
}

//! RedisStore (and TieredStore in front of it) against a real Redis started by the fixture: each
//! test runs on one server, on a three-master Redis Cluster and behind Sentinel.
#![cfg(feature = "redis")]

use std::time::Duration;

use tollgate_cache::{
    CacheConfig, CacheLayer, CacheStatus, CacheStore, MemoryStore, RedisStore, TieredStore,
};
use tollgate_core::{LlmError, LlmRequest, LlmResponse, Message, SimulatedProvider, Usage};
use tollgate_testkit::{Reply, TestRedis, Topology, each_topology};
use tower::{Layer, Service, ServiceExt};

fn ask(text: &str) -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user(text)]).with_tenant("acme")
}

async fn call<S>(stack: &mut S, request: LlmRequest) -> Result<LlmResponse, LlmError>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    stack.ready().await?.call(request).await
}

fn served(response: &LlmResponse) -> &str {
    response.headers["x-cache"].to_str().unwrap()
}

fn store(redis: &TestRedis) -> RedisStore {
    RedisStore::builder(redis.target())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The one cache key the test wrote.
fn only_key(redis: &TestRedis) -> String {
    match redis.command(&["KEYS", "tollgate:cache:*"]).unwrap() {
        Reply::Array(keys) => match keys.as_slice() {
            [Reply::Bulk(key)] => String::from_utf8(key.clone()).unwrap(),
            other => panic!("expected one key, got {other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

async fn two_instances_share_one_cache_with_the_entry_ttl(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let provider = SimulatedProvider::new();
    let config = CacheConfig {
        default_ttl: Duration::from_secs(600),
        ..CacheConfig::default()
    };
    let mut a = CacheLayer::new(store(&redis), config.clone())
        .unwrap()
        .layer(provider.clone());
    let mut b = CacheLayer::new(store(&redis), config)
        .unwrap()
        .layer(provider.clone());

    let first = call(&mut a, ask("hello")).await.unwrap();
    assert_eq!(served(&first), "MISS");
    let second = call(&mut b, ask("hello")).await.unwrap();
    assert_eq!(served(&second), "HIT");
    assert_eq!(second.content(), first.content());
    assert_eq!(second.usage, first.usage);
    assert_eq!(provider.calls(), 1);
    // Another tenant is another key, in Redis too.
    let other = call(&mut b, ask("hello").with_tenant("globex"))
        .await
        .unwrap();
    assert_eq!(served(&other), "MISS");

    let Reply::Integer(ttl) = redis
        .command(&["PTTL", &only_key_of(&redis, &first)])
        .unwrap()
    else {
        panic!()
    };
    assert!(ttl > 590_000 && ttl <= 600_000, "{ttl}");
}
each_topology!(two_instances_share_one_cache_with_the_entry_ttl);

/// The key of the entry whose content is `response`'s.
fn only_key_of(redis: &TestRedis, response: &LlmResponse) -> String {
    let Reply::Array(keys) = redis.command(&["KEYS", "tollgate:cache:*"]).unwrap() else {
        panic!()
    };
    keys.into_iter()
        .map(|key| match key {
            Reply::Bulk(key) => String::from_utf8(key).unwrap(),
            other => panic!("{other:?}"),
        })
        .find(|key| match redis.command(&["GET", key]).unwrap() {
            Reply::Bulk(value) => String::from_utf8_lossy(&value).contains(response.content()),
            _ => false,
        })
        .expect("stored")
}

async fn a_corrupt_value_is_a_miss_and_is_replaced(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let provider = SimulatedProvider::new();
    let shared = store(&redis);
    let mut stack = CacheLayer::new(shared.clone(), CacheConfig::default())
        .unwrap()
        .layer(provider.clone());
    call(&mut stack, ask("hello")).await.unwrap();
    let key = only_key(&redis);
    for garbage in [
        "not an entry",
        "tollgate-cache v2\n9 9 00\n{}",
        "tollgate-cache v2 lz4\n\u{ff}\u{ff}\u{ff}\u{7f}xx",
    ] {
        redis.command(&["SET", &key, garbage]).unwrap();
        let response = call(&mut stack, ask("hello")).await.unwrap();
        assert_eq!(served(&response), "MISS", "{garbage:?}");
        // The fresh answer replaced the corrupt value.
        let again = call(&mut stack, ask("hello")).await.unwrap();
        assert_eq!(served(&again), "HIT");
    }
    assert_eq!(shared.errors().corrupt, 3);
    assert_eq!(provider.calls(), 4);
}
each_topology!(a_corrupt_value_is_a_miss_and_is_replaced);

async fn compressed_values_shrink_and_are_read_by_any_instance(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let long = "The tollgate admits the traveller who has paid. ".repeat(200);
    let answer = long.clone();
    let provider = tower::service_fn(move |request: LlmRequest| {
        let answer = answer.clone();
        async move {
            Ok::<_, LlmError>(
                LlmResponse::new(&*request.model, answer).with_usage(Usage::new(10, 2_000)),
            )
        }
    });
    let compressed = || {
        RedisStore::builder(redis.target())
            .compress(true)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let mut a = CacheLayer::new(compressed(), CacheConfig::default())
        .unwrap()
        .layer(provider.clone());
    let mut b = CacheLayer::new(compressed(), CacheConfig::default())
        .unwrap()
        .layer(provider);
    call(&mut a, ask("tell me")).await.unwrap();
    let hit = call(&mut b, ask("tell me")).await.unwrap();
    assert_eq!(served(&hit), "HIT");
    assert_eq!(hit.content(), long);
    let Reply::Integer(stored) = redis.command(&["STRLEN", &only_key(&redis)]).unwrap() else {
        panic!()
    };
    assert!(
        (stored as usize) < long.len() / 4,
        "{stored} bytes for {}",
        long.len()
    );
}
each_topology!(compressed_values_shrink_and_are_read_by_any_instance);

async fn a_value_over_the_bound_is_not_written(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let provider = SimulatedProvider::new();
    let small = RedisStore::builder(redis.target())
        .max_value_bytes(64)
        .build()
        .unwrap();
    let mut stack = CacheLayer::new(small.clone(), CacheConfig::default())
        .unwrap()
        .layer(provider.clone());
    call(&mut stack, ask("hello")).await.unwrap();
    let again = call(&mut stack, ask("hello")).await.unwrap();
    assert_eq!(served(&again), "MISS");
    assert_eq!(small.errors().skipped_writes, 2);
    assert_eq!(redis.command(&["DBSIZE"]).unwrap(), Reply::Integer(0));
}
each_topology!(a_value_over_the_bound_is_not_written);

async fn redis_going_away_is_a_miss_never_a_failed_request(topology: Topology) {
    let Some(mut redis) = TestRedis::start(topology) else {
        return;
    };
    let provider = SimulatedProvider::new();
    let shared = RedisStore::builder(redis.target())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut stack = CacheLayer::new(shared.clone(), CacheConfig::default())
        .unwrap()
        .layer(provider.clone());
    call(&mut stack, ask("hello")).await.unwrap();
    redis.kill();
    for _ in 0..3 {
        let response = call(&mut stack, ask("hello"))
            .await
            .expect("served by the provider");
        assert_eq!(served(&response), "MISS");
    }
    assert_eq!(provider.calls(), 4);
    assert!(shared.errors().errors >= 3, "{:?}", shared.errors());

    redis.restart();
    // The connection comes back by itself; caching resumes.
    let mut tries = 0;
    loop {
        call(&mut stack, ask("again")).await.unwrap();
        if served(&call(&mut stack, ask("again")).await.unwrap()) == "HIT" {
            break;
        }
        tries += 1;
        assert!(
            tries < 1_000,
            "the store never came back: {:?}",
            shared.errors()
        );
        tokio::task::yield_now().await;
    }
}
each_topology!(redis_going_away_is_a_miss_never_a_failed_request);

async fn memory_in_front_of_redis_serves_other_processes_answers_from_memory(topology: Topology) {
    let Some(mut redis) = TestRedis::start(topology) else {
        return;
    };
    let provider = SimulatedProvider::new();
    let two_level = || TieredStore::new(MemoryStore::new(16 << 20), store(&redis));
    let mut a = CacheLayer::new(two_level(), CacheConfig::default())
        .unwrap()
        .layer(provider.clone());
    let b_store = two_level();
    let mut b = CacheLayer::new(b_store.clone(), CacheConfig::default())
        .unwrap()
        .layer(provider.clone());

    call(&mut a, ask("hello")).await.unwrap();
    // B has never seen it: its memory misses, Redis has it.
    assert_eq!(b_store.front().stats().entries, 0);
    let from_redis = call(&mut b, ask("hello")).await.unwrap();
    assert_eq!(served(&from_redis), "HIT");
    assert!(matches!(
        from_redis.extensions.get::<CacheStatus>(),
        Some(CacheStatus::Hit { .. })
    ));
    assert_eq!(b_store.front().stats().entries, 1, "copied into B's memory");
    // Now B answers from memory even with Redis gone.
    redis.kill();
    let from_memory = call(&mut b, ask("hello")).await.unwrap();
    assert_eq!(served(&from_memory), "HIT");
    assert_eq!(provider.calls(), 1);
}
each_topology!(memory_in_front_of_redis_serves_other_processes_answers_from_memory);

async fn clear_removes_this_prefix_only_even_with_glob_characters_in_it(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let provider = SimulatedProvider::new();
    let ours = RedisStore::builder(redis.target())
        .prefix("app*")
        .build()
        .unwrap();
    let cache = CacheLayer::new(ours, CacheConfig::default()).unwrap();
    let mut stack = cache.clone().layer(provider.clone());
    // Thirty entries: on a cluster, spread over every master.
    for n in 0..30 {
        call(&mut stack, ask(&format!("question {n}")))
            .await
            .unwrap();
    }
    if let TestRedis::Cluster(cluster) = &redis {
        let Reply::Array(keys) = redis.command(&["KEYS", "app\\*:*"]).unwrap() else {
            panic!("KEYS answers");
        };
        let mut masters: Vec<usize> = keys
            .iter()
            .map(|key| match key {
                Reply::Bulk(key) => cluster.master_of(&String::from_utf8_lossy(key)),
                other => panic!("{other:?}"),
            })
            .collect();
        masters.sort_unstable();
        masters.dedup();
        assert_eq!(masters.len(), 3, "entries on every master");
    }
    // A neighbour whose keys the glob `app*:*` would match if the `*` were not escaped.
    redis.command(&["SET", "apple:x", "keep"]).unwrap();
    assert_eq!(redis.command(&["DBSIZE"]).unwrap(), Reply::Integer(31));
    cache.clear().await;
    assert_eq!(redis.command(&["DBSIZE"]).unwrap(), Reply::Integer(1));
    assert_eq!(
        redis.command(&["GET", "apple:x"]).unwrap(),
        Reply::Bulk(b"keep".to_vec())
    );
    assert_eq!(
        served(&call(&mut stack, ask("question 0")).await.unwrap()),
        "MISS"
    );
}
each_topology!(clear_removes_this_prefix_only_even_with_glob_characters_in_it);

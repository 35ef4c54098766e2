//! A configuration with a `redis` section, against a real `redis-server`: two stacks (two
//! processes' worth) share one tenant quota and one cache, and the section's cache settings
//! (compression, value bound) reach the store.

#![cfg(feature = "redis")]

use tollgate::{Config, ErrorKind, LlmRequest, Message, SimulatedProvider, Stack};
use tollgate_testkit::{RedisServer, Reply};
use tower::ServiceExt;

/// A simulated provider's configuration caching in `redis`: `redis_settings` follow the URL in
/// the `redis` section, and `rest` (more sections) comes after it.
fn config(redis: &RedisServer, redis_settings: &str, rest: &str) -> Config {
    let yaml = format!(
        "
providers:
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-small }}
caching: {{ store: redis }}
redis: {{ url: \"{}\", {redis_settings} }}
{rest}
",
        redis.url()
    );
    Config::from_yaml(&yaml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_share_the_quota_and_the_cache_through_redis() {
    let Some(redis) = RedisServer::start() else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    let config = config(
        &redis,
        "prefix: cfgtest, limiter_timeout: 1s, cache_timeout: 1s, on_failure: fail_closed",
        "rate_limiting:\n  tenants:\n    default: { per_hour: 5 }",
    );
    let provider = SimulatedProvider::new();
    let stacks: Vec<Stack> = (0..2)
        .map(|_| {
            Stack::builder(&config)
                .provider("sim", provider.clone())
                .build()
                .unwrap()
        })
        .collect();
    let ask = |text: &str| LlmRequest::new("", vec![Message::user(text)]).with_tenant("acme");

    // Stack 0 answers a question and stores it in Redis; stack 1 is served from there.
    stacks[0].clone().oneshot(ask("shared")).await.unwrap();
    let hit = stacks[1].clone().oneshot(ask("shared")).await.unwrap();
    assert_eq!(hit.headers["x-cache"], "HIT");
    assert_eq!(provider.calls(), 1);

    // 5 requests an hour for acme, across both stacks: one was spent above (the hit cost none).
    let mut outcomes = Vec::new();
    for i in 0..6 {
        let stack = stacks[i % 2].clone();
        outcomes.push(
            stack
                .oneshot(ask(&format!("q{i}")))
                .await
                .map_err(|e| e.kind()),
        );
    }
    let kinds: Vec<_> = outcomes.iter().map(|o| o.as_ref().err().copied()).collect();
    assert_eq!(
        kinds,
        [
            None,
            None,
            None,
            None,
            Some(ErrorKind::RateLimited),
            Some(ErrorKind::RateLimited)
        ]
    );
    // The configured prefix, for both: the limiter's key per tenant, the cache's per answer.
    let exists = |key: &str| redis.command(&["EXISTS", key]).unwrap();
    assert_eq!(exists("cfgtest:rl:{tenant:acme}"), Reply::Integer(1));
    let Reply::Array(cached) = redis.command(&["KEYS", "cfgtest:cache:*"]).unwrap() else {
        panic!("KEYS answers an array")
    };
    assert_eq!(
        cached.len(),
        5,
        "the shared answer and the 4 admitted calls'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_section_compresses_and_bounds_cached_answers() {
    let Some(redis) = RedisServer::start() else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    let stack = |prefix: &str, cache: &str| {
        let config = config(
            &redis,
            &format!("prefix: {prefix}, cache_timeout: 1s, {cache}"),
            "",
        );
        let provider = SimulatedProvider::new();
        let stack = Stack::builder(&config)
            .provider("sim", provider.clone())
            .build()
            .unwrap();
        (stack, provider)
    };
    let ask = || LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme");
    let stored = |prefix: &str| {
        let Reply::Array(keys) = redis
            .command(&["KEYS", &format!("{prefix}:cache:*")])
            .unwrap()
        else {
            panic!("KEYS answers an array")
        };
        keys.into_iter()
            .map(|key| {
                let Reply::Bulk(key) = key else {
                    panic!("a key is a bulk string")
                };
                let key = String::from_utf8(key).unwrap();
                match redis.command(&["GET", &key]).unwrap() {
                    Reply::Bulk(value) => value,
                    other => panic!("GET {key}: {other:?}"),
                }
            })
            .collect::<Vec<_>>()
    };

    // Compressed: the value in Redis is the LZ4 form, and it is served back.
    let (lz4, provider) = stack("lz4", "cache_compress: true");
    lz4.clone().oneshot(ask()).await.unwrap();
    assert_eq!(
        lz4.clone().oneshot(ask()).await.unwrap().headers["x-cache"],
        "HIT"
    );
    assert_eq!(provider.calls(), 1);
    let values = stored("lz4");
    assert_eq!(values.len(), 1);
    assert!(values[0].starts_with(b"tollgate-cache v2 lz4\n"));

    // The default is the plain form.
    let (plain, _) = stack("plain", "cache_compress: false");
    plain.clone().oneshot(ask()).await.unwrap();
    assert!(stored("plain")[0].starts_with(b"tollgate-cache v2\n"));

    // An answer over the bound is never written, so the same question misses again.
    let (bounded, provider) = stack("tiny", "cache_max_value_bytes: 16");
    bounded.clone().oneshot(ask()).await.unwrap();
    let again = bounded.clone().oneshot(ask()).await.unwrap();
    assert_eq!(again.headers["x-cache"], "MISS");
    assert_eq!(provider.calls(), 2);
    assert!(stored("tiny").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_report_reads_what_is_left_of_a_budget_from_redis() {
    let Some(redis) = RedisServer::start() else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    // $1 and $2 per million tokens: 1 micro-dollar per prompt token, 2 per answer token.
    let config = config(
        &redis,
        "prefix: budget, limiter_timeout: 1s, cache_timeout: 1s",
        "pricing:
  sim-small: { input: \"1.00\", output: \"2.00\" }
rate_limiting:
  tenants:
    default: { cost_per_day: \"1.00\" }",
    );
    let provider = SimulatedProvider::builder().output_tokens(10).build();
    let stack = Stack::builder(&config)
        .provider("sim", provider)
        .build()
        .unwrap();
    let ask = LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme");
    stack.clone().oneshot(ask).await.unwrap();

    let remaining = |report: &tollgate::CostReport| {
        let budgets = &report.by_tenant["acme"].budgets;
        assert_eq!(budgets.len(), 1);
        budgets[0].remaining.map(|left| left.0)
    };
    // 7 prompt tokens and 10 answer tokens: 27 micro-dollars of the day's million.
    assert_eq!(stack.cost_report().by_tenant["acme"].spend.cost.0, 27);
    assert_eq!(
        remaining(&stack.cost_report()),
        None,
        "not read without waiting"
    );
    let report = stack.cost_report_with_remaining().await;
    assert_eq!(remaining(&report), Some(1_000_000 - 27));

    // With Redis gone, the report is whole but says nothing of what is left.
    drop(redis);
    let report = stack.cost_report_with_remaining().await;
    assert_eq!(report.by_tenant["acme"].spend.cost.0, 27);
    assert_eq!(remaining(&report), None);
}

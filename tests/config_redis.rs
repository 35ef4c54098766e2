//! A configuration with a `redis` section: two stacks (two processes' worth) share one tenant
//! quota and one cache through a real `redis-server`.

#![cfg(feature = "redis")]

use tollgate::{Config, ErrorKind, LlmRequest, Message, SimulatedProvider, Stack};
use tollgate_testkit::{RedisServer, Reply};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_share_the_quota_and_the_cache_through_redis() {
    let Some(redis) = RedisServer::start() else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    let yaml = format!(
        "
providers:
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-small }}
caching: {{ store: redis }}
rate_limiting:
  tenants:
    default: {{ per_hour: 5 }}
redis: {{ url: \"{}\", prefix: cfgtest, limiter_timeout: 1s, cache_timeout: 1s, on_failure: fail_closed }}
",
        redis.url()
    );
    let config = Config::from_yaml(&yaml).unwrap();
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

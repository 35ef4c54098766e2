//! A configuration with a `redis` section, against a real Redis (one server, a three-master
//! cluster, and a master behind Sentinel): two stacks (two processes' worth) share one tenant
//! quota and one cache, and the section's cache settings (compression, value bound) reach the
//! store.
//!
//! Tests that count exact admissions fail closed with patient timeouts: a slow first connection
//! on a loaded machine then waits, where the default policy would decide locally with its share
//! of each tier (the documented bound, which other tests assert).

#![cfg(feature = "redis")]

use tollgate::{Config, ErrorKind, LlmRequest, Message, SimulatedProvider, Stack};
use tollgate_testkit::{Reply, TestRedis, Topology, each_topology};
use tower::ServiceExt;

/// A simulated provider's configuration caching in `redis`: `redis_settings` follow the target
/// in the `redis` section, and `rest` (more sections) comes after it.
fn config(redis: &TestRedis, redis_settings: &str, rest: &str) -> Config {
    let yaml = format!(
        "
providers:
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-small }}
caching: {{ store: redis }}
redis: {{ {}, {redis_settings} }}
{rest}
",
        redis.yaml()
    );
    Config::from_yaml(&yaml).unwrap()
}

async fn two_stacks_share_the_quota_and_the_cache_through_redis(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    let config = config(
        &redis,
        "prefix: cfgtest, limiter_timeout: 5s, cache_timeout: 5s, on_failure: fail_closed",
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
each_topology!(two_stacks_share_the_quota_and_the_cache_through_redis, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

async fn the_redis_section_compresses_and_bounds_cached_answers(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    let stack = |prefix: &str, cache: &str| {
        let config = config(
            &redis,
            &format!("prefix: {prefix}, cache_timeout: 5s, {cache}"),
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
each_topology!(the_redis_section_compresses_and_bounds_cached_answers, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

async fn the_cost_report_reads_what_is_left_of_a_budget_from_redis(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    // $1 and $2 per million tokens: 1 micro-dollar per prompt token, 2 per answer token.
    let config = config(
        &redis,
        "prefix: budget, limiter_timeout: 5s, cache_timeout: 5s, on_failure: fail_closed",
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
each_topology!(the_cost_report_reads_what_is_left_of_a_budget_from_redis, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);

/// Limits with a tenant scope and a provider scope, on the cluster at `nodes`, with `tag` as the
/// hash-tag scope.
fn cluster_config(nodes: &str, tag: Option<&str>, tenants: &str) -> Result<Config, String> {
    let tag = tag.map_or(String::new(), |tag| format!(", hash_tag_scope: {tag}"));
    Config::from_yaml(&format!(
        "
providers:
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-small }}
redis: {{ cluster: {{ nodes: [{nodes}] }}{tag}, on_failure: fail_closed, limiter_timeout: 5s }}
rate_limiting:
  tenants: {tenants}
  providers:
    sim: {{ per_minute: 1000 }}
"
    ))
    .map_err(|e| e.to_string())
}

#[test]
fn a_configuration_whose_calls_would_span_cluster_slots_is_refused_naming_the_scopes_and_the_fix() {
    let nodes = "\"redis://127.0.0.1:7000/\"";
    let every_tenant = "{ default: { per_minute: 60 } }";
    let error = cluster_config(nodes, None, every_tenant).unwrap_err();
    assert!(
        error.contains("redis.hash_tag_scope: on Redis Cluster, one call's keys must share a slot, but a call limited by the scopes `tenant`, `provider` would check keys in different slots (CROSSSLOT); set redis.hash_tag_scope to the scope every call names (e.g. tenant)"),
        "{error}"
    );
    // The provider scope limits only the providers listed: a call to another has no key in it.
    let error = cluster_config(nodes, Some("provider"), every_tenant).unwrap_err();
    assert!(
        error.contains("redis.hash_tag_scope: `provider` limits only the keys listed under it"),
        "{error}"
    );
    // Tenants without a `default` entry are the same.
    let error = cluster_config(nodes, Some("tenant"), "{ acme: { per_minute: 60 } }").unwrap_err();
    assert!(
        error.contains("redis.hash_tag_scope: `tenant` limits only the keys listed"),
        "{error}"
    );
    let error = cluster_config(nodes, Some("org"), every_tenant).unwrap_err();
    assert!(
        error.contains("redis.hash_tag_scope: no rate-limit scope is named \"org\""),
        "{error}"
    );
    // Every call names a tenant: its slot holds the call's keys.
    cluster_config(nodes, Some("tenant"), every_tenant).unwrap();
    // One server, or Sentinel, runs any keys together.
    let single = Config::from_yaml(
        "
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: sim-small }
redis: { url: \"redis://127.0.0.1:6379/\" }
rate_limiting:
  tenants: { default: { per_minute: 60 } }
  providers:
    sim: { per_minute: 1000 }
",
    );
    assert!(single.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tenant_as_hash_tag_a_call_limited_by_tenant_and_provider_runs_in_one_cluster_slot()
 {
    let Some(cluster) = tollgate_testkit::RedisCluster::start() else {
        return;
    };
    let nodes = cluster
        .urls()
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = cluster_config(&nodes, Some("tenant"), "{ default: { per_hour: 2 } }").unwrap();
    let provider = SimulatedProvider::new();
    let stack = Stack::builder(&config)
        .provider("sim", provider.clone())
        .build()
        .unwrap();
    let ask = |tenant: &str| LlmRequest::new("", vec![Message::user("hi")]).with_tenant(tenant);
    for tenant in ["acme", "acme", "globex"] {
        stack.clone().oneshot(ask(tenant)).await.unwrap();
    }
    let refused = stack.clone().oneshot(ask("acme")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::RateLimited);
    assert_eq!(provider.calls(), 3);
    // Each tenant's provider key lives in its tenant's slot, on that tenant's master.
    for tenant in ["acme", "globex"] {
        let own = format!("tollgate:rl:{{tenant:{tenant}}}");
        let provider_key = format!("tollgate:rl:{{tenant:{tenant}}}:provider:sim");
        assert_eq!(
            cluster.command(&["EXISTS", &own]).unwrap(),
            Reply::Integer(1)
        );
        assert_eq!(
            cluster.command(&["EXISTS", &provider_key]).unwrap(),
            Reply::Integer(1)
        );
        assert_eq!(cluster.master_of(&own), cluster.master_of(&provider_key));
    }
}

#[tokio::test]
async fn the_redis_section_names_exactly_one_redis_and_its_password_variable_must_be_set() {
    let with = |redis: &str| {
        Config::from_yaml(&format!(
            "
providers:
  sim: {{ kind: simulated }}
roles:
  default: {{ provider: sim, model: sim-small }}
caching: {{ store: redis }}
redis: {{ {redis} }}
"
        ))
    };
    let both =
        with("url: \"redis://127.0.0.1:6379/\", cluster: { nodes: [\"redis://127.0.0.1:7000/\"] }");
    assert_eq!(both.unwrap_err().paths(), ["redis"]);
    assert_eq!(with("prefix: app").unwrap_err().paths(), ["redis"]);
    assert_eq!(
        with("cluster: { nodes: [] }").unwrap_err().paths(),
        ["redis.cluster.nodes"]
    );
    assert_eq!(
        with("cluster: { nodes: [\"http://127.0.0.1:7000/\"] }")
            .unwrap_err()
            .paths(),
        ["redis.cluster.nodes.0"]
    );
    // The master's password comes from a variable, read when the stack is built; never shown.
    let config = with(
        "sentinel: { master_name: main, nodes: [\"redis://127.0.0.1:26379/\"], password_env: REDIS_PASSWORD }",
    )
    .unwrap();
    let error = Stack::builder(&config)
        .provider("sim", SimulatedProvider::new())
        .env(|_| None)
        .build()
        .unwrap_err();
    assert_eq!(error.paths(), ["redis.sentinel.password_env"]);
    assert!(
        error.to_string().contains("REDIS_PASSWORD is not set"),
        "{error}"
    );
    let built = Stack::builder(&config)
        .provider("sim", SimulatedProvider::new())
        .env(|name| (name == "REDIS_PASSWORD").then(|| "hunter2".to_owned()))
        .build()
        .unwrap();
    assert!(!format!("{built:?}").contains("hunter2"));
}

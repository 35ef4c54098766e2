//! Several gateway processes over one Redis share their limits and their cache, as library stacks
//! do: on one server, on a three-master Redis Cluster and behind Sentinel.

mod support;

use support::*;
use tollgate_testkit::{TestRedis, Topology, each_topology};

async fn two_gateways_share_one_quota_and_one_cache(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return;
    };
    let upstream = Upstream::start().await;
    // Exact counts: Redis decides every call, patiently. The default policy would decide a call
    // locally, with half of each tier, while a loaded machine's first connection is slow.
    let more = format!(
        r#"
caching: {{ store: redis }}
rate_limiting:
  tenants:
    acme: {{ per_minute: 3 }}
redis: {{ {}, on_failure: fail_closed, limiter_timeout: 5s, cache_timeout: 5s }}
"#,
        redis.yaml()
    );
    let yaml = config(&upstream, &more);
    let first = GatewayProcess::start(&yaml).await;
    let second = GatewayProcess::start(&yaml).await;
    let call = |gateway: &GatewayProcess, text: &str| {
        let request = client()
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(ALICE)
            .json(&ask(text));
        async move {
            let response = request.send().await.unwrap();
            let cache = response
                .headers()
                .get("x-tollgate-cache")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), cache)
        }
    };
    let hit = Some("HIT".to_owned());
    let miss = Some("MISS".to_owned());
    // The answer one process stored is a hit in the other, and costs no quota.
    assert_eq!(call(&first, "shared").await, (200, miss.clone()));
    assert_eq!(call(&second, "shared").await, (200, hit));
    // Three distinct calls a minute for acme, counted across both processes.
    assert_eq!(call(&second, "two").await, (200, miss.clone()));
    assert_eq!(call(&first, "three").await, (200, miss));
    assert_eq!(call(&second, "four").await.0, 429);
    assert_eq!(call(&first, "five").await.0, 429);
    assert_eq!(upstream.calls(), 3);
}
each_topology!(two_gateways_share_one_quota_and_one_cache);

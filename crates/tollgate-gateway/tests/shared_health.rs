//! Two gateway processes on one Redis, over the same two upstreams: a 429 with `Retry-After`,
//! or a spent `x-ratelimit-remaining-requests`, that one process receives keeps the other's
//! calls away too; with Redis killed, each answers on what it knows, and learns the other's
//! cooldowns again once Redis is back.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tollgate_testkit::{TestRedis, Topology};

/// Two OpenAI-compatible upstreams serving the `default` role in priority order, with their
/// health shared in `redis`.
fn config(first: &Upstream, second: &Upstream, redis: &TestRedis) -> String {
    role_config(
        &[("first", first), ("second", second)],
        "strategy: priority\ntargets: [{ provider: first }, { provider: second }]",
        &format!("redis: {{ {} }}", redis.yaml()),
    )
}

const FIRST: &str = "first/up-model";
const SECOND: &str = "second/up-model";

/// The deployment `first` as the gateway's `/health` shows it.
async fn first_deployment(gateway: &GatewayProcess) -> Value {
    get_json(gateway, "/health", None).await["deployments"][FIRST].clone()
}

/// Waits (up to 15 s) until `gateway` skips `first`: its `/health` entry then.
async fn learns_cooldown(gateway: &GatewayProcess) -> Value {
    learns(gateway, |seen| !seen["cooling_for_ms"].is_null()).await
}

/// Waits (up to 15 s) until `first`'s `/health` entry on `gateway` is `seen`: the entry then.
/// A look at the shared hash applies its fields one at a time, so a `/health` read can fall
/// between a cooldown and the limit reading that came with it.
async fn learns(gateway: &GatewayProcess, seen: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let shown = first_deployment(gateway).await;
        if seen(&shown) {
            return shown;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not learned: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Who answered a chat call through `gateway`.
async fn answered_by(gateway: &GatewayProcess) -> String {
    let response = chat(gateway, ALICE, &ask("hello")).await;
    assert_eq!(response.status(), 200);
    response.headers()["x-tollgate-deployment"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// `gateway`'s calls, one every 200 ms for `span`, all answered by `second`.
async fn keeps_away_for(gateway: &GatewayProcess, span: Duration) -> usize {
    let end = tokio::time::Instant::now() + span;
    let mut calls = 0;
    while tokio::time::Instant::now() < end {
        assert_eq!(answered_by(gateway).await, SECOND);
        calls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    calls
}

#[tokio::test]
async fn a_429_one_gateway_receives_keeps_the_others_calls_away() {
    let Some(redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    first.push(Reply::Json(
        429,
        json!({ "error": { "message": "slow down", "type": "requests", "code": "rate_limit_exceeded" } }),
        vec![("retry-after", "30".to_owned())],
    ));
    let yaml = config(&first, &second, &redis);
    let a = GatewayProcess::start(&yaml).await;
    let b = GatewayProcess::start(&yaml).await;

    let response = chat(&a, ALICE, &ask("one")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-moves"], "1");
    assert_eq!(first.calls(), 1);

    let shown = learns_cooldown(&b).await;
    let left = shown["cooling_for_ms"].as_u64().unwrap();
    assert!((25_000..=30_000).contains(&left), "{shown}");
    // B was told; it decided no cooldown of its own.
    assert_eq!(shown["cooldowns"], json!({}));
    let calls = keeps_away_for(&b, Duration::from_secs(2)).await;
    assert_eq!((first.calls(), second.calls()), (1, 1 + calls));
}

#[tokio::test]
async fn a_spent_limit_one_gateway_reads_keeps_the_others_calls_away() {
    let Some(redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    // A good answer, whose headers say no request is left for a minute.
    first.push(Reply::Json(
        200,
        answer("hello"),
        vec![
            ("x-ratelimit-limit-requests", "100".to_owned()),
            ("x-ratelimit-remaining-requests", "0".to_owned()),
            ("x-ratelimit-reset-requests", "1m0s".to_owned()),
        ],
    ));
    let yaml = config(&first, &second, &redis);
    let a = GatewayProcess::start(&yaml).await;
    let b = GatewayProcess::start(&yaml).await;

    assert_eq!(answered_by(&a).await, FIRST);
    let shown = learns(&b, |seen| {
        !seen["cooling_for_ms"].is_null() && seen["limit_left"] != 1.0
    })
    .await;
    let left = shown["cooling_for_ms"].as_u64().unwrap();
    assert!((55_000..=60_000).contains(&left), "{shown}");
    // Nothing left of the limit, as read by A: its share of traffic at the floor.
    assert_eq!(shown["limit_left"], 0.01);
    let calls = keeps_away_for(&b, Duration::from_secs(2)).await;
    assert_eq!((first.calls(), second.calls()), (1, calls));
}

#[tokio::test]
async fn with_redis_killed_each_gateway_answers_on_what_it_knows() {
    let Some(mut redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let yaml = config(&first, &second, &redis);
    let a = GatewayProcess::start(&yaml).await;
    let b = GatewayProcess::start(&yaml).await;
    assert_eq!(answered_by(&a).await, FIRST);
    assert_eq!(answered_by(&b).await, FIRST);

    redis.kill();
    first.push(Reply::Json(
        429,
        json!({ "error": { "message": "slow down", "type": "requests" } }),
        vec![("retry-after", "30".to_owned())],
    ));
    // A receives the 429 and keeps away; B, not told, goes on calling `first`: both answer.
    assert_eq!(answered_by(&a).await, SECOND);
    assert_eq!(answered_by(&a).await, SECOND);
    assert_eq!(answered_by(&b).await, FIRST);
    assert_eq!(answered_by(&b).await, FIRST);
    assert_eq!(first.calls(), 2 + 1 + 2);
    // Every failed look is counted; the outage is logged once.
    assert!(
        until(Duration::from_secs(15), || async {
            failures(&a).await >= 3
        })
        .await
    );
    let warned = "Redis does not answer: each process routes on the deployments' health";
    assert_eq!(a.logs().matches(warned).count(), 1, "{}", a.logs());

    // Redis is back, empty: A writes what it knows, and B learns it.
    redis.restart();
    let shown = learns_cooldown(&b).await;
    assert!(
        shown["cooling_for_ms"].as_u64().unwrap() <= 30_000,
        "{shown}"
    );
    assert_eq!(answered_by(&b).await, SECOND);
    assert_eq!(first.calls(), 5);
    assert!(a.logs().contains("Redis answers again"), "{}", a.logs());
}

/// `tollgate_router_shared_failures` as `gateway`'s `/metrics` shows it.
async fn failures(gateway: &GatewayProcess) -> u64 {
    let metrics = scrape(gateway).await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tollgate_router_shared_failures "))
        .map_or(0, |count| count.trim().parse().unwrap())
}

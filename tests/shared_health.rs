//! A deployment's health shared through a real Redis (one server, a three-master cluster, and a
//! master behind Sentinel): a cooldown one stack (one process's worth) finds keeps every other
//! stack's calls away, a stack built later learns it, and a Redis that restarts empty learns back
//! what the stacks know.

#![cfg(feature = "redis")]

use std::time::Duration;

use tollgate::{Config, LlmRequest, Message, Outcome, SimulatedProvider, Stack, router::Served};
use tollgate_testkit::{TestRedis, Topology, each_topology};
use tower::ServiceExt;

/// A role over two simulated deployments in priority order, sharing their health in `redis`.
fn config(redis: &TestRedis) -> Config {
    let yaml = format!(
        "
providers:
  first: {{ kind: simulated }}
  second: {{ kind: simulated }}
roles:
  default:
    model: sim-small
    strategy: priority
    targets: [{{ provider: first }}, {{ provider: second }}]
redis: {{ {}, prefix: sharetest }}
",
        redis.yaml()
    );
    Config::from_yaml(&yaml).unwrap()
}

/// A stack whose `first` is `first`, and whose `second` answers everything.
fn stack(config: &Config, first: &SimulatedProvider, second: &SimulatedProvider) -> Stack {
    Stack::builder(config)
        .provider("first", first.clone())
        .provider("second", second.clone())
        .build()
        .unwrap()
}

async fn served_by(stack: &Stack) -> String {
    let answer = stack
        .clone()
        .oneshot(LlmRequest::new("", vec![Message::user("hi")]))
        .await
        .unwrap();
    answer
        .extensions
        .get::<Served>()
        .unwrap()
        .deployment
        .to_string()
}

/// How long `stack` still skips the `first` deployment.
fn cooling(stack: &Stack) -> Option<Duration> {
    let first = stack
        .deployments()
        .into_iter()
        .find(|d| d.name.starts_with("first"));
    first.expect("a deployment of first").cooling_for
}

/// Waits (for real) until `stack` skips `first`, for at most 15 s: how long it still does.
async fn learns_cooldown(stack: &Stack) -> Option<Duration> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if let Some(left) = cooling(stack) {
            return Some(left);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn limited(seconds: u64) -> SimulatedProvider {
    SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(seconds))])
        .build()
}

async fn a_cooldown_one_stack_finds_keeps_the_others_away(topology: Topology) {
    let Some(redis) = TestRedis::start(topology) else {
        return; // the fixture said why; TOLLGATE_REQUIRE_REDIS=1 makes this a failure instead
    };
    let config = config(&redis);
    let first_a = limited(30);
    let a = stack(&config, &first_a, &SimulatedProvider::new());
    let (first_b, second_b) = (SimulatedProvider::new(), SimulatedProvider::new());
    let b = stack(&config, &first_b, &second_b);

    assert_eq!(served_by(&a).await, "second/sim-small");
    assert_eq!(first_a.calls(), 1);
    let left = learns_cooldown(&b).await.expect("b learns a's cooldown");
    assert!(
        (Duration::from_secs(25)..=Duration::from_secs(30)).contains(&left),
        "{left:?}"
    );
    for _ in 0..5 {
        assert_eq!(served_by(&b).await, "second/sim-small");
    }
    assert_eq!((first_b.calls(), second_b.calls()), (0, 5));

    // A stack that starts afterwards learns it on its first look.
    let first_c = SimulatedProvider::new();
    let c = stack(&config, &first_c, &SimulatedProvider::new());
    let left = learns_cooldown(&c).await.expect("c learns it too");
    assert!(left <= Duration::from_secs(30), "{left:?}");
    assert_eq!(served_by(&c).await, "second/sim-small");
    assert_eq!(first_c.calls(), 0);
}
each_topology!(
    a_cooldown_one_stack_finds_keeps_the_others_away,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_each_stack_routes_on_its_own_and_an_empty_redis_learns_back() {
    let Some(mut redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let config = config(&redis);
    let first_a = limited(60);
    let a = stack(&config, &first_a, &SimulatedProvider::new());
    let (first_b, second_b) = (SimulatedProvider::new(), SimulatedProvider::new());
    let b = stack(&config, &first_b, &second_b);

    redis.kill();
    // Each answers from what it knows: a learns of the 429 and keeps away; b does not hear of it.
    assert_eq!(served_by(&a).await, "second/sim-small");
    assert_eq!(served_by(&a).await, "second/sim-small");
    assert_eq!(first_a.calls(), 1);
    assert_eq!(cooling(&b), None);
    assert_eq!(served_by(&b).await, "first/sim-small");

    // Back, empty: a writes what it knows, and b learns it.
    redis.restart();
    let left = learns_cooldown(&b)
        .await
        .expect("b learns a's cooldown once Redis is back");
    assert!(left <= Duration::from_secs(60), "{left:?}");
    assert_eq!(served_by(&b).await, "second/sim-small");
    assert_eq!((first_b.calls(), second_b.calls()), (1, 1));
}

/// `field` of Redis's `INFO section` (a count).
fn info(redis: &TestRedis, section: &str, field: &str) -> u64 {
    let tollgate_testkit::Reply::Bulk(info) = redis.command(&["INFO", section]).unwrap() else {
        panic!("INFO answers a bulk string");
    };
    let info = String::from_utf8(info).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(field))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().trim().parse().unwrap()
        })
}

/// Waits (up to 15 s) until `holds` does.
async fn until(mut holds: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !holds() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sharing_stops_with_the_stack() {
    let Some(redis) = TestRedis::start(Topology::Server) else {
        return;
    };
    let config = config(&redis);
    let stack = stack(
        &config,
        &SimulatedProvider::new(),
        &SimulatedProvider::new(),
    );
    let reads = || info(&redis, "commandstats", "cmdstat_hgetall:calls=");
    assert!(until(|| reads() >= 2).await, "the stack never looked");
    // Its connection is the sharing's alone (no cache, no limits), beside the one asking.
    assert_eq!(info(&redis, "clients", "connected_clients:"), 2);
    drop(stack);
    assert!(
        until(|| info(&redis, "clients", "connected_clients:") == 1).await,
        "the sharing still holds its connection"
    );
}

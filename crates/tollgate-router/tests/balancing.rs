//! How calls spread inside a group: least in flight, lowest latency, weights, and the bulkhead.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::*;
use tokio::time::Instant;
use tollgate_core::{ErrorKind, SimulatedProvider};
use tollgate_router::{Group, Strategy};

fn slow(latency: Duration) -> SimulatedProvider {
    SimulatedProvider::builder().latency(latency).build()
}

#[tokio::test(start_paused = true)]
async fn least_in_flight_spreads_concurrent_calls_evenly() {
    let providers: Vec<_> = (0..4).map(|_| slow(Duration::from_secs(2))).collect();
    let mut builder = builder();
    let mut names = Vec::new();
    for (i, provider) in providers.iter().enumerate() {
        names.push(format!("d{i}"));
        builder = builder.deployment(deployment(&names[i], provider));
    }
    let router = builder
        .group(Group::new("default", names).strategy(Strategy::LeastInFlight))
        .build()
        .unwrap();

    let answers = join_all((0..100).map(|_| call(&router, ask()))).await;
    assert!(answers.iter().all(Result::is_ok));
    for provider in &providers {
        // 25 each, within ±10 %.
        assert!(
            (22..=28).contains(&provider.calls()),
            "{:?}",
            providers
                .iter()
                .map(SimulatedProvider::calls)
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn lowest_latency_sends_most_calls_to_the_faster_deployment() {
    let fast = slow(Duration::from_millis(20));
    let sluggish = slow(Duration::from_millis(100));
    let router = builder()
        .deployment(deployment("fast", &fast))
        .deployment(deployment("sluggish", &sluggish))
        .group(Group::new("default", ["fast", "sluggish"]).strategy(Strategy::Latency))
        .build()
        .unwrap();

    // Warm-up: both have answered a few calls.
    while fast.calls() < 3 || sluggish.calls() < 3 {
        join_all((0..4).map(|_| call(&router, ask()))).await;
    }
    let (fast_before, sluggish_before) = (fast.calls(), sluggish.calls());
    // 50 rounds of 4 concurrent calls.
    for _ in 0..50 {
        join_all((0..4).map(|_| call(&router, ask()))).await;
    }
    let to_fast = fast.calls() - fast_before;
    let to_sluggish = sluggish.calls() - sluggish_before;
    assert_eq!(to_fast + to_sluggish, 200);
    assert!(to_fast >= 160, "fast {to_fast}, sluggish {to_sluggish}");
}

#[tokio::test(start_paused = true)]
async fn weights_set_the_shares() {
    let light = SimulatedProvider::new();
    let heavy = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("light", &light).weight(1))
        .deployment(deployment("heavy", &heavy).weight(4))
        .group(Group::new("default", ["light", "heavy"]))
        .build()
        .unwrap();
    for _ in 0..5_000 {
        call(&router, ask()).await.unwrap();
    }
    // 4 in 5 expected: 4000 ± 2.5 %.
    assert!(
        (3_900..=4_100).contains(&heavy.calls()),
        "{}",
        heavy.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_deployment_passes_calls_on_or_waits_in_line() {
    let narrow = slow(Duration::from_secs(1));
    let wide = slow(Duration::from_secs(1));
    let router = builder()
        .deployment(deployment("narrow", &narrow).max_in_flight(2))
        .deployment(deployment("wide", &wide))
        .group(Group::new("default", ["narrow", "wide"]).strategy(Strategy::Priority))
        .build()
        .unwrap();
    let answers = join_all((0..5).map(|_| call(&router, ask()))).await;
    let by: Vec<String> = answers
        .iter()
        .map(|a| served(a.as_ref().unwrap()).0)
        .collect();
    assert_eq!(by, ["narrow", "narrow", "wide", "wide", "wide"]);

    // Alone and full, without waiting: the call is refused at once.
    let only = slow(Duration::from_secs(1));
    let router = builder()
        .deployment(deployment("only", &only).max_in_flight(1))
        .group(Group::new("default", ["only"]))
        .build()
        .unwrap();
    let (first, second) = tokio::join!(call(&router, ask()), call(&router, ask()));
    assert!(first.is_ok());
    assert_eq!(second.unwrap_err().kind(), ErrorKind::Overloaded);

    // With `wait`, calls queue for room, first come first served.
    let only = slow(Duration::from_secs(1));
    let router = builder()
        .deployment(deployment("only", &only).max_in_flight(1))
        .group(Group::new("default", ["only"]).wait(true))
        .build()
        .unwrap();
    let started = Instant::now();
    let finished = join_all((0..3).map(|i| {
        let router = router.clone();
        async move {
            call(&router, ask()).await.unwrap();
            (i, started.elapsed())
        }
    }))
    .await;
    assert_eq!(
        finished,
        [
            (0, Duration::from_secs(1)),
            (1, Duration::from_secs(2)),
            (2, Duration::from_secs(3))
        ]
    );
    assert_eq!(router.metrics().waits, 2);
    assert_eq!(only.calls(), 3);
}

//! Move before retrying: a failing deployment costs a call one attempt while the call has
//! somewhere else to go, and runs its retry schedule only as the last place left. Each
//! deployment here is a provider under its own retry layer, as the gateway builds them.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::*;
use tokio::time::Instant;
use tollgate_core::{ErrorKind, Outcome, SimulatedProvider};
use tollgate_retry::{Jitter, RetryLayer, RetryPolicy};
use tollgate_router::{Deployment, Group, GroupConfig, Strategy};
use tower::{ServiceBuilder, util::BoxCloneSyncService};

/// `provider` under a retry layer of 3 retries, waiting 1 s, 2 s, 4 s between them.
fn retried(name: &str, provider: &SimulatedProvider) -> Deployment<Boxed> {
    let policy = RetryPolicy::builder()
        .jitter(Jitter::None)
        .budget(None)
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(provider.clone());
    Deployment::new(name, BoxCloneSyncService::new(service)).model(format!("{name}-model"))
}

fn failing() -> SimulatedProvider {
    SimulatedProvider::builder()
        .failure_rate(Outcome::Server, 1.0)
        .build()
}

fn priority(members: &[&str]) -> Group {
    Group::new("default", members.iter().copied()).strategy(Strategy::Priority)
}

#[tokio::test(start_paused = true)]
async fn a_failure_moves_at_once_when_another_deployment_can_answer() {
    let down = failing();
    let healthy = SimulatedProvider::new();
    let router = builder()
        .deployment(retried("down", &down))
        .deployment(retried("healthy", &healthy))
        .group(priority(&["down", "healthy"]))
        .build()
        .unwrap();

    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("healthy".to_owned(), 1));
    // One attempt on the failing deployment, no backoff waited.
    assert_eq!((down.calls(), healthy.calls()), (1, 1));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_last_place_left_runs_its_retry_schedule() {
    let down = failing();
    let router = builder()
        .deployment(retried("down", &down))
        .group(priority(&["down"]))
        .build()
        .unwrap();

    let started = Instant::now();
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(down.calls(), 4);
    assert_eq!(started.elapsed(), Duration::from_secs(1 + 2 + 4));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_whose_alternatives_are_cooling_is_the_last_place_left() {
    let down = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Server, Outcome::Success])
        .build();
    let limited = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(60))])
        .build();
    let router = builder()
        .deployment(retried("limited", &limited))
        .deployment(retried("down", &down))
        .group(priority(&["limited", "down"]))
        .build()
        .unwrap();

    // The 429 cools `limited` for a minute and moves the call to `down`, the last place left:
    // its retries run there (1 s, then 2 s) until it answers.
    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("down".to_owned(), 1));
    assert_eq!((limited.calls(), down.calls()), (1, 3));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_fallback_group_is_somewhere_else_to_go() {
    let down = failing();
    let spare = SimulatedProvider::new();
    let router = builder()
        .deployment(retried("down", &down))
        .deployment(retried("spare", &spare))
        .group(Group::new("default", ["down"]).config(GroupConfig {
            fallbacks: vec!["spare".into()],
            ..GroupConfig::default()
        }))
        .group(Group::new("spare", ["spare"]))
        .build()
        .unwrap();

    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("spare".to_owned(), 1));
    assert_eq!(down.calls(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retries_before_move_asks_for_that_many_retries_first() {
    let down = failing();
    let healthy = SimulatedProvider::new();
    let router = builder()
        .deployment(retried("down", &down))
        .deployment(retried("healthy", &healthy))
        .group(priority(&["down", "healthy"]).config(GroupConfig {
            strategy: Strategy::Priority,
            retries_before_move: 2,
            ..GroupConfig::default()
        }))
        .build()
        .unwrap();

    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("healthy".to_owned(), 1));
    assert_eq!(down.calls(), 3);
    assert_eq!(started.elapsed(), Duration::from_secs(1 + 2));
}

#[tokio::test(start_paused = true)]
async fn a_failing_deployment_is_called_at_most_cooldown_failures_times_per_cooldown() {
    // It fails its first five calls, then recovers.
    let down = SimulatedProvider::builder()
        .script(std::iter::repeat_n(Outcome::Server, 5))
        .latency(Duration::from_millis(100))
        .build();
    let healthy = SimulatedProvider::builder()
        .latency(Duration::from_millis(100))
        .build();
    let router = builder()
        .deployment(retried("down", &down))
        .deployment(retried("healthy", &healthy))
        .group(priority(&["down", "healthy"]))
        .build()
        .unwrap();

    // One at a time until it cools (3 failures, the default), then cooling for 10 s.
    for _ in 0..5 {
        assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "healthy");
    }
    assert_eq!(down.calls(), 3);
    // Each time its cooldown ends, 8 calls arrive together: one is its trial; the others go
    // straight to the healthy deployment. Two trials fail and move (cooling it again)...
    for round in 1..=2 {
        advance(Duration::from_secs(10)).await;
        let started = Instant::now();
        let answers = join_all((0..8).map(|_| call(&router, ask()))).await;
        for answer in answers {
            assert_eq!(served(&answer.unwrap()).0, "healthy");
        }
        assert_eq!(down.calls(), 3 + round, "round {round}");
        // The trial's call waited for the failing attempt, then the healthy one; no backoff.
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }
    // ...the third answers, and ends the trial: after it every call goes there again.
    advance(Duration::from_secs(10)).await;
    let answers = join_all((0..8).map(|_| call(&router, ask()))).await;
    let on_down = answers
        .iter()
        .filter(|answer| served(answer.as_ref().unwrap()).0 == "down")
        .count();
    assert_eq!((on_down, down.calls()), (1, 6));
    let answers = join_all((0..8).map(|_| call(&router, ask()))).await;
    assert!(
        answers
            .iter()
            .all(|a| served(a.as_ref().unwrap()).0 == "down")
    );
    assert_eq!(down.calls(), 14);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_group_of_one_moves_at_once_while_a_later_one_can_answer() {
    let (down, also_down, spare) = (failing(), failing(), SimulatedProvider::new());
    let router = builder()
        .deployment(retried("down", &down))
        .deployment(retried("also_down", &also_down))
        .deployment(retried("spare", &spare))
        .group(Group::new("default", ["down"]).config(GroupConfig {
            fallbacks: vec!["backup".into(), "spare".into()],
            ..GroupConfig::default()
        }))
        .group(Group::new("backup", ["also_down"]))
        .group(Group::new("spare", ["spare"]))
        .build()
        .unwrap();

    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("spare".to_owned(), 2));
    assert_eq!((down.calls(), also_down.calls()), (1, 1));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

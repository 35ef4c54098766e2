//! When a deployment is skipped and for how long: `Retry-After`, a spent provider limit, repeated
//! failures, an open breaker; and how a limit running low steers traffic away.

mod support;

use std::time::Duration;

use support::*;
use tollgate_core::{ErrorKind, LlmError, Outcome, SimulatedProvider};
use tollgate_router::{CooldownConfig, CooldownReason, Group, RouterConfig, Strategy};

#[tokio::test(start_paused = true)]
async fn retry_after_keeps_every_call_away_until_it_has_passed() {
    let limited = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(30))])
        .build();
    let spare = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("limited", &limited))
        .deployment(deployment("spare", &spare))
        .group(Group::new("default", ["limited", "spare"]).strategy(Strategy::Priority))
        .build()
        .unwrap();

    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spare".to_owned(), 1)
    );
    // A call every second for the next 29 s: none reaches the limited deployment.
    for _ in 0..29 {
        advance(Duration::from_secs(1)).await;
        assert_eq!(
            served(&call(&router, ask()).await.unwrap()),
            ("spare".to_owned(), 0)
        );
    }
    assert_eq!(limited.calls(), 1);
    assert_eq!(router.stats()[0].cooling_for, Some(Duration::from_secs(1)));

    advance(Duration::from_secs(1)).await;
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("limited".to_owned(), 0)
    );
    assert_eq!((limited.calls(), spare.calls()), (2, 30));
    assert_eq!(
        router.stats()[0].cooldowns,
        [(CooldownReason::RetryAfter, 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_provider_limit_is_skipped_until_it_resets_without_a_call() {
    let spent = SimulatedProvider::new();
    let spare = SimulatedProvider::new();
    let router = builder()
        // Its first answer says: 0 of 100 requests left, full again in 10 s.
        .deployment(with_limits("spent", &spent, |n| {
            (n == 0).then(|| snapshot(100, 0, "10s"))
        }))
        .deployment(deployment("spare", &spare))
        .group(Group::new("default", ["spent", "spare"]).strategy(Strategy::Priority))
        .build()
        .unwrap();

    // The answer itself is good: it is the caller's.
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spent".to_owned(), 0)
    );
    for _ in 0..9 {
        advance(Duration::from_secs(1)).await;
        assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "spare");
    }
    advance(Duration::from_millis(999)).await;
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "spare");
    // No call was sent to the spent deployment to learn that it is spent.
    assert_eq!(spent.calls(), 1);

    advance(Duration::from_millis(1)).await;
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "spent");
    assert_eq!((spent.calls(), spare.calls()), (2, 10));
    assert_eq!(
        router.stats()[0].cooldowns,
        [(CooldownReason::QuotaExhausted, 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_limit_running_low_gets_proportionally_less_traffic() {
    let low = SimulatedProvider::new();
    let high = SimulatedProvider::new();
    // Two equal deployments; one says 10 of 100 requests are left, the other 90.
    let router = builder()
        .deployment(with_limits("low", &low, |_| Some(snapshot(100, 10, "1m"))))
        .deployment(with_limits("high", &high, |_| {
            Some(snapshot(100, 90, "1m"))
        }))
        .group(Group::new("default", ["low", "high"]))
        .build()
        .unwrap();
    // One call each teaches the router what the headers say.
    call(&router, ask()).await.unwrap();
    while low.calls() == 0 || high.calls() == 0 {
        call(&router, ask()).await.unwrap();
    }
    let (low_before, high_before) = (low.calls(), high.calls());
    for _ in 0..3_000 {
        call(&router, ask()).await.unwrap();
    }
    let low_share = (low.calls() - low_before) as f64;
    let high_share = (high.calls() - high_before) as f64;
    // Below `adaptive_below` (0.5) a deployment's share scales by what is left over 0.5: 10 %
    // left gives 0.2 of its weight, 90 % the whole of it. So 5 calls to `high` for each to `low`
    // (an even split without the headers).
    let ratio = high_share / low_share;
    assert!((4.5..=5.5).contains(&ratio), "high/low = {ratio:.2}");

    // Once the window resets, the split is even again.
    advance(Duration::from_secs(61)).await;
    let router_stats = router.stats();
    assert!(router_stats.iter().all(|d| d.traffic_share == 1.0));
}

#[tokio::test(start_paused = true)]
async fn repeated_failures_cool_a_deployment_down_for_the_configured_time() {
    let flaky = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Timeout, Outcome::Overloaded])
        .build();
    let spare = SimulatedProvider::new();
    let router = builder_with(RouterConfig {
        cooldown: CooldownConfig {
            failures: 3,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(20),
            ..CooldownConfig::default()
        },
        ..RouterConfig::default()
    })
    .deployment(deployment("flaky", &flaky))
    .deployment(deployment("spare", &spare))
    .group(Group::new("default", ["flaky", "spare"]).strategy(Strategy::Priority))
    .build()
    .unwrap();

    // Three failures within the minute: each call moves, and the third cools it down.
    for _ in 0..3 {
        assert_eq!(
            served(&call(&router, ask()).await.unwrap()),
            ("spare".to_owned(), 1)
        );
        advance(Duration::from_secs(10)).await;
    }
    assert_eq!(flaky.calls(), 3);
    // It cooled at 20 s for 20 s; now is 30 s.
    assert_eq!(router.stats()[0].cooling_for, Some(Duration::from_secs(10)));
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spare".to_owned(), 0)
    );
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("flaky".to_owned(), 0)
    );
    assert_eq!(router.stats()[0].cooldowns, [(CooldownReason::Failures, 1)]);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_skipped_for_as_long_as_it_says() {
    let open = SimulatedProvider::builder()
        .script([Outcome::Fail(
            LlmError::new(ErrorKind::CircuitOpen, "breaker open")
                .with_retry_after(Duration::from_secs(15)),
        )])
        .build();
    let spare = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("open", &open))
        .deployment(deployment("spare", &spare))
        .group(Group::new("default", ["open", "spare"]).strategy(Strategy::Priority))
        .build()
        .unwrap();
    assert_eq!(
        served(&call(&router, ask()).await.unwrap()),
        ("spare".to_owned(), 1)
    );
    advance(Duration::from_secs(14)).await;
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "spare");
    advance(Duration::from_secs(1)).await;
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "open");
}

#[tokio::test(start_paused = true)]
async fn with_everything_cooling_the_error_says_why_and_when_to_come_back() {
    let a = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(30))])
        .build();
    let b = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(20))])
        .build();
    let router = builder()
        .deployment(deployment("a", &a))
        .deployment(deployment("b", &b))
        .group(Group::new("default", ["a", "b"]).strategy(Strategy::Priority))
        .build()
        .unwrap();
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert!(
        error
            .message()
            .ends_with("tried a (rate_limited), b (rate_limited)")
    );

    advance(Duration::from_secs(10)).await;
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    // b is free first: 20 s after it said so.
    assert_eq!(error.retry_after(), Some(Duration::from_secs(10)));
    assert!(
        error.message().contains("asked for a pause"),
        "{}",
        error.message()
    );
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(router.metrics().none_available, 1);
}

#[tokio::test(start_paused = true)]
async fn a_group_with_nowhere_else_to_go_leaves_its_provider_to_answer() {
    let only = SimulatedProvider::builder()
        .script([
            Outcome::rate_limited(Duration::from_secs(30)),
            Outcome::rate_limited(Duration::from_secs(30)),
        ])
        .build();
    let router = builder()
        .deployment(deployment("only", &only))
        .group(Group::new("default", ["only"]))
        .build()
        .unwrap();
    // Skipping the only deployment would only turn the provider's answer into ours.
    for _ in 0..3 {
        let _ = call(&router, ask()).await;
    }
    assert_eq!(only.calls(), 3);
    // The cooldown is still kept, for another group that lists it and has a spare.
    assert_eq!(
        router.stats()[0].cooldowns,
        [(CooldownReason::RetryAfter, 1)]
    );
}

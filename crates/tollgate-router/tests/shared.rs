//! A deployment's health shared between routers (as between processes): what goes out as news,
//! what comes in, which cooldown wins, and that nothing learned goes back out.

mod support;

use std::time::{Duration, SystemTime};

use support::*;
use tollgate_core::{ErrorKind, Outcome, SimulatedProvider};
use tollgate_router::{BoardMetrics, CooldownReason, Group, Notice, Router, Strategy};

/// A wall clock that moves with tokio's paused clock, from a fixed start.
struct Wall(tokio::time::Instant);

impl Wall {
    fn start() -> Self {
        Self(tokio::time::Instant::now())
    }

    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.0.elapsed()
    }
}

/// A router sending `default` to `first`, then `spare`.
fn pair(first: &SimulatedProvider, spare: &SimulatedProvider) -> Router<Boxed> {
    builder()
        .deployment(deployment("first", first))
        .deployment(deployment("spare", spare))
        .group(Group::new("default", ["first", "spare"]).strategy(Strategy::Priority))
        .build()
        .unwrap()
}

fn cooldown(deployment: &str, reason: CooldownReason, until: SystemTime) -> Notice {
    Notice::Cooldown {
        deployment: deployment.into(),
        reason,
        until,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn a_429_is_news_once_and_keeps_the_other_router_away_until_it_ends() {
    let wall = Wall::start();
    let limited_a = SimulatedProvider::builder()
        .script([Outcome::rate_limited(secs(30))])
        .build();
    let a = pair(&limited_a, &SimulatedProvider::new());
    let (limited_b, spare_b) = (SimulatedProvider::new(), SimulatedProvider::new());
    let b = pair(&limited_b, &spare_b);
    let (board_a, board_b) = (a.health(), b.health());

    assert_eq!(served(&call(&a, ask()).await.unwrap()), ("spare".into(), 1));
    let news = board_a.changes(wall.now());
    let expected = cooldown("first", CooldownReason::RetryAfter, wall.now() + secs(30));
    assert_eq!(news, std::slice::from_ref(&expected));
    // Handed out once.
    assert_eq!(board_a.changes(wall.now()), []);

    advance(secs(2)).await;
    assert!(board_b.apply(&expected, wall.now()));
    for _ in 0..5 {
        assert_eq!(served(&call(&b, ask()).await.unwrap()), ("spare".into(), 0));
        advance(secs(1)).await;
    }
    assert_eq!((limited_b.calls(), spare_b.calls()), (0, 5));
    assert_eq!(b.stats()[0].cooling_for, Some(secs(23)));
    // What it was told is not news, and is no cooldown it decided.
    assert_eq!(board_b.changes(wall.now()), []);
    assert_eq!(b.stats()[0].cooldowns, []);
    let metrics = board_b.metrics();
    assert_eq!((metrics.sent, metrics.applied), (0, 1));

    advance(secs(23)).await;
    assert_eq!(served(&call(&b, ask()).await.unwrap()), ("first".into(), 0));
    assert_eq!(limited_b.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_later_cooldown_wins_and_one_superseded_is_no_news() {
    let wall = Wall::start();
    let limited = SimulatedProvider::builder()
        .script([
            Outcome::rate_limited(secs(60)),
            Outcome::rate_limited(secs(120)),
        ])
        .build();
    // One deployment with nowhere else to go: called even while cooling down.
    let router = builder()
        .deployment(deployment("only", &limited))
        .group(Group::new("default", ["only"]))
        .build()
        .unwrap();
    let board = router.health();

    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    let told = |n| cooldown("only", CooldownReason::Failures, wall.now() + secs(n));
    // Earlier than its own: nothing changes.
    assert!(!board.apply(&told(30), wall.now()));
    assert_eq!(router.stats()[0].cooling_for, Some(secs(60)));
    // Later: it wins, with its reason.
    assert!(board.apply(&told(90), wall.now()));
    assert_eq!(router.stats()[0].cooling_for, Some(secs(90)));
    // Its own 60 s cooldown is older news than what the others know.
    assert_eq!(board.changes(wall.now()), []);

    // A later one of its own is news again.
    call(&router, ask()).await.unwrap_err();
    assert_eq!(
        board.changes(wall.now()),
        [cooldown(
            "only",
            CooldownReason::RetryAfter,
            wall.now() + secs(120)
        )]
    );
    assert_eq!(router.stats()[0].cooling_for, Some(secs(120)));
    assert_eq!(
        router.stats()[0].cooldowns,
        [(CooldownReason::RetryAfter, 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_limit_goes_out_as_a_cooldown_and_a_reading() {
    let wall = Wall::start();
    let spent = SimulatedProvider::new();
    let a = builder()
        .deployment(with_limits("first", &spent, |n| {
            (n == 0).then(|| snapshot(100, 0, "10s"))
        }))
        .deployment(deployment("spare", &SimulatedProvider::new()))
        .group(Group::new("default", ["first", "spare"]).strategy(Strategy::Priority))
        .build()
        .unwrap();
    let (first_b, spare_b) = (SimulatedProvider::new(), SimulatedProvider::new());
    let b = pair(&first_b, &spare_b);
    let (board_a, board_b) = (a.health(), b.health());

    assert_eq!(served(&call(&a, ask()).await.unwrap()), ("first".into(), 0));
    let now = wall.now();
    let news = board_a.changes(now);
    assert_eq!(
        news,
        [
            cooldown("first", CooldownReason::QuotaExhausted, now + secs(10)),
            Notice::Limit {
                deployment: "first".into(),
                left: 0.0,
                until: now + secs(10),
                read_at: now,
            }
        ]
    );

    for notice in &news {
        assert!(board_b.apply(notice, now));
    }
    for _ in 0..3 {
        assert_eq!(served(&call(&b, ask()).await.unwrap()).0, "spare");
    }
    assert_eq!((first_b.calls(), spare_b.calls()), (0, 3));
    let stats = &b.stats()[0];
    // Nothing left: skipped, and its share of traffic at the floor.
    assert_eq!(
        (stats.cooling_for, stats.traffic_share),
        (Some(secs(10)), 0.01)
    );
    assert_eq!(board_b.changes(now), []);
}

#[tokio::test(start_paused = true)]
async fn only_a_reading_that_moves_a_step_is_news_and_the_later_reading_wins() {
    let wall = Wall::start();
    let low = SimulatedProvider::new();
    // 10 %, then 11 % (the same step of 5 %), then 30 % left of 100 requests a minute.
    let a = builder()
        .deployment(with_limits("low", &low, |n| {
            Some(snapshot(100, [10, 11, 30][n as usize % 3], "1m"))
        }))
        .group(Group::new("default", ["low"]))
        .build()
        .unwrap();
    let b = builder()
        .deployment(deployment("low", &SimulatedProvider::new()))
        .group(Group::new("default", ["low"]))
        .build()
        .unwrap();
    let (board_a, board_b) = (a.health(), b.health());
    let reading = |left: f64, read_at: SystemTime| Notice::Limit {
        deployment: "low".into(),
        left,
        until: read_at + secs(60),
        read_at,
    };

    call(&a, ask()).await.unwrap();
    let first = wall.now();
    assert_eq!(board_a.changes(first), [reading(0.1, first)]);
    advance(secs(1)).await;
    call(&a, ask()).await.unwrap();
    assert_eq!(board_a.changes(wall.now()), []);
    advance(secs(1)).await;
    call(&a, ask()).await.unwrap();
    assert_eq!(board_a.changes(wall.now()), [reading(0.3, wall.now())]);

    assert!(board_b.apply(&reading(0.1, first), wall.now()));
    assert_eq!(b.stats()[0].traffic_share, 0.1);
    // An older reading does not replace it; a newer one does.
    assert!(!board_b.apply(&reading(0.5, first - secs(1)), wall.now()));
    assert_eq!(b.stats()[0].traffic_share, 0.1);
    assert!(board_b.apply(&reading(0.3, wall.now()), wall.now()));
    assert_eq!(b.stats()[0].traffic_share, 0.3);
    assert_eq!(board_b.changes(wall.now()), []);
    // Once its limit has reset, it gets its whole share again.
    advance(secs(60)).await;
    assert_eq!(b.stats()[0].traffic_share, 1.0);
}

#[tokio::test(start_paused = true)]
async fn notices_that_ran_out_or_name_no_deployment_change_nothing() {
    let wall = Wall::start();
    let first = SimulatedProvider::new();
    let router = pair(&first, &SimulatedProvider::new());
    let board = router.health();
    advance(secs(5)).await;
    let now = wall.now();
    let stale = [
        cooldown("first", CooldownReason::RetryAfter, now - secs(1)),
        cooldown("elsewhere", CooldownReason::RetryAfter, now + secs(30)),
        Notice::Limit {
            deployment: "first".into(),
            left: 0.1,
            until: now,
            read_at: now - secs(60),
        },
    ];
    for notice in &stale {
        assert!(!board.apply(notice, now), "{notice:?}");
    }
    assert_eq!(board.metrics(), BoardMetrics::default());
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "first");
    assert_eq!(first.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn current_lists_every_live_cooldown_learned_here_or_told() {
    let wall = Wall::start();
    let limited = SimulatedProvider::builder()
        .script([Outcome::rate_limited(secs(30))])
        .build();
    let router = pair(&limited, &SimulatedProvider::new());
    let board = router.health();
    assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "spare");
    let start = wall.now();
    let told = cooldown("spare", CooldownReason::Failures, start + secs(60));
    assert!(board.apply(&told, start));
    assert_eq!(
        board.changes(start),
        [cooldown(
            "first",
            CooldownReason::RetryAfter,
            start + secs(30)
        )]
    );

    // Handed out already, or told: still all of it, for a store that lost what it held.
    advance(secs(10)).await;
    assert_eq!(
        board.current(wall.now()),
        [
            cooldown("first", CooldownReason::RetryAfter, start + secs(30)),
            told.clone()
        ]
    );
    advance(secs(20)).await;
    assert_eq!(board.current(wall.now()), [told]);
    // One handed out as news, then two and one as they stood.
    assert_eq!(board.metrics().sent, 4);
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_wakes_the_board_and_a_reading_waits_for_the_next_look() {
    let wall = Wall::start();
    let provider = SimulatedProvider::builder()
        .script([Outcome::Success, Outcome::rate_limited(secs(30))])
        .build();
    let router = builder()
        .deployment(with_limits("only", &provider, |_| {
            Some(snapshot(100, 20, "1m"))
        }))
        .group(Group::new("default", ["only"]))
        .build()
        .unwrap();
    let board = router.health();
    let woken = || tokio::time::timeout(secs(1), board.changed());

    assert!(woken().await.is_err());
    call(&router, ask()).await.unwrap();
    let read_at = wall.now();
    assert!(woken().await.is_err());
    assert_eq!(
        board.changes(wall.now()),
        [Notice::Limit {
            deployment: "only".into(),
            left: 0.2,
            until: read_at + secs(60),
            read_at,
        }]
    );

    call(&router, ask()).await.unwrap_err();
    assert!(woken().await.is_ok());
    assert_eq!(
        board.changes(wall.now()),
        [cooldown(
            "only",
            CooldownReason::RetryAfter,
            wall.now() + secs(30)
        )]
    );
}

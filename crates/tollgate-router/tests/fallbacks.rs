//! Where a failed call goes: the next deployment, the fallback groups, the special chains, and
//! nowhere for the caller's own mistakes; streams, the deadline, hedging.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use support::*;
use tokio::time::Instant;
use tollgate_core::{
    ErrorKind, LlmError, LlmRequest, LlmResponse, Outcome, SimulatedProvider,
    stream::{LlmStream, StreamEvent},
};
use tollgate_router::{
    CooldownReason, Deadline, Deployment, Group, HedgeAfter, RouterConfig, Strategy,
};
use tower::util::BoxCloneSyncService;

fn scripted(outcomes: impl IntoIterator<Item = Outcome>) -> SimulatedProvider {
    SimulatedProvider::builder().script(outcomes).build()
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_primary_moves_to_the_secondary_once() {
    let primary = scripted([Outcome::Overloaded]);
    let secondary = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("primary", &primary))
        .deployment(deployment("secondary", &secondary))
        .group(Group::new("default", ["primary", "secondary"]).strategy(Strategy::Priority))
        .build()
        .unwrap();

    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("secondary".to_owned(), 1));
    assert_eq!(answer.model, "secondary-model");
    assert_eq!((primary.calls(), secondary.calls()), (1, 1));
    assert_eq!(router.metrics().moves, 1);
}

#[tokio::test(start_paused = true)]
async fn groups_fall_back_in_order_after_their_own_deployments() {
    let a = scripted([Outcome::Server]);
    let b = scripted([Outcome::Connect]);
    let c = scripted([Outcome::Timeout]);
    let d = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("a", &a))
        .deployment(deployment("b", &b))
        .deployment(deployment("c", &c))
        .deployment(deployment("d", &d))
        .group(
            Group::new("default", ["a", "b"])
                .strategy(Strategy::Priority)
                .fallbacks(["second", "third"]),
        )
        .group(Group::new("second", ["c"]))
        .group(Group::new("third", ["d"]))
        .build()
        .unwrap();

    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("d".to_owned(), 3));
    assert_eq!(
        answer
            .extensions
            .get::<tollgate_router::Served>()
            .unwrap()
            .group
            .as_ref(),
        "third"
    );
    assert_eq!([a.calls(), b.calls(), c.calls(), d.calls()], [1, 1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn max_fallbacks_bounds_the_moves_and_the_error_names_each_try() {
    let providers: Vec<_> = (0..4).map(|_| scripted([Outcome::Server])).collect();
    let mut builder = builder_with(RouterConfig {
        max_fallbacks: 2,
        seed: Some(1),
        ..RouterConfig::default()
    });
    for (i, provider) in providers.iter().enumerate() {
        builder = builder.deployment(deployment(&format!("d{i}"), provider));
    }
    let router = builder
        .group(Group::new("default", ["d0", "d1", "d2", "d3"]).strategy(Strategy::Priority))
        .build()
        .unwrap();

    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert!(
        error
            .message()
            .ends_with("tried d0 (server), d1 (server), d2 (server)"),
        "{}",
        error.message()
    );
    let calls: Vec<u64> = providers.iter().map(SimulatedProvider::calls).collect();
    assert_eq!(calls, [1, 1, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_context_window_error_moves_to_the_large_context_group() {
    let small = SimulatedProvider::builder()
        .script([Outcome::Fail(LlmError::new(
            ErrorKind::InvalidRequest,
            "This model's maximum context length is 8192 tokens (context_length_exceeded)",
        ))])
        .build();
    let other = SimulatedProvider::new();
    let large = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("small", &small))
        .deployment(deployment("other", &other))
        .deployment(deployment("large", &large))
        .group(
            Group::new("default", ["small"])
                .fallbacks(["general"])
                .context_window_fallbacks(["long"]),
        )
        .group(Group::new("general", ["other"]))
        .group(Group::new("long", ["large"]))
        .build()
        .unwrap();

    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("large".to_owned(), 1));
    assert_eq!(answer.model, "large-model");
    assert_eq!((small.calls(), other.calls(), large.calls()), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_content_filter_refusal_moves_to_the_content_policy_group_only() {
    let strict = scripted([Outcome::fail(ErrorKind::ContentFilter)]);
    let lenient = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("strict", &strict))
        .deployment(deployment("lenient", &lenient))
        .group(Group::new("default", ["strict"]).content_policy_fallbacks(["lenient"]))
        .group(Group::new("lenient", ["lenient"]))
        .build()
        .unwrap();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer).0, "lenient");

    // Without such a group the refusal is the answer.
    let strict = scripted([Outcome::fail(ErrorKind::ContentFilter)]);
    let other = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("strict", &strict))
        .deployment(deployment("other", &other))
        .group(Group::new("default", ["strict", "other"]).strategy(Strategy::Priority))
        .build()
        .unwrap();
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ContentFilter);
    assert_eq!(other.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_bad_request_never_moves() {
    let first = scripted([Outcome::status(
        tollgate_core::http::StatusCode::BAD_REQUEST,
    )]);
    let second = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("first", &first))
        .deployment(deployment("second", &second))
        .group(
            Group::new("default", ["first", "second"])
                .strategy(Strategy::Priority)
                .fallbacks(["spare"]),
        )
        .group(Group::new("spare", ["second"]))
        .build()
        .unwrap();

    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!((first.calls(), second.calls()), (1, 0));
    assert_eq!(router.metrics().moves, 0);
    // Nor does it cool the deployment down: the next call goes there again.
    call(&router, ask()).await.unwrap();
    assert_eq!(first.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_context_window_kind_moves_to_the_large_context_group_only() {
    let small = scripted([Outcome::fail(ErrorKind::ContextWindow)]);
    let other = SimulatedProvider::new();
    let large = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("small", &small))
        .deployment(deployment("other", &other))
        .deployment(deployment("large", &large))
        .group(
            Group::new("default", ["small", "other"])
                .strategy(Strategy::Priority)
                .context_window_fallbacks(["long"]),
        )
        .group(Group::new("long", ["large"]))
        .build()
        .unwrap();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("large".to_owned(), 1));
    // Another deployment of the same group has the same window: not tried.
    assert_eq!((small.calls(), other.calls(), large.calls()), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_status_listed_in_fallback_on_status_moves_whatever_its_kind() {
    use tollgate_core::http::StatusCode;
    let missing = scripted([
        Outcome::status(StatusCode::NOT_FOUND),
        Outcome::status(StatusCode::BAD_REQUEST),
    ]);
    let second = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("missing", &missing))
        .deployment(deployment("second", &second))
        .group(
            Group::new("default", ["missing", "second"])
                .strategy(Strategy::Priority)
                .fallback_on_status([404]),
        )
        .build()
        .unwrap();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("second".to_owned(), 1));
    assert_eq!((missing.calls(), second.calls()), (1, 1));
    // A status not listed stops where its kind says.
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!((missing.calls(), second.calls()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_moves_and_takes_its_deployment_out() {
    let bad_key = scripted([Outcome::fail(ErrorKind::Auth)]);
    let good_key = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("bad-key", &bad_key))
        .deployment(deployment("good-key", &good_key))
        .group(Group::new("default", ["bad-key", "good-key"]).strategy(Strategy::Priority))
        .build()
        .unwrap();

    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(served(&answer), ("good-key".to_owned(), 1));
    for _ in 0..5 {
        advance(Duration::from_secs(60)).await;
        assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "good-key");
    }
    assert_eq!((bad_key.calls(), good_key.calls()), (1, 6));
    let stats = &router.stats()[0];
    assert_eq!(stats.cooldowns, [(CooldownReason::Auth, 1)]);
    assert_eq!(stats.cooling_for, Some(Duration::from_secs(300)));
}

/// A deployment that answers a stream: `events` for each call, in turn.
fn streaming(
    name: &str,
    streams: Vec<Vec<Result<StreamEvent, LlmError>>>,
) -> (Deployment<Boxed>, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let streams = Arc::new(std::sync::Mutex::new(streams.into_iter()));
    let service = tower::service_fn(move |_: LlmRequest| {
        counter.fetch_add(1, Relaxed);
        let events = streams.lock().unwrap().next().expect("scripted");
        async move {
            Ok::<_, LlmError>(LlmResponse::new("m", "").with_stream(LlmStream::from_events(events)))
        }
    });
    (
        Deployment::new(name, BoxCloneSyncService::new(service)),
        calls,
    )
}

#[tokio::test(start_paused = true)]
async fn a_stream_moves_before_its_first_event_and_not_after() {
    let reset = || Err(LlmError::new(ErrorKind::Connect, "connection reset"));
    let (first, first_calls) = streaming(
        "first",
        vec![vec![reset()], vec![Ok(StreamEvent::text("Once")), reset()]],
    );
    let (second, second_calls) = streaming(
        "second",
        vec![vec![
            Ok(StreamEvent::text("Hello")),
            Ok(StreamEvent::text(" world")),
        ]],
    );
    let router = builder_with(RouterConfig {
        cooldown: tollgate_router::CooldownConfig {
            failures: 0,
            ..Default::default()
        },
        ..RouterConfig::default()
    })
    .deployment(first)
    .deployment(second)
    .group(Group::new("default", ["first", "second"]).strategy(Strategy::Priority))
    .build()
    .unwrap();

    // Fails before its first event: moved, and the caller reads the second's whole stream.
    let mut answer = call(&router, ask().streaming()).await.unwrap();
    assert_eq!(served(&answer), ("second".to_owned(), 1));
    let whole = answer.take_stream().unwrap().collect().await.unwrap();
    assert_eq!(whole.content(), "Hello world");

    // Fails after it: the caller has the first event, then the error; nothing moves.
    let mut answer = call(&router, ask().streaming()).await.unwrap();
    assert_eq!(served(&answer), ("first".to_owned(), 0));
    let mut stream = answer.take_stream().unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamEvent::Text { .. }))
    ));
    assert_eq!(
        stream.next().await.unwrap().unwrap_err().kind(),
        ErrorKind::Connect
    );
    assert_eq!(
        (first_calls.load(Relaxed), second_calls.load(Relaxed)),
        (2, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_every_move_together() {
    let slow_failures = || {
        SimulatedProvider::builder()
            .latency(Duration::from_secs(3))
            .script([Outcome::Server])
            .build()
    };
    let (a, b, c) = (slow_failures(), slow_failures(), slow_failures());
    let router = builder_with(RouterConfig {
        timeout: Some(Duration::from_secs(5)),
        ..RouterConfig::default()
    })
    .deployment(deployment("a", &a))
    .deployment(deployment("b", &b))
    .deployment(deployment("c", &c))
    .group(Group::new("default", ["a", "b", "c"]).strategy(Strategy::Priority))
    .build()
    .unwrap();

    let started = Instant::now();
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        error.message().contains("2 calls sent"),
        "{}",
        error.message()
    );
    assert!(error.message().contains("simulated"), "{}", error.message());
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 0));
    assert_eq!(router.metrics().deadlines, 1);

    // A request's own deadline is tighter still.
    let mut request = ask();
    request
        .extensions
        .insert(Deadline::after(Duration::from_secs(1)));
    let started = Instant::now();
    let error = call(&router, request).await.unwrap_err();
    assert_eq!(
        (error.kind(), started.elapsed()),
        (ErrorKind::Timeout, Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_answers_when_the_first_is_slow_and_the_first_is_dropped() {
    let slow = SimulatedProvider::builder()
        .latency(Duration::from_secs(10))
        .build();
    let fast = SimulatedProvider::builder()
        .latency(Duration::from_millis(100))
        .build();
    let group = |hedge: bool| {
        let group = Group::new("default", ["slow", "fast"]).strategy(Strategy::Priority);
        if hedge {
            group.hedge_after(HedgeAfter::After(Duration::from_secs(1)))
        } else {
            group
        }
    };
    let router = builder()
        .deployment(deployment("slow", &slow))
        .deployment(deployment("fast", &fast))
        .group(group(true))
        .build()
        .unwrap();

    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(1_100));
    let served_by = answer.extensions.get::<tollgate_router::Served>().unwrap();
    assert_eq!(
        (&*served_by.deployment, served_by.moves, served_by.hedged),
        ("fast", 1, true)
    );
    assert_eq!((slow.calls(), fast.calls()), (1, 1));
    // The slow call was dropped, not left running.
    let stats = router.stats();
    assert_eq!(
        (stats[0].in_flight, stats[0].dropped, stats[0].successes),
        (0, 1, 0)
    );
    assert_eq!((stats[1].in_flight, stats[1].successes), (0, 1));
    let metrics = router.metrics();
    assert_eq!((metrics.hedges, metrics.hedge_wins), (1, 1));

    // Without hedging: exactly one call, however slow.
    let slow = SimulatedProvider::builder()
        .latency(Duration::from_secs(10))
        .build();
    let fast = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("slow", &slow))
        .deployment(deployment("fast", &fast))
        .group(group(false))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(served(&answer), ("slow".to_owned(), 0));
    assert_eq!((slow.calls(), fast.calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn unknown_groups_and_bad_builds_are_clear_errors() {
    let provider = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("a", &provider))
        .group(Group::new("chat", ["a"]))
        .build()
        .unwrap();
    let error = call(&router, ask()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.message().contains("no default group"));
    let error = call(&router, ask_role("summarize")).await.unwrap_err();
    assert!(error.message().contains("\"summarize\""));

    let mistake = |builder: tollgate_router::RouterBuilder<Boxed>| builder.build().unwrap_err();
    let error = mistake(
        builder()
            .deployment(deployment("a", &provider))
            .group(Group::new("chat", ["a", "b"])),
    );
    assert_eq!(error.path(), "groups.chat.members");
    let error = mistake(
        builder()
            .deployment(deployment("a", &provider))
            .group(Group::new("chat", ["a"]).fallbacks(["nowhere"])),
    );
    assert_eq!(error.path(), "groups.chat.fallbacks");
    let error = mistake(builder().deployment(deployment("a", &provider).weight(0)));
    assert_eq!(error.path(), "deployments.a.weight");
    let error = mistake(
        builder()
            .deployment(deployment("a", &provider))
            .group(Group::new("chat", ["a"]).hedge_after(HedgeAfter::After(Duration::ZERO))),
    );
    assert_eq!(error.path(), "groups.chat.hedge_after");
}

#[tokio::test(start_paused = true)]
async fn a_request_with_a_role_goes_to_that_group() {
    let a = SimulatedProvider::new();
    let b = SimulatedProvider::new();
    let router = builder()
        .deployment(deployment("a", &a).provider("openai"))
        .deployment(deployment("b", &b))
        .group(Group::new("default", ["a"]))
        .group(Group::new("summarize", ["b"]))
        .build()
        .unwrap();
    assert_eq!(
        served(&call(&router, ask_role("summarize")).await.unwrap()).0,
        "b"
    );
    let seen = call(&router, ask()).await.unwrap();
    assert_eq!(
        (served(&seen).0.as_str(), seen.model.as_str()),
        ("a", "a-model")
    );
    assert_eq!(router.members("summarize"), Some(vec!["b"]));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_at_the_95th_percentile_fires_for_a_call_slower_than_usual() {
    // 100 ms usually; the 25th call hangs for a minute.
    let mut script = vec![Outcome::Success; 24];
    script.push(Outcome::Timeout);
    let usual = SimulatedProvider::builder()
        .latency(Duration::from_millis(100))
        .script(script)
        .build();
    let spare = SimulatedProvider::builder()
        .latency(Duration::from_millis(50))
        .build();
    let router = builder()
        .deployment(Deployment::new(
            "usual",
            BoxCloneSyncService::new(tower::ServiceExt::map_future(
                usual.clone(),
                |answer| async move {
                    let answer = answer.await;
                    if answer.is_err() {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    answer
                },
            )),
        ))
        .deployment(deployment("spare", &spare))
        .group(
            Group::new("default", ["usual", "spare"])
                .strategy(Strategy::Priority)
                .hedge_after(HedgeAfter::P95),
        )
        .build()
        .unwrap();
    for _ in 0..24 {
        assert_eq!(served(&call(&router, ask()).await.unwrap()).0, "usual");
    }
    // None was slower than the percentile (the first 20 had none yet): no hedge left.
    assert_eq!(spare.calls(), 0);
    let started = Instant::now();
    let answer = call(&router, ask()).await.unwrap();
    // The hedge left at the 95th percentile (100 ms) and answered 50 ms later.
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    assert_eq!(served(&answer), ("spare".to_owned(), 1));
}

//! CircuitBreakerLayer through its public API, on tokio's paused clock.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::advance;
use tollgate_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers, Reason, SlidingWindow, State,
    Transition,
};
use tollgate_core::{
    ByProvider, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, Outcome, SimulatedProvider,
    clock::TokioClock, http::StatusCode,
};
use tower::{Layer, Service, ServiceExt};

const SEC: Duration = Duration::from_secs(1);

fn config(window: u32, minimum_calls: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count(window),
        minimum_calls,
        failure_rate_threshold: 50.0,
        wait_in_open: Duration::from_secs(30),
        permitted_calls_in_half_open: 1,
        ..Default::default()
    }
}

/// Breakers on tokio's paused clock that record every transition.
fn watched(config: CircuitBreakerConfig) -> (CircuitBreakers, Arc<Mutex<Vec<Transition>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let breakers = CircuitBreakers::builder(config)
        .clock(TokioClock::new())
        .on_transition(move |t| log.lock().unwrap().push(t.clone()))
        .build()
        .unwrap();
    (breakers, seen)
}

fn request() -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user("hi")])
}

async fn call<S>(stack: &mut S, req: LlmRequest) -> Result<LlmResponse, LlmError>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    stack.ready().await?.call(req).await
}

fn scripted(outcomes: &str) -> SimulatedProvider {
    SimulatedProvider::builder()
        .script(outcomes.chars().map(|c| match c {
            'S' => Outcome::Success,
            'F' => Outcome::Server,
            'B' => Outcome::status(StatusCode::BAD_REQUEST),
            'R' => Outcome::rate_limited(SEC),
            other => panic!("unknown outcome {other}"),
        }))
        .build()
}

#[tokio::test(start_paused = true)]
async fn opens_exactly_on_the_call_that_crosses_the_threshold() {
    // Nine failures are not judged: the window needs ten calls. The tenth (a success) makes it 90 %.
    let (breakers, _) = watched(config(10, 10));
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(scripted("FFFFFFFFFS"));
    for i in 0..9 {
        call(&mut stack, request()).await.unwrap_err();
        assert_eq!(
            breakers.state("*"),
            Some(State::Closed),
            "after call {}",
            i + 1
        );
    }
    call(&mut stack, request()).await.unwrap();
    assert_eq!(breakers.state("*"), Some(State::Open));

    // 4 of 10 is under 50 %; the next failure slides a success out and makes it 5 of 10.
    let (breakers, seen) = watched(config(10, 10));
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(scripted("SSSSSSFFFFF"));
    for i in 0..10 {
        let _ = call(&mut stack, request()).await;
        assert_eq!(
            breakers.state("*"),
            Some(State::Closed),
            "after call {}",
            i + 1
        );
    }
    assert_eq!(breakers.metrics("*").unwrap().failure_rate, 40.0);
    call(&mut stack, request()).await.unwrap_err();
    assert_eq!(breakers.state("*"), Some(State::Open));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].from, seen[0].to), (State::Closed, State::Open));
    assert_eq!(seen[0].reason, Reason::FailureRate(50.0));
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_calling_the_provider() {
    let (breakers, _) = watched(config(2, 2));
    let provider = scripted("FF");
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(provider.clone());
    call(&mut stack, request()).await.unwrap_err();
    call(&mut stack, request()).await.unwrap_err();
    advance(Duration::from_secs(10)).await;
    for _ in 0..5 {
        let err = call(&mut stack, request()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
        assert!(!err.is_retryable());
    }
    assert_eq!(provider.calls(), 2);
    assert_eq!(breakers.metrics("*").unwrap().not_permitted, 5);
}

/// A slow provider whose first two calls fail, behind `breakers` (a window of 2 opens on them),
/// driven open and then past its 30 s wait: the next call probes.
async fn opened_then_waited(
    breakers: &CircuitBreakers,
) -> (
    SimulatedProvider,
    impl Service<LlmRequest, Response = LlmResponse, Error = LlmError, Future: Send + 'static> + use<>,
) {
    let provider = SimulatedProvider::builder()
        .latency(SEC)
        .script([Outcome::Server, Outcome::Server])
        .build();
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(provider.clone());
    call(&mut stack, request()).await.unwrap_err();
    call(&mut stack, request()).await.unwrap_err();
    advance(Duration::from_secs(30)).await;
    (provider, stack)
}

#[tokio::test(start_paused = true)]
async fn after_the_wait_exactly_the_permitted_probes_go_through() {
    let (breakers, seen) = watched(CircuitBreakerConfig {
        permitted_calls_in_half_open: 3,
        ..config(2, 2)
    });
    let (provider, mut stack) = opened_then_waited(&breakers).await;

    // Five calls at once: three probes reach the provider, two fail fast.
    let mut calls = Vec::new();
    for _ in 0..5 {
        calls.push(tokio::spawn(stack.ready().await.unwrap().call(request())));
    }
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let refused = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(refused, 2);
    assert_eq!(provider.calls(), 2 + 3);
    assert_eq!(breakers.state("*"), Some(State::Closed));
    let reasons: Vec<Reason> = seen.lock().unwrap().iter().map(|t| t.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::FailureRate(100.0),
            Reason::WaitElapsed,
            Reason::ProbesSucceeded
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_success_closes_and_a_probe_failure_reopens_for_longer() {
    let (breakers, _) = watched(CircuitBreakerConfig {
        wait_multiplier: 2.0,
        ..config(2, 2)
    });
    // Two failures open it, the first probe fails, and then the provider recovers.
    let provider = scripted("FFF");
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(provider.clone());
    call(&mut stack, request()).await.unwrap_err();
    call(&mut stack, request()).await.unwrap_err();
    assert_eq!(breakers.state("*"), Some(State::Open));

    // The probe fails: open again, and the second open in a row waits twice as long.
    advance(Duration::from_secs(30)).await;
    call(&mut stack, request()).await.unwrap_err();
    assert_eq!(breakers.state("*"), Some(State::Open));
    let err = call(&mut stack, request()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(breakers.metrics("*").unwrap().consecutive_opens, 2);

    // The next probe succeeds: closed, with an empty window and the wait back to its base.
    advance(Duration::from_secs(60)).await;
    call(&mut stack, request()).await.unwrap();
    assert_eq!(breakers.state("*"), Some(State::Closed));
    let metrics = breakers.metrics("*").unwrap();
    assert_eq!((metrics.calls, metrics.consecutive_opens), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_it_even_when_all_succeed() {
    let (breakers, seen) = watched(CircuitBreakerConfig {
        slow_call_duration: SEC,
        ..config(5, 5)
    });
    let provider = SimulatedProvider::builder().latency(2 * SEC).build();
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(provider);
    for _ in 0..5 {
        call(&mut stack, request()).await.unwrap();
    }
    assert_eq!(breakers.state("*"), Some(State::Open));
    assert_eq!(seen.lock().unwrap()[0].reason, Reason::SlowCallRate(100.0));
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_old_failures() {
    let (breakers, _) = watched(CircuitBreakerConfig {
        window: SlidingWindow::Time(Duration::from_secs(10)),
        minimum_calls: 4,
        ..config(10, 4)
    });
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(scripted("FFSSSF"));
    call(&mut stack, request()).await.unwrap_err();
    call(&mut stack, request()).await.unwrap_err();
    advance(Duration::from_secs(11)).await;
    for _ in 0..3 {
        call(&mut stack, request()).await.unwrap();
    }
    call(&mut stack, request()).await.unwrap_err();
    // Counting all six calls would be 3 failures in 6 (50 %, open); the window holds the last four.
    assert_eq!(breakers.state("*"), Some(State::Closed));
    let metrics = breakers.metrics("*").unwrap();
    assert_eq!((metrics.calls, metrics.failures), (4, 1));
}

#[tokio::test(start_paused = true)]
async fn caller_errors_and_rate_limits_never_open_it_by_default() {
    let (breakers, _) = watched(config(10, 10));
    let mut stack =
        CircuitBreakerLayer::new(breakers.clone()).layer(scripted("BBBBBBBBBBRRRRRRRRRRBBBBB"));
    for _ in 0..25 {
        call(&mut stack, request()).await.unwrap_err();
    }
    assert_eq!(breakers.state("*"), Some(State::Closed));
    let metrics = breakers.metrics("*").unwrap();
    // The 400s count as answered calls; the 429s are not counted at all.
    assert_eq!((metrics.calls, metrics.failures), (10, 0));

    // Counting 429s as failures is one setting.
    let (breakers, _) = watched(CircuitBreakerConfig {
        rate_limited_is_failure: true,
        ..config(5, 5)
    });
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(scripted("RRRRR"));
    for _ in 0..5 {
        call(&mut stack, request()).await.unwrap_err();
    }
    assert_eq!(breakers.state("*"), Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_breaker() {
    let (breakers, _) = watched(config(3, 3));
    let provider = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Server, Outcome::Server])
        .build();
    let layer = CircuitBreakerLayer::builder(breakers.clone())
        .key(ByProvider)
        .build();
    let mut stack = layer.layer(provider.clone());
    let to = |provider: &str| request().with_provider(provider);
    for _ in 0..3 {
        call(&mut stack, to("a")).await.unwrap_err();
    }
    assert_eq!(breakers.state("a"), Some(State::Open));
    assert_eq!(
        call(&mut stack, to("a")).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    // Provider b is untouched by a's outage.
    for _ in 0..5 {
        call(&mut stack, to("b")).await.unwrap();
    }
    assert_eq!(breakers.state("b"), Some(State::Closed));
    assert_eq!(provider.calls(), 3 + 5);
}

#[tokio::test(start_paused = true)]
async fn a_key_with_settings_of_its_own_is_judged_by_them() {
    // Every key is judged over 3 calls but "strict", over 2 with a 1 s wait in open.
    let breakers = CircuitBreakers::builder(config(3, 3))
        .key_config(
            "strict",
            CircuitBreakerConfig {
                wait_in_open: SEC,
                ..config(2, 2)
            },
        )
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let mut stack = CircuitBreakerLayer::builder(breakers.clone())
        .key(ByProvider)
        .build()
        .layer(scripted("FFFFS"));
    let to = |provider: &str| request().with_provider(provider);

    for _ in 0..2 {
        call(&mut stack, to("strict")).await.unwrap_err();
        call(&mut stack, to("lenient")).await.unwrap_err();
    }
    assert_eq!(breakers.state("strict"), Some(State::Open), "2 of 2 failed");
    assert_eq!(
        breakers.state("lenient"),
        Some(State::Closed),
        "2 calls of 3"
    );
    let open = call(&mut stack, to("strict")).await.unwrap_err();
    assert_eq!(open.retry_after(), Some(SEC), "its own wait in open");
    advance(SEC).await;
    call(&mut stack, to("strict")).await.unwrap(); // the probe
    assert_eq!(breakers.state("strict"), Some(State::Closed));

    let err = CircuitBreakers::builder(config(3, 3))
        .key_config("strict", config(2, 0))
        .build()
        .unwrap_err();
    assert_eq!(err.path(), "strict.minimum_calls");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let (breakers, _) = watched(config(2, 2));
    let (_, mut stack) = opened_then_waited(&breakers).await;
    let probe = stack.ready().await.unwrap().call(request());
    // The only probe slot is taken...
    assert_eq!(
        call(&mut stack, request()).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    // ...until the probe is dropped unfinished; then the next call may probe, and closes it.
    drop(probe);
    call(&mut stack, request()).await.unwrap();
    assert_eq!(breakers.state("*"), Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn operators_force_and_reset() {
    let (breakers, seen) = watched(config(2, 2));
    let provider = SimulatedProvider::new();
    let mut stack = CircuitBreakerLayer::new(breakers.clone()).layer(provider.clone());

    breakers.force_open("*");
    let err = call(&mut stack, request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert!(err.message().contains("operator"), "{err}");
    advance(Duration::from_secs(3_600)).await;
    call(&mut stack, request()).await.unwrap_err(); // no wait ends a forced open

    breakers.force_closed("*");
    let failing = SimulatedProvider::builder()
        .failure_rate(Outcome::Server, 1.0)
        .build();
    let mut failing_stack = CircuitBreakerLayer::new(breakers.clone()).layer(failing);
    for _ in 0..10 {
        call(&mut failing_stack, request()).await.unwrap_err();
    }
    assert_eq!(breakers.state("*"), Some(State::ForcedClosed));

    breakers.reset("*");
    assert_eq!(breakers.state("*"), Some(State::Closed));
    call(&mut stack, request()).await.unwrap();
    assert_eq!(provider.calls(), 1);
    let moves: Vec<(State, Reason)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.to, t.reason))
        .collect();
    assert_eq!(
        moves,
        [
            (State::ForcedOpen, Reason::Forced),
            (State::ForcedClosed, Reason::Forced),
            (State::Closed, Reason::Reset)
        ]
    );
}

#[test]
fn concurrent_calls_are_counted_exactly() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        let breakers = CircuitBreakers::new(CircuitBreakerConfig {
            window: SlidingWindow::Count(10_000),
            minimum_calls: 10_000,
            ..Default::default()
        })
        .unwrap();
        // Every fourth tenant's calls fail: exactly a quarter of all calls.
        let service = tower::service_fn(|req: LlmRequest| async move {
            match req.meta.tenant.as_deref() {
                Some("3") => Err(LlmError::new(ErrorKind::Server, "down")),
                _ => Ok(LlmResponse::default()),
            }
        });
        let stack = CircuitBreakerLayer::new(breakers.clone()).layer(service);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let stack = stack.clone();
                tokio::spawn(async move {
                    for i in 0..1_000 {
                        let req = request().with_tenant((i % 4).to_string());
                        let _ = stack.clone().oneshot(req).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let metrics = breakers.metrics("*").unwrap();
        assert_eq!((metrics.calls, metrics.failures), (8_000, 2_000));
        assert_eq!(metrics.state, State::Closed);
    });
}

#[tokio::test(start_paused = true)]
async fn keys_are_bounded_and_idle_breakers_make_room() {
    let (breakers, _) = watched(CircuitBreakerConfig {
        max_keys: 2,
        idle_timeout: Duration::from_secs(60),
        ..config(3, 3)
    });
    let layer = CircuitBreakerLayer::builder(breakers.clone())
        .key(ByProvider)
        .build();
    let provider = SimulatedProvider::new();
    let mut stack = layer.layer(provider.clone());
    let to = |provider: &str| request().with_provider(provider);
    assert!(breakers.is_empty());
    call(&mut stack, to("a")).await.unwrap();
    advance(Duration::from_secs(30)).await;
    call(&mut stack, to("b")).await.unwrap();
    // At the cap with nobody idle long enough: c's call still goes through, unguarded.
    call(&mut stack, to("c")).await.unwrap();
    assert_eq!(breakers.state("c"), None);
    assert_eq!(breakers.len(), 2);
    // Once a has been idle for a minute it is forgotten, and c gets a breaker of its own.
    advance(Duration::from_secs(31)).await;
    call(&mut stack, to("c")).await.unwrap();
    assert_eq!(breakers.state("a"), None);
    assert_eq!(breakers.state("c"), Some(State::Closed));
    assert_eq!(breakers.states().len(), 2);
    assert_eq!(breakers.len(), 2);
    assert_eq!(provider.calls(), 4);
}

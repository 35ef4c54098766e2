//! RetryLayer behaviour on paused time, against scripted SimulatedProviders.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::StatusCode;
use tokio::time::Instant;
use tollgate_core::{ErrorKind, LlmError, LlmRequest, Message, Outcome, SimulatedProvider};
use tollgate_retry::{
    Attempts, BudgetConfig, Jitter, RetryConfig, RetryLayer, RetryPolicy, RetryPolicyBuilder, retry,
};
use tower::{Service, ServiceBuilder, ServiceExt};

fn request() -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user("hello")])
}

/// A provider whose every call ends in `outcome`.
fn always(outcome: Outcome) -> SimulatedProvider {
    SimulatedProvider::builder()
        .failure_rate(outcome, 1.0)
        .build()
}

/// The delays a policy waits before each retry of an operation that always fails.
async fn delays_of(policy: RetryPolicyBuilder) -> Vec<Duration> {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let record = delays.clone();
    let policy = policy
        .budget(None)
        .on_retry(move |_, delay, _| record.lock().unwrap().push(delay))
        .build()
        .unwrap();
    let _ = retry(&policy, || async {
        Err::<(), _>(LlmError::new(ErrorKind::Server, "down"))
    })
    .await;
    delays.lock().unwrap().clone()
}

fn exact() -> RetryPolicyBuilder {
    RetryPolicy::builder().jitter(Jitter::None).budget(None)
}

/// A stack whose attempts are timestamped as they reach the provider.
fn timed_stack(
    policy: RetryPolicy,
    provider: SimulatedProvider,
) -> (
    impl Service<LlmRequest, Response = tollgate_core::LlmResponse, Error = LlmError> + Clone,
    Arc<Mutex<Vec<Duration>>>,
) {
    let start = Instant::now();
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = times.clone();
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .map_request(move |req: LlmRequest| {
            seen.lock().unwrap().push(start.elapsed());
            req
        })
        .service(provider);
    (stack, times)
}

fn secs(s: &[u64]) -> Vec<Duration> {
    s.iter().map(|&s| Duration::from_secs(s)).collect()
}

#[tokio::test(start_paused = true)]
async fn exponential_delays_are_exactly_1_2_4_seconds_without_jitter() {
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::Server,
            Outcome::Server,
            Outcome::Server,
            Outcome::Success,
        ])
        .build();
    let (stack, times) = timed_stack(exact().build().unwrap(), provider.clone());

    let answer = stack.oneshot(request()).await.unwrap();
    assert_eq!(*times.lock().unwrap(), secs(&[0, 1, 3, 7]));
    assert_eq!(answer.extensions.get::<Attempts>(), Some(&Attempts(4)));
    assert_eq!(provider.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn after_the_last_retry_the_error_says_how_many_attempts_were_made() {
    let provider = always(Outcome::Overloaded);
    let (stack, times) = timed_stack(exact().max_retries(2).build().unwrap(), provider.clone());

    let err = stack.oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert_eq!(err.extensions().get::<Attempts>(), Some(&Attempts(3)));
    assert!(
        err.to_string().ends_with("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(*times.lock().unwrap(), secs(&[0, 1, 3]));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_instead_of_the_backoff() {
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::rate_limited(Duration::from_secs(7)),
            Outcome::Success,
        ])
        .build();
    let (stack, times) = timed_stack(exact().build().unwrap(), provider);
    stack.oneshot(request()).await.unwrap();
    assert_eq!(*times.lock().unwrap(), secs(&[0, 7]));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_by_max_delay() {
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::rate_limited(Duration::from_secs(600)),
            Outcome::Success,
        ])
        .build();
    let policy = exact().max_delay(Duration::from_secs(20)).build().unwrap();
    let (stack, times) = timed_stack(policy, provider);
    stack.oneshot(request()).await.unwrap();
    assert_eq!(*times.lock().unwrap(), secs(&[0, 20]));
}

#[tokio::test(start_paused = true)]
async fn caller_errors_are_tried_once() {
    for (status, kind) in [
        (StatusCode::UNAUTHORIZED, ErrorKind::Auth),
        (StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest),
    ] {
        let provider = SimulatedProvider::builder()
            .script([Outcome::status(status)])
            .build();
        let (stack, _) = timed_stack(exact().build().unwrap(), provider.clone());
        let err = stack.oneshot(request()).await.unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(provider.calls(), 1, "{status} must not be retried");
        assert_eq!(err.extensions().get::<Attempts>(), Some(&Attempts(1)));
    }
    for kind in [
        ErrorKind::ContentFilter,
        ErrorKind::BudgetExceeded,
        ErrorKind::CircuitOpen,
    ] {
        let provider = SimulatedProvider::builder()
            .script([Outcome::fail(kind)])
            .build();
        let (stack, _) = timed_stack(exact().build().unwrap(), provider.clone());
        assert_eq!(stack.oneshot(request()).await.unwrap_err().kind(), kind);
        assert_eq!(provider.calls(), 1, "{kind:?} must not be retried");
    }
}

#[tokio::test(start_paused = true)]
async fn a_predicate_overrides_what_is_retried() {
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::Server,
            Outcome::status(StatusCode::BAD_REQUEST),
            Outcome::Success,
        ])
        .build();
    let policy = exact()
        .retry_if(|err| err.kind() == ErrorKind::InvalidRequest)
        .build()
        .unwrap();
    let (stack, _) = timed_stack(policy, provider.clone());
    assert_eq!(
        stack.oneshot(request()).await.unwrap_err().kind(),
        ErrorKind::Server
    );
    assert_eq!(
        provider.calls(),
        1,
        "Server is not retried under this predicate"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_retries_short() {
    let provider = always(Outcome::Server);
    let policy = exact()
        .max_retries(10)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let (stack, times) = timed_stack(policy, provider.clone());

    let start = Instant::now();
    let err = stack.oneshot(request()).await.unwrap_err();
    // Attempts at 0, 1, 3, 7; waiting 8 s more would end at 15 s > 10 s, so it stops at once.
    assert_eq!(*times.lock().unwrap(), secs(&[0, 1, 3, 7]));
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert!(
        err.to_string().contains("would pass the 10s deadline"),
        "{err}"
    );
    assert_eq!(err.extensions().get::<Attempts>(), Some(&Attempts(4)));
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_and_is_retried() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_secs(5))
        .build();
    let policy = exact()
        .max_retries(1)
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (stack, times) = timed_stack(policy, provider.clone());
    let err = stack.oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.to_string()
            .contains("attempt 2 exceeded the attempt timeout of 2s"),
        "{err}"
    );
    // 2 s attempt, 1 s backoff, 2 s attempt.
    assert_eq!(*times.lock().unwrap(), secs(&[0, 3]));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_also_bounds_an_attempt_in_flight() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_secs(60))
        .build();
    let policy = exact().deadline(Duration::from_secs(4)).build().unwrap();
    let start = Instant::now();
    let err = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(provider)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries_until_successes_refill_it() {
    let budget = BudgetConfig {
        window: Duration::from_secs(60),
        min_per_second: 0,
        ratio: 0.5,
    };
    let policy = exact().max_retries(1).budget(Some(budget)).build().unwrap();

    // An outage: every call fails. Each request deposits half a retry, so only every second
    // request can retry — the outage adds 50 % load, not 100 %.
    let down = always(Outcome::Server);
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(policy.clone()))
        .service(down.clone());
    let mut attempts = Vec::new();
    for _ in 0..6 {
        let err = stack.clone().oneshot(request()).await.unwrap_err();
        attempts.push(err.extensions().get::<Attempts>().unwrap().0);
    }
    assert_eq!(attempts, [1, 2, 1, 2, 1, 2]);
    assert_eq!(down.calls(), 9);
    assert_eq!(policy.budget().unwrap().available(), 0);

    let err = stack.clone().oneshot(request()).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("stopped after 1 attempt: retry budget exhausted"),
        "{err}"
    );
    assert_eq!(policy.budget().unwrap().available(), 0);

    // Successes refill it: the next two requests succeed and earn one retry between them.
    let up = SimulatedProvider::new();
    let healthy = ServiceBuilder::new()
        .layer(RetryLayer::new(policy.clone()))
        .service(up);
    healthy.clone().oneshot(request()).await.unwrap();
    assert_eq!(policy.budget().unwrap().available(), 1);

    let flaky = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Success])
        .build();
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(policy.clone()))
        .service(flaky.clone());
    let answer = stack.oneshot(request()).await.unwrap();
    assert_eq!(answer.extensions.get::<Attempts>(), Some(&Attempts(2)));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_mid_backoff_stops_further_attempts() {
    let provider = always(Outcome::Server);
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().build().unwrap()))
        .service(provider.clone());

    let call = tokio::spawn(stack.oneshot(request()));
    tokio::time::sleep(Duration::from_millis(1_500)).await; // first retry at 1 s, second due at 3 s
    assert_eq!(provider.calls(), 2);
    call.abort();
    let _ = call.await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(provider.calls(), 2, "no attempt after the caller went away");
}

#[tokio::test(start_paused = true)]
async fn each_jitter_mode_stays_inside_its_bounds_over_many_seeds() {
    let base = Duration::from_secs(1);
    let max = Duration::from_secs(10);
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ] {
        let mut distinct = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let delays = delays_of(
                RetryPolicy::builder()
                    .max_retries(5)
                    .base_delay(base)
                    .max_delay(max)
                    .jitter(jitter)
                    .seed(seed),
            )
            .await;
            assert_eq!(delays.len(), 5);
            let mut previous = base;
            for (i, delay) in delays.iter().enumerate() {
                let exponential = (base * 2_u32.pow(i as u32)).min(max);
                let (low, high) = match jitter {
                    Jitter::None => (exponential, exponential),
                    Jitter::Full => (Duration::ZERO, exponential),
                    Jitter::Equal => (exponential / 2, exponential),
                    Jitter::Decorrelated => (base, (previous * 3).min(max)),
                };
                assert!(
                    (low..=high).contains(delay),
                    "{jitter:?} seed {seed} retry {i}: {delay:?} outside [{low:?}, {high:?}]"
                );
                previous = *delay;
                distinct.insert(*delay);
            }
        }
        if jitter == Jitter::None {
            assert_eq!(
                distinct.len(),
                5,
                "1, 2, 4, 8 and 10 (capped) s: {distinct:?}"
            );
        } else {
            assert!(
                distinct.len() > 500,
                "{jitter:?} barely varies: {}",
                distinct.len()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_delays() {
    let run = |seed| delays_of(RetryPolicy::builder().seed(seed));
    assert_eq!(run(9).await, run(9).await);
    assert_ne!(run(9).await, run(10).await);
}

#[tokio::test(start_paused = true)]
async fn on_retry_sees_each_failed_attempt() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let policy = exact()
        .on_retry(move |attempt, delay, err| {
            record.lock().unwrap().push((attempt, delay, err.kind()))
        })
        .build()
        .unwrap();
    let provider = SimulatedProvider::builder()
        .script([Outcome::Timeout, Outcome::Connect, Outcome::Success])
        .build();
    ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(provider)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, Duration::from_secs(1), ErrorKind::Timeout),
            (2, Duration::from_secs(2), ErrorKind::Connect),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn plain_async_code_gets_the_same_policy() {
    let mut calls = 0;
    let start = Instant::now();
    let result = retry(&exact().build().unwrap(), || {
        calls += 1;
        let n = calls;
        async move {
            if n < 4 {
                Err(LlmError::new(ErrorKind::RateLimited, "slow down"))
            } else {
                Ok(n)
            }
        }
    })
    .await;
    assert_eq!(result.unwrap(), 4);
    assert_eq!(start.elapsed(), Duration::from_secs(7));
}

#[test]
fn configuration_is_checked_and_names_the_field() {
    let config: RetryConfig = serde_json::from_str(
        r#"{"max_retries": 5, "base_delay": "250ms", "max_delay": "30s", "jitter": "equal",
            "deadline": "1m", "budget": {"window": "30s", "min_per_second": 1, "ratio": 0.1}}"#,
    )
    .unwrap();
    let policy = RetryPolicy::from_config(config).unwrap();
    assert_eq!(policy.config().base_delay, Duration::from_millis(250));
    assert_eq!(policy.config().deadline, Some(Duration::from_secs(60)));

    let err = serde_json::from_str::<RetryConfig>(r#"{"max_retry": 5}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `max_retry`"),
        "{err}"
    );
    let err = serde_json::from_str::<RetryConfig>(r#"{"base_delay": 5}"#).unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");

    let bad = |config: RetryConfig| RetryPolicy::from_config(config).unwrap_err().to_string();
    assert_eq!(
        bad(RetryConfig {
            multiplier: 0.5,
            ..RetryConfig::default()
        }),
        "multiplier: must be a number of at least 1.0, got 0.5"
    );
    assert_eq!(
        bad(RetryConfig {
            max_delay: Duration::from_millis(10),
            ..RetryConfig::default()
        }),
        "max_delay: must be at least base_delay (1s)"
    );
    assert_eq!(
        bad(RetryConfig {
            budget: Some(BudgetConfig {
                ratio: f64::NAN,
                ..BudgetConfig::default()
            }),
            ..RetryConfig::default()
        }),
        "budget.ratio: must be between 0.0 and 10.0, got NaN"
    );
    assert_eq!(
        bad(RetryConfig {
            deadline: Some(Duration::ZERO),
            ..RetryConfig::default()
        }),
        "deadline: must be greater than 0"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_retries_means_one_attempt() {
    let provider = always(Outcome::Server);
    let err = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().max_retries(0).build().unwrap()))
        .service(provider.clone())
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(provider.calls(), 1);
    assert_eq!(err.extensions().get::<Attempts>(), Some(&Attempts(1)));
}

#[tokio::test(start_paused = true)]
async fn a_first_try_success_is_one_attempt() {
    let answer = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().build().unwrap()))
        .service(SimulatedProvider::new())
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(Attempts::of(&answer), 1);
    assert!(
        answer.extensions.get::<Attempts>().is_none(),
        "first-try successes stay unmarked"
    );
}

/// A stream is retried only until it starts: a failure before is retried, one inside is not.
#[tokio::test(start_paused = true)]
async fn a_stream_is_retried_before_it_starts_and_never_after() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use tollgate_core::{LlmResponse, stream::LlmStream};
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let upstream = tower::service_fn(move |request: LlmRequest| {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            if n == 1 {
                return Err(LlmError::new(ErrorKind::Overloaded, "busy"));
            }
            // Starts, says one thing, then fails midway.
            let events = [
                Ok(tollgate_core::stream::StreamEvent::text("part")),
                Err(LlmError::new(ErrorKind::Server, "connection lost")),
            ];
            let stream = LlmStream::from_events(events);
            Ok(LlmResponse::new(&*request.model, "").with_stream(stream))
        }
    });
    let mut stack = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().build().unwrap()))
        .service(upstream);
    let mut response = stack
        .ready()
        .await
        .unwrap()
        .call(request().streaming())
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "the failure before the stream was retried"
    );
    let error = response.take_stream().unwrap().collect().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "the failure inside it was not"
    );
}

/// A request's `retry_cap` bounds the retries below the policy's: 0 is one attempt, with no
/// wait; a cap above the policy's count changes nothing; a success needs no cap.
#[tokio::test(start_paused = true)]
async fn a_requests_retry_cap_bounds_the_retries_made_for_it() {
    for (cap, attempts) in [(Some(0), 1), (Some(1), 2), (Some(9), 4), (None, 4)] {
        let provider = always(Outcome::Server);
        let stack = ServiceBuilder::new()
            .layer(RetryLayer::new(exact().max_retries(3).build().unwrap()))
            .service(provider.clone());
        let mut capped = request();
        capped.meta.retry_cap = cap;
        let started = Instant::now();
        let error = stack.oneshot(capped).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Server, "{cap:?}");
        assert_eq!(provider.calls(), attempts, "{cap:?}");
        assert_eq!(
            error.extensions().get::<Attempts>(),
            Some(&Attempts(attempts as u32))
        );
        if cap == Some(0) {
            // Given back at once, with no note of giving up: the caller moves it on.
            assert_eq!(started.elapsed(), Duration::ZERO);
            assert!(!error.to_string().contains("gave up"), "{error}");
        }
    }
    // A capped call is never retried for a throttle: its caller moves it instead.
    let throttled = always(Outcome::rate_limited(Duration::from_secs(30)));
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().max_retries(3).build().unwrap()))
        .service(throttled.clone());
    let mut capped = request();
    capped.meta.retry_cap = Some(2);
    let started = Instant::now();
    let error = stack.oneshot(capped).await.unwrap_err();
    assert_eq!(
        (error.kind(), throttled.calls()),
        (ErrorKind::RateLimited, 1)
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    let provider = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Success])
        .build();
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(exact().build().unwrap()))
        .service(provider.clone());
    let mut capped = request();
    capped.meta.retry_cap = Some(1);
    let answer = stack.oneshot(capped).await.unwrap();
    assert_eq!(answer.extensions.get::<Attempts>(), Some(&Attempts(2)));
}

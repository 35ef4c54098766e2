//! The SimulatedProvider: scripts, seeded failures, latency on tokio time.

use std::time::Duration;

use tokio::time::Instant;
use tollgate_core::{ErrorKind, LlmRequest, Message, Outcome, SimulatedProvider};
use tower::ServiceExt;

fn request() -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user("abcdefgh")])
}

async fn outcomes(provider: &SimulatedProvider, n: usize) -> Vec<Option<ErrorKind>> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(
            provider
                .clone()
                .oneshot(request())
                .await
                .err()
                .map(|e| e.kind()),
        );
    }
    seen
}

fn flaky(seed: u64) -> SimulatedProvider {
    SimulatedProvider::builder()
        .failure_rate(Outcome::rate_limited(Duration::from_secs(2)), 0.2)
        .failure_rate(Outcome::Server, 0.1)
        .failure_rate(Outcome::Overloaded, 0.1)
        .failure_rate(Outcome::Timeout, 0.05)
        .failure_rate(Outcome::Connect, 0.05)
        .seed(seed)
        .build()
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_repeats_the_same_outcome_sequence() {
    let a = outcomes(&flaky(7), 500).await;
    let b = outcomes(&flaky(7), 500).await;
    let c = outcomes(&flaky(8), 500).await;
    assert_eq!(a, b);
    assert_ne!(a, c);

    // The rates are honoured roughly: 500 draws at a 50 % total failure rate.
    let failures = a.iter().filter(|o| o.is_some()).count();
    assert!((200..=300).contains(&failures), "{failures} failures");
    for kind in [
        ErrorKind::RateLimited,
        ErrorKind::Server,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::Connect,
    ] {
        assert!(a.contains(&Some(kind)), "{kind:?} never drawn");
    }
}

#[tokio::test(start_paused = true)]
async fn script_runs_first_then_random_failures() {
    let provider = SimulatedProvider::builder()
        .script([
            Outcome::Server,
            Outcome::Success,
            Outcome::status(http::StatusCode::UNAUTHORIZED),
        ])
        .build();
    assert_eq!(
        outcomes(&provider, 5).await,
        [
            Some(ErrorKind::Server),
            None,
            Some(ErrorKind::Auth),
            None,
            None
        ]
    );
    assert_eq!(provider.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn latency_is_on_tokios_clock_and_connect_errors_are_immediate() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_millis(250))
        .script([Outcome::Connect, Outcome::Timeout])
        .build();

    let start = Instant::now();
    let err = provider.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(start.elapsed(), Duration::ZERO);

    let err = provider.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    let ok = provider.clone().oneshot(request()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(ok.content(), "simulated reply #3");
}

#[tokio::test]
async fn usage_comes_from_the_estimator_and_max_tokens_caps_output() {
    let provider = SimulatedProvider::builder().output_tokens(100).build();
    let ok = provider.clone().oneshot(request()).await.unwrap();
    assert_eq!((ok.usage.input_tokens, ok.usage.output_tokens), (8, 100));
    assert_eq!(ok.finish_reason().unwrap().as_str(), "stop");

    let capped = provider
        .clone()
        .oneshot(request().with_max_tokens(10))
        .await
        .unwrap();
    assert_eq!(capped.usage.output_tokens, 10);
    assert_eq!(capped.finish_reason().unwrap().as_str(), "length");
}

#[tokio::test(start_paused = true)]
async fn rate_limited_outcome_carries_status_and_retry_after() {
    let provider = SimulatedProvider::builder()
        .script([Outcome::rate_limited(Duration::from_secs(7))])
        .build();
    let err = provider.oneshot(request()).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[test]
#[should_panic(expected = "more than 1.0")]
fn impossible_failure_rates_are_refused() {
    let _ = SimulatedProvider::builder()
        .failure_rate(Outcome::Server, 0.7)
        .failure_rate(Outcome::Timeout, 0.7)
        .build();
}

//! A reservation is the most the provider can bill: the output bound times the answers asked for,
//! and a request that sets no bound is sent the one it reserved, so its answer cannot outgrow it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tollgate_core::{
    ByTenant, DEFAULT_MAX_TOKENS, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, MicroUsd,
    ModelPrice, Operation, PricingTable, Usage, clock::TokioClock,
};
use tollgate_ratelimit::{Quota, RateLimitLayer, RateLimiter, Scope, Tier};
use tower::{Layer, ServiceExt};

const DAY: Duration = Duration::from_secs(86_400);

fn limiter(tiers: impl IntoIterator<Item = Tier>) -> RateLimiter {
    RateLimiter::builder()
        .scope("tenant", Quota::new(tiers).unwrap())
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

fn request(model: &str) -> LlmRequest {
    // "hi" estimates at 7 prompt tokens.
    LlmRequest::new(model, vec![Message::user("hi")]).with_tenant("acme")
}

/// A provider that answers with no usage (so every reservation stands) and keeps each request
/// it was sent.
fn recording() -> (
    impl tower::Service<
        LlmRequest,
        Response = LlmResponse,
        Error = LlmError,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static,
    Arc<Mutex<Vec<LlmRequest>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let service = tower::service_fn(move |request: LlmRequest| {
        sink.lock().unwrap().push(request);
        async { Ok::<_, LlmError>(LlmResponse::new("m", "ok")) }
    });
    (service, seen)
}

#[tokio::test(start_paused = true)]
async fn the_reservation_is_the_bound_times_every_answer_the_provider_bills() {
    let limiter = limiter([Tier::tokens(1_000_000, DAY)]);
    let layer = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .build()
        .unwrap();
    let (provider, _) = recording();
    let service = layer.layer(provider);
    let left = || limiter.status(Scope::default(), "acme").tiers[0].remaining;

    let mut asks = request("m").with_max_tokens(100);
    asks.params.n = Some(3);
    service.clone().oneshot(asks).await.unwrap();
    assert_eq!(left(), 1_000_000 - (7 + 100 * 3));

    // `best_of` candidates are billed, though only `n` come back.
    let mut asks = request("m").with_max_tokens(100);
    asks.params.n = Some(2);
    asks.params.best_of = Some(5);
    service.clone().oneshot(asks).await.unwrap();
    assert_eq!(left(), 1_000_000 - (7 + 300) - (7 + 500));

    // Legacy completions answer each prompt (a message each) that many times.
    let mut asks = LlmRequest::new(
        "m",
        vec![Message::user("a"), Message::user("b"), Message::user("c")],
    )
    .with_tenant("acme")
    .with_max_tokens(100);
    asks.meta.operation = Operation::Completions;
    asks.params.n = Some(2);
    let before = left();
    service.clone().oneshot(asks).await.unwrap();
    assert_eq!(before - left(), 15 + 100 * 2 * 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_bound_is_sent_the_bound_it_reserved() {
    let limiter = limiter([Tier::tokens(10_000_000, DAY)]);
    let (provider, seen) = recording();
    let service = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .build()
        .unwrap()
        .layer(provider);
    let left = || limiter.status(Scope::default(), "acme").tiers[0].remaining;

    // A model tollgate knows: its own output limit.
    service
        .clone()
        .oneshot(request("gpt-4o-mini"))
        .await
        .unwrap();
    assert_eq!(left(), 10_000_000 - (7 + 16_384));
    // Any other: the stated default, times the answers asked for.
    let mut two = request("my-local-model");
    two.params.n = Some(2);
    service.clone().oneshot(two).await.unwrap();
    assert_eq!(
        left(),
        10_000_000 - (7 + 16_384) - (7 + 2 * u64::from(DEFAULT_MAX_TOKENS))
    );
    // A bound the caller set goes on as it came; an embeddings call has no answer to bound.
    service
        .clone()
        .oneshot(request("m").with_max_tokens(9))
        .await
        .unwrap();
    let mut embed = request("m");
    embed.meta.operation = Operation::Embeddings;
    service.clone().oneshot(embed).await.unwrap();

    let sent: Vec<Option<u32>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.params.max_tokens)
        .collect();
    assert_eq!(
        sent,
        [Some(16_384), Some(DEFAULT_MAX_TOKENS), Some(9), None]
    );
    // The bound a layer set is written under whichever name the provider takes.
    assert_eq!(seen.lock().unwrap()[0].params.max_tokens_name, None);

    // A configured default replaces both.
    let (provider, seen) = recording();
    let service = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .default_output_tokens(256)
        .build()
        .unwrap()
        .layer(provider);
    service.oneshot(request("gpt-4o-mini")).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].params.max_tokens, Some(256));
}

#[tokio::test(start_paused = true)]
async fn a_limiter_counting_only_requests_leaves_the_bound_alone() {
    let (provider, seen) = recording();
    let service = RateLimitLayer::new(limiter([Tier::requests(10, DAY)]), ByTenant).layer(provider);
    service.oneshot(request("m")).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].params.max_tokens, None);
}

#[tokio::test(start_paused = true)]
async fn a_budget_refuses_a_call_whose_answers_together_could_pass_it() {
    // $0.01 a day at $10 per million output tokens: 1,000 tokens of answer.
    let limiter = limiter([Tier::cost(MicroUsd(10_000), DAY)]);
    let pricing = PricingTable::new().with("m", ModelPrice::per_million("0", "10").unwrap());
    let (provider, seen) = recording();
    let service = RateLimitLayer::builder(limiter)
        .key(Scope::default(), ByTenant)
        .pricing(pricing)
        .build()
        .unwrap()
        .layer(provider);
    // 600 tokens once fits; 600 tokens for each of two answers does not.
    let mut two = request("m").with_max_tokens(600);
    two.params.n = Some(2);
    let error = service.clone().oneshot(two).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BudgetExceeded);
    assert!(
        seen.lock().unwrap().is_empty(),
        "refused before the provider"
    );
    service
        .clone()
        .oneshot(request("m").with_max_tokens(600))
        .await
        .unwrap();
}

#[test]
fn a_zero_default_bound_is_refused_when_built() {
    let error = RateLimitLayer::builder(limiter([Tier::tokens(10, DAY)]))
        .default_output_tokens(0)
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "default_output_tokens");
}

#[tokio::test(start_paused = true)]
async fn usage_settles_a_reservation_of_many_answers() {
    let limiter = limiter([Tier::tokens(10_000, DAY)]);
    let service = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .build()
        .unwrap()
        .layer(tower::service_fn(|_: LlmRequest| async {
            Ok::<_, LlmError>(LlmResponse::new("m", "ok").with_usage(Usage::new(7, 50)))
        }));
    let mut three = request("m").with_max_tokens(1_000);
    three.params.n = Some(3);
    service.oneshot(three).await.unwrap();
    // Reserved 3,007; settled at what was used.
    assert_eq!(
        limiter.status(Scope::default(), "acme").tiers[0].remaining,
        10_000 - 57
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_provider_billed_is_settled_and_any_other_refunded() {
    let limiter = limiter([Tier::tokens(10_000, DAY)]);
    let answers = Arc::new(Mutex::new(vec![
        LlmError::new(ErrorKind::Server, "down"),
        LlmError::new(ErrorKind::ContentFilter, "withheld")
            .with_extension(tollgate_core::BilledUsage(Usage::new(7, 30))),
    ]));
    let service = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .build()
        .unwrap()
        .layer(tower::service_fn(move |_: LlmRequest| {
            let error = answers.lock().unwrap().pop().unwrap();
            async move { Err::<LlmResponse, _>(error) }
        }));
    let remaining = || limiter.status(Scope::default(), "acme").tiers[0].remaining;
    // The filtered answer: reserved 1,007, settled at the 37 tokens billed.
    let error = service
        .clone()
        .oneshot(request("m").with_max_tokens(1_000))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ContentFilter);
    assert_eq!(remaining(), 10_000 - 37);
    // A server failure: refunded whole.
    service
        .oneshot(request("m").with_max_tokens(1_000))
        .await
        .unwrap_err();
    assert_eq!(remaining(), 10_000 - 37);
}

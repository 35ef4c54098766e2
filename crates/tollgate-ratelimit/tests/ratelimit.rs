//! RateLimitLayer and RateLimiter through their public API, on tokio's paused clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::{Instant, advance};
use tollgate_core::{
    ByPrincipal, ByTenant, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, MicroUsd,
    ModelPrice, PricingTable, SimulatedProvider, clock::TokioClock,
};
use tollgate_ratelimit::{
    Amounts, Denial, DenialReason, Dimension, OnLimit, Quota, RateLimitLayer, RateLimiter, Scope,
    Tier, Waited,
};
use tower::{Layer, Service, ServiceExt};

const SEC: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// A one-scope limiter on tokio's (paused) clock.
fn limiter(quota: Quota) -> RateLimiter {
    RateLimiter::builder()
        .scope("default", quota)
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

fn quota(tiers: impl IntoIterator<Item = Tier>) -> Quota {
    Quota::new(tiers).expect("valid quota")
}

fn request(tenant: &str) -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user("hi")]).with_tenant(tenant)
}

fn denial(error: &LlmError) -> &Denial {
    error
        .extensions()
        .get::<Denial>()
        .expect("a limiter error carries its Denial")
}

/// Calls `stack` once, through readiness.
async fn call<S>(stack: &mut S, req: LlmRequest) -> Result<LlmResponse, LlmError>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    stack.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn burst_of_ten_then_exactly_one_per_period() {
    let limiter = limiter(quota([Tier::requests(60, MINUTE).with_burst(10)]));
    let provider = SimulatedProvider::new();
    let mut stack = RateLimitLayer::new(limiter.clone(), ByTenant).layer(provider.clone());

    for i in 0..10 {
        call(&mut stack, request("acme"))
            .await
            .unwrap_or_else(|e| panic!("call {i} of the burst: {e}"));
    }
    let err = call(&mut stack, request("acme")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(SEC));

    // Just before the next unit: still denied, with the exact remainder.
    advance(SEC - Duration::from_millis(1)).await;
    let err = call(&mut stack, request("acme")).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1)));

    // Then exactly one per second, never two.
    advance(Duration::from_millis(1)).await;
    for _ in 0..5 {
        call(&mut stack, request("acme")).await.unwrap();
        let err = call(&mut stack, request("acme")).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(SEC));
        advance(SEC).await;
    }
    assert_eq!(provider.calls(), 15);
    let metrics = limiter.metrics();
    assert_eq!((metrics.allowed, metrics.denied), (15, 7));
}

#[tokio::test(start_paused = true)]
async fn the_hour_tier_is_the_one_that_denies() {
    let limiter = limiter(quota([
        Tier::requests(60, MINUTE),
        Tier::requests(100, HOUR),
        Tier::requests(1_000, DAY),
    ]));
    let keys = [(Scope::default(), "openai")];
    let one = Amounts::requests(1);

    // 60 in the first minute, and the minute tier refuses the 61st.
    for _ in 0..60 {
        limiter.check_and_consume(&keys, one).unwrap();
    }
    assert_eq!(
        limiter
            .check_and_consume(&keys, one)
            .unwrap_err()
            .tier()
            .unwrap()
            .0,
        0
    );
    // A minute later the minute tier is full again, but the hour tier (one call per 36 s of
    // schedule, 100 at once) has refilled only 60 s worth: 41 more fit, not 60.
    advance(MINUTE).await;
    for _ in 0..41 {
        limiter.check_and_consume(&keys, one).unwrap();
    }
    let denial = limiter.check_and_consume(&keys, one).unwrap_err();
    let (index, tier) = denial.tier().unwrap();
    assert_eq!(index, 1);
    assert_eq!(tier.period(), HOUR);
    assert_eq!(denial.reason(), DenialReason::Exhausted);
    // 101 calls ran the hour's schedule to 3,636 s; at 60 s that is 12 s more than its 3,600 s burst.
    assert_eq!(denial.retry_after(), Some(Duration::from_secs(12)));
    let status = limiter.status(Scope::default(), "openai");
    assert_eq!(
        status.tiers.iter().map(|t| t.remaining).collect::<Vec<_>>(),
        [19, 0, 899]
    );
}

#[tokio::test(start_paused = true)]
async fn a_user_under_its_own_limit_is_denied_by_its_organization() {
    let limiter = RateLimiter::builder()
        .clock(TokioClock::new())
        .scope("user", quota([Tier::requests(10, MINUTE)]))
        .scope("org", quota([Tier::requests(12, MINUTE)]))
        .build()
        .unwrap();
    let (user, org) = (
        limiter.scope("user").unwrap(),
        limiter.scope("org").unwrap(),
    );
    let layer = RateLimitLayer::builder(limiter.clone())
        .key(user, ByPrincipal)
        .key(org, ByTenant)
        .build()
        .unwrap();
    let mut stack = layer.layer(SimulatedProvider::new());
    let as_user = |name: &str| {
        let mut req = request("acme");
        req.meta.principal = Some(name.into());
        req
    };

    for _ in 0..10 {
        call(&mut stack, as_user("alice")).await.unwrap();
    }
    call(&mut stack, as_user("bob")).await.unwrap();
    call(&mut stack, as_user("bob")).await.unwrap();
    let err = call(&mut stack, as_user("bob")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let denial = denial(&err);
    assert_eq!((denial.scope(), denial.key()), ("org", "acme"));
    assert!(err.message().contains(r#"scope "org" key "acme""#), "{err}");
    // The refusal took nothing from bob: he still has 8 of his own.
    assert_eq!(limiter.status(user, "bob").tiers[0].remaining, 8);
    // Another organization is untouched.
    let mut other = as_user("bob");
    other.meta.tenant = Some("globex".into());
    call(&mut stack, other).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tokens_are_reserved_then_reconciled_with_usage() {
    let limiter = limiter(quota([Tier::tokens(1_000, MINUTE)]));
    let layer = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .default_output_tokens(100)
        .build()
        .unwrap();
    let provider = SimulatedProvider::builder().output_tokens(10).build();
    let mut stack = layer.layer(provider);
    let tokens_left = || limiter.status(Scope::default(), "acme").tiers[0].remaining;

    // "hi" estimates at 7 prompt tokens; max_tokens 600 reserves 607. The answer used 7 + 10.
    let big = request("acme").with_max_tokens(600);
    let response = call(&mut stack, big.clone()).await.unwrap();
    assert_eq!(response.usage.output_tokens, 10);
    assert_eq!(tokens_left(), 1_000 - 17);
    // Without the refund a second 607-token reservation would not fit (only 393 would be left).
    call(&mut stack, big.clone()).await.unwrap();
    assert_eq!(tokens_left(), 1_000 - 34);

    // A request without `max_tokens` reserves the default bound and is sent it: the provider,
    // which would have written 500 tokens, stops at 100.
    let provider = SimulatedProvider::builder().output_tokens(500).build();
    let mut stack = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .default_output_tokens(100)
        .build()
        .unwrap()
        .layer(provider);
    let response = call(&mut stack, request("acme")).await.unwrap(); // reserved 107, used 107
    assert_eq!(response.usage.output_tokens, 100);
    assert_eq!(tokens_left(), 1_000 - 34 - 107);

    // A provider that writes past the bound it was sent is charged the difference.
    let ignores_bounds = tower::service_fn(|request: LlmRequest| async move {
        assert_eq!(request.params.max_tokens, Some(100));
        Ok::<_, LlmError>(
            LlmResponse::new("sim", "long").with_usage(tollgate_core::Usage::new(7, 400)),
        )
    });
    let mut stack = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .default_output_tokens(100)
        .build()
        .unwrap()
        .layer(ignores_bounds);
    call(&mut stack, request("acme")).await.unwrap(); // reserved 107, used 407
    assert_eq!(tokens_left(), 1_000 - 34 - 107 - 407);
    // 452 left: a 607-token reservation is refused now, with the wait for 155 tokens.
    let err = call(&mut stack, big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_millis(155 * 60)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_gives_its_tokens_back() {
    let limiter = limiter(quota([Tier::tokens(1_000, MINUTE)]));
    let provider = SimulatedProvider::builder()
        .script([tollgate_core::Outcome::Server])
        .build();
    let mut stack = RateLimitLayer::new(limiter.clone(), ByTenant).layer(provider);
    let err = call(&mut stack, request("acme").with_max_tokens(500))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(
        limiter.status(Scope::default(), "acme").tiers[0].remaining,
        1_000
    );
}

#[tokio::test(start_paused = true)]
async fn a_cost_budget_denies_the_call_that_would_cross_it() {
    // $0.01 a day; every call costs (7 + 100) tokens × $10 per million = $0.00107.
    let limiter = RateLimiter::builder()
        .clock(TokioClock::new())
        .scope("org", quota([Tier::cost(MicroUsd(10_000), DAY)]))
        .build()
        .unwrap();
    let pricing = PricingTable::new().with("sim", ModelPrice::per_million("10", "10").unwrap());
    let layer = RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .pricing(pricing)
        .build()
        .unwrap();
    let provider = SimulatedProvider::builder().output_tokens(100).build();
    let mut stack = layer.layer(provider.clone());
    let req = request("acme").with_max_tokens(100);

    for _ in 0..9 {
        call(&mut stack, req.clone()).await.unwrap();
    }
    assert_eq!(
        limiter.status(Scope::default(), "acme").tiers[0].remaining,
        10_000 - 9 * 1_070
    );
    let err = call(&mut stack, req.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExceeded);
    let denial = denial(&err);
    assert_eq!((denial.scope(), denial.key()), ("org", "acme"));
    assert_eq!(denial.tier().unwrap().1.dimension(), Dimension::Cost);
    assert!(err.message().contains("$0.010000 per 1d"), "{err}");
    assert_eq!(provider.calls(), 9);

    // A model without a price cannot be budgeted: refused, not waved through.
    let err = call(
        &mut stack,
        LlmRequest::new("unknown", vec![Message::user("hi")]).with_tenant("acme"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("no price"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated_and_overrides_apply() {
    let limiter = RateLimiter::builder()
        .clock(TokioClock::new())
        .scope("tenant", quota([Tier::requests(2, MINUTE)]))
        .override_quota("tenant", "big", quota([Tier::requests(5, MINUTE)]))
        .build()
        .unwrap();
    let mut stack = RateLimitLayer::new(limiter.clone(), ByTenant).layer(SimulatedProvider::new());

    for tenant in ["a", "b"] {
        call(&mut stack, request(tenant)).await.unwrap();
        call(&mut stack, request(tenant)).await.unwrap();
        call(&mut stack, request(tenant)).await.unwrap_err();
    }
    for _ in 0..5 {
        call(&mut stack, request("big")).await.unwrap();
    }
    let err = call(&mut stack, request("big")).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
}

#[tokio::test(start_paused = true)]
async fn too_large_is_refused_at_once_even_when_waiting() {
    let limiter = limiter(quota([Tier::tokens(1_000, MINUTE)]));
    let provider = SimulatedProvider::new();
    let mut stack = RateLimitLayer::builder(limiter)
        .key(Scope::default(), ByTenant)
        .on_limit(OnLimit::Wait(HOUR))
        .build()
        .unwrap()
        .layer(provider.clone());
    let started = Instant::now();
    let err = call(&mut stack, request("acme").with_max_tokens(5_000))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(denial(&err).reason(), DenialReason::TooLarge);
    assert!(err.message().contains("needs 5007 tokens"), "{err}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(provider.calls(), 0);
}

fn waiting_stack(
    limiter: &RateLimiter,
    max_wait: Duration,
) -> impl Service<LlmRequest, Response = LlmResponse, Error = LlmError, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    RateLimitLayer::builder(limiter.clone())
        .key(Scope::default(), ByTenant)
        .on_limit(OnLimit::Wait(max_wait))
        .build()
        .unwrap()
        .layer(SimulatedProvider::new())
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let limiter = limiter(quota([Tier::requests(1, SEC)]));
    let mut stack = waiting_stack(&limiter, Duration::from_secs(10));
    let started = Instant::now();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let future = stack.ready().await.unwrap().call(request("acme"));
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let response = future.await.unwrap();
            order.lock().unwrap().push((i, started.elapsed()));
            response.extensions.get::<Waited>().copied()
        }));
        tokio::task::yield_now().await; // let it take its place in line before the next arrives
    }
    let mut waited = Vec::new();
    for task in tasks {
        waited.push(task.await.unwrap());
    }
    let expected: Vec<_> = (0..5).map(|i| (i, SEC * i)).collect();
    assert_eq!(*order.lock().unwrap(), expected);
    assert_eq!(waited[0], None);
    assert_eq!(waited[3], Some(Waited(SEC * 3)));
    let metrics = limiter.metrics();
    assert_eq!((metrics.allowed, metrics.denied, metrics.waited), (1, 4, 4));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_at_its_deadline_with_the_wait_it_needed() {
    let limiter = limiter(quota([Tier::requests(1, SEC)]));
    let mut stack = waiting_stack(&limiter, Duration::from_millis(1_500));
    let started = Instant::now();
    let a = stack.ready().await.unwrap().call(request("acme"));
    let b = stack.ready().await.unwrap().call(request("acme"));
    let c = stack.ready().await.unwrap().call(request("acme"));
    let (a, b, c) = tokio::join!(
        async { (a.await, started.elapsed()) },
        async { (b.await, started.elapsed()) },
        async { (c.await, started.elapsed()) },
    );
    assert_eq!(a.1, Duration::ZERO);
    assert!(b.0.is_ok());
    assert_eq!(b.1, SEC);
    // C's turn came at 1 s, when it needed another second: past its 1.5 s deadline, so it fails
    // then, with the exact wait, rather than sleeping for nothing.
    let err = c.0.unwrap_err();
    assert_eq!(c.1, SEC);
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(SEC));
    assert_eq!(denial(&err).waited(), SEC);
    assert_eq!(limiter.metrics().timed_out, 1);

    // A wait longer than the deadline from the start fails at once.
    let mut stack = waiting_stack(&limiter, Duration::from_millis(500));
    let at = Instant::now();
    let err = call(&mut stack, request("acme")).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(SEC));
    assert_eq!(at.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_does_not_block_the_next() {
    let limiter = limiter(quota([Tier::requests(1, SEC)]));
    let mut stack = waiting_stack(&limiter, Duration::from_secs(10));
    let started = Instant::now();
    call(&mut stack, request("acme")).await.unwrap();
    let b = tokio::spawn(stack.ready().await.unwrap().call(request("acme")));
    tokio::task::yield_now().await;
    let c = tokio::spawn({
        let future = stack.ready().await.unwrap().call(request("acme"));
        async move {
            future.await.unwrap();
            started.elapsed()
        }
    });
    tokio::task::yield_now().await;
    // B and C wait on one key: one queue.
    assert_eq!(limiter.queued_keys(), 1);
    advance(Duration::from_millis(500)).await;
    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    // B held the first turn (due at 1 s); C takes it and is served then, not a second later.
    assert_eq!(c.await.unwrap(), SEC);
    // The last waiter out took the queue with it.
    assert_eq!(limiter.queued_keys(), 0);
}

#[test]
fn a_thousand_concurrent_callers_get_exactly_the_quota() {
    const N: u64 = 137;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        // Hour-long periods: no unit can refill while the test runs, on the real clock.
        // The default clock: real time, as in production.
        let limiter = RateLimiter::builder()
            .scope("user", quota([Tier::requests(50, HOUR)]))
            .scope("org", quota([Tier::requests(N, HOUR)]))
            .build()
            .unwrap();
        let (user, org) = (
            limiter.scope("user").unwrap(),
            limiter.scope("org").unwrap(),
        );
        let admitted = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(1_000));
        let tasks: Vec<_> = (0..1_000)
            .map(|i| {
                let (limiter, admitted, barrier) =
                    (limiter.clone(), admitted.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let name = format!("user-{}", i % 10);
                    let keys = [(user, name.as_str()), (org, "acme")];
                    if limiter
                        .check_and_consume(&keys, Amounts::requests(1))
                        .is_ok()
                    {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed) as u64, N);
        let metrics = limiter.metrics();
        // Counted per key: each admitted call once for its user and once for the org.
        assert_eq!(metrics.allowed, 2 * N);
        // No user went past its own 50, and together they drew exactly N from the pool.
        let used: u64 = (0..10)
            .map(|u| 50 - limiter.status(user, &format!("user-{u}")).tiers[0].remaining)
            .sum();
        assert_eq!(used, N);
    });
}

#[tokio::test(start_paused = true)]
async fn check_consumes_nothing_and_reset_refills() {
    let limiter = limiter(quota([Tier::requests(2, MINUTE)]));
    let keys = [(Scope::default(), "k")];
    for _ in 0..5 {
        limiter.check(&keys, Amounts::requests(2)).unwrap();
    }
    limiter.consume(&keys, Amounts::requests(2));
    assert_eq!(
        limiter
            .check(&keys, Amounts::requests(1))
            .unwrap_err()
            .retry_after(),
        Some(Duration::from_secs(30))
    );
    let status = limiter.status(Scope::default(), "k");
    assert_eq!(status.tiers[0].remaining, 0);
    assert_eq!(status.tiers[0].resets_in, MINUTE);
    assert!(limiter.reset(Scope::default(), "k"));
    limiter
        .check_and_consume(&keys, Amounts::requests(2))
        .unwrap();
    // Nothing was counted for checks, only for the consuming call.
    assert_eq!(limiter.metrics().allowed, 1);
    limiter.reset_metrics();
    assert_eq!(limiter.metrics(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn keys_that_refill_are_forgotten_and_the_cap_refuses_new_keys() {
    let limiter = RateLimiter::builder()
        .clock(TokioClock::new())
        .scope("k", quota([Tier::requests(10, SEC)]))
        .max_keys(3)
        .per_key_metrics(true)
        .build()
        .unwrap();
    let s = Scope::default();
    for key in ["a", "b", "c"] {
        limiter
            .check_and_consume(&[(s, key)], Amounts::requests(1))
            .unwrap();
    }
    assert_eq!(limiter.live_keys(), 3);
    // A fourth key while the others still owe time: refused, nobody evicted.
    let denial = limiter
        .check_and_consume(&[(s, "d")], Amounts::requests(1))
        .unwrap_err();
    assert_eq!(denial.reason(), DenialReason::Capacity);
    assert_eq!(LlmError::from(denial).kind(), ErrorKind::Unavailable);
    assert_eq!(limiter.key_metrics(s, "a").unwrap().allowed, 1);
    // An untracked key gets no counts of its own (so refusals cannot grow memory past the cap).
    assert_eq!(limiter.key_metrics(s, "d"), Some(Default::default()));
    assert_eq!(limiter.metrics().denied, 1);

    // 100 ms later every key is full again, so the new key makes room for itself.
    advance(Duration::from_millis(100)).await;
    limiter
        .check_and_consume(&[(s, "d")], Amounts::requests(1))
        .unwrap();
    assert!(limiter.live_keys() <= 3);
    advance(SEC).await;
    limiter.sweep();
    assert_eq!(limiter.live_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_reset_key_takes_its_counts_with_it() {
    let limiter = RateLimiter::builder()
        .clock(TokioClock::new())
        .scope("k", quota([Tier::requests(10, HOUR)]))
        .per_key_metrics(true)
        .build()
        .unwrap();
    let s = Scope::default();
    // Keys used once and reset, one after another: none leaves counts behind.
    for n in 0..1_000 {
        let key = format!("k{n}");
        limiter
            .check_and_consume(&[(s, key.as_str())], Amounts::requests(1))
            .unwrap();
        assert_eq!(limiter.key_metrics(s, &key).unwrap().allowed, 1);
        assert!(limiter.reset(s, &key));
        assert_eq!(limiter.key_metrics(s, &key), Some(Default::default()));
    }
    assert_eq!(limiter.live_keys(), 0);
    // The totals keep every decision.
    assert_eq!(limiter.metrics().allowed, 1_000);
}

#[test]
fn a_limiter_runs_without_tokio_on_a_manual_clock() {
    let clock = tollgate_core::clock::ManualClock::new();
    let limiter = RateLimiter::builder()
        .scope("k", quota([Tier::requests(1, SEC)]))
        .clock(clock.clone())
        .build()
        .unwrap();
    let keys = [(Scope::default(), "k")];
    limiter
        .check_and_consume(&keys, Amounts::requests(1))
        .unwrap();
    limiter
        .check_and_consume(&keys, Amounts::requests(1))
        .unwrap_err();
    clock.advance(SEC);
    limiter
        .check_and_consume(&keys, Amounts::requests(1))
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_streamed_call_keeps_its_reservation_until_the_stream_ends_then_settles() {
    let limiter = limiter(quota([Tier::tokens(10_000, DAY)]));
    let upstream = tower::service_fn(|request: LlmRequest| async move {
        let answer = LlmResponse::new(&*request.model, "streamed")
            .with_usage(tollgate_core::Usage::new(5, 2));
        let stream = tollgate_core::stream::LlmStream::replay(&answer);
        Ok::<_, LlmError>(LlmResponse::new(&*request.model, "").with_stream(stream))
    });
    let mut stack = RateLimitLayer::new(limiter.clone(), ByTenant).layer(upstream);
    let tenant = limiter.scope("default").unwrap();
    let remaining = || limiter.status(tenant, "acme").tiers[0].remaining;

    let ask = request("acme").with_max_tokens(100).streaming();
    let prompt =
        tollgate_core::TokenEstimator::estimate_prompt(&tollgate_core::CharEstimator, &ask);
    let mut response = call(&mut stack, ask).await.unwrap();
    // The prompt's estimate plus the 100 the answer may take.
    assert_eq!(
        remaining(),
        10_000 - prompt - 100,
        "reserved while the stream runs"
    );
    let answer = response.take_stream().unwrap().collect().await.unwrap();
    assert_eq!(answer.usage.total(), 7);
    assert_eq!(
        remaining(),
        10_000 - 7,
        "settled with the usage the stream reported"
    );
}

/// A stream the caller drops, or that fails midway, is settled with what it used rather than
/// kept at its reservation (which counts the whole answer it was allowed).
#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_early_settles_with_what_it_used() {
    use tollgate_core::{
        Usage,
        stream::{LlmStream, StreamEvent},
    };
    let limiter = limiter(quota([Tier::tokens(10_000, DAY)]));
    // The tenant picks the script.
    let upstream = tower::service_fn(|request: LlmRequest| async move {
        let events = match request.meta.tenant.as_deref() {
            // The prompt's size first, with a placeholder answer count; then 12 characters.
            Some("failed") => vec![
                Ok(StreamEvent::Usage(Usage::new(6, 1))),
                Ok(StreamEvent::text("abcdefghijkl")),
                Err(LlmError::new(ErrorKind::Server, "connection lost")),
            ],
            _ => vec![
                Ok(StreamEvent::text("abcd")),
                Ok(StreamEvent::text("efgh")),
                Ok(StreamEvent::Usage(Usage::new(7, 2))),
            ],
        };
        let stream = LlmStream::from_events(events);
        Ok::<_, LlmError>(LlmResponse::new(&*request.model, "").with_stream(stream))
    });
    let mut stack = RateLimitLayer::new(limiter.clone(), ByTenant).layer(upstream);
    let tenant = limiter.scope("default").unwrap();
    let remaining = |key: &str| limiter.status(tenant, key).tiers[0].remaining;
    let ask = |tenant: &str| request(tenant).with_max_tokens(1_000).streaming();
    let prompt =
        tollgate_core::TokenEstimator::estimate_prompt(&tollgate_core::CharEstimator, &ask("x"));

    // Dropped after "abcd" (1 token), with no usage reported: the prompt's estimate and 1.
    let mut stream = call(&mut stack, ask("dropped"))
        .await
        .unwrap()
        .take_stream()
        .unwrap();
    assert_eq!(remaining("dropped"), 10_000 - prompt - 1_000, "reserved");
    stream.next().await.unwrap().unwrap();
    drop(stream);
    assert_eq!(remaining("dropped"), 10_000 - prompt - 1);

    // Failed after reporting 6 and 1, with 12 characters (3 tokens) read: 6 and 3.
    let stream = call(&mut stack, ask("failed"))
        .await
        .unwrap()
        .take_stream()
        .unwrap();
    stream.collect().await.unwrap_err();
    assert_eq!(remaining("failed"), 10_000 - 6 - 3);

    // Never taken: the prompt's estimate alone.
    drop(call(&mut stack, ask("untaken")).await.unwrap());
    assert_eq!(remaining("untaken"), 10_000 - prompt);
}

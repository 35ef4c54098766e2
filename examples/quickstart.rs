//! tollgate quickstart: a `ServiceBuilder` stack around the simulated provider.
//!
//! Runs with no network and no API keys: `cargo run --example quickstart`.

use std::time::Duration;

use tollgate::{
    ByTenant, Outcome, ServiceBuilderExt,
    cache::{CacheConfig, CacheLayer, MemoryStore},
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers},
    prelude::*,
    ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier},
    retry::{Attempts, Jitter, RetryPolicy},
};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A fake upstream: 30 ms per call, and a script of what the first calls do.
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_millis(30))
        .output_tokens(24)
        .script([
            Outcome::Success,
            Outcome::rate_limited(Duration::from_millis(400)), // a 429 with Retry-After: 0.4 s
            Outcome::Success,
            Outcome::Overloaded, // a 529, retried after the backoff
            Outcome::Success,
            Outcome::status(tollgate::http::StatusCode::UNAUTHORIZED), // never retried
        ])
        .build();

    let pricing: PricingTable =
        serde_json::from_str(r#"{ "sim-small": { "input": "0.15", "output": "0.60" } }"#)
            .expect("valid pricing");

    let retries = RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_millis(200))
        .jitter(Jitter::Equal)
        .deadline(Duration::from_secs(10))
        .on_retry(|attempt, delay, err| {
            println!("       attempt {attempt} failed ({err}); retrying in {delay:.0?}")
        })
        .build()
        .expect("valid retry policy");

    // 4 requests a minute per tenant (all 4 may come at once), and 10,000 tokens an hour.
    let limiter = RateLimiter::new(
        Quota::new([
            Tier::requests(4, Duration::from_secs(60)),
            Tier::tokens(10_000, Duration::from_secs(3_600)),
        ])
        .expect("valid quota"),
    );

    // resilience4j's defaults: judge the last 100 calls, open at a 50 % failure rate.
    let breakers = CircuitBreakers::new(CircuitBreakerConfig::default()).expect("valid config");

    // Answers kept in memory for an hour, per tenant.
    let cache =
        CacheLayer::new(MemoryStore::new(64 << 20), CacheConfig::default()).expect("valid config");

    // The cache answers repeats before the limiter: a hit costs no quota and no money.
    // The limiter admits each request once, outside the retries: a retried 429 costs no quota.
    // The breaker sits inside the retries, so it sees (and can stop) every attempt.
    let mut stack = ServiceBuilder::new()
        .map_request(|req: LlmRequest| req.with_tenant("acme"))
        .cache(cache.clone())
        .rate_limits(RateLimitLayer::new(limiter.clone(), ByTenant))
        .retries(retries)
        .circuit_breaker(CircuitBreakerLayer::new(breakers.clone()))
        .service(provider.clone());

    println!(
        "tollgate quickstart: 6 requests through a cached, rate-limited, retrying stack to a simulated provider\n"
    );
    let mut spent = MicroUsd::ZERO;
    for i in 1..=6 {
        // The sixth asks the first question again.
        let question = if i == 6 { 1 } else { i };
        let req = LlmRequest::new(
            "sim-small",
            vec![
                Message::system("Answer briefly."),
                Message::user(format!("Question number {question}: what is a tollgate?")),
            ],
        )
        .with_max_tokens(64);

        let started = tokio::time::Instant::now();
        let result = stack.ready().await.expect("ready").call(req).await;
        let took = started.elapsed();
        match result {
            Ok(answer) => {
                let cached = answer.headers.get("x-cache").is_some_and(|v| v == "HIT");
                // A hit keeps the original usage, so it is plain what the answer was worth; it
                // cost nothing this time.
                let cost = if cached {
                    MicroUsd::ZERO
                } else {
                    pricing
                        .cost(&answer.model, answer.usage)
                        .unwrap_or_default()
                };
                spent = spent.saturating_add(cost);
                println!(
                    "  #{i} ok     {:?}{} after {} attempt(s) in {took:.0?}; tokens in/out {}/{}; cost {cost}",
                    answer.content,
                    if cached { " from the cache" } else { "" },
                    Attempts::of(&answer),
                    answer.usage.input_tokens,
                    answer.usage.output_tokens
                );
            }
            Err(err) => {
                let advice = if err.is_retryable() {
                    "retryable"
                } else {
                    "not retryable"
                };
                println!("  #{i} error  {err}  [{:?}, {advice}]", err.kind());
            }
        }
    }
    let hits = cache.metrics();
    println!(
        "\ncache: {} hit(s), {} miss(es), {} stored",
        hits.hits, hits.misses, hits.stores
    );
    let breaker = breakers.metrics("*").expect("the layer's breaker");
    println!(
        "breaker {:?}: {} attempts counted, {} failed (the 429 is not counted; the 401 is the caller's fault)",
        breaker.state, breaker.calls, breaker.failures
    );
    let tokens = &limiter.status(Default::default(), "acme").tiers[1];
    println!(
        "provider saw {} calls for 6 requests; total spend {spent}; acme has {} of {} tokens left this hour",
        provider.calls(),
        tokens.remaining,
        tokens.tier.limit()
    );
}

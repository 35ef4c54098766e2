//! tollgate quickstart: a `ServiceBuilder` stack around the simulated provider.
//!
//! Runs with no network and no API keys: `cargo run --example quickstart`.

use std::time::Duration;

use tollgate::{
    Outcome, ServiceBuilderExt,
    prelude::*,
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

    let mut stack = ServiceBuilder::new()
        .map_request(|req: LlmRequest| req.with_tenant("acme"))
        .retries(retries)
        .service(provider.clone());

    println!("tollgate quickstart: 4 requests through a retrying stack to a simulated provider\n");
    let mut spent = MicroUsd::ZERO;
    for i in 1..=4 {
        let req = LlmRequest::new(
            "sim-small",
            vec![
                Message::system("Answer briefly."),
                Message::user(format!("Question number {i}: what is a tollgate?")),
            ],
        )
        .with_max_tokens(64);

        let started = tokio::time::Instant::now();
        let result = stack.ready().await.expect("ready").call(req).await;
        let took = started.elapsed();
        match result {
            Ok(answer) => {
                let cost = pricing
                    .cost(&answer.model, answer.usage)
                    .unwrap_or_default();
                spent = spent.saturating_add(cost);
                println!(
                    "  #{i} ok     {:?} after {} attempt(s) in {took:.0?}; tokens in/out {}/{}; cost {cost}",
                    answer.content,
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
    println!(
        "\nprovider saw {} calls for 4 requests; total spend {spent}",
        provider.calls()
    );
}

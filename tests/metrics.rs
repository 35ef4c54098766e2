//! Every layer's counters through the `metrics` facade, read back from a debugging recorder after a
//! scripted run: one hit, one denial, two retries, a breaker that opens and then refuses.

use std::{collections::BTreeMap, time::Duration};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tollgate::{
    ByProvider, ByTenant, LlmRequest, Message, Outcome, ServiceBuilderExt, SimulatedProvider,
    cache::{CacheLayer, MemoryStore},
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers},
    ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier},
    retry::{Jitter, RetryLayer, RetryPolicy},
};
use tower::{ServiceBuilder, ServiceExt};

/// Each series as `name{label=value,...}` with its value.
fn series(recorder: &metrics_util::debugging::Snapshotter) -> BTreeMap<String, f64> {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (name, value)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_counter_has_its_exact_value_and_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This test's thread records into this recorder; the runtime is single-threaded.
    let _local = metrics::set_default_local_recorder(&recorder);

    // Two server errors, then an answer; the breaker judges windows of 3 calls, at 50 %.
    let provider = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Server, Outcome::Success])
        .build();
    let breakers = CircuitBreakers::new(CircuitBreakerConfig {
        minimum_calls: 3,
        window: tollgate::circuit_breaker::SlidingWindow::Count(3),
        wait_in_open: Duration::from_secs(60),
        ..CircuitBreakerConfig::default()
    })
    .unwrap();
    let limiter =
        RateLimiter::new(Quota::new([Tier::requests(1, Duration::from_secs(60))]).unwrap());
    let stack = ServiceBuilder::new()
        .cache(CacheLayer::new(MemoryStore::new(1 << 20), Default::default()).unwrap())
        .rate_limits(RateLimitLayer::new(limiter, ByTenant))
        .retries(RetryLayer::new(
            RetryPolicy::builder()
                .max_retries(3)
                .base_delay(Duration::from_millis(10))
                .jitter(Jitter::None)
                .budget(None)
                .build()
                .unwrap(),
        ))
        .circuit_breaker(
            CircuitBreakerLayer::builder(breakers)
                .key(ByProvider)
                .build(),
        )
        .service(provider);
    let ask = |tenant: &str, text: &str| {
        LlmRequest::new("sim", vec![Message::user(text)])
            .with_tenant(tenant)
            .with_provider("sim")
    };

    // A miss, admitted, retried twice, answered; its third call opens the breaker (2 of 3 failed).
    stack.clone().oneshot(ask("acme", "a")).await.unwrap();
    // The same again: a hit, before the limiter.
    stack.clone().oneshot(ask("acme", "a")).await.unwrap();
    // acme's one request a minute is spent: a miss, refused by the limiter.
    stack.clone().oneshot(ask("acme", "c")).await.unwrap_err();
    // Another tenant: a miss, admitted, refused by the open breaker (and not retried).
    stack.clone().oneshot(ask("globex", "d")).await.unwrap_err();

    let got = series(&snapshotter);
    let expected: BTreeMap<String, f64> = [
        ("tollgate.cache.hits", 1.0),
        ("tollgate.cache.misses", 3.0),
        ("tollgate.cache.coalesced", 0.0),
        ("tollgate.cache.stores", 1.0),
        ("tollgate.limiter.admits", 2.0),
        (
            "tollgate.limiter.denials{dimension=requests,scope=default}",
            1.0,
        ),
        ("tollgate.retry.attempts", 2.0),
        ("tollgate.retry.budget_refusals", 0.0),
        ("tollgate.breaker.state{key=sim}", 1.0),
        ("tollgate.breaker.transitions{key=sim,to=open}", 1.0),
        ("tollgate.breaker.refusals{key=sim}", 1.0),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    assert_eq!(got, expected);
}

//! Every layer's counters through the `metrics` facade, read back from a debugging recorder after a
//! scripted run: one hit, one denial, two retries, a breaker that opens and then refuses; and, with
//! Redis, a Sentinel failover.

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

    let mut got = series(&snapshotter);
    // The store's size in bytes depends on how it weighs an entry: present, and not zero.
    assert!(got.remove("tollgate.cache.bytes").unwrap() > 0.0);
    let expected: BTreeMap<String, f64> = [
        ("tollgate.cache.hits", 1.0),
        ("tollgate.cache.entries", 1.0),
        ("tollgate.cache.evictions", 0.0),
        ("tollgate.cache.misses", 3.0),
        ("tollgate.cache.coalesced", 0.0),
        ("tollgate.cache.stores", 1.0),
        ("tollgate.limiter.admits", 2.0),
        (
            "tollgate.limiter.denials{dimension=requests,scope=default}",
            1.0,
        ),
        ("tollgate.limiter.overrun.tokens", 0.0),
        ("tollgate.limiter.overrun.microdollars", 0.0),
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

#[tokio::test(start_paused = true)]
async fn what_a_provider_bills_past_its_reservation_is_counted_as_overrun() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let limiter = RateLimiter::new(
        Quota::new([
            Tier::tokens(1_000_000, Duration::from_secs(86_400)),
            Tier::cost(tollgate::MicroUsd(1_000_000), Duration::from_secs(86_400)),
        ])
        .unwrap(),
    );
    let pricing = tollgate::PricingTable::new()
        .with("m", tollgate::ModelPrice::per_million("0", "10").unwrap());
    let layer = RateLimitLayer::builder(limiter)
        .key(tollgate::ratelimit::Scope::default(), ByTenant)
        .pricing(pricing)
        .build()
        .unwrap();
    // Sent a bound of 100 tokens, it writes 400: 300 past what was reserved, $0.003.
    let writes_past = tower::service_fn(|request: LlmRequest| async move {
        assert_eq!(request.params.max_tokens, Some(100));
        Ok::<_, tollgate::LlmError>(
            tollgate::LlmResponse::new("m", "long").with_usage(tollgate::Usage::new(7, 400)),
        )
    });
    let stack = ServiceBuilder::new()
        .rate_limits(layer)
        .service(writes_past);
    let ask = LlmRequest::new("m", vec![Message::user("hi")])
        .with_tenant("acme")
        .with_max_tokens(100);
    stack.oneshot(ask).await.unwrap();
    let got = series(&snapshotter);
    assert_eq!(got["tollgate.limiter.overrun.tokens"], 300.0);
    assert_eq!(got["tollgate.limiter.overrun.microdollars"], 3_000.0);
}

/// A stack built from configuration, recording into `recorder`.
fn stack_from(yaml: &str) -> tollgate::Stack {
    tollgate::Stack::from_config(&tollgate::Config::from_yaml(yaml).unwrap()).unwrap()
}

#[tokio::test]
async fn each_call_is_counted_with_its_provider_model_outcome_tokens_and_cost() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let stack = stack_from(
        r#"
providers:
  sim: { kind: simulated, output_tokens: 10 }
roles:
  default: { provider: sim, model: small }
pricing:
  small: { input: "1.00", output: "2.00" }
retry: false
"#,
    );
    let ask = |model: &str| LlmRequest::new(model, vec![Message::user("hi")]).with_tenant("acme");
    stack.clone().oneshot(ask("")).await.unwrap();
    stack.clone().oneshot(ask("")).await.unwrap();
    // A model the configuration does not name is labelled `other`.
    stack.clone().oneshot(ask("made-up-model")).await.unwrap();

    let got = series(&snapshotter);
    let line = |name: &str, labels: &str| {
        let key = format!(
            "{name}{{gen_ai.operation.name=chat,gen_ai.provider.name=sim,gen_ai.request.model={labels}}}"
        );
        *got.get(&key)
            .unwrap_or_else(|| panic!("no {key} in {got:#?}"))
    };
    assert_eq!(line("tollgate.requests", "small,outcome=ok"), 2.0);
    assert_eq!(line("tollgate.requests", "other,outcome=ok"), 1.0);
    // 7 prompt tokens and 10 answer tokens a call: 7 + 20 micro-dollars.
    assert_eq!(
        line("tollgate.tokens", "small,gen_ai.token.type=input"),
        14.0
    );
    assert_eq!(
        line("tollgate.tokens", "small,gen_ai.token.type=output"),
        20.0
    );
    assert_eq!(line("tollgate.cost.microdollars", "small"), 54.0);
    // A model nobody prices is counted on each of its calls, under its series' model.
    let unpriced =
        "tollgate.cost.unpriced_calls{gen_ai.provider.name=sim,gen_ai.request.model=other}";
    assert_eq!(got.get(unpriced), Some(&1.0), "{got:#?}");
    assert!(
        !got.keys()
            .any(|k| k.starts_with("tollgate.cost.unpriced_calls{") && k.contains("=small"))
    );
    // Histograms: how many values each holds.
    assert_eq!(line("gen_ai.client.operation.duration", "small"), 2.0);
    assert_eq!(
        line(
            "gen_ai.client.token.usage",
            "small,gen_ai.token.type=output"
        ),
        2.0
    );
    assert!(
        !got.keys().any(|k| k.contains("tollgate.tenant")),
        "tenants are off by default"
    );
}

#[tokio::test]
async fn a_failure_is_labelled_with_its_kind() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let config = tollgate::Config::from_yaml(
        r#"
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: small }
retry: false
"#,
    )
    .unwrap();
    let provider = SimulatedProvider::builder()
        .script([Outcome::Overloaded])
        .build();
    let stack = tollgate::Stack::builder(&config)
        .provider("sim", provider)
        .build()
        .unwrap();
    stack
        .oneshot(LlmRequest::new("", vec![Message::user("hi")]))
        .await
        .unwrap_err();
    let got = series(&snapshotter);
    let labels = "gen_ai.operation.name=chat,gen_ai.provider.name=sim,gen_ai.request.model=small";
    assert_eq!(
        got[&format!("tollgate.requests{{{labels},outcome=overloaded}}")],
        1.0
    );
    assert_eq!(
        got[&format!("gen_ai.client.operation.duration{{error.type=overloaded,{labels}}}")],
        1.0
    );
}

#[tokio::test]
async fn ten_thousand_tenants_make_the_cap_plus_one_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let stack = stack_from(
        r#"
providers:
  sim: { kind: simulated }
roles:
  default: { provider: sim, model: small }
retry: false
metrics: { tenant_labels: true, max_tenant_labels: 100 }
"#,
    );
    for i in 0..10_000 {
        let request = LlmRequest::new("", vec![Message::user("hi")]).with_tenant(format!("t{i}"));
        stack.clone().oneshot(request).await.unwrap();
    }
    let snapshot = snapshotter.snapshot().into_vec();
    let tenants: std::collections::BTreeSet<String> = snapshot
        .iter()
        .filter(|(key, ..)| key.key().name() == "tollgate.requests")
        .flat_map(|(key, ..)| {
            key.key()
                .labels()
                .filter(|label| label.key() == "tollgate.tenant")
                .map(|label| label.value().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(tenants.len(), 101);
    assert!(tenants.contains("other") && tenants.contains("t0") && tenants.contains("t99"));
    assert!(!tenants.contains("t100"));
    // Every call is counted, the ones past the cap under `other` (a snapshot drains the
    // counters, so this reads the same one).
    let other = snapshot
        .iter()
        .find(|(key, ..)| {
            key.key().name() == "tollgate.requests"
                && key.key().labels().any(|l| l.value() == "other")
        })
        .map(|(.., value)| value)
        .unwrap();
    assert_eq!(*other, DebugValue::Counter(9_900));
}

/// Redis failovers are counted: a master Sentinel replaces, and the limiter's switches to its
/// failure policy and back.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_master_and_the_limiters_switches_are_counted() {
    use tollgate::{
        ratelimit::{Amounts, Backend, OnRedisFailure, RedisRateLimiter},
        redis::{RedisTarget, SentinelTarget},
    };
    use tollgate_testkit::{MASTER_NAME, RedisSentinel};

    let Some(mut sentinel) = RedisSentinel::with_replica() else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the limiter and its connection are built, on this thread.
    let limiter = {
        let _local = metrics::set_default_local_recorder(&recorder);
        RedisRateLimiter::builder(RedisTarget::Sentinel(SentinelTarget::new(
            MASTER_NAME,
            sentinel.urls(),
        )))
        .scope(
            "tenant",
            Quota::new([Tier::requests(1_000, Duration::from_secs(3_600))]).unwrap(),
        )
        .timeout(Duration::from_millis(50))
        .on_failure(OnRedisFailure::Local { share: 0.5 })
        .failure_threshold(1)
        .probe_interval(Duration::from_millis(50))
        .build()
        .unwrap()
    };
    let tenant = limiter.scope("tenant").unwrap();
    let keys = [(tenant, "acme")];
    let call = || limiter.check_and_consume(&keys, Amounts::requests(1));
    call().await.unwrap();
    let old = sentinel.kill_master();
    call().await.unwrap();
    assert_eq!(limiter.backend(), Backend::Fallback);
    let sentinel = tokio::task::spawn_blocking(move || {
        sentinel.wait_for_new_master(old);
        sentinel
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while limiter.backend() != Backend::Redis || limiter.connection().master_switches() == 0 {
        assert!(std::time::Instant::now() < deadline, "followed within 30s");
        call().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counted = series(&snapshotter);
    let get = |name: &str| counted.get(name).copied().unwrap_or_default();
    assert_eq!(
        get("tollgate.redis.master_switches{topology=sentinel}"),
        1.0,
        "{counted:?}"
    );
    assert_eq!(
        get("tollgate.limiter.backend_switches{to=fallback}"),
        1.0,
        "{counted:?}"
    );
    assert_eq!(
        get("tollgate.limiter.backend_switches{to=redis}"),
        1.0,
        "{counted:?}"
    );
    drop(sentinel);
}

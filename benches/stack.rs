//! Per-layer overhead on the success path, each tollgate layer beside its peers in the same group.
//!
//! Every variant wraps the same `Bare` service (answers at once with an empty response, so nearly
//! all that is measured is the layer) and is driven by polling its future once with a no-op waker,
//! so the figures are the layer's own cost, not an executor's. `bare` is the service alone, request
//! clone included: a layer's overhead is its time minus `bare`.
//!
//! Groups: `retry_success_path`, `circuit_breaker_closed` (the success path through a closed
//! breaker), `circuit_breaker_open` (a breaker held open: the fail-fast path) and
//! `health_success_path` (a call recorded in a 1,000-call window).
//!
//! `config_stack_miss_1k` and `config_stack_hit_1k`: the whole recommended stack built by
//! `Stack::from_config` (cache, limits, retry, breaker, health, cost tracking) beside `Bare` alone,
//! for a cache miss and a cache hit of a 1 KiB prompt. The miss group also has `Bare` plus the
//! cache's own store work without any layer (the key, a lookup that misses, an insert into a
//! `MemoryStore` of the same bound), to show how much of the stack's figure is the store's.
//!
//! Run: `cargo bench -p tollgate-benches --bench stack`.

use std::hint::black_box;

#[path = "support/mod.rs"]
mod support;
use support::{Bare, one_call, one_owned_call, poll_now};

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::{LlmError, LlmRequest, LlmResponse, Message};
use tower::{Layer, Service};

fn request() -> LlmRequest {
    LlmRequest::new("sim", vec![Message::user("What is a tollgate?")]).with_tenant("acme")
}

/// tower's own retry, with the simplest policy that retries errors up to 3 times.
#[derive(Clone)]
struct TowerAttempts(usize);

impl tower::retry::Policy<LlmRequest, LlmResponse, LlmError> for TowerAttempts {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut LlmRequest,
        result: &mut Result<LlmResponse, LlmError>,
    ) -> Option<Self::Future> {
        match result {
            Err(err) if err.is_retryable() && self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &LlmRequest) -> Option<LlmRequest> {
        Some(request.clone())
    }
}

/// tower's retry configured like tollgate's default policy: 3 retries, tower's own exponential
/// backoff with jitter (1 s base), and a shared `TpsBudget` (10 s window, 10 retries per second of
/// reserve, 20 % of requests), deposited on success and withdrawn per retry as tower's budget
/// documentation shows.
#[derive(Clone)]
struct TowerAlike {
    retries: usize,
    backoff: tower::retry::backoff::ExponentialBackoff,
    budget: std::sync::Arc<tower::retry::budget::TpsBudget>,
}

impl TowerAlike {
    fn new() -> Self {
        use tower::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
        let mut maker = ExponentialBackoffMaker::new(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
            1.0,
            tower::util::rng::HasherRng::default(),
        )
        .expect("valid backoff");
        Self {
            retries: 3,
            backoff: maker.make_backoff(),
            budget: std::sync::Arc::new(tower::retry::budget::TpsBudget::new(
                std::time::Duration::from_secs(10),
                10,
                0.2,
            )),
        }
    }
}

impl tower::retry::Policy<LlmRequest, LlmResponse, LlmError> for TowerAlike {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _: &mut LlmRequest,
        result: &mut Result<LlmResponse, LlmError>,
    ) -> Option<Self::Future> {
        use tower::retry::{backoff::Backoff, budget::Budget};
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(err) if err.is_retryable() && self.retries > 0 && self.budget.withdraw() => {
                self.retries -= 1;
                Some(self.backoff.next_backoff())
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, request: &LlmRequest) -> Option<LlmRequest> {
        Some(request.clone())
    }
}

fn retry(c: &mut Criterion) {
    let req = request();
    let mut group = c.benchmark_group("retry_success_path");

    let mut bare = Bare(None);
    group.bench_function("bare", |b| b.iter(|| black_box(one_call(&mut bare, &req))));

    let mut ours =
        tollgate::retry::RetryLayer::new(tollgate::retry::RetryPolicy::default()).layer(Bare(None));
    group.bench_function("tollgate", |b| {
        b.iter(|| black_box(one_call(&mut ours, &req)))
    });

    let mut nob = tollgate::retry::RetryLayer::new(
        tollgate::retry::RetryPolicy::builder()
            .budget(None)
            .build()
            .unwrap(),
    )
    .layer(Bare(None));
    group.bench_function("tollgate_no_budget", |b| {
        b.iter(|| black_box(one_call(&mut nob, &req)))
    });

    let mut tower_retry = tower::retry::RetryLayer::new(TowerAttempts(3)).layer(Bare(None));
    group.bench_function("tower", |b| {
        b.iter(|| black_box(one_call(&mut tower_retry, &req)))
    });

    let mut tower_alike = tower::retry::RetryLayer::new(TowerAlike::new()).layer(Bare(None));
    group.bench_function("tower_configured_alike", |b| {
        b.iter(|| black_box(one_call(&mut tower_alike, &req)))
    });

    let mut resilience =
        tower_resilience::retry::RetryLayer::<LlmRequest, LlmResponse, LlmError>::builder()
            .max_attempts(4)
            .exponential_backoff(std::time::Duration::from_secs(1))
            .build()
            .layer(Bare(None));
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(one_call(&mut resilience, &req)))
    });

    group.finish();
}

fn circuit_breaker(c: &mut Criterion) {
    use tollgate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakers};
    use tower_resilience::circuitbreaker::CircuitBreakerLayer as PeerLayer;

    let req = request();
    // Both with resilience4j's defaults: a count window of 100, judged from 100 calls, 50 % failure
    // rate, 100 % of calls slower than 60 s, 60 s open, 10 probes.
    let peer_layer = || {
        PeerLayer::builder()
            .failure_rate_threshold(0.5)
            .sliding_window_size(100)
            .minimum_number_of_calls(100)
            .slow_call_duration_threshold(std::time::Duration::from_secs(60))
            .slow_call_rate_threshold(1.0)
            .wait_duration_in_open(std::time::Duration::from_secs(60))
            .permitted_calls_in_half_open(10)
            .build()
            .expect("valid peer config")
    };
    let ours = || CircuitBreakers::new(CircuitBreakerConfig::default()).expect("valid config");

    let mut group = c.benchmark_group("circuit_breaker_closed");
    let mut bare = Bare(None);
    group.bench_function("bare", |b| b.iter(|| black_box(one_call(&mut bare, &req))));
    let mut tollgate = CircuitBreakerLayer::new(ours()).layer(Bare(None));
    group.bench_function("tollgate", |b| {
        b.iter(|| black_box(one_call(&mut tollgate, &req)))
    });
    let mut peer = peer_layer().layer(Bare(None));
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(one_call(&mut peer, &req)))
    });
    group.finish();

    // Held open: every call fails fast without reaching the service.
    let mut group = c.benchmark_group("circuit_breaker_open");
    let breakers = ours();
    let mut tollgate = CircuitBreakerLayer::new(breakers.clone()).layer(Bare(None));
    breakers.force_open("*");
    group.bench_function("tollgate", |b| {
        b.iter(|| black_box(one_refusal(&mut tollgate, &req)))
    });
    let mut peer = peer_layer().layer_fn(Bare(None));
    poll_now(peer.force_open());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(one_refusal(&mut peer, &req)))
    });
    group.finish();
}

/// One call that must fail at once.
fn one_refusal<S, E>(service: &mut S, request: &LlmRequest) -> E
where
    S: Service<LlmRequest, Response = LlmResponse, Error = E>,
    E: std::fmt::Debug,
{
    poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    poll_now(service.call(request.clone())).expect_err("refused")
}

fn health(c: &mut Criterion) {
    use tollgate::health::{HealthConfig, HealthLayer, HealthStats};

    let req = request();
    let mut group = c.benchmark_group("health_success_path");
    let mut bare = Bare(None);
    group.bench_function("bare", |b| b.iter(|| black_box(one_call(&mut bare, &req))));
    let stats = HealthStats::new(HealthConfig::default()).expect("valid config");
    let mut tollgate = HealthLayer::new(stats).layer(Bare(None));
    group.bench_function("tollgate", |b| {
        b.iter(|| black_box(one_call(&mut tollgate, &req)))
    });
    group.finish();
}

/// The full recommended stack built from a configuration (memory cache, tenant and provider
/// limits with a token tier, retry, breaker, health, cost tracking), over `Bare`.
const STACK_CONFIG: &str = "
providers:
  main: { kind: simulated }
roles:
  default: { provider: main, model: bench-model, max_tokens: 256 }
pricing:
  bench-model: { input: \"1.00\", output: \"2.00\" }
caching: { store: memory, max_bytes: 67108864 }
rate_limiting:
  providers:
    main: { per_minute: 1000000000 }
  tenants:
    default: { per_minute: 1000000000, tokens_per_hour: 600000000000 }
retry: {}
circuit_breaker: {}
health: {}
";

fn full_stack(c: &mut Criterion) {
    use std::sync::Arc;
    use tollgate::cache::store::CacheStore as _;
    use tollgate::cache::{CachedResponse, MemoryStore, Scope, cache_key, store::Lookup};

    let config = tollgate::Config::from_yaml(STACK_CONFIG).expect("valid configuration");
    let mut stack = tollgate::Stack::builder(&config)
        .provider("main", Bare(None))
        .build()
        .expect("builds");
    let mut bare = Bare(None);
    // A 1 KiB prompt, made unique per call on the miss path by a counter in front.
    let prompt = "tollgate ".repeat(114);
    let ask = |text: String| LlmRequest::new("", vec![Message::user(text)]).with_tenant("acme");

    let mut group = c.benchmark_group("config_stack_miss_1k");
    let mut n = 0u64;
    group.bench_function("bare", |b| {
        b.iter(|| {
            n += 1;
            let req = ask(format!("{n:016}{prompt}"));
            black_box(one_owned_call(&mut bare, req))
        })
    });
    group.bench_function("stack", |b| {
        b.iter(|| {
            n += 1;
            let req = ask(format!("{n:016}{prompt}"));
            black_box(one_owned_call(&mut stack, req))
        })
    });
    // What the cache's store costs on a miss, without any layer: the key, a lookup that misses
    // and an insert, in a memory store of the same bound filling the same way, beside the bare
    // call. The stack's figure less this one is what the layers themselves add.
    let store = MemoryStore::new(64 << 20);
    group.bench_function("bare_plus_key_and_store", |b| {
        b.iter(|| {
            n += 1;
            let req = ask(format!("{n:016}{prompt}"));
            let key = cache_key(&req, Scope::Tenant, false);
            let missed = matches!(store.get(key), Lookup::Ready(None));
            let response = one_owned_call(&mut bare, req);
            let entry = CachedResponse::from_response(&response, 0, 3_600_000);
            poll_now(store.put(key, Arc::new(entry)));
            black_box((missed, response))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("config_stack_hit_1k");
    let req = ask(prompt.clone());
    one_call(&mut stack, &req);
    group.bench_function("bare", |b| b.iter(|| black_box(one_call(&mut bare, &req))));
    group.bench_function("stack", |b| {
        b.iter(|| {
            let answer = one_call(&mut stack, &req);
            debug_assert!(answer.headers.contains_key("x-cache"));
            black_box(answer)
        })
    });
    group.finish();
}

criterion_group!(benches, retry, circuit_breaker, health, full_stack);
criterion_main!(benches);

//! What recording metrics costs: the whole stack's success path (limits, router, retry,
//! breaker, health, billing; no cache, whose store would dominate) over `Bare`, built and called
//! with no recorder installed, and with a Prometheus recorder (metrics-exporter-prometheus, what
//! the gateway serves `/metrics` from) installed for the thread, in the same group.
//!
//! Without the `metrics` feature every handle is an empty type and recording compiles to
//! nothing, and the group has no recorder variant; `stack_no_recorder` of the two builds compares
//! the feature off with the feature on and no recorder.
//!
//! Run: `cargo bench -p tollgate-benches --bench metrics` (feature on), and
//! `cargo bench -p tollgate-benches --bench metrics --no-default-features` (feature off).

use std::hint::black_box;

#[path = "support/mod.rs"]
mod support;
use support::{Bare, one_call};

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::{LlmRequest, Message};

const CONFIG: &str = "
providers:
  main: { kind: simulated }
roles:
  default: { provider: main, model: bench-model, max_tokens: 256 }
pricing:
  bench-model: { input: \"1.00\", output: \"2.00\" }
rate_limiting:
  tenants:
    default: { per_minute: 1000000000, tokens_per_hour: 600000000000 }
retry: {}
circuit_breaker: {}
health: {}
";

fn stack() -> tollgate::Stack {
    let config = tollgate::Config::from_yaml(CONFIG).expect("valid configuration");
    tollgate::Stack::builder(&config)
        .provider("main", Bare(None))
        .build()
        .expect("builds")
}

fn bench(c: &mut Criterion) {
    let request =
        LlmRequest::new("", vec![Message::user("What is a tollgate?")]).with_tenant("acme");
    let mut group = c.benchmark_group("metrics_success_path");
    let mut bare = Bare(None);
    group.bench_function("bare", |b| {
        b.iter(|| black_box(one_call(&mut bare, &request)))
    });

    let mut quiet = stack();
    group.bench_function("stack_no_recorder", |b| {
        b.iter(|| black_box(one_call(&mut quiet, &request)))
    });

    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let mut recorded = stack();
        group.bench_function("stack_prometheus_recorder", |b| {
            b.iter(|| black_box(one_call(&mut recorded, &request)))
        });
        // The recorder did record: the per-call counter is in its output.
        assert!(handle.render().contains("tollgate_requests"));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

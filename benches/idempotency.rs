//! What an `Idempotency-Key` costs at the gateway's door, through the gateway's axum router
//! (`Gateway::router`, every layer of a call but the socket) on a simulated provider, in the same
//! run:
//!
//! - `door/no_key`: a repeated chat call without the header, answered by the cache (a hit), with
//!   idempotency on (the default), beside `door/no_key_idempotency_off`, the same gateway with
//!   `idempotency: false`: their difference is all a call without a key pays, one header lookup,
//!   which `door/header_lookup` times alone (on the headers such a call carries).
//! - `door/replay_memory`: the same call with the same `Idempotency-Key`, answered from the
//!   process's kept answers, beside `door/no_key`, the cache hit.
//! - `door/replay_redis`: a replay in a second gateway on the same local `redis-server` (a second
//!   process, as it were, whose memory holds nothing): one script round trip to Redis.
//!
//! Each call reads the whole answer. Run: `cargo bench -p tollgate-benches --bench idempotency`
//! (`replay_redis` needs `redis-server` on the PATH).

use std::hint::black_box;

use axum::{Router, body::Body};
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_gateway::{Gateway, GatewayConfig, hash_key};
use tollgate_testkit::RedisServer;
use tower::ServiceExt;

const KEY: &str = "tg-bench";
const BODY: &str =
    r#"{"model": "default", "messages": [{"role": "user", "content": "What is a tollgate?"}]}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn router(runtime: &tokio::runtime::Runtime, more: &str) -> Router {
    let yaml = format!(
        r#"
providers: {{ local: {{ kind: simulated }} }}
roles: {{ default: {{ provider: local, model: sim-small }} }}
caching: {{ store: memory }}
keys: {{ bench: {{ hash: "{}", tenant: acme }} }}
{more}
"#,
        hash_key(KEY)
    );
    let config = GatewayConfig::from_yaml(&yaml).expect("a sound configuration");
    let _inside = runtime.enter();
    Gateway::new(config).expect("the gateway builds").router()
}

/// One chat call, its answer read whole; its status.
async fn call(router: &Router, idempotency: Option<&str>) -> u16 {
    let mut request = http::Request::post("/v1/chat/completions")
        .header("authorization", "Bearer tg-bench")
        .header("content-type", "application/json");
    if let Some(key) = idempotency {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(Body::from(BODY)).expect("a request");
    let answer = router.clone().oneshot(request).await.expect("infallible");
    let status = answer.status().as_u16();
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX).await;
    black_box(body.expect("a whole answer"));
    status
}

fn door(c: &mut Criterion) {
    let runtime = runtime();
    let on = router(&runtime, "");
    let off = router(&runtime, "idempotency: false");
    let redis = RedisServer::start();
    // Two gateways on one Redis: the first answers and keeps, the second replays from Redis.
    let shared = redis.as_ref().map(|redis| {
        let section = format!(
            "rate_limiting: {{ tenants: {{ acme: {{ per_minute: 1000000000 }} }} }}\nredis: {{ url: \"{}\", on_failure: fail_open, cache_timeout: 5s }}",
            redis.url()
        );
        (router(&runtime, &section), router(&runtime, &section))
    });
    runtime.block_on(async {
        for router in [&on, &off] {
            assert_eq!(call(router, None).await, 200); // the miss: the cache's from now on
        }
        assert_eq!(call(&on, Some("bench-1")).await, 200);
        if let Some((first, second)) = &shared {
            assert_eq!(call(first, Some("bench-1")).await, 200);
            assert_eq!(call(second, Some("bench-1")).await, 200);
        }
    });

    let mut group = c.benchmark_group("door");
    let headers = {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:4000"),
            ("authorization", "Bearer tg-bench"),
            ("content-type", "application/json"),
            ("content-length", "87"),
            ("accept", "application/json"),
            ("user-agent", "OpenAI/Python 3.57.0"),
            ("x-stainless-retry-count", "0"),
        ] {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
        headers
    };
    let header = http::HeaderName::from_static("idempotency-key");
    group.bench_function("header_lookup", |b| {
        b.iter(|| black_box(&headers).contains_key(black_box(&header)));
    });
    group.bench_function("no_key", |b| {
        b.iter(|| runtime.block_on(call(&on, None)));
    });
    group.bench_function("no_key_idempotency_off", |b| {
        b.iter(|| runtime.block_on(call(&off, None)));
    });
    group.bench_function("replay_memory", |b| {
        b.iter(|| runtime.block_on(call(&on, Some("bench-1"))));
    });
    if let Some((_, second)) = &shared {
        group.bench_function("replay_redis", |b| {
            b.iter(|| runtime.block_on(call(second, Some("bench-1"))));
        });
    }
    group.finish();
}

criterion_group!(benches, door);
criterion_main!(benches);

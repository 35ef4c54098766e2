//! The cache's hit path beside its floor, and its miss path beside a bare service.
//!
//! - `cache_hit/<prompt size>`: a repeated request answered from a `MemoryStore` through the
//!   layer (key, lookup, response built and marked, the request and the response dropped), beside
//!   the floor the issue sets: SHA-256 of the same key bytes (the request's canonical encoding,
//!   computed once outside the loop) plus a moka `get` of a present key. The request is handed
//!   over as a caller hands over its own: each one is a clone made outside the timed routine, as
//!   neither the floor nor the layer copies a request.
//! - `cache_hit/tool_calls_200B`: the 200 B prompt answered with the OpenAI tool-call fixture (a
//!   call with its id and arguments, null markers and the answer's own fields), beside the same
//!   floor: what a whole answer costs on a hit against a text answer.
//! - `cache_hit/openai_text_200B`: the 200 B prompt answered with the gateway bench's answer (an
//!   OpenAI chat completion of one short sentence, with its `id`, `object`, `created` and usage
//!   kept as they came), beside the same floor: the hit a gateway serves.
//! - `cache_miss`: a new prompt each call (looked up, called, stored), beside the bare service
//!   answering the same new prompts.
//! - `cache_miss_store`: what the miss path's store costs alone: the gateway bench's answer stored
//!   under a new key in an 8 MiB `MemoryStore` kept full (every store evicts, as in a gateway
//!   whose prompts are all new), beside the floor of a moka insert of a clone of the answer in
//!   a cache bounded at as many entries as the store holds.
//!
//! Run: `cargo bench -p tollgate-benches --bench cache`.

use std::{hint::black_box, sync::Arc};

#[path = "support/mod.rs"]
mod support;
use support::{Bare, one_call, one_owned_call, poll_now};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use tollgate::{
    LlmRequest, LlmResponse, Message,
    cache::{
        CacheConfig, CacheKey, CacheLayer, MemoryStore, Scope, key::canonical_bytes,
        store::CacheStore as _,
    },
};
use tower::Layer;

/// The answer every call gets: about fifty bytes, as many are.
const ANSWER: Bare = Bare(Some("A short answer of about fifty bytes, as many are."));

/// The answer `benches/gateway/run.sh`'s nginx gives, read as the provider client reads it.
fn openai_answer() -> LlmResponse {
    serde_json::from_str(
        r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"The weather is fine today, with a light breeze from the west."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":13,"total_tokens":27}}"#,
    )
    .expect("the gateway bench's answer is an answer")
}

fn prompt(bytes: usize) -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(bytes / 45 + 1)[..bytes].to_owned()
}

fn request(text: &str) -> LlmRequest {
    LlmRequest::new(
        "gpt-4o-mini",
        vec![Message::system("Answer briefly."), Message::user(text)],
    )
    .with_tenant("acme")
    .with_temperature(0.0)
}

fn hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_hit");
    for (name, size) in [("200B", 200), ("8KiB", 8 * 1024)] {
        let text = prompt(size);
        let req = request(&text);

        // The floor: hash the key's bytes, then a moka get of an entry that is there.
        let moka: moka::sync::Cache<[u8; 32], Arc<LlmResponse>> = moka::sync::Cache::new(10_000);
        let bytes = canonical_bytes(&req, Scope::Tenant, false);
        let key: [u8; 32] = Sha256::digest(&bytes).into();
        moka.insert(
            key,
            Arc::new(LlmResponse::new("gpt-4o-mini", "A short answer.")),
        );
        group.bench_function(BenchmarkId::new("floor_sha256_moka_get", name), |b| {
            b.iter(|| {
                let key: [u8; 32] = Sha256::digest(black_box(&bytes)).into();
                black_box(moka.get(&key))
            })
        });

        let cache = CacheLayer::new(MemoryStore::new(64 << 20), CacheConfig::default()).unwrap();
        let mut stack = cache.layer(ANSWER);
        one_call(&mut stack, &req);
        group.bench_function(BenchmarkId::new("tollgate", name), |b| {
            b.iter_batched(
                || req.clone(),
                |owned| drop(black_box(one_owned_call(&mut stack, owned))),
                BatchSize::SmallInput,
            )
        });
    }

    // The same 200 B prompt, answered with a tool call kept whole.
    let req = request(&prompt(200));
    let answer: LlmResponse = serde_json::from_str(include_str!(
        "../crates/tollgate-wire/tests/fixtures/openai/tool_call.json"
    ))
    .expect("the fixture is an answer");
    let cache = CacheLayer::new(MemoryStore::new(64 << 20), CacheConfig::default()).unwrap();
    let mut stack = cache.layer(tower::service_fn(move |_: LlmRequest| {
        std::future::ready(Ok::<_, tollgate::LlmError>(answer.clone()))
    }));
    let first = one_call(&mut stack, &req);
    assert_eq!(first.tool_calls().len(), 1);
    group.bench_function(BenchmarkId::new("tollgate", "tool_calls_200B"), |b| {
        b.iter_batched(
            || req.clone(),
            |owned| drop(black_box(one_owned_call(&mut stack, owned))),
            BatchSize::SmallInput,
        )
    });

    // The same prompt, answered with the gateway bench's answer.
    let answer = openai_answer();
    let cache = CacheLayer::new(MemoryStore::new(64 << 20), CacheConfig::default()).unwrap();
    let mut stack = cache.layer(tower::service_fn(move |_: LlmRequest| {
        std::future::ready(Ok::<_, tollgate::LlmError>(answer.clone()))
    }));
    one_call(&mut stack, &req);
    group.bench_function(BenchmarkId::new("tollgate", "openai_text_200B"), |b| {
        b.iter_batched(
            || req.clone(),
            |owned| drop(black_box(one_owned_call(&mut stack, owned))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn miss(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_miss");
    let text = prompt(200);
    let mut n = 0_u64;
    let mut bare = ANSWER;
    group.bench_function("bare", |b| {
        b.iter(|| {
            n += 1;
            black_box(one_call(&mut bare, &request(&text).with_seed(n as i64)))
        })
    });
    let cache = CacheLayer::new(MemoryStore::new(256 << 20), CacheConfig::default()).unwrap();
    let mut stack = cache.layer(ANSWER);
    let mut n = 0_u64;
    group.bench_function("tollgate", |b| {
        b.iter(|| {
            n += 1;
            black_box(one_call(&mut stack, &request(&text).with_seed(n as i64)))
        })
    });
    group.finish();
}

/// A key of its own for the `n`th store.
fn key(n: u64) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    CacheKey(bytes)
}

fn miss_store(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_miss_store");
    let answer = openai_answer();
    let store = MemoryStore::new(8 << 20);
    let mut n = 0_u64;
    // As the layer stores a miss.
    let put = |n: u64| poll_now(store.put_response(key(n), &answer, 0, 3_600_000));
    // Filled past its bound first, so every store measured evicts one.
    while n < 100_000 {
        n += 1;
        put(n);
    }
    group.bench_function("tollgate", |b| {
        b.iter(|| {
            n += 1;
            put(n)
        })
    });
    let held = store.stats().entries;
    eprintln!("cache_miss_store: the store holds {held} entries");
    let moka: moka::sync::Cache<CacheKey, Arc<LlmResponse>> = moka::sync::Cache::new(held);
    for n in 0..2 * held {
        moka.insert(key(n), Arc::new(answer.clone()));
    }
    group.bench_function("floor_moka_insert", |b| {
        b.iter(|| {
            n += 1;
            moka.insert(key(n), Arc::new(answer.clone()))
        })
    });
    group.finish();
}

criterion_group!(benches, hit, miss, miss_store);
criterion_main!(benches);

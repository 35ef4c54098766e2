//! The memory store's bound is on the memory it takes: what an entry weighs must be what it
//! costs on the heap (moka's bookkeeping included), for the small answers a chat service mostly
//! stores as for large ones, and a full store must take no more than it weighs. Measured with a
//! counting allocator, so the figures are the heap's own, not an estimate.

use std::{
    alloc::System,
    sync::{Arc, Mutex},
};

use cap::Cap;

use serde_json::json;
use tollgate_cache::{
    CacheKey, CachedResponse,
    store::{CacheStore, MemoryStore},
};
use tollgate_core::LlmResponse;

// Every allocation goes through `cap`, which keeps the count of bytes live.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The count is the whole process's: one measurement at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// An answer as OpenAI sends a short one, read the way the provider client reads it.
fn small_answer(i: usize) -> LlmResponse {
    serde_json::from_value(json!({
        "id": format!("chatcmpl-{i:024}"),
        "object": "chat.completion",
        "created": 1_700_000_000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
        "service_tier": "default",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": format!("The answer to question {i} is short."),
                         "refusal": null, "annotations": [] },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
                   "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
                   "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0 } }
    }))
    .unwrap()
}

fn large_answer(i: usize) -> LlmResponse {
    LlmResponse::new("gpt-4o", format!("{i} {}", "word ".repeat(800)))
}

/// The answer `benches/gateway/run.sh`'s upstream gives every call (and `benches/cache.rs`
/// stores), read the way the provider client reads it.
fn bench_answer(_: usize) -> LlmResponse {
    serde_json::from_str(
        r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"The weather is fine today, with a light breeze from the west."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":13,"total_tokens":27}}"#,
    )
    .unwrap()
}

fn key(i: usize) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    CacheKey(bytes)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Stores answer `i` under key `i`, as the layer stores a miss: the answer made, stored, and
/// dropped, so what stays on the heap is only what the store keeps of it.
fn store_one(
    runtime: &tokio::runtime::Runtime,
    store: &MemoryStore,
    i: usize,
    answer: fn(usize) -> LlmResponse,
) {
    let answer = answer(i);
    runtime.block_on(store.put_response(key(i), &answer, 0, 3_600_000));
}

/// Heap bytes per entry (the entry's own and the store's bookkeeping), and its weight, for `n`
/// entries of `answer`.
fn measure(n: usize, answer: fn(usize) -> LlmResponse) -> (f64, f64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let store = MemoryStore::new(1 << 40);
    let runtime = runtime();
    // Warm the store up, so its first allocations (tables, channels) are not counted.
    store_one(&runtime, &store, n, answer);
    let _ = store.stats();
    let before = ALLOCATOR.allocated();
    for i in 0..n {
        store_one(&runtime, &store, i, answer);
    }
    let stats = store.stats();
    let after = ALLOCATOR.allocated();
    assert_eq!(stats.entries, n as u64 + 1);
    let heap = (after - before) as f64 / n as f64;
    (heap, stats.bytes as f64 / (n + 1) as f64)
}

#[test]
fn an_entry_weighs_what_it_takes_on_the_heap_small_or_large() {
    for (name, answer) in [
        ("small", small_answer as fn(usize) -> LlmResponse),
        ("bench", bench_answer),
        ("large", large_answer),
    ] {
        let (heap, weight) = measure(5_000, answer);
        eprintln!("{name}: {heap:.0} heap bytes per entry, weighed {weight:.0}");
        // The allocator rounds each allocation up and keeps a header, which the counted heap
        // leaves out and the weight includes: the weight covers the heap (within 5 %), and is
        // within 1.5× of it.
        assert!(
            heap <= weight * 1.05 && weight <= heap * 1.5,
            "{name}: {heap:.0} heap bytes per entry, weighed {weight:.0}"
        );
    }
}

#[test]
fn the_weight_an_entry_is_put_with_is_the_weight_of_its_answer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    for (i, answer) in [small_answer(7), bench_answer(0), large_answer(3)]
        .into_iter()
        .enumerate()
    {
        let entry = CachedResponse::from_response(&answer, 1_000, 60_000);
        // Put whole, or straight from the answer: the same entry, the same weight.
        let whole = MemoryStore::new(1 << 30);
        runtime.block_on(whole.put(key(i), Arc::new(entry.clone())));
        let straight = MemoryStore::new(1 << 30);
        runtime.block_on(straight.put_response(key(i), &answer, 1_000, 60_000));
        for store in [&whole, &straight] {
            let stats = store.stats();
            assert_eq!(stats.entries, 1);
            assert_eq!(
                stats.bytes,
                (entry.weight() + tollgate_cache::store::MEMORY_ENTRY_OVERHEAD) as u64
            );
            let tollgate_cache::store::Lookup::Ready(Some(found)) = store.get(key(i)) else {
                panic!("entry {i} is there");
            };
            assert_eq!(*found, entry);
        }
    }
}

#[test]
fn a_full_store_takes_no_more_than_it_weighs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let before = ALLOCATOR.allocated();
    // The gateway's store: 8 MiB, filled with the bench's answer, each under a new key, past its
    // bound (so it evicts as a gateway whose prompts are all new does).
    let store = MemoryStore::new(8 << 20);
    let n = 40_000;
    for i in 0..n {
        store_one(&runtime, &store, i, bench_answer);
    }
    let stats = store.stats();
    let live = ALLOCATOR.allocated() - before;
    eprintln!(
        "{} entries weighed {} bytes ({:.0} each); {live} bytes live ({:.0} per entry, {:.2}× the weight)",
        stats.entries,
        stats.bytes,
        stats.bytes as f64 / stats.entries as f64,
        live as f64 / stats.entries as f64,
        live as f64 / stats.bytes as f64
    );
    assert!(stats.evictions > 0 && stats.entries < n as u64);
    assert!(stats.bytes <= 8 << 20);
    assert!(
        live as f64 <= 1.5 * stats.bytes as f64,
        "{live} bytes live for {} weighed",
        stats.bytes
    );
}

//! The memory store's bound is on the memory it takes: what an entry weighs must cover what it
//! costs on the heap (moka's bookkeeping included), for the small answers a chat service mostly
//! stores as for large ones. Measured with a counting allocator, so the
//! figures are the heap's own, not an estimate.

use std::{alloc::System, sync::Arc};

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

fn key(i: usize) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    CacheKey(bytes)
}

/// Heap bytes per entry (the entry's own and the store's bookkeeping), and its weight, for `n`
/// entries of `answer`.
fn measure(n: usize, answer: fn(usize) -> LlmResponse) -> (f64, f64) {
    let store = MemoryStore::new(1 << 40);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let answers: Vec<LlmResponse> = (0..n).map(answer).collect();
    // Warm the store up, so its first allocations (tables, channels) are not counted.
    runtime.block_on(store.put(
        key(usize::MAX),
        Arc::new(CachedResponse::from_response(&answer(0), 0, 3_600_000)),
    ));
    let _ = store.stats();
    let before = ALLOCATOR.allocated();
    for (i, answer) in answers.iter().enumerate() {
        let entry = Arc::new(CachedResponse::from_response(answer, 0, 3_600_000));
        runtime.block_on(store.put(key(i), entry));
    }
    let stats = store.stats();
    let after = ALLOCATOR.allocated();
    assert_eq!(stats.entries, n as u64 + 1);
    drop(answers);
    let heap = (after - before) as f64 / n as f64;
    (heap, stats.bytes as f64 / (n + 1) as f64)
}

#[test]
fn an_entry_weighs_at_least_what_it_takes_on_the_heap_small_or_large() {
    for (name, answer) in [
        ("small", small_answer as fn(usize) -> LlmResponse),
        ("large", large_answer),
    ] {
        let (heap, weight) = measure(5_000, answer);
        // The allocator rounds each allocation up and keeps a header, which the counted heap
        // leaves out and the weight includes: within 5 % above, at most twice.
        assert!(
            heap <= weight * 1.05 && weight <= heap * 2.0,
            "{name}: {heap:.0} heap bytes per entry, weighed {weight:.0}"
        );
    }
}

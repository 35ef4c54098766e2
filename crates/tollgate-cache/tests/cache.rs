//! CacheLayer and its stores through their public API, on tokio's paused clock.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use tollgate_cache::{
    CacheConfig, CacheKey, CacheLayer, CacheStatus, CacheStore, CachedResponse, FileStore,
    MemoryStore, Override, Scope, StoreStats, WallClock, cache_key,
    store::{Lookup, StoreFuture},
};
use tollgate_core::{
    CacheControl, ErrorKind, LlmError, LlmRequest, LlmResponse, Message, Outcome,
    SimulatedProvider, clock::TokioClock,
};
use tower::{Layer, Service, ServiceExt};

fn clock() -> WallClock {
    WallClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        TokioClock::new(),
    )
}

fn layer(store: impl CacheStore, config: CacheConfig) -> CacheLayer {
    CacheLayer::with_clock(store, config, clock()).unwrap()
}

fn memory() -> MemoryStore {
    MemoryStore::new(16 << 20)
}

fn ask(text: &str) -> LlmRequest {
    LlmRequest::new(
        "sim",
        vec![Message::system("Be brief."), Message::user(text)],
    )
    .with_tenant("acme")
}

async fn call<S>(stack: &mut S, request: LlmRequest) -> Result<LlmResponse, LlmError>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    stack.ready().await?.call(request).await
}

fn served(response: &LlmResponse) -> &str {
    response.headers["x-cache"].to_str().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_same_prompt_hits_and_what_changes_the_answer_misses() {
    let provider = SimulatedProvider::new();
    let cache = layer(memory(), CacheConfig::default());
    let mut stack = cache.layer(provider.clone());

    let first = call(&mut stack, ask("hi")).await.unwrap();
    assert_eq!(served(&first), "MISS");
    let again = call(&mut stack, ask("hi")).await.unwrap();
    assert_eq!(served(&again), "HIT");
    assert_eq!(again.content(), first.content());
    assert_eq!(again.usage, first.usage);

    // Caller metadata that does not change the answer does not change the key.
    let mut same = ask("hi").with_request_id("req-2");
    same.meta.principal = Some("bob".into());
    assert_eq!(served(&call(&mut stack, same).await.unwrap()), "HIT");

    for changed in [
        ask("hi").with_temperature(0.2),
        LlmRequest::new("sim-2", ask("hi").messages.to_vec()).with_tenant("acme"),
        ask("hi").with_tenant("globex"),
        ask("hi").with_max_tokens(5),
        ask("hi ").with_seed(7),
        ask("hello"),
    ] {
        assert_eq!(served(&call(&mut stack, changed).await.unwrap()), "MISS");
    }
    assert_eq!(provider.calls(), 7);
    let metrics = cache.metrics();
    assert_eq!((metrics.hits, metrics.misses, metrics.stores), (2, 7, 7));
    assert_eq!(metrics.entries, 7);
}

#[tokio::test(start_paused = true)]
async fn whitespace_only_changes_hit_when_normalizing() {
    let provider = SimulatedProvider::new();
    let mut stack = layer(memory(), CacheConfig::default()).layer(provider.clone());
    call(&mut stack, ask("what is  a tollgate?")).await.unwrap();
    // Trimming is always on; inner whitespace counts without normalization.
    assert_eq!(
        served(
            &call(&mut stack, ask("  what is  a tollgate?\n"))
                .await
                .unwrap()
        ),
        "HIT"
    );
    assert_eq!(
        served(&call(&mut stack, ask("what is a tollgate?")).await.unwrap()),
        "MISS"
    );

    let config = CacheConfig {
        normalize_whitespace: true,
        ..Default::default()
    };
    let mut stack = layer(memory(), config).layer(provider.clone());
    call(&mut stack, ask("what is  a tollgate?")).await.unwrap();
    assert_eq!(
        served(
            &call(&mut stack, ask("what is a\ttollgate? "))
                .await
                .unwrap()
        ),
        "HIT"
    );
    assert_eq!(
        served(&call(&mut stack, ask("what isa tollgate?")).await.unwrap()),
        "MISS"
    );
}

#[tokio::test(start_paused = true)]
async fn no_cache_and_no_store_are_honored() {
    let provider = SimulatedProvider::new();
    let mut stack = layer(memory(), CacheConfig::default()).layer(provider.clone());
    let with = |control: CacheControl| ask("hi").with_cache_control(control);

    // no_store: answered, not kept.
    let no_store = CacheControl {
        no_store: true,
        ..Default::default()
    };
    call(&mut stack, with(no_store)).await.unwrap();
    assert_eq!(served(&call(&mut stack, ask("hi")).await.unwrap()), "MISS");
    // no_cache: the stored answer is skipped and the fresh one replaces it.
    let no_cache = CacheControl {
        no_cache: true,
        ..Default::default()
    };
    let fresh = call(&mut stack, with(no_cache)).await.unwrap();
    assert_eq!(served(&fresh), "MISS");
    let hit = call(&mut stack, ask("hi")).await.unwrap();
    assert_eq!(hit.content(), fresh.content());
    assert_eq!(provider.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_on_time() {
    let provider = SimulatedProvider::new();
    let config = CacheConfig {
        default_ttl: Duration::from_secs(60),
        models: [(
            "short".to_owned(),
            Override {
                ttl: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    };
    let mut stack = layer(memory(), config).layer(provider.clone());
    call(&mut stack, ask("hi")).await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    let hit = call(&mut stack, ask("hi")).await.unwrap();
    assert_eq!(
        hit.extensions.get::<CacheStatus>(),
        Some(&CacheStatus::Hit {
            age: Duration::from_secs(59)
        })
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(served(&call(&mut stack, ask("hi")).await.unwrap()), "MISS");

    // A per-model TTL, and a request's own TTL, win over the default.
    let short = LlmRequest::new("short", vec![Message::user("hi")]);
    call(&mut stack, short.clone()).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(served(&call(&mut stack, short).await.unwrap()), "MISS");
    let own = ask("own").with_cache_control(CacheControl {
        ttl: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    call(&mut stack, own.clone()).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(served(&call(&mut stack, own).await.unwrap()), "MISS");
}

#[tokio::test(start_paused = true)]
async fn errors_are_never_cached() {
    let provider = SimulatedProvider::builder()
        .script([Outcome::Server, Outcome::Success])
        .build();
    let cache = layer(memory(), CacheConfig::default());
    let mut stack = cache.layer(provider.clone());
    assert_eq!(
        call(&mut stack, ask("hi")).await.unwrap_err().kind(),
        ErrorKind::Server
    );
    assert_eq!(cache.metrics().entries, 0);
    assert_eq!(served(&call(&mut stack, ask("hi")).await.unwrap()), "MISS");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn policy_bypasses_what_it_should_not_cache() {
    let provider = SimulatedProvider::builder().output_tokens(4).build();
    let config = CacheConfig {
        deterministic_only: true,
        max_entry_bytes: 10,
        providers: [(
            "live".to_owned(),
            Override {
                enabled: Some(false),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    };
    let cache = layer(memory(), config);
    let mut stack = cache.layer(provider.clone());
    // Not deterministic: untouched, no header.
    let random = call(&mut stack, ask("hi")).await.unwrap();
    assert!(random.headers.get("x-cache").is_none());
    // Temperature 0 is cached; so is a seed.
    let zero = ask("hi").with_temperature(0.0);
    call(&mut stack, zero.clone()).await.unwrap();
    assert_eq!(served(&call(&mut stack, zero).await.unwrap()), "MISS"); // "simulated reply #2" is 18 bytes: too big
    let seeded = ask("hi").with_seed(1).with_provider("live");
    assert!(
        call(&mut stack, seeded)
            .await
            .unwrap()
            .headers
            .get("x-cache")
            .is_none()
    );
    assert_eq!(cache.metrics().bypassed, 2);
    assert_eq!(cache.metrics().stores, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_identical_misses_make_one_call() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_millis(500))
        .build();
    let cache = layer(memory(), CacheConfig::default());
    let stack = cache.layer(provider.clone());
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(stack.clone().oneshot(ask("hi"))))
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        let response = call.await.unwrap().unwrap();
        statuses.push(*response.extensions.get::<CacheStatus>().unwrap());
    }
    assert_eq!(provider.calls(), 1);
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
        1
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == CacheStatus::Coalesced)
            .count(),
        99
    );
    let metrics = cache.metrics();
    assert_eq!(
        (metrics.misses, metrics.coalesced, metrics.stores),
        (1, 99, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_failure_reaches_every_waiter_and_stores_nothing() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_millis(500))
        .script([Outcome::Overloaded])
        .build();
    let cache = layer(memory(), CacheConfig::default());
    let stack = cache.layer(provider.clone());
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(stack.clone().oneshot(ask("hi"))))
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap().unwrap_err().kind(),
            ErrorKind::Overloaded
        );
    }
    assert_eq!(provider.calls(), 1);
    assert_eq!(cache.metrics().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_takes_over_when_the_leader_is_dropped() {
    let provider = SimulatedProvider::builder()
        .latency(Duration::from_millis(500))
        .build();
    let cache = layer(memory(), CacheConfig::default());
    let stack = cache.layer(provider.clone());
    let leader = tokio::spawn(stack.clone().oneshot(ask("hi")));
    tokio::task::yield_now().await;
    let follower = tokio::spawn(stack.clone().oneshot(ask("hi")));
    let other = tokio::spawn(stack.clone().oneshot(ask("something else")));
    tokio::time::advance(Duration::from_millis(100)).await;
    // Two distinct requests under way: two flights, the follower riding on the leader's.
    assert_eq!(cache.metrics().in_flight, 2);
    leader.abort();
    let response = follower.await.unwrap().unwrap();
    assert_eq!(served(&response), "MISS");
    other.await.unwrap().unwrap();
    assert_eq!(provider.calls(), 3);
    // Every flight landed or was abandoned: the table is empty again.
    assert_eq!(cache.metrics().in_flight, 0);
}

/// A memory store that counts lookups and can hold one back: the held lookup reads the store at
/// once but answers only when the gate opens, like a slow read that missed before another call
/// stored the answer.
#[derive(Clone)]
struct GatedStore {
    inner: MemoryStore,
    gets: Arc<AtomicUsize>,
    gate: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

impl CacheStore for GatedStore {
    fn get(&self, key: CacheKey) -> Lookup {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let read = match self.inner.get(key) {
            Lookup::Ready(entry) => entry,
            Lookup::Pending(_) => unreachable!("the memory store answers at once"),
        };
        match self.gate.lock().unwrap().take() {
            Some(gate) => Lookup::Pending(Box::pin(async move {
                let _ = gate.await;
                read
            })),
            None => Lookup::Ready(read),
        }
    }
    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()> {
        self.inner.put(key, entry)
    }
    fn remove(&self, key: CacheKey) -> StoreFuture<()> {
        self.inner.remove(key)
    }
    fn clear(&self) -> StoreFuture<()> {
        self.inner.clear()
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[tokio::test(start_paused = true)]
async fn a_leader_looks_again_only_when_another_call_landed_since_its_lookup() {
    let provider = SimulatedProvider::new();
    let store = GatedStore {
        inner: memory(),
        gets: Arc::default(),
        gate: Arc::default(),
    };
    let stack = layer(store.clone(), CacheConfig::default()).layer(provider.clone());

    // Alone, a miss looks once: nothing landed between its lookup and its call.
    let alone = stack.clone().oneshot(ask("alone")).await.unwrap();
    assert_eq!(served(&alone), "MISS");
    assert_eq!(
        (store.gets.load(Ordering::SeqCst), provider.calls()),
        (1, 1)
    );

    // A's lookup misses but is held; B misses, calls and stores meanwhile. When A then leads, it
    // looks again and finds B's answer instead of calling a second time.
    let (open, gate) = tokio::sync::oneshot::channel();
    *store.gate.lock().unwrap() = Some(gate);
    let a = tokio::spawn(stack.clone().oneshot(ask("hi")));
    tokio::task::yield_now().await;
    let b = stack.clone().oneshot(ask("hi")).await.unwrap();
    assert_eq!(served(&b), "MISS");
    open.send(()).unwrap();
    let a = a.await.unwrap().unwrap();
    assert_eq!(served(&a), "HIT");
    assert_eq!(provider.calls(), 2);
    assert_eq!(store.gets.load(Ordering::SeqCst), 1 + 3);
}

#[tokio::test(start_paused = true)]
async fn shared_scope_shares_across_tenants() {
    let provider = SimulatedProvider::new();
    let config = CacheConfig {
        scope: Scope::Shared,
        ..Default::default()
    };
    let mut stack = layer(memory(), config).layer(provider.clone());
    call(&mut stack, ask("hi")).await.unwrap();
    assert_eq!(
        served(
            &call(&mut stack, ask("hi").with_tenant("globex"))
                .await
                .unwrap()
        ),
        "HIT"
    );
    assert_ne!(
        cache_key(&ask("hi"), Scope::Tenant, false),
        cache_key(&ask("hi").with_tenant("globex"), Scope::Tenant, false)
    );
}

#[test]
fn extra_parameters_are_keyed_in_sorted_order() {
    let a: LlmRequest = serde_json::from_str(
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"},"tools":[]}"#,
    )
    .unwrap();
    let b: LlmRequest = serde_json::from_str(
        r#"{"model":"m","tools":[],"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
    )
    .unwrap();
    let c: LlmRequest = serde_json::from_str(
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"text"},"tools":[]}"#,
    )
    .unwrap();
    assert_eq!(
        cache_key(&a, Scope::Shared, false),
        cache_key(&b, Scope::Shared, false)
    );
    assert_ne!(
        cache_key(&a, Scope::Shared, false),
        cache_key(&c, Scope::Shared, false)
    );
}

#[tokio::test(start_paused = true)]
async fn the_memory_store_stays_under_its_byte_bound() {
    let store = MemoryStore::new(64 * 1024);
    let cache = layer(store.clone(), CacheConfig::default());
    // A flood of 4 KiB answers: the inner service returns a large body for every prompt.
    let big = tower::service_fn(|req: LlmRequest| async move {
        Ok::<_, LlmError>(LlmResponse::new(&*req.model, "x".repeat(4 * 1024)))
    });
    let mut stack = cache.layer(big);
    for i in 0..200 {
        call(&mut stack, ask(&format!("question {i}")))
            .await
            .unwrap();
    }
    let stats = store.stats();
    assert!(stats.bytes <= 64 * 1024, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.entries < 200);
}

/// An answer with something in every part: a tool call, a refusal, reasoning, log-probabilities,
/// and fields tollgate does not model at every level, as OpenAI-compatible servers send them.
fn whole_answer() -> LlmResponse {
    serde_json::from_value(serde_json::json!({
        "id": "chatcmpl-7", "object": "chat.completion", "created": 1_700_000_000u64,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_7", "service_tier": null,
        "choices": [
            { "index": 0, "finish_reason": "tool_calls",
              "logprobs": { "content": [{ "token": "Os", "logprob": -0.5, "bytes": [79, 115] }] },
              "message": { "role": "assistant", "content": null, "refusal": "not that",
                           "annotations": [], "tool_calls": [{ "id": "call_1", "type": "function",
                           "function": { "name": "weather", "arguments": "{\"city\":\"Oslo\"}" } }] } },
            { "index": 1, "finish_reason": "stop",
              "message": { "role": "assistant", "content": "Sunny.", "reasoning": "It is July." } }
        ],
        "usage": { "prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
                   "prompt_tokens_details": { "cached_tokens": 64 },
                   "completion_tokens_details": { "reasoning_tokens": 5 }, "cost": 0.25 }
    }))
    .unwrap()
}

/// A hit serves every part of the answer the miss stored, written out as the provider's answer
/// was, from whichever store kept it.
async fn serves_the_whole_answer(name: &str, store: impl CacheStore) {
    let upstream = tower::service_fn(|_: LlmRequest| async { Ok::<_, LlmError>(whole_answer()) });
    let mut stack = layer(store, CacheConfig::default()).layer(upstream);
    let miss = call(&mut stack, ask("weather?")).await.unwrap();
    let hit = call(&mut stack, ask("weather?")).await.unwrap();
    assert_eq!((served(&miss), served(&hit)), ("MISS", "HIT"), "{name}");
    let answer = whole_answer();
    assert_eq!(hit.model, answer.model, "{name}");
    assert_eq!(hit.choices, answer.choices, "{name}");
    assert_eq!(hit.usage, answer.usage, "{name}");
    assert_eq!(hit.extra, answer.extra, "{name}");
    assert_eq!(
        serde_json::to_string(&hit).unwrap(),
        serde_json::to_string(&answer).unwrap(),
        "{name}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hit_is_the_whole_answer_from_every_store() {
    serves_the_whole_answer("memory", memory()).await;
    let dir = TempDir::new("whole");
    let files = || FileStore::builder(&dir.0).clock(clock()).open().unwrap();
    serves_the_whole_answer("file", files()).await;
    // A fresh memory store in front of the file store, which has the answer already: the first
    // call is a hit read from the files and copied into memory, the second a hit from memory.
    let tiered = tollgate_cache::TieredStore::new(memory(), files());
    let mut stack = layer(tiered.clone(), CacheConfig::default()).layer(tower::service_fn(
        |_: LlmRequest| async { Err::<LlmResponse, _>(LlmError::new(ErrorKind::Server, "down")) },
    ));
    for _ in 0..2 {
        let hit = call(&mut stack, ask("weather?")).await.unwrap();
        assert_eq!(served(&hit), "HIT");
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            serde_json::to_string(&whole_answer()).unwrap()
        );
    }
    assert_eq!(tiered.front().stats().entries, 1);

    // Stored through a tiered store: in both, and served whole.
    let dir = TempDir::new("whole-tiered");
    let back = FileStore::builder(&dir.0).clock(clock()).open().unwrap();
    let tiered = tollgate_cache::TieredStore::new(memory(), back);
    serves_the_whole_answer("tiered", tiered.clone()).await;
    assert_eq!(tiered.front().stats().entries, 1);
    assert_eq!(tiered.back().stats().entries, 1);
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tollgate-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir() {
            for file in std::fs::read_dir(shard).unwrap() {
                files.push(file.unwrap().path());
            }
        }
    }
    files
}

#[tokio::test(start_paused = true)]
async fn the_file_store_survives_a_restart_and_drops_corrupt_files() {
    let dir = TempDir::new("restart");
    let provider = SimulatedProvider::new();
    {
        let store = FileStore::builder(&dir.0).clock(clock()).open().unwrap();
        let mut stack = layer(store, CacheConfig::default()).layer(provider.clone());
        call(&mut stack, ask("one")).await.unwrap();
        call(&mut stack, ask("two")).await.unwrap();
    }
    let files = entry_files(&dir.0);
    assert_eq!(files.len(), 2);

    // A new store on the same directory serves what the old one wrote.
    let store = FileStore::builder(&dir.0).clock(clock()).open().unwrap();
    assert_eq!(store.stats().entries, 2);
    let mut stack = layer(store.clone(), CacheConfig::default()).layer(provider.clone());
    assert_eq!(served(&call(&mut stack, ask("one")).await.unwrap()), "HIT");

    // Damage one file: it is a miss, and it is removed.
    let key = cache_key(&ask("two"), Scope::Tenant, false).to_hex();
    let path = files
        .iter()
        .find(|p| p.to_string_lossy().contains(&key))
        .unwrap();
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(served(&call(&mut stack, ask("two")).await.unwrap()), "MISS");
    // ...and the fresh answer was written in its place.
    assert_eq!(served(&call(&mut stack, ask("two")).await.unwrap()), "HIT");
    assert_eq!(provider.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_file_store_holds_at_most_its_entry_bound_however_small_the_answers() {
    // By default one entry per 4 KiB of bytes: 8 KiB holds two small answers, oldest out first.
    let dir = TempDir::new("entries");
    let store = FileStore::builder(&dir.0)
        .clock(clock())
        .max_bytes(8 * 1024)
        .open()
        .unwrap();
    let mut stack = layer(store.clone(), CacheConfig::default()).layer(SimulatedProvider::new());
    for i in 0..5 {
        call(&mut stack, ask(&format!("q{i}"))).await.unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let stats = store.stats();
    assert_eq!((stats.entries, stats.evictions), (2, 3), "{stats:?}");
    assert!(
        stats.bytes < 8 * 1024,
        "the byte bound alone would have kept all five"
    );
    assert_eq!(entry_files(&dir.0).len(), 2);
    assert_eq!(served(&call(&mut stack, ask("q4")).await.unwrap()), "HIT");
    assert_eq!(served(&call(&mut stack, ask("q0")).await.unwrap()), "MISS");

    // A bound of its own, on reopening: the oldest of what is there goes at once.
    drop(stack);
    let store = FileStore::builder(&dir.0)
        .clock(clock())
        .max_entries(1)
        .open()
        .unwrap();
    assert_eq!(store.stats().entries, 1);
    assert_eq!(entry_files(&dir.0).len(), 1);

    let zero = FileStore::builder(&dir.0)
        .max_entries(0)
        .open()
        .unwrap_err();
    assert_eq!(zero.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(zero.to_string(), "max_entries: must be at least 1");
}

#[tokio::test(start_paused = true)]
async fn the_file_store_evicts_oldest_first_and_cleans_up_in_the_background() {
    let dir = TempDir::new("bound");
    let store = FileStore::builder(&dir.0)
        .clock(clock())
        .max_bytes(2_000)
        .max_entries(100) // the byte bound is the one under test
        .cleanup_every(Duration::from_secs(10))
        .open()
        .unwrap();
    let config = CacheConfig {
        default_ttl: Duration::from_secs(30),
        ..Default::default()
    };
    let mut stack = layer(store.clone(), config).layer(SimulatedProvider::new());
    for i in 0..10 {
        call(&mut stack, ask(&format!("q{i}"))).await.unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let stats = store.stats();
    assert!(stats.bytes <= 2_000, "{stats:?}");
    assert!(stats.evictions > 0);
    let on_disk: u64 = entry_files(&dir.0)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, stats.bytes);
    // The newest survive; the oldest went first.
    assert_eq!(served(&call(&mut stack, ask("q9")).await.unwrap()), "HIT");
    assert_eq!(served(&call(&mut stack, ask("q0")).await.unwrap()), "MISS");

    // Past the TTL the cleanup task removes every file, without any read.
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(store.stats().entries, 0);
    assert!(entry_files(&dir.0).is_empty());
}

/// An upstream that answers streaming requests with a stream of `answer`, counting its calls.
fn streaming_upstream(
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl Service<LlmRequest, Response = LlmResponse, Error = LlmError, Future = impl Send> + Clone + Send
{
    tower::service_fn(move |request: LlmRequest| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let answer = LlmResponse::new(&*request.model, "streamed words")
                .with_usage(tollgate_core::Usage::new(5, 2));
            assert!(request.meta.stream);
            let stream = tollgate_core::stream::LlmStream::replay(&answer);
            Ok::<_, LlmError>(LlmResponse::new(&*request.model, "").with_stream(stream))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_completed_stream_is_stored_and_replayed_and_a_broken_one_is_not() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use tollgate_core::stream::StreamEvent;
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = layer(memory(), CacheConfig::default());
    let mut stack = cache.layer(streaming_upstream(calls.clone()));

    // A caller that stops reading midway: nothing is stored.
    let mut first = call(&mut stack, ask("stream me").streaming())
        .await
        .unwrap();
    assert_eq!(served(&first), "MISS");
    let mut stream = first.take_stream().unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        StreamEvent::Model("sim".into())
    );
    drop(stream);
    tokio::task::yield_now().await;
    let mut second = call(&mut stack, ask("stream me").streaming())
        .await
        .unwrap();
    assert_eq!(
        served(&second),
        "MISS",
        "an unfinished stream is not an answer"
    );

    // Read to the end: stored once the stream ends.
    let whole = second.take_stream().unwrap().collect().await.unwrap();
    assert_eq!(whole.content(), "streamed words");
    tokio::task::yield_now().await;
    let mut third = call(&mut stack, ask("stream me").streaming())
        .await
        .unwrap();
    assert_eq!(served(&third), "HIT");
    let replayed = third
        .take_stream()
        .expect("a hit replays as a stream")
        .collect()
        .await
        .unwrap();
    assert_eq!(
        (replayed.content(), replayed.usage),
        ("streamed words", whole.usage)
    );
    // The same answer serves a caller that does not stream.
    let plain = call(&mut stack, ask("stream me")).await.unwrap();
    assert_eq!((served(&plain), plain.content()), ("HIT", "streamed words"));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

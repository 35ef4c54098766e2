//! The rate limiter beside governor, in the same groups and on the same key distributions.
//!
//! Every group measures the admit path (quotas large enough that no call is refused), which is
//! the path every call takes:
//!
//! - `ratelimit_single_key`: one key, one tier. Peers: governor direct (no key at all) and keyed.
//! - `ratelimit_10k_keys`: 10,000 distinct 16-byte keys in turn, one tier.
//! - `ratelimit_3_tiers`: the same 10,000 keys, each under three tiers (checked and consumed as one
//!   step), beside governor keyed with one tier (the goal's yardstick) and three governor keyed
//!   limiters called in a row (not atomic: a refusal by the third would not undo the first two).
//! - `ratelimit_budget`: one key under one dollar budget, rolling (a `cost` tier) or per
//!   calendar month in UTC or in Europe/Paris, each call a micro-dollar; beside governor keyed.
//! - `ratelimit_contended`: two threads at once over the same 10,000 keys; the time is the wall
//!   time for each thread to do one call, so two calls complete per period.
//!
//! Before the timings (when run without arguments, or with `memory` among them) it prints resident memory per
//! live key for 1,000,000 keys (each limiter measured in a fresh process), and resident memory
//! while 10,000,000 distinct keys pass through on a manual clock (each key is full again 1 ms after
//! its call, so about 1,000 are live at once).
//!
//! Run: `cargo bench -p tollgate-benches --bench ratelimit`.

use std::{
    hint::black_box,
    num::NonZeroU32,
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, measurement::WallTime};
use governor::{
    DefaultKeyedRateLimiter, Quota as GovQuota, RateLimiter as GovLimiter, clock::FakeRelativeClock,
};
use tollgate::{
    MicroUsd,
    clock::ManualClock,
    ratelimit::{Amounts, Calendar, Dimension, Period, Quota, RateLimiter, Scope, Tier},
};

const ONE: Amounts = Amounts::requests(1);

type Group<'a> = BenchmarkGroup<'a, WallTime>;
type GovKeyed = DefaultKeyedRateLimiter<String>;
const KEYS: usize = 10_000;

fn keys(n: usize) -> Vec<String> {
    // 16 bytes each, like a short user or API-key id.
    (0..n).map(|i| format!("user-{i:011}")).collect()
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// One call per 10 ms of schedule with a burst of a billion: a key is never refused during a
/// run, and never full again between two of its calls (10,000 keys in turn come round every
/// millisecond or so), so every call finds its key tracked, as a busy key is in production.
const INTERVAL: Duration = Duration::from_millis(10);
const BURST: u32 = 1_000_000_000;

fn tollgate_one_tier() -> RateLimiter {
    RateLimiter::builder()
        .scope(
            "k",
            Quota::new([Tier::requests(u64::from(BURST), INTERVAL * BURST)]).unwrap(),
        )
        .max_keys(2_000_000)
        .build()
        .unwrap()
}

fn governor_quota() -> GovQuota {
    GovQuota::with_period(INTERVAL)
        .unwrap()
        .allow_burst(nz(BURST))
}

/// Three tiers of the same shape, each slower than the last over a longer period.
fn three_tiers() -> [(u64, Duration); 3] {
    let burst = u64::from(BURST);
    [
        (burst, INTERVAL * BURST),
        (2 * burst, INTERVAL * BURST * 4),
        (4 * burst, INTERVAL * BURST * 16),
    ]
}

fn single_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_single_key");
    let key = keys(1).remove(0);
    let limiter = tollgate_one_tier();
    let scope = Scope::default();
    group.bench_function("tollgate", |b| {
        b.iter(|| {
            limiter
                .check_and_consume(&[(scope, key.as_str())], ONE)
                .unwrap()
        })
    });
    let manual = RateLimiter::builder()
        .scope(
            "k",
            Quota::new([Tier::requests(u64::from(BURST), INTERVAL * BURST)]).unwrap(),
        )
        .clock(ManualClock::new())
        .build()
        .unwrap();
    group.bench_function("tollgate_manual_clock", |b| {
        b.iter(|| {
            manual
                .check_and_consume(&[(scope, key.as_str())], ONE)
                .unwrap()
        })
    });
    let direct = GovLimiter::direct(governor_quota());
    group.bench_function("governor_direct", |b| b.iter(|| direct.check().unwrap()));
    let keyed = GovLimiter::keyed(governor_quota());
    group.bench_function("governor_keyed", |b| {
        b.iter(|| keyed.check_key(black_box(&key)).unwrap())
    });
    group.finish();
}

/// Benches `limiter` over `keys` in turn.
fn cycle_tollgate(group: &mut Group<'_>, name: &str, limiter: &RateLimiter, keys: &[String]) {
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            limiter
                .check_and_consume(&[(Scope::default(), keys[i].as_str())], ONE)
                .unwrap()
        })
    });
}

/// Benches governor's `keyed` limiters over `keys` in turn, each key checked by every limiter.
fn cycle_governor(group: &mut Group<'_>, name: &str, keyed: &[GovKeyed], keys: &[String]) {
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            for limiter in keyed {
                limiter.check_key(&keys[i]).unwrap();
            }
        })
    });
}

fn many_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_10k_keys");
    let keys = keys(KEYS);
    cycle_tollgate(&mut group, "tollgate", &tollgate_one_tier(), &keys);
    let keyed = [GovLimiter::keyed(governor_quota())];
    cycle_governor(&mut group, "governor_keyed", &keyed, &keys);
    group.finish();
}

fn tiers(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_3_tiers");
    let keys = keys(KEYS);
    let limiter = RateLimiter::new(
        Quota::new(three_tiers().map(|(limit, per)| Tier::requests(limit, per))).unwrap(),
    );
    cycle_tollgate(&mut group, "tollgate", &limiter, &keys);
    let one = [GovLimiter::keyed(governor_quota())];
    cycle_governor(&mut group, "governor_keyed_1_tier", &one, &keys);
    let three = three_tiers().map(|(limit, per)| {
        let interval = per / u32::try_from(limit).unwrap();
        GovLimiter::keyed(
            GovQuota::with_period(interval)
                .unwrap()
                .allow_burst(nz(u32::try_from(limit).unwrap())),
        )
    });
    cycle_governor(&mut group, "governor_keyed_3_limiters", &three, &keys);
    group.finish();
}

/// Runs `op(thread, i)` `iters` times on each of two threads at once; returns the wall time.
fn budget(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_budget");
    let key = keys(1).remove(0);
    let scope = Scope::default();
    // Room for a billion calls of a micro-dollar: none is ever refused during a run.
    let calendar = |calendar| Tier::calendar(Dimension::Cost, (1 << 44) - 1, calendar);
    let tiers = [
        (
            "tollgate_rolling",
            Tier::cost(MicroUsd(u64::from(BURST)), INTERVAL * BURST),
        ),
        (
            "tollgate_calendar_utc",
            calendar(Calendar::utc(Period::Month)),
        ),
        (
            "tollgate_calendar_paris",
            calendar(Calendar::in_zone(Period::Month, "Europe/Paris").unwrap()),
        ),
    ];
    let call = Amounts::cost(MicroUsd(1));
    for (name, tier) in tiers {
        let limiter = RateLimiter::builder()
            .scope("k", Quota::new([tier]).unwrap())
            .build()
            .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                limiter
                    .check_and_consume(&[(scope, key.as_str())], call)
                    .unwrap()
            })
        });
    }
    let keyed = GovLimiter::keyed(governor_quota());
    group.bench_function("governor_keyed", |b| {
        b.iter(|| keyed.check_key(black_box(&key)).unwrap())
    });
    group.finish();
}

fn two_threads(iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        op(t, i);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    times.into_iter().max().unwrap()
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_contended");
    let keys = Arc::new(keys(KEYS));
    // Each thread walks the keys from its own offset, so they meet on shards, not in lockstep.
    let key_of = |t: usize, i: u64| (i as usize * 7 + t * KEYS / 2) % KEYS;
    let limiter = tollgate_one_tier();
    let scope = Scope::default();
    group.bench_function(BenchmarkId::new("tollgate", "2_threads"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                limiter
                    .check_and_consume(&[(scope, keys[key_of(t, i)].as_str())], ONE)
                    .unwrap()
            })
        })
    });
    let keyed = GovLimiter::keyed(governor_quota());
    group.bench_function(BenchmarkId::new("governor_keyed", "2_threads"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| keyed.check_key(&keys[key_of(t, i)]).unwrap())
        })
    });
    let key = keys[0].clone();
    group.bench_function(BenchmarkId::new("tollgate", "2_threads_one_key"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |_, _| {
                limiter
                    .check_and_consume(&[(scope, key.as_str())], ONE)
                    .unwrap()
            })
        })
    });
    group.bench_function(
        BenchmarkId::new("governor_keyed", "2_threads_one_key"),
        |b| b.iter_custom(|iters| two_threads(iters, |_, _| keyed.check_key(&key).unwrap())),
    );
    group.finish();
}

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4_096)
}

/// Bytes of resident memory per live key for `which` limiter, in a fresh process so neither
/// limiter reuses memory the other freed.
fn bytes_per_key(which: &str) -> f64 {
    const LIVE: usize = 1_000_000;
    let keys = keys(LIVE);
    // Time stands still (a manual clock for tollgate, governor's fake one), so no key refills and
    // every one stays tracked.
    let before = resident();
    match which {
        "tollgate" => {
            let limiter = RateLimiter::builder()
                .scope(
                    "k",
                    Quota::new([Tier::requests(u64::from(BURST), INTERVAL * BURST)]).unwrap(),
                )
                .max_keys(LIVE)
                .clock(ManualClock::new())
                .build()
                .unwrap();
            for key in &keys {
                limiter
                    .check_and_consume(&[(Scope::default(), key.as_str())], ONE)
                    .unwrap();
            }
            assert_eq!(limiter.live_keys(), LIVE);
            let bytes = resident().saturating_sub(before);
            black_box(&limiter);
            bytes as f64 / LIVE as f64
        }
        _ => {
            let keyed =
                GovLimiter::dashmap_with_clock(governor_quota(), FakeRelativeClock::default());
            for key in &keys {
                keyed.check_key(key).unwrap();
            }
            assert_eq!(keyed.len(), LIVE);
            let bytes = resident().saturating_sub(before);
            black_box(&keyed);
            bytes as f64 / LIVE as f64
        }
    }
}

fn memory() {
    let measure = |which: &str| -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("TOLLGATE_BENCH_BYTES_PER_KEY", which)
            .output()
            .expect("re-run this bench");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    println!(
        "memory/live_key: tollgate {} B, governor_keyed {} B (1,000,000 keys of 16 bytes, resident memory)",
        measure("tollgate"),
        measure("governor")
    );

    // 10M distinct keys over time: one call each, 1 µs apart; a key is full again 1 ms later.
    const PASSING: u64 = 10_000_000;
    let clock = ManualClock::new();
    let limiter = RateLimiter::builder()
        .scope(
            "k",
            Quota::new([Tier::requests(1, Duration::from_millis(1))]).unwrap(),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let base = resident();
    let mut key = String::new();
    let mut samples = Vec::new();
    for i in 0..PASSING {
        key.clear();
        use std::fmt::Write;
        write!(key, "user-{i:011}").unwrap();
        limiter
            .check_and_consume(&[(Scope::default(), key.as_str())], ONE)
            .unwrap();
        clock.advance(Duration::from_micros(1));
        if (i + 1) % 2_000_000 == 0 {
            samples.push(format!(
                "{}M: {:+.1} MiB, {} live",
                (i + 1) / 1_000_000,
                (resident() as f64 - base as f64) / 1_048_576.0,
                limiter.live_keys()
            ));
        }
    }
    println!("memory/10M_passing tollgate: {}", samples.join("; "));
}

fn main() {
    if let Ok(which) = std::env::var("TOLLGATE_BENCH_BYTES_PER_KEY") {
        println!("{:.0}", bytes_per_key(&which));
        return;
    }
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    if filter.as_deref().is_none_or(|f| f.contains("memory")) {
        memory();
    }
    let mut criterion = Criterion::default().configure_from_args();
    single_key(&mut criterion);
    many_keys(&mut criterion);
    tiers(&mut criterion);
    budget(&mut criterion);
    contended(&mut criterion);
    criterion.final_summary();
}

//! The process's resident memory (RSS) while 2,000,000 calls pass through a stack built from one
//! configuration: a memory cache bounded at 8 MiB, tenant quotas with a daily budget, retries,
//! breaker, health and cost tracking, on a simulated provider.
//!
//! Scenarios, each in a process of its own (memory an allocator has once taken is rarely given
//! back, so one scenario would skew the next):
//!
//! - `new_tenants`: every call from a tenant never seen before, under the default bound on the
//!   tenants the cost report keeps apart (`costs.max_tenants`, 10,000);
//! - `recurring_tenants`: the same calls from 200,000 tenants that keep coming back: the peer,
//!   whose memory is flat by construction;
//! - `new_tenants_unbounded`: as `new_tenants` with `costs.max_tenants` at 2,000,000, so nothing is
//!   ever folded: what the cost tracker cost before it had a bound.
//!
//! RSS is sampled every 100,000 calls. After a warm-up of the first 200,000 calls, the plateau is
//! the highest sample, and the figure that matters is how far below it the lowest sample sits.
//!
//! Run: `cargo bench -p tollgate-benches --bench tenants` (about two minutes).

use std::{process::Command, time::Instant};

use tollgate::{Config, LlmRequest, Message, Stack};
use tower::{Service, ServiceExt};

const CALLS: u64 = 2_000_000;
const SAMPLE_EVERY: u64 = 100_000;
const WARM_UP: u64 = 200_000;

const SCENARIOS: [&str; 3] = ["new_tenants", "recurring_tenants", "new_tenants_unbounded"];

fn config(max_tenants: u64) -> Config {
    Config::from_yaml(&format!(
        r#"
providers:
  sim: {{ kind: simulated, output_tokens: 20 }}
roles:
  default: {{ provider: sim, model: small, max_tokens: 64 }}
pricing:
  small: {{ input: "0.15", output: "0.60" }}
caching: {{ store: memory, max_bytes: 8388608 }}
rate_limiting:
  tenants:
    default: {{ per_minute: 600, cost_per_day: "5.00" }}
costs: {{ max_tenants: {max_tenants} }}
"#
    ))
    .expect("the bench's configuration is valid")
}

/// Resident memory in MiB, from `/proc/self/statm` (Linux).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's second field is resident pages");
    (pages * 4096) as f64 / (1024.0 * 1024.0)
}

/// Runs one scenario and prints one line per sample: `sample <calls> <rss MiB> <tenants kept>
/// <limiter keys> <cache entries>`.
fn run(scenario: &str) {
    let (max_tenants, recurring) = match scenario {
        "new_tenants" => (tollgate::DEFAULT_MAX_TENANTS as u64, None),
        "recurring_tenants" => (tollgate::DEFAULT_MAX_TENANTS as u64, Some(200_000)),
        "new_tenants_unbounded" => (CALLS, None),
        other => panic!("no scenario {other:?}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut stack = Stack::from_config(&config(max_tenants)).unwrap();
        let started = Instant::now();
        for n in 0..CALLS {
            let tenant = recurring.map_or(n, |tenants| n % tenants);
            let request = LlmRequest::new("", vec![Message::user(format!("question {n}"))])
                .with_tenant(format!("user-{tenant}"));
            stack.ready().await.unwrap().call(request).await.unwrap();
            if (n + 1) % SAMPLE_EVERY == 0 {
                let sizes = stack.sizes();
                println!(
                    "sample {} {:.1} {} {} {}",
                    n + 1,
                    rss_mib(),
                    sizes.tenants,
                    sizes.limiter_keys,
                    sizes.cache_entries,
                );
            }
        }
        println!("seconds {:.1}", started.elapsed().as_secs_f64());
    });
}

struct Sample {
    calls: u64,
    rss: f64,
    tenants: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--scenario") {
        run(&args[at + 1]);
        return;
    }
    // `cargo bench` passes `--bench`; a name filter picks scenarios.
    let filter = args[1..].iter().find(|a| !a.starts_with('-'));
    println!(
        "{CALLS} calls per scenario; RSS in MiB every {SAMPLE_EVERY} calls; warm-up {WARM_UP}\n"
    );
    println!(
        "| scenario | RSS at {WARM_UP} | lowest after | highest after (plateau) | lowest ÷ plateau | RSS at end | tenants kept at end | seconds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for scenario in SCENARIOS {
        if filter.is_some_and(|f| !scenario.contains(f.as_str())) {
            continue;
        }
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--scenario", scenario])
            .output()
            .expect("the bench runs itself for each scenario");
        assert!(
            output.status.success(),
            "{scenario}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let mut samples = Vec::new();
        let mut seconds = 0.0;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["sample", calls, rss, tenants, ..] => samples.push(Sample {
                    calls: calls.parse().unwrap(),
                    rss: rss.parse().unwrap(),
                    tenants: tenants.parse().unwrap(),
                }),
                ["seconds", s] => seconds = s.parse().unwrap(),
                _ => {}
            }
        }
        eprintln!("{scenario}: {text}");
        let warm = samples.iter().find(|s| s.calls == WARM_UP).unwrap();
        let after: Vec<&Sample> = samples.iter().filter(|s| s.calls > WARM_UP).collect();
        let lowest = after.iter().map(|s| s.rss).fold(f64::MAX, f64::min);
        let plateau = after.iter().map(|s| s.rss).fold(0.0, f64::max);
        let end = samples.last().unwrap();
        println!(
            "| {scenario} | {:.1} | {lowest:.1} | {plateau:.1} | {:.3} | {:.1} | {} | {seconds:.1} |",
            warm.rss,
            lowest / plateau,
            end.rss,
            end.tenants,
        );
    }
}

//! Memory stays bounded whatever the number of tenants: 2,000,000 calls, each from a tenant never
//! seen before, through a stack built from one configuration (tenant quotas with a daily budget,
//! retries, breaker and health). The cost tracker never holds more tenants than its bound, and its
//! sums stay exact to the micro-dollar, in one report and across drains.
//!
//! The cache is left out: a tenant-scoped cache never hits here, and its bound is in bytes
//! (`benches/tenants.rs` runs this load with it and reports the process's memory). About 25 s in a
//! debug build; nothing in it is timed.

use std::time::Duration;

use tollgate::{Config, CostReport, LlmRequest, Message, Stack, Usage, clock::ManualClock};
use tower::{Service, ServiceExt};

const MAX_TENANTS: usize = 10_000;
const CALLS: u64 = 2_000_000;

const YAML: &str = r#"
providers:
  sim: { kind: simulated, output_tokens: 3 }
roles:
  default: { provider: sim, model: small }
pricing:
  small: { input: "0.15", output: "0.60" }
rate_limiting:
  tenants:
    default: { per_minute: 60, cost_per_day: "5.00" }
costs: { max_tenants: 10000 }
"#;

/// What the pricing table must charge for one call, worked out here rather than asked of it:
/// $0.15 and $0.60 per million tokens, the exact sum rounded up once to a micro-dollar.
fn cost_of(usage: Usage) -> u64 {
    (usage.input_tokens * 150_000 + usage.output_tokens * 600_000).div_ceil(1_000_000)
}

/// Each report's lines add up to its total: per tenant (with the folded ones), provider, model
/// and role.
fn assert_lines_add_up(report: &CostReport) {
    let tenants = report.by_tenant.values().fold((0, 0), |(calls, cost), t| {
        (calls + t.spend.calls, cost + t.spend.cost.0)
    });
    let other = &report.other_tenants.spend;
    assert_eq!(tenants.0 + other.calls, report.total.calls);
    assert_eq!(tenants.1 + other.cost.0, report.total.cost.0);
    for lines in [&report.by_provider, &report.by_model, &report.by_role] {
        let cost: u64 = lines.values().map(|s| s.cost.0).sum();
        assert_eq!(cost, report.total.cost.0);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn two_million_new_tenants_keep_the_cost_tracker_within_its_bound() {
    let config = Config::from_yaml(YAML).unwrap();
    let clock = ManualClock::new();
    let mut stack = Stack::builder(&config)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(stack.costs().max_tenants(), MAX_TENANTS);

    // The first half is one report, folded many times over; the second is drained every
    // 100,000 calls, as a service shipping its spend on a timer would.
    let mut expected = [(0_u64, 0_u64); 2]; // (calls, micro-dollars) per half
    let mut drained = (0_u64, 0_u64);
    let mut first_half = CostReport::default();
    for n in 0..CALLS {
        // A millisecond a call: each tenant's quota refills and its key is dropped, as in a
        // service that runs for half an hour.
        clock.advance(Duration::from_millis(1));
        let request = LlmRequest::new("", vec![Message::user(format!("question {n}"))])
            .with_tenant(format!("user-{n}"));
        let answer = stack.ready().await.unwrap().call(request).await.unwrap();
        let half = &mut expected[usize::from(n >= CALLS / 2)];
        half.0 += 1;
        half.1 += cost_of(answer.usage);
        assert!(stack.costs().tenants() <= MAX_TENANTS, "call {n}");

        if n + 1 == CALLS / 2 {
            first_half = stack.costs().report();
            assert_eq!(
                stack.costs().drain(),
                first_half,
                "a drain is the report, taken"
            );
        } else if n >= CALLS / 2 && (n + 1) % 100_000 == 0 {
            // Every other table is bounded too, and an operator can see it.
            let sizes = stack.sizes();
            assert_eq!(sizes.tenants, stack.costs().tenants());
            assert!(sizes.limiter_keys <= tollgate::ratelimit::DEFAULT_MAX_KEYS);
            assert_eq!((sizes.breaker_keys, sizes.health_components), (1, 1));
            let report = stack.costs().drain();
            assert_lines_add_up(&report);
            assert!(report.by_tenant.len() <= MAX_TENANTS);
            drained.0 += report.total.calls;
            drained.1 += report.total.cost.0;
        }
    }

    // One report over a million tenants: exact, with all but the bound folded.
    assert_eq!(first_half.total.calls, expected[0].0);
    assert_eq!(first_half.total.cost.0, expected[0].1);
    // Past the bound, each new tenant beyond a full table folds the eighth idle longest: the
    // table then cycles from 8,751 lines (7/8 of the bound, and the newcomer) back up to 10,000.
    let past = CALLS / 2 - MAX_TENANTS as u64 - 1;
    let fold = (MAX_TENANTS / 8) as u64;
    let after_fold = MAX_TENANTS as u64 - fold + 1;
    assert_eq!(first_half.by_tenant.len() as u64, after_fold + past % fold);
    assert_eq!(
        first_half.other_tenants.folded,
        CALLS / 2 - first_half.by_tenant.len() as u64
    );
    assert_lines_add_up(&first_half);

    // The drains of the second half add up to its calls, to the micro-dollar...
    assert_eq!(drained, expected[1]);
    // ...and with the first half's, to every call's.
    assert_eq!(
        (
            first_half.total.calls + drained.0,
            first_half.total.cost.0 + drained.1
        ),
        (CALLS, expected[0].1 + expected[1].1)
    );
    // Nothing is left after the last drain.
    assert_eq!(stack.costs().report().total.calls, 0);
    assert_eq!(stack.costs().tenants(), 0);
    assert_eq!(stack.sizes().queued_keys, 0);
}

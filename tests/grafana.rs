//! The shipped Grafana dashboard (`examples/grafana/tollgate.json`) reads only series tollgate
//! exports, by the names a Prometheus exporter gives them, and has the panels operators look for.

use std::collections::BTreeSet;

use tollgate::telemetry as names;

/// A `metrics` name as Prometheus writes it.
fn prometheus(name: &str) -> String {
    name.replace('.', "_")
}

#[test]
fn every_query_reads_series_tollgate_exports() {
    let text = std::fs::read_to_string("examples/grafana/tollgate.json").unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let counters = [
        names::REQUESTS,
        names::TOKENS,
        names::COST,
        names::CACHE_HITS,
        names::CACHE_MISSES,
        names::LIMITER_DENIALS,
        names::RETRY_ATTEMPTS,
        names::RETRY_BUDGET_REFUSALS,
        names::BREAKER_STATE,
        names::ROUTER_MOVES,
        names::ROUTER_HEDGES,
        names::ROUTER_COOLDOWNS,
        names::REDIS_MASTER_SWITCHES,
        names::LIMITER_BACKEND_SWITCHES,
        names::LIMITER_OVERRUN_TOKENS,
        names::LIMITER_OVERRUN_COST,
    ];
    let mut known: BTreeSet<String> = counters.iter().map(|n| prometheus(n)).collect();
    known.insert(format!("{}_bucket", prometheus(names::OPERATION_DURATION)));
    let labels: BTreeSet<String> = [
        names::PROVIDER,
        names::MODEL,
        names::TENANT,
        names::TOKEN_TYPE,
    ]
    .iter()
    .map(|n| prometheus(n))
    .collect();

    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Requests per second by provider",
        "Error rate by provider",
        "Tokens per second by tenant",
        "Cost per hour by tenant (USD)",
        "Cache hit rate",
        "Limiter denials by scope and dimension",
        "Breaker state by key (0 closed, 1 open, 2 half-open)",
        "Call latency percentiles",
        "Redis failovers: master switches and limiter fallbacks",
        "Budget overrun: billed past reservations",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let words = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("tollgate_") || w.starts_with("gen_ai_"));
            for word in words {
                assert!(
                    known.contains(word) || labels.contains(word),
                    "{word} in {expr:?} is no series or label tollgate exports"
                );
            }
        }
    }
}

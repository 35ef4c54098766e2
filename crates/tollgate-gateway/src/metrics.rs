//! What the gateway records through the `metrics` facade, and the Prometheus recorder the binary
//! installs for `/metrics`.

use std::time::Duration;

use http::StatusCode;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tollgate::{Stack, circuit_breaker::State, health::Status};

use crate::error::Dialect;

const REQUESTS: &str = "tollgate_gateway_requests_total";
const OVERHEAD: &str = "tollgate_gateway_overhead_seconds";

/// Installs a Prometheus recorder as the process's `metrics` recorder and returns the handle
/// `/metrics` renders from, with histogram buckets for the gateway's overhead (0.1 ms to 100 ms)
/// and OpenTelemetry's for call durations and token counts.
///
/// # Errors
///
/// When a recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    use tollgate::telemetry::{DURATION_BUCKETS, OPERATION_DURATION, TOKEN_BUCKETS, TOKEN_USAGE};
    PrometheusBuilder::new()
        // The bounds OpenTelemetry's generative-AI conventions give these two.
        .set_buckets_for_metric(
            Matcher::Full(OPERATION_DURATION.to_owned()),
            &DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(TOKEN_USAGE.to_owned()), &TOKEN_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(OVERHEAD.to_owned()),
            &[
                0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            ],
        )?
        .install_recorder()
}

/// One answer given: its front door, its status, and the gateway's overhead on it.
pub(crate) fn answered(dialect: Dialect, status: StatusCode, overhead: Duration) {
    let api = match dialect {
        Dialect::OpenAi => "openai",
        Dialect::Anthropic => "anthropic",
    };
    metrics::counter!(REQUESTS, "api" => api, "status" => status.as_u16().to_string()).increment(1);
    metrics::histogram!(OVERHEAD, "api" => api).record(overhead.as_secs_f64());
}

/// Records what the stack's layers know now (spend, cache, breakers, health), for a scrape.
pub(crate) fn record_stack(stack: &Stack) {
    let report = stack.cost_report();
    for (provider, spend) in &report.by_provider {
        let provider = provider.clone();
        let labels = [("provider", provider)];
        metrics::counter!("tollgate_calls_total", &labels).absolute(spend.calls);
        metrics::counter!("tollgate_input_tokens_total", &labels).absolute(spend.input_tokens);
        metrics::counter!("tollgate_cached_input_tokens_total", &labels)
            .absolute(spend.cached_input_tokens);
        metrics::counter!("tollgate_output_tokens_total", &labels).absolute(spend.output_tokens);
        metrics::counter!("tollgate_cost_microdollars_total", &labels).absolute(spend.cost.0);
    }
    if let Some(cache) = stack.cache() {
        let cache = cache.metrics();
        metrics::counter!("tollgate_cache_hits_total").absolute(cache.hits);
        metrics::counter!("tollgate_cache_misses_total").absolute(cache.misses);
        metrics::counter!("tollgate_cache_coalesced_total").absolute(cache.coalesced);
        metrics::gauge!("tollgate_cache_entries").set(cache.entries as f64);
        metrics::gauge!("tollgate_cache_bytes").set(cache.bytes as f64);
    }
    if let Some(breakers) = stack.breakers() {
        for (provider, state) in breakers.states() {
            let open = matches!(state, State::Open | State::ForcedOpen | State::HalfOpen);
            metrics::gauge!("tollgate_breaker_open", "provider" => provider.to_string())
                .set(if open { 1.0 } else { 0.0 });
        }
    }
    if let Some(health) = stack.health() {
        for (provider, snapshot) in health.snapshot() {
            let healthy = match snapshot.status {
                Status::Healthy => 1.0,
                Status::Degraded => 0.5,
                Status::Unhealthy => 0.0,
            };
            metrics::gauge!("tollgate_provider_health", "provider" => provider).set(healthy);
        }
    }
}

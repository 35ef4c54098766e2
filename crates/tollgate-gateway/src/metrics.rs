//! What the gateway records through the `metrics` facade, and the Prometheus recorder the binary
//! installs for `/metrics`.
//!
//! Every fact is rendered once: the layers record theirs as they happen, under OpenTelemetry's
//! `gen_ai.*` names and tollgate's `tollgate.*` ones (calls, tokens and cost per provider and
//! model, the cache, the limiter, breakers, health, the router, the call log's sinks); the
//! gateway adds only what it alone knows (its requests by front door and status, its overhead,
//! calls a budget moved, spend the ledger dropped).

use std::time::Duration;

use http::StatusCode;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

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
    metrics::counter!(REQUESTS, "api" => api, "status" => status_label(status)).increment(1);
    metrics::histogram!(OVERHEAD, "api" => api).record(overhead.as_secs_f64());
}

/// A status as a label: the common ones without an allocation.
fn status_label(status: StatusCode) -> metrics::SharedString {
    let common = match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        408 => "408",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return other.to_string().into(),
    };
    common.into()
}

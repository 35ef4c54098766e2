//! OpenTelemetry at the gateway: its spans exported over OTLP when the standard `OTEL_*`
//! variables say so, a caller's W3C `traceparent` continued and passed on to the upstream, and
//! the call log's OTLP logs sink.

use std::{
    io::IsTerminal as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{propagation::TextMapPropagator as _, trace::TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use prost::Message as _;
use tollgate::{
    LlmRequest,
    log::{CallRecord, Sink, WriteFuture},
    providers::RequestHeaders,
};
use tollgate_core::{ErrorKind, LlmError};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    Layer as _,
    filter::{LevelFilter, filter_fn},
    layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

/// Whether the gateway's spans are exported (set once, by [`Telemetry::install`]): only then
/// is a caller's trace continued and passed upstream.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The process's logs and traces, as `tollgate serve` installs them; [`shutdown`](Self::shutdown)
/// exports what is left before the process exits.
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the process's `tracing` subscriber: logs to standard error, as JSON lines or
    /// text, from `level` up; and, when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and neither `OTEL_SDK_DISABLED=true` nor
    /// `OTEL_TRACES_EXPORTER=none` is), the gateway's spans exported over OTLP (HTTP/protobuf),
    /// sampled as `OTEL_TRACES_SAMPLER` says (default: the caller's choice, else every call),
    /// with `OTEL_SERVICE_NAME` (default `tollgate`) and the other standard variables.
    ///
    /// Log events are never exported as spans or span events, so no message text leaves.
    pub fn install(json: bool, level: tracing::Level) -> Self {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let fmt = if json {
            fmt.json()
                .with_filter(LevelFilter::from_level(level))
                .boxed()
        } else {
            fmt.with_filter(LevelFilter::from_level(level)).boxed()
        };
        let (tracer, failed) =
            if wanted("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER") {
                match opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .build()
                {
                    Ok(exporter) => (
                        Some(
                            SdkTracerProvider::builder()
                                .with_resource(resource())
                                .with_batch_exporter(exporter)
                                .build(),
                        ),
                        None,
                    ),
                    Err(error) => (None, Some(error.to_string())),
                }
            } else {
                (None, None)
            };
        let spans = tracer.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("tollgate"))
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(
                    filter_fn(|meta| meta.is_span() && *meta.level() <= tracing::Level::INFO)
                        .with_max_level_hint(LevelFilter::INFO),
                )
        });
        tracing_subscriber::registry().with(fmt).with(spans).init();
        if let Some(error) = failed {
            tracing::warn!(%error, "spans are not exported: the OTLP exporter could not be built");
        }
        if tracer.is_some() {
            EXPORTING.store(true, Ordering::Relaxed);
            tracing::info!("spans are exported over OTLP");
        }
        Self { tracer }
    }

    /// Exports the spans still queued, waiting at most `timeout` for the collector.
    pub fn shutdown(self, timeout: Duration) {
        if let Some(tracer) = self.tracer
            && let Err(error) = tracer.shutdown_with_timeout(timeout)
        {
            tracing::warn!(%error, "the last spans may not have been exported");
        }
    }
}

/// Whether the standard variables ask for OTLP export of a signal.
fn wanted(signal_endpoint: &str, exporter: &str) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let none = std::env::var(exporter).is_ok_and(|v| v.trim() == "none");
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(signal_endpoint)) && !disabled && !none
}

/// The process's resource: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, named `tollgate`
/// when they name no service.
fn resource() -> opentelemetry_sdk::Resource {
    let detected = opentelemetry_sdk::Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| name.as_str() != "unknown_service");
    if named {
        detected
    } else {
        opentelemetry_sdk::Resource::builder()
            .with_service_name("tollgate")
            .build()
    }
}

/// The span a request is served in, the child of the caller's `traceparent` when it sends one;
/// `None` when spans are not exported.
pub(crate) fn server_span(
    method: &http::Method,
    route: &str,
    headers: &HeaderMap,
) -> Option<tracing::Span> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.route = route,
    );
    // Before the span is first entered: a caller's context that cannot be read leaves it a root.
    let _ = span.set_parent(parent);
    Some(span)
}

/// The current span's trace id (32 hex digits), when spans are exported.
pub(crate) fn trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| span.trace_id().to_string())
}

/// Adds the current span's `traceparent` to the headers `request` sends upstream, when spans are
/// exported, so the upstream's own trace joins the caller's.
pub(crate) fn pass_trace(request: &mut LlmRequest) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let context = tracing::Span::current().context();
    let mut injected = HeaderMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut injected));
    if !injected.contains_key("traceparent") {
        return;
    }
    let mut headers = request
        .extensions
        .remove::<RequestHeaders>()
        .unwrap_or_default();
    for (name, value) in &injected {
        // An empty `tracestate` says nothing.
        if !value.is_empty() {
            headers.0.insert(name.clone(), value.clone());
        }
    }
    request.extensions.insert(headers);
}

/// The call log's sink to an OTLP collector: each record one log record (`tollgate.call`), its
/// JSON the body, its main facts attributes under OpenTelemetry's `gen_ai.*` names, sent over
/// HTTP/protobuf a batch at a time. A batch the collector does not take is dropped and counted.
pub(crate) struct OtlpLogs {
    client: reqwest::Client,
    endpoint: String,
    headers: HeaderMap,
    service: String,
}

impl OtlpLogs {
    /// The sink to `endpoint`, or where the standard variables say when it is `None`.
    pub(crate) fn new(endpoint: Option<&str>) -> Result<Self, LlmError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"))
            .or_else(|| {
                var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|base| format!("{}/v1/logs", base.trim_end_matches('/')))
            })
            .ok_or_else(|| {
                LlmError::new(
                    ErrorKind::InvalidRequest,
                    "logs.sinks: the otlp sink has no endpoint: set `endpoint`, or OTEL_EXPORTER_OTLP_ENDPOINT",
                )
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let listed =
            var("OTEL_EXPORTER_OTLP_LOGS_HEADERS").or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"));
        for pair in listed.iter().flat_map(|list| list.split(',')) {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let parsed = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            );
            if let (Ok(name), Ok(value)) = parsed {
                headers.insert(name, value);
            }
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LlmError::new(ErrorKind::Internal, format!("the OTLP client: {e}")))?;
        Ok(Self {
            client,
            endpoint,
            headers,
            service: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "tollgate".to_owned()),
        })
    }
}

impl Sink for OtlpLogs {
    fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        let body = export_request(&self.service, batch).encode_to_vec();
        Box::pin(async move {
            let sent = self
                .client
                .post(&self.endpoint)
                .headers(self.headers.clone())
                .body(body)
                .send()
                .await
                .map_err(|e| LlmError::new(ErrorKind::Connect, format!("the collector: {e}")))?;
            if sent.status().is_success() {
                Ok(())
            } else {
                Err(LlmError::new(
                    ErrorKind::Server,
                    format!("the collector answered {}", sent.status()),
                ))
            }
        })
    }
}

fn export_request(service: &str, batch: &[Arc<CallRecord>]) -> ExportLogsServiceRequest {
    let now = nanos(SystemTime::now());
    let log_records = batch.iter().map(|record| log_record(record, now)).collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "tollgate".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

fn log_record(record: &CallRecord, observed: u64) -> LogRecord {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut attributes = vec![
        text("tollgate.request_id", &record.request_id),
        text("gen_ai.operation.name", &record.operation),
        number("gen_ai.usage.input_tokens", int(record.usage.input_tokens)),
        number(
            "gen_ai.usage.output_tokens",
            int(record.usage.output_tokens),
        ),
        number(
            "tollgate.cost.microdollars",
            int(record.cost.map_or(0, |c| c.0)),
        ),
    ];
    let named = [
        ("gen_ai.response.model", &record.model),
        ("gen_ai.provider.name", &record.provider),
        ("tollgate.key", &record.key_id),
        ("tollgate.tenant", &record.team),
        ("tollgate.role", &record.role),
        ("tollgate.deployment", &record.deployment),
    ];
    for (name, value) in named {
        if let Some(value) = value {
            attributes.push(text(name, value));
        }
    }
    if let Some(status) = record.status {
        attributes.push(number("http.response.status_code", i64::from(status)));
    }
    if let Some(error) = record.error {
        attributes.push(text("error.type", error.name()));
    }
    if let Some(cache) = record.cache {
        attributes.push(text("tollgate.cache", cache.as_str()));
    }
    let failed = !record.succeeded();
    // The record's trace, so a collector links it to the call's spans.
    let trace_id = record
        .trace_id
        .as_deref()
        .and_then(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .filter(|bytes| bytes.len() == 16)
        .unwrap_or_default();
    LogRecord {
        time_unix_nano: nanos(record.at),
        observed_time_unix_nano: observed,
        // INFO, or WARN for a call that failed.
        severity_number: if failed { 13 } else { 9 },
        severity_text: if failed { "WARN" } else { "INFO" }.to_owned(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(
                serde_json::to_string(record).unwrap_or_default(),
            )),
        }),
        attributes,
        event_name: "tollgate.call".to_owned(),
        trace_id,
        ..LogRecord::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
    }
}

fn number(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
    }
}

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

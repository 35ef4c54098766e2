//! Traces and OTLP logs from the real binary, received by a test collector that decodes the
//! OTLP protobuf itself: a caller's `traceparent` continued, the upstream handed the same trace,
//! and each call's record sent as a log record.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{KeyValue, any_value::Value as Any},
};
use prost::Message as _;
use serde_json::json;
use support::{ALICE, client, config, gateway::GatewayProcess, until, upstream::Upstream};

const PATIENCE: Duration = Duration::from_secs(60);

/// What the test collector received.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
}

/// A collector on a free port: `/v1/traces` and `/v1/logs`, protobuf bodies decoded here.
async fn collector() -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    async fn traces(State(into): State<Arc<Mutex<Received>>>, body: Bytes) -> &'static str {
        let request = ExportTraceServiceRequest::decode(body).expect("OTLP trace protobuf");
        into.lock().unwrap().traces.push(request);
        ""
    }
    async fn logs(State(into): State<Arc<Mutex<Received>>>, body: Bytes) -> &'static str {
        let request = ExportLogsServiceRequest::decode(body).expect("OTLP logs protobuf");
        into.lock().unwrap().logs.push(request);
        ""
    }
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// The value of attribute `key`, if it has one.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    let found = attributes.iter().find(|kv| kv.key == key)?;
    found.value.as_ref()?.value.as_ref()
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Any::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Any::IntValue(n) => Some(*n),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_is_continued_exported_and_handed_to_the_upstream() {
    let (endpoint, received) = collector().await;
    let upstream = Upstream::start().await;
    let yaml = config(&upstream, "logs: { sinks: [ { kind: otlp } ] }\n");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "gateway-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut gateway = GatewayProcess::start_in(&yaml, &[], &env).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(ALICE)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", "traced-1")
        .json(&json!({ "model": "default", "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The upstream was handed a traceparent in the caller's trace (its own span id, not the
    // caller's).
    let sent = upstream.headers().pop().unwrap();
    let traceparent = sent
        .get("traceparent")
        .expect("a traceparent upstream")
        .to_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace_id, "01"),
        "{traceparent}"
    );
    assert_ne!(parts[2], "00f067aa0ba902b7");

    // The spans: the request's, a child of the caller's, and the call's, with the gen_ai names.
    let exported = until(PATIENCE, || async {
        spans(&received).iter().any(|s| s.name.starts_with("chat "))
    })
    .await;
    assert!(exported, "no spans exported: {}", gateway.logs());
    let spans = spans(&received);
    let caller = hex(trace_id);
    let request = spans
        .iter()
        .find(|s| s.name == "POST /v1/chat/completions")
        .expect("the request's span");
    assert_eq!(request.trace_id, caller);
    assert_eq!(request.parent_span_id, hex("00f067aa0ba902b7"));
    let call = spans
        .iter()
        .find(|s| s.name.starts_with("chat "))
        .expect("the call's span");
    assert_eq!(call.trace_id, caller);
    assert_eq!(call.parent_span_id, request.span_id);
    assert_eq!(
        text(&call.attributes, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        text(&call.attributes, "gen_ai.request.model").as_deref(),
        Some("up-model")
    );
    assert_eq!(
        text(&call.attributes, "gen_ai.provider.name").as_deref(),
        Some("up")
    );
    assert_eq!(int(&call.attributes, "gen_ai.usage.output_tokens"), Some(5));
    // The upstream's parent is a span of this trace.
    assert!(
        spans.iter().any(|s| hex(parts[2]) == s.span_id),
        "the upstream's parent was exported"
    );
    let service = received.lock().unwrap().traces[0].resource_spans[0]
        .resource
        .clone()
        .unwrap();
    assert_eq!(
        text(&service.attributes, "service.name").as_deref(),
        Some("gateway-under-test")
    );

    // The call's record, as an OTLP log record.
    let logged = until(PATIENCE, || async {
        !received.lock().unwrap().logs.is_empty()
    })
    .await;
    assert!(logged, "no log records: {}", gateway.logs());
    let record =
        received.lock().unwrap().logs[0].resource_logs[0].scope_logs[0].log_records[0].clone();
    assert_eq!(record.event_name, "tollgate.call");
    assert_eq!(
        record.trace_id, caller,
        "the record is in the caller's trace"
    );
    assert_eq!(
        text(&record.attributes, "tollgate.request_id").as_deref(),
        Some("traced-1")
    );
    assert_eq!(
        int(&record.attributes, "gen_ai.usage.output_tokens"),
        Some(5)
    );
    assert_eq!(
        int(&record.attributes, "http.response.status_code"),
        Some(200)
    );
    gateway.signal("TERM");
    assert!(gateway.wait(PATIENCE).await.success());
}

fn spans(received: &Mutex<Received>) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    received
        .lock()
        .unwrap()
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_nothing_is_exported_and_no_traceparent_is_made_up() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let response = support::chat(&gateway, ALICE, &support::ask("hi")).await;
    assert_eq!(response.status(), 200);
    let sent = upstream.headers().pop().unwrap();
    assert!(sent.get("traceparent").is_none());
}

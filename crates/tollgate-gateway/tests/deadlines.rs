//! Time is bounded per call: a silent upstream is cut off at its first-byte timeout and not tried
//! again, and a whole call (every attempt and move) fits in the gateway's `request_timeout`, a
//! role's `timeout`, or a caller's own shorter timeout header.
//!
//! These run the real binary against a real upstream that never answers, so each waits out a
//! timeout of about a second in real time; the bounds asserted are many times that.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// A configuration whose provider retries three times with a 30-second per-attempt timeout: a
/// silent upstream would hold a call for minutes if nothing else bounded it.
fn patient(upstream: &Upstream, provider: &str, more: &str) -> String {
    config(upstream, more)
        .replace("timeout: 5s", &format!("timeout: 30s{provider}"))
        .replace(
            "retry: { max_retries: 0 }",
            "retry: { max_retries: 3, base_delay: 10ms }",
        )
}

async fn timed_post(
    gateway: &GatewayProcess,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let mut request = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(ALICE)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let took = started.elapsed();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        took,
    )
}

#[tokio::test]
async fn a_silent_upstream_is_a_504_within_its_first_byte_timeout_not_after_every_attempt() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&patient(&upstream, ", first_byte_timeout: 1s", "")).await;
    for stream in [false, true] {
        upstream.push(Reply::Hang);
        let mut body = ask("anyone there?");
        body["stream"] = json!(stream);
        let calls = upstream.calls();
        let (status, error, took) = timed_post(&gateway, &body, &[]).await;
        assert_eq!(status, 504, "{error}");
        assert_eq!(error["error"]["code"], "upstream_timeout", "{error}");
        // One attempt, not four: a silent upstream is not asked again.
        assert_eq!(upstream.calls() - calls, 1, "stream: {stream}");
        // Four attempts of 30 s would be two minutes.
        assert!(took < Duration::from_secs(20), "took {took:?}");
    }
}

#[tokio::test]
async fn the_gateways_request_timeout_bounds_every_attempt_together() {
    let upstream = Upstream::start().await;
    let gateway =
        GatewayProcess::start(&patient(&upstream, "", "gateway: { request_timeout: 1s }")).await;
    upstream.push(Reply::Hang);
    let (status, error, took) = timed_post(&gateway, &ask("slow"), &[]).await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (504, &json!("upstream_timeout")),
        "{error}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        eventually(Duration::from_secs(10), || upstream.dropped() == 1).await,
        "the upstream call was cancelled at the deadline"
    );
}

#[tokio::test]
async fn a_caller_may_shorten_its_deadline_never_lengthen_it() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&patient(&upstream, "", "")).await;
    // The official clients send their own timeout in seconds; tollgate's header takes a duration.
    for header in [("x-stainless-timeout", "1.5"), ("x-tollgate-timeout", "1s")] {
        upstream.push(Reply::Hang);
        let (status, error, took) = timed_post(&gateway, &ask("slow"), &[header]).await;
        assert_eq!(status, 504, "{header:?}: {error}");
        assert!(took < Duration::from_secs(20), "{header:?} took {took:?}");
    }
    // A header of ours that makes no sense is the caller's mistake, named; the clients' is not
    // theirs, and is ignored.
    let (status, error, _) =
        timed_post(&gateway, &ask("hi"), &[("x-tollgate-timeout", "soon")]).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("x-tollgate-timeout")),
        "{error}"
    );
    let (status, _, _) = timed_post(&gateway, &ask("hi"), &[("x-stainless-timeout", "soon")]).await;
    assert_eq!(status, 200);

    // A longer one than the gateway's own changes nothing.
    let short =
        GatewayProcess::start(&patient(&upstream, "", "gateway: { request_timeout: 1s }")).await;
    upstream.push(Reply::Hang);
    let (status, _, took) = timed_post(&short, &ask("slow"), &[("x-tollgate-timeout", "1h")]).await;
    assert_eq!(status, 504);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test]
async fn a_roles_timeout_bounds_its_calls() {
    let upstream = Upstream::start().await;
    let yaml = patient(&upstream, "", "").replace(
        "default: { provider: up, model: up-model }",
        "default: { provider: up, model: up-model, timeout: 1s }",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    upstream.push(Reply::Hang);
    let (status, error, took) = timed_post(&gateway, &ask("slow"), &[]).await;
    assert_eq!(status, 504, "{error}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test]
async fn a_stream_still_running_at_the_deadline_ends_with_an_error_event() {
    let upstream = Upstream::start().await;
    let gateway =
        GatewayProcess::start(&patient(&upstream, "", "gateway: { request_timeout: 1s }")).await;
    // The first piece, then silence.
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "Once" }),
            None,
        )],
        rest: vec![],
        done: true,
    });
    let mut body = ask("a long story");
    body["stream"] = json!(true);
    let response = chat(&gateway, ALICE, &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines = data_lines(&text);
    assert!(text.contains("Once"), "{text}");
    assert!(!lines.iter().any(|line| line == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");
}

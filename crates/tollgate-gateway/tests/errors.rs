//! Errors as clients expect them, and hostile input, through the real binary.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

async fn post(
    gateway: &GatewayProcess,
    path: &str,
    key: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = client().post(format!("{}{path}", gateway.url)).body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-request-id"));
    assert!(response.headers().contains_key("x-tollgate-overhead-ms"));
    (status, response.json().await.unwrap())
}

fn code(error: &Value) -> (&str, &str) {
    (
        error["error"]["type"].as_str().unwrap_or("?"),
        error["error"]["code"].as_str().unwrap_or("?"),
    )
}

#[tokio::test]
async fn each_mistake_gets_its_status_and_openais_shape() {
    let upstream = Upstream::start().await;
    let yaml = config(
        &upstream,
        "gateway: { max_body_bytes: 2000, max_output_tokens: 4096 }",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let ok = ask("hi").to_string();
    let path = "/v1/chat/completions";

    let (status, error) = post(&gateway, path, None, ok.clone()).await;
    assert_eq!(
        (status, code(&error)),
        (401, ("invalid_request_error", "invalid_api_key"))
    );
    let (status, _) = post(&gateway, path, Some("tg-wrong"), ok.clone()).await;
    assert_eq!(status, 401);

    let mut unknown = ask("hi");
    unknown["model"] = json!("gpt-unknown");
    let (status, error) = post(&gateway, path, Some(ALICE), unknown.to_string()).await;
    assert_eq!(
        (status, code(&error)),
        (404, ("invalid_request_error", "model_not_found"))
    );
    assert_eq!(error["error"]["param"], "model");

    // A name that is no model id (a query string, a space) is a 400, not echoed, even for a
    // key that may use any of the provider's models.
    for name in ["up/up-model?x=1", "up/up model", "up/\u{7}"] {
        let mut odd = ask("hi");
        odd["model"] = json!(name);
        let (status, error) = post(&gateway, path, Some(ALICE), odd.to_string()).await;
        assert_eq!(
            (status, code(&error)),
            (400, ("invalid_request_error", "invalid_model")),
            "{name:?}"
        );
        assert_eq!(error["error"]["param"], "model");
        assert!(!error.to_string().contains("up-model?"), "{error}");
    }

    // bob may use the `default` role only, not a provider's model by name.
    let mut direct = ask("hi");
    direct["model"] = json!("up/up-model");
    let (status, error) = post(&gateway, path, Some(BOB), direct.to_string()).await;
    assert_eq!(
        (status, code(&error)),
        (403, ("permission_error", "model_not_allowed"))
    );

    let huge = json!({ "model": "default", "messages": [{ "role": "user", "content": "x".repeat(3000) }] });
    let (status, error) = post(&gateway, path, Some(ALICE), huge.to_string()).await;
    assert_eq!(
        (status, code(&error)),
        (413, ("invalid_request_error", "request_too_large"))
    );

    let (status, error) = post(
        &gateway,
        path,
        Some(ALICE),
        r#"{"model": "default", "messages": [{"role": "user", "content": 5}]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "messages[0].content");

    let (status, error) = post(
        &gateway,
        path,
        Some(ALICE),
        r#"{"model": "default", "messages": ["#,
    )
    .await;
    assert_eq!(
        (status, code(&error)),
        (400, ("invalid_request_error", "invalid_json"))
    );

    let mut greedy = ask("hi");
    greedy["max_tokens"] = json!(1_000_000);
    let (status, error) = post(&gateway, path, Some(ALICE), greedy.to_string()).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("max_tokens"))
    );

    let mut invalid_utf8 =
        br#"{"model": "default", "messages": [{"role": "user", "content": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let (status, error) = post(&gateway, path, Some(ALICE), invalid_utf8).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("messages[0].content"))
    );

    let deep = format!(
        r#"{{"model": "default", "messages": [{{"role": "user", "content": "hi"}}], "x": {}{}}}"#,
        "[".repeat(500),
        "]".repeat(500)
    );
    let (status, error) = post(&gateway, path, Some(ALICE), deep).await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion"),
        "{error}"
    );

    assert_eq!(upstream.calls(), 0, "no mistake reached the upstream");

    // The Anthropic door answers in Anthropic's shape.
    let (status, error) = post(&gateway, "/v1/messages", None, "{}").await;
    assert_eq!(status, 401);
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");

    let (status, error) = post(&gateway, "/v1/nowhere", Some(ALICE), "{}").await;
    assert_eq!((status, code(&error).1), (404, "unknown_url"));
}

#[tokio::test]
async fn upstream_errors_keep_their_kind() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let path = "/v1/chat/completions";
    let cases = [
        (400, "invalid_request_error", 400, "invalid_request"),
        (404, "not_found", 404, "invalid_request"),
        (429, "rate_limit", 429, "rate_limit_exceeded"),
        (500, "server", 502, "upstream_error"),
        (503, "overloaded", 503, "upstream_overloaded"),
        (401, "auth", 502, "upstream_auth"),
    ];
    for (sent, kind, want, want_code) in cases {
        upstream.push(Reply::Json(
            sent,
            json!({ "error": { "message": format!("upstream says {kind}"), "type": kind } }),
            vec![("retry-after", "7".to_owned())],
        ));
        let (status, error) = post(&gateway, path, Some(ALICE), ask(kind).to_string()).await;
        assert_eq!(
            (status, code(&error).1),
            (want, want_code),
            "{sent}: {error}"
        );
        // Only a 400 about the caller's own request keeps the upstream's words.
        assert_eq!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upstream says"),
            sent == 400,
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_killed_upstream_gives_502_and_the_breaker_opens() {
    let upstream = Upstream::start().await;
    let breaker = "circuit_breaker: { minimum_calls: 2, window: { count: 4 }, wait_in_open: 60s }";
    let gateway = GatewayProcess::start(&config(&upstream, breaker)).await;
    let path = "/v1/chat/completions";
    let (status, _) = post(&gateway, path, Some(ALICE), ask("before").to_string()).await;
    assert_eq!(status, 200);
    upstream.stop();
    // The port goes quiet once the server has stopped accepting.
    assert!(
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect(
            upstream.address
        )
        .is_err())
        .await
    );
    let mut seen = Vec::new();
    for i in 0..4 {
        let (status, error) = post(
            &gateway,
            path,
            Some(ALICE),
            ask(&format!("after {i}")).to_string(),
        )
        .await;
        seen.push((status, code(&error).1.to_owned()));
    }
    assert_eq!(
        seen,
        [
            // One success and one failure: 50 % of the two calls the breaker waits for.
            (502, "upstream_error".to_owned()),
            (503, "circuit_open".to_owned()),
            (503, "circuit_open".to_owned()),
            (503, "circuit_open".to_owned()),
        ]
    );
    let health = get_json(&gateway, "/health", None).await;
    assert_eq!(health["providers"]["up"]["breaker"], "open", "{health}");
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_a_504() {
    let upstream = Upstream::start().await;
    let yaml = config(&upstream, "").replace("timeout: 5s", "timeout: 300ms");
    let gateway = GatewayProcess::start(&yaml).await;
    upstream.push(Reply::Hang);
    let (status, error) = post(
        &gateway,
        "/v1/chat/completions",
        Some(ALICE),
        ask("slow").to_string(),
    )
    .await;
    assert_eq!(
        (status, code(&error)),
        (504, ("api_error", "upstream_timeout"))
    );
    assert!(
        eventually(Duration::from_secs(5), || upstream.dropped() == 1).await,
        "the timed-out call was not dropped"
    );
}

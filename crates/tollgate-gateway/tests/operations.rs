//! Running the real binary: drains on SIGTERM, reloads on SIGHUP, cuts off slow clients, and
//! cancels (and bills) the upstream call of a client that hangs up.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stream_body() -> Value {
    json!({ "model": "default", "stream": true, "messages": [{ "role": "user", "content": "hi" }] })
}

/// Reads `response` until `needle` has arrived.
async fn read_until(response: &mut reqwest::Response, body: &mut String, needle: &str) {
    while !body.contains(needle) {
        let piece = response.chunk().await.unwrap().expect("more of the stream");
        body.push_str(std::str::from_utf8(&piece).unwrap());
    }
}

#[tokio::test]
async fn sigterm_during_a_stream_lets_it_finish_and_exits_0() {
    let upstream = Upstream::start().await;
    let mut gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "one" }),
            None,
        )],
        rest: vec![
            chunk(json!({ "content": " two" }), None),
            chunk(json!({}), Some("stop")),
        ],
        done: true,
    });
    let mut response = chat(&gateway, ALICE, &stream_body()).await;
    let mut body = String::new();
    read_until(&mut response, &mut body, "one").await;

    gateway.signal("TERM");
    // Once the gateway has stopped accepting, new connections are refused...
    let address = gateway.url.trim_start_matches("http://").to_owned();
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(
            &address
        )
        .is_err())
        .await,
        "still accepting after SIGTERM"
    );
    // ...while the stream in flight runs to its end.
    upstream.release();
    while let Some(piece) = response.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&piece).unwrap());
    }
    let lines = data_lines(&body);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(body.contains(" two"));
    let status = gateway.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", gateway.logs());
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_serving_and_a_good_one_is_taken() {
    let upstream = Upstream::start().await;
    let yaml = config(&upstream, "");
    let gateway = GatewayProcess::start(&yaml).await;
    let call = |key: &'static str| {
        let url = format!("{}/v1/chat/completions", gateway.url);
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .json(&ask("hi"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(ALICE).await, 200);

    gateway.reload("providers: [this is not a configuration");
    assert!(
        eventually(Duration::from_secs(10), || gateway
            .logs()
            .contains("not reloaded"))
        .await,
        "{}",
        gateway.logs()
    );
    assert_eq!(
        call(ALICE).await,
        200,
        "the old configuration keeps serving"
    );

    // A good file is swapped in: a new key works, and alice's is gone.
    let carol = format!(
        "  carol: {{ hash: \"{}\", tenant: acme }}\n",
        tollgate_gateway::hash_key("tg-carol")
    );
    let next = yaml.replace(
        &format!(
            "  alice: {{ hash: \"{}\", tenant: acme, models: [\"up/*\"] }}\n",
            tollgate_gateway::hash_key(ALICE)
        ),
        &carol,
    );
    assert_ne!(next, yaml);
    gateway.reload(&next);
    assert!(
        eventually(Duration::from_secs(10), || gateway
            .logs()
            .contains("configuration reloaded"))
        .await,
        "{}",
        gateway.logs()
    );
    assert_eq!(call("tg-carol").await, 200);
    assert_eq!(call(ALICE).await, 401);
    assert!(!gateway.logs().contains(ALICE), "no key is ever logged");
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_cancels_the_upstream_call_and_is_billed() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::HeldStream {
        first: vec![chunk(
            json!({ "role": "assistant", "content": "some words" }),
            None,
        )],
        rest: vec![chunk(json!({}), Some("stop"))],
        done: true,
    });
    let mut response = chat(&gateway, ALICE, &stream_body()).await;
    let mut body = String::new();
    read_until(&mut response, &mut body, "some words").await;
    drop(response);
    assert!(
        eventually(Duration::from_secs(10), || upstream.dropped() == 1).await,
        "the upstream call was not cancelled"
    );
    let metrics = scrape(&gateway).await;
    let series = |name: &str, token_type: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains("gen_ai_operation_name=\"chat\"")
                    && l.contains("gen_ai_provider_name=\"up\"")
                    && l.contains("gen_ai_request_model=\"up-model\"")
                    && l.contains(&format!("gen_ai_token_type=\"{token_type}\""))
            })
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .to_owned()
    };
    // One billed call: one observation of its output tokens.
    let calls = series("gen_ai_client_token_usage_count{", "output");
    assert!(
        calls.ends_with(" 1"),
        "the unfinished stream is billed: {calls}"
    );
    let output = series("tollgate_tokens{", "output");
    assert!(
        !output.ends_with(" 0"),
        "what was read is counted: {output}"
    );
}

#[tokio::test]
async fn a_slow_client_is_cut_off() {
    let upstream = Upstream::start().await;
    let yaml = config(
        &upstream,
        "gateway: { header_timeout: 300ms, body_timeout: 300ms }",
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let address = gateway.url.trim_start_matches("http://").to_owned();

    // Headers that never end: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the connection stayed open");

    // A body that never ends: 408.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut reply))
        .await
        .expect("the gateway answers a stalled body");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "caching: { store: memory }")).await;
    for _ in 0..2 {
        let status = chat(&gateway, ALICE, &ask("hi")).await.status();
        assert_eq!(status, 200);
    }
    for path in ["/health", "/health/live", "/health/ready"] {
        let response = client()
            .get(format!("{}{path}", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "pass", "{path}");
    }
    let metrics = scrape(&gateway).await;
    for line in [
        "tollgate_gateway_requests_total{api=\"openai\",status=\"200\"} 2",
        // Recorded by the layers themselves, once each.
        "gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"up\",gen_ai_request_model=\"up-model\",gen_ai_token_type=\"input\"} 1",
        "tollgate_tokens{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"up\",gen_ai_request_model=\"up-model\",gen_ai_token_type=\"input\"} 10",
        "tollgate_cost_microdollars{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"up\",gen_ai_request_model=\"up-model\"} 20",
        "tollgate_cache_hits 1",
        "tollgate_cache_misses 1",
        "tollgate_cache_stores 1",
        "tollgate_health_status{key=\"up\"} 1",
        "tollgate_requests{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"up\",gen_ai_request_model=\"up-model\",outcome=\"ok\"} 1",
        // OpenTelemetry's bucket bounds for the call duration.
        "gen_ai_client_operation_duration_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"up\",gen_ai_request_model=\"up-model\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn metrics_and_detailed_health_can_require_a_key_while_probes_stay_open() {
    let upstream = Upstream::start().await;
    let key = "tg-scraper-key";
    let yaml = config(
        &upstream,
        &format!(
            "gateway: {{ metrics_key_hash: \"{}\" }}",
            tollgate_gateway::hash_key(key)
        ),
    );
    let gateway = GatewayProcess::start(&yaml).await;
    let get = |path: &'static str, key: Option<&'static str>| {
        let mut request = client().get(format!("{}{path}", gateway.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for path in ["/metrics", "/health"] {
        assert_eq!(get(path, None).await, 401, "{path} without a key");
        assert_eq!(
            get(path, Some("tg-wrong")).await,
            401,
            "{path} with a wrong key"
        );
        assert_eq!(
            get(path, Some(ALICE)).await,
            401,
            "{path} with a caller's key"
        );
        assert_eq!(
            get(path, Some(key)).await,
            200,
            "{path} with the metrics key"
        );
    }
    for path in ["/health/live", "/health/ready"] {
        assert_eq!(
            get(path, None).await,
            200,
            "{path} stays open for orchestrators"
        );
    }
    // Without the setting, everything is open as before.
    let open = GatewayProcess::start(&config(&upstream, "")).await;
    for path in ["/metrics", "/health"] {
        let status = client()
            .get(format!("{}{path}", open.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
}

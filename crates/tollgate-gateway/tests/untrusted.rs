//! The upstream is a party the gateway never trusts with its caller: what it says in an error is
//! rewritten (no key, no URL, no page), a stream it closes before its end is an error and billed
//! as incomplete, and an answer past the size bound is refused without being held whole.

mod support;

use serde_json::{Value, json};
use support::*;

/// Every way the response can give away what the upstream said of its key or its address.
const LEAKS: [&str; 9] = [
    "sk-upstream",
    "Bearer s",
    "http://",
    "https://",
    "<script",
    "<html",
    "10.0.0.7",
    "localhost",
    "internal.example",
];

fn leaks(body: &str, port: Option<u16>) -> Vec<String> {
    let mut found: Vec<String> = LEAKS
        .iter()
        .filter(|leak| body.contains(**leak))
        .map(|leak| (*leak).to_owned())
        .collect();
    if let Some(port) = port.filter(|port| body.contains(&port.to_string())) {
        found.push(port.to_string());
    }
    found
}

async fn post_text(gateway: &GatewayProcess, path: &str, body: &Value) -> (u16, String) {
    let response = client()
        .post(format!("{}{path}", gateway.url))
        .bearer_auth(ALICE)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn what_an_upstream_says_in_an_error_is_rewritten_never_relayed() {
    let upstream = Upstream::start().await;
    // A second provider where nothing listens, under a host name.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let yaml = config(&upstream, "")
        .replace(
            "providers:\n",
            &format!(
                "providers:\n  gone: {{ kind: openai, base_url: \"http://localhost:{gone}/v1\" }}\n"
            ),
        )
        .replace(r#"models: ["up/*"]"#, r#"models: ["up/*", "gone/*"]"#);
    let gateway = GatewayProcess::start_with(&yaml, &["--log-level", "debug"]).await;

    // The upstream refused the key it was sent, and says so word for word.
    upstream.push(Reply::Json(
        401,
        json!({ "error": {
            "message": "Incorrect API key provided: Bearer sk-upstream-secret-1234. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "code": "invalid_api_key" } }),
        vec![],
    ));
    // A proxy's HTML page, scripts and internal address included.
    upstream.push(Reply::Raw(
        500,
        "text/html",
        "<html><script>document.location='http://internal.example/x'</script>upstream 10.0.0.7:8080 failed</html>".into(),
    ));
    // The caller's own prompt is too long: the explanation is theirs to read.
    upstream.push(Reply::Json(
        400,
        json!({ "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. (node 10.0.0.7)",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded" } }),
        vec![],
    ));
    let path = "/v1/chat/completions";
    let mut seen = Vec::new();
    for text in ["key", "page", "long"] {
        let (status, body) = post_text(&gateway, path, &ask(text)).await;
        assert_eq!(leaks(&body, None), Vec::<String>::new(), "{body}");
        seen.push((status, serde_json::from_str::<Value>(&body).unwrap()));
    }
    let (status, body) = post_text(
        &gateway,
        path,
        &json!({
            "model": "gone/m", "messages": [{ "role": "user", "content": "hi" }]
        }),
    )
    .await;
    assert_eq!(leaks(&body, Some(gone)), Vec::<String>::new(), "{body}");
    seen.push((status, serde_json::from_str(&body).unwrap()));

    let shown: Vec<(u16, &str, &str, &str)> = seen
        .iter()
        .map(|(status, error)| {
            let error = &error["error"];
            let field = |name: &str| error[name].as_str().unwrap_or("");
            (*status, field("type"), field("code"), field("message"))
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                502,
                "api_error",
                "upstream_auth",
                "the upstream refused the credentials it was sent"
            ),
            (502, "api_error", "upstream_error", "the upstream failed"),
            (
                400,
                "invalid_request_error",
                "context_length_exceeded",
                "the prompt is too long for the model's context window: This model's maximum \
                 context length is 128000 tokens. However, your messages resulted in 130000 \
                 tokens. (node [address])"
            ),
            (
                502,
                "api_error",
                "upstream_error",
                "gone: the upstream could not be reached"
            ),
        ]
    );
    assert_eq!(seen[2].1["error"]["param"], "messages");
    // What each upstream said, by its identifiers only; a connection that failed said nothing.
    let upstream: Vec<&Value> = seen.iter().map(|(_, e)| &e["error"]["upstream"]).collect();
    assert_eq!(
        upstream,
        [
            &json!({ "status": 401, "type": "invalid_request_error", "code": "invalid_api_key" }),
            &json!({ "status": 500 }),
            &json!({ "status": 400, "type": "invalid_request_error", "code": "context_length_exceeded" }),
            &Value::Null,
        ]
    );

    // The full text went to the log at debug level, its secrets masked there too.
    let logs = gateway.logs();
    assert!(logs.contains("Incorrect API key provided"), "{logs}");
    assert!(logs.contains("Bearer [redacted]"), "{logs}");
    assert!(!logs.contains("sk-upstream-secret"), "{logs}");
}

#[tokio::test]
async fn the_anthropic_door_rewrites_them_too() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::Json(
        403,
        json!({ "error": { "message": "key sk-upstream-abcdefgh has no access to org-42", "type": "permission_denied" } }),
        vec![],
    ));
    let body = json!({ "model": "default", "max_tokens": 16, "messages": [{ "role": "user", "content": "hi" }] });
    let (status, text) = post_text(&gateway, "/v1/messages", &body).await;
    assert_eq!(leaks(&text, None), Vec::<String>::new(), "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, &error["error"]["type"], &error["error"]["message"]),
        (
            502,
            &json!("api_error"),
            &json!("the upstream refused the credentials it was sent")
        )
    );
}

#[tokio::test]
async fn a_stream_the_upstream_closes_before_its_end_is_an_error_and_billed_incomplete() {
    let upstream = Upstream::start().await;
    let admin = "tg-admin-key";
    let yaml = config(
        &upstream,
        &format!(
            "gateway: {{ admin_key_hash: \"{}\" }}",
            tollgate_gateway::hash_key(admin)
        ),
    );
    let gateway = GatewayProcess::start(&yaml).await;
    // Two pieces, then the body ends: no finish reason, no usage, no [DONE].
    upstream.push(Reply::Closed(vec![
        chunk(json!({ "role": "assistant", "content": "Once upon" }), None),
        chunk(json!({ "content": " a time" }), None),
    ]));
    let mut body = ask("a story");
    body["stream"] = json!(true);
    let response = chat(&gateway, ALICE, &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines = data_lines(&text);
    assert!(!lines.iter().any(|line| line == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "api_error", "{text}");
    assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed the stream before its end"),
        "{text}"
    );
    // The pieces before it were delivered.
    assert!(
        text.contains("Once upon") && text.contains(" a time"),
        "{text}"
    );

    // Billed all the same, as a call that did not end whole.
    let data = get_json(&gateway, "/ui/data", Some(admin)).await;
    let acme = &data["tenants"]["acme"];
    assert_eq!(
        (acme["calls"].as_u64(), acme["incomplete_calls"].as_u64()),
        (Some(1), Some(1)),
        "{data}"
    );
    assert!(acme["spent_usd"].as_f64().unwrap() > 0.0, "{data}");
}

#[tokio::test]
async fn a_64_mib_answer_is_a_502_and_is_never_held_whole() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let before = gateway.peak_rss();
    upstream.push(Reply::Huge(64 << 20));
    let (status, body) = post_text(&gateway, "/v1/chat/completions", &ask("everything")).await;
    assert_eq!(status, 502, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "upstream_error");
    assert_eq!(
        upstream.calls(),
        1,
        "a too-large answer is not asked for again"
    );
    // The default bound is 32 MiB: the gateway read at most that much of the 64, held once.
    let grew = gateway.peak_rss().saturating_sub(before);
    assert!(grew < 48 << 20, "the gateway grew by {} MiB", grew >> 20);
}

#[tokio::test]
async fn a_bound_set_lower_refuses_sooner() {
    let upstream = Upstream::start().await;
    let yaml =
        config(&upstream, "").replace("timeout: 5s", "timeout: 5s, max_response_bytes: 1048576");
    let gateway = GatewayProcess::start(&yaml).await;
    let before = gateway.peak_rss();
    upstream.push(Reply::Huge(64 << 20));
    let (status, _) = post_text(&gateway, "/v1/chat/completions", &ask("everything")).await;
    assert_eq!(status, 502);
    let grew = gateway.peak_rss().saturating_sub(before);
    assert!(grew < 16 << 20, "the gateway grew by {} MiB", grew >> 20);
}

//! OpenAiCompatible against a real local HTTP server (axum on a free port).

mod support;

use std::time::{Duration, SystemTime};

use serde_json::json;
use support::{Reply, Server};
use tollgate_core::{
    ErrorKind, FinishReason, LlmError, LlmRequest, LlmResponse, Message, UpstreamError, Usage,
    upstream_summary,
};
use tollgate_providers::{OpenAiCompatible, RateLimitSnapshot};
use tower::ServiceExt;

fn completion(content: &str, finish: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [ { "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": finish } ],
        "usage": { "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17 }
    })
}

fn client(server: &Server) -> OpenAiCompatible {
    OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .api_key("sk-test")
        .organization("org-1")
        .project("proj-1")
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn request() -> LlmRequest {
    LlmRequest::new(
        "gpt-4o-mini",
        vec![Message::system("Be brief."), Message::user("Say hi")],
    )
    .with_temperature(0.2)
}

async fn call(client: &OpenAiCompatible, request: LlmRequest) -> Result<LlmResponse, LlmError> {
    client.clone().oneshot(request).await
}

#[tokio::test]
async fn an_answer_fills_text_usage_finish_headers_and_the_rate_limit_snapshot() {
    let server = Server::start().await;
    server.reply(
        Reply::json(200, completion("Hi!", "stop"))
            .header("x-request-id", "req-42")
            .header("x-ratelimit-limit-requests", "500")
            .header("x-ratelimit-remaining-requests", "499")
            .header("x-ratelimit-reset-requests", "120ms")
            .header("x-ratelimit-limit-tokens", "30000")
            .header("x-ratelimit-remaining-tokens", "29983")
            .header("x-ratelimit-reset-tokens", "6m0s"),
    );
    let answer = call(&client(&server), request()).await.unwrap();
    assert_eq!(answer.content(), "Hi!");
    assert_eq!(answer.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(answer.usage, Usage::new(12, 5));
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(answer.headers["x-request-id"], "req-42");
    let snapshot = answer.extensions.get::<RateLimitSnapshot>().unwrap();
    assert_eq!(
        (
            snapshot.requests.limit,
            snapshot.requests.remaining,
            snapshot.requests.reset
        ),
        (Some(500), Some(499), Some(Duration::from_millis(120)))
    );
    assert_eq!(snapshot.tokens.remaining, Some(29_983));
    assert_eq!(snapshot.tokens.reset, Some(Duration::from_secs(360)));

    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-test");
    assert_eq!(seen.headers["openai-organization"], "org-1");
    assert_eq!(seen.headers["openai-project"], "proj-1");
    assert_eq!(
        seen.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [ { "role": "system", "content": "Be brief." }, { "role": "user", "content": "Say hi" } ],
            "temperature": 0.2
        })
    );
}

#[tokio::test]
async fn every_failure_status_maps_to_its_kind_and_only_a_bad_request_keeps_its_explanation() {
    let server = Server::start().await;
    let client = client(&server);
    let cases = [
        (429, ErrorKind::RateLimited),
        (529, ErrorKind::Overloaded),
        (503, ErrorKind::Overloaded),
        (500, ErrorKind::Server),
        (502, ErrorKind::Server),
        (504, ErrorKind::Server),
        (401, ErrorKind::Auth),
        (403, ErrorKind::Auth),
        (400, ErrorKind::InvalidRequest),
        (404, ErrorKind::InvalidRequest),
        (422, ErrorKind::InvalidRequest),
    ];
    for (status, kind) in cases {
        server.reply(Reply::json(
            status,
            json!({ "error": { "message": format!("problem {status}"), "type": "x" } }),
        ));
        let error = call(&client, request()).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{status}");
        assert_eq!(error.status().map(|s| s.as_u16()), Some(status));
        let said = error.extensions().get::<UpstreamError>().unwrap();
        assert_eq!(said.error_type.as_deref(), Some("x"), "{status}");
        // The upstream's words are kept only where they explain the caller's own request.
        let kept = matches!(status, 400 | 422);
        assert_eq!(
            error.message().contains(&format!("problem {status}")),
            kept,
            "{error}"
        );
        assert_eq!(said.message.is_some(), kept, "{status}");
        assert!(
            error
                .message()
                .starts_with(&format!("openai: {}", upstream_summary(kind))),
            "{error}"
        );
    }
    // A body that is not JSON gives the fixed sentence, never the page.
    server.reply(Reply {
        status: 502,
        headers: Vec::new(),
        body: "<html><script>alert(1)</script>Bad Gateway</html>".into(),
        stall: false,
    });
    let error = call(&client, request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.message(), "openai: the upstream failed (HTTP 502)");
}

#[tokio::test]
async fn retry_after_is_read_in_seconds_and_as_an_http_date() {
    let server = Server::start().await;
    let client = client(&server);
    server.reply(
        Reply::json(429, json!({ "error": { "message": "slow down" } }))
            .header("retry-after", "7")
            .header("x-ratelimit-remaining-requests", "0"),
    );
    let error = call(&client, request()).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let snapshot = error
        .extensions()
        .get::<RateLimitSnapshot>()
        .expect("on the error too");
    assert_eq!(snapshot.requests.remaining, Some(0));

    let at = SystemTime::now() + Duration::from_secs(120);
    server.reply(
        Reply::json(503, json!({ "error": { "message": "busy" } }))
            .header("retry-after", httpdate::fmt_http_date(at)),
    );
    let error = call(&client, request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Overloaded);
    // HTTP dates have whole seconds: the date above is 119 to 120 s away by now.
    let after = error.retry_after().unwrap();
    assert!(
        after >= Duration::from_secs(110) && after <= Duration::from_secs(120),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_content_filter_finish_is_a_content_filter_error() {
    let server = Server::start().await;
    server.reply(Reply::json(200, completion("", "content_filter")));
    let error = call(&client(&server), request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ContentFilter);
    // The provider billed the call: its usage rides on the error, for the stack to count.
    assert_eq!(
        tollgate_core::BilledUsage::of(&error),
        Some(Usage::new(12, 5))
    );
}

#[tokio::test]
async fn a_stream_flag_is_removed_because_this_client_reads_one_answer() {
    let server = Server::start().await;
    server.reply(Reply::json(200, completion("ok", "length")));
    let mut request = request();
    request.params.set_extra("stream", json!(true));
    request.params.set_extra("user", json!("u-1"));
    let answer = call(&client(&server), request).await.unwrap();
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Length));
    let body = &server.seen()[0].body;
    assert_eq!(body.get("stream"), None);
    assert_eq!(body["user"], "u-1", "other extra fields go through");
}

#[tokio::test]
async fn a_refused_connection_is_connect_and_a_stalled_server_is_timeout() {
    // A port nobody listens on: bind one, note it, close it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = OpenAiCompatible::builder(&format!("http://127.0.0.1:{port}/v1"))
        .build()
        .unwrap();
    let error = call(&refused, request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");

    let server = Server::start().await;
    server.reply(Reply::stall());
    let impatient = OpenAiCompatible::builder(&server.url)
        .timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let error = call(&impatient, request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert_eq!(
        server.seen().len(),
        1,
        "the request reached the server, which never answered"
    );
}

#[test]
fn bad_settings_name_their_field() {
    let path = |result: Result<OpenAiCompatible, tollgate_core::ConfigError>| {
        result.unwrap_err().path().to_owned()
    };
    assert_eq!(
        path(OpenAiCompatible::builder("localhost:8000").build()),
        "base_url"
    );
    assert_eq!(
        path(
            OpenAiCompatible::builder("http://x")
                .timeout(Duration::ZERO)
                .build()
        ),
        "timeout"
    );
    assert_eq!(
        path(
            OpenAiCompatible::builder("http://x")
                .api_key("bad\nkey")
                .build()
        ),
        "api_key"
    );
    assert_eq!(
        path(
            OpenAiCompatible::builder("http://x")
                .header("bad header", "v")
                .build()
        ),
        "headers[0]"
    );
}

fn sse(events: &[serde_json::Value]) -> String {
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

fn event_stream(body: String) -> Reply {
    Reply {
        status: 200,
        headers: vec![
            ("content-type", "text/event-stream".to_owned()),
            ("x-ratelimit-remaining-tokens", "999".to_owned()),
        ],
        body,
        stall: false,
    }
}

#[tokio::test]
async fn a_stream_is_read_event_by_event_and_assembles_into_the_same_answer() {
    let server = Server::start().await;
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| json!({ "model": "gpt-4o-mini-2024-07-18", "choices": [ { "index": 0, "delta": delta, "finish_reason": finish } ] });
    let body = sse(&[
        chunk(json!({ "role": "assistant", "content": "" }), json!(null)),
        chunk(json!({ "content": "Hel" }), json!(null)),
        chunk(json!({ "content": "lo!" }), json!(null)),
        chunk(json!({}), json!("stop")),
        json!({ "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": { "prompt_tokens": 9, "completion_tokens": 2 } }),
    ]);
    let client = client(&server);

    server.reply(event_stream(body.clone()));
    let mut stream = client.stream(request()).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    use tollgate_providers::StreamEvent::Model;
    assert_eq!(
        events,
        [
            Model("gpt-4o-mini-2024-07-18".into()),
            tollgate_providers::StreamEvent::text("Hel"),
            tollgate_providers::StreamEvent::text("lo!"),
            tollgate_providers::StreamEvent::finish(FinishReason::Stop),
            tollgate_providers::StreamEvent::Usage(Usage::new(9, 2)),
        ]
    );
    let seen = &server.seen()[0];
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(seen.headers["accept"], "text/event-stream");

    server.reply(event_stream(body));
    let answer = client
        .stream(request())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(answer.content(), "Hello!");
    assert_eq!(answer.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(answer.usage, Usage::new(9, 2));
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(
        answer
            .extensions
            .get::<RateLimitSnapshot>()
            .unwrap()
            .tokens
            .remaining,
        Some(999)
    );
}

#[tokio::test]
async fn a_stream_fails_before_it_starts_by_status_and_after_by_its_error_event() {
    let server = Server::start().await;
    let client = client(&server);
    server.reply(
        Reply::json(429, json!({ "error": { "message": "slow down" } })).header("retry-after", "2"),
    );
    let error = client.stream(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));

    let body = format!(
        "data: {}\n\ndata: {}\n\n",
        json!({ "choices": [ { "delta": { "content": "partial" } } ] }),
        json!({ "error": { "message": "upstream went away", "type": "server_error" } })
    );
    server.reply(event_stream(body));
    let mut stream = client.stream(request()).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        tollgate_providers::StreamEvent::text("partial")
    );
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.message(), "openai: the upstream failed (mid-stream)");
    assert_eq!(
        error
            .extensions()
            .get::<UpstreamError>()
            .unwrap()
            .error_type
            .as_deref(),
        Some("server_error")
    );
    assert!(stream.next().await.is_none(), "nothing after the error");
}

#[tokio::test]
async fn a_streaming_request_through_the_service_answers_with_the_stream() {
    let server = Server::start().await;
    server.reply(event_stream(sse(&[
        json!({ "model": "m-1", "choices": [ { "delta": { "content": "Hi" }, "finish_reason": "stop" } ] }),
        json!({ "model": "m-1", "choices": [], "usage": { "prompt_tokens": 4, "completion_tokens": 1 } }),
    ])));
    let mut response = call(&client(&server), request().streaming()).await.unwrap();
    assert_eq!(response.content(), "", "the text comes with the stream");
    assert_eq!(
        response
            .extensions
            .get::<RateLimitSnapshot>()
            .unwrap()
            .tokens
            .remaining,
        Some(999)
    );
    let answer = response
        .take_stream()
        .expect("a stream")
        .collect()
        .await
        .unwrap();
    assert_eq!(answer.content(), "Hi");
    assert_eq!(answer.usage, Usage::new(4, 1));
    assert_eq!(server.seen()[0].body["stream"], true);
}

#[test]
fn a_builder_shown_for_debugging_never_shows_its_key() {
    let openai = OpenAiCompatible::builder("http://127.0.0.1:1/v1").api_key("sk-very-secret");
    let anthropic = tollgate_providers::Anthropic::builder("sk-ant-very-secret");
    for shown in [format!("{openai:?}"), format!("{anthropic:?}")] {
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

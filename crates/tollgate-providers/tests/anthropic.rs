//! Anthropic against a real local HTTP server (axum on a free port).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::{Reply, Server};
use tollgate_core::{ErrorKind, FinishReason, LlmRequest, Message, UpstreamError, Usage};
use tollgate_providers::{Anthropic, RateLimitSnapshot};
use tower::ServiceExt;

fn client(server: &Server) -> Anthropic {
    Anthropic::builder("sk-ant-test")
        .base_url(&server.url)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn message(text: &str, stop: &str) -> serde_json::Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [ { "type": "text", "text": text }, { "type": "text", "text": " again" } ],
        "stop_reason": stop, "stop_sequence": null,
        "usage": { "input_tokens": 21, "output_tokens": 7 }
    })
}

/// RFC 3339 for `at`, as Anthropic sends resets.
fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[tokio::test]
async fn the_request_is_mapped_to_the_messages_api_and_the_answer_back() {
    let server = Server::start().await;
    let reset = SystemTime::now() + Duration::from_secs(30);
    server.reply(
        Reply::json(200, message("Hello", "end_turn"))
            .header("request-id", "req_7")
            .header("anthropic-ratelimit-requests-limit", "50")
            .header("anthropic-ratelimit-requests-remaining", "49")
            .header("anthropic-ratelimit-requests-reset", rfc3339(reset))
            .header("anthropic-ratelimit-input-tokens-remaining", "39000")
            .header("anthropic-ratelimit-output-tokens-remaining", "7990"),
    );
    let mut request = LlmRequest::new(
        "claude-sonnet-4-5",
        vec![
            Message::system("Be brief."),
            Message::user("Hi"),
            Message::assistant("Hello."),
            Message::user("Again"),
        ],
    )
    .with_temperature(0.5);
    request.params.stop = vec!["END".into()];
    request.params.seed = Some(7);
    request.params.set_extra("top_k", json!(40));
    let answer = client(&server).oneshot(request).await.unwrap();

    assert_eq!(answer.content(), "Hello again");
    assert_eq!(answer.model, "claude-sonnet-4-5-20250929");
    assert_eq!(answer.usage, Usage::new(21, 7));
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(answer.headers["request-id"], "req_7");
    let snapshot = answer.extensions.get::<RateLimitSnapshot>().unwrap();
    assert_eq!(
        (snapshot.requests.limit, snapshot.requests.remaining),
        (Some(50), Some(49))
    );
    let until = snapshot.requests.reset.unwrap();
    assert!(
        until > Duration::from_secs(20) && until <= Duration::from_secs(30),
        "{until:?}"
    );
    assert_eq!(snapshot.input_tokens.remaining, Some(39_000));
    assert_eq!(snapshot.output_tokens.remaining, Some(7_990));

    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "sk-ant-test");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        seen.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "Be brief.",
            "messages": [
                { "role": "user", "content": "Hi" },
                { "role": "assistant", "content": "Hello." },
                { "role": "user", "content": "Again" }
            ],
            "temperature": 0.5,
            "stop_sequences": ["END"],
            "top_k": 40
        })
    );
}

#[tokio::test]
async fn max_tokens_comes_from_the_request_when_it_sets_one() {
    let server = Server::start().await;
    server.reply(Reply::json(200, message("ok", "max_tokens")));
    let request =
        LlmRequest::new("claude-haiku-4-5", vec![Message::user("Hi")]).with_max_tokens(64);
    let answer = client(&server).oneshot(request).await.unwrap();
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Length));
    assert_eq!(server.seen()[0].body["max_tokens"], 64);
}

#[tokio::test]
async fn overloaded_and_refusals_map_to_their_kinds() {
    let server = Server::start().await;
    let client = client(&server);
    let request = || LlmRequest::new("claude-haiku-4-5", vec![Message::user("Hi")]);
    server.reply(
        Reply::json(
            529,
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
        )
        .header("retry-after", "3"),
    );
    let error = client.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Overloaded);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(
        error.message(),
        "anthropic: the upstream is overloaded (HTTP 529)"
    );
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert_eq!(said.error_type.as_deref(), Some("overloaded_error"));

    // What the upstream said of its key stays out of the message; its error type is kept.
    server.reply(Reply::json(
        401,
        json!({ "type": "error", "error": { "type": "authentication_error", "message": "invalid x-api-key sk-ant-api03-secret" } }),
    ));
    let error = client.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(
        error.message(),
        "anthropic: the upstream refused the credentials it was sent (HTTP 401)"
    );
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert_eq!(
        (said.error_type.as_deref(), said.message.as_deref()),
        (Some("authentication_error"), None)
    );

    server.reply(Reply::json(200, message("", "refusal")));
    let error = client.oneshot(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ContentFilter);
}

#[test]
fn an_empty_key_or_zero_max_tokens_is_refused() {
    assert_eq!(
        Anthropic::builder(" ").build().unwrap_err().path(),
        "api_key"
    );
    assert_eq!(
        Anthropic::builder("k")
            .default_max_tokens(0)
            .build()
            .unwrap_err()
            .path(),
        "default_max_tokens"
    );
}

#[tokio::test]
async fn a_stream_of_messages_api_events_assembles_with_input_and_output_usage() {
    let server = Server::start().await;
    let events = [
        (
            "message_start",
            json!({ "type": "message_start", "message": { "id": "msg_1", "model": "claude-haiku-4-5-20251001", "content": [], "usage": { "input_tokens": 25, "output_tokens": 1 } } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
        ("ping", json!({ "type": "ping" })),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "Hello" } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": " there" } }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        (
            "message_delta",
            json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn" }, "usage": { "output_tokens": 12 } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\r\ndata: {data}\r\n\r\n"))
        .collect();
    server.reply(Reply {
        status: 200,
        headers: vec![("content-type", "text/event-stream".to_owned())],
        body,
        stall: false,
    });
    let request = LlmRequest::new("claude-haiku-4-5", vec![Message::user("Hi")]);
    let answer = client(&server)
        .stream(request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(answer.content(), "Hello there");
    assert_eq!(answer.model, "claude-haiku-4-5-20251001");
    assert_eq!(answer.usage, Usage::new(25, 12));
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(server.seen()[0].body["stream"], true);

    // An overloaded error mid-stream keeps its kind.
    server.reply(Reply {
        status: 200,
        headers: vec![("content-type", "text/event-stream".to_owned())],
        body: format!(
            "event: error\ndata: {}\n\n",
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })
        ),
        stall: false,
    });
    let request = LlmRequest::new("claude-haiku-4-5", vec![Message::user("Hi")]);
    let error = client(&server)
        .stream(request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Overloaded);
}

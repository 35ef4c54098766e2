//! Gemini against a real local HTTP server speaking its documented protocol
//! (<https://ai.google.dev/api/generate-content>, errors as <https://ai.google.dev/gemini-api/docs/troubleshooting>
//! and <https://cloud.google.com/apis/design/errors> describe them): fixtures under
//! `tollgate-wire/tests/fixtures/gemini/`.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Reply, Server};
use tollgate_core::{
    ErrorKind, FinishReason, LlmRequest, Message, Operation, UpstreamError, Usage,
    stream::StreamEvent,
};
use tollgate_providers::Gemini;
use tower::ServiceExt;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tollgate-wire/tests/fixtures/gemini/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap()
}

fn event_stream(body: String) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type", "text/event-stream".to_owned())],
        body,
        stall: false,
    }
}

fn client(server: &Server) -> Gemini {
    Gemini::builder("AIza-test-key")
        .base_url(&server.url)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn ask(model: &str) -> LlmRequest {
    LlmRequest::new(
        model,
        vec![
            Message::system("Be brief."),
            Message::user("Why is the sky blue?"),
        ],
    )
}

#[tokio::test]
async fn a_call_goes_to_generate_content_with_the_key_in_a_header() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("text.json")).header("x-request-id", "g-1"));
    let answer = client(&server)
        .oneshot(
            ask("gemini-2.0-flash")
                .with_temperature(0.0)
                .with_max_tokens(64),
        )
        .await
        .unwrap();
    assert_eq!(
        answer.content(),
        "The sky is blue because air scatters blue light most."
    );
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(answer.usage, Usage::new(9, 12));
    assert_eq!(answer.model, "gemini-2.0-flash");
    assert_eq!(answer.extra["id"], "mC3ZaLCVFIWo1dkPn8OdgQk");
    assert_eq!(answer.headers["x-request-id"], "g-1");

    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(seen.headers["x-goog-api-key"], "AIza-test-key");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(
        seen.body,
        json!({
            "systemInstruction": { "parts": [{ "text": "Be brief." }] },
            "contents": [{ "role": "user", "parts": [{ "text": "Why is the sky blue?" }] }],
            "generationConfig": { "temperature": 0.0, "maxOutputTokens": 64 }
        })
    );
}

#[tokio::test]
async fn tool_calls_come_back_and_their_results_go_out_with_the_signature() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("function_call.json")));
    server.reply(Reply::json(200, json_fixture("text.json")));
    let gemini = client(&server);
    let mut request = LlmRequest::new("gemini-2.5-flash", vec![Message::user("Weather?")]);
    let tools = json!([{ "type": "function", "function": { "name": "get_weather",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } } } } }]);
    request.params.set_extra("tools", tools.clone());
    let answer = gemini.clone().oneshot(request.clone()).await.unwrap();
    assert_eq!(answer.finish_reason(), Some(&FinishReason::ToolCalls));
    let calls = answer.tool_calls();
    assert_eq!(calls[0].id, "call_fc-7Yk2_0_0__thought__CiQB0e2Kb8sig1");
    assert_eq!(calls[1].function.arguments, r#"{"city":"Zürich \"ZH\""}"#);
    assert_eq!(answer.usage, Usage::new(120, 125).with_reasoning(85));

    // The caller answers the calls, as an OpenAI client would.
    let assistant = serde_json::to_value(&answer.choices[0].message).unwrap();
    let mut messages = request.messages.to_vec();
    messages.push(serde_json::from_value(assistant).unwrap());
    for (call, result) in calls.iter().zip(["{\"temp\":21}", "sunny"]) {
        messages.push(
            serde_json::from_value(
                json!({ "role": "tool", "tool_call_id": call.id, "content": result }),
            )
            .unwrap(),
        );
    }
    let mut next = LlmRequest::new("gemini-2.5-flash", messages);
    next.params.set_extra("tools", tools);
    gemini.oneshot(next).await.unwrap();
    let seen = &server.seen()[1];
    assert_eq!(
        seen.body["contents"],
        json!([
            { "role": "user", "parts": [{ "text": "Weather?" }] },
            { "role": "model", "parts": [
                { "text": "Checking both cities." },
                { "functionCall": { "name": "get_weather", "args": { "city": "Paris", "unit": "celsius" } },
                  "thoughtSignature": "CiQB0e2Kb8sig1" },
                { "functionCall": { "name": "get_weather", "args": { "city": "Zürich \"ZH\"" } } }
            ] },
            { "role": "user", "parts": [
                { "functionResponse": { "name": "get_weather", "response": { "temp": 21 } } },
                { "functionResponse": { "name": "get_weather", "response": { "content": "sunny" } } }
            ] }
        ])
    );
}

#[tokio::test]
async fn a_stream_goes_to_stream_generate_content_and_assembles_the_whole_answer() {
    for name in ["text", "function_call", "thinking", "candidates2"] {
        let server = Server::start().await;
        server.reply(event_stream(read(&format!("{name}.sse"))));
        server.reply(Reply::json(200, json_fixture(&format!("{name}.json"))));
        let gemini = client(&server);
        let streamed = gemini
            .stream(ask("gemini-2.5-flash"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let whole = gemini.oneshot(ask("gemini-2.5-flash")).await.unwrap();
        let choices = |answer: &tollgate_core::LlmResponse| {
            answer
                .choices
                .iter()
                .map(|c| {
                    (
                        c.index,
                        c.message.content.clone(),
                        c.message.reasoning.clone(),
                        c.message.tool_calls.clone(),
                        c.finish_reason.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(choices(&streamed), choices(&whole), "{name}");
        assert_eq!(streamed.usage, whole.usage, "{name}");
        assert_eq!(
            server.seen()[0].path,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(server.seen()[0].headers["x-goog-api-key"], "AIza-test-key");
    }
}

#[tokio::test]
async fn a_streaming_call_through_a_stack_ends_with_its_finish_and_a_cut_stream_fails() {
    let server = Server::start().await;
    server.reply(event_stream(read("thinking.sse")));
    let mut response = client(&server)
        .oneshot(ask("gemini-2.5-pro").streaming())
        .await
        .unwrap();
    let mut stream = response.take_stream().unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    assert_eq!(events[0], StreamEvent::Model("gemini-2.5-pro".into()));
    assert_eq!(
        events.last(),
        Some(&StreamEvent::finish(FinishReason::Stop))
    );
    assert!(events.contains(&StreamEvent::ReasoningSignature {
        choice: 0,
        signature: "EhsKGQHSig2".into()
    }));

    let server = Server::start().await;
    let text = read("text.sse");
    let first = text.split_inclusive("\r\n\r\n").next().unwrap().to_owned();
    server.reply(event_stream(first));
    let error = client(&server)
        .stream(ask("m"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert!(
        error
            .message()
            .contains("without a finishReason for every candidate")
    );
}

#[tokio::test]
async fn safety_stops_and_blocked_prompts_are_content_filter_errors() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("safety.json")));
    server.reply(Reply::json(200, json_fixture("blocked.json")));
    server.reply(event_stream(read("blocked.sse")));
    server.reply(event_stream(read("safety.sse")));
    let gemini = client(&server);
    for _ in 0..2 {
        let error = gemini.clone().oneshot(ask("m")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ContentFilter);
    }
    for _ in 0..2 {
        let error = gemini
            .stream(ask("m"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ContentFilter);
    }
}

fn google_error(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!([{ "error": { "code": code, "message": message, "status": status, "details": details } }])
        [0]
    .clone()
}

#[tokio::test]
async fn errors_map_to_kinds_with_googles_retry_delay() {
    let server = Server::start().await;
    let retry_info = json!([
        { "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{ "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests" }] },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s" }
    ]);
    let exhausted = "You exceeded your current quota, please check your plan and billing details.";
    server.reply(Reply::json(
        429,
        google_error(429, "RESOURCE_EXHAUSTED", exhausted, retry_info.clone()),
    ));
    server.reply(
        Reply::json(
            429,
            google_error(429, "RESOURCE_EXHAUSTED", exhausted, retry_info),
        )
        .header("retry-after", "3"),
    );
    let gemini = client(&server);
    let error = gemini.clone().oneshot(ask("m")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(17)));
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert_eq!(said.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
    // A Retry-After header wins.
    let error = gemini.clone().oneshot(ask("m")).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));

    let cases = [
        (
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            ErrorKind::Overloaded,
        ),
        (
            500,
            "INTERNAL",
            "An internal error has occurred.",
            ErrorKind::Server,
        ),
        (
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            ErrorKind::Auth,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers. key=AIza-test-key",
            ErrorKind::Auth,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            ErrorKind::InvalidRequest,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "The request was blocked because it violates the safety policy.",
            ErrorKind::ContentFilter,
        ),
    ];
    for (status, name, message, kind) in cases {
        server.reply(Reply::json(
            status,
            google_error(status, name, message, json!([])),
        ));
        let error = gemini.clone().oneshot(ask("m")).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{status} {name}");
        assert!(
            !error.message().contains("AIza-test-key"),
            "{}",
            error.message()
        );
        assert!(
            !error.message().contains(&server.url),
            "{}",
            error.message()
        );
    }
    // A dead key, as Google says it: a 400 whose ErrorInfo names the key.
    // https://cloud.google.com/apis/design/errors#error_info
    server.reply(Reply::json(
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            "API key expired. Please renew the API key.",
            json!([{ "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_EXPIRED", "domain": "googleapis.com" }]),
        ),
    ));
    let error = gemini.clone().oneshot(ask("m")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    // A stream's refusal is read the same way.
    server.reply(Reply::json(
        503,
        google_error(503, "UNAVAILABLE", "overloaded", json!([])),
    ));
    assert_eq!(
        gemini.stream(ask("m")).await.unwrap_err().kind(),
        ErrorKind::Overloaded
    );
}

#[tokio::test]
async fn a_prompt_past_the_input_limit_is_a_context_window_refusal() {
    let server = Server::start().await;
    let message =
        "The input token count (1205838) exceeds the maximum number of tokens allowed (1048576).";
    server.reply(Reply::json(
        400,
        google_error(400, "INVALID_ARGUMENT", message, json!([])),
    ));
    let error = client(&server).oneshot(ask("m")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ContextWindow);
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert!(said.context_window, "{said:?} {}", error.message());
    assert_eq!(said.message.as_deref(), Some(message));
    assert!(
        error
            .message()
            .contains("too long for the model's context window"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn images_and_structured_output_reach_gemini_in_its_shape() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("text.json")));
    let user: Message = serde_json::from_value(json!({ "role": "user", "content": [
        { "type": "text", "text": "What is this?" },
        { "type": "image_url", "image_url": { "url": "data:image/jpeg;base64,/9j/4AAQ" } }
    ] }))
    .unwrap();
    let mut request = LlmRequest::new("gemini-2.5-flash", vec![user]);
    request.params.set_extra(
        "response_format",
        json!({ "type": "json_schema", "json_schema": { "name": "thing", "strict": true, "schema": {
            "type": "object", "properties": { "name": { "type": "string" } },
            "required": ["name"], "additionalProperties": false } } }),
    );
    client(&server).oneshot(request).await.unwrap();
    let body = &server.seen()[0].body;
    assert_eq!(
        body["contents"][0]["parts"][1],
        json!({ "inlineData": { "mimeType": "image/jpeg", "data": "/9j/4AAQ" } })
    );
    assert_eq!(
        body["generationConfig"],
        json!({ "responseMimeType": "application/json", "responseSchema": {
            "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] } })
    );
}

#[tokio::test]
async fn what_gemini_cannot_take_is_refused_before_anything_is_sent() {
    let server = Server::start().await;
    let mut request = ask("gemini-2.5-flash");
    request
        .params
        .set_extra("logit_bias", json!({ "50256": -100 }));
    let error = client(&server).oneshot(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(
        error.message().starts_with("gemini: logit_bias:"),
        "{}",
        error.message()
    );
    let error = client(&server)
        .oneshot(ask("../../v1/secrets"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn embeddings_go_to_batch_embed_contents() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("embeddings.json")));
    let mut request = LlmRequest::new("gemini-embedding-001", Vec::new());
    request.meta.operation = Operation::Embeddings;
    request
        .params
        .set_extra("input", json!(["first", "second"]));
    let answer = client(&server).oneshot(request).await.unwrap();
    assert_eq!(
        answer.extra["data"][1]["embedding"],
        json!([0.002, 0.017, -0.029])
    );
    // Google reports no tokens for it: the input is estimated (5 and 6 characters, 2 tokens
    // each), never counted as free.
    assert_eq!(answer.usage.input_tokens, 4);
    let seen = &server.seen()[0];
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        seen.body["requests"][1]["content"],
        json!({ "parts": [{ "text": "second" }] })
    );
}

#[test]
fn the_builder_checks_its_settings_and_hides_the_key() {
    assert_eq!(Gemini::builder(" ").build().unwrap_err().path(), "api_key");
    let error = Gemini::builder("k")
        .base_url("ftp://x")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "base_url");
    let builder = Gemini::builder("AIza-secret");
    assert!(!format!("{builder:?}").contains("AIza-secret"));
    let client = builder.build().unwrap();
    assert!(!format!("{client:?}").contains("AIza-secret"));
}

//! OpenAI's Responses API against a real local server: a call that came in it passes through to
//! a server that serves it, whole and streamed, byte for byte both ways, with usage read; errors
//! map as for chat; and every provider that would translate it refuses a built-in tool by name
//! before anything is sent.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use support::{Reply, Server};
use tollgate_core::{ErrorKind, FinishReason, LlmRequest, ToolCall, Usage, stream::StreamEvent};
use tollgate_providers::{Anthropic, Bedrock, Gemini, OpenAiCompatible};
use tollgate_wire::openai::responses::{self, ResponsesAnswer};
use tower::ServiceExt;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tollgate-wire/tests/fixtures/responses/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn raw(status: u16, content_type: &str, body: String) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", content_type.to_owned())],
        body,
        stall: false,
    }
}

const CALL: &[u8] = br#"{"model": "agent-model", "input": [{"role": "user", "content": "Weather in Boston?"}], "tools": [{"type": "function", "name": "get_current_weather", "parameters": {"type": "object"}}], "include": ["reasoning.encrypted_content"], "store": false}"#;

fn call(stream: bool) -> LlmRequest {
    let mut request =
        responses::decode_request(Bytes::from_static(CALL), &Default::default()).unwrap();
    // The stack's settled model.
    request.model = "gpt-4.1".into();
    request.meta.stream = stream;
    request
}

fn serving(server: &Server) -> OpenAiCompatible {
    OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .api_key("sk-test")
        .responses_api(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_whole_call_passes_through_byte_for_byte_and_its_usage_is_read() {
    let server = Server::start().await;
    let answer_body = fixture("function_call.json");
    server.reply(raw(200, "application/json", answer_body.clone()));
    let answer = serving(&server).oneshot(call(false)).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/responses");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-test");
    assert_eq!(
        seen[0].raw,
        String::from_utf8_lossy(CALL).replace("agent-model", "gpt-4.1")
    );
    let ResponsesAnswer(passed) = answer.extensions.get::<ResponsesAnswer>().unwrap();
    assert_eq!(passed, answer_body.as_bytes());
    assert_eq!(
        answer.usage,
        Usage::new(291, 23).with_cached_input(128).with_reasoning(7)
    );
    assert_eq!(
        answer.tool_calls(),
        [ToolCall::function(
            "call_unLAR8MvFNptuiZK6K6HCy5k",
            "get_current_weather",
            "{\"location\":\"Boston, MA\",\"unit\":\"celsius\"}"
        )]
    );
    assert_eq!(answer.finish_reason(), Some(&FinishReason::ToolCalls));
}

#[tokio::test]
async fn a_stream_passes_through_event_for_event_and_its_usage_is_read() {
    let server = Server::start().await;
    let sse = fixture("text.sse");
    server.reply(raw(200, "text/event-stream", sse.clone()));
    let mut stream = serving(&server).stream(call(true)).await.unwrap();
    let mut passed = Vec::new();
    let mut typed = Vec::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Verbatim(raw) => tollgate_wire::sse::write_verbatim(&mut passed, &raw),
            event => typed.push(event),
        }
    }
    assert_eq!(String::from_utf8(passed).unwrap(), sse);
    assert!(typed.contains(&StreamEvent::Usage(Usage::new(37, 11))));
    assert!(typed.contains(&StreamEvent::text(" there!")));
    let seen = server.seen();
    assert_eq!(seen[0].path, "/v1/responses");
    assert_eq!(seen[0].body["stream"], true);
    assert_eq!(seen[0].body["model"], "gpt-4.1");
}

#[tokio::test]
async fn an_upstream_error_maps_as_for_chat() {
    let server = Server::start().await;
    let limited = json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
    server.reply(Reply::json(429, limited).header("retry-after", "7"));
    let error = serving(&server).oneshot(call(false)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));

    let bad = json!({"error": {"message": "Unknown parameter: 'x'.", "type": "invalid_request_error", "param": "x", "code": "unknown_parameter"}});
    server.reply(Reply::json(400, bad));
    let error = serving(&server).oneshot(call(true)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);

    // A stream that fails after it began.
    let failed = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\"}}\n\nevent: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
    server.reply(raw(200, "text/event-stream", failed.to_owned()));
    let mut stream = serving(&server).stream(call(true)).await.unwrap();
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event);
    }
    assert_eq!(last.unwrap().unwrap_err().kind(), ErrorKind::Server);
}

#[tokio::test]
async fn a_server_that_does_not_serve_it_gets_chat_completions() {
    let server = Server::start().await;
    let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sunny."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}});
    server.reply(Reply::json(200, chat));
    let client = OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .build()
        .unwrap();
    let answer = client.oneshot(call(false)).await.unwrap();
    assert_eq!(answer.content(), "Sunny.");
    assert!(answer.extensions.get::<ResponsesAnswer>().is_none());
    let seen = server.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].body,
        json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "Weather in Boston?"}],
               "tools": [{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}]})
    );
}

#[tokio::test]
async fn every_translating_provider_refuses_a_built_in_tool_before_sending() {
    let body = br#"{"model": "m", "input": "news?", "tools": [{"type": "web_search_preview"}]}"#;
    let hosted =
        || responses::decode_request(Bytes::from_static(body), &Default::default()).unwrap();
    let server = Server::start().await;
    let chat = OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .name("vllm")
        .build()
        .unwrap();
    let anthropic = Anthropic::builder("sk-ant")
        .base_url(&server.url)
        .build()
        .unwrap();
    let gemini = Gemini::builder("AIza-test")
        .base_url(&server.url)
        .build()
        .unwrap();
    let bedrock = Bedrock::builder("us-east-1")
        .credentials("AKIDEXAMPLE", "secret")
        .base_url(&server.url)
        .build()
        .unwrap();
    for stream in [false, true] {
        let mut request = hosted();
        request.meta.stream = stream;
        let refusals = [
            ("vllm", chat.clone().oneshot(request.clone()).await),
            (
                "anthropic",
                anthropic.clone().oneshot(request.clone()).await,
            ),
            ("gemini", gemini.clone().oneshot(request.clone()).await),
            ("bedrock", bedrock.clone().oneshot(request.clone()).await),
        ];
        for (name, refused) in refusals {
            let error = refused.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{name}");
            assert_eq!(
                error.message(),
                format!(
                    "{name}: the built-in tool `web_search_preview` runs only at OpenAI's Responses API"
                )
            );
        }
    }
    assert!(server.seen().is_empty());
    // A server that serves the Responses API runs it.
    server.reply(raw(200, "application/json", fixture("function_call.json")));
    serving(&server).oneshot(hosted()).await.unwrap();
    assert_eq!(server.seen()[0].path, "/v1/responses");
}

#[test]
fn responses_api_is_not_for_azure() {
    let error = OpenAiCompatible::azure("https://r.openai.azure.com", "d", "2024-10-21")
        .api_key("k")
        .responses_api(true)
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "responses_api");
}

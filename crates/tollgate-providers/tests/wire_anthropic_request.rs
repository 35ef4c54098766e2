//! An OpenAI-shaped request with tools, tool turns and images goes to the Messages API as
//! Anthropic documents it (https://docs.anthropic.com/en/api/messages,
//! https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use), and what
//! the API cannot do is refused by name.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use serde_json::{Value, json};
use support::{Reply, Server};
use tollgate_core::{ErrorKind, LlmRequest};
use tollgate_providers::Anthropic;
use tower::ServiceExt;

fn client(server: &Server) -> Anthropic {
    Anthropic::builder("sk-ant-test")
        .base_url(&server.url)
        .build()
        .unwrap()
}

fn answer() -> Value {
    json!({ "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{ "type": "text", "text": "It is 18°C in Paris." }], "stop_reason": "end_turn",
            "usage": { "input_tokens": 10, "output_tokens": 5 } })
}

/// The request an OpenAI client sends for the second turn of a tool call, with an image.
fn tool_turn() -> LlmRequest {
    serde_json::from_value(json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": [
                { "type": "text", "text": "Weather where this photo was taken?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                { "type": "image_url", "image_url": { "url": "https://example.com/eiffel.jpg" } }
            ] },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "get_time", "arguments": "{}" } }
            ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "18°C" },
            { "role": "tool", "tool_call_id": "call_2", "content": "14:00" }
        ],
        "tools": [{ "type": "function", "function": { "name": "get_weather", "description": "Weather by city",
                    "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } }],
        "tool_choice": { "type": "function", "function": { "name": "get_weather" } },
        "parallel_tool_calls": false,
        "user": "u-42",
        "max_tokens": 100
    }))
    .unwrap()
}

#[tokio::test]
async fn tools_tool_turns_and_images_map_to_the_messages_api() {
    let server = Server::start().await;
    server.reply(Reply::json(200, answer()));
    client(&server).oneshot(tool_turn()).await.unwrap();
    let body = &server.seen()[0].body;
    assert_eq!(
        *body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "system": "You are terse.",
            "messages": [
                { "role": "user", "content": [
                    { "type": "text", "text": "Weather where this photo was taken?" },
                    { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
                    { "type": "image", "source": { "type": "url", "url": "https://example.com/eiffel.jpg" } }
                ] },
                { "role": "assistant", "content": [
                    { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                    { "type": "tool_use", "id": "call_2", "name": "get_time", "input": {} }
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "call_1", "content": "18°C" },
                    { "type": "tool_result", "tool_use_id": "call_2", "content": "14:00" }
                ] }
            ],
            "tools": [{ "name": "get_weather", "description": "Weather by city",
                        "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } }],
            "tool_choice": { "type": "tool", "name": "get_weather", "disable_parallel_tool_use": true },
            "metadata": { "user_id": "u-42" }
        })
    );
}

#[tokio::test]
async fn what_the_messages_api_cannot_do_is_refused_by_name_before_any_call() {
    let server = Server::start().await;
    let refused = |extra: Value| {
        let mut request = tool_turn();
        for (key, value) in extra.as_object().unwrap() {
            request.params.set_extra(key.clone(), value.clone());
        }
        client(&server).oneshot(request)
    };
    let schema = json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "x", "schema": {} } } });
    let error = refused(schema).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.to_string().contains("response_format"), "{error}");
    for (n, best_of, top_logprobs) in [
        (Some(2), None, None),
        (None, Some(3), None),
        (None, None, Some(1)),
    ] {
        let mut asks = tool_turn();
        (asks.params.n, asks.params.best_of, asks.params.top_logprobs) = (n, best_of, top_logprobs);
        let error = client(&server).oneshot(asks).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        let named = if top_logprobs.is_some() {
            "top_logprobs"
        } else {
            "n (and best_of) must be 1"
        };
        assert!(error.to_string().contains(named), "{error}");
    }
    assert_eq!(
        refused(json!({ "tool_choice": "sometimes" }))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );
    assert!(server.seen().is_empty(), "nothing was sent");

    // A text response_format asks for nothing Anthropic lacks; `required` is Anthropic's `any`.
    server.reply(Reply::json(200, answer()));
    refused(json!({ "response_format": { "type": "text" }, "tool_choice": "required", "parallel_tool_calls": true }))
        .await
        .unwrap();
    let body = &server.seen()[0].body;
    assert_eq!(body["tool_choice"], json!({ "type": "any" }));
    assert!(body.get("response_format").is_none());
}

// https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#extended-thinking-with-tool-use
#[tokio::test]
async fn signed_reasoning_goes_back_as_a_thinking_block_before_the_tool_calls() {
    let server = Server::start().await;
    server.reply(Reply::json(200, answer()));
    let request: LlmRequest = serde_json::from_value(json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            { "role": "user", "content": "Weather in Paris?" },
            { "role": "assistant", "content": null, "reasoning_content": "I should call the tool.",
              "reasoning_signature": "sig-1",
              "tool_calls": [{ "id": "toolu_1", "type": "function", "function": { "name": "get_weather", "arguments": "{}" } }] },
            { "role": "tool", "tool_call_id": "toolu_1", "content": "18°C" }
        ]
    }))
    .unwrap();
    client(&server).oneshot(request).await.unwrap();
    assert_eq!(
        server.seen()[0].body["messages"][1]["content"],
        json!([
            { "type": "thinking", "thinking": "I should call the tool.", "signature": "sig-1" },
            { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {} }
        ])
    );
}

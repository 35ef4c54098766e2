//! The Anthropic front door (`/v1/messages`) through the real binary, served by an OpenAI-compatible
//! upstream: the request reaches it in OpenAI's shape and the answer comes back in Anthropic's.

mod support;

use serde_json::{Value, json};
use support::*;

async fn messages(gateway: &GatewayProcess, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", gateway.url))
        .header("x-api-key", ALICE)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_with_tools_is_translated_both_ways() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    let mut sent = answer("");
    sent["choices"][0] = json!({
        "index": 0,
        "message": {
            "role": "assistant", "content": "Let me look.",
            "tool_calls": [{ "id": "call_2", "type": "function",
                             "function": { "name": "weather", "arguments": "{\"city\":\"Oslo\"}" } }]
        },
        "finish_reason": "tool_calls"
    });
    sent["usage"] = json!({
        "prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
        "prompt_tokens_details": { "cached_tokens": 20 }
    });
    upstream.push(Reply::Json(200, sent, vec![]));
    let request = json!({
        "model": "default",
        "max_tokens": 300,
        "system": "Be brief.",
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "top_k": 5,
        "tools": [{ "name": "weather", "description": "Weather now",
                    "input_schema": { "type": "object", "properties": { "city": { "type": "string" } } } }],
        "tool_choice": { "type": "any" },
        "messages": [
            { "role": "user", "content": "Weather in Paris, then Oslo?" },
            { "role": "assistant", "content": [
                { "type": "text", "text": "Checking." },
                { "type": "tool_use", "id": "call_1", "name": "weather", "input": { "city": "Paris" } }
            ] },
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "call_1", "content": "12 C, rain" },
                { "type": "text", "text": "Now Oslo." }
            ] }
        ]
    });
    let response = messages(&gateway, &request).await;
    assert_eq!(response.status(), 200);
    let got: Value = response.json().await.unwrap();
    assert_eq!(
        got,
        json!({
            "id": "chatcmpl-upstream",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [
                { "type": "text", "text": "Let me look." },
                { "type": "tool_use", "id": "call_2", "name": "weather", "input": { "city": "Oslo" } }
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": { "input_tokens": 10, "cache_creation_input_tokens": 0,
                       "cache_read_input_tokens": 20, "output_tokens": 9 }
        })
    );

    let seen = &upstream.bodies()[0];
    assert_eq!(
        seen["messages"],
        json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Weather in Paris, then Oslo?" },
            { "role": "assistant", "content": "Checking.", "tool_calls": [
                { "id": "call_1", "type": "function",
                  "function": { "name": "weather", "arguments": "{\"city\":\"Paris\"}" } }
            ] },
            { "role": "tool", "content": "12 C, rain", "tool_call_id": "call_1" },
            { "role": "user", "content": [{ "type": "text", "text": "Now Oslo." }] }
        ])
    );
    assert_eq!(seen["tools"][0]["function"]["name"], "weather");
    assert_eq!(
        seen["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(seen["tool_choice"], "required");
    assert_eq!(
        (seen["max_tokens"].clone(), seen["temperature"].clone()),
        (json!(300), json!(0.5))
    );
    assert_eq!(seen["stop"], json!(["END"]));
    // What only the Messages API means never reaches a chat-completions server, which refuses
    // arguments it does not know.
    assert!(seen.get("top_k").is_none(), "{seen}");
}

#[tokio::test]
async fn a_message_stream_comes_back_as_anthropic_events() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    upstream.push(Reply::Stream {
        chunks: vec![
            chunk(
                json!({ "role": "assistant", "reasoning_content": "hmm" }),
                None,
            ),
            chunk(json!({ "content": "Hi" }), None),
            chunk(json!({ "content": " there" }), None),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "call_5", "type": "function",
                        "function": { "name": "f", "arguments": "{}" } }] }),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(12, 7),
        ],
        done: true,
    });
    let body = json!({ "model": "default", "max_tokens": 50, "stream": true,
                       "messages": [{ "role": "user", "content": "hi" }] });
    let response = messages(&gateway, &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start", // thinking
            "content_block_delta",
            "content_block_stop",
            "content_block_start", // text
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start", // tool_use
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(events[0].1["message"]["model"], "up-model");
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        events[2].1["delta"],
        json!({ "type": "thinking_delta", "thinking": "hmm" })
    );
    assert_eq!(
        events[5].1["delta"],
        json!({ "type": "text_delta", "text": "Hi" })
    );
    assert_eq!(events[5].1["index"], 1);
    assert_eq!(
        events[8].1["content_block"],
        json!({ "type": "tool_use", "id": "call_5", "name": "f", "input": {} })
    );
    assert_eq!(
        events[9].1["delta"],
        json!({ "type": "input_json_delta", "partial_json": "{}" })
    );
    assert_eq!(events[11].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[11].1["usage"]["output_tokens"], 7);
    assert_eq!(events[11].1["usage"]["input_tokens"], 12);
}

#[tokio::test]
async fn a_malformed_message_names_its_field() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&config(&upstream, "")).await;
    for (body, field) in [
        (
            json!({ "model": "default", "messages": [{ "role": "user", "content": "hi" }] }),
            "max_tokens",
        ),
        (
            json!({ "model": "default", "max_tokens": 5, "messages": [{ "role": "robot", "content": "hi" }] }),
            "messages[0].role",
        ),
        (
            json!({ "model": "default", "max_tokens": 5, "messages": [] }),
            "messages",
        ),
        (
            json!({ "model": "default", "max_tokens": 5, "messages": [{ "role": "user", "content": "hi" }],
                 "tool_choice": { "type": "sometimes" } }),
            "tool_choice.type",
        ),
    ] {
        let response = messages(&gateway, &body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{field}: {message}");
    }
    assert_eq!(upstream.calls(), 0);
}

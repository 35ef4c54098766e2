//! Streams lose nothing either: each SSE fixture under `fixtures/` (see its README for the API
//! reference pages) is served by a real local HTTP server, and the stream assembles into the
//! answer the same call returns unstreamed. Anthropic answers come back in the OpenAI shape with
//! the exact tool calls and usage, streamed or not.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use serde_json::{Value, json};
use support::{Reply, Server};
use tollgate_core::{Choice, LlmRequest, LlmResponse, Message, Usage};
use tollgate_providers::{Anthropic, OpenAiCompatible};
use tower::ServiceExt;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tollgate-wire/tests/fixtures/{path}",
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

fn ask() -> LlmRequest {
    LlmRequest::new("m", vec![Message::user("hi")])
}

fn openai(server: &Server) -> OpenAiCompatible {
    OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .build()
        .unwrap()
}

fn anthropic(server: &Server) -> Anthropic {
    Anthropic::builder("sk-ant-test")
        .base_url(&server.url)
        .build()
        .unwrap()
}

/// The answer a stream that opened assembles into.
async fn collected(
    opened: impl std::future::Future<
        Output = Result<tollgate_providers::ChatStream, tollgate_core::LlmError>,
    >,
) -> LlmResponse {
    opened.await.unwrap().collect().await.unwrap()
}

/// What a choice says, without the fields only one of the two forms carries (`annotations`,
/// `logprobs`: a stream carries them per chunk, not per answer).
fn said(choices: &[Choice]) -> Vec<Value> {
    choices
        .iter()
        .map(|c| {
            let m = &c.message;
            let calls: Vec<_> = m
                .tool_calls
                .iter()
                .map(|t| (&t.id, &t.kind, &t.function.name, &t.function.arguments))
                .collect();
            json!([
                c.index,
                m.content,
                m.refusal,
                m.reasoning,
                calls,
                c.finish_reason.as_ref().map(|r| r.as_str())
            ])
        })
        .collect()
}

// https://platform.openai.com/docs/api-reference/chat-streaming, https://platform.openai.com/docs/guides/function-calling#streaming
#[tokio::test]
async fn every_openai_stream_assembles_into_the_unstreamed_answer() {
    for name in [
        "tool_call",
        "parallel_tool_calls",
        "n2",
        "refusal",
        "reasoning_content_vllm",
    ] {
        let server = Server::start().await;
        server.reply(Reply::json(
            200,
            json_fixture(&format!("openai/{name}.json")),
        ));
        server.reply(event_stream(read(&format!("openai/{name}.sse"))));
        let whole = openai(&server).oneshot(ask()).await.unwrap();
        let streamed = collected(openai(&server).stream(ask())).await;
        assert_eq!(said(&streamed.choices), said(&whole.choices), "{name}");
        assert_eq!(streamed.usage, whole.usage, "{name}");
        assert_eq!(streamed.model, whole.model, "{name}");
        for field in ["id", "object", "created", "system_fingerprint"] {
            assert_eq!(
                streamed.extra.get(field),
                whole.extra.get(field),
                "{name}: {field}"
            );
        }
    }
}

/// The OpenAI shape of an answer, less the fields a test does not pin.
fn openai_shape(answer: &LlmResponse) -> Value {
    serde_json::to_value(answer).unwrap()
}

// https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview, https://docs.anthropic.com/en/api/messages-streaming
#[tokio::test]
async fn an_anthropic_tool_use_comes_back_as_openai_tool_calls_streamed_or_not() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("anthropic/tool_use.json")));
    server.reply(event_stream(read("anthropic/tool_use.sse")));
    let whole = anthropic(&server).oneshot(ask()).await.unwrap();
    assert_eq!(
        openai_shape(&whole),
        json!({
            "id": "msg_01Aq9w938a90dw8q",
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "I'll check the weather in San Francisco.",
                    "tool_calls": [{
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "type": "function",
                        "function": { "name": "get_weather", "arguments": r#"{"location":"San Francisco, CA","unit":"celsius"}"# }
                    }]
                }
            }],
            "usage": { "prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561 }
        })
    );
    let streamed = collected(anthropic(&server).stream(ask())).await;
    assert_eq!(streamed.content(), whole.content());
    assert_eq!(streamed.finish_reason(), whole.finish_reason());
    assert_eq!(streamed.usage, whole.usage);
    let [call] = streamed.tool_calls() else {
        panic!("one call")
    };
    assert_eq!(
        (call.id.as_str(), call.function.name.as_str()),
        ("toolu_01A09q90qw90lq917835lq9", "get_weather")
    );
    // Anthropic streams its own JSON text; unstreamed, tollgate writes the input compactly: the
    // same JSON value either way.
    let value = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(
        value(&call.function.arguments),
        value(&whole.tool_calls()[0].function.arguments)
    );
}

// https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
#[tokio::test]
async fn anthropic_thinking_comes_back_as_reasoning_streamed_or_not() {
    let server = Server::start().await;
    server.reply(Reply::json(200, json_fixture("anthropic/thinking.json")));
    server.reply(event_stream(read("anthropic/thinking.sse")));
    let whole = anthropic(&server).oneshot(ask()).await.unwrap();
    let message = &whole.choices[0].message;
    assert_eq!(
        message.reasoning.as_deref(),
        Some("Let me analyze this step by step. 27 * 453 = 12231.")
    );
    assert_eq!(message.content.as_deref(), Some("27 × 453 = 12,231."));
    assert_eq!(
        openai_shape(&whole)["choices"][0]["message"]["reasoning_content"],
        message.reasoning.as_deref().unwrap()
    );
    let streamed = collected(anthropic(&server).stream(ask())).await;
    assert_eq!(said(&streamed.choices), said(&whole.choices));
    assert_eq!(streamed.usage, whole.usage);
}

// https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance
#[tokio::test]
async fn anthropic_cache_tokens_are_counted_into_the_prompt_and_apart() {
    let server = Server::start().await;
    for name in ["cache_usage", "cache_write"] {
        server.reply(Reply::json(
            200,
            json_fixture(&format!("anthropic/{name}.json")),
        ));
    }
    server.reply(event_stream(read("anthropic/cache_usage.sse")));
    let read_hit = anthropic(&server).oneshot(ask()).await.unwrap();
    assert_eq!(
        read_hit.usage,
        Usage::new(1_200, 50).with_cached_input(1_000)
    );
    assert_eq!(
        openai_shape(&read_hit)["usage"],
        json!({ "prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250,
                "prompt_tokens_details": { "cached_tokens": 1000 } })
    );
    let written = anthropic(&server).oneshot(ask()).await.unwrap();
    assert_eq!(written.usage, Usage::new(1_200, 50).with_cache_write(1_000));
    assert_eq!(
        openai_shape(&written)["usage"]["cache_creation_input_tokens"],
        1000
    );
    let streamed = collected(anthropic(&server).stream(ask())).await;
    assert_eq!(streamed.usage, read_hit.usage);
    assert_eq!(streamed.content(), read_hit.content());
}

/// The events of a stream written back as OpenAI chunks (what a gateway sends an OpenAI client)
/// read as the same answer, whichever provider the stream came from.
#[tokio::test]
async fn events_written_as_openai_chunks_read_back_as_the_same_answer() {
    use tollgate_core::stream::StreamEvent;
    use tollgate_wire::openai::chat::ChunkWriter;

    let sources = [
        ("openai/tool_call.sse", false),
        ("openai/parallel_tool_calls.sse", false),
        ("openai/n2.sse", false),
        ("openai/refusal.sse", false),
        ("openai/reasoning_content_vllm.sse", false),
        ("anthropic/tool_use.sse", true),
        ("anthropic/thinking.sse", true),
        ("anthropic/cache_usage.sse", true),
    ];
    for (path, from_anthropic) in sources {
        let server = Server::start().await;
        server.reply(event_stream(read(path)));
        let mut source = if from_anthropic {
            anthropic(&server).stream(ask()).await.unwrap()
        } else {
            openai(&server).stream(ask()).await.unwrap()
        };
        let mut events: Vec<StreamEvent> = Vec::new();
        while let Some(event) = source.next().await {
            events.push(event.unwrap());
        }
        let original =
            tollgate_core::stream::LlmStream::from_events(events.clone().into_iter().map(Ok))
                .collect()
                .await
                .unwrap();

        for include_usage in [true, false] {
            let mut writer = ChunkWriter::new(include_usage);
            let mut body = String::new();
            for event in &events {
                for chunk in writer.chunks(event) {
                    body.push_str(&format!("data: {chunk}\n\n"));
                }
            }
            body.push_str("data: [DONE]\n\n");
            assert_eq!(body.contains("\"usage\""), include_usage, "{path}");
            server.reply(event_stream(body));
            let again = collected(openai(&server).stream(ask())).await;
            assert_eq!(said(&again.choices), said(&original.choices), "{path}");
            assert_eq!(again.model, original.model, "{path}");
            assert_eq!(again.extra.get("id"), original.extra.get("id"), "{path}");
            let signature = |answer: &LlmResponse| {
                answer.choices[0]
                    .message
                    .extra
                    .get(tollgate_core::REASONING_SIGNATURE)
                    .cloned()
            };
            assert_eq!(signature(&again), signature(&original), "{path}");
            if include_usage {
                assert_eq!(again.usage, original.usage, "{path}");
            }
        }
    }
}

//! Bedrock's ConverseStream (AWS's binary event stream, framed by the Python test server by the
//! published spec) and InvokeModel embeddings, against the server that checks every signature
//! with botocore (`tests/bedrock_server.py`).

mod bedrock_support;

use std::time::Duration;

use bedrock_support::{ACCESS_KEY, REGION, SECRET, Server, start};
use serde_json::{Value, json};
use tollgate_core::{
    ErrorKind, FinishReason, LlmRequest, Message, Operation, UpstreamError, Usage,
    stream::{StreamEvent, ToolCallDelta},
};
use tollgate_providers::Bedrock;
use tower::ServiceExt;

const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";

fn client(server: &Server) -> Bedrock {
    Bedrock::builder(REGION)
        .credentials(ACCESS_KEY, SECRET)
        .base_url(&server.url)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A text stream as the ConverseStream reference lists its events (Bedrock pads each payload
/// with a `p` field of filler).
/// <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>
fn text_events() -> Value {
    json!([
        ["messageStart", { "role": "assistant", "p": "abcdefghijklmn" }],
        ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "text": "Hello" }, "p": "abcd" }],
        ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "text": ", world" } }],
        ["contentBlockStop", { "contentBlockIndex": 0 }],
        ["messageStop", { "stopReason": "end_turn" }],
        ["metadata", { "usage": { "inputTokens": 12, "outputTokens": 4, "totalTokens": 16 },
                       "metrics": { "latencyMs": 410 } }]
    ])
}

async fn events(bedrock: &Bedrock, request: LlmRequest) -> Vec<Result<StreamEvent, ErrorKind>> {
    let mut stream = bedrock.stream(request).await.unwrap();
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        out.push(event.map_err(|e| e.kind()));
    }
    out
}

#[tokio::test]
async fn a_stream_is_read_from_the_event_stream_to_its_end() {
    let Some(server) = start(None, None) else {
        return;
    };
    server.script(json!({ "events": text_events() })).await;
    let bedrock = client(&server);
    let request = LlmRequest::new(CLAUDE, vec![Message::user("Hi")]).streaming();
    let got = events(&bedrock, request).await;
    let mut meta = tollgate_core::JsonMap::new();
    meta.insert("metrics".into(), json!({ "latencyMs": 410 }));
    assert_eq!(
        got,
        vec![
            Ok(StreamEvent::text("Hello")),
            Ok(StreamEvent::text(", world")),
            Ok(StreamEvent::finish(FinishReason::Stop)),
            Ok(StreamEvent::Usage(Usage::new(12, 4))),
            Ok(StreamEvent::Meta(meta)),
        ]
    );
    let seen = server.seen().await;
    assert_eq!(seen[0]["signature"], Value::Null);
    assert_eq!(
        seen[0]["path"],
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse-stream"
    );
    assert_eq!(
        seen[0]["headers"]["accept"],
        "application/vnd.amazon.eventstream"
    );

    // Through the service, the same stream collects into the whole answer.
    server.script(json!({ "events": text_events() })).await;
    let mut response = bedrock
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]).streaming())
        .await
        .unwrap();
    let answer = response.take_stream().unwrap().collect().await.unwrap();
    assert_eq!(answer.content(), "Hello, world");
    assert_eq!(answer.usage, Usage::new(12, 4));
    assert_eq!(
        answer.extra.get("metrics"),
        Some(&json!({ "latencyMs": 410 }))
    );
}

/// A streamed tool call, its input in pieces, after text and signed reasoning.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html>
#[tokio::test]
async fn tool_calls_and_reasoning_stream_in_pieces() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "events": [
            ["messageStart", { "role": "assistant" }],
            ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "reasoningContent": { "text": "Look it up." } } }],
            ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "reasoningContent": { "signature": "sig-1" } } }],
            ["contentBlockStop", { "contentBlockIndex": 0 }],
            ["contentBlockDelta", { "contentBlockIndex": 1, "delta": { "text": "Checking." } }],
            ["contentBlockStop", { "contentBlockIndex": 1 }],
            ["contentBlockStart", { "contentBlockIndex": 2, "start": { "toolUse": { "toolUseId": "tooluse_1", "name": "top_song" } } }],
            ["contentBlockDelta", { "contentBlockIndex": 2, "delta": { "toolUse": { "input": "{\"sign\": \"WZ" } } }],
            ["contentBlockDelta", { "contentBlockIndex": 2, "delta": { "toolUse": { "input": "PZ\"}" } } }],
            ["contentBlockStop", { "contentBlockIndex": 2 }],
            ["messageStop", { "stopReason": "tool_use" }],
            ["metadata", { "usage": { "inputTokens": 375, "outputTokens": 36, "totalTokens": 2459,
                                      "cacheReadInputTokens": 2048 } }]
        ] }))
        .await;
    let got = events(
        &client(&server),
        LlmRequest::new(CLAUDE, vec![Message::user("Top song on WZPZ?")]).streaming(),
    )
    .await;
    assert_eq!(
        got,
        vec![
            Ok(StreamEvent::Reasoning {
                choice: 0,
                text: "Look it up.".into()
            }),
            Ok(StreamEvent::ReasoningSignature {
                choice: 0,
                signature: "sig-1".into()
            }),
            Ok(StreamEvent::text("Checking.")),
            Ok(StreamEvent::ToolCall {
                choice: 0,
                call: ToolCallDelta::new(0, Some("tooluse_1".into()), Some("top_song".into()), ""),
            }),
            Ok(StreamEvent::ToolCall {
                choice: 0,
                call: ToolCallDelta::new(0, None, None, "{\"sign\": \"WZ")
            }),
            Ok(StreamEvent::ToolCall {
                choice: 0,
                call: ToolCallDelta::new(0, None, None, "PZ\"}")
            }),
            Ok(StreamEvent::finish(FinishReason::ToolCalls)),
            Ok(StreamEvent::Usage(
                Usage::new(2423, 36).with_cached_input(2048)
            )),
        ]
    );
}

#[tokio::test]
async fn a_stream_closed_before_its_end_is_a_server_error() {
    let Some(server) = start(None, None) else {
        return;
    };
    let bedrock = client(&server);
    // Without metadata; without messageStop; cut inside a frame.
    let whole = text_events();
    let all = whole.as_array().unwrap();
    for (events, cut) in [(&all[..5], 0), (&all[..4], 0), (&all[..], 7)] {
        server.script(json!({ "events": events, "cut": cut })).await;
        let got = events_of(&bedrock).await;
        assert_eq!(
            got.last(),
            Some(&Err(ErrorKind::Server)),
            "{events:?} cut {cut}"
        );
        assert_eq!(got.iter().filter(|e| e.is_err()).count(), 1);
    }
}

async fn events_of(bedrock: &Bedrock) -> Vec<Result<StreamEvent, ErrorKind>> {
    events(
        bedrock,
        LlmRequest::new(CLAUDE, vec![Message::user("Hi")]).streaming(),
    )
    .await
}

/// Exception events mid-stream, named as the ConverseStream reference names them.
/// <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html#API_runtime_ConverseStream_ResponseSyntax>
#[tokio::test]
async fn exception_events_end_the_stream_with_their_kind() {
    let Some(server) = start(None, None) else {
        return;
    };
    let bedrock = client(&server);
    let cases = [
        (
            "throttlingException",
            "Too many tokens, please wait before trying again.",
            ErrorKind::RateLimited,
        ),
        (
            "serviceUnavailableException",
            "The service is unavailable.",
            ErrorKind::Overloaded,
        ),
        (
            "modelStreamErrorException",
            "The model stream had an error.",
            ErrorKind::Server,
        ),
        (
            "internalServerException",
            "Internal failure.",
            ErrorKind::Server,
        ),
        (
            "validationException",
            "Input is too long for requested model.",
            ErrorKind::InvalidRequest,
        ),
    ];
    for (name, message, kind) in cases {
        server
            .script(json!({
                "events": [
                    ["messageStart", { "role": "assistant" }],
                    ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "text": "Hel" } }]
                ],
                "exception": [name, { "message": message }]
            }))
            .await;
        let mut stream = bedrock
            .stream(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]).streaming())
            .await
            .unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            StreamEvent::text("Hel")
        );
        let error = stream.next().await.unwrap().unwrap_err();
        assert_eq!(error.kind(), kind, "{name}");
        let said = error.extensions().get::<UpstreamError>().unwrap();
        assert_eq!(said.error_type.as_deref(), Some(name));
        assert_eq!(said.context_window, name == "validationException");
        assert!(stream.next().await.is_none(), "nothing follows an error");
    }
}

#[tokio::test]
async fn a_stream_refused_before_it_starts_is_read_as_bedrocks_error() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "status": 429, "headers": { "x-amzn-ErrorType": "ThrottlingException", "retry-after": "3" },
                        "json": { "message": "Too many requests, please wait before trying again." } }))
        .await;
    let error = client(&server)
        .stream(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]).streaming())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn an_event_past_the_bound_ends_the_stream() {
    let Some(server) = start(None, None) else {
        return;
    };
    let long = "x".repeat(4_000);
    server
        .script(json!({ "events": [
            ["messageStart", { "role": "assistant" }],
            ["contentBlockDelta", { "contentBlockIndex": 0, "delta": { "text": long } }]
        ] }))
        .await;
    let bedrock = Bedrock::builder(REGION)
        .credentials(ACCESS_KEY, SECRET)
        .base_url(&server.url)
        .max_event_bytes(1_000)
        .build()
        .unwrap();
    let got = events_of(&bedrock).await;
    assert_eq!(got, vec![Err(ErrorKind::Server)]);
}

fn embeddings(model: &str, input: Value) -> LlmRequest {
    let mut request = LlmRequest::new(model, Vec::new());
    request.meta.operation = Operation::Embeddings;
    request.params.set_extra("input", input);
    request
}

/// Titan Text Embeddings V2: one text per call.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>
#[tokio::test]
async fn titan_embeds_each_input_in_its_own_call_and_answers_in_openais_shape() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "json": { "embedding": [0.1, -0.2], "inputTextTokenCount": 3 } }))
        .await;
    server
        .script(json!({ "json": { "embedding": [0.3, 0.4], "inputTextTokenCount": 5 } }))
        .await;
    let mut request = embeddings(
        "amazon.titan-embed-text-v2:0",
        json!(["first text", "second"]),
    );
    request.params.set_extra("dimensions", json!(256));
    let answer = client(&server).oneshot(request).await.unwrap();
    assert_eq!(answer.usage, Usage::new(8, 0));
    let body: Value =
        serde_json::from_slice(&tollgate_wire::openai::embeddings::encode_answer(&answer)).unwrap();
    assert_eq!(
        body,
        json!({
            "object": "list",
            "data": [
                { "object": "embedding", "index": 0, "embedding": [0.1, -0.2] },
                { "object": "embedding", "index": 1, "embedding": [0.3, 0.4] }
            ],
            "model": "amazon.titan-embed-text-v2:0",
            "usage": { "prompt_tokens": 8, "total_tokens": 8 }
        })
    );
    let seen = server.seen().await;
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|call| call["signature"].is_null()));
    assert_eq!(
        seen[0]["path"],
        "/model/amazon.titan-embed-text-v2%3A0/invoke"
    );
    assert_eq!(
        seen[0]["body"],
        json!({ "inputText": "first text", "dimensions": 256 })
    );
    assert_eq!(
        seen[1]["body"],
        json!({ "inputText": "second", "dimensions": 256 })
    );

    // A list past OpenAI's bound is refused by name, before any call: Titan would make one
    // call for each.
    let many = embeddings("amazon.titan-embed-text-v2:0", json!(vec!["x"; 2_049]));
    let error = client(&server).oneshot(many).await.unwrap_err();
    assert_eq!(error.kind(), tollgate_core::ErrorKind::InvalidRequest);
    assert!(
        error.message().contains("input: at most 2048 texts"),
        "{error}"
    );
    assert_eq!(server.seen().await.len(), 2);
}

/// Cohere Embed: many texts in one call, `input_type` required.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>
#[tokio::test]
async fn cohere_embeds_all_inputs_in_one_call() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({
            "headers": { "X-Amzn-Bedrock-Input-Token-Count": "7" },
            "json": { "embeddings": [[0.5, 0.6], [0.7, 0.8]], "id": "emb-1",
                      "response_type": "embeddings_floats", "texts": ["a", "b"] }
        }))
        .await;
    let answer = client(&server)
        .oneshot(embeddings("cohere.embed-english-v3", json!(["a", "b"])))
        .await
        .unwrap();
    assert_eq!(answer.usage, Usage::new(7, 0));
    assert_eq!(
        answer.extra.get("data"),
        Some(&json!([
            { "object": "embedding", "index": 0, "embedding": [0.5, 0.6] },
            { "object": "embedding", "index": 1, "embedding": [0.7, 0.8] }
        ]))
    );
    let seen = server.seen().await;
    assert_eq!(seen[0]["signature"], Value::Null);
    assert_eq!(
        seen[0]["body"],
        json!({ "texts": ["a", "b"], "input_type": "search_document" })
    );
    // A model of no known family is refused before anything is sent.
    let error = client(&server)
        .oneshot(embeddings("meta.llama3-8b-instruct-v1:0", json!("a")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.seen().await.len(), 1);
    // An answer without its token count is billed by the estimate, never as free.
    server
        .script(json!({ "json": { "embeddings": [[0.5]], "id": "emb-2",
                                  "response_type": "embeddings_floats", "texts": ["twelve chars"] } }))
        .await;
    let answer = client(&server)
        .oneshot(embeddings("cohere.embed-english-v3", json!("twelve chars")))
        .await
        .unwrap();
    assert_eq!(answer.usage, Usage::new(3, 0));
}

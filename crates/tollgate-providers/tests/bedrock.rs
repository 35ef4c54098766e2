//! Bedrock's Converse API against a local server that checks every call's SigV4 signature with
//! botocore's signer (`tests/bedrock_server.py`). Fixtures are AWS's documented shapes, cited at
//! each.

mod bedrock_support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use bedrock_support::{ACCESS_KEY, REGION, SECRET, Server, start};
use serde_json::{Value, json};
use tollgate_core::{ErrorKind, FinishReason, LlmRequest, Message, UpstreamError, Usage};
use tollgate_providers::{Bedrock, Credentials, ProvideCredentials};
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

fn request(body: Value) -> LlmRequest {
    serde_json::from_value(body).unwrap()
}

/// A text answer, as the Converse API reference's response syntax has it.
/// <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_ResponseSyntax>
fn text_answer() -> Value {
    json!({
        "output": { "message": { "role": "assistant", "content": [
            { "text": "Elemental Hotel is by 8 Storey Hike." },
            { "text": " Anything else?" }
        ] } },
        "stopReason": "end_turn",
        "usage": { "inputTokens": 30, "outputTokens": 628, "totalTokens": 658 },
        "metrics": { "latencyMs": 1275 }
    })
}

#[tokio::test]
async fn the_request_is_mapped_to_converse_signed_and_the_answer_read_back() {
    let Some(server) = start(None, None) else {
        return;
    };
    server.script(json!({ "json": text_answer() })).await;
    let request = request(json!({
        "model": CLAUDE,
        "messages": [
            { "role": "system", "content": "Be brief.", "cache_control": { "type": "ephemeral" } },
            { "role": "developer", "content": "Answer in English." },
            { "role": "user", "content": [
                { "type": "text", "text": "What is in this image?", "cache_control": { "type": "ephemeral" } },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } }
            ] },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "tooluse_1", "type": "function",
                  "function": { "name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}" } }
            ] },
            { "role": "tool", "tool_call_id": "tooluse_1", "content": "Elemental Hotel" },
            { "role": "user", "content": "Thanks. Who sings it?" }
        ],
        "max_tokens": 512,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "top_k": 40,
        "tools": [ { "type": "function", "function": {
            "name": "top_song", "description": "The most popular song on a station.",
            "parameters": { "type": "object", "properties": { "sign": { "type": "string" } }, "required": ["sign"] }
        } } ],
        "tool_choice": "auto",
        "guardrailConfig": { "guardrailIdentifier": "gr-1", "guardrailVersion": "1" },
        "user": "alice"
    }));
    let answer = client(&server).oneshot(request).await.unwrap();

    assert_eq!(
        answer.content(),
        "Elemental Hotel is by 8 Storey Hike. Anything else?"
    );
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(answer.usage, Usage::new(30, 628));
    assert_eq!(answer.model, CLAUDE);
    assert_eq!(
        answer.extra.get("metrics"),
        Some(&json!({ "latencyMs": 1275 }))
    );

    let seen = server.seen().await;
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert_eq!(
        call["signature"],
        Value::Null,
        "botocore's signature matches"
    );
    assert_eq!(
        call["path"],
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    );
    assert_eq!(call["headers"]["accept"], "application/json");
    assert_eq!(call["headers"]["content-type"], "application/json");
    let authorization = call["headers"]["authorization"].as_str().unwrap();
    assert!(authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")));
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    assert_eq!(
        call["body"],
        json!({
            "messages": [
                { "role": "user", "content": [
                    { "text": "What is in this image?" },
                    { "cachePoint": { "type": "default" } },
                    { "image": { "format": "png", "source": { "bytes": "iVBORw0KGgo=" } } }
                ] },
                { "role": "assistant", "content": [
                    { "toolUse": { "toolUseId": "tooluse_1", "name": "top_song", "input": { "sign": "WZPZ" } } }
                ] },
                { "role": "user", "content": [
                    { "toolResult": { "toolUseId": "tooluse_1", "content": [ { "text": "Elemental Hotel" } ] } },
                    { "text": "Thanks. Who sings it?" }
                ] }
            ],
            "system": [
                { "text": "Be brief." },
                { "cachePoint": { "type": "default" } },
                { "text": "Answer in English." }
            ],
            "inferenceConfig": { "maxTokens": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"] },
            "toolConfig": {
                "tools": [ { "toolSpec": {
                    "name": "top_song",
                    "inputSchema": { "json": { "type": "object", "properties": { "sign": { "type": "string" } }, "required": ["sign"] } },
                    "description": "The most popular song on a station."
                } } ],
                "toolChoice": { "auto": {} }
            },
            "guardrailConfig": { "guardrailIdentifier": "gr-1", "guardrailVersion": "1" },
            "requestMetadata": { "user": "alice" },
            "additionalModelRequestFields": { "top_k": 40 }
        })
    );
}

/// A tool call, as the user guide's tool-use example answers.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html>
#[tokio::test]
async fn tool_use_blocks_are_tool_calls_and_a_forced_tool_is_named() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "json": {
            "output": { "message": { "role": "assistant", "content": [
                { "toolUse": { "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": { "sign": "WZPZ" } } }
            ] } },
            "stopReason": "tool_use",
            "usage": { "inputTokens": 375, "outputTokens": 36, "totalTokens": 411 },
            "metrics": { "latencyMs": 1982 }
        } }))
        .await;
    let request = request(json!({
        "model": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "messages": [ { "role": "user", "content": "What is the most popular song on WZPZ?" } ],
        "tools": [ { "type": "function", "function": { "name": "top_song" }, "cache_control": { "type": "ephemeral" } } ],
        "tool_choice": { "type": "function", "function": { "name": "top_song" } }
    }));
    let answer = client(&server).oneshot(request).await.unwrap();

    assert_eq!(answer.finish_reason(), Some(&FinishReason::ToolCalls));
    let calls = answer.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(calls[0].function.name, "top_song");
    assert_eq!(calls[0].function.arguments, r#"{"sign":"WZPZ"}"#);

    let seen = server.seen().await;
    assert_eq!(seen[0]["signature"], Value::Null);
    assert_eq!(
        seen[0]["path"],
        "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
    );
    assert_eq!(
        seen[0]["body"]["toolConfig"],
        json!({
            "tools": [
                { "toolSpec": { "name": "top_song", "inputSchema": { "json": { "type": "object", "properties": {} } } } },
                { "cachePoint": { "type": "default" } }
            ],
            "toolChoice": { "tool": { "name": "top_song" } }
        })
    );
}

/// Extended thinking on Claude: a signed `reasoningContent` block before the text.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-extended-thinking.html>
#[tokio::test]
async fn reasoning_is_read_with_its_signature_and_effort_becomes_a_thinking_budget() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "json": {
            "output": { "message": { "role": "assistant", "content": [
                { "reasoningContent": { "reasoningText": { "text": "27 * 453 = 12231", "signature": "EqoBCkgIARABGAIiQL..." } } },
                { "text": "12,231" }
            ] } },
            "stopReason": "end_turn",
            "usage": { "inputTokens": 40, "outputTokens": 120, "totalTokens": 160 }
        } }))
        .await;
    let request = request(json!({
        "model": CLAUDE,
        "messages": [ { "role": "user", "content": "27 * 453?" } ],
        "max_tokens": 4096,
        "reasoning_effort": "medium"
    }));
    let answer = client(&server).oneshot(request).await.unwrap();
    let message = &answer.choices[0].message;
    assert_eq!(message.reasoning.as_deref(), Some("27 * 453 = 12231"));
    assert_eq!(
        message.extra.get("reasoning_signature"),
        Some(&json!("EqoBCkgIARABGAIiQL..."))
    );
    assert_eq!(answer.content(), "12,231");
    let seen = server.seen().await;
    assert_eq!(
        seen[0]["body"]["additionalModelRequestFields"],
        json!({ "thinking": { "type": "enabled", "budget_tokens": 2048 } })
    );
}

/// Prompt caching: `inputTokens` leaves out what was read from and written to the cache.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html>
#[tokio::test]
async fn cache_reads_and_writes_are_counted_in_the_prompt_and_apart() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "json": {
            "output": { "message": { "role": "assistant", "content": [ { "text": "ok" } ] } },
            "stopReason": "max_tokens",
            "usage": { "inputTokens": 4, "outputTokens": 76, "totalTokens": 3340,
                       "cacheReadInputTokens": 2048, "cacheWriteInputTokens": 1212 }
        } }))
        .await;
    let answer = client(&server)
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Summarize.")]))
        .await
        .unwrap();
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Length));
    assert_eq!(
        answer.usage,
        Usage::new(3264, 76)
            .with_cached_input(2048)
            .with_cache_write(1212)
    );
    assert_eq!(answer.usage.total(), 3340, "Converse's own totalTokens");
}

/// A guardrail that blocks the answer: `stopReason: guardrail_intervened`.
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/guardrails-use-converse-api.html>
#[tokio::test]
async fn a_guardrail_intervening_is_a_content_filter_error() {
    let Some(server) = start(None, None) else {
        return;
    };
    server
        .script(json!({ "json": {
            "output": { "message": { "role": "assistant", "content": [ { "text": "Sorry, I can't answer questions about that." } ] } },
            "stopReason": "guardrail_intervened",
            "usage": { "inputTokens": 12, "outputTokens": 9, "totalTokens": 21 },
            "trace": { "guardrail": { "inputAssessment": {} } }
        } }))
        .await;
    let error = client(&server)
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("How do I ...")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ContentFilter);
}

/// Converse's errors: a status, `x-amzn-ErrorType` and `{"message"}`.
/// <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors>
#[tokio::test]
async fn errors_are_read_by_the_name_aws_gives_them() {
    let Some(server) = start(None, None) else {
        return;
    };
    let cases = [
        (
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
            ErrorKind::RateLimited,
        ),
        (
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
            ErrorKind::Overloaded,
        ),
        (
            429,
            "ModelNotReadyException",
            "Model is not ready for inference. Wait and try your request again.",
            ErrorKind::Overloaded,
        ),
        (
            408,
            "ModelTimeoutException",
            "Model has timed out in processing the request.",
            ErrorKind::Timeout,
        ),
        (
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
            ErrorKind::Auth,
        ),
        (
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            ErrorKind::Auth,
        ),
        (
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
            ErrorKind::Auth,
        ),
        (
            500,
            "InternalServerException",
            "The server encountered an internal error.",
            ErrorKind::Server,
        ),
        (
            424,
            "ModelErrorException",
            "The model returned an error.",
            ErrorKind::Server,
        ),
        (
            400,
            "ValidationException",
            "The model returned the following errors: messages: roles must alternate",
            ErrorKind::InvalidRequest,
        ),
    ];
    let bedrock = client(&server);
    for (status, name, message, kind) in cases {
        server
            .script(json!({
                "status": status,
                "headers": { "x-amzn-ErrorType": format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/") },
                "json": { "message": message }
            }))
            .await;
        let error = bedrock
            .clone()
            .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), kind, "{name}");
        assert_eq!(error.status().map(|s| s.as_u16()), Some(status), "{name}");
        let said = error.extensions().get::<UpstreamError>().unwrap();
        assert_eq!(said.error_type.as_deref(), Some(name));
        assert!(!said.context_window, "{name}");
    }
    // Only a refusal of the caller's own request is explained, in the upstream's words.
    let said = |e: &tollgate_core::LlmError| {
        e.extensions()
            .get::<UpstreamError>()
            .unwrap()
            .message
            .clone()
    };
    server
        .script(
            json!({ "status": 400, "headers": { "x-amzn-ErrorType": "ValidationException" },
                        "json": { "message": "messages: roles must alternate" } }),
        )
        .await;
    let error = bedrock
        .clone()
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]))
        .await
        .unwrap_err();
    assert_eq!(
        said(&error).as_deref(),
        Some("messages: roles must alternate")
    );
    assert!(
        error
            .message()
            .ends_with(": messages: roles must alternate"),
        "{}",
        error.message()
    );
}

/// A prompt past the model's context window: a `ValidationException` in each of the words
/// Bedrock's models use.
#[tokio::test]
async fn a_prompt_too_long_is_a_context_window_refusal() {
    let Some(server) = start(None, None) else {
        return;
    };
    let bedrock = client(&server);
    for message in [
        "Input is too long for requested model.",
        "The model returned the following errors: prompt is too long: 215000 tokens > 200000 maximum",
    ] {
        server
            .script(
                json!({ "status": 400, "headers": { "x-amzn-ErrorType": "ValidationException" },
                            "json": { "message": message } }),
            )
            .await;
        let error = bedrock
            .clone()
            .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("very long")]))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ContextWindow);
        let said = error.extensions().get::<UpstreamError>().unwrap();
        assert!(said.context_window, "{message}");
        assert!(
            error.message().contains("context window"),
            "{}",
            error.message()
        );
    }
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_secret_is_refused_by_botocores_check() {
    let Some(server) = start(None, None) else {
        return;
    };
    let wrong = Bedrock::builder(REGION)
        .credentials(ACCESS_KEY, "not-the-secret")
        .base_url(&server.url)
        .build()
        .unwrap();
    let error = wrong
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(error.status().map(|s| s.as_u16()), Some(403));
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert_eq!(
        said.error_type.as_deref(),
        Some("InvalidSignatureException")
    );
    let seen = server.seen().await;
    let why = seen[0]["signature"].as_str().unwrap();
    assert!(
        why.starts_with("the signature does not match botocore's"),
        "{why}"
    );
    // The secret never shows, in the error or the client's Debug.
    assert!(!format!("{error:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn temporary_credentials_send_their_session_token_signed() {
    let Some(server) = start(Some("session-token-value"), None) else {
        return;
    };
    server.script(json!({ "json": text_answer() })).await;
    let bedrock = Bedrock::builder(REGION)
        .credentials(ACCESS_KEY, SECRET)
        .session_token("session-token-value")
        .base_url(&server.url)
        .build()
        .unwrap();
    bedrock
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]))
        .await
        .unwrap();
    let seen = server.seen().await;
    assert_eq!(seen[0]["signature"], Value::Null);
    assert_eq!(
        seen[0]["headers"]["x-amz-security-token"],
        "session-token-value"
    );
}

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_a_bearer_token_unsigned() {
    let Some(server) = start(None, Some("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl")) else {
        return;
    };
    server.script(json!({ "json": text_answer() })).await;
    let builder = Bedrock::builder(REGION)
        .api_key("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl")
        .base_url(&server.url);
    assert!(!format!("{builder:?}").contains("ABSKQmVk"));
    let bedrock = builder.build().unwrap();
    assert!(!format!("{bedrock:?}").contains("ABSKQmVk"));
    bedrock
        .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]))
        .await
        .unwrap();
    let seen = server.seen().await;
    assert_eq!(seen[0]["signature"], Value::Null);
    assert!(seen[0]["headers"].get("x-amz-date").is_none());
}

/// Credentials that count their fetches, expiring `lasting` from each fetch.
#[derive(Debug)]
struct Counted {
    fetches: Arc<AtomicUsize>,
    lasting: Duration,
}

impl ProvideCredentials for Counted {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            ACCESS_KEY,
            SECRET,
            None,
            Some(SystemTime::now() + self.lasting),
            "test",
        )))
    }
}

#[tokio::test]
async fn credentials_are_kept_until_they_near_their_expiry() {
    let Some(server) = start(None, None) else {
        return;
    };
    for (lasting, expected) in [(Duration::from_secs(3600), 1), (Duration::from_secs(60), 3)] {
        let fetches = Arc::new(AtomicUsize::new(0));
        let bedrock = Bedrock::builder(REGION)
            .credentials_provider(Counted {
                fetches: fetches.clone(),
                lasting,
            })
            .base_url(&server.url)
            .build()
            .unwrap();
        for _ in 0..3 {
            server.script(json!({ "json": text_answer() })).await;
            bedrock
                .clone()
                .oneshot(LlmRequest::new(CLAUDE, vec![Message::user("Hi")]))
                .await
                .unwrap();
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            expected,
            "lasting {lasting:?}"
        );
    }
    let seen = server.seen().await;
    assert!(seen.iter().all(|call| call["signature"].is_null()));
}

#[tokio::test]
async fn what_converse_cannot_do_is_refused_by_name_before_anything_is_sent() {
    // No server: nothing may be sent.
    let bedrock = Bedrock::builder(REGION)
        .credentials(ACCESS_KEY, SECRET)
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    let cases = [
        (
            json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "x", "schema": {} } } }),
            "response_format",
        ),
        (json!({ "n": 2 }), "n:"),
        (json!({ "logprobs": true }), "logprobs"),
        (json!({ "top_logprobs": 2 }), "top_logprobs"),
        (json!({ "frequency_penalty": 0.5 }), "frequency_penalty"),
        (
            json!({ "parallel_tool_calls": false }),
            "parallel_tool_calls",
        ),
        (
            json!({ "messages": [ { "role": "user", "content": [ { "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } } ] } ] }),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({ "messages": [ { "role": "user", "content": [ { "type": "input_audio", "input_audio": {} } ] } ] }),
            "messages[0].content[0]",
        ),
    ];
    for (fields, named) in cases {
        let mut body =
            json!({ "model": CLAUDE, "messages": [ { "role": "user", "content": "Hi" } ] });
        for (key, value) in fields.as_object().unwrap() {
            body[key] = value.clone();
        }
        let error = bedrock.clone().oneshot(request(body)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{named}");
        assert!(
            error.message().contains(named),
            "{named}: {}",
            error.message()
        );
    }
}

#[test]
fn the_builder_checks_what_it_is_given() {
    let error = Bedrock::builder("US East")
        .credentials("a", "b")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "region");
    let error = Bedrock::builder(REGION)
        .credentials("a", "")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "secret_access_key");
    let error = Bedrock::builder(REGION)
        .session_token("t")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "access_key_id");
    let error = Bedrock::builder(REGION).api_key(" ").build().unwrap_err();
    assert_eq!(error.path(), "api_key");
    let builder = Bedrock::builder(REGION)
        .credentials(ACCESS_KEY, SECRET)
        .session_token("tok");
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("tok\""),
        "{shown}"
    );
}

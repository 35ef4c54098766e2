//! Refusals typed by what the upstream said, not only by its status: a prompt too long for the
//! context window is `ContextWindow` and a content filter's 400 is `ContentFilter`, whichever
//! provider said it, so a router's `context_window_fallbacks` and `content_policy_fallbacks` fire
//! on the kind. The bodies are the providers' documented error shapes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Reply, Server};
use tollgate_core::{ErrorKind, LlmError, LlmRequest, Message, UpstreamError};
use tollgate_providers::{Anthropic, OpenAiCompatible};
use tower::ServiceExt;

fn request(model: &str) -> LlmRequest {
    LlmRequest::new(model, vec![Message::user("a very long prompt")])
}

async fn openai(server: &Server, reply: Reply) -> LlmError {
    server.reply(reply);
    let client = OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .api_key("sk-test")
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    client.oneshot(request("gpt-4o")).await.unwrap_err()
}

async fn azure(server: &Server, reply: Reply) -> LlmError {
    server.reply(reply);
    let client = OpenAiCompatible::azure(&server.url, "gpt-4o-prod", "2024-10-21")
        .api_key("azure-key")
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    client.oneshot(request("gpt-4o")).await.unwrap_err()
}

async fn anthropic(server: &Server, reply: Reply) -> LlmError {
    server.reply(reply);
    let client = Anthropic::builder("sk-ant-test")
        .base_url(&server.url)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    client
        .oneshot(request("claude-sonnet-4-5"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_prompt_too_long_is_context_window_from_every_compatible_server() {
    let server = Server::start().await;
    // OpenAI: https://platform.openai.com/docs/guides/error-codes
    let error = openai(
        &server,
        Reply::json(
            400,
            json!({ "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130012 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded" } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::ContextWindow, "{error}");
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400));
    assert!(!error.is_retryable());
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert!(said.context_window);
    assert_eq!(said.code.as_deref(), Some("context_length_exceeded"));
    assert!(
        error.message().starts_with(
            "openai: the prompt is too long for the model's context window (HTTP 400): This model's maximum context length is 128000 tokens."
        ),
        "{error}"
    );

    // vLLM says it with no code, and a 400 of its own.
    let error = openai(
        &server,
        Reply::json(
            400,
            json!({ "object": "error", "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (8000 in the messages, 1000 in the completion).", "type": "BadRequestError", "code": 400 }),
        ),
    )
    .await;
    // vLLM's body has no `error` object: its message is not read, and the kind stays what the
    // status says.
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");

    let error = openai(
        &server,
        Reply::json(
            400,
            json!({ "error": { "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.", "type": "BadRequestError", "code": 400 } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::ContextWindow, "{error}");
}

#[tokio::test]
async fn anthropics_prompt_is_too_long_is_context_window() {
    let server = Server::start().await;
    // https://docs.anthropic.com/en/api/errors
    let error = anthropic(
        &server,
        Reply::json(
            400,
            json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "prompt is too long: 210345 tokens > 200000 maximum" } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::ContextWindow, "{error}");
    assert_eq!(
        error.message(),
        "anthropic: the prompt is too long for the model's context window (HTTP 400): prompt is too long: 210345 tokens > 200000 maximum"
    );
    // Any other 400 stays a plain refusal.
    let error = anthropic(
        &server,
        Reply::json(
            400,
            json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "max_tokens: Field required" } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
}

#[tokio::test]
async fn azures_content_filter_400_is_content_filter_with_its_explanation() {
    let server = Server::start().await;
    // https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter
    let error = azure(
        &server,
        Reply::json(
            400,
            json!({ "error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": { "code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": { "filtered": false, "severity": "safe" },
                    "self_harm": { "filtered": false, "severity": "safe" },
                    "sexual": { "filtered": false, "severity": "safe" },
                    "violence": { "filtered": true, "severity": "medium" } } } } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::ContentFilter, "{error}");
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400));
    let seen = server.seen().pop().unwrap();
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.headers["api-key"], "azure-key");
    assert_eq!(seen.body["messages"][0]["content"], "a very long prompt");
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert_eq!(said.code.as_deref(), Some("content_filter"));
    assert_eq!(said.param.as_deref(), Some("prompt"));
    assert!(
        error.message().starts_with(
            "azure: the upstream's content filter refused the request (HTTP 400): The response was filtered"
        ),
        "{error}"
    );

    // Only the inner code says so: still the filter.
    let error = azure(
        &server,
        Reply::json(
            400,
            json!({ "error": { "message": "filtered", "code": "bad_request",
                "innererror": { "code": "ResponsibleAIPolicyViolation" } } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::ContentFilter, "{error}");

    // OpenAI's own name for it.
    let error = openai(
        &server,
        Reply::json(
            400,
            json!({ "error": { "message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "code": "content_policy_violation" } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::ContentFilter, "{error}");

    // Azure's 429 says how long to wait in `retry-after`; it is a rate limit, not a filter.
    let error = azure(
        &server,
        Reply::json(429, json!({ "error": { "code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded token rate limit." } }))
            .header("retry-after", "2"),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));

    // A filter's name on a server failure does not turn the outage into the caller's fault.
    let error = azure(
        &server,
        Reply::json(
            500,
            json!({ "error": { "message": "oops", "code": "content_filter" } }),
        ),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::Server, "{error}");
}

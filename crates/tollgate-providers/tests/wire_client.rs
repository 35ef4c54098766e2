//! The OpenAI-compatible client reaches Azure deployments, goes through a client the caller
//! built, adds a call's own headers, and passes content parts through untouched.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use serde_json::json;
use support::{Reply, Server};
use tollgate_core::{LlmRequest, http::HeaderMap};
use tollgate_providers::{OpenAiCompatible, RequestHeaders};
use tower::ServiceExt;

fn answer() -> serde_json::Value {
    json!({ "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "ok" }, "finish_reason": "stop" }] })
}

fn ask() -> LlmRequest {
    serde_json::from_value(json!({
        "model": "gpt-4o",
        "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "What is said here, and in this picture?" },
            { "type": "input_audio", "input_audio": { "data": "UklGRg==", "format": "wav" } },
            { "type": "image_url", "image_url": { "url": "https://example.com/a.png", "detail": "low" } }
        ] }]
    }))
    .unwrap()
}

// https://learn.microsoft.com/azure/ai-foundry/openai/reference#chat-completions
#[tokio::test]
async fn an_azure_deployment_is_called_at_its_url_with_its_api_key_header() {
    let server = Server::start().await;
    server.reply(Reply::json(200, answer()));
    let azure = OpenAiCompatible::azure(&server.url, "gpt-4o-prod", "2024-10-21")
        .api_key("azure-secret")
        .build()
        .unwrap();
    assert_eq!(azure.oneshot(ask()).await.unwrap().content(), "ok");
    let seen = &server.seen()[0];
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.headers["api-key"], "azure-secret");
    assert!(seen.headers.get("authorization").is_none());
    // Content parts go as they came: text, audio and an image with its detail.
    assert_eq!(
        seen.body["messages"],
        serde_json::to_value(ask()).unwrap()["messages"]
    );

    for (deployment, version, path) in [
        ("a/b", "2024-10-21", "deployment"),
        ("d", "", "api_version"),
    ] {
        let error = OpenAiCompatible::azure(&server.url, deployment, version)
            .build()
            .unwrap_err();
        assert_eq!(error.path(), path);
    }
}

#[tokio::test]
async fn a_callers_client_and_a_calls_own_headers_are_used() {
    let server = Server::start().await;
    server.reply(Reply::json(200, answer()));
    let mut defaults = HeaderMap::new();
    defaults.insert("x-from-callers-client", "yes".parse().unwrap());
    let theirs = reqwest::Client::builder()
        .default_headers(defaults)
        .build()
        .unwrap();
    let client = OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .api_key("sk-test")
        .header("x-gateway", "tollgate")
        .http_client(theirs)
        .build()
        .unwrap();
    let mut request = ask();
    let mut own = HeaderMap::new();
    own.insert("x-trace-id", "trace-42".parse().unwrap());
    request.extensions.insert(RequestHeaders(own));
    client.oneshot(request).await.unwrap();
    let headers = &server.seen()[0].headers;
    assert_eq!(headers["x-from-callers-client"], "yes");
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(headers["x-gateway"], "tollgate");
    assert_eq!(headers["x-trace-id"], "trace-42");
}

// https://platform.openai.com/docs/api-reference/embeddings/create
#[tokio::test]
async fn an_embeddings_call_goes_to_embeddings_and_keeps_the_vectors() {
    let server = Server::start().await;
    let vectors = json!([{ "object": "embedding", "index": 0, "embedding": [0.5, -1.0] }]);
    server.reply(Reply::json(
        200,
        json!({ "object": "list", "data": vectors, "model": "text-embedding-3-small",
                "usage": { "prompt_tokens": 3, "total_tokens": 3 } }),
    ));
    let client = OpenAiCompatible::builder(&server.url).build().unwrap();
    let mut request = LlmRequest::new("text-embedding-3-small", Vec::new());
    request.meta.operation = tollgate_core::Operation::Embeddings;
    request.params.set_extra("input", json!(["hello"]));
    request.params.set_extra("dimensions", json!(2));
    let answer = client.oneshot(request).await.unwrap();
    assert_eq!(answer.extra["data"], vectors);
    assert_eq!(answer.extra["object"], "list");
    assert_eq!(
        (answer.usage.input_tokens, answer.usage.output_tokens),
        (3, 0)
    );
    assert!(answer.choices.is_empty());
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/embeddings");
    assert_eq!(
        seen.body,
        json!({ "model": "text-embedding-3-small", "input": ["hello"], "dimensions": 2 })
    );

    let azure = OpenAiCompatible::azure(&server.url, "embed", "2024-10-21")
        .build()
        .unwrap();
    server.reply(Reply::json(
        200,
        json!({ "object": "list", "data": [], "model": "m" }),
    ));
    let mut request = LlmRequest::new("m", Vec::new());
    request.meta.operation = tollgate_core::Operation::Embeddings;
    azure.oneshot(request).await.unwrap();
    assert_eq!(
        server.seen()[1].path,
        "/openai/deployments/embed/embeddings?api-version=2024-10-21"
    );
}

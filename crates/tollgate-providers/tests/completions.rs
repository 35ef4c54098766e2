//! Legacy text completions against a real local server: an OpenAI-compatible client sends the
//! caller's body to `/completions` and hands back the answer as it came, whole and streamed;
//! every other provider refuses them by name before anything is sent.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use bytes::Bytes;
use serde_json::json;
use support::{Reply, Server};
use tollgate_core::{ErrorKind, FinishReason, LlmRequest, Message, Operation, stream::StreamEvent};
use tollgate_providers::{Anthropic, Gemini, OpenAiCompatible};
use tollgate_wire::openai::completions::{CompletionAnswer, decode_request};
use tower::ServiceExt;

const ANSWER: &str = r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"llama-base","choices":[{"text":" a time","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

fn callers(body: &'static str) -> LlmRequest {
    decode_request(Bytes::from_static(body.as_bytes())).unwrap()
}

fn raw(status: u16, body: &str, sse: bool) -> Reply {
    let kind = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    Reply {
        status,
        headers: vec![("content-type", kind.to_owned())],
        body: body.to_owned(),
        stall: false,
    }
}

// https://platform.openai.com/docs/api-reference/completions/create
#[tokio::test]
async fn a_whole_completion_goes_as_the_caller_wrote_it_and_comes_back_as_it_came() {
    let server = Server::start().await;
    server.reply(raw(200, ANSWER, false));
    let client = OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .api_key("sk-up")
        .build()
        .unwrap();
    let mut request =
        callers(r#"{"model": "fast", "prompt": "Once upon", "echo": false, "logprobs": null}"#);
    request.model = "llama-base".into();
    request.params.max_tokens = Some(2); // reserved by the limiter
    let answer = client.oneshot(request).await.unwrap();

    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-up");
    assert_eq!(
        seen.raw,
        &br#"{"model": "llama-base", "prompt": "Once upon", "echo": false, "logprobs": null,"max_tokens":2}"#[..]
    );
    assert_eq!(answer.content(), " a time");
    assert_eq!(answer.finish_reason(), Some(&FinishReason::Length));
    assert_eq!(
        (answer.usage.input_tokens, answer.usage.output_tokens),
        (3, 2)
    );
    assert_eq!(CompletionAnswer::of(&answer).unwrap(), ANSWER.as_bytes());
}

#[tokio::test]
async fn a_streamed_completion_asks_for_usage_and_hands_out_each_chunk_as_it_came() {
    let chunks = [
        r#"{"id":"cmpl-2","object":"text_completion","created":1,"model":"llama-base","choices":[{"text":" a","index":0,"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"cmpl-2","object":"text_completion","created":1,"model":"llama-base","choices":[{"text":" time","index":0,"logprobs":null,"finish_reason":"length"}]}"#,
        r#"{"id":"cmpl-2","object":"text_completion","created":1,"model":"llama-base","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
    ];
    let body: String = chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .chain(["data: [DONE]\n\n".to_owned()])
        .collect();
    let server = Server::start().await;
    server.reply(raw(200, &body, true));
    let client = OpenAiCompatible::builder(&server.url).build().unwrap();
    let request = callers(
        r#"{"model": "llama-base", "prompt": "Once upon", "max_tokens": 2, "stream": true}"#,
    );
    let mut stream = client.stream_completion(request).await.unwrap();
    let mut verbatim = Vec::new();
    let mut text = String::new();
    let mut usage = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Verbatim(raw) => verbatim.push(raw),
            StreamEvent::Text { text: piece, .. } => text.push_str(&piece),
            StreamEvent::Usage(said) => usage = Some(said),
            _ => {}
        }
    }
    assert_eq!(text, " a time");
    assert_eq!(
        usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((3, 2))
    );
    let expected: Vec<String> = chunks
        .iter()
        .map(|c| format!("data: {c}\n"))
        .chain(["data: [DONE]\n".to_owned()])
        .collect();
    let verbatim: Vec<String> = verbatim
        .iter()
        .map(|raw| String::from_utf8(raw.to_vec()).unwrap())
        .collect();
    assert_eq!(verbatim, expected);
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/completions");
    assert_eq!(
        seen.raw,
        &br#"{"model": "llama-base", "prompt": "Once upon", "max_tokens": 2, "stream": true,"stream_options":{"include_usage":true}}"#[..]
    );
}

#[tokio::test]
async fn an_azure_deployment_takes_completions_beside_its_chat_url() {
    let server = Server::start().await;
    server.reply(raw(200, ANSWER, false));
    let azure = OpenAiCompatible::azure(&server.url, "instruct", "2024-10-21")
        .api_key("azure-secret")
        .build()
        .unwrap();
    let mut request = LlmRequest::new("gpt-35-turbo-instruct", vec![Message::user("Hi")]);
    request.meta.operation = Operation::Completions;
    azure.oneshot(request).await.unwrap();
    let seen = &server.seen()[0];
    assert_eq!(
        seen.path,
        "/openai/deployments/instruct/completions?api-version=2024-10-21"
    );
    assert_eq!(
        seen.body,
        json!({ "model": "gpt-35-turbo-instruct", "prompt": "Hi" })
    );
}

#[tokio::test]
async fn an_upstream_refusal_and_a_malformed_answer_are_typed_errors() {
    let server = Server::start().await;
    let client = OpenAiCompatible::builder(&server.url).build().unwrap();
    server.reply(raw(
        400,
        r#"{"error": {"message": "This model does not support completions", "type": "invalid_request_error"}}"#,
        false,
    ));
    let request = callers(r#"{"model": "m", "prompt": "p"}"#);
    let error = client.clone().oneshot(request.clone()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    server.reply(raw(200, r#"{"object": "text_completion"}"#, false));
    let error = client.oneshot(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
}

#[tokio::test]
async fn every_other_provider_refuses_completions_by_name_before_sending() {
    let server = Server::start().await;
    let mut request = LlmRequest::new("m", vec![Message::user("p")]);
    request.meta.operation = Operation::Completions;
    let anthropic = Anthropic::builder("key")
        .base_url(&server.url)
        .build()
        .unwrap();
    let error = anthropic.oneshot(request.clone()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        error.message(),
        "anthropic: legacy text completions (/v1/completions) are served only by OpenAI-compatible providers"
    );
    let gemini = Gemini::builder("key")
        .base_url(&server.url)
        .build()
        .unwrap();
    let error = gemini.oneshot(request.streaming()).await.unwrap_err();
    assert!(
        error
            .message()
            .starts_with("gemini: legacy text completions")
    );
    assert!(server.seen().is_empty());
}

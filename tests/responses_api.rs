//! `responses_api` in the configuration: a call that came in OpenAI's Responses API goes to
//! `/responses` at a provider that serves it, as it came, and through chat completions at one
//! that does not, through the whole stack.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, body::Bytes, http::Uri, response::IntoResponse};
use serde_json::{Value, json};
use tollgate::{Config, Stack};
use tollgate_wire::openai::responses::{self, ResponsesAnswer};
use tower::ServiceExt;

/// A server answering `/v1/responses` and `/v1/chat/completions`, recording each call's path and
/// body.
async fn upstream() -> (String, Arc<Mutex<Vec<(String, Bytes)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, body: Bytes| {
        let record = record.clone();
        async move {
            let path = uri.path().to_owned();
            record.lock().unwrap().push((path.clone(), body));
            let answer = if path == "/v1/responses" {
                json!({"id": "resp_up", "object": "response", "created_at": 1, "status": "completed",
                       "model": "gpt-5", "output": [{"type": "message", "id": "msg_1", "status": "completed",
                       "role": "assistant", "content": [{"type": "output_text", "text": "Hi!", "annotations": []}]}],
                       "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
                                 "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7}})
            } else {
                json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-5",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
            };
            Json::<Value>(answer).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn a_provider_that_serves_the_responses_api_gets_the_call_as_it_came() {
    let (url, seen) = upstream().await;
    let yaml = format!(
        r#"
providers:
  serving: {{ kind: openai, base_url: "{url}/v1", responses_api: true }}
  chat_only: {{ kind: openai, base_url: "{url}/v1" }}
roles:
  default: {{ provider: serving, model: gpt-5 }}
  plain: {{ provider: chat_only, model: gpt-5 }}
"#
    );
    let stack = Stack::builder(&Config::from_yaml(&yaml).unwrap())
        .build()
        .unwrap();
    let body = br#"{"model": "gpt-5", "input": "Hi", "store": false}"#;
    let call = |role: &str| {
        let mut request =
            responses::decode_request(Bytes::from_static(body), &Default::default()).unwrap();
        request.meta.role = Some(role.into());
        request
    };

    let served = stack.clone().oneshot(call("default")).await.unwrap();
    assert_eq!(served.content(), "Hi!");
    assert!(served.extensions.get::<ResponsesAnswer>().is_some());
    let translated = stack.clone().oneshot(call("plain")).await.unwrap();
    assert_eq!(translated.content(), "Hi!");
    assert!(translated.extensions.get::<ResponsesAnswer>().is_none());

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "/v1/responses");
    assert_eq!(&seen[0].1[..], &body[..]);
    assert_eq!(seen[1].0, "/v1/chat/completions");
    let chat: Value = serde_json::from_slice(&seen[1].1).unwrap();
    assert_eq!(chat["messages"], json!([{"role": "user", "content": "Hi"}]));
    assert!(chat.get("store").is_none() && chat.get("input").is_none());
}

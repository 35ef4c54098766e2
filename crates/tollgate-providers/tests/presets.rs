//! Named OpenAI-compatible services and Azure's deployments, against a real local server that
//! checks what each is sent: each preset's quirks, and where each reports its usage.

mod support;

use serde_json::{Value, json};
use support::{Reply, Server};
use tollgate_core::{ErrorKind, LlmRequest, LlmResponse, Message, Preset};
use tollgate_providers::OpenAiCompatible;
use tower::ServiceExt;

fn answer(usage: Value) -> Value {
    json!({ "id": "c1", "object": "chat.completion", "model": "m",
            "choices": [ { "index": 0, "message": { "role": "assistant", "content": "ok" }, "finish_reason": "stop" } ],
            "usage": usage })
}

fn sse(events: &[Value], done: bool) -> Reply {
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    Reply {
        status: 200,
        headers: vec![("content-type", "text/event-stream".to_owned())],
        body,
        stall: false,
    }
}

fn ask(model: &str) -> LlmRequest {
    let mut named = Message::user("hi");
    named.extra.insert("name".into(), "alice".into());
    LlmRequest::new(model, vec![named])
}

async fn whole(client: &OpenAiCompatible, request: LlmRequest) -> LlmResponse {
    client.clone().oneshot(request).await.unwrap()
}

// https://console.groq.com/docs/openai
#[tokio::test]
async fn groq_is_sent_no_message_names_refuses_log_probabilities_and_streams_usage_in_x_groq() {
    let server = Server::start().await;
    let groq = OpenAiCompatible::builder(&server.url)
        .quirks_of(Preset::Groq)
        .name("groq")
        .api_key("gsk-test")
        .build()
        .unwrap();
    server.reply(Reply::json(
        200,
        answer(json!({ "prompt_tokens": 5, "completion_tokens": 1 })),
    ));
    whole(&groq, ask("llama-3.3-70b-versatile")).await;
    let seen = server.seen().pop().unwrap();
    assert_eq!(
        seen.body["messages"],
        json!([{ "role": "user", "content": "hi" }])
    );

    for (field, value) in [
        ("logprobs", json!(true)),
        ("logit_bias", json!({ "50256": -100 })),
    ] {
        let mut request = ask("m");
        request.params.set_extra(field, value);
        let error = groq.clone().oneshot(request).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            error.message(),
            format!("groq: this server does not take `{field}`")
        );
    }
    let mut request = ask("m");
    request.params.n = Some(2);
    let error = groq.clone().oneshot(request).await.unwrap_err();
    assert_eq!(
        error.message(),
        "groq: this server does not take `n` above 1"
    );
    // `logprobs: false` asks for nothing, and n = 1 is every server's default.
    let mut request = ask("m");
    request.params.set_extra("logprobs", json!(false));
    request.params.n = Some(1);
    server.reply(Reply::json(
        200,
        answer(json!({ "prompt_tokens": 5, "completion_tokens": 1 })),
    ));
    whole(&groq, request).await;
    assert_eq!(server.seen().len(), 2, "nothing refused was sent");

    // A stream's usage under `x_groq`, as Groq has sent it.
    let chunk = |delta: Value, finish: Value| json!({ "id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [ { "index": 0, "delta": delta, "finish_reason": finish } ] });
    server.reply(sse(
        &[
            chunk(json!({ "role": "assistant", "content": "Hi" }), Value::Null),
            json!({ "id": "c", "object": "chat.completion.chunk", "model": "m",
                    "choices": [ { "index": 0, "delta": {}, "finish_reason": "stop" } ],
                    "x_groq": { "id": "req_1", "usage": { "prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15 } } }),
        ],
        true,
    ));
    let streamed = groq
        .stream(ask("m"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(streamed.content(), "Hi");
    assert_eq!(
        (streamed.usage.input_tokens, streamed.usage.output_tokens),
        (12, 3)
    );
}

// https://docs.mistral.ai/api/
#[tokio::test]
async fn mistral_takes_random_seed_any_and_no_stream_options() {
    let server = Server::start().await;
    let mistral = OpenAiCompatible::builder(&server.url)
        .quirks_of(Preset::Mistral)
        .api_key("key")
        .build()
        .unwrap();
    let mut request = ask("mistral-large-latest");
    request.params.seed = Some(42);
    request.params.set_extra("tool_choice", json!("required"));
    request
        .params
        .set_extra("stream_options", json!({ "include_usage": true }));
    let chunk = |delta: Value, finish: Value, usage: Option<Value>| {
        let mut chunk = json!({ "id": "c", "object": "chat.completion.chunk", "model": "mistral-large-latest", "choices": [ { "index": 0, "delta": delta, "finish_reason": finish } ] });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    };
    // Mistral sends the usage with its last chunk, unasked.
    server.reply(sse(
        &[
            chunk(
                json!({ "role": "assistant", "content": "Bonjour" }),
                Value::Null,
                None,
            ),
            chunk(
                json!({}),
                json!("stop"),
                Some(json!({ "prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10 })),
            ),
        ],
        true,
    ));
    let streamed = mistral
        .stream(request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        (streamed.content(), streamed.usage.input_tokens),
        ("Bonjour", 8)
    );
    let body = server.seen().pop().unwrap().body;
    assert_eq!(body["random_seed"], 42);
    assert_eq!(body["tool_choice"], "any");
    assert_eq!(body["stream"], true);
    assert!(
        body.get("seed").is_none() && body.get("stream_options").is_none(),
        "{body}"
    );
    // Message names are Mistral's to take.
    assert_eq!(body["messages"][0]["name"], "alice");
}

// https://api-docs.deepseek.com/guides/kv_cache
#[tokio::test]
async fn deepseeks_cache_hits_are_cached_input() {
    let server = Server::start().await;
    let deepseek = OpenAiCompatible::builder(&server.url)
        .quirks_of(Preset::Deepseek)
        .build()
        .unwrap();
    server.reply(Reply::json(
        200,
        answer(
            json!({ "prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
                       "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200 }),
        ),
    ));
    let answer = whole(&deepseek, ask("deepseek-chat")).await;
    assert_eq!(
        (
            answer.usage.input_tokens,
            answer.usage.cached_input_tokens,
            answer.usage.output_tokens
        ),
        (1000, 800, 10)
    );
    let body = server.seen().pop().unwrap().body;
    assert_eq!(body["messages"][0]["name"], "alice");
}

#[test]
fn every_preset_builds_at_its_own_url_and_an_override_keeps_its_quirks() {
    for preset in Preset::ALL {
        let client = OpenAiCompatible::preset(preset).build().unwrap();
        let debug = format!("{client:?}");
        assert!(
            debug.contains(&format!("{}/chat/completions", preset.base_url())),
            "{debug}"
        );
        assert!(debug.contains(&format!("name: \"{preset}\"")), "{debug}");
    }
}

// https://learn.microsoft.com/azure/ai-foundry/openai/reference
#[tokio::test]
async fn azure_calls_each_models_deployment_with_an_entra_token() {
    let server = Server::start().await;
    let azure = OpenAiCompatible::azure_by_model(&server.url, "2024-10-21")
        .deployment_for("gpt-4o", "gpt-4o-prod")
        .entra_token("entra-token")
        .build()
        .unwrap();
    for _ in 0..2 {
        server.reply(Reply::json(
            200,
            answer(json!({ "prompt_tokens": 5, "completion_tokens": 1 })),
        ));
    }
    whole(&azure, ask("gpt-4o")).await;
    whole(&azure, ask("gpt-4o-mini")).await;
    let seen = server.seen();
    assert_eq!(
        seen[0].path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        seen[1].path,
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen[0].headers["authorization"], "Bearer entra-token");
    assert!(seen[0].headers.get("api-key").is_none());
    // A model that is no deployment name is refused before anything is sent.
    let error = azure
        .clone()
        .oneshot(ask("ft:gpt-4o:acme"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.seen().len(), 2);

    // Settings that are Azure's alone, on another client, and a key with a token, are refused.
    let error = OpenAiCompatible::builder(&server.url)
        .entra_token("t")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "entra_token");
    let error = OpenAiCompatible::azure(&server.url, "d", "2024-10-21")
        .api_key("k")
        .entra_token("t")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "entra_token");
    let error = OpenAiCompatible::azure_by_model(&server.url, "2024-10-21")
        .deployment_for("gpt-4o", "a/b")
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "deployments.gpt-4o");
}

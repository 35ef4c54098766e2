//! Nothing lost through the whole stack: a real local HTTP server answers as OpenAI and as
//! Anthropic (the providers' fixtures), and the answers come through cache → limiter → retry →
//! breaker → health → client complete; a second identical call is a cache hit with the same tool
//! calls; cached prompt tokens are priced at their own rates, exactly, for both providers.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Json, Router,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tollgate::{Config, LlmRequest, Message, Stack};
use tower::ServiceExt;

fn fixture(path: &str) -> Value {
    let path = format!(
        "{}/crates/tollgate-wire/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The OpenAI tool-call fixture, having read 1,000 of its 1,200 prompt tokens from OpenAI's cache.
fn openai_answer() -> Value {
    let mut answer = fixture("openai/tool_call.json");
    answer["usage"] = json!({
        "prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250,
        "prompt_tokens_details": { "cached_tokens": 1000, "audio_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
    });
    answer
}

/// `answer` as JSON, or the SSE fixture at `events` when the request asks for a stream.
fn reply(request: &Value, answer: Value, events: &str) -> Response {
    if request["stream"] != true {
        return Json(answer).into_response();
    }
    let path = format!(
        "{}/crates/tollgate-wire/tests/fixtures/{events}",
        env!("CARGO_MANIFEST_DIR")
    );
    let events = std::fs::read_to_string(path).unwrap();
    ([("content-type", "text/event-stream")], events).into_response()
}

/// A server answering `/v1/chat/completions` and `/v1/messages`, counting the calls.
async fn upstream() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (openai, anthropic) = (calls.clone(), calls.clone());
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(move |Json(body): Json<Value>| {
                openai.fetch_add(1, Ordering::SeqCst);
                async move { reply(&body, openai_answer(), "openai/tool_call.sse") }
            }),
        )
        .route(
            "/v1/messages",
            post(move |Json(body): Json<Value>| {
                anthropic.fetch_add(1, Ordering::SeqCst);
                async move {
                    reply(
                        &body,
                        fixture("anthropic/cache_usage.json"),
                        "anthropic/cache_usage.sse",
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

fn stack(url: &str) -> Stack {
    let yaml = format!(
        r#"
providers:
  openai: {{ kind: openai, base_url: "{url}/v1" }}
  anthropic: {{ kind: anthropic, base_url: "{url}", api_key_env: TEST_ANTHROPIC_KEY }}
roles:
  default: {{ provider: openai, model: gpt-4o }}
  claude: {{ provider: anthropic, model: claude-sonnet-4 }}
pricing:
  gpt-4o: {{ input: "2.50", output: "10.00", cached_input: "1.25" }}
  claude-sonnet-4: {{ input: "3.00", output: "15.00", cached_input: "0.30", cache_write: "3.75" }}
caching: {{ ttl: 10m }}
rate_limiting:
  tenants:
    default: {{ per_minute: 100, tokens_per_hour: 1000000 }}
"#
    );
    let config = Config::from_yaml(&yaml).unwrap();
    Stack::builder(&config)
        .env(|name| (name == "TEST_ANTHROPIC_KEY").then(|| "sk-ant-test".to_owned()))
        .build()
        .unwrap()
}

fn ask(role: &str) -> LlmRequest {
    LlmRequest::new("", vec![Message::user("Weather in Paris?")])
        .with_role(role)
        .with_tenant("acme")
}

/// A streaming request asking for usage, as the OpenAI clients do with
/// `stream_options: { include_usage: true }`.
fn ask_with_usage(role: &str) -> LlmRequest {
    let mut request = ask(role).streaming();
    request
        .params
        .set_extra("stream_options", json!({ "include_usage": true }));
    request
}

#[tokio::test]
async fn a_tool_call_comes_through_every_layer_and_back_from_the_cache_whole() {
    let (url, calls) = upstream().await;
    let stack = stack(&url);
    let first = stack.clone().oneshot(ask("default")).await.unwrap();
    assert_eq!(first.headers["x-cache"], "MISS");
    let mut expected = openai_answer();
    expected["model"] = json!("gpt-4.1-2025-04-14");
    assert_eq!(serde_json::to_value(&first).unwrap(), expected);

    let second = stack.clone().oneshot(ask("default")).await.unwrap();
    assert_eq!(second.headers["x-cache"], "HIT");
    assert_eq!(second.tool_calls(), first.tool_calls());
    assert_eq!(serde_json::to_value(&second).unwrap(), expected);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Streamed from the cache, it says the same: a stream carries no per-answer null markers
    // (`"refusal": null`, `"annotations": []`), so those are left out of the comparison.
    let mut streamed = stack
        .clone()
        .oneshot(ask_with_usage("default"))
        .await
        .unwrap();
    assert_eq!(streamed.headers["x-cache"], "HIT");
    let replayed = streamed.take_stream().unwrap().collect().await.unwrap();
    let said = |answer: &tollgate::LlmResponse| -> Vec<Value> {
        answer
            .choices
            .iter()
            .map(|c| {
                let m = &c.message;
                json!([
                    c.index,
                    m.content,
                    m.refusal,
                    m.reasoning,
                    c.finish_reason.as_ref().map(|r| r.as_str()),
                    m.tool_calls
                        .iter()
                        .map(|t| json!([t.id, t.kind, t.function.name, t.function.arguments]))
                        .collect::<Vec<_>>()
                ])
            })
            .collect()
    };
    assert_eq!(said(&replayed), said(&first));
    assert_eq!(replayed.usage, first.usage);
    assert_eq!(replayed.extra, first.extra);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cached_prompt_tokens_cost_what_the_price_table_says_for_both_providers() {
    let (url, _) = upstream().await;
    let stack = stack(&url);
    stack.clone().oneshot(ask("default")).await.unwrap();
    stack.clone().oneshot(ask("claude")).await.unwrap();
    let report = stack.cost_report();
    // OpenAI: 1,000 cached × $1.25/M + 200 × $2.50/M + 50 × $10/M = $0.00225.
    let openai = &report.by_provider["openai"];
    assert_eq!(
        (
            openai.input_tokens,
            openai.cached_input_tokens,
            openai.output_tokens
        ),
        (1_200, 1_000, 50)
    );
    assert_eq!(openai.cost.0, 2_250);
    // Anthropic: input_tokens 200 leaves out the 1,000 read from its cache:
    // 1,000 × $0.30/M + 200 × $3.00/M + 50 × $15/M = $0.00165.
    let anthropic = &report.by_provider["anthropic"];
    assert_eq!(
        (
            anthropic.input_tokens,
            anthropic.cached_input_tokens,
            anthropic.output_tokens
        ),
        (1_200, 1_000, 50)
    );
    assert_eq!(anthropic.cost.0, 1_650);
    assert_eq!(report.total.cost.0, 3_900);
}

#[tokio::test]
async fn a_streamed_tool_call_is_stored_and_answers_an_unstreamed_request_whole() {
    let (url, calls) = upstream().await;
    let stack = stack(&url);
    let mut first = stack
        .clone()
        .oneshot(ask_with_usage("default"))
        .await
        .unwrap();
    assert_eq!(first.headers["x-cache"], "MISS");
    let streamed = first.take_stream().unwrap().collect().await.unwrap();
    // The assembled answer is stored off the caller's path: let that task run.
    while stack.cache().unwrap().metrics().stores == 0 {
        tokio::task::yield_now().await;
    }
    let hit = stack.clone().oneshot(ask("default")).await.unwrap();
    assert_eq!(hit.headers["x-cache"], "HIT");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(hit.tool_calls(), streamed.tool_calls());
    let [call] = hit.tool_calls() else {
        panic!("one call")
    };
    assert_eq!(
        (
            call.id.as_str(),
            call.function.name.as_str(),
            call.function.arguments.as_str()
        ),
        (
            "call_12345xyz",
            "get_weather",
            r#"{"location":"Paris, France"}"#
        )
    );
    assert_eq!(hit.usage, streamed.usage);
    assert_eq!(hit.extra.get("id"), Some(&json!("chatcmpl-9tool01")));
}

#[tokio::test]
async fn a_caller_who_did_not_ask_for_usage_gets_none_though_tollgate_counts_it() {
    let (url, _) = upstream().await;
    let stack = stack(&url);
    let mut quiet = stack
        .clone()
        .oneshot(ask("claude").streaming())
        .await
        .unwrap();
    let answer = quiet.take_stream().unwrap().collect().await.unwrap();
    assert_eq!(answer.usage, tollgate::Usage::default());
    // ...while the cost report counted what the provider reported.
    assert_eq!(
        stack.cost_report().by_provider["anthropic"].input_tokens,
        1_200
    );

    let mut asked = ask("claude").streaming();
    asked
        .params
        .set_extra("stream_options", json!({ "include_usage": true }));
    let mut told = stack.clone().oneshot(asked).await.unwrap();
    let answer = told.take_stream().unwrap().collect().await.unwrap();
    assert_eq!(answer.usage.cached_input_tokens, 1_000);
}

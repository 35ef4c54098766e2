//! Nothing lost on the wire: each fixture under `fixtures/openai/` (see its README for the API
//! reference pages it follows) is served by a real local HTTP server, read by `OpenAiCompatible`,
//! and written back as JSON equal to what the server sent.

#[allow(dead_code)] // each test file uses its own part of the helpers
mod support;

use serde_json::Value;
use support::{Reply, Server};
use tollgate_core::{FinishReason, LlmRequest, LlmResponse, Message, Usage};
use tollgate_providers::OpenAiCompatible;
use tower::ServiceExt;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tollgate-wire/tests/fixtures/openai/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The answer `OpenAiCompatible` makes of `name`, served over HTTP.
async fn served(name: &str) -> LlmResponse {
    let server = Server::start().await;
    server.reply(Reply::json(200, fixture(name)));
    let client = OpenAiCompatible::builder(&format!("{}/v1", server.url))
        .build()
        .unwrap();
    client
        .oneshot(LlmRequest::new("gpt-4o", vec![Message::user("hi")]))
        .await
        .unwrap()
}

const FIXTURES: [&str; 7] = [
    "tool_call",
    "parallel_tool_calls",
    "n2",
    "json_schema",
    "refusal",
    "reasoning_usage",
    "reasoning_content_vllm",
];

#[tokio::test]
async fn every_fixture_comes_back_as_the_same_json() {
    for name in FIXTURES {
        let answer = served(name).await;
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            fixture(name),
            "{name}"
        );
    }
}

// https://platform.openai.com/docs/guides/function-calling
#[tokio::test]
async fn tool_calls_arrive_with_their_ids_names_and_exact_arguments() {
    let answer = served("tool_call").await;
    assert_eq!(answer.finish_reason(), Some(&FinishReason::ToolCalls));
    assert_eq!(answer.content(), "");
    let [call] = answer.tool_calls() else {
        panic!("one call: {:?}", answer.tool_calls())
    };
    assert_eq!(
        (
            call.id.as_str(),
            call.kind.as_str(),
            call.function.name.as_str()
        ),
        ("call_12345xyz", "function", "get_weather")
    );
    assert_eq!(call.function.arguments, r#"{"location":"Paris, France"}"#);

    let parallel = served("parallel_tool_calls").await;
    let calls: Vec<(&str, &str)> = parallel
        .tool_calls()
        .iter()
        .map(|c| (c.id.as_str(), c.function.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("call_paris", r#"{"location": "Paris, France"}"#),
            ("call_bogota", r#"{"location": "Bogotá, Colombia"}"#),
            ("call_mail", r#"{"to":"bob@email.com","body":"Hi \"Bob\""}"#),
        ]
    );
    assert_eq!(parallel.usage.cached_input_tokens, 128);
}

// https://platform.openai.com/docs/api-reference/chat/object#chat/object-choices
#[tokio::test]
async fn every_choice_is_kept_in_order_with_its_own_finish_reason_and_logprobs() {
    let answer = served("n2").await;
    let choices: Vec<(u32, &str, Option<&FinishReason>)> = answer
        .choices
        .iter()
        .map(|c| {
            (
                c.index,
                c.message.content.as_deref().unwrap(),
                c.finish_reason.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        choices,
        [
            (0, "A lighthouse keeps watch.", Some(&FinishReason::Stop)),
            (
                1,
                "The tide turns slowly, then all at",
                Some(&FinishReason::Length)
            ),
        ]
    );
    let logprob = &answer.choices[1].logprobs.as_ref().unwrap()["content"][0]["logprob"];
    assert_eq!(logprob.as_f64(), Some(-1.25e-5));
}

// https://platform.openai.com/docs/guides/structured-outputs#refusals
#[tokio::test]
async fn a_refusal_and_a_structured_answer_are_told_apart() {
    let refusal = served("refusal").await;
    let message = &refusal.choices[0].message;
    assert_eq!(message.content, None);
    assert_eq!(
        message.refusal.as_deref(),
        Some("I'm sorry, I cannot assist with that request.")
    );
    let structured = served("json_schema").await;
    let parsed: Value = serde_json::from_str(structured.content()).unwrap();
    assert_eq!(parsed["participants"][1], "Bob");
}

// https://platform.openai.com/docs/guides/reasoning, https://docs.vllm.ai/en/latest/features/reasoning_outputs.html
#[tokio::test]
async fn reasoning_and_cached_tokens_are_counted_and_reasoning_text_kept() {
    let answer = served("reasoning_usage").await;
    assert_eq!(
        answer.usage,
        Usage::new(1_200, 1_843)
            .with_cached_input(1_024)
            .with_reasoning(1_024)
    );
    let vllm = served("reasoning_content_vllm").await;
    assert_eq!(
        vllm.choices[0].message.reasoning.as_deref(),
        Some("The user asks for 9.11 versus 9.8. Compare the tenths: 1 < 8.")
    );
    assert_eq!(vllm.content(), "9.8 is greater than 9.11.");
    assert_eq!(vllm.usage, Usage::new(18, 48));
    // A field the server adds of its own stays where it was.
    assert_eq!(vllm.choices[0].extra["stop_reason"], Value::Null);
}

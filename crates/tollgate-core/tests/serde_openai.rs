//! Serde of the OpenAI chat-completions request shape.

use serde_json::{Value, json};
use tollgate_core::{Content, LlmRequest, Role};

fn realistic_request() -> Value {
    json!({
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": [
                {"type": "text", "text": "What's the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/sky.png"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C, clear"}
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
        }}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "user": "end-user-17",
        "x_vendor_future_field": {"nested": [1, 2, 3]}
    })
}

#[test]
fn a_realistic_openai_request_round_trips() {
    let original = realistic_request();
    let request: LlmRequest = serde_json::from_value(original.clone()).unwrap();

    assert_eq!(&*request.model, "gpt-4o-2024-08-06");
    assert_eq!(request.messages.len(), 4);
    assert_eq!(request.messages[1].role, Role::User);
    assert_eq!(
        request.messages[1].texts().collect::<Vec<_>>(),
        ["What's the weather in Paris?"]
    );
    assert!(request.messages[2].extra.contains_key("tool_calls"));
    assert_eq!(request.messages[3].extra["tool_call_id"], "call_1");
    assert_eq!(request.params.temperature, Some(0.2));
    assert_eq!(request.params.max_tokens, Some(256));
    assert_eq!(request.params.top_p, Some(0.9));
    assert_eq!(request.params.stop, ["\n\n", "END"]);
    assert_eq!(request.params.seed, Some(42));

    // Everything we do not model lands in `extra`, in the order it came, including unknown fields.
    let extra: Vec<&str> = request.params.extra.keys().map(String::as_str).collect();
    assert_eq!(
        extra,
        [
            "tools",
            "tool_choice",
            "response_format",
            "user",
            "x_vendor_future_field"
        ]
    );

    let back = serde_json::to_value(&request).unwrap();
    assert_eq!(back, original);
    let again: LlmRequest = serde_json::from_value(back).unwrap();
    assert_eq!(again, request);
}

#[test]
fn caller_metadata_never_goes_on_the_wire() {
    let request: LlmRequest = serde_json::from_value(realistic_request()).unwrap();
    let request = request
        .with_tenant("acme")
        .with_request_id("req-1")
        .with_provider("openai");
    let wire = serde_json::to_string(&request).unwrap();
    assert!(!wire.contains("acme") && !wire.contains("req-1") && !wire.contains("\"provider\""));
}

#[test]
fn single_stop_string_reads_as_a_list_and_content_parts_are_kept() {
    let request: LlmRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stop": "END",
        "max_completion_tokens": 99
    }))
    .unwrap();
    assert_eq!(request.params.stop, ["END"]);
    assert_eq!(request.params.max_output_tokens(), Some(99));
    assert_eq!(
        request.messages[0].content,
        Some(Content::Text("hi".into()))
    );
}

#[test]
fn malformed_requests_are_rejected_with_the_reason() {
    let err = serde_json::from_value::<LlmRequest>(json!({"messages": []}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `model`"), "{err}");
    let err = serde_json::from_value::<LlmRequest>(json!({
        "model": "m", "messages": [{"role": "wizard", "content": "x"}]
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown variant `wizard`"), "{err}");
}

#[test]
fn cloning_shares_the_prompt() {
    let request: LlmRequest = serde_json::from_value(realistic_request()).unwrap();
    let clone = request.clone();
    assert!(std::sync::Arc::ptr_eq(&request.messages, &clone.messages));
    assert!(!request.params.extra.is_empty());
    assert!(tollgate_core::ExtraParams::ptr_eq(
        &request.params.extra,
        &clone.params.extra
    ));
}

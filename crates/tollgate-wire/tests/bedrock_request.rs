//! The Converse body for what the OpenAI shape says beyond the common case: `tool_choice: none`,
//! model families' own fields, system parts with cache marks, and the caller's Converse fields.
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_RequestSyntax>

use serde_json::{Value, json};
use tollgate_core::LlmRequest;
use tollgate_wire::bedrock::{decode_answer, encode_request};

fn encoded(body: Value) -> Result<Value, String> {
    let request: LlmRequest = serde_json::from_value(body).unwrap();
    encode_request(&request).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

fn tool() -> Value {
    json!([{ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } }])
}

#[test]
fn tool_choice_none_leaves_the_tools_out_unless_the_conversation_holds_calls() {
    let body = encoded(json!({
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "messages": [ { "role": "user", "content": "Hi" } ],
        "tools": tool(), "tool_choice": "none"
    }))
    .unwrap();
    assert!(body.get("toolConfig").is_none());

    let refused = encoded(json!({
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "messages": [
            { "role": "user", "content": "Hi" },
            { "role": "assistant", "tool_calls": [ { "id": "t1", "type": "function", "function": { "name": "f", "arguments": "{}" } } ] },
            { "role": "tool", "tool_call_id": "t1", "content": "done", "status": "error" }
        ],
        "tools": tool(), "tool_choice": "none"
    }))
    .unwrap_err();
    assert!(refused.starts_with("tool_choice none"), "{refused}");

    let body = encoded(json!({
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "messages": [
            { "role": "user", "content": "Hi" },
            { "role": "assistant", "tool_calls": [ { "id": "t1", "type": "function", "function": { "name": "f", "arguments": "" } } ] },
            { "role": "tool", "tool_call_id": "t1", "content": "done", "status": "error" }
        ],
        "tools": tool(), "tool_choice": "required"
    }))
    .unwrap();
    assert_eq!(body["toolConfig"]["toolChoice"], json!({ "any": {} }));
    assert_eq!(
        body["messages"][1]["content"][0]["toolUse"]["input"],
        json!({})
    );
    assert_eq!(
        body["messages"][2]["content"][0],
        json!({ "toolResult": { "toolUseId": "t1", "content": [ { "text": "done" } ], "status": "error" } })
    );
}

#[test]
fn model_families_get_their_own_fields() {
    let body = encoded(json!({
        "model": "us.amazon.nova-pro-v1:0",
        "messages": [ { "role": "user", "content": "Hi" } ],
        "top_k": 20,
        "additionalModelRequestFields": { "custom": true }
    }))
    .unwrap();
    assert_eq!(
        body["additionalModelRequestFields"],
        json!({ "inferenceConfig": { "topK": 20 }, "custom": true })
    );

    // Claude's own thinking object goes to the model as it came; an unknown effort is refused.
    let body = encoded(json!({
        "model": "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "messages": [ { "role": "user", "content": "Hi" } ],
        "thinking": { "type": "enabled", "budget_tokens": 1024 }
    }))
    .unwrap();
    assert_eq!(
        body["additionalModelRequestFields"],
        json!({ "thinking": { "type": "enabled", "budget_tokens": 1024 } })
    );
    let refused = encoded(json!({
        "model": "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "messages": [ { "role": "user", "content": "Hi" } ],
        "reasoning_effort": "extreme"
    }))
    .unwrap_err();
    assert!(refused.starts_with("reasoning_effort"), "{refused}");
}

#[test]
fn system_parts_keep_their_cache_marks_and_converse_fields_pass() {
    let body = encoded(json!({
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "messages": [
            { "role": "system", "content": [
                { "type": "text", "text": "A long policy.", "cache_control": { "type": "ephemeral" } },
                { "type": "text", "text": "Today is Monday." }
            ] },
            { "role": "user", "content": "Hi", "cache_control": { "type": "ephemeral" } }
        ],
        "user": "alice",
        "requestMetadata": { "team": "search" },
        "performanceConfig": { "latency": "optimized" },
        "additionalModelResponseFieldPaths": ["/stop_sequence"]
    }))
    .unwrap();
    assert_eq!(
        body,
        json!({
            "messages": [ { "role": "user", "content": [ { "text": "Hi" }, { "cachePoint": { "type": "default" } } ] } ],
            "system": [
                { "text": "A long policy." },
                { "cachePoint": { "type": "default" } },
                { "text": "Today is Monday." }
            ],
            "requestMetadata": { "user": "alice", "team": "search" },
            "performanceConfig": { "latency": "optimized" },
            "additionalModelResponseFieldPaths": ["/stop_sequence"]
        })
    );
}

#[test]
fn an_empty_assistant_turn_and_bad_arguments_are_refused_by_place() {
    let refused = encoded(json!({
        "model": "m",
        "messages": [ { "role": "user", "content": "Hi" }, { "role": "assistant", "content": "" } ]
    }))
    .unwrap_err();
    assert!(refused.starts_with("messages[1]"), "{refused}");
    let refused = encoded(json!({
        "model": "m",
        "messages": [ { "role": "assistant", "tool_calls": [ { "id": "t", "type": "function", "function": { "name": "f", "arguments": "{" } } ] } ]
    }))
    .unwrap_err();
    assert!(
        refused.starts_with("messages[0].tool_calls[0].function.arguments"),
        "{refused}"
    );
}

#[test]
fn an_answer_without_content_is_not_a_converse_answer() {
    assert!(decode_answer(br#"{"output": {}}"#, "m").is_err());
    assert!(decode_answer(b"not json", "m").is_err());
    let answer = decode_answer(
        br#"{"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},"stopReason":"model_context_window_exceeded","usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3},"additionalModelResponseFields":{"stop_sequence":null}}"#,
        "m",
    )
    .unwrap();
    assert_eq!(answer.finish_reason().map(|r| r.as_str()), Some("length"));
    assert_eq!(
        answer.extra.get("additionalModelResponseFields"),
        Some(&json!({ "stop_sequence": null }))
    );
}

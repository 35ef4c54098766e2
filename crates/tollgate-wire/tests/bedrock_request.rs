//! The Converse body for what the OpenAI shape says beyond the common case: `tool_choice: none`,
//! model families' own fields, system parts with cache marks, and the caller's Converse fields;
//! and whole bodies compared to the byte, fields in their order.
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_RequestSyntax>

use serde_json::{Value, json};
use tollgate_core::LlmRequest;
use tollgate_wire::bedrock::{decode_answer, encode_request};

fn encoded(body: Value) -> Result<Value, String> {
    let request: LlmRequest = serde_json::from_value(body).unwrap();
    encode_request(&request).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

/// The body `encode_request` writes for `body`, as text: compared to the byte, field order and
/// all (comparing `Value`s would not see the order).
fn written(body: Value) -> String {
    let request: LlmRequest = serde_json::from_value(body).unwrap();
    String::from_utf8(encode_request(&request).unwrap()).unwrap()
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
        "performanceConfig": { "latency": "standard" },
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
            "performanceConfig": { "latency": "standard" },
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

#[test]
fn a_whole_conversation_is_written_to_the_byte() {
    let written = written(json!({
        "model": "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "messages": [
            { "role": "system", "content": [
                { "type": "text", "text": "You are terse." },
                { "type": "text", "text": "Rules: \"quote\" them.", "cache_control": { "type": "ephemeral" } }
            ] },
            { "role": "user", "content": [
                { "type": "text", "text": "What is in this image?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" }, "cache_control": { "type": "ephemeral" } }
            ] },
            { "role": "user", "content": "And the weather in Paris?", "cache_control": { "type": "ephemeral" } },
            { "role": "developer", "content": "Use the tool." },
            { "role": "assistant", "content": "Checking.", "reasoning_content": "The user wants weather.", "reasoning_signature": "sig-1",
              "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "weather", "arguments": "{\"city\": \"Paris\", \"units\": \"c\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "time", "arguments": "" } }
              ] },
            { "role": "tool", "tool_call_id": "call_1", "content": [
                { "type": "text", "text": "18 C" },
                { "type": "json", "json": { "temp": 18, "sky": "clear" } }
            ] },
            { "role": "tool", "tool_call_id": "call_2", "content": "12:00", "status": "success" },
            { "role": "user", "content": "Thanks; in one line?" }
        ],
        "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": ["END"],
        "tools": [
            { "type": "function", "function": { "name": "weather", "description": "The weather in a city.",
              "parameters": { "type": "object", "properties": { "city": { "type": "string" }, "units": { "enum": ["c", "f"] } }, "required": ["city"] } },
              "cache_control": { "type": "ephemeral" } },
            { "type": "function", "function": { "name": "time" } }
        ],
        "tool_choice": { "type": "function", "function": { "name": "weather" } },
        "user": "u-42", "seed": 7, "stream": true,
        "requestMetadata": { "team": "search" },
        "guardrailConfig": { "guardrailIdentifier": "g-1", "guardrailVersion": "2" },
        "reasoning_effort": "medium",
        "additionalModelRequestFields": { "top_k": 40, "anthropic_beta": ["b-1"] },
        "x_vendor": { "b": 1, "a": 2 }
    }));
    // Turns of one role in a row are one turn (tool results and the next words, too), system and
    // developer messages go to `system` wherever they stood, and the fields come in this order.
    let expected = json!({
        "messages": [
            { "role": "user", "content": [
                { "text": "What is in this image?" },
                { "image": { "format": "png", "source": { "bytes": "iVBORw0KGgo=" } } },
                { "cachePoint": { "type": "default" } },
                { "text": "And the weather in Paris?" },
                { "cachePoint": { "type": "default" } }
            ] },
            { "role": "assistant", "content": [
                { "reasoningContent": { "reasoningText": { "text": "The user wants weather.", "signature": "sig-1" } } },
                { "text": "Checking." },
                { "toolUse": { "toolUseId": "call_1", "name": "weather", "input": { "city": "Paris", "units": "c" } } },
                { "toolUse": { "toolUseId": "call_2", "name": "time", "input": {} } }
            ] },
            { "role": "user", "content": [
                { "toolResult": { "toolUseId": "call_1", "content": [ { "text": "18 C" }, { "json": { "temp": 18, "sky": "clear" } } ] } },
                { "toolResult": { "toolUseId": "call_2", "content": [ { "text": "12:00" } ], "status": "success" } },
                { "text": "Thanks; in one line?" }
            ] }
        ],
        "system": [
            { "text": "You are terse." },
            { "text": "Rules: \"quote\" them." },
            { "cachePoint": { "type": "default" } },
            { "text": "Use the tool." }
        ],
        "inferenceConfig": { "maxTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"] },
        "toolConfig": {
            "tools": [
                { "toolSpec": { "name": "weather",
                    "inputSchema": { "json": { "type": "object", "properties": { "city": { "type": "string" }, "units": { "enum": ["c", "f"] } }, "required": ["city"] } },
                    "description": "The weather in a city." } },
                { "cachePoint": { "type": "default" } },
                { "toolSpec": { "name": "time", "inputSchema": { "json": { "type": "object", "properties": {} } } } }
            ],
            "toolChoice": { "tool": { "name": "weather" } }
        },
        "requestMetadata": { "user": "u-42", "team": "search" },
        "guardrailConfig": { "guardrailIdentifier": "g-1", "guardrailVersion": "2" },
        "additionalModelRequestFields": {
            "thinking": { "type": "enabled", "budget_tokens": 2048 },
            "top_k": 40,
            "anthropic_beta": ["b-1"],
            "x_vendor": { "b": 1, "a": 2 }
        }
    });
    assert_eq!(written, expected.to_string());
}

#[test]
fn the_callers_request_metadata_and_user_merge_in_either_order() {
    // `user` after the caller's own `user`: the caller's stays; an empty system message is no
    // `system`; Nova's `top_k` goes in its own `inferenceConfig`.
    let written_after = written(json!({
        "model": "us.amazon.nova-pro-v1:0",
        "messages": [ { "role": "system", "content": [] }, { "role": "user", "content": "Hi" } ],
        "requestMetadata": { "team": "a", "user": "theirs" }, "user": "ours", "top_k": 20,
        "performanceConfig": { "latency": "standard" }, "tool_choice": "auto", "tools": []
    }));
    let expected = json!({
        "messages": [ { "role": "user", "content": [ { "text": "Hi" } ] } ],
        "toolConfig": { "tools": [], "toolChoice": { "auto": {} } },
        "requestMetadata": { "team": "a", "user": "theirs" },
        "performanceConfig": { "latency": "standard" },
        "additionalModelRequestFields": { "inferenceConfig": { "topK": 20 } }
    });
    assert_eq!(written_after, expected.to_string());

    // `user` first: `requestMetadata` opens with it, and the caller's own `user` takes its place.
    // A model other than Claude gets `reasoning_effort` as it came; no stop sequences, no
    // `inferenceConfig`.
    let written_before = written(json!({
        "model": "meta.llama3-70b-instruct-v1:0",
        "messages": [ { "role": "user", "content": "Hi" } ],
        "user": "ours", "requestMetadata": { "user": "theirs", "team": "a" },
        "reasoning_effort": "high", "stop": []
    }));
    let expected = json!({
        "messages": [ { "role": "user", "content": [ { "text": "Hi" } ] } ],
        "requestMetadata": { "user": "theirs", "team": "a" },
        "additionalModelRequestFields": { "reasoning_effort": "high" }
    });
    assert_eq!(written_before, expected.to_string());
}

#[test]
fn a_tier_priced_above_the_model_is_refused_by_name_and_the_others_pass() {
    let ask = |extra: Value| {
        let mut body = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        encoded(body)
    };
    let error = ask(json!({ "serviceTier": { "type": "priority" } })).unwrap_err();
    assert!(
        error.starts_with("serviceTier.type \"priority\": priced above"),
        "{error}"
    );
    let error = ask(json!({ "performanceConfig": { "latency": "optimized" } })).unwrap_err();
    assert!(
        error.starts_with("performanceConfig.latency \"optimized\""),
        "{error}"
    );
    let body = ask(json!({ "serviceTier": { "type": "flex" }, "performanceConfig": { "latency": "standard" } })).unwrap();
    assert_eq!(body["serviceTier"], json!({ "type": "flex" }));
    assert_eq!(body["performanceConfig"], json!({ "latency": "standard" }));
}

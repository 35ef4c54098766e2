//! The answer's JSON is open-ended: whatever a provider sends, reading never panics, and what was
//! read writes back as the same JSON.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tollgate_core::{LlmRequest, LlmResponse};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Fields tollgate does not model, under names no modeled field has.
fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x_[a-z]{1,6}", any_json(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn with(mut object: Value, extra: Map<String, Value>) -> Value {
    object.as_object_mut().unwrap().extend(extra);
    object
}

/// A chat completion with unknown fields at every level and optional or null modeled fields.
fn completion() -> impl Strategy<Value = Value> {
    let call = (
        "[a-z0-9_]{0,10}",
        "[a-z_]{1,10}",
        ".{0,40}",
        extra_fields(),
        extra_fields(),
    )
        .prop_map(|(id, name, arguments, call_extra, function_extra)| {
            with(
                json!({ "id": id, "type": "function",
                        "function": with(json!({ "name": name, "arguments": arguments }), function_extra) }),
                call_extra,
            )
        });
    let message = (
        prop::option::of(prop::option::of(".{0,30}")),
        prop::option::of(prop::option::of(".{1,20}")),
        prop::collection::vec(call, 0..3),
        extra_fields(),
    )
        .prop_map(|(content, refusal, calls, extra)| {
            let mut message = json!({ "role": "assistant" });
            let fields = message.as_object_mut().unwrap();
            // Absent, null, or a value: each must come back as it was.
            for (key, value) in [("content", content), ("refusal", refusal)] {
                if let Some(value) = value {
                    fields.insert(key.into(), value.map_or(Value::Null, Value::from));
                }
            }
            fields.insert("tool_calls".into(), Value::from(calls));
            with(message, extra)
        });
    let choice = (
        message,
        prop::sample::select(vec![
            "stop",
            "length",
            "tool_calls",
            "content_filter",
            "function_call",
            "end_turn",
            "custom",
        ]),
        prop::option::of(any_json()),
        extra_fields(),
    );
    let usage = (
        0u64..1 << 40,
        0u64..1 << 40,
        prop::option::of(0u64..1 << 20),
        extra_fields(),
    );
    (
        prop::collection::vec(choice, 0..3),
        prop::option::of(usage),
        ".{0,20}",
        extra_fields(),
    )
        .prop_map(|(choices, usage, model, extra)| {
            let choices: Vec<Value> = choices
                .into_iter()
                .enumerate()
                .map(|(i, (message, reason, logprobs, extra))| {
                    let mut choice = json!({ "index": i, "message": message, "finish_reason": reason });
                    if let Some(logprobs) = logprobs {
                        choice["logprobs"] = logprobs;
                    }
                    with(choice, extra)
                })
                .collect();
            let mut completion = json!({ "id": "chatcmpl-x", "object": "chat.completion", "model": model, "choices": choices });
            if let Some((prompt, completion_tokens, cached, extra)) = usage {
                let mut usage = json!({ "prompt_tokens": prompt, "completion_tokens": completion_tokens,
                                        "total_tokens": prompt + completion_tokens });
                if let Some(cached) = cached {
                    usage["prompt_tokens_details"] = json!({ "cached_tokens": cached, "audio_tokens": 0 });
                }
                completion["usage"] = with(usage, extra);
            }
            with(completion, extra)
        })
}

/// A request with unknown fields at the top and in its messages.
fn request() -> impl Strategy<Value = Value> {
    let message = (
        prop::sample::select(vec!["user", "assistant", "tool", "system"]),
        ".{0,20}",
        extra_fields(),
    )
        .prop_map(|(role, text, extra)| with(json!({ "role": role, "content": text }), extra));
    (prop::collection::vec(message, 1..4), extra_fields())
        .prop_map(|(messages, extra)| with(json!({ "model": "m", "messages": messages }), extra))
}

proptest! {
    #[test]
    fn any_request_fields_go_out_as_they_came(wire in request()) {
        let request: LlmRequest = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(serde_json::to_value(&request).unwrap(), wire);
    }

    #[test]
    fn any_completion_writes_back_as_the_same_json(wire in completion()) {
        let answer: LlmResponse = serde_json::from_value(wire.clone()).unwrap();
        prop_assert_eq!(serde_json::to_value(&answer).unwrap(), wire);
    }

    #[test]
    fn any_bytes_read_as_an_answer_or_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<LlmResponse>(&bytes);
    }

    #[test]
    fn any_json_read_as_an_answer_or_a_typed_error(value in any_json()) {
        if let Ok(answer) = serde_json::from_value::<LlmResponse>(value) {
            // Whatever was read writes back and reads again the same.
            let again: LlmResponse = serde_json::from_value(serde_json::to_value(&answer).unwrap()).unwrap();
            prop_assert_eq!(again.choices, answer.choices);
            prop_assert_eq!(again.usage, answer.usage);
        }
    }
}

//! Every fixture through its API's home, both ways: an OpenAI answer read and written back is the
//! same JSON; an Anthropic answer reads into the usage, stop reason and tool calls the stack
//! needs, and writes back as a Messages answer with the same blocks. Whatever a caller sends,
//! each door's decoder gives a request or a typed refusal; and a Messages body passes through to
//! a Messages upstream byte for byte but for `model` and `max_tokens`.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tollgate_core::{FinishReason, MaxTokensName};
use tollgate_wire::{
    anthropic::messages,
    openai::{chat, embeddings},
};

const OPENAI: [&str; 7] = [
    "json_schema",
    "n2",
    "parallel_tool_calls",
    "reasoning_content_vllm",
    "reasoning_usage",
    "refusal",
    "tool_call",
];

const ANTHROPIC: [&str; 4] = ["cache_usage", "cache_write", "thinking", "tool_use"];

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn every_openai_answer_writes_back_as_the_json_it_came_as() {
    for name in OPENAI {
        let bytes = fixture(&format!("openai/{name}.json"));
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        let answer = chat::decode_answer(&bytes, "asked").unwrap();
        let written: Value = serde_json::from_slice(&chat::encode_answer(answer, "id")).unwrap();
        assert_eq!(written, sent, "{name}");
    }
}

#[test]
fn a_complete_answer_is_kept_as_its_bytes_and_one_that_lacks_a_field_is_written_again() {
    for name in OPENAI {
        let bytes = Bytes::from(fixture(&format!("openai/{name}.json")));
        let kept = chat::decode_kept_answer(&bytes, "asked").unwrap();
        // What the stack reads is the same typed answer either way.
        assert_eq!(
            kept.choices,
            chat::decode_answer(&bytes, "asked").unwrap().choices
        );
        let has_all = {
            let sent: Value = serde_json::from_slice(&bytes).unwrap();
            ["id", "object", "created"]
                .iter()
                .all(|f| sent.get(f).is_some())
                && sent["model"].as_str().is_some_and(|m| !m.is_empty())
        };
        assert_eq!(
            kept.extensions.get::<chat::ChatAnswer>().is_some(),
            has_all,
            "{name}"
        );
        if has_all {
            assert_eq!(
                chat::encode_answer(kept, "id"),
                bytes,
                "{name}: byte for byte"
            );
        }
    }
    let unnamed = Bytes::from_static(
        br#"{"id":"x","object":"chat.completion","created":1,"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
    );
    let answer = chat::decode_kept_answer(&unnamed, "asked").unwrap();
    assert!(answer.extensions.get::<chat::ChatAnswer>().is_none());
    let written: Value = serde_json::from_slice(&chat::encode_answer(answer, "id")).unwrap();
    assert_eq!(written["model"], "asked", "the asked model is written in");
}

#[test]
fn every_anthropic_answer_reads_what_the_stack_needs_and_writes_back_its_blocks() {
    for name in ANTHROPIC {
        let bytes = fixture(&format!("anthropic/{name}.json"));
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        let answer = messages::decode_answer(&bytes, "asked").unwrap();
        assert_eq!(
            Some(answer.usage),
            messages::anthropic_usage(&sent["usage"]),
            "{name}: usage, cache reads and writes included"
        );
        let blocks = sent["content"].as_array().unwrap();
        let tool_uses = blocks.iter().filter(|b| b["type"] == "tool_use").count();
        assert_eq!(
            answer.choices[0].message.tool_calls.len(),
            tool_uses,
            "{name}"
        );
        let stop = sent["stop_reason"].as_str().unwrap();
        let finish = answer.finish_reason();
        match stop {
            "tool_use" => assert_eq!(finish, Some(&FinishReason::ToolCalls), "{name}"),
            "end_turn" | "stop_sequence" => assert_eq!(finish, Some(&FinishReason::Stop)),
            "max_tokens" => assert_eq!(finish, Some(&FinishReason::Length)),
            other => panic!("{name}: a stop reason the fixtures do not hold: {other}"),
        }

        let written = messages::encode_answer(&answer, "id");
        assert_eq!(written["type"], "message", "{name}");
        assert_eq!(written["role"], "assistant", "{name}");
        assert_eq!(written["stop_reason"], sent["stop_reason"], "{name}");
        for tokens in [
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ] {
            let came = sent["usage"].get(tokens).cloned().unwrap_or(json!(0));
            assert_eq!(written["usage"][tokens], came, "{name}: {tokens}");
        }
        let kinds = |blocks: &Value| {
            blocks
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(&written["content"]),
            kinds(&sent["content"]),
            "{name}"
        );
        for (out, came) in written["content"].as_array().unwrap().iter().zip(blocks) {
            for field in ["text", "thinking", "signature", "id", "name", "input"] {
                assert_eq!(out.get(field), came.get(field), "{name}: {field}");
            }
        }
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Fields a caller may add beside the ones the stack reads, with names no API gives a meaning.
fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x_[a-z_]{1,8}", any_json(), 0..5)
        .prop_map(|map| map.into_iter().collect())
}

/// Whitespace a caller's encoder may put between tokens.
fn space() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_a_request_or_a_typed_refusal(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = chat::decode_request(&bytes);
        let _ = embeddings::decode_request(&bytes);
        let _ = messages::decode_request(Bytes::from(bytes), &Default::default());
    }

    #[test]
    fn any_json_is_a_request_or_a_typed_refusal(value in any_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = chat::decode_request(&bytes);
        let _ = embeddings::decode_request(&bytes);
        let _ = messages::decode_request(Bytes::from(bytes), &Default::default());
    }

    #[test]
    fn a_messages_body_passes_through_byte_for_byte_but_for_model_and_max_tokens(
        extra in extra_fields(),
        system in prop::option::of(any_json()),
        text in ".{0,40}",
        max_tokens in 1u32..100_000,
        settled in 1u32..100_000,
        gap in space(),
    ) {
        let mut fields = vec![
            ("model".to_owned(), json!("claude-caller")),
            ("max_tokens".to_owned(), json!(max_tokens)),
            ("messages".to_owned(), json!([{ "role": "user", "content": [
                { "type": "text", "text": text, "cache_control": { "type": "ephemeral" } }
            ] }])),
        ];
        let odd_system = system.is_some();
        if let Some(system) = system {
            fields.push(("system".to_owned(), system));
        }
        fields.extend(extra);
        let field = |(name, value): &(String, Value)| {
            format!("{gap}{}{gap}:{gap}{}", json!(name), value)
        };
        let body = format!("{{{}{gap}}}", fields.iter().map(field).collect::<Vec<_>>().join(","));
        let mut request = match messages::decode_request(Bytes::from(body.clone()), &Default::default()) {
            Ok(request) => request,
            // A system prompt of a shape the API does not take is refused: nothing to pass on.
            Err(refusal) if odd_system => {
                prop_assert_eq!(refusal.field.as_deref().map(|f| f.starts_with("system")), Some(true));
                return Ok(());
            }
            Err(refusal) => return Err(TestCaseError::fail(format!("{refusal}: {body}"))),
        };
        request.model = "claude-upstream".into();
        request.params.max_tokens = Some(settled);
        let sent = messages::encode_request(&request, 4_096, false).unwrap();
        let expected = body
            .replacen("\"claude-caller\"", "\"claude-upstream\"", 1)
            .replacen(&format!(":{gap}{max_tokens}"), &format!(":{gap}{settled}"), 1);
        prop_assert_eq!(String::from_utf8(sent).unwrap(), expected);
    }

    #[test]
    fn a_messages_request_to_a_chat_upstream_carries_none_of_what_only_messages_means(
        top_k in 1u32..500,
        text in ".{0,40}",
    ) {
        let body = json!({
            "model": "m", "max_tokens": 16, "top_k": top_k,
            "thinking": { "type": "enabled", "budget_tokens": 1024 },
            "metadata": { "user_id": "u-1", "trace": "t" },
            "system": [{ "type": "text", "text": "be brief", "cache_control": { "type": "ephemeral" } }],
            "messages": [{ "role": "user", "content": [
                { "type": "text", "text": text, "cache_control": { "type": "ephemeral" } }
            ] }],
        });
        let request = messages::decode_request(
            Bytes::from(serde_json::to_vec(&body).unwrap()),
            &Default::default(),
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(
            &chat::encode_request(&request, MaxTokensName::MaxTokens, false).unwrap(),
        )
        .unwrap();
        for field in ["top_k", "thinking", "metadata"] {
            prop_assert!(sent.get(field).is_none(), "{field} in {sent}");
        }
        prop_assert!(!sent.to_string().contains("cache_control"), "{sent}");
        prop_assert_eq!(&sent["user"], "u-1");
        prop_assert_eq!(&sent["max_tokens"], 16);
    }
}

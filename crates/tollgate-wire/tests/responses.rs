//! OpenAI's Responses API through its home, both ways: a caller's body read into the chat shape
//! item by item, what a translation drops or refuses, the bound's name, the cache key, the
//! Response object and its typed stream events (checked against the official client's types),
//! and real OpenAI answers and streams read back.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{
    FinishReason, LlmRequest, LlmResponse, MaxTokensName, ToolCall, Usage,
    stream::{StreamEvent, ToolCallDelta},
};
use tollgate_wire::{
    anthropic::messages,
    bedrock, gemini,
    openai::{chat, responses},
    sse::Decoder,
};

fn decode(body: &Value) -> LlmRequest {
    responses::decode_request(
        Bytes::from(serde_json::to_vec(body).unwrap()),
        &Default::default(),
    )
    .unwrap()
}

fn asked(request: &LlmRequest) -> &responses::ResponsesBody {
    request
        .extensions
        .get::<responses::ResponsesBody>()
        .unwrap()
}

fn chat_body(request: &LlmRequest) -> Value {
    serde_json::from_slice(&chat::encode_request(request, MaxTokensName::MaxTokens, false).unwrap())
        .unwrap()
}

/// A Response object with its clock reading taken out.
fn without_clock(bytes: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(bytes).unwrap();
    assert!(value["created_at"].as_u64().unwrap() > 1_700_000_000);
    value["created_at"] = json!(0);
    value
}

fn agent_call() -> Value {
    json!({
        "model": "gpt-5",
        "instructions": "You are a weather agent.",
        "input": [
            {"role": "user", "content": "Weather in Rome and Paris?"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Here is a map."},
                {"type": "input_image", "image_url": "https://example.com/map.png", "detail": "low"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two cities."}]},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Checking both.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_rome", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_paris", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_rome", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_paris", "output": [{"type": "input_text", "text": "rain"}]}
        ],
        "tools": [{"type": "function", "name": "weather", "description": "Weather by city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
        "tool_choice": {"type": "function", "name": "weather"},
        "parallel_tool_calls": false,
        "text": {"format": {"type": "json_schema", "name": "report", "schema": {"type": "object"}, "strict": true}},
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 300,
        "temperature": 0.2,
        "user": "u-7",
        "metadata": {"run": "42"},
        "store": false,
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "prompt_cache_key": "weather"
    })
}

#[test]
fn an_agent_call_translates_into_the_chat_shape_item_by_item() {
    let request = decode(&agent_call());
    assert_eq!(
        chat_body(&request),
        json!({
            "model": "gpt-5",
            "messages": [
                {"role": "system", "content": "You are a weather agent."},
                {"role": "user", "content": "Weather in Rome and Paris?"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Here is a map."},
                    {"type": "image_url", "image_url": {"url": "https://example.com/map.png", "detail": "low"}}
                ]},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_rome", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
                    {"id": "call_paris", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_rome"},
                {"role": "tool", "content": [{"type": "text", "text": "rain"}], "tool_call_id": "call_paris"}
            ],
            "temperature": 0.2,
            "max_tokens": 300,
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "report", "schema": {"type": "object"}, "strict": true}},
            "reasoning_effort": "low",
            "user": "u-7"
        })
    );
    let kept = asked(&request);
    assert!(!kept.store());
    assert_eq!(kept.previous_response_id(), None);
    assert_eq!(kept.field("max_output_tokens"), Some(&b"300"[..]));
    assert!(kept.hosted_tools().is_empty());
    assert_eq!(kept.input_items().len(), 8);
    assert_eq!(responses::check_translatable(&request), Ok(()));
}

#[test]
fn the_bound_keeps_its_name_and_each_upstream_gets_its_own() {
    let request = decode(&json!({"model": "m", "input": "hi", "max_output_tokens": 1e3}));
    assert_eq!(request.params.max_tokens, Some(1000));
    let name = request.params.max_tokens_name.unwrap();
    assert_eq!(name, MaxTokensName::MaxOutputTokens);
    assert_eq!(name.names(), ["max_output_tokens"]);
    let newer = chat::encode_request(&request, MaxTokensName::MaxCompletionTokens, false).unwrap();
    let newer: Value = serde_json::from_slice(&newer).unwrap();
    assert_eq!(newer["max_completion_tokens"], 1000);
    assert!(newer.get("max_output_tokens").is_none() && newer.get("max_tokens").is_none());
    let messages: Value =
        serde_json::from_slice(&messages::encode_request(&request, 4096, false).unwrap()).unwrap();
    assert_eq!(messages["max_tokens"], 1000);
    assert!(messages.get("max_output_tokens").is_none());
    // The Responses name is not one a configuration can give a provider.
    assert!(serde_json::from_value::<MaxTokensName>(json!("max_output_tokens")).is_err());
}

#[test]
fn what_cannot_be_read_is_refused_naming_the_field() {
    let cases = [
        (json!({"input": "hi"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 5}), "input"),
        (
            json!({"model": "m", "input": "hi", "max_tokens": 5}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "input": "hi", "max_completion_tokens": 5}),
            "max_completion_tokens",
        ),
        (json!({"model": "m", "input": "hi", "n": 2}), "n"),
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": 0.5}),
            "max_output_tokens",
        ),
        (json!({"model": "m", "input": "hi", "store": "no"}), "store"),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (json!({"model": "m", "input": ["hi"]}), "input[0]"),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            "input[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"name": "f"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "hi", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}),
            "text.format.schema",
        ),
        (
            json!({"model": "m", "input": "hi", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
        (
            json!({"model": "m", "input": "hi", "reasoning": {"effort": "huge"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m", "input": "hi", "metadata": {"n": 1}}),
            "metadata",
        ),
    ];
    for (body, field) in cases {
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        let refused = responses::decode_request(bytes, &Default::default()).unwrap_err();
        assert_eq!(refused.field.as_deref(), Some(field), "{body}: {refused}");
    }
    let twice = responses::decode_request(
        Bytes::from_static(br#"{"model": "m", "input": "a", "input": "b"}"#),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(twice.field.as_deref(), Some("input"));
    let not_json =
        responses::decode_request(Bytes::from_static(b"{\"model\""), &Default::default())
            .unwrap_err();
    assert_eq!(not_json.code, Some("invalid_json"));
}

#[test]
fn fields_with_no_chat_form_never_reach_a_translating_encoder() {
    let mut call = agent_call();
    call["service_tier"] = json!("flex");
    call["max_tool_calls"] = json!(3);
    // The Messages API has no response_format: only the verbosity stays.
    call["text"] = json!({"verbosity": "low"});
    // Gemini cannot be told not to call functions in parallel.
    call["parallel_tool_calls"] = json!(true);
    // Converse takes an image's bytes, not a URL.
    call["input"][1]["content"][1]["image_url"] = json!("data:image/png;base64,iVBORw0KGgo=");
    call["safety_identifier"] = json!("s-1");
    call["stream_options"] = json!({"include_obfuscation": false});
    let request = decode(&call);
    let never = [
        "include",
        "truncation",
        "service_tier",
        "max_tool_calls",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
        "run",
        "store",
        "include_obfuscation",
        "instructions",
        "max_output_tokens",
    ];
    let bodies = [
        (
            "chat",
            chat::encode_request(&request, MaxTokensName::MaxTokens, true).unwrap(),
        ),
        (
            "messages",
            messages::encode_request(&request, 4096, false).unwrap(),
        ),
        ("gemini", gemini::encode_request(&request).unwrap()),
        ("bedrock", bedrock::encode_request(&request).unwrap()),
    ];
    for (api, body) in bodies {
        let text = String::from_utf8(body).unwrap();
        for field in never {
            assert!(
                !text.contains(&format!("\"{field}\"")),
                "{api} was sent {field}: {text}"
            );
        }
    }
}

#[test]
fn a_translation_refuses_by_name_what_it_cannot_honour() {
    let with = |extra: Value| {
        let mut body = json!({"model": "m", "input": "hi"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        responses::check_translatable(&decode(&body))
    };
    let refused = [
        (
            json!({"tools": [{"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": ["vs"]}]}),
            "the built-in tool `file_search` runs only at OpenAI's Responses API",
        ),
        (
            json!({"tool_choice": {"type": "web_search_preview"}}),
            "tool_choice: the built-in tool `web_search_preview` runs only at OpenAI's Responses API",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/y.pdf"}]}]}),
            "input: an `input_file` by file_id or file_url has no form outside OpenAI's Responses API",
        ),
        (
            json!({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}),
            "input: an item of type `web_search_call` has no form outside OpenAI's Responses API",
        ),
        (
            json!({"prompt": {"id": "pmpt_1"}}),
            "prompt: has no form outside OpenAI's Responses API; send the call to a provider that serves it",
        ),
        (
            json!({"top_logprobs": 3}),
            "top_logprobs: has no form outside OpenAI's Responses API; send the call to a provider that serves it",
        ),
        (
            json!({"x_future": 1}),
            "x_future: has no form outside OpenAI's Responses API; send the call to a provider that serves it",
        ),
    ];
    for (extra, said) in refused {
        assert_eq!(with(extra.clone()), Err(said.to_owned()), "{extra}");
    }
    for allowed in [
        json!({"background": false}),
        json!({"top_logprobs": 0}),
        json!({"include": ["reasoning.encrypted_content"], "truncation": "auto", "service_tier": "flex", "max_tool_calls": 2}),
        json!({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}}),
    ] {
        assert_eq!(with(allowed.clone()), Ok(()), "{allowed}");
    }
    // A call from another door is never refused here.
    let from_chat = chat::decode_request(
        br#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "background": true}"#,
    )
    .unwrap();
    assert_eq!(responses::check_translatable(&from_chat), Ok(()));
}

#[test]
fn what_lives_at_the_provider_is_refused_at_the_door_whatever_the_provider() {
    let refused = |extra: Value| {
        let mut body = json!({"model": "m", "input": "hi"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
        responses::decode_request(body, &Default::default())
            .unwrap_err()
            .field
    };
    assert_eq!(
        refused(json!({"background": true})).as_deref(),
        Some("background")
    );
    assert_eq!(
        refused(json!({"conversation": "conv_1"})).as_deref(),
        Some("conversation")
    );
    assert_eq!(
        refused(json!({"input": [{"type": "item_reference", "id": "msg_1"}]})).as_deref(),
        Some("input")
    );
}

#[test]
fn calls_whose_answers_differ_do_not_share_a_cache_key() {
    use tollgate_cache::{Scope, cache_key};
    let key = |extra: Value| {
        let mut body = json!({"model": "m", "input": "hi"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        cache_key(&decode(&body), Scope::Shared, false)
    };
    let plain = key(json!({}));
    for differs in [
        json!({"include": ["message.output_text.logprobs"]}),
        json!({"tools": [{"type": "web_search"}]}),
        json!({"truncation": "auto"}),
        json!({"instructions": "Be brief."}),
        json!({"max_output_tokens": 20}),
        json!({"reasoning": {"effort": "high"}}),
        json!({"text": {"verbosity": "low"}}),
        json!({"prompt": {"id": "pmpt_1"}}),
        json!({"input": [{"role": "user", "content": "hi"}, {"type": "web_search_call", "id": "ws_1", "status": "completed"}]}),
    ] {
        assert_ne!(key(differs.clone()), plain, "{differs}");
    }
    // What only the stored response or the echo reads is not part of the answer.
    for same in [
        json!({"store": false}),
        json!({"metadata": {"run": "1"}}),
        json!({"prompt_cache_key": "k"}),
        json!({"safety_identifier": "s"}),
    ] {
        assert_eq!(key(same.clone()), plain, "{same}");
    }
}

#[test]
fn a_stored_conversation_continues_with_its_history_first() {
    let body = br#"{"model":"m","instructions":"Now in French.","previous_response_id":"resp_1","input":[{"role":"user","content":"And Paris?"}],"stream":false}"#;
    let mut request =
        responses::decode_request(Bytes::from_static(body), &Default::default()).unwrap();
    assert_eq!(asked(&request).previous_response_id(), Some("resp_1"));
    let history = vec![
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Rome?"}]}),
        json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "weather", "arguments": "{}", "status": "completed"}),
        json!({"type": "function_call_output", "call_id": "c1", "output": "sunny"}),
        json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]}),
    ];
    responses::continue_from(&mut request, history.clone()).unwrap();
    assert_eq!(
        chat_body(&request)["messages"],
        json!([
            {"role": "system", "content": "Now in French."},
            {"role": "user", "content": [{"type": "text", "text": "Rome?"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And Paris?"}
        ])
    );
    let mut items = history;
    items.push(json!({"role": "user", "content": "And Paris?"}));
    assert_eq!(asked(&request).input_items(), items);
    let sent: Value =
        serde_json::from_slice(&responses::encode_request(&request, true).unwrap()).unwrap();
    assert_eq!(sent["input"], Value::from(items));
    assert_eq!(sent["previous_response_id"], Value::Null);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["instructions"], "Now in French.");
}

#[test]
fn a_string_input_is_one_user_item_and_a_stack_bound_is_added() {
    let mut request = decode(&json!({"model": "alias", "input": "hi", "temperature": null}));
    assert_eq!(
        asked(&request).input_items(),
        [
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
        ]
    );
    request.model = "gpt-5".into();
    request.params.max_tokens = Some(64);
    request.params.temperature = Some(0.5);
    assert_eq!(
        responses::encode_request(&request, false).unwrap(),
        br#"{"model":"gpt-5","input":"hi","temperature":0.5,"max_output_tokens":64}"#
    );
    let from_chat =
        chat::decode_request(br#"{"model": "m", "messages": [{"role": "user", "content": "x"}]}"#)
            .unwrap();
    assert!(responses::encode_request(&from_chat, false).is_err());
}

#[test]
fn a_real_openai_answer_reads_into_the_stack_answer() {
    let body = include_bytes!("fixtures/responses/function_call.json");
    let answer = responses::decode_answer(body, "asked").unwrap();
    assert_eq!(answer.model, "gpt-4.1-2025-04-14");
    assert_eq!(
        answer.extra["id"],
        "resp_67ca09c5efe0819096d0511c92b8c890096610f474011cc0"
    );
    let message = &answer.choices[0].message;
    assert_eq!(
        message.reasoning.as_deref(),
        Some("**Checking the weather tool**")
    );
    assert_eq!(message.content, None);
    assert_eq!(
        message.tool_calls,
        [ToolCall::function(
            "call_unLAR8MvFNptuiZK6K6HCy5k",
            "get_current_weather",
            "{\"location\":\"Boston, MA\",\"unit\":\"celsius\"}"
        )]
    );
    assert_eq!(answer.finish_reason(), Some(&FinishReason::ToolCalls));
    assert_eq!(
        answer.usage,
        Usage::new(291, 23).with_cached_input(128).with_reasoning(7)
    );
    let incomplete = br#"{"model": "m", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hal"}]}]}"#;
    let incomplete = responses::decode_answer(incomplete, "m").unwrap();
    assert_eq!(incomplete.finish_reason(), Some(&FinishReason::Length));
    assert_eq!(incomplete.content(), "Hal");
    let failed = br#"{"status": "failed", "error": {"code": "server_error", "message": "boom"}, "output": []}"#;
    assert_eq!(
        responses::decode_answer(failed, "m").unwrap_err(),
        "the response failed: boom"
    );
}

fn tool_answer() -> LlmResponse {
    let mut answer = LlmResponse::new("gpt-5-2025", "Rome is sunny.")
        .with_usage(
            Usage::new(120, 40)
                .with_cached_input(100)
                .with_reasoning(12),
        )
        .with_finish_reason(FinishReason::ToolCalls);
    let message = &mut answer.first_choice_mut().message;
    message.reasoning = Some("Need Paris too.".into());
    message.tool_calls = vec![ToolCall::function(
        "call_p",
        "weather",
        "{\"city\":\"Paris\"}",
    )];
    answer
}

#[test]
fn the_response_object_is_written_as_openai_writes_it() {
    let request = decode(&agent_call());
    let written = responses::encode_answer(&tool_answer(), "resp_abc", asked(&request));
    assert_eq!(
        without_clock(&written),
        json!({
            "id": "resp_abc",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": "You are a weather agent.",
            "max_output_tokens": 300,
            "max_tool_calls": null,
            "model": "gpt-5-2025",
            "output": [
                {"id": "rs_abc_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Need Paris too."}]},
                {"id": "msg_abc_1", "type": "message", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Rome is sunny."}]},
                {"id": "fc_abc_2", "type": "function_call", "status": "completed",
                 "arguments": "{\"city\":\"Paris\"}", "call_id": "call_p", "name": "weather"}
            ],
            "parallel_tool_calls": false,
            "previous_response_id": null,
            "prompt_cache_key": "weather",
            "reasoning": {"effort": "low", "summary": "auto"},
            "safety_identifier": null,
            "service_tier": "default",
            "store": false,
            "temperature": 0.2,
            "text": {"format": {"type": "json_schema", "name": "report", "schema": {"type": "object"}, "strict": true}},
            "tool_choice": {"type": "function", "name": "weather"},
            "tools": [{"type": "function", "name": "weather", "description": "Weather by city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "auto",
            "usage": {
                "input_tokens": 120,
                "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 12},
                "total_tokens": 160
            },
            "user": "u-7",
            "metadata": {"run": "42"}
        })
    );
}

/// Each event's name and data.
fn events_of(out: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let (name, data) = event.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

/// `text` in two pieces, cut at a character's edge.
fn halves(text: &str) -> (&str, &str) {
    let mut at = text.len() / 2;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.split_at(at)
}

fn stream_of(answer: &LlmResponse) -> Vec<StreamEvent> {
    let message = &answer.choices[0].message;
    let mut events = vec![StreamEvent::Model(answer.model.clone())];
    if let Some(reasoning) = &message.reasoning {
        let (a, b) = halves(reasoning);
        for text in [a, b] {
            events.push(StreamEvent::Reasoning {
                choice: 0,
                text: text.into(),
            });
        }
    }
    if let Some(content) = &message.content {
        let (a, b) = halves(content);
        events.push(StreamEvent::text(a));
        events.push(StreamEvent::text(b));
    }
    for (i, call) in message.tool_calls.iter().enumerate() {
        let index = u32::try_from(i).unwrap();
        let arguments = &call.function.arguments;
        let (a, b) = halves(arguments);
        events.push(StreamEvent::ToolCall {
            choice: 0,
            call: ToolCallDelta::new(
                index,
                Some(call.id.clone()),
                Some(call.function.name.clone()),
                a,
            ),
        });
        events.push(StreamEvent::ToolCall {
            choice: 0,
            call: ToolCallDelta::new(index, None, None, b),
        });
    }
    if let Some(finish) = answer.finish_reason() {
        events.push(StreamEvent::finish(finish.clone()));
    }
    events.push(StreamEvent::Usage(answer.usage));
    events
}

#[test]
fn a_stream_is_written_as_openai_streams_it_and_completes_with_the_whole_response() {
    let request = decode(&agent_call());
    let answer = tool_answer();
    let mut writer = responses::ResponseEvents::new("resp_abc", asked(&request));
    let mut out = Vec::new();
    for event in stream_of(&answer) {
        writer.write(&event, &mut out);
    }
    writer.end(&mut out);
    let events = events_of(&out);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["output"], json!([]));
    assert_eq!(events[0].1["response"]["usage"], Value::Null);
    assert_eq!(
        events[11].1,
        json!({"type": "response.output_text.delta", "sequence_number": 11, "item_id": "msg_abc_1",
               "output_index": 1, "content_index": 0, "delta": "Rome is", "logprobs": []})
    );
    assert_eq!(
        events[16].1,
        json!({"type": "response.output_item.added", "sequence_number": 16, "output_index": 2,
               "item": {"id": "fc_abc_2", "type": "function_call", "status": "in_progress",
                        "arguments": "", "call_id": "call_p", "name": "weather"}})
    );
    assert_eq!(
        events[19].1,
        json!({"type": "response.function_call_arguments.done", "sequence_number": 19,
               "item_id": "fc_abc_2", "output_index": 2, "name": "weather",
               "arguments": "{\"city\":\"Paris\"}"})
    );
    // The stream's final response is the whole answer's.
    let whole = responses::encode_answer(&answer, "resp_abc", asked(&request));
    let mut completed = events[21].1["response"].clone();
    completed["created_at"] = json!(0);
    assert_eq!(completed, without_clock(&whole));
    assert_eq!(
        without_clock(writer.completed().unwrap()),
        without_clock(&whole)
    );
}

#[test]
fn a_stream_stopped_by_its_bound_ends_incomplete() {
    let request =
        decode(&json!({"model": "m", "input": "hi", "max_output_tokens": 2, "stream": true}));
    let mut writer = responses::ResponseEvents::new("resp_1", asked(&request));
    let mut out = Vec::new();
    writer.write(&StreamEvent::text("Hel"), &mut out);
    writer.write(&StreamEvent::finish(FinishReason::Length), &mut out);
    writer.end(&mut out);
    let events = events_of(&out);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(last["response"]["max_output_tokens"], 2);
}

#[test]
fn a_stream_that_fails_ends_with_error_then_response_failed() {
    let request = decode(&json!({"model": "m", "input": "hi", "stream": true}));
    let mut writer = responses::ResponseEvents::new("resp_1", asked(&request));
    let mut out = Vec::new();
    writer.write(&StreamEvent::text("Hel"), &mut out);
    let error = json!({"error": {"message": "upstream: overloaded (mid-stream)", "type": "server_error", "param": null, "code": "upstream_error"}});
    writer.fail(&error, &mut out);
    let events = events_of(&out);
    let n = events.len();
    assert_eq!(
        events[n - 2].1,
        json!({"type": "error", "sequence_number": n - 2, "code": "upstream_error",
               "message": "upstream: overloaded (mid-stream)", "param": null})
    );
    let failed = &events[n - 1].1["response"];
    assert_eq!(events[n - 1].0, "response.failed");
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        json!({"code": "server_error", "message": "upstream: overloaded (mid-stream)"})
    );
    assert_eq!(failed["output"][0]["content"][0]["text"], "Hel");
    assert!(writer.completed().is_none());
}

fn decoded(sse: &[u8], verbatim: bool) -> Vec<Result<StreamEvent, tollgate_core::LlmError>> {
    let mut decoder = Decoder::new(responses::ResponsesStream::default(), "openai", 1 << 20);
    if verbatim {
        decoder = decoder.verbatim();
    }
    let mut events = Vec::new();
    // In small pieces, as a network delivers them.
    for piece in sse.chunks(7) {
        decoder.feed(piece);
        while let Some(event) = decoder.next_event() {
            events.push(event);
        }
    }
    decoder.end();
    while let Some(event) = decoder.next_event() {
        events.push(event);
    }
    events
}

#[test]
fn a_real_openai_stream_reads_into_stream_events() {
    let text = decoded(include_bytes!("fixtures/responses/text.sse"), false);
    let text: Vec<StreamEvent> = text.into_iter().map(Result::unwrap).collect();
    let mut meta = tollgate_core::JsonMap::new();
    meta.insert(
        "id".into(),
        "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654".into(),
    );
    assert_eq!(
        text,
        [
            StreamEvent::Model("gpt-4.1-2025-04-14".into()),
            StreamEvent::Meta(meta),
            StreamEvent::text("Hi"),
            StreamEvent::text(" there!"),
            StreamEvent::finish(FinishReason::Stop),
            StreamEvent::Usage(Usage::new(37, 11)),
        ]
    );
    let calls = decoded(
        include_bytes!("fixtures/responses/function_call.sse"),
        false,
    );
    let calls: Vec<StreamEvent> = calls.into_iter().map(Result::unwrap).skip(2).collect();
    assert_eq!(
        calls,
        [
            StreamEvent::ToolCall {
                choice: 0,
                call: ToolCallDelta::new(
                    0,
                    Some("call_1234xyz".into()),
                    Some("get_weather".into()),
                    ""
                ),
            },
            StreamEvent::ToolCall {
                choice: 0,
                call: ToolCallDelta::new(0, None, None, "{\"")
            },
            StreamEvent::ToolCall {
                choice: 0,
                call: ToolCallDelta::new(0, None, None, "location\":\"Paris, France\"}"),
            },
            StreamEvent::finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage::new(57, 17)),
        ]
    );
}

#[test]
fn a_passed_through_stream_reaches_the_caller_byte_for_byte() {
    let sse = include_bytes!("fixtures/responses/text.sse");
    let request = decode(&json!({"model": "m", "input": "hi", "stream": true}));
    let mut writer = responses::ResponseEvents::new("resp_ours", asked(&request));
    let mut out = Vec::new();
    for event in decoded(sse, true) {
        writer.write(&event.unwrap(), &mut out);
    }
    writer.end(&mut out);
    assert_eq!(out, sse);
    let completed: Value = serde_json::from_slice(writer.completed().unwrap()).unwrap();
    assert_eq!(
        completed["id"],
        "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654"
    );
    assert_eq!(completed["status"], "completed");
}

#[test]
fn an_upstream_stream_failure_or_cut_is_a_typed_error() {
    let created = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"m\"}}\n\n";
    let limited = format!(
        "{created}event: error\ndata: {{\"type\":\"error\",\"sequence_number\":1,\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"param\":null}}\n\n"
    );
    let error = decoded(limited.as_bytes(), true)
        .pop()
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), tollgate_core::ErrorKind::RateLimited);
    let failed = format!(
        "{created}event: response.failed\ndata: {{\"type\":\"response.failed\",\"sequence_number\":1,\"response\":{{\"status\":\"failed\",\"error\":{{\"code\":\"server_error\",\"message\":\"boom\"}}}}}}\n\n"
    );
    let events = decoded(failed.as_bytes(), true);
    assert_eq!(events.iter().filter(|e| e.is_err()).count(), 1);
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        tollgate_core::ErrorKind::Server
    );
    let cut = decoded(created.as_bytes(), false)
        .pop()
        .unwrap()
        .unwrap_err();
    assert_eq!(cut.kind(), tollgate_core::ErrorKind::Server);
    assert!(
        cut.message().contains("before response.completed"),
        "{}",
        cut.message()
    );
}

// ---- what the official client accepts ----

const STATUSES: [&str; 6] = [
    "completed",
    "failed",
    "in_progress",
    "cancelled",
    "queued",
    "incomplete",
];

fn is_int(value: &Value) -> bool {
    value.as_u64().is_some()
}

/// The fields the client's `Response` requires, with their types.
fn check_response(response: &Value) {
    let string = |key: &str| assert!(response[key].is_string(), "{key}: {response}");
    string("id");
    string("model");
    assert_eq!(response["object"], "response");
    assert!(response["created_at"].is_number());
    assert!(STATUSES.contains(&response["status"].as_str().unwrap()));
    assert!(response["parallel_tool_calls"].is_boolean());
    assert!(response["tools"].is_array());
    assert!(response["tool_choice"].is_string() || response["tool_choice"].is_object());
    for item in response["output"].as_array().unwrap() {
        check_item(item);
    }
    let usage = &response["usage"];
    if !usage.is_null() {
        for pointer in [
            "/input_tokens",
            "/input_tokens_details/cached_tokens",
            "/input_tokens_details/cache_write_tokens",
            "/output_tokens",
            "/output_tokens_details/reasoning_tokens",
            "/total_tokens",
        ] {
            assert!(usage.pointer(pointer).is_some_and(is_int), "usage{pointer}");
        }
    }
}

fn check_item(item: &Value) {
    assert!(item["id"].is_string());
    match item["type"].as_str().unwrap() {
        "message" => {
            assert_eq!(item["role"], "assistant");
            assert!(
                ["in_progress", "completed", "incomplete"]
                    .contains(&item["status"].as_str().unwrap())
            );
            for part in item["content"].as_array().unwrap() {
                assert_eq!(part["type"], "output_text");
                assert!(part["text"].is_string() && part["annotations"].is_array());
            }
        }
        "function_call" => {
            for key in ["arguments", "call_id", "name"] {
                assert!(item[key].is_string(), "{key}: {item}");
            }
        }
        "reasoning" => {
            for part in item["summary"].as_array().unwrap() {
                assert_eq!(part["type"], "summary_text");
                assert!(part["text"].is_string());
            }
        }
        other => panic!("an item of type {other}"),
    }
}

fn check_event(event: &Value) {
    assert!(is_int(&event["sequence_number"]));
    let name = event["type"].as_str().unwrap();
    let has = |keys: &[&str]| {
        for key in keys {
            assert!(
                event.get(*key).is_some_and(|v| !v.is_null()),
                "{name} without {key}: {event}"
            );
        }
    };
    match name {
        "response.created"
        | "response.in_progress"
        | "response.completed"
        | "response.incomplete"
        | "response.failed" => check_response(&event["response"]),
        "response.output_item.added" | "response.output_item.done" => {
            has(&["output_index"]);
            check_item(&event["item"]);
        }
        "response.content_part.added" | "response.content_part.done" => {
            has(&["item_id", "output_index", "content_index", "part"]);
        }
        "response.output_text.delta" => has(&[
            "item_id",
            "output_index",
            "content_index",
            "delta",
            "logprobs",
        ]),
        "response.output_text.done" => has(&[
            "item_id",
            "output_index",
            "content_index",
            "text",
            "logprobs",
        ]),
        "response.reasoning_summary_part.added" | "response.reasoning_summary_part.done" => {
            has(&["item_id", "output_index", "summary_index", "part"]);
        }
        "response.reasoning_summary_text.delta" => {
            has(&["item_id", "output_index", "summary_index", "delta"])
        }
        "response.reasoning_summary_text.done" => {
            has(&["item_id", "output_index", "summary_index", "text"])
        }
        "response.function_call_arguments.delta" => has(&["item_id", "output_index", "delta"]),
        "response.function_call_arguments.done" => has(&["item_id", "output_index", "arguments"]),
        "error" => assert!(event["message"].is_string()),
        other => panic!("an event of type {other}"),
    }
}

/// Any JSON value, small.
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

/// A Responses field name, or one of the API's own, with any value.
fn any_field() -> impl Strategy<Value = (String, Value)> {
    let names = prop_oneof![
        Just("model"),
        Just("input"),
        Just("instructions"),
        Just("tools"),
        Just("tool_choice"),
        Just("text"),
        Just("reasoning"),
        Just("max_output_tokens"),
        Just("metadata"),
        Just("store"),
        Just("previous_response_id"),
        Just("stream"),
        Just("include"),
        Just("temperature"),
        Just("parallel_tool_calls"),
        Just("user"),
    ]
    .prop_map(str::to_owned);
    (prop_oneof![names, "[a-z_]{1,10}"], any_json())
}

/// A caller's plausible agent call: items of every kind, tools, and options.
fn agent_body() -> impl Strategy<Value = Value> {
    let text = ".{0,16}";
    let item = prop_oneof![
        text.prop_map(|t| json!({"role": "user", "content": t})),
        text.prop_map(|t| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]})),
        text.prop_map(|t| json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": t, "annotations": []}]})),
        ("[a-z]{1,6}", text).prop_map(|(id, a)| json!({"type": "function_call", "call_id": id, "name": "f", "arguments": a})),
        ("[a-z]{1,6}", text).prop_map(|(id, o)| json!({"type": "function_call_output", "call_id": id, "output": o})),
        Just(json!({"type": "reasoning", "id": "rs_1", "summary": []})),
    ];
    (
        prop::collection::vec(item, 1..6),
        prop::option::of(text),
        prop::option::of(1u32..5000),
        prop::option::of(0.0f64..2.0),
        any::<bool>(),
        prop::option::of(prop_oneof![Just("low"), Just("high")]),
        prop::option::of(prop_oneof![
            Just(json!("auto")),
            Just(json!("required")),
            Just(json!({"type": "function", "name": "f"}))
        ]),
    )
        .prop_map(
            |(input, instructions, max, temperature, store, effort, choice)| {
                let mut body = json!({
                    "model": "gpt-5", "input": input, "store": store,
                    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                });
                let mut set = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        body[key] = value;
                    }
                };
                set("instructions", instructions.map(Value::from));
                set("max_output_tokens", max.map(Value::from));
                set("temperature", temperature.map(Value::from));
                set("reasoning", effort.map(|e| json!({"effort": e})));
                set("tool_choice", choice);
                body
            },
        )
}

fn any_answer() -> impl Strategy<Value = LlmResponse> {
    (
        prop::option::of(".{0,24}"),
        prop::option::of(".{1,24}"),
        prop::collection::vec(("[a-z_]{1,8}", ".{0,16}"), 0..3),
        prop_oneof![
            Just(FinishReason::Stop),
            Just(FinishReason::Length),
            Just(FinishReason::ToolCalls),
            Just(FinishReason::ContentFilter)
        ],
        (0u64..100_000, 0u64..100_000, 0u64..1000, 0u64..1000),
    )
        .prop_map(
            |(text, reasoning, calls, finish, (input, output, cached, thought))| {
                let mut answer = LlmResponse::new("m", text.unwrap_or_default())
                    .with_finish_reason(finish)
                    .with_usage(
                        Usage::new(input, output)
                            .with_cached_input(cached)
                            .with_reasoning(thought),
                    );
                let message = &mut answer.first_choice_mut().message;
                message.reasoning = reasoning;
                message.tool_calls = calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| {
                        ToolCall::function(format!("call_{i}"), name, arguments)
                    })
                    .collect();
                answer
            },
        )
}

/// The Response object and every stream event written for `answer` to `body`.
fn written(body: &Value, answer: &LlmResponse) -> (Value, Vec<Value>) {
    let request = decode(body);
    let whole = responses::encode_answer(answer, "resp_p", asked(&request));
    let mut writer = responses::ResponseEvents::new("resp_p", asked(&request));
    let mut out = Vec::new();
    for event in stream_of(answer) {
        writer.write(&event, &mut out);
    }
    writer.end(&mut out);
    let events = events_of(&out).into_iter().map(|(_, data)| data).collect();
    (serde_json::from_slice(&whole).unwrap(), events)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_a_request_or_a_typed_refusal(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = responses::decode_request(Bytes::from(bytes), &Default::default());
    }

    #[test]
    fn any_body_is_a_request_or_a_typed_refusal(fields in prop::collection::vec(any_field(), 0..8), history in prop::collection::vec(any_json(), 0..3)) {
        let body = Value::Object(fields.into_iter().collect());
        if let Ok(mut request) = responses::decode_request(Bytes::from(serde_json::to_vec(&body).unwrap()), &Default::default()) {
            let _ = responses::check_translatable(&request);
            if responses::continue_from(&mut request, history).is_ok() {
                let _ = responses::encode_request(&request, true);
                let _ = chat::encode_request(&request, MaxTokensName::MaxTokens, false);
            }
        }
    }

    #[test]
    fn the_response_and_its_events_are_what_the_client_parses(body in agent_body(), answer in any_answer()) {
        let (whole, events) = written(&body, &answer);
        check_response(&whole);
        let mut completed = None;
        for (i, event) in events.iter().enumerate() {
            check_event(event);
            prop_assert_eq!(&event["sequence_number"], &json!(i));
            if event["type"] == "response.completed" || event["type"] == "response.incomplete" {
                completed = Some(event["response"].clone());
            }
        }
        let mut completed = completed.unwrap();
        completed["created_at"] = whole["created_at"].clone();
        prop_assert_eq!(completed, whole);
    }
}

/// The same checks by the official client's own types (pydantic, strict), on cases the
/// strategies above generate, when a Python with the `openai` package is at hand
/// (`TOLLGATE_PYTHON`; required with `TOLLGATE_REQUIRE_CLIENTS=1`).
#[test]
fn the_official_client_types_accept_what_is_written() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    use std::io::Write;

    let python = std::env::var_os("TOLLGATE_PYTHON").unwrap_or_else(|| "python3".into());
    let has_client = std::process::Command::new(&python)
        .args(["-c", "import openai.types.responses"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_client {
        let required = std::env::var("TOLLGATE_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "TOLLGATE_REQUIRE_CLIENTS=1 but {python:?} cannot import openai"
        );
        eprintln!("skipped: no Python with the openai client (set TOLLGATE_PYTHON)");
        return;
    }
    let mut runner = TestRunner::deterministic();
    let mut lines = Vec::new();
    let mut count = 0;
    for _ in 0..64 {
        let body = agent_body().new_tree(&mut runner).unwrap().current();
        let answer = any_answer().new_tree(&mut runner).unwrap().current();
        let (whole, events) = written(&body, &answer);
        let mut fail = Vec::new();
        let request = decode(&body);
        let mut writer = responses::ResponseEvents::new("resp_f", asked(&request));
        writer.write(&StreamEvent::text("x"), &mut fail);
        let error =
            json!({"error": {"message": "m", "type": "server_error", "param": null, "code": null}});
        writer.fail(&error, &mut fail);
        let failed = events_of(&fail).into_iter().map(|(_, data)| data);
        for (kind, payload) in std::iter::once(("response", whole))
            .chain(events.into_iter().chain(failed).map(|e| ("event", e)))
        {
            serde_json::to_writer(&mut lines, &json!([kind, payload])).unwrap();
            lines.push(b'\n');
            count += 1;
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/responses_shape.py");
    let mut child = std::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&lines).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.trim(), count.to_string());
}

#[test]
fn a_reasoning_effort_reaches_anthropic_as_a_thinking_budget() {
    let call = |bound: u32| {
        decode(&json!({
            "model": "claude",
            "input": "Why is the sky blue?",
            "reasoning": {"effort": "high"},
            "max_output_tokens": bound,
        }))
    };
    let body = messages::encode_request(&call(10_000), 4_096, false).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(body["max_tokens"], 10_000);
    assert!(body.get("reasoning_effort").is_none(), "{body}");
    // Thinking takes at most half the bound, and none where half is under the API's least.
    let body = messages::encode_request(&call(3_000), 4_096, false).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 1500})
    );
    let body = messages::encode_request(&call(2_000), 4_096, false).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body.get("thinking").is_none(), "{body}");
    assert!(body.get("reasoning_effort").is_none(), "{body}");
}

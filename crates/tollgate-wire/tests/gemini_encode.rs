//! Gemini's request encoder, which writes its JSON text directly, against the reference it
//! replaced (a `serde_json::Value` tree built and serialized, in `gemini_reference/`): for any
//! request, the same bytes or the same refusal.

mod gemini_reference;

use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{LlmRequest, Message};
use tollgate_wire::gemini;

/// A small JSON value, with objects that may hold the same key twice in their text.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z\"\\\\\u{e9}\u{1F600}\n ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(("[a-c]{1,2}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A JSON Schema of the shapes tools and `response_format` send, and some Gemini refuses.
fn schema() -> impl Strategy<Value = Value> {
    let types = prop_oneof![
        Just(json!("string")),
        Just(json!(["string", "null"])),
        Just(json!(["null", "integer"])),
        Just(json!(["string", "integer"])),
        Just(json!(["null"])),
    ];
    let leaf = prop::collection::vec(
        prop_oneof![
            types.prop_map(|t| ("type".to_owned(), t)),
            any::<bool>().prop_map(|b| ("nullable".to_owned(), Value::from(b))),
            Just(("description".to_owned(), json!("a \"thing\""))),
            Just(("additionalProperties".to_owned(), json!(false))),
            Just(("$schema".to_owned(), json!("x"))),
            Just(("strict".to_owned(), json!(true))),
            Just(("enum".to_owned(), json!(["a", "b"]))),
        ],
        0..5,
    )
    .prop_map(|pairs| Value::Object(pairs.into_iter().collect()));
    let leaf =
        prop_oneof![8 => leaf, 1 => Just(json!(true)), 1 => Just(json!({ "$ref": "#/$defs/a" }))];
    leaf.prop_recursive(3, 24, 3, |inner| {
        (
            inner.clone(),
            prop::collection::vec(("[a-c]", inner.clone()), 0..3),
            prop::option::of(inner.clone()),
            prop::option::of(prop::collection::vec(inner, 0..3)),
            any::<bool>(),
        )
            .prop_map(|(base, properties, items, any_of, first)| {
                let mut object = base.as_object().cloned().unwrap_or_default();
                let mut more = serde_json::Map::new();
                more.insert(
                    "properties".into(),
                    Value::Object(properties.into_iter().collect()),
                );
                if let Some(items) = items {
                    more.insert("items".into(), items);
                }
                if let Some(any_of) = any_of {
                    more.insert("anyOf".into(), any_of.into());
                }
                if first {
                    more.extend(object);
                    object = more;
                } else {
                    object.extend(more);
                }
                Value::Object(object)
            })
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z \"\\\\\u{e9}\n]{0,12}",
        Just("{\"ok\":true,\"ok\":1}".to_owned()),
        Just("[1, 2.50, \"x\"]".to_owned()),
        Just("42".to_owned()),
        Just(String::new()),
    ]
}

fn part() -> impl Strategy<Value = Value> {
    prop_oneof![
        40 => text().prop_map(|t| json!({ "type": "text", "text": t })),
        1 => Just(json!({ "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBO" } })),
        1 => Just(json!({ "type": "image_url", "image_url": { "url": "https://x.test/a/b.JPeG?q=.png#f", "detail": "low" } })),
        1 => Just(json!({ "type": "image_url", "image_url": { "url": "gs://b/c.pdf" } })),
        1 => Just(json!({ "type": "image_url", "image_url": { "url": "gs://b/noext" } })),
        1 => Just(json!({ "type": "image_url", "image_url": "https://x.test/i.webp" })),
        1 => Just(json!({ "type": "image_url", "image_url": { "url": "ftp://x" } })),
        1 => Just(json!({ "type": "input_audio", "input_audio": { "data": "AAA", "format": "mp3" } })),
        1 => Just(json!({ "type": "input_audio", "input_audio": { "data": "AAA" } })),
        1 => Just(json!({ "type": "file", "file": { "file_data": "data:application/pdf;base64,JVBE" } })),
        1 => Just(json!({ "type": "file", "file": { "file_id": "gs://b/f.txt" } })),
        1 => Just(json!({ "text": "typeless" })),
    ]
}

fn content() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        3 => text().prop_map(|t| Some(Value::from(t))),
        3 => prop::collection::vec(part(), 0..4).prop_map(|p| Some(Value::from(p))),
    ]
}

fn call() -> impl Strategy<Value = Value> {
    (
        0..3usize,
        prop::option::weighted(0.97, prop_oneof!["[a-z]{1,5}", Just("f\"n".to_owned())]),
        prop_oneof![
            3 => Just(None),
            3 => Just(Some(String::new())),
            3 => Just(Some(" ".to_owned())),
            3 => Just(Some("{\"city\":\"Paris\",\"n\":1.0,\"n\":2}".to_owned())),
            1 => Just(Some("{not json".to_owned())),
            3 => Just(Some("[1e2]".to_owned())),
        ],
        any::<bool>(),
    )
        .prop_map(|(id, name, arguments, signed)| {
            let id = if signed {
                format!("call_{id}__thought__sig{id}")
            } else {
                format!("call_{id}")
            };
            let mut function = json!({});
            if let Some(name) = name {
                function["name"] = name.into();
            }
            if let Some(arguments) = arguments {
                function["arguments"] = arguments.into();
            }
            json!({ "id": id, "type": "function", "function": function })
        })
}

fn message() -> impl Strategy<Value = Message> {
    let role = prop_oneof![
        Just("system"),
        Just("developer"),
        Just("user"),
        Just("assistant"),
        Just("tool"),
        Just("tool"),
        Just("function"),
    ];
    (
        role,
        content(),
        prop::collection::vec(call(), 0..3),
        prop_oneof![20 => 0..3usize, 1 => Just(3usize), 1 => Just(4usize)],
        prop::option::weighted(0.95, "[a-z]{1,3}"),
    )
        .prop_map(|(role, content, calls, id, name)| {
            let mut message = json!({ "role": role });
            if let Some(content) = content {
                message["content"] = content;
            }
            match role {
                "assistant" if !calls.is_empty() => message["tool_calls"] = calls.into(),
                "assistant" => message["reasoning_content"] = "hmm".into(),
                "tool" if id == 1 => message["tool_call_id"] = "call_1__thought__s".into(),
                "tool" if id < 4 => message["tool_call_id"] = format!("call_{id}").into(),
                "function" => {
                    if let Some(name) = name {
                        message["name"] = name.into();
                    }
                }
                _ => {}
            }
            serde_json::from_value(message).unwrap()
        })
}

fn tool() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (
            prop::option::of("[a-z]{1,4}"),
            prop::option::of(any_json()),
            prop::option::of(schema()),
        )
            .prop_map(|(name, description, parameters)| {
                let mut function = json!({});
                if let Some(name) = name {
                    function["name"] = name.into();
                }
                if let Some(description) = description {
                    function["description"] = description;
                }
                if let Some(parameters) = parameters {
                    function["parameters"] = parameters;
                }
                json!({ "type": "function", "function": function })
            }),
        1 => Just(json!({ "googleSearch": {} })),
        1 => Just(json!({ "codeExecution": {}, "type": 3 })),
        1 => Just(json!({ "type": "web_search" })),
        1 => Just(json!("search")),
    ]
}

/// One field of `extra`, of every kind the encoder maps, passes, drops or refuses.
fn field() -> impl Strategy<Value = (String, Value)> {
    let pair = |key: &'static str, value: BoxedStrategy<Value>| {
        value.prop_map(move |value| (key.to_owned(), value))
    };
    let efforts = prop_oneof![
        Just(json!("none")),
        Just(json!("minimal")),
        Just(json!("low")),
        Just(json!("medium")),
        Just(json!("high")),
        Just(json!("max")),
        Just(json!(3)),
    ];
    let formats = prop_oneof![
        Just(json!(null)),
        Just(json!({ "type": "text" })),
        Just(json!({ "type": "json_object" })),
        Just(json!({ "type": "xml" })),
        Just(json!({ "json_schema": {} })),
        Just(json!({ "type": "json_schema", "json_schema": {} })),
        schema().prop_map(
            |s| json!({ "type": "json_schema", "json_schema": { "name": "a", "schema": s } })
        ),
    ];
    let choices = prop_oneof![
        Just(json!(null)),
        Just(json!("auto")),
        Just(json!("required")),
        Just(json!("none")),
        Just(json!("sometimes")),
        Just(json!({ "type": "function", "function": { "name": "f" } })),
        Just(json!({ "type": "function" })),
    ];
    let thinking = prop_oneof![
        Just(json!({ "type": "enabled", "budget_tokens": 2048 })),
        Just(json!({ "type": "enabled" })),
        Just(json!({ "type": "disabled" })),
        Just(json!({ "type": "adaptive" })),
    ];
    let generation = prop_oneof![
        prop::collection::vec(
            (
                prop_oneof![
                    Just("topK"),
                    Just("temperature"),
                    Just("responseModalities"),
                    Just("thinkingConfig"),
                    Just("responseMimeType"),
                    Just("maxOutputTokens"),
                ],
                any_json()
            ),
            0..3
        )
        .prop_map(|pairs| Value::Object(
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        )),
        Just(json!([])),
    ];
    prop_oneof![
        pair("top_k", any_json().boxed()),
        pair("topK", any_json().boxed()),
        pair("presence_penalty", any_json().boxed()),
        pair("frequency_penalty", any_json().boxed()),
        pair("response_format", formats.boxed()),
        pair("reasoning_effort", efforts.boxed()),
        pair("thinking_config", any_json().boxed()),
        pair("thinkingConfig", any_json().boxed()),
        pair("thinking", thinking.boxed()),
        pair(
            "tools",
            prop_oneof![
                8 => prop::collection::vec(tool(), 0..4).prop_map(Value::from),
                1 => Just(json!({})),
            ]
            .boxed()
        ),
        pair("tool_choice", choices.boxed()),
        pair("toolConfig", any_json().boxed()),
        pair(
            "parallel_tool_calls",
            prop_oneof![Just(json!(true)), Just(json!(false))].boxed()
        ),
        pair("safetySettings", any_json().boxed()),
        pair("safety_settings", any_json().boxed()),
        pair("cachedContent", any_json().boxed()),
        pair("cached_content", any_json().boxed()),
        pair("labels", any_json().boxed()),
        pair("generationConfig", generation.boxed()),
        pair("stream", Just(json!(true)).boxed()),
        pair("user", Just(json!("u-1")).boxed()),
        pair(
            "cache_control",
            Just(json!({ "type": "ephemeral" })).boxed()
        ),
        pair("logit_bias", Just(json!({})).boxed()),
    ]
}

prop_compose! {
    fn request()(
        model in prop_oneof![Just("gemini-2.5-flash"), Just("gemini-3-pro-preview"), Just("models/gemini-3-flash")],
        calls in prop::option::weighted(0.8, Just(())),
        mut messages in prop::collection::vec(message(), 0..7),
        temperature in prop::option::of(prop_oneof![0.0..2.0f64, Just(0.3), Just(f64::NAN)]),
        top_p in prop::option::of(0.0..1.0f64),
        max_tokens in prop::option::of(any::<u32>()),
        stop in prop::collection::vec("[a-z\n]{0,3}", 0..2),
        seed in prop::option::of(any::<i64>()),
        n in prop::option::of(0..3u32),
        best_of in prop::option::weighted(0.3, prop_oneof![9 => 0..2u32, 1 => Just(2u32)]),
        top_logprobs in prop::option::weighted(0.05, 0..3u32),
        extra in prop::collection::vec(field(), 0..6).prop_shuffle(),
    ) -> LlmRequest {
        if calls.is_some() {
            // Calls for the tool messages to answer.
            let calls: Message = serde_json::from_value(json!({ "role": "assistant", "tool_calls": [
                { "id": "call_0", "type": "function", "function": { "name": "f", "arguments": "{}" } },
                { "id": "call_1__thought__s", "type": "function", "function": { "name": "g" } },
                { "id": "call_2", "type": "function", "function": { "name": "h", "arguments": "{\"a\":[1]}" } },
            ] }))
            .unwrap();
            messages.insert(0, calls);
        }
        let mut request = LlmRequest::new(model, messages);
        let params = &mut request.params;
        (params.temperature, params.top_p, params.max_tokens) = (temperature, top_p, max_tokens);
        (params.stop, params.seed, params.n) = (stop, seed, n);
        (params.best_of, params.top_logprobs) = (best_of, top_logprobs);
        for (key, value) in extra {
            params.set_extra(key, value);
        }
        request
    }
}

fn both(request: &LlmRequest) -> (Result<String, String>, Result<String, String>) {
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        gemini::encode_request(request).map(text),
        gemini_reference::encode_request(request).map(text),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_request_is_written_as_the_value_tree_wrote_it(request in request()) {
        let (written, reference) = both(&request);
        prop_assert_eq!(written, reference);
    }
}

/// Where a field comes in two spellings, or a schema says `nullable` beside a nullable type, the
/// later value is kept at the earlier one's place, as a JSON object built field by field kept it.
#[test]
fn a_field_sent_twice_keeps_the_first_place_and_the_last_value() {
    let mut request = LlmRequest::new("gemini-2.5-flash", vec![Message::user("Hi")]);
    for (key, value) in [
        ("safety_settings", json!([1])),
        ("top_k", json!(3)),
        ("labels", json!({ "a": "b" })),
        ("safetySettings", json!([2])),
        ("topK", json!(4)),
        ("presence_penalty", json!(0.5)),
        (
            "tools",
            json!([{ "type": "function", "function": { "name": "f", "parameters": {
                "type": "object", "properties": {
                    "a": { "nullable": false, "type": ["string", "null"], "x": 1 },
                    "b": { "type": ["null", "string"], "nullable": false }
                } } } }]),
        ),
    ] {
        request.params.set_extra(key, value);
    }
    let (written, reference) = both(&request);
    assert_eq!(written, reference);
    assert_eq!(
        written.unwrap(),
        r#"{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"safetySettings":[2],"labels":{"a":"b"},"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"a":{"nullable":true,"type":"string","x":1},"b":{"type":"string","nullable":false}}}}]}],"generationConfig":{"topK":4,"presencePenalty":0.5}}"#
    );
}

/// Tool results after a user turn of no parts join it, as the value tree's check (a user turn
/// whose parts are all function responses) let them; a system message between results does not
/// part them.
#[test]
fn tool_results_join_the_turn_before_when_it_holds_only_results() {
    let messages: Vec<Message> = serde_json::from_value(json!([
        { "role": "assistant", "tool_calls": [
            { "id": "a", "type": "function", "function": { "name": "f", "arguments": "{}" } }] },
        { "role": "user", "content": [] },
        { "role": "tool", "tool_call_id": "a", "content": "1" },
        { "role": "system", "content": "Be brief." },
        { "role": "tool", "tool_call_id": "a", "content": [{ "type": "text", "text": "{\"x\"" }, { "type": "text", "text": ":2}" }] },
        { "role": "function", "name": "g", "content": "no" },
    ]))
    .unwrap();
    let request = LlmRequest::new("gemini-2.5-flash", messages);
    let (written, reference) = both(&request);
    assert_eq!(written, reference);
    assert_eq!(
        written.unwrap(),
        r#"{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"content":1}}},{"functionResponse":{"name":"f","response":{"x":2}}},{"functionResponse":{"name":"g","response":{"content":"no"}}}]}],"systemInstruction":{"parts":[{"text":"Be brief."}]}}"#
    );
}

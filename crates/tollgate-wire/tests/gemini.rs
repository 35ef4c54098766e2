//! Gemini's wire format: the request written from the OpenAI shape, answers and streams read
//! back (fixtures under `fixtures/gemini/`, from the pages its README cites), whatever the
//! chunking, ending well only at their proper end.

use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{
    Choice, ErrorKind, FinishReason, LlmError, LlmRequest, LlmResponse, Message, Operation,
    REASONING_SIGNATURE, Usage,
    stream::{LlmStream, StreamEvent},
};
use tollgate_wire::{
    gemini::{self, GenerateStream, embeddings},
    sse::{Decode, Decoder},
};

const PAIRS: [&str; 7] = [
    "text",
    "function_call",
    "thinking",
    "candidates2",
    "repeated_finish",
    "safety",
    "blocked",
];

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/gemini/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn decode(bytes: &[u8], cuts: &[usize]) -> Vec<Result<StreamEvent, LlmError>> {
    let mut decoder: Box<dyn Decode> =
        Box::new(Decoder::new(GenerateStream::default(), "gemini", 1 << 20));
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([&bytes.len()]) {
        let cut = cut.clamp(from, bytes.len());
        decoder.feed(&bytes[from..cut]);
        from = cut;
        events.extend(std::iter::from_fn(|| decoder.next_event()));
    }
    decoder.end();
    events.extend(std::iter::from_fn(|| decoder.next_event()));
    events
}

fn assemble(events: Vec<Result<StreamEvent, LlmError>>) -> LlmResponse {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(LlmStream::from_events(events).collect())
        .unwrap()
}

/// What the choices say: text, reasoning, its signature, tool calls, finish.
fn said(choices: &[Choice]) -> Vec<Value> {
    choices
        .iter()
        .map(|c| {
            let m = &c.message;
            let calls: Vec<_> = m
                .tool_calls
                .iter()
                .map(|t| (&t.id, &t.function.name, &t.function.arguments))
                .collect();
            json!([
                c.index,
                m.content,
                m.reasoning,
                m.extra.get(REASONING_SIGNATURE),
                calls,
                c.finish_reason.as_ref().map(FinishReason::as_str)
            ])
        })
        .collect()
}

#[test]
fn every_stream_assembles_into_the_whole_answer() {
    for name in PAIRS {
        let whole = gemini::decode_answer(&fixture(&format!("{name}.json")), "asked").unwrap();
        let streamed = assemble(decode(&fixture(&format!("{name}.sse")), &[]));
        assert_eq!(said(&streamed.choices), said(&whole.choices), "{name}");
        assert_eq!(streamed.usage, whole.usage, "{name}");
        assert_eq!(streamed.model, whole.model, "{name}");
        assert_eq!(streamed.extra.get("id"), whole.extra.get("id"), "{name}");
    }
}

#[test]
fn an_answer_reads_with_its_calls_reasoning_usage_and_finish() {
    let calls = gemini::decode_answer(&fixture("function_call.json"), "asked").unwrap();
    assert_eq!(
        said(&calls.choices),
        [json!([
            0,
            "Checking both cities.",
            null,
            null,
            [
                [
                    "call_fc-7Yk2_0_0__thought__CiQB0e2Kb8sig1",
                    "get_weather",
                    r#"{"city":"Paris","unit":"celsius"}"#
                ],
                [
                    "call_fc-7Yk2_0_1",
                    "get_weather",
                    r#"{"city":"Zürich \"ZH\""}"#
                ]
            ],
            "tool_calls"
        ])]
    );
    // Thoughts are counted apart from the candidates: both are output.
    assert_eq!(calls.usage, Usage::new(120, 125).with_reasoning(85));
    assert_eq!(calls.model, "gemini-2.5-flash");
    assert_eq!(calls.extra["id"], "fc-7Yk2");

    let thinking = gemini::decode_answer(&fixture("thinking.json"), "asked").unwrap();
    assert_eq!(
        said(&thinking.choices),
        [json!([
            0,
            "There are four primes below 10.",
            "**Counting primes**\nI list them: 2, 3, 5, 7.",
            "EhsKGQHSig2",
            [],
            "stop"
        ])]
    );
    assert_eq!(
        thinking.usage,
        Usage::new(2_100, 340)
            .with_cached_input(2_048)
            .with_reasoning(310)
    );

    let text = gemini::decode_answer(&fixture("text.json"), "asked").unwrap();
    assert_eq!(text.choices[0].extra["avgLogprobs"], -0.21);
    let two = gemini::decode_answer(&fixture("candidates2.json"), "asked").unwrap();
    assert_eq!(
        two.choices
            .iter()
            .map(|c| c.finish_reason.clone())
            .collect::<Vec<_>>(),
        [Some(FinishReason::Stop), Some(FinishReason::Length)]
    );
    let safety = gemini::decode_answer(&fixture("safety.json"), "asked").unwrap();
    assert_eq!(safety.finish_reason(), Some(&FinishReason::ContentFilter));
    assert_eq!(
        safety.choices[0].extra["safetyRatings"][0]["category"],
        "HARM_CATEGORY_DANGEROUS_CONTENT"
    );
    let blocked = gemini::decode_answer(&fixture("blocked.json"), "asked").unwrap();
    assert_eq!(blocked.finish_reason(), Some(&FinishReason::ContentFilter));
    assert_eq!(blocked.extra["promptFeedback"]["blockReason"], "SAFETY");
    assert!(gemini::decode_answer(b"{}", "asked").is_err());
}

#[test]
fn a_stream_says_each_finish_once_at_its_close() {
    let events: Vec<StreamEvent> = decode(&fixture("repeated_finish.sse"), &[])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let finishes: Vec<&StreamEvent> = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Finish { .. }))
        .collect();
    assert_eq!(finishes, [&StreamEvent::finish(FinishReason::Stop)]);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::finish(FinishReason::Stop))
    );
    // A call arrives whole, as one piece.
    let calls: Vec<StreamEvent> = decode(&fixture("function_call.sse"), &[])
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| matches!(e, StreamEvent::ToolCall { .. }))
        .collect();
    assert_eq!(calls.len(), 2);
}

#[test]
fn a_stream_closed_before_every_candidate_finished_is_a_server_error() {
    let text = fixture("text.sse");
    let first = &text[..text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4];
    let mut events = decode(first, &[]);
    let error = events.pop().unwrap().unwrap_err();
    assert!(events.iter().all(Result::is_ok));
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(
        error.message(),
        "gemini: the upstream closed the stream without a finishReason for every candidate"
    );
    // An empty body is no answer either.
    assert!(decode(b"", &[]).pop().unwrap().is_err());
    // Two candidates: both must finish.
    let one = br#"data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP","index":0},{"content":{"parts":[{"text":"b"}]},"index":1}]}"#;
    assert!(
        decode(&[&one[..], b"\n\n"].concat(), &[])
            .pop()
            .unwrap()
            .is_err()
    );
}

#[test]
fn an_error_event_keeps_googles_status_as_its_kind() {
    let body = br#"data: {"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    let events = decode(&[&body[..], b"\n\n"].concat(), &[]);
    let error = events[0].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(events.len(), 1);
}

fn request(messages: Vec<Message>, extra: Value) -> LlmRequest {
    let mut request = LlmRequest::new("gemini-2.5-flash", messages);
    for (key, value) in extra.as_object().unwrap() {
        request.params.set_extra(key.clone(), value.clone());
    }
    request
}

fn message(value: Value) -> Message {
    serde_json::from_value(value).unwrap()
}

fn encoded(request: &LlmRequest) -> Value {
    serde_json::from_slice(&gemini::encode_request(request).unwrap()).unwrap()
}

#[test]
fn a_conversation_with_tools_images_and_settings_is_written_as_gemini_takes_it() {
    let messages = vec![
        Message::system("Be brief."),
        message(
            json!({ "role": "developer", "content": [{ "type": "text", "text": "Use tools." }] }),
        ),
        message(json!({ "role": "user", "content": [
            { "type": "text", "text": "Weather where these are?" },
            { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
            { "type": "image_url", "image_url": { "url": "https://example.com/tower.JPG?x=1", "detail": "low" } },
            { "type": "image_url", "image_url": { "url": "gs://bucket/scan.pdf" } }
        ] })),
        message(
            // A signature of another provider's (a conversation moved from Claude) is not sent.
            json!({ "role": "assistant", "content": "Checking.", "reasoning_content": "Hmm.",
            "reasoning_signature": "ErUBCkYIBhgCIkD-claude", "tool_calls": [
            { "id": "call_r_0_0__thought__sig-A", "type": "function",
              "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
            { "id": "call_r_0_1", "type": "function",
              "function": { "name": "get_time", "arguments": "" } }
        ] }),
        ),
        message(
            json!({ "role": "tool", "tool_call_id": "call_r_0_0__thought__sig-A", "content": "{\"temp\":21}" }),
        ),
        message(json!({ "role": "tool", "tool_call_id": "call_r_0_1", "content": "noon" })),
        Message::user("Thanks"),
    ];
    let mut request = request(
        messages,
        json!({
            "tools": [
                { "type": "function", "function": {
                    "name": "get_weather", "description": "Weather in a city", "strict": true,
                    "parameters": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "city": { "type": "string" },
                            "unit": { "type": ["string", "null"], "enum": ["c", "f", null] },
                            "additionalProperties": { "type": "boolean" }
                        },
                        "required": ["city"]
                    } } },
                { "type": "function", "function": { "name": "get_time" } },
                { "googleSearch": {} }
            ],
            "tool_choice": { "type": "function", "function": { "name": "get_weather" } },
            "top_k": 40,
            "presence_penalty": 0.5,
            "response_format": { "type": "json_schema", "json_schema": { "name": "w", "schema": {
                "type": "object", "properties": { "ok": { "type": "boolean" } }, "additionalProperties": false } } },
            "reasoning_effort": "low",
            "safety_settings": [{ "category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE" }],
            "user": "u-1",
            "stream_options": { "include_usage": true }
        }),
    )
    .with_temperature(0.2)
    .with_max_tokens(256)
    .with_seed(7);
    request.params.top_p = Some(0.9);
    request.params.stop = vec!["END".into()];
    request.params.n = Some(2);

    assert_eq!(
        encoded(&request),
        json!({
            "systemInstruction": { "parts": [{ "text": "Be brief." }, { "text": "Use tools." }] },
            "contents": [
                { "role": "user", "parts": [
                    { "text": "Weather where these are?" },
                    { "inlineData": { "mimeType": "image/png", "data": "iVBORw0KGgo=" } },
                    { "fileData": { "fileUri": "https://example.com/tower.JPG?x=1", "mimeType": "image/jpeg" } },
                    { "fileData": { "fileUri": "gs://bucket/scan.pdf", "mimeType": "application/pdf" } }
                ] },
                { "role": "model", "parts": [
                    { "text": "Checking." },
                    { "functionCall": { "name": "get_weather", "args": { "city": "Paris" } }, "thoughtSignature": "sig-A" },
                    { "functionCall": { "name": "get_time", "args": {} } }
                ] },
                { "role": "user", "parts": [
                    { "functionResponse": { "name": "get_weather", "response": { "temp": 21 } } },
                    { "functionResponse": { "name": "get_time", "response": { "content": "noon" } } }
                ] },
                { "role": "user", "parts": [{ "text": "Thanks" }] }
            ],
            "tools": [
                { "functionDeclarations": [
                    { "name": "get_weather", "description": "Weather in a city", "parameters": {
                        "type": "object",
                        "properties": {
                            "city": { "type": "string" },
                            "unit": { "type": "string", "nullable": true, "enum": ["c", "f", null] },
                            "additionalProperties": { "type": "boolean" }
                        },
                        "required": ["city"]
                    } },
                    { "name": "get_time" }
                ] },
                { "googleSearch": {} }
            ],
            "toolConfig": { "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": ["get_weather"] } },
            "generationConfig": {
                "temperature": 0.2, "topP": 0.9, "maxOutputTokens": 256, "stopSequences": ["END"],
                "candidateCount": 2, "seed": 7, "topK": 40, "presencePenalty": 0.5,
                "responseMimeType": "application/json",
                "responseSchema": { "type": "object", "properties": { "ok": { "type": "boolean" } } },
                "thinkingConfig": { "thinkingBudget": 1024, "includeThoughts": true }
            },
            "safetySettings": [{ "category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE" }]
        })
    );
}

#[test]
fn settings_map_by_their_kind() {
    let hi = || vec![Message::user("hi")];
    let config = |extra: Value| encoded(&request(hi(), extra))["generationConfig"].clone();
    assert_eq!(
        config(json!({ "response_format": { "type": "json_object" } })),
        json!({ "responseMimeType": "application/json" })
    );
    assert_eq!(
        config(json!({ "reasoning_effort": "none" })),
        json!({ "thinkingConfig": { "thinkingBudget": 0 } })
    );
    let mut three = request(hi(), json!({ "reasoning_effort": "high" }));
    three.model = "gemini-3-pro-preview".into();
    assert_eq!(
        encoded(&three)["generationConfig"],
        json!({ "thinkingConfig": { "thinkingLevel": "high", "includeThoughts": true } })
    );
    assert_eq!(
        config(
            json!({ "thinking_config": { "thinkingBudget": -1 }, "generationConfig": { "responseModalities": ["TEXT"] } })
        ),
        json!({ "thinkingConfig": { "thinkingBudget": -1 }, "responseModalities": ["TEXT"] })
    );
    // A call from the Messages door.
    assert_eq!(
        config(
            json!({ "thinking": { "type": "enabled", "budget_tokens": 2000 }, "metadata": { "user_id": "u" } })
        ),
        json!({ "thinkingConfig": { "thinkingBudget": 2000, "includeThoughts": true } })
    );
    assert_eq!(
        config(json!({ "thinking": { "type": "disabled" } })),
        json!({ "thinkingConfig": { "thinkingBudget": 0 } })
    );
    for (choice, mode) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
        assert_eq!(
            encoded(&request(hi(), json!({ "tool_choice": choice })))["toolConfig"],
            json!({ "functionCallingConfig": { "mode": mode } })
        );
    }
    let plain = encoded(&request(
        hi(),
        json!({ "parallel_tool_calls": true, "store": false }),
    ));
    assert_eq!(
        plain,
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "hi" }] }] })
    );
}

#[test]
fn what_gemini_cannot_take_is_refused_by_name() {
    let hi = || vec![Message::user("hi")];
    let refused = |request: LlmRequest| gemini::encode_request(&request).unwrap_err();
    let cases = [
        (
            json!({ "logit_bias": { "1": 2 } }),
            "logit_bias: has no Gemini form",
        ),
        (json!({ "logprobs": true }), "logprobs: has no Gemini form"),
        (
            json!({ "parallel_tool_calls": false }),
            "parallel_tool_calls: ",
        ),
        (
            json!({ "reasoning_effort": "max" }),
            "reasoning_effort: \"max\"",
        ),
        (
            json!({ "reasoning_effort": "low", "thinkingConfig": {} }),
            "thinkingConfig: reasoning_effort and a thinking config",
        ),
        (
            json!({ "response_format": { "type": "json_schema", "json_schema": { "schema": { "$ref": "#/$defs/a" } } } }),
            "response_format.json_schema.schema.$ref: Gemini resolves no schema references",
        ),
        (
            json!({ "tools": [{ "type": "web_search" }] }),
            "tools[0]: a web_search tool has no Gemini form",
        ),
        (
            json!({ "temperature_x": 1, "generationConfig": {} }),
            "temperature_x: has no Gemini form",
        ),
        (
            json!({ "top_k": 3, "generationConfig": { "topK": 4 } }),
            "generationConfig.topK: also set",
        ),
    ];
    for (extra, start) in cases {
        let error = refused(request(hi(), extra.clone()));
        assert!(error.starts_with(start), "{extra}: {error}");
    }
    let mut best = request(hi(), json!({}));
    best.params.best_of = Some(3);
    assert!(refused(best).starts_with("best_of:"));
    let orphan = vec![message(
        json!({ "role": "tool", "tool_call_id": "call_9", "content": "x" }),
    )];
    assert!(
        refused(request(orphan, json!({})))
            .starts_with("messages[0]: tool_call_id \"call_9\" answers no earlier tool call")
    );
    let ftp = vec![message(json!({ "role": "user", "content": [
        { "type": "image_url", "image_url": { "url": "ftp://host/a.png" } }] }))];
    assert_eq!(
        refused(request(ftp, json!({}))),
        "messages[0]: content[0].image_url.url: Gemini takes data: URLs, and gs:// or https:// URLs"
    );
    let audio_out = vec![message(
        json!({ "role": "user", "content": [{ "type": "refusal" }] }),
    )];
    assert_eq!(
        refused(request(audio_out, json!({}))),
        "messages[0]: content[0]: a refusal part has no Gemini form"
    );
}

#[test]
fn embeddings_go_as_a_batch_and_come_back_in_the_openai_shape() {
    let mut request = request(
        Vec::new(),
        json!({ "input": ["first", "second"], "dimensions": 3, "task_type": "RETRIEVAL_DOCUMENT", "encoding_format": "float" }),
    );
    request.model = "gemini-embedding-001".into();
    request.meta.operation = Operation::Embeddings;
    let body: Value =
        serde_json::from_slice(&embeddings::encode_request(&request).unwrap()).unwrap();
    let one = |text: &str| {
        json!({ "outputDimensionality": 3, "taskType": "RETRIEVAL_DOCUMENT", "model": "models/gemini-embedding-001",
                "content": { "parts": [{ "text": text }] } })
    };
    assert_eq!(body, json!({ "requests": [one("first"), one("second")] }));
    let answer =
        embeddings::decode_answer(&fixture("embeddings.json"), "gemini-embedding-001").unwrap();
    assert_eq!(
        Value::Object((*answer.extra).clone()),
        json!({ "object": "list", "data": [
            { "object": "embedding", "index": 0, "embedding": [0.013, -0.008, 0.041] },
            { "object": "embedding", "index": 1, "embedding": [0.002, 0.017, -0.029] }
        ] })
    );
    // The gateway writes it as OpenAI's answer.
    let written: Value =
        serde_json::from_slice(&tollgate_wire::openai::embeddings::encode_answer(&answer)).unwrap();
    assert_eq!(written["model"], "gemini-embedding-001");
    assert_eq!(written["data"][1]["embedding"][2], -0.029);

    let mut tokens = request.clone();
    tokens.params.set_extra("input", json!([[1, 2, 3]]));
    assert!(
        embeddings::encode_request(&tokens)
            .unwrap_err()
            .starts_with("input[0]:")
    );
}

proptest! {
    #[test]
    fn any_split_of_any_stream_assembles_the_same_answer(
        which in 0..PAIRS.len(),
        mut cuts in prop::collection::vec(0usize..2_000, 0..12),
    ) {
        let bytes = fixture(&format!("{}.sse", PAIRS[which]));
        cuts.sort_unstable();
        let whole = assemble(decode(&bytes, &[]));
        let split = assemble(decode(&bytes, &cuts));
        prop_assert!(
            whole.choices == split.choices && whole.usage == split.usage
                && whole.model == split.model && whole.extra == split.extra,
            "{} cut at {cuts:?}", PAIRS[which]
        );
    }

    #[test]
    fn any_bytes_decode_to_events_or_one_typed_error(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let events = decode(&bytes, &[bytes.len() / 2]);
        let first_error = events.iter().position(Result::is_err);
        prop_assert!(first_error.is_none_or(|at| at == events.len() - 1));
    }

    #[test]
    fn any_data_line_decodes_to_events_or_a_typed_error(data in ".{0,200}") {
        for event in decode(format!("data: {data}\n\n").as_bytes(), &[]) {
            if let Err(error) = event {
                prop_assert!(matches!(error.kind(), ErrorKind::Server | ErrorKind::RateLimited | ErrorKind::Overloaded));
            }
        }
    }
}

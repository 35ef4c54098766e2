//! Legacy text completions, both ways: a caller's body read and passed through as it came, the
//! upstream's answer and stream read, and an answer written for a caller, with exact JSON.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{
    Content, FinishReason, LlmResponse, MaxTokensName, Message, Operation, Quirks, Role, Usage,
    stream::StreamEvent,
};
use tollgate_wire::{
    openai::completions::{
        CompletionEvents, CompletionsBody, TextChunks, decode_answer, decode_request,
        encode_answer, encode_request,
    },
    sse::Decoder,
};

fn decode(body: &'static str) -> tollgate_core::LlmRequest {
    decode_request(Bytes::from_static(body.as_bytes())).unwrap()
}

fn refused_field(body: &'static str) -> String {
    decode_request(Bytes::from_static(body.as_bytes()))
        .unwrap_err()
        .field
        .unwrap()
}

fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn a_request_reads_its_prompt_bound_choices_and_keeps_the_rest_in_order() {
    let request = decode(
        r#"{"model": "base", "prompt": "Say this", "max_tokens": 7, "n": 2, "best_of": 3,
            "temperature": 0.5, "top_p": 0.9, "seed": -4, "stop": "\n", "echo": true,
            "logprobs": 2, "suffix": "!", "user": "u-1", "stream": false}"#,
    );
    assert_eq!(request.model.as_ref(), "base");
    assert_eq!(request.meta.operation, Operation::Completions);
    assert!(!request.meta.stream);
    assert_eq!(&*request.messages, [Message::user("Say this")]);
    let params = &request.params;
    assert_eq!(params.max_tokens, Some(7));
    assert_eq!(params.max_tokens_name, Some(MaxTokensName::MaxTokens));
    assert_eq!((params.n, params.best_of), (Some(2), Some(3)));
    assert_eq!(params.max_billed_output_tokens(), Some(21));
    assert_eq!((params.temperature, params.top_p), (Some(0.5), Some(0.9)));
    assert_eq!(params.seed, Some(-4));
    assert_eq!(params.stop, ["\n"]);
    let extra: Vec<(&str, &Value)> = params.extra.iter().map(|(k, v)| (k.as_str(), v)).collect();
    assert_eq!(
        extra,
        [
            ("echo", &json!(true)),
            ("logprobs", &json!(2)),
            ("suffix", &json!("!")),
            ("user", &json!("u-1")),
        ]
    );
    let kept = request.extensions.get::<CompletionsBody>().unwrap();
    assert_eq!(kept.field("max_tokens"), Some(&b"7"[..]));
}

#[test]
fn prompts_are_user_messages_text_or_tokens() {
    let strings = decode(r#"{"model": "m", "prompt": ["a", "b c"]}"#);
    assert_eq!(
        &*strings.messages,
        [Message::user("a"), Message::user("b c")]
    );

    let tokens = decode(r#"{"model": "m", "prompt": [1, 2, 3]}"#);
    let part = |tokens: Value| {
        Message::new(
            Role::User,
            Content::Parts(vec![json!({ "type": "tokens", "tokens": tokens })]),
        )
    };
    assert_eq!(&*tokens.messages, [part(json!([1, 2, 3]))]);

    let arrays = decode(r#"{"model": "m", "prompt": [[1], [2, 3]]}"#);
    assert_eq!(&*arrays.messages, [part(json!([1])), part(json!([2, 3]))]);
}

#[test]
fn malformed_fields_are_refused_by_name() {
    assert_eq!(refused_field(r#"{"prompt": "hi"}"#), "model");
    assert_eq!(refused_field(r#"{"model": "m"}"#), "prompt");
    assert_eq!(refused_field(r#"{"model": "m", "prompt": []}"#), "prompt");
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": {"a": 1}}"#),
        "prompt"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": ["a", [1]]}"#),
        "prompt"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": ["a", 1]}"#),
        "prompt[1]"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": [-1]}"#),
        "prompt[0]"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "max_tokens": 1.5}"#),
        "max_tokens"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "n": 0}"#),
        "n"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "best_of": "2"}"#),
        "best_of"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "max_completion_tokens": 5}"#),
        "max_completion_tokens"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "stream": "yes"}"#),
        "stream"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "stop": 3}"#),
        "stop"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "seed": 1.5}"#),
        "seed"
    );
    assert_eq!(
        refused_field(r#"{"model": "m", "prompt": "p", "model": "n"}"#),
        "model"
    );
    assert!(
        decode_request(Bytes::from_static(b"[1]"))
            .unwrap_err()
            .field
            .is_none()
    );
}

#[test]
fn nulls_ask_for_the_defaults() {
    let request = decode(r#"{"model": "m", "prompt": "p", "max_tokens": null, "n": null}"#);
    assert_eq!((request.params.max_tokens, request.params.n), (None, None));
}

#[test]
fn a_passed_through_body_is_the_callers_bytes_with_what_the_stack_settled() {
    let mut request = decode(r#"{"model": "fast", "prompt": "Hi", "echo": true, "stream": false}"#);
    request.model = "llama-base".into();
    request.params.max_tokens = Some(256); // the role's default, reserved by the limiter
    request.params.temperature = Some(0.2); // the role's temperature
    let body = encode_request(&request, false, &Quirks::OPENAI).unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"model": "llama-base", "prompt": "Hi", "echo": true, "stream": false,"max_tokens":256,"temperature":0.2}"#
    );
}

#[test]
fn a_streamed_body_asks_for_usage_and_keeps_the_callers_options() {
    let mut request = decode(
        r#"{"model": "m", "prompt": "Hi", "max_tokens": 9, "stream": true, "stream_options": {"include_obfuscation": false}}"#,
    );
    request.params.temperature = Some(1.0);
    let body = encode_request(&request, true, &Quirks::OPENAI).unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"model": "m", "prompt": "Hi", "max_tokens": 9, "stream": true, "stream_options": {"include_obfuscation":false,"include_usage":true},"temperature":1.0}"#
    );
    // Without stream options in the body: added.
    let request = decode(r#"{"model": "m", "prompt": "Hi", "stream": true}"#);
    let body = encode_request(&request, true, &Quirks::OPENAI).unwrap();
    assert_eq!(
        as_json(&body),
        json!({ "model": "m", "prompt": "Hi", "stream": true, "stream_options": { "include_usage": true } })
    );
    // A whole answer is asked for with no stream options.
    let request = decode(
        r#"{"model": "m", "prompt": "Hi", "stream": true, "stream_options": {"include_usage": true}}"#,
    );
    let body = encode_request(&request, false, &Quirks::OPENAI).unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"model": "m", "prompt": "Hi", "stream": false, "stream_options": null}"#
    );
}

#[test]
fn a_request_built_without_a_body_is_written_whole() {
    let mut request = tollgate_core::LlmRequest::new("m", vec![Message::user("Once")])
        .with_max_tokens(5)
        .with_temperature(0.0);
    request.meta.operation = Operation::Completions;
    request.params.set_extra("echo", json!(true));
    let body = encode_request(&request, true, &Quirks::OPENAI).unwrap();
    assert_eq!(
        as_json(&body),
        json!({
            "model": "m", "prompt": "Once", "temperature": 0.0, "max_tokens": 5, "echo": true,
            "stream": true, "stream_options": { "include_usage": true },
        })
    );
    let tokens = decode(r#"{"model": "m", "prompt": [[1, 2], [3]]}"#);
    let mut rebuilt = tollgate_core::LlmRequest::new("m", tokens.messages.clone());
    rebuilt.meta.operation = Operation::Completions;
    assert_eq!(
        as_json(&encode_request(&rebuilt, false, &Quirks::OPENAI).unwrap()),
        json!({ "model": "m", "prompt": [[1, 2], [3]] })
    );
}

const ANSWER: &str = r#"{"id": "cmpl-9", "object": "text_completion", "created": 1700000000, "model": "base", "system_fingerprint": "fp_1",
    "choices": [{"text": " there", "index": 0, "logprobs": {"tokens": [" there"], "token_logprobs": [-0.5], "top_logprobs": null, "text_offset": [2]}, "finish_reason": "length", "stop_reason": null}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}"#;

#[test]
fn an_upstream_answer_reads_text_finish_logprobs_and_usage() {
    let answer = decode_answer(ANSWER.as_bytes(), "asked").unwrap();
    assert_eq!(answer.model, "base");
    assert_eq!(answer.content(), " there");
    let choice = &answer.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        choice.logprobs.as_ref().unwrap()["token_logprobs"],
        json!([-0.5])
    );
    assert_eq!(choice.extra["stop_reason"], Value::Null);
    assert_eq!(answer.usage, Usage::new(2, 1));
    assert_eq!(answer.extra["id"], "cmpl-9");
    assert_eq!(answer.extra["system_fingerprint"], "fp_1");
    // Written back for a caller (a cache hit), it is the same answer.
    assert_eq!(
        as_json(&encode_answer(&answer, "x")),
        as_json(ANSWER.as_bytes())
    );

    assert_eq!(
        decode_answer(br#"{"model": "m"}"#, "m").unwrap_err(),
        "no choices"
    );
    assert!(decode_answer(br#"{"choices": [1]}"#, "m").is_err());
}

#[test]
fn an_answer_that_did_not_come_in_this_api_is_written_as_a_text_completion() {
    let answer = LlmResponse::new("sim", "simulated reply #1")
        .with_usage(Usage::new(4, 3))
        .with_finish_reason(FinishReason::Stop);
    let mut written = as_json(&encode_answer(&answer, "req-1"));
    assert!(written["created"].as_u64().unwrap() > 1_700_000_000);
    written.as_object_mut().unwrap().remove("created");
    assert_eq!(
        written,
        json!({
            "id": "cmpl-req-1", "object": "text_completion", "model": "sim",
            "choices": [{ "text": "simulated reply #1", "index": 0, "logprobs": null, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7 },
        })
    );
}

const STREAM: &str = concat!(
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"base\",\"choices\":[{\"text\":\"Once\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"base\",\"choices\":[{\"text\":\" upon\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n",
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"base\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
    "data: [DONE]\n\n",
);

fn read_stream(body: &[u8], chunk: usize, verbatim: bool) -> Result<Vec<StreamEvent>, String> {
    let mut decoder = Decoder::new(TextChunks::default(), "up", 1 << 16);
    if verbatim {
        decoder = decoder.verbatim();
    }
    let mut events = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        decoder.feed(piece);
        while let Some(event) = decoder.next_event() {
            events.push(event.map_err(|e| e.to_string())?);
        }
    }
    decoder.end();
    while let Some(event) = decoder.next_event() {
        events.push(event.map_err(|e| e.to_string())?);
    }
    Ok(events)
}

#[test]
fn a_stream_reads_text_finish_and_usage() {
    let events = read_stream(STREAM.as_bytes(), 7, false).unwrap();
    let mut meta = tollgate_core::JsonMap::new();
    meta.insert("id".into(), "cmpl-1".into());
    meta.insert("object".into(), "text_completion".into());
    meta.insert("created".into(), 1.into());
    assert_eq!(
        events,
        [
            StreamEvent::Model("base".into()),
            StreamEvent::Meta(meta),
            StreamEvent::text("Once"),
            StreamEvent::text(" upon"),
            StreamEvent::finish(FinishReason::Length),
            StreamEvent::Usage(Usage::new(3, 2)),
        ]
    );
}

#[test]
fn a_stream_cut_short_or_unfinished_is_an_error() {
    let cut = &STREAM[..STREAM.find("data: [DONE]").unwrap()];
    assert!(
        read_stream(cut.as_bytes(), 64, false)
            .unwrap_err()
            .contains("[DONE]")
    );
    let unfinished = concat!(
        "data: {\"choices\":[{\"text\":\"a\",\"index\":0,\"finish_reason\":null}]}\n\n",
        "data: [DONE]\n\n",
    );
    assert!(
        read_stream(unfinished.as_bytes(), 64, false)
            .unwrap_err()
            .contains("finish reason")
    );
}

fn written(events: &[StreamEvent], include_usage: bool) -> String {
    let mut writer = CompletionEvents::new("r", include_usage);
    let mut out = Vec::new();
    for event in events {
        writer.write(event, &mut out);
    }
    writer.end(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn a_stream_from_an_upstream_of_this_api_passes_on_as_it_came() {
    let events = read_stream(STREAM.as_bytes(), 5, true).unwrap();
    assert_eq!(written(&events, true), STREAM);
    // Without usage asked for, the usage chunk the stack asked for is left out.
    let without = STREAM.replace(
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"base\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "",
    );
    assert_eq!(written(&events, false), without);
}

#[test]
fn a_stream_from_elsewhere_is_written_as_text_completion_chunks() {
    let mut meta = tollgate_core::JsonMap::new();
    meta.insert("id".into(), "cmpl-7".into());
    meta.insert("created".into(), 5.into());
    let events = [
        StreamEvent::Model("sim".into()),
        StreamEvent::Meta(meta),
        StreamEvent::text("Hi"),
        StreamEvent::finish(FinishReason::Stop),
        StreamEvent::Usage(Usage::new(1, 1)),
    ];
    let head = r#""id":"cmpl-7","object":"text_completion","created":5,"model":"sim""#;
    assert_eq!(
        written(&events, true),
        format!(
            "data: {{{head},\"choices\":[{{\"text\":\"Hi\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}}]}}\n\n\
             data: {{{head},\"choices\":[{{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}}]}}\n\n\
             data: {{{head},\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}}}\n\n\
             data: [DONE]\n\n"
        )
    );
    assert!(!written(&events, false).contains("usage"));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 12] = [
    "model",
    "prompt",
    "max_tokens",
    "n",
    "best_of",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "echo",
];

proptest! {
    /// Whatever bytes come, the decoder answers with a request or a refusal, and a request it
    /// answers with encodes for an upstream, whole and streamed.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(request) = decode_request(Bytes::from(bytes)) {
            encode_request(&request, true, &Quirks::OPENAI).unwrap();
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        fields in prop::collection::vec((prop::sample::select(&FIELDS[..]), json_value()), 0..8),
        bound in prop::option::of(0u32..5000),
    ) {
        let object: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let body = serde_json::to_vec(&object).unwrap();
        if let Ok(mut request) = decode_request(Bytes::from(body)) {
            request.params.max_tokens = bound.or(request.params.max_tokens);
            for stream in [false, true] {
                let sent = encode_request(&request, stream, &Quirks::OPENAI).unwrap();
                let sent = as_json(&sent);
                prop_assert_eq!(&sent["model"], &json!(&*request.model));
                prop_assert_eq!(&sent["stream"], &json!(stream));
                if let Some(bound) = request.params.max_tokens {
                    prop_assert_eq!(&sent["max_tokens"], &json!(bound));
                }
            }
        }
    }
}

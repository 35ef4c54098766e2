//! ConverseStream's binary event stream: framed here with `aws-smithy-eventstream`'s own writer,
//! read by [`ConverseEvents`] whatever the chunking, and never a panic on bytes that are not one.
//! The events are the ConverseStream reference's
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>).

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{
    ErrorKind, FinishReason, LlmError, LlmResponse, Usage,
    stream::{LlmStream, StreamEvent},
};
use tollgate_wire::{bedrock::ConverseEvents, sse::Decode};

fn frame(out: &mut Vec<u8>, kind: &str, name: &str, payload: &Value) {
    let header = |name: &'static str, value: &str| {
        Header::new(name, HeaderValue::String(value.to_owned().into()))
    };
    let name_header = if kind == "exception" {
        ":exception-type"
    } else {
        ":event-type"
    };
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(header(name_header, name))
        .add_header(header(":content-type", "application/json"))
        .add_header(header(":message-type", kind));
    write_message_to(&message, out).unwrap();
}

fn body(events: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, payload) in events {
        frame(&mut out, "event", name, payload);
    }
    out
}

/// Text, signed reasoning and a tool call in pieces, then the stop and the usage.
fn fixture() -> Vec<u8> {
    body(&[
        ("messageStart", json!({ "role": "assistant" })),
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "reasoningContent": { "text": "Think." } } }),
        ),
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "reasoningContent": { "signature": "sig" } } }),
        ),
        ("contentBlockStop", json!({ "contentBlockIndex": 0 })),
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 1, "delta": { "text": "Hello" } }),
        ),
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 1, "delta": { "text": " there" } }),
        ),
        ("contentBlockStop", json!({ "contentBlockIndex": 1 })),
        (
            "contentBlockStart",
            json!({ "contentBlockIndex": 2, "start": { "toolUse": { "toolUseId": "t1", "name": "f" } } }),
        ),
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 2, "delta": { "toolUse": { "input": "{\"a\":" } } }),
        ),
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 2, "delta": { "toolUse": { "input": "1}" } } }),
        ),
        ("contentBlockStop", json!({ "contentBlockIndex": 2 })),
        ("messageStop", json!({ "stopReason": "tool_use" })),
        (
            "metadata",
            json!({ "usage": { "inputTokens": 10, "outputTokens": 20, "totalTokens": 40,
                                        "cacheWriteInputTokens": 10 }, "metrics": { "latencyMs": 5 } }),
        ),
    ])
}

fn decode(bytes: &[u8], cuts: &[usize], max_event: usize) -> Vec<Result<StreamEvent, LlmError>> {
    let mut decoder = ConverseEvents::new("bedrock", max_event);
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

#[test]
fn the_fixture_assembles_into_the_whole_answer() {
    let answer = assemble(decode(&fixture(), &[], 1 << 20));
    let message = &answer.choices[0].message;
    assert_eq!(message.content.as_deref(), Some("Hello there"));
    assert_eq!(message.reasoning.as_deref(), Some("Think."));
    assert_eq!(
        message.extra.get("reasoning_signature"),
        Some(&json!("sig"))
    );
    assert_eq!(message.tool_calls.len(), 1);
    assert_eq!(message.tool_calls[0].id, "t1");
    assert_eq!(message.tool_calls[0].function.arguments, "{\"a\":1}");
    assert_eq!(answer.finish_reason(), Some(&FinishReason::ToolCalls));
    assert_eq!(answer.usage, Usage::new(20, 20).with_cache_write(10));
    assert_eq!(
        answer.extra.get("metrics"),
        Some(&json!({ "latencyMs": 5 }))
    );
}

#[test]
fn a_frame_with_a_bad_checksum_or_a_stream_cut_short_is_one_server_error() {
    let mut bytes = fixture();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let events = decode(&bytes, &[], 1 << 20);
    assert!(matches!(events.last(), Some(Err(e)) if e.kind() == ErrorKind::Server));
    assert_eq!(events.iter().filter(|e| e.is_err()).count(), 1);

    let whole = fixture();
    let events = decode(&whole[..whole.len() - 1], &[], 1 << 20);
    let Some(Err(error)) = events.last() else {
        panic!("cut short")
    };
    assert!(error.message().contains("metadata"), "{}", error.message());
}

#[test]
fn exceptions_and_guardrails_are_typed() {
    let mut bytes = body(&[("messageStart", json!({ "role": "assistant" }))]);
    frame(
        &mut bytes,
        "exception",
        "throttlingException",
        &json!({ "message": "slow down" }),
    );
    let events = decode(&bytes, &[], 1 << 20);
    assert!(matches!(&events[..], [Err(e)] if e.kind() == ErrorKind::RateLimited));

    // A protocol-level error names itself in headers, with no payload.
    let header = |name: &'static str, value: &str| {
        Header::new(name, HeaderValue::String(value.to_owned().into()))
    };
    let mut bytes = body(&[("messageStart", json!({ "role": "assistant" }))]);
    let error = Message::new(Vec::new())
        .add_header(header(":message-type", "error"))
        .add_header(header(":error-code", "InternalServerException"))
        .add_header(header(":error-message", "An internal error occurred."));
    write_message_to(&error, &mut bytes).unwrap();
    let events = decode(&bytes, &[], 1 << 20);
    assert!(matches!(&events[..], [Err(e)] if e.kind() == ErrorKind::Server));

    let bytes = body(&[
        (
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "text": "Sorry." } }),
        ),
        (
            "messageStop",
            json!({ "stopReason": "guardrail_intervened" }),
        ),
        (
            "metadata",
            json!({ "usage": { "inputTokens": 1, "outputTokens": 1, "totalTokens": 2 } }),
        ),
    ]);
    let answer = assemble(decode(&bytes, &[], 1 << 20));
    assert_eq!(answer.finish_reason(), Some(&FinishReason::ContentFilter));
}

proptest! {
    #[test]
    fn any_split_of_the_fixture_assembles_the_same_answer(
        mut cuts in prop::collection::vec(0usize..2_000, 0..16),
    ) {
        let bytes = fixture();
        cuts.sort_unstable();
        let whole = assemble(decode(&bytes, &[], 1 << 20));
        let split = assemble(decode(&bytes, &cuts, 1 << 20));
        prop_assert!(
            whole.choices == split.choices && whole.usage == split.usage && whole.extra == split.extra,
            "cut at {cuts:?}"
        );
    }

    #[test]
    fn any_bytes_decode_to_events_or_one_typed_error(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        prefix in any::<bool>(),
        max_event in 16usize..1_024,
    ) {
        // Arbitrary bytes alone, and after a good start (so a frame's length and checksums are
        // reached, not only its prelude).
        let mut input = if prefix { fixture()[..200].to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let events = decode(&input, &[input.len() / 2], max_event);
        let errors = events.iter().filter(|e| e.is_err()).count();
        prop_assert_eq!(errors, 1, "a stream without its end ends in one error");
        prop_assert!(events.last().is_some_and(Result::is_err));
        for event in &events {
            if let Err(error) = event {
                prop_assert!(matches!(
                    error.kind(),
                    ErrorKind::Server | ErrorKind::RateLimited | ErrorKind::Overloaded
                        | ErrorKind::InvalidRequest | ErrorKind::Timeout | ErrorKind::Auth
                ));
            }
        }
    }
}

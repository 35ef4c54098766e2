//! Each API's stream read through its format, whatever the chunking, within its bounds, until
//! its proper end; and a Messages stream passed on byte for byte to a caller in the same API.

use proptest::prelude::*;
use tollgate_core::{
    ErrorKind, LlmError, LlmResponse, UpstreamError,
    stream::{LlmStream, StreamEvent},
};
use tollgate_wire::{
    anthropic::messages::{MessageEvents, MessageStream},
    openai::chat::Chunks,
    sse::{Decode, Decoder},
};

const FIXTURES: [(&str, bool); 10] = [
    ("openai/tool_call.sse", false),
    ("openai/json_schema.sse", false),
    ("openai/reasoning_usage.sse", false),
    ("openai/parallel_tool_calls.sse", false),
    ("openai/n2.sse", false),
    ("openai/refusal.sse", false),
    ("openai/reasoning_content_vllm.sse", false),
    ("anthropic/tool_use.sse", true),
    ("anthropic/thinking.sse", true),
    ("anthropic/cache_usage.sse", true),
];

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn decoder(anthropic: bool, max_event: usize) -> Box<dyn Decode> {
    if anthropic {
        Box::new(Decoder::new(MessageStream::default(), "up", max_event))
    } else {
        Box::new(Decoder::new(Chunks::default(), "up", max_event))
    }
}

/// Every event `bytes` decode to, fed in the pieces that `cuts` make, and the body's end.
fn decode(
    mut decoder: Box<dyn Decode>,
    bytes: &[u8],
    cuts: &[usize],
) -> Vec<Result<StreamEvent, LlmError>> {
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

fn decoded(anthropic: bool, body: &str, max_event: usize) -> Vec<Result<StreamEvent, LlmError>> {
    decode(decoder(anthropic, max_event), body.as_bytes(), &[])
}

fn assemble(events: Vec<Result<StreamEvent, LlmError>>) -> LlmResponse {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(LlmStream::from_events(events).collect())
        .unwrap()
}

fn last_error(events: &[Result<StreamEvent, LlmError>]) -> String {
    let last = events.last().expect("something was decoded");
    let error = last.as_ref().expect_err("the stream ends with an error");
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(
        events.iter().filter(|e| e.is_err()).count(),
        1,
        "one error, last"
    );
    error.message().to_owned()
}

#[test]
fn a_stream_ends_well_only_with_its_proper_end() {
    let text = r#"data: {"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
    let stop = r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    let openai = [
        (format!("{text}\n\n{stop}\n\n"), "before its end ([DONE])"),
        (
            format!("{text}\n\ndata: [DONE]\n\n"),
            "without a finish reason",
        ),
        ("data: [DONE]\n\n".to_owned(), "without a finish reason"),
    ];
    for (body, why) in openai {
        let message = last_error(&decoded(false, &body, 1 << 20));
        assert!(message.contains(why), "{body}: {message}");
    }
    let whole = decoded(
        false,
        &format!("{text}\n\n{stop}\n\ndata: [DONE]\n\n"),
        1 << 20,
    );
    assert!(whole.iter().all(Result::is_ok));

    // Two answers: both must finish.
    let two = r#"data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"},{"index":1,"delta":{"content":"b"}}]}"#;
    let message = last_error(&decoded(
        false,
        &format!("{two}\n\ndata: [DONE]\n\n"),
        1 << 20,
    ));
    assert!(message.contains("every answer"), "{message}");

    let start = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":3}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

"#;
    let message = last_error(&decoded(true, start, 1 << 20));
    assert!(message.contains("(message_stop)"), "{message}");
    let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert!(
        decoded(true, &format!("{start}{stop}"), 1 << 20)
            .iter()
            .all(Result::is_ok)
    );
}

#[test]
fn an_event_over_its_bound_ends_the_stream_without_holding_it() {
    let huge = format!("data: {{\"pad\":\"{}\"}}", "x".repeat(10_000));
    let message = last_error(&decoded(false, &huge, 4_096));
    assert!(
        message.contains("over the limit of 4096 bytes"),
        "{message}"
    );
    // The same event within a larger bound is read (and is no answer).
    let events = decoded(false, &format!("{huge}\n\n"), 1 << 20);
    assert!(!last_error(&events).contains("over the limit"));
}

#[test]
fn an_error_event_names_no_secret_and_keeps_its_kind() {
    let body = r#"data: {"type":"error","error":{"type":"overloaded_error","message":"node 10.1.2.3 with key sk-live-abcdefgh is busy"}}"#;
    let events = decoded(true, &format!("{body}\n\n"), 1 << 20);
    let error = events[0].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Overloaded);
    assert_eq!(
        error.message(),
        "up: the upstream is overloaded (mid-stream)"
    );
    let said = error.extensions().get::<UpstreamError>().unwrap();
    assert_eq!(said.error_type.as_deref(), Some("overloaded_error"));
    assert_eq!(said.message, None);
}

#[test]
fn a_messages_stream_passes_on_byte_for_byte_to_a_caller_in_the_same_api() {
    for (path, _) in FIXTURES.iter().filter(|(_, anthropic)| *anthropic) {
        let bytes = fixture(path);
        let decoder = Decoder::new(MessageStream::default(), "up", 1 << 20).verbatim();
        let events = decode(Box::new(decoder), &bytes, &[7, 300, 301, 1_000]);
        let mut writer = MessageEvents::new("msg_local".into());
        let mut out = Vec::new();
        for event in &events {
            writer.write(event.as_ref().unwrap(), &mut out);
        }
        writer.end(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(bytes).unwrap(),
            "{path}"
        );
        // What the stack reads of it is all there beside.
        let answer = assemble(events);
        assert!(
            !answer.choices.is_empty() && answer.usage.total() > 0,
            "{path}"
        );
    }
}

proptest! {
    #[test]
    fn any_split_of_any_fixture_assembles_the_same_answer(
        which in 0..FIXTURES.len(),
        mut cuts in prop::collection::vec(0usize..4_000, 0..12),
    ) {
        let (path, anthropic) = FIXTURES[which];
        let bytes = fixture(path);
        cuts.sort_unstable();
        let whole = assemble(decode(decoder(anthropic, 1 << 20), &bytes, &[]));
        let split = assemble(decode(decoder(anthropic, 1 << 20), &bytes, &cuts));
        prop_assert!(
            whole.choices == split.choices && whole.usage == split.usage
                && whole.model == split.model && whole.extra == split.extra,
            "{path} cut at {cuts:?}"
        );
        prop_assert!(!whole.choices.is_empty());
    }

    #[test]
    fn any_bytes_decode_to_events_or_typed_errors(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        anthropic in any::<bool>(),
    ) {
        let events = decode(decoder(anthropic, 1 << 20), &bytes, &[bytes.len() / 2]);
        // At most one error, and nothing after it.
        let first_error = events.iter().position(Result::is_err);
        prop_assert!(first_error.is_none_or(|at| at == events.len() - 1));
    }

    #[test]
    fn any_data_line_decodes_to_events_or_a_typed_error(data in ".{0,200}", anthropic in any::<bool>()) {
        let body = format!("data: {data}\n\n");
        for event in decoded(anthropic, &body, 1 << 20) {
            if let Err(error) = event {
                prop_assert_eq!(error.kind(), ErrorKind::Server);
            }
        }
    }
}

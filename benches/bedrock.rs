//! Bedrock's Converse translation beside the OpenAI pass-through, and SigV4 signing.
//!
//! - `wire_1KiB/<api>/encode_request`: a request (a system prompt and a 1 KiB user turn, a
//!   tool) written as the upstream's body: OpenAI's chat-completions body (tollgate's own shape,
//!   written out) beside Converse's (translated field by field).
//! - `wire_1KiB/<api>/decode_answer`: a 1 KiB answer's body read into tollgate's answer.
//! - `wire_1KiB/<api>/decode_stream`: the same answer streamed in 16 pieces, decoded from
//!   OpenAI's server-sent events beside Bedrock's binary event stream (frames and CRC32s checked
//!   by `aws-smithy-eventstream`).
//! - `sigv4/sign_1KiB`: one Converse call's SigV4 signature, as the Bedrock client makes it
//!   (`aws-sigv4`, the same settings: headers, double-encoded path, the body's SHA-256).
//!
//! Run: `cargo bench -p tollgate-benches --bench bedrock`.

use std::{hint::black_box, time::SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tollgate::{LlmRequest, Message};
use tollgate_core::MaxTokensName;
use tollgate_wire::{
    bedrock,
    openai::chat,
    sse::{Decode, Decoder},
};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";

fn text(bytes: usize) -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(bytes / 45 + 1)[..bytes].to_owned()
}

fn request() -> LlmRequest {
    let mut request = LlmRequest::new(
        MODEL,
        vec![
            Message::system("Answer briefly."),
            Message::user(text(1024)),
        ],
    )
    .with_max_tokens(512)
    .with_temperature(0.2);
    request.params.set_extra(
        "tools",
        json!([{ "type": "function", "function": { "name": "lookup",
            "parameters": { "type": "object", "properties": { "q": { "type": "string" } } } } }]),
    );
    request
}

fn openai_answer(answer: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o",
        "choices": [ { "index": 0, "message": { "role": "assistant", "content": answer },
                       "finish_reason": "stop" } ],
        "usage": { "prompt_tokens": 300, "completion_tokens": 250, "total_tokens": 550 }
    }))
    .unwrap()
}

fn converse_answer(answer: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "output": { "message": { "role": "assistant", "content": [ { "text": answer } ] } },
        "stopReason": "end_turn",
        "usage": { "inputTokens": 300, "outputTokens": 250, "totalTokens": 550 },
        "metrics": { "latencyMs": 900 }
    }))
    .unwrap()
}

fn pieces(answer: &str) -> Vec<&str> {
    let size = answer.len() / 16;
    (0..16).map(|i| &answer[i * size..(i + 1) * size]).collect()
}

fn sse_stream(answer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut event = |value: Value| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(value.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    };
    for piece in pieces(answer) {
        event(
            json!({ "id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [ { "index": 0, "delta": { "content": piece }, "finish_reason": null } ] }),
        );
    }
    event(
        json!({ "id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
        "choices": [ { "index": 0, "delta": {}, "finish_reason": "stop" } ] }),
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn event_stream(answer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut frame = |name: &str, payload: Value| {
        let header = |name: &'static str, value: &str| {
            Header::new(name, HeaderValue::String(value.to_owned().into()))
        };
        let message = Frame::new(payload.to_string().into_bytes())
            .add_header(header(":event-type", name))
            .add_header(header(":content-type", "application/json"))
            .add_header(header(":message-type", "event"));
        write_message_to(&message, &mut out).unwrap();
    };
    frame("messageStart", json!({ "role": "assistant" }));
    for piece in pieces(answer) {
        frame(
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "text": piece } }),
        );
    }
    frame("contentBlockStop", json!({ "contentBlockIndex": 0 }));
    frame("messageStop", json!({ "stopReason": "end_turn" }));
    frame(
        "metadata",
        json!({ "usage": { "inputTokens": 300, "outputTokens": 250, "totalTokens": 550 },
                              "metrics": { "latencyMs": 900 } }),
    );
    out
}

/// Feeds the whole body, reads every event, and ends the stream (which must end well).
fn drain(mut decoder: Box<dyn Decode>, bytes: &[u8]) -> usize {
    decoder.feed(bytes);
    let mut events = 0;
    while let Some(event) = decoder.next_event() {
        event.unwrap();
        events += 1;
    }
    decoder.end();
    assert!(decoder.next_event().is_none() && decoder.is_done());
    events
}

fn wire(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire_1KiB");
    let request = request();
    let answer = text(1024);
    let (openai, converse) = (openai_answer(&answer), converse_answer(&answer));
    let (sse, frames) = (sse_stream(&answer), event_stream(&answer));

    group.bench_function("openai/encode_request", |b| {
        b.iter(|| {
            chat::encode_request(black_box(&request), MaxTokensName::MaxTokens, false).unwrap()
        });
    });
    group.bench_function("bedrock/encode_request", |b| {
        b.iter(|| bedrock::encode_request(black_box(&request)).unwrap());
    });
    group.bench_function("openai/decode_answer", |b| {
        b.iter(|| chat::decode_answer(black_box(&openai), "gpt-4o").unwrap());
    });
    group.bench_function("bedrock/decode_answer", |b| {
        b.iter(|| bedrock::decode_answer(black_box(&converse), MODEL).unwrap());
    });
    group.bench_function("openai/decode_stream", |b| {
        b.iter(|| {
            let decoder = Box::new(Decoder::new(chat::Chunks::default(), "openai", 1 << 20));
            drain(decoder, black_box(&sse))
        });
    });
    group.bench_function("bedrock/decode_stream", |b| {
        b.iter(|| {
            let decoder = Box::new(bedrock::ConverseEvents::new("bedrock", 1 << 20));
            drain(decoder, black_box(&frames))
        });
    });
    group.finish();
}

fn sigv4(c: &mut Criterion) {
    let body = bedrock::encode_request(&request()).unwrap();
    let url = format!(
        "https://bedrock-runtime.us-east-1.amazonaws.com{}",
        bedrock::path(MODEL, "converse")
    );
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token".into()),
        None,
        "bench",
    );
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    let mut group = c.benchmark_group("sigv4");
    group.bench_function("sign_1KiB", |b| {
        b.iter(|| {
            let identity: Identity = credentials.clone().into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("bedrock")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let signable = SignableRequest::new(
                "POST",
                &url,
                headers.iter().copied(),
                SignableBody::Bytes(black_box(&body)),
            )
            .unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            instructions
        });
    });
    group.finish();
}

criterion_group!(benches, wire, sigv4);
criterion_main!(benches);

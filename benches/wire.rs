//! Translation to and from the wire formats beside the OpenAI pass-through, at a 1 KiB answer.
//!
//! - `wire_request/<format>`: a four-message conversation with a function tool written as the
//!   upstream's body: `openai` (chat completions, tollgate's own shape, so serde only) beside
//!   `gemini` (`contents`, `systemInstruction`, `functionDeclarations`, `generationConfig`).
//! - `wire_answer/<format>`: a whole answer of about 1 KiB of text with usage read into an
//!   `LlmResponse`: OpenAI's chat completion beside Gemini's `GenerateContentResponse`.
//! - `wire_stream/<format>`: the same answer streamed in 16 events, fed and decoded to
//!   `StreamEvent`s: OpenAI's chunks beside Gemini's (which ends at the body's close).
//! - `wire_door/<api>`: a typical agent call at a gateway's door (instructions, a user turn, an
//!   assistant's function call and its output, one function tool, a temperature and a bound)
//!   read from the caller's body, and the 1 KiB answer written back: chat completions (serde
//!   both ways) beside the Responses API (translated into the chat shape, and the Response
//!   object written with what the call asked echoed).
//!
//! Run: `cargo bench -p tollgate-benches --bench wire`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tollgate::{LlmRequest, LlmResponse, Message};
use tollgate_wire::{
    gemini,
    openai::{chat, responses},
    sse::{Decode, Decoder, Format},
};

/// About 1 KiB of answer text.
fn text() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(23)
}

fn request() -> LlmRequest {
    let mut request = LlmRequest::new(
        "model",
        vec![
            Message::system("Answer in one paragraph."),
            Message::user("Tell me about foxes."),
            Message::assistant("Foxes are small omnivores."),
            Message::user("And dogs?"),
        ],
    )
    .with_temperature(0.3)
    .with_max_tokens(512);
    request.params.set_extra(
        "tools",
        json!([{ "type": "function", "function": { "name": "lookup", "description": "Look up a fact",
            "parameters": { "type": "object", "properties": { "q": { "type": "string" } }, "required": ["q"] } } }]),
    );
    request
}

fn openai_answer(text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text },
            "finish_reason": "stop", "logprobs": null }],
        "usage": { "prompt_tokens": 40, "completion_tokens": 230, "total_tokens": 270 }
    }))
    .unwrap()
}

fn gemini_answer(text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "candidates": [{ "content": { "role": "model", "parts": [{ "text": text }] },
            "finishReason": "STOP", "index": 0 }],
        "usageMetadata": { "promptTokenCount": 40, "candidatesTokenCount": 230, "totalTokenCount": 270 },
        "modelVersion": "gemini-2.5-flash", "responseId": "r-1"
    }))
    .unwrap()
}

/// The answer as `pieces` events of each format.
fn streams(text: &str, pieces: usize) -> (Vec<u8>, Vec<u8>) {
    let size = text.len() / pieces + 1;
    let chunks: Vec<&str> = text
        .as_bytes()
        .chunks(size)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let (mut openai, mut gemini) = (Vec::new(), Vec::new());
    let last = chunks.len() - 1;
    for (i, piece) in chunks.iter().enumerate() {
        let finish = if i == last {
            json!("stop")
        } else {
            json!(null)
        };
        let chunk = json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{ "index": 0, "delta": { "content": piece }, "finish_reason": finish }] });
        tollgate_wire::sse::write_event(&mut openai, None, &chunk);
        let mut candidate =
            json!({ "content": { "role": "model", "parts": [{ "text": piece }] }, "index": 0 });
        if i == last {
            candidate["finishReason"] = "STOP".into();
        }
        let chunk = json!({ "candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r-1",
            "usageMetadata": { "promptTokenCount": 40, "candidatesTokenCount": i + 1, "totalTokenCount": 41 + i } });
        tollgate_wire::sse::write_event(&mut gemini, None, &chunk);
    }
    openai.extend_from_slice(b"data: [DONE]\n\n");
    (openai, gemini)
}

fn decode<F: Format + std::fmt::Debug>(format: F, bytes: &[u8]) -> usize {
    let mut decoder = Decoder::new(format, "bench", 1 << 20);
    decoder.feed(bytes);
    let mut events = 0;
    let mut drain = |decoder: &mut Decoder<F>| {
        while let Some(event) = Decode::next_event(decoder) {
            event.unwrap();
            events += 1;
        }
    };
    drain(&mut decoder);
    decoder.end();
    drain(&mut decoder);
    events
}

/// One agent call as each door takes it: chat completions, and the Responses API.
fn agent_call() -> (Vec<u8>, bytes::Bytes) {
    let schema = json!({ "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] });
    let chat = json!({
        "model": "gpt-5", "temperature": 0.3, "max_completion_tokens": 512,
        "messages": [
            { "role": "system", "content": "You are a weather agent. Answer in one paragraph." },
            { "role": "user", "content": "What is the weather in Paris?" },
            { "role": "assistant", "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "weather", "arguments": "{\"city\":\"Paris\"}" } }] },
            { "role": "tool", "tool_call_id": "call_1", "content": "18 C, light rain" }
        ],
        "tools": [{ "type": "function", "function": { "name": "weather", "description": "Current weather by city", "parameters": schema } }],
        "tool_choice": "auto"
    });
    let responses = json!({
        "model": "gpt-5", "temperature": 0.3, "max_output_tokens": 512,
        "instructions": "You are a weather agent. Answer in one paragraph.",
        "input": [
            { "role": "user", "content": "What is the weather in Paris?" },
            { "type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}" },
            { "type": "function_call_output", "call_id": "call_1", "output": "18 C, light rain" }
        ],
        "tools": [{ "type": "function", "name": "weather", "description": "Current weather by city", "parameters": schema }],
        "tool_choice": "auto"
    });
    (
        serde_json::to_vec(&chat).unwrap(),
        serde_json::to_vec(&responses).unwrap().into(),
    )
}

fn wire(c: &mut Criterion) {
    let request = request();
    let mut group = c.benchmark_group("wire_request");
    group.bench_function("openai", |b| {
        b.iter(|| {
            chat::encode_request(
                black_box(&request),
                tollgate::MaxTokensName::MaxTokens,
                false,
            )
            .unwrap()
        })
    });
    group.bench_function("gemini", |b| {
        b.iter(|| gemini::encode_request(black_box(&request)).unwrap())
    });
    group.finish();

    let text = text();
    let (openai, gemini_body) = (openai_answer(&text), gemini_answer(&text));
    let mut group = c.benchmark_group("wire_answer");
    group.bench_function("openai", |b| {
        b.iter(|| chat::decode_answer(black_box(&openai), "m").unwrap())
    });
    group.bench_function("gemini", |b| {
        b.iter(|| gemini::decode_answer(black_box(&gemini_body), "m").unwrap())
    });
    group.finish();

    let (openai, gemini_stream) = streams(&text, 16);
    let mut group = c.benchmark_group("wire_stream");
    group.bench_function("openai", |b| {
        b.iter(|| decode(chat::Chunks::default(), black_box(&openai)))
    });
    group.bench_function("gemini", |b| {
        b.iter(|| decode(gemini::GenerateStream::default(), black_box(&gemini_stream)))
    });
    group.finish();

    // The door: the caller's body read, the stack's answer written back (cloned in both, as
    // the chat writer takes it by value).
    let (chat_body, responses_body) = agent_call();
    let answer = chat::decode_answer(&openai_answer(&text), "gpt-5").unwrap();
    let asked = responses::decode_request(responses_body.clone(), &Default::default()).unwrap();
    let asked = asked
        .extensions
        .get::<responses::ResponsesBody>()
        .unwrap()
        .clone();
    let mut group = c.benchmark_group("wire_door");
    group.bench_function("chat", |b| {
        b.iter(|| {
            let request = chat::decode_request(black_box(&chat_body)).unwrap();
            let written = chat::encode_answer(LlmResponse::clone(black_box(&answer)), "1");
            (request, written)
        })
    });
    group.bench_function("responses", |b| {
        b.iter(|| {
            let request =
                responses::decode_request(black_box(&responses_body).clone(), &Default::default())
                    .unwrap();
            let written = responses::encode_answer(
                &LlmResponse::clone(black_box(&answer)),
                "resp_1",
                black_box(&asked),
            );
            (request, written)
        })
    });
    group.bench_function("chat_decode", |b| {
        b.iter(|| chat::decode_request(black_box(&chat_body)).unwrap())
    });
    group.bench_function("responses_decode", |b| {
        b.iter(|| {
            responses::decode_request(black_box(&responses_body).clone(), &Default::default())
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
